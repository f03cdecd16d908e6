//! Parsing of the addresses the proxy is configured with: listen addresses
//! (`IP:PORT`) and upstream servers (`HOST[:PORT]`), and of the
//! `REALM=HOST[:PORT]` form the command line uses.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Default port of a KDC (RFC 4120).
pub const KDC_PORT: u16 = 88;
/// Default port of a kpasswd server (RFC 3244).
pub const KPASSWD_PORT: u16 = 464;

/// Longest host name accepted (RFC 1035: 253 characters in text form).
const MAX_HOST_LEN: usize = 253;

/// The host part of an upstream server address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A literal IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name, resolved at every exchange.
    Name(String),
}

/// An upstream server: a KDC or a kpasswd server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Where it is.
    pub host: Host,
    /// Its TCP port.
    pub port: u16,
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}:{}", self.port),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Parses `HOST[:PORT]`: a DNS name, an IPv4 address, `[IPv6]` or a bare
/// IPv6 address (then without port), with `default_port` when no port is
/// given.
pub fn parse_server(s: &str, default_port: u16) -> Result<ServerAddr, String> {
    if s.is_empty() {
        return Err("empty server address".into());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ']' after an IPv6 address"))?;
        let ip: Ipv6Addr = ip
            .parse()
            .map_err(|_| format!("{s:?}: {ip:?} is not an IPv6 address"))?;
        let port = match after {
            "" => default_port,
            p => parse_port(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{s:?}: expected ':PORT' after ']'"))?,
                s,
            )?,
        };
        return Ok(ServerAddr {
            host: Host::Ip(IpAddr::V6(ip)),
            port,
        });
    }
    if s.matches(':').count() > 1 {
        // A bare IPv6 address: no port possible without brackets.
        let ip: Ipv6Addr = s.parse().map_err(|_| {
            format!("{s:?} is not an IPv6 address (write [IPv6]:PORT to give a port)")
        })?;
        return Ok(ServerAddr {
            host: Host::Ip(IpAddr::V6(ip)),
            port: default_port,
        });
    }
    let (host, port) = match s.split_once(':') {
        Some((h, p)) => (h, parse_port(p, s)?),
        None => (s, default_port),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerAddr {
            host: Host::Ip(ip),
            port,
        });
    }
    check_host_name(host).map_err(|why| format!("{s:?}: {why}"))?;
    Ok(ServerAddr {
        host: Host::Name(host.to_ascii_lowercase()),
        port,
    })
}

fn parse_port(p: &str, whole: &str) -> Result<u16, String> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{whole:?}: {p:?} is not a port number (1-65535)")),
        Ok(port) => Ok(port),
    }
}

/// Accepts DNS names made of letters, digits, '-', '_' and '.'.
fn check_host_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host name".into());
    }
    if host.len() > MAX_HOST_LEN {
        return Err("host name too long".into());
    }
    let ok = host.split('.').enumerate().all(|(i, label)| {
        // A single trailing dot (fully qualified) is allowed.
        (!label.is_empty() || (i > 0 && host.ends_with('.') && host.len() > 1))
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if ok && !host.starts_with('.') && !host.contains("..") {
        Ok(())
    } else {
        Err(format!("{host:?} is not a valid host name"))
    }
}

/// Parses a listen address: `IPv4:PORT` or `[IPv6]:PORT` (port 0 picks a
/// free port).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?} is not a listen address (expected IPv4:PORT or [IPv6]:PORT)"))
}

/// Checks a realm name: non-empty, at most 255 bytes, printable, no spaces.
pub fn check_realm(realm: &str) -> Result<(), String> {
    if realm.is_empty() {
        return Err("empty realm name".into());
    }
    if realm.len() > krb5_wss_proto::kerberos::MAX_REALM_LEN {
        return Err(format!("realm name {realm:?} is too long"));
    }
    if realm.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "realm name {realm:?} holds spaces or control characters"
        ));
    }
    Ok(())
}

/// What `--realm REALM=dns` / `--kpasswd REALM=dns` stands for in the
/// command line's list: discovery in DNS (port 0 is never a server's; a
/// host named `dns` is written `dns.` or `dns:88`).
pub fn dns_marker() -> ServerAddr {
    ServerAddr {
        host: Host::Name("dns".into()),
        port: 0,
    }
}

/// Parses `REALM=HOST[:PORT]` (or `REALM=dns`) as given to `--realm` and
/// `--kpasswd`.
pub fn parse_realm_server(s: &str, default_port: u16) -> Result<(String, ServerAddr), String> {
    let (realm, server) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected REALM=HOST[:PORT]"))?;
    check_realm(realm).map_err(|e| format!("{s:?}: {e}"))?;
    if server == "dns" {
        return Ok((realm.to_string(), dns_marker()));
    }
    let server = parse_server(server, default_port).map_err(|e| format!("{s:?}: {e}"))?;
    Ok((realm.to_string(), server))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn server_forms_and_default_ports() {
        let cases = [
            ("kdc.example.com", Host::Name("kdc.example.com".into()), 88),
            (
                "KDC.Example.com:750",
                Host::Name("kdc.example.com".into()),
                750,
            ),
            (
                "kdc.example.com.",
                Host::Name("kdc.example.com.".into()),
                88,
            ),
            ("localhost", Host::Name("localhost".into()), 88),
            ("192.0.2.1", ip("192.0.2.1"), 88),
            ("192.0.2.1:1088", ip("192.0.2.1"), 1088),
            ("[2001:db8::1]", ip("2001:db8::1"), 88),
            ("[2001:db8::1]:8888", ip("2001:db8::1"), 8888),
            ("::1", ip("::1"), 88),
            ("2001:db8::2", ip("2001:db8::2"), 88),
        ];
        for (input, host, port) in cases {
            assert_eq!(
                parse_server(input, KDC_PORT).unwrap(),
                ServerAddr { host, port },
                "{input}"
            );
        }
        assert_eq!(parse_server("kdc", KPASSWD_PORT).unwrap().port, 464);
    }

    #[test]
    fn bad_servers() {
        for bad in [
            "",
            ":88",
            "kdc:",
            "kdc:0",
            "kdc:65536",
            "kdc:http",
            "[::1",
            "[::1]88",
            "[example.com]:88",
            "2001:db8::zz",
            "kdc example.com",
            "kdc/x",
            "a..b",
            ".a",
        ] {
            assert!(parse_server(bad, KDC_PORT).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["kdc.example.com:88", "192.0.2.1:88", "[2001:db8::1]:464"] {
            assert_eq!(parse_server(s, 1).unwrap().to_string(), s);
        }
    }

    #[test]
    fn realm_server_pairs() {
        let (realm, server) = parse_realm_server("EXAMPLE.COM=kdc.example.com:88", 88).unwrap();
        assert_eq!(realm, "EXAMPLE.COM");
        assert_eq!(server.to_string(), "kdc.example.com:88");
        let (realm, server) = parse_realm_server("Example.Com=[::1]", 464).unwrap();
        assert_eq!(realm, "Example.Com");
        assert_eq!(server.to_string(), "[::1]:464");
        for bad in [
            "EXAMPLE.COM",
            "=kdc",
            "EXAMPLE.COM=",
            "EX AMPLE=kdc",
            "R=kdc:x",
        ] {
            let err = parse_realm_server(bad, 88).unwrap_err();
            assert!(err.contains(bad), "{err} should name {bad}");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("127.0.0.1:0").unwrap(),
            "127.0.0.1:0".parse().unwrap()
        );
        assert_eq!(parse_listen("[::]:443").unwrap().port(), 443);
        for bad in ["127.0.0.1", "localhost:443", "::1:443", ""] {
            assert!(parse_listen(bad).is_err(), "{bad:?} accepted");
        }
    }
}
