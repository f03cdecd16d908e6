//! Writes KRB-ERROR messages (RFC 4120 §5.9.1), for a relay that must
//! answer a client itself: a realm it does not serve, a proxy it cannot
//! reach, a reply too big for UDP.
//!
//! ```text
//! KRB-ERROR ::= [APPLICATION 30] SEQUENCE {
//!     pvno [0] INTEGER (5), msg-type [1] INTEGER (30),
//!     ctime [2] KerberosTime OPTIONAL, cusec [3] Microseconds OPTIONAL,
//!     stime [4] KerberosTime, susec [5] Microseconds,
//!     error-code [6] Int32, crealm [7] Realm OPTIONAL,
//!     cname [8] PrincipalName OPTIONAL, realm [9] Realm,
//!     sname [10] PrincipalName, e-text [11] KerberosString OPTIONAL,
//!     e-data [12] OCTET STRING OPTIONAL }
//! ```
//!
//! Also the RFC 3244 reply framing a kpasswd server uses for an error
//! ([`kpasswd_error_reply`]).

use crate::der::{write_tlv, DerError};

/// KDC_ERR_SVC_UNAVAILABLE: the service is unavailable (clients try the
/// realm's next KDC).
pub const KDC_ERR_SVC_UNAVAILABLE: i32 = 29;
/// KRB_ERR_RESPONSE_TOO_BIG: retry over TCP.
pub const KRB_ERR_RESPONSE_TOO_BIG: i32 = 52;
/// KRB_ERR_GENERIC: see e-text.
pub const KRB_ERR_GENERIC: i32 = 60;
/// KDC_ERR_WRONG_REALM.
pub const KDC_ERR_WRONG_REALM: i32 = 68;
/// RFC 3244 result code KRB5_KPASSWD_HARDERROR.
pub const KPASSWD_HARDERROR: u16 = 2;

/// NT-SRV-INST, the name type of `krbtgt/REALM` and `kadmin/changepw`.
const NT_SRV_INST: u8 = 2;

/// The fields of a KRB-ERROR a server writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KrbError<'a> {
    /// Server time, seconds since the Unix epoch.
    pub stime: u64,
    /// Microseconds within `stime` (0..=999999).
    pub susec: u32,
    /// The error code.
    pub error_code: i32,
    /// The server's realm.
    pub realm: &'a str,
    /// The server's name components (NT-SRV-INST), e.g. `["krbtgt", REALM]`.
    pub sname: &'a [&'a str],
    /// A message for humans.
    pub e_text: Option<&'a str>,
    /// Error data.
    pub e_data: Option<&'a [u8]>,
}

fn tlv(tag: u8, value: &[u8]) -> Result<Vec<u8>, DerError> {
    let mut out = Vec::with_capacity(value.len() + 6);
    write_tlv(&mut out, tag, value)?;
    Ok(out)
}

/// A DER INTEGER's minimal two's-complement contents.
fn integer_contents(n: i64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = match (bytes.get(start), bytes.get(start + 1)) {
            (Some(b), Some(n)) => (*b, *n),
            _ => break,
        };
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    bytes.get(start..).unwrap_or(&bytes).to_vec()
}

/// `[n] INTEGER`.
fn ctx_integer(n: u8, value: i64) -> Result<Vec<u8>, DerError> {
    tlv(0xa0 | n, &tlv(0x02, &integer_contents(value))?)
}

/// `[n] GeneralString` (KerberosString, Realm).
fn ctx_string(n: u8, value: &str) -> Result<Vec<u8>, DerError> {
    tlv(0xa0 | n, &tlv(0x1b, value.as_bytes())?)
}

/// Formats Unix seconds as a KerberosTime (`YYYYMMDDHHMMSSZ`, UTC).
pub fn kerberos_time(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}Z",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// Encodes `e` as DER.
pub fn encode(e: &KrbError<'_>) -> Result<Vec<u8>, DerError> {
    let mut fields = Vec::new();
    fields.extend(ctx_integer(0, 5)?);
    fields.extend(ctx_integer(1, 30)?);
    fields.extend(tlv(0xa4, &tlv(0x18, kerberos_time(e.stime).as_bytes())?)?);
    fields.extend(ctx_integer(5, i64::from(e.susec.min(999_999)))?);
    fields.extend(ctx_integer(6, i64::from(e.error_code))?);
    fields.extend(ctx_string(9, e.realm)?);
    let mut names = Vec::new();
    for part in e.sname {
        names.extend(tlv(0x1b, part.as_bytes())?);
    }
    let mut principal = ctx_integer(0, i64::from(NT_SRV_INST))?;
    principal.extend(tlv(0xa1, &tlv(0x30, &names)?)?);
    fields.extend(tlv(0xaa, &tlv(0x30, &principal)?)?);
    if let Some(text) = e.e_text {
        fields.extend(ctx_string(11, text)?);
    }
    if let Some(data) = e.e_data {
        fields.extend(tlv(0xac, &tlv(0x04, data)?)?);
    }
    tlv(0x7e, &tlv(0x30, &fields)?)
}

/// An RFC 3244 reply carrying a KRB-ERROR (AP-REP length 0), whose e-data
/// is the kpasswd result: `result_code` and `message` (UTF-8).
///
/// ```text
/// message length (2) | version 0x0001 (2) | AP-REP length 0 (2) | KRB-ERROR
/// ```
pub fn kpasswd_error_reply(
    stime: u64,
    susec: u32,
    realm: &str,
    result_code: u16,
    message: &str,
) -> Result<Vec<u8>, DerError> {
    let mut result = result_code.to_be_bytes().to_vec();
    result.extend_from_slice(message.as_bytes());
    let sname = ["kadmin", "changepw"];
    let err = encode(&KrbError {
        stime,
        susec,
        error_code: KRB_ERR_GENERIC,
        realm,
        sname: &sname,
        e_text: Some(message),
        e_data: Some(&result),
    })?;
    let total = u16::try_from(err.len() + 6).map_err(|_| DerError::BadLength)?;
    let mut out = Vec::with_capacity(usize::from(total));
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&err);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::der::{Reader, Tag};
    use crate::kerberos::krb_error_code;

    /// Reads every field back with the crate's DER reader.
    #[allow(clippy::type_complexity)]
    fn decode(
        msg: &[u8],
    ) -> (
        i64,
        String,
        String,
        Vec<String>,
        Option<String>,
        Option<Vec<u8>>,
    ) {
        let mut outer = Reader::new(msg);
        let app = outer.expect(Tag::application(30)).unwrap();
        outer.finish().unwrap();
        let mut w = Reader::new(app);
        let seq = w.expect(Tag::SEQUENCE).unwrap();
        w.finish().unwrap();
        let mut f = Reader::new(seq);
        assert_eq!(f.context_integer(0).unwrap(), 5);
        assert_eq!(f.context_integer(1).unwrap(), 30);
        let mut t = Reader::new(f.expect(Tag::context(4)).unwrap());
        let stime = String::from_utf8(t.expect(Tag::GENERALIZED_TIME).unwrap().to_vec()).unwrap();
        let susec = f.context_integer(5).unwrap();
        assert!((0..1_000_000).contains(&susec));
        let code = f.context_integer(6).unwrap();
        let mut r = Reader::new(f.expect(Tag::context(9)).unwrap());
        let realm = String::from_utf8(r.expect(Tag::GENERAL_STRING).unwrap().to_vec()).unwrap();
        let mut s = Reader::new(f.expect(Tag::context(10)).unwrap());
        let mut p = Reader::new(s.expect(Tag::SEQUENCE).unwrap());
        assert_eq!(p.context_integer(0).unwrap(), 2);
        let mut l = Reader::new(p.expect(Tag::context(1)).unwrap());
        let mut parts = Reader::new(l.expect(Tag::SEQUENCE).unwrap());
        let mut sname = Vec::new();
        while !parts.is_empty() {
            let v = parts.expect(Tag::GENERAL_STRING).unwrap();
            sname.push(String::from_utf8(v.to_vec()).unwrap());
        }
        let text = f.optional(Tag::context(11)).unwrap().map(|v| {
            let mut r = Reader::new(v);
            String::from_utf8(r.expect(Tag::GENERAL_STRING).unwrap().to_vec()).unwrap()
        });
        let data = f.optional(Tag::context(12)).unwrap().map(|v| {
            let mut r = Reader::new(v);
            r.expect(Tag::OCTET_STRING).unwrap().to_vec()
        });
        f.finish().unwrap();
        (code, stime, realm, sname, text, data)
    }

    #[test]
    fn times() {
        assert_eq!(kerberos_time(0), "19700101000000Z");
        assert_eq!(kerberos_time(951_782_400), "20000229000000Z");
        assert_eq!(kerberos_time(1_700_000_000), "20231114221320Z");
        assert_eq!(kerberos_time(4_102_444_799), "20991231235959Z");
    }

    #[test]
    fn integers_are_minimal() {
        assert_eq!(integer_contents(0), [0]);
        assert_eq!(integer_contents(127), [0x7f]);
        assert_eq!(integer_contents(128), [0, 0x80]);
        assert_eq!(integer_contents(999_999), [0x0f, 0x42, 0x3f]);
        assert_eq!(integer_contents(-1), [0xff]);
    }

    #[test]
    fn encodes_and_decodes() {
        let sname = ["krbtgt", "EXAMPLE.COM"];
        let msg = encode(&KrbError {
            stime: 1_700_000_000,
            susec: 123_456,
            error_code: KRB_ERR_GENERIC,
            realm: "EXAMPLE.COM",
            sname: &sname,
            e_text: Some("krb5-wss-relay: realm EXAMPLE.COM is not served"),
            e_data: None,
        })
        .unwrap();
        assert_eq!(krb_error_code(&msg), Some(60));
        crate::der::validate(&msg, 32).unwrap();
        let (code, stime, realm, parts, text, data) = decode(&msg);
        assert_eq!(code, 60);
        assert_eq!(stime, "20231114221320Z");
        assert_eq!(realm, "EXAMPLE.COM");
        assert_eq!(parts, sname);
        assert_eq!(
            text.as_deref(),
            Some("krb5-wss-relay: realm EXAMPLE.COM is not served")
        );
        assert_eq!(data, None);
    }

    #[test]
    fn long_text_uses_long_lengths() {
        let text = "x".repeat(300);
        let msg = encode(&KrbError {
            stime: 1,
            susec: 0,
            error_code: KRB_ERR_RESPONSE_TOO_BIG,
            realm: "",
            sname: &["krbtgt", ""],
            e_text: Some(&text),
            e_data: Some(b"\x00\x01"),
        })
        .unwrap();
        assert_eq!(krb_error_code(&msg), Some(52));
        let (_, _, realm, _, t, data) = decode(&msg);
        assert_eq!((realm.as_str(), t.unwrap().len()), ("", 300));
        assert_eq!(data.unwrap(), [0, 1]);
    }

    #[test]
    fn kpasswd_reply_framing() {
        let r = kpasswd_error_reply(5, 6, "R", KPASSWD_HARDERROR, "krb5-wss-relay: down").unwrap();
        assert_eq!(usize::from(u16::from_be_bytes([r[0], r[1]])), r.len());
        assert_eq!(&r[2..6], &[0, 1, 0, 0]);
        assert_eq!(krb_error_code(&r[6..]), Some(60));
        let (_, _, realm, sname, _, data) = decode(&r[6..]);
        assert_eq!(
            (realm.as_str(), sname),
            ("R", vec!["kadmin".to_string(), "changepw".into()])
        );
        let data = data.unwrap();
        assert_eq!(&data[..2], &[0, 2]);
        assert_eq!(&data[2..], b"krb5-wss-relay: down");
    }
}
