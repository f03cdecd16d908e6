//! The kpasswd-path message check (RFC 3244 requests).
//!
//! Properties: no panic; an accepted request's length field equals its
//! length, its version is 0x0001 or 0xff80 and its realm is printable; a
//! KDC request is never also a kpasswd request.
#![no_main]

use krb5_wss_proto::kerberos::{check_kdc_request, check_kpasswd_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = check_kpasswd_request(data) {
        assert_eq!(
            usize::from(u16::from_be_bytes([data[0], data[1]])),
            data.len()
        );
        assert!(req.version == 0x0001 || req.version == 0xff80);
        assert!(!req.realm.is_empty() && !req.realm.chars().any(char::is_control));
        assert!(check_kdc_request(data).is_err());
    }
});
