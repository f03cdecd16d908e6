//! Kerberos principal names as the proxy reads them from requests and
//! replies (RFC 4120 §5.2.2: `PrincipalName ::= SEQUENCE { name-type [0]
//! Int32, name-string [1] SEQUENCE OF KerberosString }`).
//!
//! A name is written the way MIT's `krb5_unparse_name` writes it without
//! the realm: components joined by `/`, a `/`, `@` or `\` inside a
//! component escaped with `\`; bytes that are not printable ASCII are
//! written `\xNN`, so the written form is unambiguous and one line.

use crate::der::{DerError, Reader, Tag};
use std::fmt;

/// Most components accepted in one name (real names have one to three).
pub const MAX_COMPONENTS: usize = 16;

/// A principal name without its realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalName {
    /// The name type (1 principal, 2 service instance, 10 enterprise, …).
    pub name_type: i64,
    /// The name's components, as sent.
    pub components: Vec<Vec<u8>>,
}

impl PrincipalName {
    /// Parses the contents of a PrincipalName SEQUENCE, strictly.
    pub fn parse(seq_contents: &[u8]) -> Result<PrincipalName, DerError> {
        let mut f = Reader::new(seq_contents);
        let name_type = f.context_integer(0)?;
        let wrapped = f.expect(Tag::context(1))?;
        f.finish()?;
        let mut w = Reader::new(wrapped);
        let list = w.expect(Tag::SEQUENCE)?;
        w.finish()?;
        let mut items = Reader::new(list);
        let mut components = Vec::new();
        while !items.is_empty() {
            if components.len() == MAX_COMPONENTS {
                return Err(DerError::TooDeep);
            }
            components.push(items.expect(Tag::GENERAL_STRING)?.to_vec());
        }
        Ok(PrincipalName {
            name_type,
            components,
        })
    }

    /// Parses `[n] PrincipalName` contents (the explicit tag's value).
    pub fn parse_explicit(explicit: &[u8]) -> Result<PrincipalName, DerError> {
        let mut r = Reader::new(explicit);
        let seq = r.expect(Tag::SEQUENCE)?;
        r.finish()?;
        PrincipalName::parse(seq)
    }
}

impl fmt::Display for PrincipalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            // Runs of plain bytes are written whole.
            let mut run = 0;
            for (j, &b) in c.iter().enumerate() {
                if matches!(b, 0x20..=0x7e) && !matches!(b, b'/' | b'@' | b'\\') {
                    continue;
                }
                // The run is printable ASCII, hence UTF-8.
                f.write_str(std::str::from_utf8(&c[run..j]).unwrap_or_default())?;
                match b {
                    b'/' | b'@' | b'\\' => write!(f, "\\{}", b as char)?,
                    _ => write!(f, "\\x{b:02x}")?,
                }
                run = j + 1;
            }
            f.write_str(std::str::from_utf8(&c[run..]).unwrap_or_default())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::samples::{ctx, general_string, integer, principal, seq};

    fn parse(v: &[u8]) -> Result<PrincipalName, DerError> {
        PrincipalName::parse_explicit(v)
    }

    #[test]
    fn written_like_mit() {
        let p = parse(&principal(2, &["postgres", "db.example.com"])).unwrap();
        assert_eq!(p.name_type, 2);
        assert_eq!(p.to_string(), "postgres/db.example.com");
        let p = parse(&principal(10, &["a@b.c"])).unwrap();
        assert_eq!(p.to_string(), "a\\@b.c");
        let p = parse(&principal(1, &["x/y", "\n", "a b\\c\u{e9}"])).unwrap();
        assert_eq!(p.to_string(), "x\\/y/\\x0a/a b\\\\c\\xc3\\xa9");
    }

    #[test]
    fn strict() {
        // A component that is not a GeneralString, a missing name-type,
        // trailing fields, too many components.
        let utf8 = seq(&[
            ctx(0, &integer(1)),
            ctx(1, &seq(&[crate::samples::tlv(0x0c, b"u")])),
        ]);
        assert!(parse(&utf8).is_err());
        assert!(parse(&seq(&[ctx(1, &seq(&[general_string("u")]))])).is_err());
        let extra = seq(&[
            ctx(0, &integer(1)),
            ctx(1, &seq(&[general_string("u")])),
            ctx(2, &integer(1)),
        ]);
        assert!(parse(&extra).is_err());
        let many: Vec<&str> = vec!["a"; MAX_COMPONENTS + 1];
        assert!(parse(&principal(1, &many)).is_err());
        let p = principal(1, &["user"]);
        for n in 0..p.len() {
            assert!(parse(&p[..n]).is_err());
        }
    }
}
