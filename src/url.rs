//! `wss://` and `ws://` URLs as they appear in krb5.conf.
//!
//! Deliberately strict: `scheme://host[:port][/path]`, where host is a DNS
//! name, an IPv4 address or a bracketed IPv6 address. User info, queries,
//! fragments, whitespace and non-ASCII host names are refused with a message
//! that says which part is wrong, because a typo in krb5.conf must be an
//! error the administrator sees, never a silent fallback.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use krb5_wss_proto::{DEFAULT_WSS_PORT, DEFAULT_WS_PORT};

/// The host part of a URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A DNS name, lowercased, without a trailing dot.
    Name(String),
    /// An IPv4 literal.
    V4(Ipv4Addr),
    /// An IPv6 literal (written in brackets in the URL).
    V6(Ipv6Addr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::V4(a) => write!(f, "{a}"),
            Host::V6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A parsed WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WssUrl {
    /// True for `wss://` (TLS), false for `ws://`.
    pub tls: bool,
    /// The host to connect to and, with TLS, the name the certificate must carry.
    pub host: Host,
    /// The TCP port (443 or 80 when the URL gives none).
    pub port: u16,
    /// The request path, starting with `/`.
    pub path: String,
}

/// Why a string is not an acceptable URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlError {
    /// The text that was parsed.
    pub url: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\": {}", self.url, self.reason)
    }
}

impl std::error::Error for UrlError {}

/// True when `s` looks like a WebSocket URL (`wss://` or `ws://`, any case,
/// after leading spaces and tabs): the test that decides whether the plugin
/// owns a krb5.conf entry (the owner crate's, shared with the front module).
pub fn is_websocket_url(s: &str) -> bool {
    krb5_wss_owner::is_websocket_url(s.as_bytes())
}

/// `s` without `prefix` (ASCII, any case), or None.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let (head, rest) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(rest)
}

impl WssUrl {
    /// Parses `input`; a URL without a path (or with just `/`) gets `default_path`.
    pub fn parse(input: &str, default_path: &str) -> Result<WssUrl, UrlError> {
        let err = |reason: &str| UrlError {
            url: input.to_string(),
            reason: reason.to_string(),
        };
        // Leading and trailing blanks as the ownership rule skips them
        // (spaces and tabs); any other whitespace or control is refused.
        let s = input.trim_matches([' ', '\t']);
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(err("contains whitespace or control characters"));
        }
        let (tls, rest) = if let Some(rest) = strip_prefix_ignore_case(s, "wss://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(s, "ws://") {
            (false, rest)
        } else {
            return Err(err("scheme must be wss:// (or ws://)"));
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(err("queries and fragments are not allowed"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(err("user information is not allowed"));
        }
        if authority.is_empty() {
            return Err(err("host is missing"));
        }
        let (host, port) = parse_authority(authority).map_err(|r| err(&r))?;
        let port = match port {
            Some(p) => p,
            None if tls => DEFAULT_WSS_PORT,
            None => DEFAULT_WS_PORT,
        };
        let path = if path.is_empty() || path == "/" {
            default_path.to_string()
        } else {
            if path.contains("//") {
                return Err(err("path contains an empty segment (//)"));
            }
            path.to_string()
        };
        if !path.is_ascii() {
            return Err(err("path must be ASCII (percent-encode anything else)"));
        }
        Ok(WssUrl {
            tls,
            host,
            port,
            path,
        })
    }

    /// `host[:port]` for the HTTP Host header (port omitted when default).
    pub fn authority(&self) -> String {
        if self.port == self.default_port() {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn default_port(&self) -> u16 {
        if self.tls {
            DEFAULT_WSS_PORT
        } else {
            DEFAULT_WS_PORT
        }
    }

    /// The host as a plain string for name resolution (no brackets).
    pub fn host_for_resolve(&self) -> String {
        match &self.host {
            Host::Name(n) => n.clone(),
            Host::V4(a) => a.to_string(),
            Host::V6(a) => a.to_string(),
        }
    }

    /// The IP address when the host is a literal.
    pub fn ip(&self) -> Option<IpAddr> {
        match &self.host {
            Host::Name(_) => None,
            Host::V4(a) => Some(IpAddr::V4(*a)),
            Host::V6(a) => Some(IpAddr::V6(*a)),
        }
    }

    /// The same URL with its last path segment replaced by `segment`
    /// (`wss://h/kdc` → `wss://h/kpasswd`; `wss://h/krb/kdc` → `wss://h/krb/kpasswd`).
    pub fn with_last_segment(&self, segment: &str) -> WssUrl {
        let base = self.path.rsplit_once('/').map_or("", |(base, _)| base);
        WssUrl {
            path: format!("{base}/{segment}"),
            ..self.clone()
        }
    }
}

impl fmt::Display for WssUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "wss" } else { "ws" };
        write!(f, "{scheme}://{}{}", self.authority(), self.path)
    }
}

fn parse_authority(authority: &str) -> Result<(Host, Option<u16>), String> {
    let (host_part, port_part) = if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| "IPv6 address is missing its closing ]".to_string())?;
        let addr: Ipv6Addr = inside
            .parse()
            .map_err(|_| format!("\"{inside}\" is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err("unexpected text after the IPv6 address".into()),
            },
        };
        (Host::V6(addr), port)
    } else {
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        if h.contains(':') {
            return Err("IPv6 addresses must be written in brackets: [::1]".into());
        }
        (parse_host(h)?, p)
    };
    let port = match port_part {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host_part, port))
}

fn parse_host(h: &str) -> Result<Host, String> {
    if h.is_empty() {
        return Err("host is missing".into());
    }
    if let Ok(a) = h.parse::<Ipv4Addr>() {
        return Ok(Host::V4(a));
    }
    let name = h.strip_suffix('.').unwrap_or(h);
    if name.is_empty() || name.len() > 253 {
        return Err(format!("\"{h}\" is not a valid host name"));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "\"{h}\" is not a valid host name (ASCII letters, digits, '-' and '.' only; use the punycode form of an international name)"
            ));
        }
    }
    // A dotted name of digits only would be a malformed IPv4 address.
    if name
        .split('.')
        .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("\"{h}\" is not a valid IPv4 address"));
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

fn parse_port(p: &str) -> Result<u16, String> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port \"{p}\" is not a number from 1 to 65535"));
    }
    match p.parse::<u32>() {
        Ok(n) if (1..=65535).contains(&n) => Ok(n as u16),
        _ => Err(format!("port \"{p}\" is not a number from 1 to 65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> WssUrl {
        WssUrl::parse(s, "/kdc").unwrap_or_else(|e| panic!("{e}"))
    }

    fn bad(s: &str) -> String {
        WssUrl::parse(s, "/kdc").unwrap_err().to_string()
    }

    #[test]
    fn full_url() {
        let u = ok("wss://kdc.Example.COM:8443/realm/kdc");
        assert!(u.tls);
        assert_eq!(u.host, Host::Name("kdc.example.com".into()));
        assert_eq!(u.port, 8443);
        assert_eq!(u.path, "/realm/kdc");
        assert_eq!(u.to_string(), "wss://kdc.example.com:8443/realm/kdc");
        assert_eq!(u.authority(), "kdc.example.com:8443");
    }

    #[test]
    fn defaults() {
        let u = ok("wss://kdc.example.com");
        assert_eq!((u.port, u.path.as_str()), (443, "/kdc"));
        assert_eq!(u.to_string(), "wss://kdc.example.com/kdc");
        let u = ok("WS://h/");
        assert_eq!((u.tls, u.port, u.path.as_str()), (false, 80, "/kdc"));
        let u = WssUrl::parse("wss://h", "/kpasswd").unwrap();
        assert_eq!(u.path, "/kpasswd");
    }

    #[test]
    fn ip_literals() {
        let u = ok("wss://127.0.0.1:9/kdc");
        assert_eq!(u.ip(), Some("127.0.0.1".parse().unwrap()));
        let u = ok("wss://[::1]:8443/kdc");
        assert_eq!(u.host, Host::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(u.to_string(), "wss://[::1]:8443/kdc");
        assert_eq!(u.host_for_resolve(), "::1");
        let u = ok("wss://[2001:db8::1]/kdc");
        assert_eq!(u.port, 443);
    }

    #[test]
    fn trailing_dot_and_whitespace_around() {
        let u = ok("  wss://kdc.example.com./kdc ");
        assert_eq!(u.host, Host::Name("kdc.example.com".into()));
    }

    #[test]
    fn refusals_name_the_problem() {
        assert!(bad("https://h/kdc").contains("scheme must be wss://"));
        assert!(bad("kdc.example.com:88").contains("scheme"));
        assert!(bad("wss://").contains("host is missing"));
        assert!(bad("wss://:443/kdc").contains("host is missing"));
        assert!(bad("wss://h:0/kdc").contains("port \"0\""));
        assert!(bad("wss://h:65536/kdc").contains("port \"65536\""));
        assert!(bad("wss://h:/kdc").contains("port \"\""));
        assert!(bad("wss://h:12a/kdc").contains("port \"12a\""));
        assert!(bad("wss://user@h/kdc").contains("user information"));
        assert!(bad("wss://h/kdc?x=1").contains("queries"));
        assert!(bad("wss://h/kdc#f").contains("fragments"));
        assert!(bad("wss://h/k dc").contains("whitespace"));
        assert!(bad("wss://::1/kdc").contains("brackets"));
        assert!(bad("wss://[::1/kdc").contains("closing ]"));
        assert!(bad("wss://[zz]/kdc").contains("not an IPv6"));
        assert!(bad("wss://[::1]x/kdc").contains("after the IPv6"));
        assert!(bad("wss://bad_host!/kdc").contains("not a valid host name"));
        assert!(bad("wss://-x.example/kdc").contains("not a valid host name"));
        assert!(bad("wss://kdc..example/kdc").contains("not a valid host name"));
        assert!(bad("wss://999.1.1.1/kdc").contains("IPv4"));
        assert!(bad("wss://h//kdc").contains("empty segment"));
        assert!(bad("wss://bücher.example/kdc").contains("punycode"));
    }

    #[test]
    fn error_quotes_the_input() {
        assert_eq!(
            bad("wss://h:99999/kdc"),
            "\"wss://h:99999/kdc\": port \"99999\" is not a number from 1 to 65535"
        );
    }

    #[test]
    fn websocket_url_detection() {
        assert!(is_websocket_url("wss://h/kdc"));
        assert!(is_websocket_url("WSS://h"));
        assert!(is_websocket_url("ws://h"));
        assert!(is_websocket_url(" wss://h"));
        assert!(!is_websocket_url("https://h/KdcProxy"));
        assert!(!is_websocket_url("kdc.example.com:88"));
        assert!(!is_websocket_url("wss:/h"));
        assert!(!is_websocket_url(""));
    }

    #[test]
    fn parser_and_ownership_agree_on_blanks() {
        // Found by fuzz/url: the parser trimmed a carriage return that the
        // ownership rule does not skip.
        assert!(!is_websocket_url("\rwss://l/z"));
        assert!(WssUrl::parse("\rwss://l/z", "/kdc").is_err());
        assert!(WssUrl::parse(" \twss://l/z ", "/kdc").is_ok());
    }

    #[test]
    fn last_segment_replacement() {
        assert_eq!(
            ok("wss://h/kdc").with_last_segment("kpasswd").to_string(),
            "wss://h/kpasswd"
        );
        assert_eq!(
            ok("wss://h:1/a/b/kdc")
                .with_last_segment("kpasswd")
                .to_string(),
            "wss://h:1/a/b/kpasswd"
        );
    }
}
