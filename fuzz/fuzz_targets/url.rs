//! WebSocket URL parsing (krb5.conf `kdc = wss://…` values and DNS URI
//! targets).
//!
//! Properties: no panic; an accepted URL prints as a URL that parses back
//! to the same URL; its derived kpasswd URL parses too; the ownership test
//! agrees with the parser's scheme.
#![no_main]

use krb5_wss::url::{is_websocket_url, WssUrl};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(u) = WssUrl::parse(s, "/kdc") {
        assert!(is_websocket_url(s));
        let printed = u.to_string();
        let again = WssUrl::parse(&printed, "/kdc").expect("a printed URL parses");
        assert_eq!(again, u);
        let k = u.with_last_segment("kpasswd");
        WssUrl::parse(&k.to_string(), "/kpasswd").expect("a derived kpasswd URL parses");
        let _ = (u.authority(), u.host_for_resolve(), u.ip());
    }
});
