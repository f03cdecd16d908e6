//! The plugin's DNS answer parser (URI and SRV records, negative TTLs).
//!
//! Properties: no panic, no endless loop on compression pointers; every
//! accepted record fits in the message (a record takes at least 11 bytes:
//! a compressed name, type, class, TTL and length); the TTL of an answer
//! without records is 0.
#![no_main]

use krb5_wss::dns::{negative_ttl, parse_srv, parse_uri};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(a) = parse_uri(data) {
        assert!(a.records.len() * 11 <= data.len());
        assert!(!a.records.is_empty() || a.ttl == 0);
        for r in &a.records {
            // What discovery does with each target.
            let _ = krb5_wss::discovery::parse_krb5srv(&r.target, "/kdc");
        }
    }
    if let Ok(a) = parse_srv(data) {
        assert!(a.records.len() * 11 <= data.len());
        assert!(!a.records.is_empty() || a.ttl == 0);
    }
    let _ = negative_ttl(data);
});
