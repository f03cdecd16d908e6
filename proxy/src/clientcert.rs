//! Client certificates (mutual TLS): the listener's mode, the names read
//! from a verified client certificate, and the per-realm
//! `client_subjects` rule.
//!
//! With `client_ca` set, the TLS listener asks every client for a
//! certificate and verifies it against those CAs (rustls'
//! `WebPkiClientVerifier`: chain, validity, client-auth usage). In
//! `required` mode a handshake without one fails; in `optional` mode it
//! goes through, and the realms decide: a realm with `client_subjects`
//! serves only connections whose certificate matches one of its patterns
//! (4402 without a certificate, 4406 with another one), a realm without
//! serves any connection the listener let through.
//!
//! What is matched: the certificate's subject common names (`CN`
//! attributes written as UTF8String, PrintableString or IA5String) and its
//! subjectAltName DNS names. A pattern `CN=GLOB` matches a common name, a
//! pattern `DNS=GLOB` a DNS name, a bare `GLOB` either; `*` alone matches
//! every certificate. Globs are [`crate::glob`]'s (`*` any run, `?` one
//! character), compared ignoring ASCII case (host names are
//! case-insensitive).

use crate::glob;
use krb5_wss_proto::der::{Class, DerError, Reader, Tag};
use std::fmt;

/// `client_certificate`: `required` or `optional` (none: unset).
pub struct CertMode;
impl crate::settings::Kind for CertMode {
    type T = Option<Mode>;
    const VALUE_NAME: &'static str = "MODE";
    fn from_text(s: &str) -> Result<Option<Mode>, String> {
        Mode::parse(s).map(Some)
    }
    fn from_toml(v: &toml::Value) -> Result<Option<Mode>, String> {
        let s = v.as_str().ok_or_else(|| {
            format!(
                "expected \"required\" or \"optional\", found {}",
                v.type_str()
            )
        })?;
        Self::from_text(s)
    }
    fn show(v: &Option<Mode>) -> String {
        v.map_or("none".into(), |m| m.name().to_string())
    }
}

/// Whether the listener's handshake requires a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// A handshake without a certificate fails (TLS alert
    /// certificate_required).
    #[default]
    Required,
    /// A handshake without one goes through; realms with
    /// `client_subjects` then refuse its requests (4402).
    Optional,
}

impl Mode {
    /// Parses `required` or `optional`.
    pub fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "required" => Ok(Mode::Required),
            "optional" => Ok(Mode::Optional),
            other => Err(format!(
                "client_certificate {other:?}: expected \"required\" or \"optional\""
            )),
        }
    }

    /// The setting's value as written.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Required => "required",
            Mode::Optional => "optional",
        }
    }
}

/// The listener's client-certificate settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// PEM file of the CA certificates client certificates must chain to.
    pub ca: std::path::PathBuf,
    /// Required or optional at the handshake.
    pub mode: Mode,
}

/// The names of a verified client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCert {
    /// The subject's common names.
    pub cn: Vec<String>,
    /// The subjectAltName DNS names.
    pub dns: Vec<String>,
}

/// Most names kept from one certificate (the rest are ignored).
const MAX_NAMES: usize = 32;
/// Longest name kept (a longer one is ignored).
const MAX_NAME_LEN: usize = 255;

const OID: Tag = Tag {
    class: Class::Universal,
    constructed: false,
    number: 6,
};
const SET: Tag = Tag {
    class: Class::Universal,
    constructed: true,
    number: 17,
};
/// id-at-commonName (2.5.4.3).
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName (2.5.29.17).
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

impl PeerCert {
    /// Reads the names of a DER certificate (already verified by the TLS
    /// layer). A structure it cannot walk yields no names: such a
    /// certificate matches only the pattern `*`.
    pub fn from_der(der: &[u8]) -> PeerCert {
        let mut out = PeerCert::default();
        let _ = read_names(der, &mut out);
        out
    }

    /// True when `pattern` (`CN=`, `DNS=` or bare, see the module docs)
    /// matches this certificate.
    pub fn matches(&self, pattern: &str) -> bool {
        if pattern == "*" {
            return true;
        }
        let pattern = pattern.to_ascii_lowercase();
        let any = |names: &[String], p: &str| {
            names
                .iter()
                .any(|n| glob::matches(p, &n.to_ascii_lowercase()))
        };
        if let Some(p) = pattern.strip_prefix("cn=") {
            any(&self.cn, p)
        } else if let Some(p) = pattern.strip_prefix("dns=") {
            any(&self.dns, p)
        } else {
            any(&self.cn, &pattern) || any(&self.dns, &pattern)
        }
    }
}

impl fmt::Display for PeerCert {
    /// `CN=a,DNS=b,…` (`-` for a certificate without names).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (kind, names) in [("CN", &self.cn), ("DNS", &self.dns)] {
            for n in names {
                if !first {
                    f.write_str(",")?;
                }
                first = false;
                write!(f, "{kind}={n}")?;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

fn keep(list: &mut Vec<String>, bytes: &[u8]) {
    if list.len() < MAX_NAMES && bytes.len() <= MAX_NAME_LEN {
        if let Ok(s) = std::str::from_utf8(bytes) {
            if !s.is_empty() && !s.chars().any(char::is_control) {
                list.push(s.to_string());
            }
        }
    }
}

fn read_names(der: &[u8], out: &mut PeerCert) -> Result<(), DerError> {
    let cert = Reader::new(der).expect(Tag::SEQUENCE)?;
    let mut tbs = Reader::new(Reader::new(cert).expect(Tag::SEQUENCE)?);
    tbs.optional(Tag::context(0))?; // version
    for _ in 0..4 {
        tbs.read_any()?; // serial, signature, issuer, validity
    }
    let mut subject = Reader::new(tbs.expect(Tag::SEQUENCE)?);
    while !subject.is_empty() {
        let mut rdn = Reader::new(subject.expect(SET)?);
        while !rdn.is_empty() {
            let mut atv = Reader::new(rdn.expect(Tag::SEQUENCE)?);
            let oid = atv.expect(OID)?;
            let (tag, value) = atv.read_any()?;
            // UTF8String, PrintableString, IA5String.
            let text = tag.class == Class::Universal && matches!(tag.number, 12 | 19 | 22);
            if oid == OID_CN && text {
                keep(&mut out.cn, value);
            }
        }
    }
    tbs.read_any()?; // subjectPublicKeyInfo
    while let Some(tag) = tbs.peek_tag()? {
        let (_, value) = tbs.read_any()?;
        if tag != Tag::context(3) {
            continue; // issuerUniqueID, subjectUniqueID
        }
        let mut exts = Reader::new(Reader::new(value).expect(Tag::SEQUENCE)?);
        while !exts.is_empty() {
            let mut ext = Reader::new(exts.expect(Tag::SEQUENCE)?);
            let oid = ext.expect(OID)?;
            let Some(tag) = ext.peek_tag()? else { continue };
            if tag != Tag::OCTET_STRING {
                ext.read_any()?; // critical
            }
            let value = ext.expect(Tag::OCTET_STRING)?;
            if oid != OID_SAN {
                continue;
            }
            let mut names = Reader::new(Reader::new(value).expect(Tag::SEQUENCE)?);
            while !names.is_empty() {
                let (tag, name) = names.read_any()?;
                // dNSName [2] IMPLICIT IA5String.
                if tag.class == Class::Context && tag.number == 2 && !tag.constructed {
                    keep(&mut out.dns, name);
                }
            }
        }
    }
    Ok(())
}

/// Checks a realm's `client_subjects` patterns: not empty, no control
/// characters, `CN=`/`DNS=` followed by a glob.
pub fn validate(realm: &str, patterns: &[String]) -> Result<(), String> {
    for p in patterns {
        let lower = p.to_ascii_lowercase();
        let glob = lower
            .strip_prefix("cn=")
            .or_else(|| lower.strip_prefix("dns="))
            .unwrap_or(&lower);
        if glob.is_empty() || p.chars().any(char::is_control) || glob.contains('=') {
            return Err(format!(
                "[realms.{realm:?}] client_subjects: {p:?} is not a certificate name pattern \
                 (GLOB, CN=GLOB or DNS=GLOB, without control characters)"
            ));
        }
    }
    Ok(())
}

/// Why a realm's `client_subjects` refuses a connection's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// The connection presented no certificate.
    Missing,
    /// No pattern matches the certificate.
    NotAllowed,
}

/// Judges the connection's certificate against a realm's patterns (empty:
/// every connection passes).
pub fn check(patterns: &[String], cert: Option<&PeerCert>) -> Result<(), Mismatch> {
    if patterns.is_empty() {
        return Ok(());
    }
    match cert {
        None => Err(Mismatch::Missing),
        Some(c) if patterns.iter().any(|p| c.matches(p)) => Ok(()),
        Some(_) => Err(Mismatch::NotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: &[&str], dns: &[&str]) -> PeerCert {
        PeerCert {
            cn: cn.iter().map(|s| s.to_string()).collect(),
            dns: dns.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn patterns_match_cn_dns_or_both() {
        let c = cert(&["Host1.Example.com"], &["host1.dmz.example.com"]);
        assert!(c.matches("CN=host1.example.com"));
        assert!(c.matches("cn=HOST1.*"));
        assert!(!c.matches("DNS=host1.example.com"));
        assert!(c.matches("DNS=*.dmz.example.com"));
        assert!(!c.matches("CN=*.dmz.example.com"));
        assert!(c.matches("*.dmz.example.com"));
        assert!(c.matches("host1.example.com"));
        assert!(!c.matches("host2.example.com"));
        assert!(cert(&[], &[]).matches("*"));
        assert!(!cert(&[], &[]).matches("CN=*"));
    }

    #[test]
    fn check_distinguishes_missing_and_not_allowed() {
        let p = vec!["*.a.example".to_string()];
        assert_eq!(check(&[], None), Ok(()));
        assert_eq!(check(&p, None), Err(Mismatch::Missing));
        let other = cert(&["x.b.example"], &[]);
        assert_eq!(check(&p, Some(&other)), Err(Mismatch::NotAllowed));
        assert_eq!(check(&p, Some(&cert(&["h.a.example"], &[]))), Ok(()));
    }

    #[test]
    fn bad_patterns_are_named() {
        for bad in ["", "CN=", "DNS=", "O=Example", "a\nb"] {
            let e = validate("R", &[bad.to_string()]).unwrap_err();
            assert!(e.contains("client_subjects"), "{e}");
        }
        validate("R", &["CN=a".into(), "dns=*.b".into(), "*".into()]).unwrap();
    }

    #[test]
    fn modes() {
        assert_eq!(Mode::parse("optional"), Ok(Mode::Optional));
        assert_eq!(Mode::parse("required").map(Mode::name), Ok("required"));
        assert!(Mode::parse("Required").unwrap_err().contains("expected"));
    }

    #[test]
    fn display_lists_the_names() {
        assert_eq!(cert(&["a"], &["b", "c"]).to_string(), "CN=a,DNS=b,DNS=c");
        assert_eq!(cert(&[], &[]).to_string(), "-");
    }

    /// A certificate made by `openssl req -x509 -subj /O=Example/CN=host1.example.com
    /// -addext subjectAltName=DNS:host1.example.com,DNS:alt.example.com,IP:192.0.2.1`
    /// (an EC P-256 key), as DER.
    #[test]
    fn names_are_read_from_a_real_certificate() {
        let der = include_bytes!("../tests/data/client-names.der");
        let c = PeerCert::from_der(der);
        assert_eq!(c.cn, ["host1.example.com"]);
        assert_eq!(c.dns, ["host1.example.com", "alt.example.com"]);
        // Garbage yields no names, never a panic.
        assert_eq!(PeerCert::from_der(&der[..40]), PeerCert::default());
        assert_eq!(PeerCert::from_der(b""), PeerCert::default());
    }
}
