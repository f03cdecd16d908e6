//! A small, strict DER reader: just enough to walk Kerberos messages.
//!
//! It reads tag-length-value triples from a byte slice, never allocates,
//! never reads past its input, refuses indefinite lengths and non-minimal
//! length encodings, and bounds tag numbers. Callers walk structures with
//! [`Reader::expect`] and [`Reader::optional`].

use std::fmt;

/// ASN.1 tag class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Universal (built-in types).
    Universal,
    /// `[APPLICATION n]`.
    Application,
    /// `[n]` context-specific.
    Context,
    /// Private.
    Private,
}

/// A decoded identifier: class, constructed bit and tag number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    /// Tag class.
    pub class: Class,
    /// Constructed (true) or primitive (false) encoding.
    pub constructed: bool,
    /// Tag number.
    pub number: u32,
}

impl Tag {
    /// A universal SEQUENCE (constructed, number 16).
    pub const SEQUENCE: Tag = Tag {
        class: Class::Universal,
        constructed: true,
        number: 16,
    };
    /// A universal INTEGER.
    pub const INTEGER: Tag = Tag {
        class: Class::Universal,
        constructed: false,
        number: 2,
    };
    /// A universal GeneralString (Kerberos realms and name components).
    pub const GENERAL_STRING: Tag = Tag {
        class: Class::Universal,
        constructed: false,
        number: 27,
    };
    /// A universal BIT STRING.
    pub const BIT_STRING: Tag = Tag {
        class: Class::Universal,
        constructed: false,
        number: 3,
    };

    /// A universal GeneralizedTime (KerberosTime).
    pub const GENERALIZED_TIME: Tag = Tag {
        class: Class::Universal,
        constructed: false,
        number: 24,
    };
    /// A universal OCTET STRING.
    pub const OCTET_STRING: Tag = Tag {
        class: Class::Universal,
        constructed: false,
        number: 4,
    };

    /// `[APPLICATION n]`, constructed.
    pub const fn application(number: u32) -> Tag {
        Tag {
            class: Class::Application,
            constructed: true,
            number,
        }
    }

    /// `[n]` context-specific, constructed (Kerberos uses explicit tagging).
    pub const fn context(number: u32) -> Tag {
        Tag {
            class: Class::Context,
            constructed: true,
            number,
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.class {
            Class::Universal => write!(f, "UNIVERSAL {}", self.number),
            Class::Application => write!(f, "[APPLICATION {}]", self.number),
            Class::Context => write!(f, "[{}]", self.number),
            Class::Private => write!(f, "[PRIVATE {}]", self.number),
        }
    }
}

/// Why input is not the DER that was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DerError {
    /// Input ended inside a tag, a length or a value.
    Truncated,
    /// Indefinite length (BER, not DER).
    IndefiniteLength,
    /// A length that is not minimally encoded, or wider than 4 bytes.
    BadLength,
    /// A tag number that is not minimally encoded or too large.
    BadTag,
    /// A different tag stood where one was required.
    UnexpectedTag {
        /// What the structure requires.
        expected: Tag,
        /// What the input held (None at end of input).
        found: Option<Tag>,
    },
    /// Bytes left over after a complete structure.
    TrailingData,
    /// An INTEGER that is empty, not minimal, or out of range.
    BadInteger,
    /// Constructed values nested deeper than the walk allows.
    TooDeep,
}

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DerError::Truncated => f.write_str("DER input is truncated"),
            DerError::IndefiniteLength => f.write_str("DER indefinite length"),
            DerError::BadLength => f.write_str("DER length is not minimally encoded"),
            DerError::BadTag => f.write_str("DER tag number is malformed"),
            DerError::UnexpectedTag {
                expected,
                found: Some(found),
            } => write!(f, "expected DER tag {expected}, found {found}"),
            DerError::UnexpectedTag {
                expected,
                found: None,
            } => write!(f, "expected DER tag {expected}, found end of input"),
            DerError::TrailingData => f.write_str("trailing bytes after DER value"),
            DerError::BadInteger => f.write_str("DER INTEGER is malformed or out of range"),
            DerError::TooDeep => f.write_str("DER values nested too deeply"),
        }
    }
}

impl std::error::Error for DerError {}

/// A cursor over DER-encoded bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    input: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Reader { input }
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self) -> Result<(), DerError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DerError::TrailingData)
        }
    }

    /// The tag of the next element, without consuming it.
    pub fn peek_tag(&self) -> Result<Option<Tag>, DerError> {
        if self.input.is_empty() {
            return Ok(None);
        }
        read_tag(self.input).map(|(tag, _)| Some(tag))
    }

    /// Reads the next element, whatever its tag: returns the tag and value.
    pub fn read_any(&mut self) -> Result<(Tag, &'a [u8]), DerError> {
        let (tag, used) = read_tag(self.input)?;
        let rest = &self.input[used..];
        let (len, used_len) = read_length(rest)?;
        let rest = &rest[used_len..];
        if rest.len() < len {
            return Err(DerError::Truncated);
        }
        let (value, after) = rest.split_at(len);
        self.input = after;
        Ok((tag, value))
    }

    /// Reads the next element, which must carry `tag`; returns its value.
    pub fn expect(&mut self, tag: Tag) -> Result<&'a [u8], DerError> {
        match self.peek_tag()? {
            Some(found) if found == tag => self.read_any().map(|(_, v)| v),
            found => Err(DerError::UnexpectedTag {
                expected: tag,
                found,
            }),
        }
    }

    /// Reads the next element if it carries `tag`.
    pub fn optional(&mut self, tag: Tag) -> Result<Option<&'a [u8]>, DerError> {
        match self.peek_tag()? {
            Some(found) if found == tag => self.read_any().map(|(_, v)| Some(v)),
            _ => Ok(None),
        }
    }

    /// Reads an explicitly tagged `[n] INTEGER` that fits in an i64.
    pub fn context_integer(&mut self, n: u32) -> Result<i64, DerError> {
        let inner = self.expect(Tag::context(n))?;
        let mut r = Reader::new(inner);
        let value = parse_integer(r.expect(Tag::INTEGER)?)?;
        r.finish()?;
        Ok(value)
    }
}

/// Checks that `input` is a sequence of well-formed DER TLVs whose
/// constructed values are themselves, recursively, sequences of well-formed
/// TLVs, at most `max_depth` levels deep. Primitive values (OCTET STRINGs
/// holding ciphertext, for instance) are not looked into.
///
/// The walk is bounded: it visits each byte at most `max_depth` times and
/// recurses at most `max_depth` levels.
pub fn validate(input: &[u8], max_depth: usize) -> Result<(), DerError> {
    let mut r = Reader::new(input);
    while !r.is_empty() {
        let (tag, value) = r.read_any()?;
        if tag.constructed {
            if max_depth == 0 {
                return Err(DerError::TooDeep);
            }
            validate(value, max_depth - 1)?;
        }
    }
    Ok(())
}

fn read_tag(input: &[u8]) -> Result<(Tag, usize), DerError> {
    let first = *input.first().ok_or(DerError::Truncated)?;
    let class = match first >> 6 {
        0 => Class::Universal,
        1 => Class::Application,
        2 => Class::Context,
        _ => Class::Private,
    };
    let constructed = first & 0x20 != 0;
    let low = u32::from(first & 0x1f);
    if low != 0x1f {
        return Ok((
            Tag {
                class,
                constructed,
                number: low,
            },
            1,
        ));
    }
    // High-tag-number form: base-128, at most 4 bytes (numbers < 2^28),
    // minimal (no leading 0x80) and only for numbers >= 31.
    let mut number: u32 = 0;
    for (i, &b) in input[1..].iter().enumerate() {
        if i == 4 || (i == 0 && b == 0x80) {
            return Err(DerError::BadTag);
        }
        number = (number << 7) | u32::from(b & 0x7f);
        if b & 0x80 == 0 {
            if number < 31 {
                return Err(DerError::BadTag);
            }
            return Ok((
                Tag {
                    class,
                    constructed,
                    number,
                },
                i + 2,
            ));
        }
    }
    Err(DerError::Truncated)
}

fn read_length(input: &[u8]) -> Result<(usize, usize), DerError> {
    let first = *input.first().ok_or(DerError::Truncated)?;
    if first < 0x80 {
        return Ok((usize::from(first), 1));
    }
    if first == 0x80 {
        return Err(DerError::IndefiniteLength);
    }
    let n = usize::from(first & 0x7f);
    if n > 4 {
        return Err(DerError::BadLength);
    }
    let bytes = input.get(1..1 + n).ok_or(DerError::Truncated)?;
    if bytes[0] == 0 {
        return Err(DerError::BadLength);
    }
    let len = bytes
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    if len < 0x80 {
        return Err(DerError::BadLength);
    }
    Ok((len, 1 + n))
}

/// Appends one DER TLV with a single-byte identifier `tag` and a minimal
/// definite length. Values longer than 2^32 - 1 bytes cannot be encoded
/// (nothing here comes near that; such a value is refused).
pub fn write_tlv(out: &mut Vec<u8>, tag: u8, value: &[u8]) -> Result<(), DerError> {
    let n = value.len();
    let len = u32::try_from(n).map_err(|_| DerError::BadLength)?;
    out.reserve(6 + n);
    out.push(tag);
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    Ok(())
}

/// Decodes the contents of a DER INTEGER that fits in an i64.
pub fn parse_integer(bytes: &[u8]) -> Result<i64, DerError> {
    if bytes.is_empty() || bytes.len() > 8 {
        return Err(DerError::BadInteger);
    }
    if bytes.len() > 1
        && ((bytes[0] == 0 && bytes[1] & 0x80 == 0) || (bytes[0] == 0xff && bytes[1] & 0x80 != 0))
    {
        return Err(DerError::BadInteger);
    }
    let negative = bytes[0] & 0x80 != 0;
    let mut value: i64 = if negative { -1 } else { 0 };
    for &b in bytes {
        value = (value << 8) | i64::from(b);
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths() {
        let mut short = vec![0x04, 0x03, 1, 2, 3];
        let mut r = Reader::new(&short);
        let (tag, v) = r.read_any().unwrap();
        assert_eq!(tag.number, 4);
        assert_eq!(v, &[1, 2, 3]);
        assert!(r.is_empty());

        short.clear();
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend(std::iter::repeat(7).take(0x80));
        let mut r = Reader::new(&long);
        assert_eq!(r.read_any().unwrap().1.len(), 0x80);
    }

    #[test]
    fn refuses_indefinite_and_non_minimal_lengths() {
        assert_eq!(
            Reader::new(&[0x30, 0x80, 0, 0]).read_any().unwrap_err(),
            DerError::IndefiniteLength
        );
        assert_eq!(
            Reader::new(&[0x04, 0x81, 0x05, 1, 2, 3, 4, 5])
                .read_any()
                .unwrap_err(),
            DerError::BadLength
        );
        assert_eq!(
            Reader::new(&[0x04, 0x82, 0x00, 0x90])
                .read_any()
                .unwrap_err(),
            DerError::BadLength
        );
        assert_eq!(
            Reader::new(&[0x04, 0x85, 1, 1, 1, 1, 1])
                .read_any()
                .unwrap_err(),
            DerError::BadLength
        );
    }

    #[test]
    fn refuses_truncation_everywhere() {
        for input in [
            &[][..],
            &[0x04],
            &[0x04, 0x02, 1],
            &[0x1f],
            &[0x1f, 0x81],
            &[0x04, 0x82, 1],
        ] {
            assert!(Reader::new(input).read_any().is_err(), "{input:?}");
        }
    }

    #[test]
    fn high_tag_numbers_are_bounded_and_minimal() {
        let (tag, used) = read_tag(&[0x5f, 0x81, 0x00]).unwrap();
        assert_eq!((tag.class, tag.number, used), (Class::Application, 128, 3));
        assert_eq!(read_tag(&[0x5f, 0x80, 0x01]).unwrap_err(), DerError::BadTag);
        assert_eq!(read_tag(&[0x5f, 0x1e]).unwrap_err(), DerError::BadTag);
        assert_eq!(
            read_tag(&[0x5f, 0x81, 0x81, 0x81, 0x81, 0x01]).unwrap_err(),
            DerError::BadTag
        );
    }

    #[test]
    fn expect_names_the_mismatch() {
        let err = Reader::new(&[0x02, 0x01, 0x05])
            .expect(Tag::SEQUENCE)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected DER tag UNIVERSAL 16, found UNIVERSAL 2"
        );
        let err = Reader::new(&[]).expect(Tag::context(1)).unwrap_err();
        assert_eq!(err.to_string(), "expected DER tag [1], found end of input");
    }

    #[test]
    fn integers() {
        assert_eq!(parse_integer(&[0x05]).unwrap(), 5);
        assert_eq!(parse_integer(&[0x00, 0x80]).unwrap(), 128);
        assert_eq!(parse_integer(&[0xff]).unwrap(), -1);
        assert_eq!(
            parse_integer(&[0x00, 0x05]).unwrap_err(),
            DerError::BadInteger
        );
        assert_eq!(
            parse_integer(&[0xff, 0x80]).unwrap_err(),
            DerError::BadInteger
        );
        assert_eq!(parse_integer(&[]).unwrap_err(), DerError::BadInteger);
        assert_eq!(parse_integer(&[1; 9]).unwrap_err(), DerError::BadInteger);
    }

    #[test]
    fn write_tlv_round_trips_every_length_form() {
        for n in [
            0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, 0x12_3456,
        ] {
            let value = vec![0xab; n];
            let mut out = Vec::new();
            write_tlv(&mut out, 0x04, &value).unwrap();
            let mut r = Reader::new(&out);
            let (tag, v) = r.read_any().unwrap();
            assert_eq!((tag.number, v.len()), (4, n));
            r.finish().unwrap();
        }
    }

    #[test]
    fn validate_walks_constructed_values() {
        // SEQUENCE { [1] { INTEGER 5 }, OCTET STRING (opaque, not walked) }
        let good = [0x30, 0x08, 0xa1, 0x03, 0x02, 0x01, 0x05, 0x04, 0x01, 0xff];
        validate(&good, 4).unwrap();
        // A constructed value whose contents are not TLVs.
        let bad = [0x30, 0x03, 0xa1, 0x05, 0x02];
        assert_eq!(validate(&bad, 4).unwrap_err(), DerError::Truncated);
        // Nesting beyond the bound.
        assert_eq!(validate(&good, 1).unwrap_err(), DerError::TooDeep);
        validate(&good, 2).unwrap();
        // An indefinite length deep inside.
        let indefinite = [0x30, 0x04, 0xa1, 0x80, 0x00, 0x00];
        assert_eq!(
            validate(&indefinite, 4).unwrap_err(),
            DerError::IndefiniteLength
        );
        validate(&[], 0).unwrap();
    }

    #[test]
    fn context_integer_and_optional() {
        // [1] INTEGER 5, [3] absent, [2] INTEGER 10
        let input = [0xa1, 0x03, 0x02, 0x01, 0x05, 0xa2, 0x03, 0x02, 0x01, 0x0a];
        let mut r = Reader::new(&input);
        assert_eq!(r.context_integer(1).unwrap(), 5);
        assert_eq!(r.optional(Tag::context(3)).unwrap(), None);
        assert_eq!(r.context_integer(2).unwrap(), 10);
        r.finish().unwrap();
    }
}
