//! DNS answers for SRV and URI records: parsing and ordering.
//!
//! The query itself is made by the system resolver library (libresolv's
//! `res_nquery`, through the FFI layer), exactly as MIT libkrb5 makes its
//! own `_kerberos` lookups: the same resolv.conf semantics, no threads, no
//! async runtime inside the host process. This module parses the raw
//! answer (bounds-checked, compression pointers bounded) and orders the
//! records by priority and RFC 2782 weight.

use std::fmt;

/// DNS record type SRV (RFC 2782).
pub const TYPE_SRV: u16 = 33;
/// DNS record type URI (RFC 7553).
pub const TYPE_URI: u16 = 256;
const TYPE_SOA: u16 = 6;
const CLASS_IN: u16 = 1;

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower is preferred.
    pub priority: u16,
    /// Relative weight among records of the same priority.
    pub weight: u16,
    /// Port of the service.
    pub port: u16,
    /// Target host, without the trailing dot; "." (empty) means "no service".
    pub target: String,
}

/// One URI record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri {
    /// Lower is preferred.
    pub priority: u16,
    /// Relative weight among records of the same priority.
    pub weight: u16,
    /// The target URI text.
    pub target: String,
}

/// Records of one type from one answer, with the TTL to cache them for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<T> {
    /// The records, in answer order.
    pub records: Vec<T>,
    /// The smallest TTL among them, in seconds (0 when there are none).
    pub ttl: u32,
}

/// Why an answer could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub &'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed DNS answer: {}", self.0)
    }
}

impl std::error::Error for ParseError {}

struct Cursor<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, ParseError> {
        let b = *self.msg.get(self.pos).ok_or(ParseError("truncated"))?;
        self.pos += 1;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError("truncated"))?;
        let b = self.msg.get(self.pos..end).ok_or(ParseError("truncated"))?;
        self.pos = end;
        Ok(b)
    }
}

/// Reads a (possibly compressed) domain name starting at `pos`; returns
/// the name (dotted, no trailing dot) and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), ParseError> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *msg.get(pos).ok_or(ParseError("truncated name"))?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok((name, end.unwrap_or(pos + 1)));
                }
                let label = msg
                    .get(pos + 1..pos + 1 + usize::from(len))
                    .ok_or(ParseError("truncated label"))?;
                if !name.is_empty() {
                    name.push('.');
                }
                for &b in label {
                    if b.is_ascii_graphic() && b != b'.' {
                        name.push(char::from(b));
                    } else {
                        return Err(ParseError("unsupported character in a name"));
                    }
                }
                if name.len() > 253 {
                    return Err(ParseError("name too long"));
                }
                pos += 1 + usize::from(len);
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(ParseError("truncated pointer"))?;
                if end.is_none() {
                    end = Some(pos + 2);
                }
                jumps += 1;
                if jumps > 32 {
                    return Err(ParseError("compression loop"));
                }
                pos = (usize::from(len & 0x3f) << 8) | usize::from(lo);
            }
            _ => return Err(ParseError("unknown label type")),
        }
    }
}

/// A parsed resource record header plus its rdata bounds.
struct Rr {
    rtype: u16,
    class: u16,
    ttl: u32,
    rdata_start: usize,
    rdata_len: usize,
}

fn read_rr(c: &mut Cursor<'_>) -> Result<Rr, ParseError> {
    let (_, after) = read_name(c.msg, c.pos)?;
    c.pos = after;
    let rtype = c.u16()?;
    let class = c.u16()?;
    let ttl = c.u32()?;
    let rdata_len = usize::from(c.u16()?);
    let rdata_start = c.pos;
    c.bytes(rdata_len)?;
    Ok(Rr {
        rtype,
        class,
        ttl,
        rdata_start,
        rdata_len,
    })
}

/// Walks the answer section, handing each IN record of type `want` to `f`.
fn each_answer<T>(
    msg: &[u8],
    want: u16,
    mut f: impl FnMut(&[u8], usize, usize) -> Result<T, ParseError>,
) -> Result<Answer<T>, ParseError> {
    let mut c = Cursor { msg, pos: 0 };
    let _id = c.u16()?;
    let flags = c.u16()?;
    if flags & 0x8000 == 0 {
        return Err(ParseError("not a response"));
    }
    let qd = c.u16()?;
    let an = c.u16()?;
    let _ns = c.u16()?;
    let _ar = c.u16()?;
    for _ in 0..qd {
        let (_, after) = read_name(msg, c.pos)?;
        c.pos = after;
        c.bytes(4)?;
    }
    let mut records = Vec::new();
    let mut ttl = u32::MAX;
    for _ in 0..an {
        let rr = read_rr(&mut c)?;
        if rr.rtype == want && rr.class == CLASS_IN {
            records.push(f(msg, rr.rdata_start, rr.rdata_len)?);
            ttl = ttl.min(rr.ttl);
        }
    }
    if records.is_empty() {
        ttl = 0;
    }
    Ok(Answer { records, ttl })
}

/// Parses the SRV records of a DNS response.
pub fn parse_srv(msg: &[u8]) -> Result<Answer<Srv>, ParseError> {
    each_answer(msg, TYPE_SRV, |msg, start, len| {
        if len < 7 {
            return Err(ParseError("short SRV record"));
        }
        let mut c = Cursor { msg, pos: start };
        let priority = c.u16()?;
        let weight = c.u16()?;
        let port = c.u16()?;
        let (target, after) = read_name(msg, c.pos)?;
        if after > start + len {
            return Err(ParseError("SRV target overruns its record"));
        }
        Ok(Srv {
            priority,
            weight,
            port,
            target,
        })
    })
}

/// Parses the URI records of a DNS response.
pub fn parse_uri(msg: &[u8]) -> Result<Answer<Uri>, ParseError> {
    each_answer(msg, TYPE_URI, |msg, start, len| {
        if len < 5 {
            return Err(ParseError("short URI record"));
        }
        let mut c = Cursor { msg, pos: start };
        let priority = c.u16()?;
        let weight = c.u16()?;
        let target = c.bytes(len - 4)?;
        let target =
            std::str::from_utf8(target).map_err(|_| ParseError("URI target is not UTF-8"))?;
        Ok(Uri {
            priority,
            weight,
            target: target.to_string(),
        })
    })
}

/// The negative-caching TTL of a response without answers: the SOA
/// record's minimum (RFC 2308), bounded by the SOA's own TTL.
pub fn negative_ttl(msg: &[u8]) -> Option<u32> {
    let mut c = Cursor { msg, pos: 0 };
    c.bytes(4).ok()?;
    let qd = c.u16().ok()?;
    let an = c.u16().ok()?;
    let ns = c.u16().ok()?;
    c.u16().ok()?;
    for _ in 0..qd {
        let (_, after) = read_name(msg, c.pos).ok()?;
        c.pos = after;
        c.bytes(4).ok()?;
    }
    for _ in 0..an {
        read_rr(&mut c).ok()?;
    }
    for _ in 0..ns {
        let rr = read_rr(&mut c).ok()?;
        if rr.rtype == TYPE_SOA {
            // SOA: mname, rname, serial, refresh, retry, expire, minimum.
            let (_, p) = read_name(msg, rr.rdata_start).ok()?;
            let (_, p) = read_name(msg, p).ok()?;
            let mut s = Cursor { msg, pos: p + 16 };
            let minimum = s.u32().ok()?;
            return Some(minimum.min(rr.ttl));
        }
    }
    None
}

pub use krb5_wss_proto::srv::{order_by_priority_and_weight, random_u32};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A name in DNS wire form (uncompressed labels).
    pub(crate) fn name(n: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for l in n.split('.').filter(|l| !l.is_empty()) {
            out.push(l.len() as u8);
            out.extend(l.as_bytes());
        }
        out.push(0);
        out
    }

    /// A DNS response to `qname`/`qtype` with the given answer and authority records.
    pub(crate) fn response(
        qname: &str,
        qtype: u16,
        answers: &[(u16, u32, Vec<u8>)],
        authority: &[(u16, u32, Vec<u8>)],
    ) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
        m.extend((answers.len() as u16).to_be_bytes());
        m.extend((authority.len() as u16).to_be_bytes());
        m.extend([0, 0]);
        m.extend(name(qname));
        m.extend(qtype.to_be_bytes());
        m.extend(CLASS_IN.to_be_bytes());
        for (t, ttl, rdata) in answers.iter().chain(authority) {
            m.extend([0xc0, 12]); // pointer to the question name
            m.extend(t.to_be_bytes());
            m.extend(CLASS_IN.to_be_bytes());
            m.extend(ttl.to_be_bytes());
            m.extend((rdata.len() as u16).to_be_bytes());
            m.extend(rdata);
        }
        m
    }

    /// SRV RDATA: priority, weight, port, target.
    pub(crate) fn srv_rdata(p: u16, w: u16, port: u16, target: &str) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend(p.to_be_bytes());
        r.extend(w.to_be_bytes());
        r.extend(port.to_be_bytes());
        r.extend(name(target));
        r
    }

    /// URI RDATA: priority, weight, target.
    pub(crate) fn uri_rdata(p: u16, w: u16, target: &str) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend(p.to_be_bytes());
        r.extend(w.to_be_bytes());
        r.extend(target.as_bytes());
        r
    }

    #[test]
    fn parses_srv_records_and_min_ttl() {
        let msg = response(
            "_kerberos._wss.example.com",
            TYPE_SRV,
            &[
                (TYPE_SRV, 300, srv_rdata(10, 5, 443, "kdc1.example.com")),
                (TYPE_SRV, 60, srv_rdata(20, 0, 8443, "kdc2.example.com")),
            ],
            &[],
        );
        let a = parse_srv(&msg).unwrap();
        assert_eq!(a.ttl, 60);
        assert_eq!(
            a.records[0],
            Srv {
                priority: 10,
                weight: 5,
                port: 443,
                target: "kdc1.example.com".into()
            }
        );
        assert_eq!(a.records[1].port, 8443);
    }

    #[test]
    fn root_target_is_empty() {
        let msg = response(
            "_kerberos._wss.x",
            TYPE_SRV,
            &[(TYPE_SRV, 5, srv_rdata(0, 0, 0, "."))],
            &[],
        );
        assert_eq!(parse_srv(&msg).unwrap().records[0].target, "");
    }

    #[test]
    fn parses_uri_records() {
        let msg = response(
            "_kerberos.EXAMPLE.COM",
            TYPE_URI,
            &[
                (
                    TYPE_URI,
                    120,
                    uri_rdata(1, 10, "krb5srv:m:wss:wss://kdc.example.com/kdc"),
                ),
                (
                    TYPE_URI,
                    120,
                    uri_rdata(2, 0, "krb5srv::tcp:kdc.example.com"),
                ),
            ],
            &[],
        );
        let a = parse_uri(&msg).unwrap();
        assert_eq!(a.ttl, 120);
        assert_eq!(
            a.records[0].target,
            "krb5srv:m:wss:wss://kdc.example.com/kdc"
        );
        assert_eq!(a.records[1].priority, 2);
    }

    #[test]
    fn other_types_are_skipped() {
        let msg = response(
            "x",
            TYPE_URI,
            &[
                (5, 10, name("alias.example")),
                (TYPE_URI, 10, uri_rdata(1, 1, "u")),
            ],
            &[],
        );
        assert_eq!(parse_uri(&msg).unwrap().records.len(), 1);
        assert!(parse_srv(&msg).unwrap().records.is_empty());
    }

    #[test]
    fn negative_ttl_from_soa() {
        let mut soa = name("ns.example");
        soa.extend(name("hostmaster.example"));
        soa.extend([0u8; 16]);
        soa.extend(30u32.to_be_bytes());
        let msg = response("_kerberos.NONE", TYPE_URI, &[], &[(TYPE_SOA, 3600, soa)]);
        assert_eq!(negative_ttl(&msg), Some(30));
        assert_eq!(parse_uri(&msg).unwrap().records.len(), 0);
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let msg = response(
            "_kerberos._wss.x",
            TYPE_SRV,
            &[(TYPE_SRV, 5, srv_rdata(1, 1, 1, "a.b"))],
            &[],
        );
        for n in 0..msg.len() {
            let _ = parse_srv(&msg[..n]);
            let _ = parse_uri(&msg[..n]);
            let _ = negative_ttl(&msg[..n]);
        }
        // A compression pointer to itself.
        let mut looped = msg.clone();
        let at = looped.len() - srv_rdata(1, 1, 1, "a.b").len() - 12;
        looped[at] = 0xc0;
        looped[at + 1] = at as u8;
        assert!(parse_srv(&looped).is_err());
        // Not a response.
        let mut q = msg;
        q[2] = 0x01;
        assert_eq!(parse_srv(&q).unwrap_err(), ParseError("not a response"));
    }

    #[test]
    fn ordering_by_priority_is_stable() {
        let recs = vec![(2, 0, "c"), (1, 0, "a"), (1, 0, "b"), (3, 0, "d")];
        let out = order_by_priority_and_weight(&recs, |r| (r.0, r.1), || 0);
        assert_eq!(
            out.iter().map(|r| r.2).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
    }

    #[test]
    fn weights_bias_the_first_pick() {
        let recs = vec![(1u16, 1u16, "light"), (1, 99, "heavy"), (0, 0, "first")];
        let mut seed = 12345u32;
        let mut rng = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let mut heavy_first = 0;
        for _ in 0..1000 {
            let out = order_by_priority_and_weight(&recs, |r| (r.0, r.1), &mut rng);
            assert_eq!(out[0].2, "first");
            assert_eq!(out.len(), 3);
            if out[1].2 == "heavy" {
                heavy_first += 1;
            }
        }
        assert!(heavy_first > 950, "{heavy_first}");
    }

    #[test]
    fn random_values_vary() {
        let a: Vec<u32> = (0..8).map(|_| random_u32()).collect();
        assert!(a.iter().any(|v| *v != a[0]));
    }
}
