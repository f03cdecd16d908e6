//! The MS-KKDCP message decoder.
//!
//! Properties: no panic; an accepted message's Kerberos message is non-empty
//! and its length prefix was right; re-encoding it as a request and decoding
//! again gives the same message and target-domain.
#![no_main]

use krb5_wss_proto::kkdcp::{decode, encode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode(data) {
        assert!(!m.message.is_empty());
        let again = encode_request(m.message, m.target_domain.as_deref())
            .expect("a decoded message re-encodes");
        let m2 = decode(&again).expect("a re-encoded message decodes");
        assert_eq!(m2.message, m.message);
        assert_eq!(m2.target_domain, m.target_domain);
    }
});
