//! Checks that a record is a Kerberos request a proxy may forward, and
//! reads the realm it is addressed to.
//!
//! - On the KDC path: an AS-REQ (`[APPLICATION 10]`) or TGS-REQ
//!   (`[APPLICATION 12]`), pvno 5, a msg-type matching its tag, and a
//!   `req-body` whose `realm` is the realm whose KDC must answer (RFC 4120
//!   §5.4.1: for a TGS-REQ it is the server's realm, i.e. the realm of the
//!   TGT presented, which is the KDC being asked).
//! - On the kpasswd path: an RFC 3244 request, version 0x0001 (change
//!   password) or 0xff80 (set password), whose message-length field matches
//!   the record, holding an AP-REQ then a KRB-PRIV; the realm is the realm
//!   of the ticket inside the AP-REQ (the `kadmin/changepw` service's).
//!
//! Only the fields needed for the decision are decoded; everything read is
//! bounds-checked and the outer structures must account for every byte.

use crate::der::{DerError, Reader, Tag};
use std::fmt;

/// Longest realm name accepted (RFC 4120 allows any length; real realms
/// are short and this bounds what we log and compare).
pub const MAX_REALM_LEN: usize = 255;

/// The kind of a KDC request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdcRequestKind {
    /// Initial authentication (AS-REQ, msg-type 10).
    AsReq,
    /// Ticket-granting request (TGS-REQ, msg-type 12).
    TgsReq,
}

impl KdcRequestKind {
    /// "AS-REQ" or "TGS-REQ".
    pub fn name(self) -> &'static str {
        match self {
            KdcRequestKind::AsReq => "AS-REQ",
            KdcRequestKind::TgsReq => "TGS-REQ",
        }
    }
}

impl fmt::Display for KdcRequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A checked KDC request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdcRequest {
    /// AS-REQ or TGS-REQ.
    pub kind: KdcRequestKind,
    /// The realm from the request body.
    pub realm: String,
}

/// A checked kpasswd request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpasswdRequest {
    /// Protocol version: 0x0001 (change) or 0xff80 (set).
    pub version: u16,
    /// The realm of the ticket in the AP-REQ.
    pub realm: String,
}

/// Why a record is not a request the proxy may forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageError {
    /// The DER does not parse as the expected structure.
    Der(DerError),
    /// Well-formed DER of a kind not allowed here (names what it was).
    NotARequest(String),
    /// A pvno or msg-type field with an unexpected value.
    BadField {
        /// Field name.
        field: &'static str,
        /// Value found.
        value: i64,
    },
    /// The realm is empty, too long, or holds control characters.
    BadRealm,
    /// The RFC 3244 header is inconsistent.
    BadKpasswd(&'static str),
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageError::Der(e) => write!(f, "malformed Kerberos message: {e}"),
            MessageError::NotARequest(what) => write!(f, "not an allowed request: {what}"),
            MessageError::BadField { field, value } => {
                write!(f, "unexpected {field} value {value}")
            }
            MessageError::BadRealm => f.write_str("realm name is empty, too long or not printable"),
            MessageError::BadKpasswd(why) => write!(f, "malformed kpasswd request: {why}"),
        }
    }
}

impl std::error::Error for MessageError {}

impl From<DerError> for MessageError {
    fn from(e: DerError) -> Self {
        MessageError::Der(e)
    }
}

const AS_REQ: u32 = 10;
const TGS_REQ: u32 = 12;
const AP_REQ: u32 = 14;
const KRB_PRIV: u32 = 21;
const TICKET: u32 = 1;

/// Names a top-level Kerberos application tag, for error messages.
fn application_name(number: u32) -> String {
    let name = match number {
        1 => "Ticket",
        10 => "AS-REQ",
        11 => "AS-REP",
        12 => "TGS-REQ",
        13 => "TGS-REP",
        14 => "AP-REQ",
        15 => "AP-REP",
        20 => "KRB-SAFE",
        21 => "KRB-PRIV",
        22 => "KRB-CRED",
        30 => "KRB-ERROR",
        _ => return format!("[APPLICATION {number}]"),
    };
    name.to_string()
}

/// Checks a KDC-path record: an AS-REQ or TGS-REQ; returns kind and realm.
pub fn check_kdc_request(record: &[u8]) -> Result<KdcRequest, MessageError> {
    let mut outer = Reader::new(record);
    let tag = outer.peek_tag()?.ok_or(DerError::Truncated)?;
    let kind = match (tag.class, tag.constructed, tag.number) {
        (crate::der::Class::Application, true, AS_REQ) => KdcRequestKind::AsReq,
        (crate::der::Class::Application, true, TGS_REQ) => KdcRequestKind::TgsReq,
        (crate::der::Class::Application, _, n) => {
            return Err(MessageError::NotARequest(application_name(n)))
        }
        _ => return Err(MessageError::NotARequest(format!("DER tag {tag}"))),
    };
    let body = outer.read_any()?.1;
    outer.finish()?;

    // KDC-REQ ::= SEQUENCE { pvno[1], msg-type[2], padata[3] OPTIONAL, req-body[4] }
    let mut wrapper = Reader::new(body);
    let seq = wrapper.expect(Tag::SEQUENCE)?;
    wrapper.finish()?;
    let mut fields = Reader::new(seq);
    let pvno = fields.context_integer(1)?;
    if pvno != 5 {
        return Err(MessageError::BadField {
            field: "pvno",
            value: pvno,
        });
    }
    let msg_type = fields.context_integer(2)?;
    if msg_type != i64::from(tag.number) {
        return Err(MessageError::BadField {
            field: "msg-type",
            value: msg_type,
        });
    }
    fields.optional(Tag::context(3))?;
    let req_body = fields.expect(Tag::context(4))?;
    fields.finish()?;

    // KDC-REQ-BODY ::= SEQUENCE { kdc-options[0], cname[1] OPTIONAL, realm[2], ... }
    let mut wrapper = Reader::new(req_body);
    let body_seq = wrapper.expect(Tag::SEQUENCE)?;
    wrapper.finish()?;
    let mut body_fields = Reader::new(body_seq);
    body_fields.expect(Tag::context(0))?;
    body_fields.optional(Tag::context(1))?;
    let realm = read_realm(body_fields.expect(Tag::context(2))?)?;
    Ok(KdcRequest { kind, realm })
}

/// Checks a kpasswd-path record (RFC 3244); returns version and realm.
pub fn check_kpasswd_request(record: &[u8]) -> Result<KpasswdRequest, MessageError> {
    if record.len() < 6 {
        return Err(MessageError::BadKpasswd("shorter than its 6-byte header"));
    }
    let msg_len = usize::from(u16::from_be_bytes([record[0], record[1]]));
    let version = u16::from_be_bytes([record[2], record[3]]);
    let ap_req_len = usize::from(u16::from_be_bytes([record[4], record[5]]));
    if msg_len != record.len() {
        return Err(MessageError::BadKpasswd(
            "message length field does not match the record",
        ));
    }
    if version != 0x0001 && version != 0xff80 {
        return Err(MessageError::BadKpasswd(
            "version is neither 0x0001 nor 0xff80",
        ));
    }
    if ap_req_len == 0 || 6 + ap_req_len >= record.len() {
        return Err(MessageError::BadKpasswd(
            "AP-REQ length leaves no room for KRB-PRIV",
        ));
    }
    let ap_req = &record[6..6 + ap_req_len];
    let priv_part = &record[6 + ap_req_len..];

    // AP-REQ ::= [APPLICATION 14] SEQUENCE { pvno[0], msg-type[1],
    //   ap-options[2], ticket[3] Ticket, authenticator[4] }
    let mut outer = Reader::new(ap_req);
    let seq = outer.expect(Tag::application(AP_REQ))?;
    outer.finish()?;
    let mut wrapper = Reader::new(seq);
    let fields_bytes = wrapper.expect(Tag::SEQUENCE)?;
    wrapper.finish()?;
    let mut fields = Reader::new(fields_bytes);
    let pvno = fields.context_integer(0)?;
    if pvno != 5 {
        return Err(MessageError::BadField {
            field: "pvno",
            value: pvno,
        });
    }
    let msg_type = fields.context_integer(1)?;
    if msg_type != i64::from(AP_REQ) {
        return Err(MessageError::BadField {
            field: "msg-type",
            value: msg_type,
        });
    }
    fields.expect(Tag::context(2))?;
    let ticket_wrapper = fields.expect(Tag::context(3))?;
    fields.expect(Tag::context(4))?;
    fields.finish()?;

    // Ticket ::= [APPLICATION 1] SEQUENCE { tkt-vno[0], realm[1], sname[2], enc-part[3] }
    let mut t = Reader::new(ticket_wrapper);
    let ticket = t.expect(Tag::application(TICKET))?;
    t.finish()?;
    let mut t = Reader::new(ticket);
    let ticket_seq = t.expect(Tag::SEQUENCE)?;
    t.finish()?;
    let mut tf = Reader::new(ticket_seq);
    let tkt_vno = tf.context_integer(0)?;
    if tkt_vno != 5 {
        return Err(MessageError::BadField {
            field: "tkt-vno",
            value: tkt_vno,
        });
    }
    let realm = read_realm(tf.expect(Tag::context(1))?)?;

    // KRB-PRIV ::= [APPLICATION 21] ..., exactly filling the rest.
    let mut p = Reader::new(priv_part);
    p.expect(Tag::application(KRB_PRIV))?;
    p.finish()?;
    Ok(KpasswdRequest { version, realm })
}

/// Reads `[n] Realm` contents: a GeneralString of printable characters.
fn read_realm(explicit: &[u8]) -> Result<String, MessageError> {
    let mut r = Reader::new(explicit);
    let bytes = r.expect(Tag::GENERAL_STRING)?;
    r.finish()?;
    if bytes.is_empty() || bytes.len() > MAX_REALM_LEN {
        return Err(MessageError::BadRealm);
    }
    let s = std::str::from_utf8(bytes).map_err(|_| MessageError::BadRealm)?;
    if s.chars().any(char::is_control) {
        return Err(MessageError::BadRealm);
    }
    Ok(s.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Encodes a TLV with a definite DER length.
    pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let n = value.len();
        if n < 0x80 {
            out.push(n as u8);
        } else if n < 0x100 {
            out.extend([0x81, n as u8]);
        } else {
            out.extend([0x82, (n >> 8) as u8, n as u8]);
        }
        out.extend_from_slice(value);
        out
    }

    fn int(n: u8) -> Vec<u8> {
        tlv(0x02, &[n])
    }

    fn ctx(n: u8, value: &[u8]) -> Vec<u8> {
        tlv(0xa0 | n, value)
    }

    fn realm(r: &str) -> Vec<u8> {
        tlv(0x1b, r.as_bytes())
    }

    /// A structurally valid KDC-REQ with the given application tag number.
    pub(crate) fn kdc_req(app: u8, msg_type: u8, realm_name: &str) -> Vec<u8> {
        let kdc_options = ctx(0, &tlv(0x03, &[0, 0x40, 0, 0, 0]));
        let cname = ctx(1, &tlv(0x30, &[]));
        let body = [kdc_options, cname, ctx(2, &realm(realm_name))].concat();
        let fields = [
            ctx(1, &int(5)),
            ctx(2, &int(msg_type)),
            ctx(3, &tlv(0x30, &[])),
            ctx(4, &tlv(0x30, &body)),
        ]
        .concat();
        tlv(0x60 | app, &tlv(0x30, &fields))
    }

    pub(crate) fn kpasswd_req(version: u16, realm_name: &str) -> Vec<u8> {
        let ticket = tlv(
            0x61,
            &tlv(
                0x30,
                &[
                    ctx(0, &int(5)),
                    ctx(1, &realm(realm_name)),
                    ctx(2, &tlv(0x30, &[])),
                    ctx(3, &tlv(0x30, &[])),
                ]
                .concat(),
            ),
        );
        let ap_req = tlv(
            0x6e,
            &tlv(
                0x30,
                &[
                    ctx(0, &int(5)),
                    ctx(1, &int(14)),
                    ctx(2, &tlv(0x03, &[0, 0, 0, 0, 0])),
                    ctx(3, &ticket),
                    ctx(4, &tlv(0x30, &[])),
                ]
                .concat(),
            ),
        );
        let krb_priv = tlv(0x75, &tlv(0x30, &[1, 2, 3]));
        let total = 6 + ap_req.len() + krb_priv.len();
        let mut out = Vec::new();
        out.extend((total as u16).to_be_bytes());
        out.extend(version.to_be_bytes());
        out.extend((ap_req.len() as u16).to_be_bytes());
        out.extend(ap_req);
        out.extend(krb_priv);
        out
    }

    #[test]
    fn as_req_and_tgs_req() {
        assert_eq!(
            check_kdc_request(&kdc_req(10, 10, "EXAMPLE.COM")).unwrap(),
            KdcRequest {
                kind: KdcRequestKind::AsReq,
                realm: "EXAMPLE.COM".into()
            }
        );
        let r = check_kdc_request(&kdc_req(12, 12, "OTHER.ORG")).unwrap();
        assert_eq!(
            (r.kind, r.realm.as_str()),
            (KdcRequestKind::TgsReq, "OTHER.ORG")
        );
    }

    #[test]
    fn msg_type_must_match_tag() {
        let err = check_kdc_request(&kdc_req(10, 12, "EXAMPLE.COM")).unwrap_err();
        assert_eq!(
            err,
            MessageError::BadField {
                field: "msg-type",
                value: 12
            }
        );
    }

    #[test]
    fn replies_and_errors_are_not_requests() {
        let err = check_kdc_request(&kdc_req(11, 11, "EXAMPLE.COM")).unwrap_err();
        assert_eq!(err, MessageError::NotARequest("AS-REP".into()));
        let err = check_kdc_request(&kdc_req(30, 30, "EXAMPLE.COM")).unwrap_err();
        assert!(err.to_string().contains("KRB-ERROR"));
        let err = check_kdc_request(b"GET / HTTP/1.1\r\n").unwrap_err();
        assert!(matches!(
            err,
            MessageError::NotARequest(_) | MessageError::Der(_)
        ));
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let mut req = kdc_req(10, 10, "EXAMPLE.COM");
        req.push(0);
        assert_eq!(
            check_kdc_request(&req).unwrap_err(),
            MessageError::Der(DerError::TrailingData)
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let req = kdc_req(12, 12, "EXAMPLE.COM");
        for n in 0..req.len() {
            assert!(check_kdc_request(&req[..n]).is_err(), "prefix {n} accepted");
        }
        let req = kpasswd_req(1, "EXAMPLE.COM");
        for n in 0..req.len() {
            assert!(
                check_kpasswd_request(&req[..n]).is_err(),
                "prefix {n} accepted"
            );
        }
    }

    #[test]
    fn realm_must_be_printable() {
        assert_eq!(
            check_kdc_request(&kdc_req(10, 10, "")).unwrap_err(),
            MessageError::BadRealm
        );
        assert_eq!(
            check_kdc_request(&kdc_req(10, 10, "EVIL\nREALM")).unwrap_err(),
            MessageError::BadRealm
        );
    }

    #[test]
    fn kpasswd_versions() {
        let r = check_kpasswd_request(&kpasswd_req(1, "EXAMPLE.COM")).unwrap();
        assert_eq!((r.version, r.realm.as_str()), (1, "EXAMPLE.COM"));
        let r = check_kpasswd_request(&kpasswd_req(0xff80, "EXAMPLE.COM")).unwrap();
        assert_eq!(r.version, 0xff80);
        let err = check_kpasswd_request(&kpasswd_req(2, "EXAMPLE.COM")).unwrap_err();
        assert!(err.to_string().contains("version"));
    }

    #[test]
    fn kpasswd_length_field_must_match() {
        let mut req = kpasswd_req(1, "EXAMPLE.COM");
        req[1] ^= 1;
        assert!(matches!(
            check_kpasswd_request(&req).unwrap_err(),
            MessageError::BadKpasswd(_)
        ));
    }

    #[test]
    fn kdc_request_is_not_a_kpasswd_request() {
        assert!(check_kpasswd_request(&kdc_req(10, 10, "EXAMPLE.COM")).is_err());
        assert!(check_kdc_request(&kpasswd_req(1, "EXAMPLE.COM")).is_err());
    }
}
