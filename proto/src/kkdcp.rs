//! The MS-KKDCP message (Kerberos KDC Proxy Protocol, \[MS-KKDCP\] §2.2.2):
//!
//! ```text
//! KDC-PROXY-MESSAGE ::= SEQUENCE {
//!     kerb-message   [0] OCTET STRING,
//!     target-domain  [1] KERB-REALM OPTIONAL,   -- GeneralString
//!     dclocator-hint [2] INTEGER OPTIONAL
//! }
//! ```
//!
//! `kerb-message` holds the Kerberos message exactly as it would travel
//! over TCP: with its 4-byte length prefix (RFC 4120 §7.2.2). A client POSTs
//! one such message (`Content-Type: application/kerberos`); the proxy
//! answers with one holding the KDC's framed reply.
//!
//! [`decode`] is strict: definite DER only, the fields in order, nothing
//! after them, a length prefix that matches the message, and a printable
//! `target-domain`.

use crate::der::{self, DerError, Reader, Tag};
use crate::framing::HEADER_LEN;
use std::fmt;

/// Longest `target-domain` accepted (the same bound as a request's realm).
pub const MAX_TARGET_DOMAIN_LEN: usize = crate::kerberos::MAX_REALM_LEN;

/// Bytes a KDC-PROXY-MESSAGE adds around its framed Kerberos message, at
/// most: the SEQUENCE and `[0]` headers, the OCTET STRING header (lengths
/// up to 4 bytes each), a `target-domain` of the largest accepted size and
/// a `dclocator-hint`. A body limit of `max_record_size + HEADER_LEN +
/// MAX_OVERHEAD` admits every request whose record fits `max_record_size`.
pub const MAX_OVERHEAD: usize = 3 * 6 + (2 * 4 + MAX_TARGET_DOMAIN_LEN) + (2 + 2 + 8);

/// A decoded KDC-PROXY-MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyMessage<'a> {
    /// The Kerberos message, its length prefix checked and removed.
    pub message: &'a [u8],
    /// The realm the client addressed, when it said.
    pub target_domain: Option<String>,
    /// The client's DC locator flags (Windows), when present; unused.
    pub dclocator_hint: Option<i64>,
}

/// Why a body is not a KDC-PROXY-MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KkdcpError {
    /// The DER does not parse as the structure.
    Der(DerError),
    /// `kerb-message` has no length prefix, a wrong one, or nothing after it.
    BadFraming,
    /// `target-domain` is empty, too long or not printable.
    BadTargetDomain,
}

impl fmt::Display for KkdcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KkdcpError::Der(e) => write!(f, "malformed KDC-PROXY-MESSAGE: {e}"),
            KkdcpError::BadFraming => {
                f.write_str("KDC-PROXY-MESSAGE kerb-message: length prefix missing or not matching")
            }
            KkdcpError::BadTargetDomain => {
                f.write_str("KDC-PROXY-MESSAGE target-domain is empty, too long or not printable")
            }
        }
    }
}

impl std::error::Error for KkdcpError {}

impl From<DerError> for KkdcpError {
    fn from(e: DerError) -> Self {
        KkdcpError::Der(e)
    }
}

/// Decodes a request body.
pub fn decode(body: &[u8]) -> Result<ProxyMessage<'_>, KkdcpError> {
    let mut outer = Reader::new(body);
    let seq = outer.expect(Tag::SEQUENCE)?;
    outer.finish()?;
    let mut fields = Reader::new(seq);

    let wrapped = fields.expect(Tag::context(0))?;
    let mut r = Reader::new(wrapped);
    let framed = r.expect(Tag::OCTET_STRING)?;
    r.finish()?;

    let target_domain = match fields.optional(Tag::context(1))? {
        None => None,
        Some(wrapped) => {
            let mut r = Reader::new(wrapped);
            let bytes = r.expect(Tag::GENERAL_STRING)?;
            r.finish()?;
            Some(printable(bytes).ok_or(KkdcpError::BadTargetDomain)?)
        }
    };
    let dclocator_hint = match fields.optional(Tag::context(2))? {
        None => None,
        Some(wrapped) => {
            let mut r = Reader::new(wrapped);
            let value = der::parse_integer(r.expect(Tag::INTEGER)?)?;
            r.finish()?;
            Some(value)
        }
    };
    fields.finish()?;

    let (prefix, message) = framed
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(KkdcpError::BadFraming)?;
    let claimed = u32::from_be_bytes(*prefix);
    if message.is_empty() || usize::try_from(claimed).ok() != Some(message.len()) {
        return Err(KkdcpError::BadFraming);
    }
    Ok(ProxyMessage {
        message,
        target_domain,
        dclocator_hint,
    })
}

/// Encodes a reply: a KDC-PROXY-MESSAGE holding `framed_reply` (the KDC's
/// reply with its 4-byte length prefix) and no other field.
pub fn encode(framed_reply: &[u8]) -> Result<Vec<u8>, DerError> {
    let mut octets = Vec::new();
    der::write_tlv(&mut octets, 0x04, framed_reply)?;
    let mut field = Vec::new();
    der::write_tlv(&mut field, 0xa0, &octets)?;
    let mut out = Vec::new();
    der::write_tlv(&mut out, 0x30, &field)?;
    Ok(out)
}

/// Encodes a request (what a client sends): `message` gets its length
/// prefix; `target_domain` is included when given.
pub fn encode_request(message: &[u8], target_domain: Option<&str>) -> Result<Vec<u8>, DerError> {
    let framed = crate::framing::try_encode(message).map_err(|_| DerError::BadLength)?;
    let mut octets = Vec::new();
    der::write_tlv(&mut octets, 0x04, &framed)?;
    let mut fields = Vec::new();
    der::write_tlv(&mut fields, 0xa0, &octets)?;
    if let Some(domain) = target_domain {
        let mut s = Vec::new();
        der::write_tlv(&mut s, 0x1b, domain.as_bytes())?;
        der::write_tlv(&mut fields, 0xa1, &s)?;
    }
    let mut out = Vec::new();
    der::write_tlv(&mut out, 0x30, &fields)?;
    Ok(out)
}

fn printable(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() || bytes.len() > MAX_TARGET_DOMAIN_LEN {
        return None;
    }
    let s = std::str::from_utf8(bytes).ok()?;
    if s.chars().any(char::is_control) {
        return None;
    }
    Some(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{self, ctx, general_string, integer, seq, tlv};

    #[test]
    fn request_round_trip() {
        let req = samples::as_req("EXAMPLE.COM");
        let body = encode_request(&req, Some("EXAMPLE.COM")).unwrap();
        let m = decode(&body).unwrap();
        assert_eq!(m.message, &req[..]);
        assert_eq!(m.target_domain.as_deref(), Some("EXAMPLE.COM"));
        assert_eq!(m.dclocator_hint, None);
        let body = encode_request(&req, None).unwrap();
        assert_eq!(decode(&body).unwrap().target_domain, None);
    }

    #[test]
    fn reply_encoding() {
        let framed = crate::framing::encode(b"reply");
        let body = encode(&framed).unwrap();
        assert_eq!(body[0], 0x30);
        assert_eq!(decode(&body).unwrap().message, b"reply");
        // A large reply gets long-form lengths.
        let big = crate::framing::encode(&vec![7; 70_000]);
        assert_eq!(
            decode(&encode(&big).unwrap()).unwrap().message.len(),
            70_000
        );
    }

    #[test]
    fn windows_style_hint_is_accepted() {
        let framed = crate::framing::encode(b"x");
        let body = seq(&[
            ctx(0, &tlv(0x04, &framed)),
            ctx(1, &general_string("EXAMPLE.COM")),
            ctx(2, &integer(0x40)),
        ]);
        assert_eq!(decode(&body).unwrap().dclocator_hint, Some(0x40));
    }

    #[test]
    fn bad_messages_are_refused() {
        let framed = crate::framing::encode(b"abc");
        let cases: Vec<(Vec<u8>, KkdcpError)> = vec![
            // The length prefix disagrees with the content.
            (
                seq(&[ctx(0, &tlv(0x04, &[0, 0, 0, 9, 1, 2, 3]))]),
                KkdcpError::BadFraming,
            ),
            // No content after the prefix.
            (
                seq(&[ctx(0, &tlv(0x04, &[0, 0, 0, 0]))]),
                KkdcpError::BadFraming,
            ),
            // Shorter than a prefix.
            (seq(&[ctx(0, &tlv(0x04, &[0, 0]))]), KkdcpError::BadFraming),
            // Fields out of order.
            (
                seq(&[ctx(1, &general_string("A")), ctx(0, &tlv(0x04, &framed))]),
                KkdcpError::Der(DerError::UnexpectedTag {
                    expected: Tag::context(0),
                    found: Some(Tag::context(1)),
                }),
            ),
            // An unknown field.
            (
                seq(&[ctx(0, &tlv(0x04, &framed)), ctx(3, &integer(1))]),
                KkdcpError::Der(DerError::TrailingData),
            ),
            // A control character in the domain.
            (
                seq(&[ctx(0, &tlv(0x04, &framed)), ctx(1, &general_string("A\nB"))]),
                KkdcpError::BadTargetDomain,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(decode(&body).unwrap_err(), want, "{body:02x?}");
        }
        let mut trailing = encode_request(b"x", None).unwrap();
        trailing.push(0);
        assert_eq!(
            decode(&trailing).unwrap_err(),
            KkdcpError::Der(DerError::TrailingData)
        );
        let body = encode_request(&samples::as_req("A.ORG"), Some("A.ORG")).unwrap();
        for n in 0..body.len() {
            assert!(decode(&body[..n]).is_err(), "prefix {n} accepted");
        }
    }

    #[test]
    fn overhead_bound_covers_the_largest_request() {
        let message = vec![0x6a; 1000];
        let domain = "D".repeat(MAX_TARGET_DOMAIN_LEN);
        let fields = seq(&[
            ctx(0, &tlv(0x04, &crate::framing::encode(&message))),
            ctx(1, &general_string(&domain)),
            ctx(2, &tlv(0x02, &[0x7f; 8])),
        ]);
        assert!(fields.len() <= message.len() + HEADER_LEN + MAX_OVERHEAD);
    }
}
