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

use crate::der::{self, DerError, Reader, Tag};
use crate::principal::PrincipalName;
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
    /// The body's `cname` (an AS-REQ's client; absent from a TGS-REQ,
    /// whose client is inside the encrypted authenticator).
    pub cname: Option<PrincipalName>,
    /// The body's `sname`: the service asked for (optional in RFC 4120).
    pub sname: Option<PrincipalName>,
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
const KRB_ERROR: u32 = 30;

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

/// Deepest nesting of constructed DER values accepted in a request (real
/// Kerberos requests nest about a dozen levels).
pub const MAX_DEPTH: usize = 32;

/// Reads an explicitly tagged field `[n]` whose contents must be exactly one
/// value with tag `inner`; returns that value's contents.
fn explicit<'a>(fields: &mut Reader<'a>, n: u32, inner: Tag) -> Result<&'a [u8], DerError> {
    let wrapped = fields.expect(Tag::context(n))?;
    let mut r = Reader::new(wrapped);
    let value = r.expect(inner)?;
    r.finish()?;
    Ok(value)
}

/// Like [`explicit`], for an OPTIONAL field.
fn optional_explicit<'a>(
    fields: &mut Reader<'a>,
    n: u32,
    inner: Tag,
) -> Result<Option<&'a [u8]>, DerError> {
    match fields.peek_tag()? {
        Some(t) if t == Tag::context(n) => explicit(fields, n, inner).map(Some),
        _ => Ok(None),
    }
}

/// Checks a KDC-path record: an AS-REQ or TGS-REQ; returns kind and realm.
///
/// The whole record must be well-formed DER (every constructed value down
/// to [`MAX_DEPTH`] levels), and the KDC-REQ and KDC-REQ-BODY must have
/// exactly the fields of RFC 4120 §5.4.1, in order, with their types.
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
    der::validate(record, MAX_DEPTH)?;

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
    optional_explicit(&mut fields, 3, Tag::SEQUENCE)?;
    let body_seq = explicit(&mut fields, 4, Tag::SEQUENCE)?;
    fields.finish()?;

    // KDC-REQ-BODY ::= SEQUENCE { kdc-options[0] KDCOptions,
    //   cname[1] PrincipalName OPTIONAL, realm[2] Realm,
    //   sname[3] PrincipalName OPTIONAL, from[4] KerberosTime OPTIONAL,
    //   till[5] KerberosTime, rtime[6] KerberosTime OPTIONAL,
    //   nonce[7] UInt32, etype[8] SEQUENCE OF Int32,
    //   addresses[9] HostAddresses OPTIONAL,
    //   enc-authorization-data[10] EncryptedData OPTIONAL,
    //   additional-tickets[11] SEQUENCE OF Ticket OPTIONAL }
    let mut b = Reader::new(body_seq);
    explicit(&mut b, 0, Tag::BIT_STRING)?;
    let cname = optional_explicit(&mut b, 1, Tag::SEQUENCE)?
        .map(PrincipalName::parse)
        .transpose()?;
    let realm = read_realm(b.expect(Tag::context(2))?)?;
    let sname = optional_explicit(&mut b, 3, Tag::SEQUENCE)?
        .map(PrincipalName::parse)
        .transpose()?;
    optional_explicit(&mut b, 4, Tag::GENERALIZED_TIME)?;
    explicit(&mut b, 5, Tag::GENERALIZED_TIME)?;
    optional_explicit(&mut b, 6, Tag::GENERALIZED_TIME)?;
    // The nonce is a UInt32, but some clients have sent it signed: any
    // well-formed INTEGER is accepted, the KDC judges the value.
    crate::der::parse_integer(explicit(&mut b, 7, Tag::INTEGER)?)?;
    explicit(&mut b, 8, Tag::SEQUENCE)?;
    optional_explicit(&mut b, 9, Tag::SEQUENCE)?;
    optional_explicit(&mut b, 10, Tag::SEQUENCE)?;
    optional_explicit(&mut b, 11, Tag::SEQUENCE)?;
    b.finish()?;
    Ok(KdcRequest {
        kind,
        realm,
        cname,
        sname,
    })
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
    der::validate(ap_req, MAX_DEPTH)?;
    der::validate(priv_part, MAX_DEPTH)?;

    // AP-REQ ::= [APPLICATION 14] SEQUENCE { pvno[0], msg-type[1],
    //   ap-options[2] APOptions, ticket[3] Ticket, authenticator[4] EncryptedData }
    let mut outer = Reader::new(ap_req);
    let seq = outer.expect(Tag::application(AP_REQ))?;
    outer.finish()?;
    let mut wrapper = Reader::new(seq);
    let fields_bytes = wrapper.expect(Tag::SEQUENCE)?;
    wrapper.finish()?;
    let mut fields = Reader::new(fields_bytes);
    expect_value(fields.context_integer(0)?, "pvno", 5)?;
    expect_value(fields.context_integer(1)?, "msg-type", i64::from(AP_REQ))?;
    explicit(&mut fields, 2, Tag::BIT_STRING)?;
    let ticket = explicit(&mut fields, 3, Tag::application(TICKET))?;
    explicit(&mut fields, 4, Tag::SEQUENCE)?;
    fields.finish()?;

    // Ticket ::= [APPLICATION 1] SEQUENCE { tkt-vno[0], realm[1],
    //   sname[2] PrincipalName, enc-part[3] EncryptedData }
    let mut t = Reader::new(ticket);
    let ticket_seq = t.expect(Tag::SEQUENCE)?;
    t.finish()?;
    let mut tf = Reader::new(ticket_seq);
    expect_value(tf.context_integer(0)?, "tkt-vno", 5)?;
    let realm = read_realm(tf.expect(Tag::context(1))?)?;
    explicit(&mut tf, 2, Tag::SEQUENCE)?;
    explicit(&mut tf, 3, Tag::SEQUENCE)?;
    tf.finish()?;

    // KRB-PRIV ::= [APPLICATION 21] SEQUENCE { pvno[0], msg-type[1],
    //   enc-part[3] EncryptedData }, exactly filling the rest.
    let mut p = Reader::new(priv_part);
    let krb_priv = p.expect(Tag::application(KRB_PRIV))?;
    p.finish()?;
    let mut p = Reader::new(krb_priv);
    let priv_seq = p.expect(Tag::SEQUENCE)?;
    p.finish()?;
    let mut pf = Reader::new(priv_seq);
    expect_value(pf.context_integer(0)?, "pvno", 5)?;
    expect_value(pf.context_integer(1)?, "msg-type", i64::from(KRB_PRIV))?;
    explicit(&mut pf, 3, Tag::SEQUENCE)?;
    pf.finish()?;
    Ok(KpasswdRequest { version, realm })
}

/// The error-code of a KRB-ERROR message (RFC 4120 §5.9.1), or `None` when
/// `message` is not a well-formed KRB-ERROR.
///
/// The proxy uses it on UDP replies, to see KRB_ERR_RESPONSE_TOO_BIG.
pub fn krb_error_code(message: &[u8]) -> Option<i64> {
    krb_error_head(message).map(|(code, _)| code)
}

/// A KRB-ERROR's error-code, and a reader at the fields after it.
fn krb_error_head(message: &[u8]) -> Option<(i64, Reader<'_>)> {
    // KRB-ERROR ::= [APPLICATION 30] SEQUENCE { pvno[0], msg-type[1],
    //   ctime[2] OPTIONAL, cusec[3] OPTIONAL, stime[4], susec[5],
    //   error-code[6], ... }
    let mut outer = Reader::new(message);
    let seq = outer.expect(Tag::application(KRB_ERROR)).ok()?;
    outer.finish().ok()?;
    let mut w = Reader::new(seq);
    let fields = w.expect(Tag::SEQUENCE).ok()?;
    w.finish().ok()?;
    let mut f = Reader::new(fields);
    if f.context_integer(0).ok()? != 5 || f.context_integer(1).ok()? != i64::from(KRB_ERROR) {
        return None;
    }
    f.optional(Tag::context(2)).ok()?;
    f.optional(Tag::context(3)).ok()?;
    f.expect(Tag::context(4)).ok()?;
    f.expect(Tag::context(5)).ok()?;
    let code = f.context_integer(6).ok()?;
    Some((code, f))
}

/// What a KDC's reply says in the clear, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KdcReply {
    /// An AS-REP or TGS-REP: the ticket's client.
    Ticket {
        /// "AS-REP" or "TGS-REP".
        kind: &'static str,
        /// The client's realm (`crealm`).
        crealm: String,
        /// The client's name (`cname`).
        cname: PrincipalName,
    },
    /// A KRB-ERROR.
    Error {
        /// The error-code (see [`crate::error_names::name`]).
        code: i64,
        /// The e-text, when the KDC sent one (lossily decoded, at most
        /// [`MAX_E_TEXT`] bytes kept).
        e_text: Option<String>,
    },
}

/// Longest e-text kept from a KRB-ERROR.
pub const MAX_E_TEXT: usize = 256;

/// Reads the clear-text parts of a KDC reply: an AS-REP or TGS-REP's
/// `crealm` and `cname` (RFC 4120 §5.4.2), or a KRB-ERROR's `error-code`
/// and `e-text` (§5.9.1). `None` when `message` is none of these, well
/// formed; the reply is forwarded as it is either way.
pub fn kdc_reply(message: &[u8]) -> Option<KdcReply> {
    let mut outer = Reader::new(message);
    let tag = outer.peek_tag().ok()??;
    let (kind, number) = match (tag.class, tag.constructed, tag.number) {
        (crate::der::Class::Application, true, 11) => ("AS-REP", 11),
        (crate::der::Class::Application, true, 13) => ("TGS-REP", 13),
        (crate::der::Class::Application, true, KRB_ERROR) => return krb_error(message),
        _ => return None,
    };
    let seq = outer.expect(Tag::application(number)).ok()?;
    outer.finish().ok()?;
    // KDC-REP ::= SEQUENCE { pvno[0], msg-type[1], padata[2] OPTIONAL,
    //   crealm[3] Realm, cname[4] PrincipalName, ticket[5], enc-part[6] }
    let mut w = Reader::new(seq);
    let fields = w.expect(Tag::SEQUENCE).ok()?;
    w.finish().ok()?;
    let mut f = Reader::new(fields);
    if f.context_integer(0).ok()? != 5 || f.context_integer(1).ok()? != i64::from(number) {
        return None;
    }
    f.optional(Tag::context(2)).ok()?;
    let crealm = read_realm(f.expect(Tag::context(3)).ok()?).ok()?;
    let cname = PrincipalName::parse_explicit(f.expect(Tag::context(4)).ok()?).ok()?;
    Some(KdcReply::Ticket {
        kind,
        crealm,
        cname,
    })
}

fn krb_error(message: &[u8]) -> Option<KdcReply> {
    let (code, mut f) = krb_error_head(message)?;
    // crealm[7] OPTIONAL, cname[8] OPTIONAL, realm[9], sname[10],
    // e-text[11] KerberosString OPTIONAL, e-data[12] OPTIONAL.
    let e_text = (|| {
        f.optional(Tag::context(7)).ok()?;
        f.optional(Tag::context(8)).ok()?;
        f.expect(Tag::context(9)).ok()?;
        f.expect(Tag::context(10)).ok()?;
        let text = f.optional(Tag::context(11)).ok()??;
        let mut r = Reader::new(text);
        let bytes = r.expect(Tag::GENERAL_STRING).ok()?;
        let bytes = bytes.get(..MAX_E_TEXT).unwrap_or(bytes);
        Some(String::from_utf8_lossy(bytes).into_owned())
    })();
    Some(KdcReply::Error { code, e_text })
}

/// KRB_ERR_RESPONSE_TOO_BIG (RFC 4120 §7.5.9): the reply does not fit a
/// UDP datagram; the client must retry over TCP.
pub const KRB_ERR_RESPONSE_TOO_BIG: i64 = 52;

fn expect_value(value: i64, field: &'static str, wanted: i64) -> Result<(), MessageError> {
    if value == wanted {
        Ok(())
    } else {
        Err(MessageError::BadField { field, value })
    }
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
    use crate::samples::{self, ctx, general_string, integer, principal, seq, tlv};

    /// A structurally valid KDC-REQ with the given application tag number
    /// and msg-type (which may disagree, for the tests).
    pub(crate) fn kdc_req(app: u8, msg_type: u8, realm_name: &str) -> Vec<u8> {
        let body = seq(&[
            ctx(0, &tlv(0x03, &[0, 0x40, 0, 0, 0])),
            ctx(1, &principal(1, &["user"])),
            ctx(2, &general_string(realm_name)),
            ctx(5, &tlv(0x18, b"20370913024805Z")),
            ctx(7, &integer(1)),
            ctx(8, &seq(&[integer(18)])),
        ]);
        let fields = seq(&[
            ctx(1, &integer(5)),
            ctx(2, &integer(msg_type)),
            ctx(3, &seq(&[])),
            ctx(4, &body),
        ]);
        tlv(0x60 | app, &fields)
    }

    pub(crate) fn kpasswd_req(version: u16, realm_name: &str) -> Vec<u8> {
        samples::kpasswd_req(version, realm_name)
    }

    #[test]
    fn samples_pass() {
        assert_eq!(
            check_kdc_request(&samples::as_req("A.ORG")).unwrap().kind,
            KdcRequestKind::AsReq
        );
        assert_eq!(
            check_kdc_request(&samples::tgs_req("A.ORG")).unwrap().kind,
            KdcRequestKind::TgsReq
        );
        assert_eq!(
            check_kpasswd_request(&samples::kpasswd_req(0xff80, "A.ORG"))
                .unwrap()
                .realm,
            "A.ORG"
        );
    }

    #[test]
    fn body_fields_are_checked_in_order() {
        // A body missing `till` [5], then one with a field out of order,
        // then one with an unknown trailing field, then a wrong type.
        let realm = ctx(2, &general_string("A.ORG"));
        let opts = ctx(0, &tlv(0x03, &[0, 0, 0, 0, 0]));
        let till = ctx(5, &tlv(0x18, b"20370913024805Z"));
        let nonce = ctx(7, &integer(1));
        let etype = ctx(8, &seq(&[integer(18)]));
        let wrap = |body: Vec<Vec<u8>>| {
            tlv(
                0x6a,
                &seq(&[
                    ctx(1, &integer(5)),
                    ctx(2, &integer(10)),
                    ctx(4, &seq(&body)),
                ]),
            )
        };
        let ok = wrap(vec![
            opts.clone(),
            realm.clone(),
            till.clone(),
            nonce.clone(),
            etype.clone(),
        ]);
        check_kdc_request(&ok).unwrap();
        for bad in [
            wrap(vec![
                opts.clone(),
                realm.clone(),
                nonce.clone(),
                etype.clone(),
            ]),
            wrap(vec![
                opts.clone(),
                realm.clone(),
                nonce.clone(),
                till.clone(),
                etype.clone(),
            ]),
            wrap(vec![
                opts.clone(),
                realm.clone(),
                till.clone(),
                nonce.clone(),
                etype.clone(),
                ctx(12, &integer(1)),
            ]),
            wrap(vec![
                ctx(0, &integer(0)),
                realm.clone(),
                till.clone(),
                nonce.clone(),
                etype.clone(),
            ]),
        ] {
            assert!(matches!(
                check_kdc_request(&bad).unwrap_err(),
                MessageError::Der(_)
            ));
        }
    }

    #[test]
    fn malformed_der_deep_inside_is_refused() {
        // An etype list whose element is a truncated INTEGER, hidden in a
        // structure nothing else reads.
        let body = seq(&[
            ctx(0, &tlv(0x03, &[0, 0, 0, 0, 0])),
            ctx(2, &general_string("A.ORG")),
            ctx(5, &tlv(0x18, b"20370913024805Z")),
            ctx(7, &integer(1)),
            ctx(8, &tlv(0x30, &[0x02, 0x05, 0x01])),
        ]);
        let req = tlv(
            0x6a,
            &seq(&[ctx(1, &integer(5)), ctx(2, &integer(10)), ctx(4, &body)]),
        );
        assert_eq!(
            check_kdc_request(&req).unwrap_err(),
            MessageError::Der(DerError::Truncated)
        );
    }

    #[test]
    fn krb_priv_is_checked() {
        let mut req = samples::kpasswd_req(1, "A.ORG");
        // Replace the KRB-PRIV's msg-type 21 with 22 (its last INTEGER
        // before enc-part): find the [1] INTEGER 21 bytes and flip them.
        let needle = [0xa1, 0x03, 0x02, 0x01, 21];
        let at = req
            .windows(needle.len())
            .rposition(|w| w == needle)
            .unwrap();
        req[at + 4] = 22;
        assert_eq!(
            check_kpasswd_request(&req).unwrap_err(),
            MessageError::BadField {
                field: "msg-type",
                value: 22
            }
        );
    }

    #[test]
    fn krb_error_codes() {
        assert_eq!(krb_error_code(&samples::krb_error(52, "A.ORG")), Some(52));
        assert_eq!(krb_error_code(&samples::krb_error(25, "A.ORG")), Some(25));
        assert_eq!(krb_error_code(&samples::as_req("A.ORG")), None);
        assert_eq!(krb_error_code(b""), None);
        let e = samples::krb_error(52, "A.ORG");
        for n in 0..e.len() {
            assert_eq!(krb_error_code(&e[..n]), None);
        }
    }

    #[test]
    fn names_are_read() {
        let r = check_kdc_request(&samples::as_req("A.ORG")).unwrap();
        assert_eq!(r.cname.unwrap().to_string(), "user");
        assert_eq!(r.sname.unwrap().to_string(), "krbtgt/A.ORG");
        let r = check_kdc_request(&samples::tgs_req_for("A.ORG", &["postgres", "db"])).unwrap();
        assert!(r.cname.is_none());
        assert_eq!(r.sname.unwrap().to_string(), "postgres/db");
        // A malformed sname (a component that is an INTEGER) is refused.
        let bad = samples::tgs_req_for("A.ORG", &["postgres", "db"]);
        let at = bad
            .windows(4)
            .position(|w| w == [0x1b, 0x02, b'd', b'b'])
            .unwrap();
        let mut bad = bad;
        bad[at] = 0x02;
        assert!(matches!(check_kdc_request(&bad), Err(MessageError::Der(_))));
    }

    #[test]
    fn replies_are_read() {
        assert_eq!(
            kdc_reply(&samples::as_rep("A.ORG", "alice")),
            Some(KdcReply::Ticket {
                kind: "AS-REP",
                crealm: "A.ORG".into(),
                cname: PrincipalName {
                    name_type: 1,
                    components: vec![b"alice".to_vec()]
                }
            })
        );
        assert_eq!(
            kdc_reply(&samples::krb_error(25, "A.ORG")),
            Some(KdcReply::Error {
                code: 25,
                e_text: None
            })
        );
        assert_eq!(
            kdc_reply(&samples::krb_error_text(24, "A.ORG", "bad \"pw\"")),
            Some(KdcReply::Error {
                code: 24,
                e_text: Some("bad \"pw\"".into())
            })
        );
        assert_eq!(kdc_reply(&samples::as_req("A.ORG")), None);
        for m in [
            samples::as_rep("A.ORG", "alice"),
            samples::krb_error_text(6, "A", "x"),
        ] {
            for n in 0..m.len() {
                assert_eq!(kdc_reply(&m[..n]), None);
            }
        }
    }

    #[test]
    fn as_req_and_tgs_req() {
        assert_eq!(
            check_kdc_request(&kdc_req(10, 10, "EXAMPLE.COM")).unwrap(),
            KdcRequest {
                kind: KdcRequestKind::AsReq,
                realm: "EXAMPLE.COM".into(),
                cname: Some(PrincipalName {
                    name_type: 1,
                    components: vec![b"user".to_vec()]
                }),
                sname: None,
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
