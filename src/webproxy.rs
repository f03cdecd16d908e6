//! Outbound web proxies: `https_proxy`, `no_proxy` and HTTP CONNECT.
//!
//! Where a network lets only a web proxy out, the plugin reaches the wss
//! proxy through an HTTP CONNECT tunnel, with the conventions of curl and
//! most tools: `https_proxy` (or `HTTPS_PROXY`, then `all_proxy`/`ALL_PROXY`)
//! for `wss://` URLs, `http_proxy` (or `all_proxy`) for `ws://`, and
//! `no_proxy`/`NO_PROXY` listing hosts that are reached directly. TLS runs
//! end to end inside the tunnel: the web proxy sees only the host name.

use std::fmt;
use std::io::{Read, Write};
use std::net::IpAddr;

use crate::url::{Host, WssUrl};

/// A web proxy to tunnel through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebProxy {
    /// Proxy host (name or IP, without brackets).
    pub host: String,
    /// Proxy port (1080 when the variable gives none, as in curl).
    pub port: u16,
    /// `user:password` for Basic authentication, when the URL has them.
    pub credentials: Option<String>,
    /// Which variable named it (for messages).
    pub variable: &'static str,
}

impl fmt::Display for WebProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

/// Parses a proxy variable's value: `[http://][user:pass@]host[:port][/]`.
pub fn parse_proxy(value: &str, variable: &'static str) -> Result<WebProxy, String> {
    let v = value.trim();
    let rest = match v.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) => {
            return Err(format!(
                "{variable}=\"{v}\": only http:// proxies are supported (scheme \"{scheme}\")"
            ))
        }
        None => v,
    };
    let rest = rest.trim_end_matches('/');
    let (credentials, hostport) = match rest.rsplit_once('@') {
        Some((creds, hostport)) => (Some(creds.to_string()), hostport),
        None => (None, rest),
    };
    let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
        let (inside, after) = r
            .split_once(']')
            .ok_or_else(|| format!("{variable}=\"{v}\": missing ]"))?;
        (inside.to_string(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() || host.contains('/') {
        return Err(format!("{variable}=\"{v}\": no proxy host"));
    }
    let name_like = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if !name_like && host.parse::<IpAddr>().is_err() {
        return Err(format!(
            "{variable}=\"{v}\": bad proxy host \"{host}\" (a host name, an IPv4 address or [IPv6])"
        ));
    }
    let port = match port {
        None => 1080,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{variable}=\"{v}\": bad port \"{p}\""))?,
    };
    Ok(WebProxy {
        host,
        port,
        credentials,
        variable,
    })
}

/// True when `no_proxy` (a comma-separated list) exempts `url`'s host:
/// `*` exempts all; an entry matches the host exactly or as a domain
/// suffix (`example.com` and `.example.com` both match `kdc.example.com`);
/// IP addresses match exactly, or by `addr/prefix`.
pub fn exempt(no_proxy: &str, url: &WssUrl) -> bool {
    let host = url.host_for_resolve().to_ascii_lowercase();
    let ip = url.ip();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            // Drop a port if present ("host:port"), keeping bare IPv6 intact.
            let entry = match entry.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => {
                    h.to_string()
                }
                _ => entry,
            };
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            if let Some((net, bits)) = entry.split_once('/') {
                return match (ip, net.parse::<IpAddr>(), bits.parse::<u8>()) {
                    (Some(a), Ok(n), Ok(b)) => in_prefix(a, n, b),
                    _ => false,
                };
            }
            if let (Some(a), Ok(e)) = (ip, entry.parse::<IpAddr>()) {
                return a == e;
            }
            let domain = entry.trim_start_matches('.');
            matches!(url.host, Host::Name(_))
                && (host == domain || host.ends_with(&format!(".{domain}")))
        })
}

fn in_prefix(addr: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The web proxy to use for `url` (None: connect directly): `configured`
/// (krb5.conf's `wss_web_proxy`, for `wss://` and `ws://` alike) when
/// given, else the environment read by `getenv`. Either way `no_proxy`
/// exempts hosts.
pub fn proxy_for(
    url: &WssUrl,
    configured: Option<&str>,
    getenv: impl Fn(&str) -> Option<String>,
) -> Result<Option<WebProxy>, String> {
    if let Some(value) = configured.filter(|s| !s.trim().is_empty()) {
        if exempt(&no_proxy(&getenv), url) {
            return Ok(None);
        }
        return parse_proxy(value, crate::config::WEB_PROXY_KEY).map(Some);
    }
    let candidates: &[&'static str] = if url.tls {
        &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
    } else {
        // Upper-case HTTP_PROXY is ignored, as curl does (CGI's httpoxy).
        &["http_proxy", "all_proxy", "ALL_PROXY"]
    };
    let Some((var, value)) = candidates
        .iter()
        .find_map(|v| getenv(v).filter(|s| !s.trim().is_empty()).map(|s| (*v, s)))
    else {
        return Ok(None);
    };
    if exempt(&no_proxy(&getenv), url) {
        return Ok(None);
    }
    parse_proxy(&value, var).map(Some)
}

fn no_proxy(getenv: &impl Fn(&str) -> Option<String>) -> String {
    getenv("no_proxy")
        .or_else(|| getenv("NO_PROXY"))
        .unwrap_or_default()
}

/// Longest CONNECT response header accepted.
const MAX_RESPONSE: usize = 8 * 1024;

/// Asks the web proxy on `stream` for a tunnel to `url`'s host and port.
/// The stream's timeouts bound the wait. Returns a message on refusal.
pub fn connect_tunnel(
    stream: &mut (impl Read + Write),
    proxy: &WebProxy,
    url: &WssUrl,
) -> Result<(), String> {
    let target = format!("{}:{}", url.host, url.port);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(creds) = &proxy.credentials {
        let creds = percent_decode(creds);
        request.push_str(&format!(
            "Proxy-Authorization: Basic {}\r\n",
            base64(creds.as_bytes())
        ));
    }
    request.push_str(concat!(
        "User-Agent: krb5-wss/",
        env!("CARGO_PKG_VERSION"),
        "\r\n\r\n"
    ));
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("web proxy {proxy} ({}): {e}", proxy.variable))?;
    // Read byte by byte up to the blank line: nothing after it may be
    // consumed, it belongs to the TLS handshake.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_RESPONSE {
            return Err(format!("web proxy {proxy}: response header too long"));
        }
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "web proxy {proxy} closed the connection during CONNECT {target}"
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "web proxy {proxy}: timed out waiting for the CONNECT {target} answer"
                ))
            }
            Err(e) => return Err(format!("web proxy {proxy}: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status_line = text.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!(
            "web proxy {proxy}: not an HTTP answer to CONNECT: \"{status_line}\""
        ));
    }
    if !code.starts_with('2') {
        return Err(format!(
            "web proxy {proxy} refused CONNECT {target}: HTTP {}",
            status_line
                .split_once(' ')
                .map(|x| x.1)
                .unwrap_or(status_line)
        ));
    }
    Ok(())
}

/// `%XX` decoding of the credentials in a proxy URL (invalid escapes are
/// kept as they are; bytes that are not UTF-8 are replaced).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                let sextet = usize::try_from((n >> shift) & 63).unwrap_or(0);
                out.push(char::from(T.get(sextet).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn url(s: &str) -> WssUrl {
        WssUrl::parse(s, "/kdc").unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn proxy_values() {
        let p = parse_proxy("http://proxy.corp:3128/", "https_proxy").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.credentials.as_deref()),
            ("proxy.corp", 3128, None)
        );
        assert_eq!(p.to_string(), "http://proxy.corp:3128");
        let p = parse_proxy("u%40x:p@10.0.0.1", "HTTPS_PROXY").unwrap();
        assert_eq!((p.port, p.credentials.as_deref()), (1080, Some("u%40x:p")));
        let p = parse_proxy("http://[::1]:8080", "x").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
        assert!(parse_proxy("socks5://p:1", "all_proxy")
            .unwrap_err()
            .contains("only http://"));
        assert!(parse_proxy("http://p:99999", "x")
            .unwrap_err()
            .contains("bad port"));
        assert!(parse_proxy("http://", "x")
            .unwrap_err()
            .contains("no proxy host"));
    }

    #[test]
    fn variable_precedence() {
        let u = url("wss://kdc.example.com/kdc");
        let p = proxy_for(
            &u,
            None,
            env(&[("HTTPS_PROXY", "b:2"), ("https_proxy", "a:1")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!((p.host.as_str(), p.variable), ("a", "https_proxy"));
        let p = proxy_for(&u, None, env(&[("ALL_PROXY", "c:3")]))
            .unwrap()
            .unwrap();
        assert_eq!(p.variable, "ALL_PROXY");
        assert_eq!(
            proxy_for(&u, None, env(&[("http_proxy", "h:1")])).unwrap(),
            None
        );
        let ws = url("ws://kdc.example.com/kdc");
        assert_eq!(
            proxy_for(&ws, None, env(&[("http_proxy", "h:1")]))
                .unwrap()
                .unwrap()
                .host,
            "h"
        );
        assert_eq!(
            proxy_for(&ws, None, env(&[("HTTP_PROXY", "h:1")])).unwrap(),
            None
        );
        assert_eq!(proxy_for(&u, None, env(&[])).unwrap(), None);
        assert_eq!(
            proxy_for(&u, None, env(&[("https_proxy", " ")])).unwrap(),
            None
        );
    }

    #[test]
    fn no_proxy_rules() {
        let u = url("wss://kdc.example.com:8443/kdc");
        for entry in [
            "*",
            "kdc.example.com",
            "example.com",
            ".example.com",
            "other, example.com",
            "kdc.example.com:8443",
        ] {
            assert!(exempt(entry, &u), "{entry}");
        }
        for entry in ["", "ample.com", "kdc.example.org", "xkdc.example.com"] {
            assert!(!exempt(entry, &u), "{entry}");
        }
        let ip = url("wss://10.1.2.3/kdc");
        assert!(exempt("10.1.2.3", &ip));
        assert!(exempt("10.0.0.0/8", &ip));
        assert!(!exempt("10.1.2.4", &ip));
        assert!(!exempt("11.0.0.0/8", &ip));
        let v6 = url("wss://[::1]/kdc");
        assert!(exempt("::1", &v6));
        assert!(exempt("[::1]", &v6));
        let p = proxy_for(
            &u,
            None,
            env(&[("https_proxy", "p:1"), ("NO_PROXY", "example.com")]),
        )
        .unwrap();
        assert_eq!(p, None);
    }

    #[test]
    fn configured_proxy_comes_before_the_environment() {
        let u = url("wss://kdc.example.com/kdc");
        let p = proxy_for(
            &u,
            Some("http://u:p@conf:3128"),
            env(&[("https_proxy", "e:1")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.variable),
            ("conf", 3128, "wss_web_proxy")
        );
        assert_eq!(p.credentials.as_deref(), Some("u:p"));
        // Also for ws://, and with an empty environment.
        let ws = url("ws://kdc.example.com/kdc");
        assert_eq!(
            proxy_for(&ws, Some("conf:1"), env(&[]))
                .unwrap()
                .unwrap()
                .host,
            "conf"
        );
        // An empty value is no setting; no_proxy still exempts.
        let p = proxy_for(&u, Some(" "), env(&[("https_proxy", "e:1")]))
            .unwrap()
            .unwrap();
        assert_eq!(p.variable, "https_proxy");
        let p = proxy_for(&u, Some("conf:1"), env(&[("no_proxy", ".example.com")])).unwrap();
        assert_eq!(p, None);
        assert!(proxy_for(&u, Some("socks5://x:1"), env(&[])).is_err());
    }

    #[test]
    fn base64_and_decoding() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(percent_decode("u%40x:p%3A"), "u@x:p:");
        assert_eq!(percent_decode("100%"), "100%");
        // Found by fuzz/web_proxy: a host that is neither a name nor an IP.
        assert!(parse_proxy("\u{80}]]]]::2", "https_proxy")
            .unwrap_err()
            .contains("bad proxy host"));
        assert_eq!(parse_proxy("http://[::1]:3128", "x").unwrap().host, "::1");
        // Not ASCII after the %: kept, never a panic.
        assert_eq!(percent_decode("%a\u{e9}:pw"), "%a\u{e9}:pw");
        assert_eq!(percent_decode("%\u{e9}"), "%\u{e9}");
    }
}
