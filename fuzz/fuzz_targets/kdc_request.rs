//! The KDC-path message check (AS-REQ, TGS-REQ) and the DER walk under it.
//!
//! Properties: no panic; an accepted request has a printable realm of at
//! most 255 bytes and its kind matches its first byte; a request with a
//! byte appended is never accepted (every byte is accounted for); the
//! KRB-ERROR and KDC-reply readers never panic either, and the names
//! read are written on one line.
#![no_main]

use krb5_wss_proto::kerberos::{
    check_kdc_request, kdc_reply, krb_error_code, KdcRequestKind, MAX_REALM_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = krb_error_code(data);
    if let Some(krb5_wss_proto::kerberos::KdcReply::Ticket { cname, .. }) = kdc_reply(data) {
        assert!(!cname.to_string().chars().any(char::is_control));
    }
    let _ = krb5_wss_proto::der::validate(data, 32);
    if let Ok(req) = check_kdc_request(data) {
        assert!(!req.realm.is_empty() && req.realm.len() <= MAX_REALM_LEN);
        assert!(!req.realm.chars().any(char::is_control));
        for name in req.cname.iter().chain(req.sname.iter()) {
            assert!(!name.to_string().chars().any(char::is_control));
        }
        let first = match req.kind {
            KdcRequestKind::AsReq => 0x6a,
            KdcRequestKind::TgsReq => 0x6c,
        };
        assert_eq!(data[0], first);
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(check_kdc_request(&longer).is_err());
    }
});
