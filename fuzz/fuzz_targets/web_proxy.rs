//! Web-proxy variables and the CONNECT exchange (`https_proxy`,
//! `no_proxy`, the proxy's answer).
//!
//! Input: proxy value, NUL, no_proxy value, NUL, the proxy's response
//! bytes. Properties: no panic (percent-decoding of credentials, base64,
//! the response parser); an accepted proxy has a host and prints as a
//! value that parses back to the same host and port.
#![no_main]

use std::io::{self, Read, Write};

use krb5_wss::url::WssUrl;
use krb5_wss::webproxy::{connect_tunnel, exempt, parse_proxy};
use libfuzzer_sys::fuzz_target;

/// A stream that answers with `response` and swallows what is written.
struct Canned<'a> {
    response: &'a [u8],
}

impl Read for Canned<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.response.len());
        buf[..n].copy_from_slice(&self.response[..n]);
        self.response = &self.response[n..];
        Ok(n)
    }
}

impl Write for Canned<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let value = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let no_proxy = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let response = parts.next().unwrap_or_default();
    let url = WssUrl::parse("wss://kdc.example.com/kdc", "/kdc").expect("a fixed URL");
    let _ = exempt(&no_proxy, &url);
    if let Ok(p) = parse_proxy(&value, "https_proxy") {
        assert!(!p.host.is_empty());
        let again = parse_proxy(&p.to_string(), "https_proxy").expect("a printed proxy parses");
        assert_eq!((again.host.as_str(), again.port), (p.host.as_str(), p.port));
        let _ = connect_tunnel(&mut Canned { response }, &p, &url);
    }
});
