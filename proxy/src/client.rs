//! Who a client is: its address as logged and as counted for the
//! per-address connection limit, and how `X-Forwarded-For` from a trusted
//! front (a TLS-terminating web server) changes that.
//!
//! `X-Forwarded-For` is honoured only when the TCP peer is inside one of
//! the configured trusted networks; then the header's addresses are read
//! from the right (the nearest hop first), skipping addresses that are
//! themselves trusted, and the first untrusted one is the client. A client
//! can put anything in the header, but only to the left of what the
//! trusted front appends, and that part is never read past an untrusted
//! address.

use hyper::header::HeaderMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Most `X-Forwarded-For` entries looked at (a longer chain is cut to its
/// rightmost entries).
const MAX_FORWARDED_HOPS: usize = 16;

/// A client as the proxy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client {
    /// The client's address.
    pub ip: IpAddr,
    /// Its port, when the proxy saw the TCP connection itself (not when
    /// the address came from `X-Forwarded-For`).
    pub port: Option<u16>,
}

impl Client {
    /// The client of a direct TCP connection.
    pub fn direct(peer: SocketAddr) -> Client {
        Client {
            ip: canonical(peer.ip()),
            port: Some(peer.port()),
        }
    }

    /// The key under which this client's connections are counted.
    pub fn key(&self) -> AddrKey {
        AddrKey::of(self.ip)
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => SocketAddr::new(self.ip, port).fmt(f),
            None => self.ip.fmt(f),
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, what a dual-stack
/// listener reports for IPv4 clients) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The unit of the per-address limit: an IPv4 address, or an IPv6 /64
/// (one IPv6 host usually owns a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> AddrKey {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                AddrKey(IpAddr::V6(Ipv6Addr::new(
                    s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                )))
            }
            v4 => AddrKey(v4),
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
            v4 => v4.fmt(f),
        }
    }
}

/// An address range: `IP` or `IP/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `192.0.2.0/24`, `127.0.0.1`, `::1`, `2001:db8::/32`.
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("{s:?} is not an address or network (IP or IP/PREFIX)"))?;
        let addr = canonical(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }

    /// True when `ip` is inside this range.
    /// True for a network of every address (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.prefix == 0
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// The client of a request that arrived from `peer` with `headers`:
/// `peer` itself, unless `peer` is trusted and the request carries a
/// usable `X-Forwarded-For`.
pub fn identify(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Client {
    let direct = Client::direct(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(direct.ip) {
        return direct;
    }
    let mut entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.len() > MAX_FORWARDED_HOPS {
        entries.drain(..entries.len() - MAX_FORWARDED_HOPS);
    }
    let mut found = None;
    for entry in entries.iter().rev() {
        let Some(ip) = parse_forwarded_ip(entry) else {
            // Garbage where a trusted hop should have written an address:
            // stop at the last good one.
            break;
        };
        found = Some(ip);
        if !is_trusted(ip) {
            break;
        }
    }
    match found {
        Some(ip) => Client { ip, port: None },
        None => direct,
    }
}

/// One `X-Forwarded-For` entry: `IP`, `IPv4:PORT` or `[IPv6]:PORT`.
fn parse_forwarded_ip(entry: &str) -> Option<IpAddr> {
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    entry.parse::<SocketAddr>().ok().map(|s| canonical(s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| IpNet::parse(s).unwrap()).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn networks() {
        let n = IpNet::parse("192.0.2.0/24").unwrap();
        assert!(n.contains("192.0.2.77".parse().unwrap()));
        assert!(!n.contains("192.0.3.1".parse().unwrap()));
        assert!(n.contains("::ffff:192.0.2.1".parse().unwrap()));
        let n = IpNet::parse("2001:db8::/33").unwrap();
        assert!(n.contains("2001:db8:7fff::1".parse().unwrap()));
        assert!(!n.contains("2001:db8:8000::1".parse().unwrap()));
        assert!(!n.contains("192.0.2.1".parse().unwrap()));
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("203.0.113.9".parse().unwrap()));
        assert_eq!(IpNet::parse("::1").unwrap().to_string(), "::1/128");
        for bad in [
            "",
            "localhost",
            "10.0.0.0/33",
            "::/129",
            "1.2.3.4/x",
            "1.2.3.4/",
        ] {
            assert!(IpNet::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn untrusted_peers_are_taken_as_they_are() {
        let peer: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let c = identify(peer, &xff(&["198.51.100.1"]), &nets(&["127.0.0.1"]));
        assert_eq!(c, Client::direct(peer));
        assert_eq!(c.to_string(), "203.0.113.9:5000");
    }

    #[test]
    fn trusted_front_names_the_client() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let trusted = nets(&["127.0.0.0/8", "10.0.0.0/8"]);
        let c = identify(peer, &xff(&["198.51.100.1"]), &trusted);
        assert_eq!(c.to_string(), "198.51.100.1");
        // A forged entry to the left of the real one is never reached.
        let c = identify(peer, &xff(&["6.6.6.6, 198.51.100.1"]), &trusted);
        assert_eq!(c.ip.to_string(), "198.51.100.1");
        // Trusted hops are skipped, right to left; several headers join.
        let c = identify(
            peer,
            &xff(&["198.51.100.1, 10.1.1.1", "10.2.2.2"]),
            &trusted,
        );
        assert_eq!(c.ip.to_string(), "198.51.100.1");
        // Ports and brackets.
        let c = identify(peer, &xff(&["[2001:db8::5]:443"]), &trusted);
        assert_eq!(c.ip.to_string(), "2001:db8::5");
        let c = identify(peer, &xff(&["198.51.100.2:1234"]), &trusted);
        assert_eq!(c.ip.to_string(), "198.51.100.2");
        // No header, or garbage: the peer.
        assert_eq!(identify(peer, &xff(&[]), &trusted), Client::direct(peer));
        assert_eq!(
            identify(peer, &xff(&["unknown"]), &trusted),
            Client::direct(peer)
        );
        // Garbage left of a good address stops the walk there.
        let c = identify(peer, &xff(&["junk, 10.9.9.9"]), &trusted);
        assert_eq!(c.ip.to_string(), "10.9.9.9");
    }

    #[test]
    fn ipv6_clients_count_by_slash_64() {
        let a = AddrKey::of("2001:db8:1:2:aaaa::1".parse().unwrap());
        let b = AddrKey::of("2001:db8:1:2:bbbb::2".parse().unwrap());
        let c = AddrKey::of("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            AddrKey::of("::ffff:192.0.2.1".parse().unwrap()),
            AddrKey::of("192.0.2.1".parse().unwrap())
        );
    }
}
