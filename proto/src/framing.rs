//! RFC 4120 §7.2.2 TCP record framing.
//!
//! Each record is a 4-byte big-endian length whose high bit is zero (the bit
//! is reserved for extensions nobody implements; a peer that sets it gets an
//! error), followed by that many bytes of DER.
//!
//! [`Deframer`] accepts bytes in any chunking (a record may span WebSocket
//! messages; one message may hold several records) and yields whole records.
//! It never buffers more than one header plus `max_record` bytes.

use std::fmt;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// The largest length the prefix can express (high bit reserved).
pub const MAX_ENCODABLE: usize = 0x7fff_ffff;

/// Why a byte stream is not a valid record stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// The reserved high bit of the length prefix was set.
    ReservedBit(u32),
    /// A record claims more bytes than the receiver accepts.
    TooLarge {
        /// The length the prefix claimed.
        claimed: usize,
        /// The receiver's limit.
        limit: usize,
    },
    /// A record of length zero (no Kerberos message is empty).
    Empty,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::ReservedBit(v) => {
                write!(
                    f,
                    "record length prefix {v:#010x} has the reserved high bit set"
                )
            }
            FramingError::TooLarge { claimed, limit } => {
                write!(
                    f,
                    "record of {claimed} bytes exceeds the limit of {limit} bytes"
                )
            }
            FramingError::Empty => f.write_str("record of length zero"),
        }
    }
}

impl std::error::Error for FramingError {}

/// Prefixes `message` with its 4-byte length.
///
/// # Panics
/// Never for messages up to [`MAX_ENCODABLE`] bytes; callers bound their
/// messages far below that. Larger input is truncated in the prefix, so
/// use [`try_encode`] where the size is not already bounded.
pub fn encode(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + message.len());
    out.extend_from_slice(&(message.len() as u32 & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Prefixes `message` with its 4-byte length, refusing messages the prefix
/// cannot express.
pub fn try_encode(message: &[u8]) -> Result<Vec<u8>, FramingError> {
    if message.len() > MAX_ENCODABLE {
        return Err(FramingError::TooLarge {
            claimed: message.len(),
            limit: MAX_ENCODABLE,
        });
    }
    Ok(encode(message))
}

/// Parses a length prefix, checking the reserved bit, emptiness and `limit`.
pub fn parse_header(header: [u8; HEADER_LEN], limit: usize) -> Result<usize, FramingError> {
    let raw = u32::from_be_bytes(header);
    if raw & 0x8000_0000 != 0 {
        return Err(FramingError::ReservedBit(raw));
    }
    let len = raw as usize;
    if len == 0 {
        return Err(FramingError::Empty);
    }
    if len > limit {
        return Err(FramingError::TooLarge {
            claimed: len,
            limit,
        });
    }
    Ok(len)
}

/// Incremental record reader over an arbitrarily chunked byte stream.
#[derive(Debug)]
pub struct Deframer {
    limit: usize,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Bytes of the current record body once the header is complete.
    body: Vec<u8>,
    /// Length the current header announced, once complete.
    want: Option<usize>,
}

impl Deframer {
    /// A reader that refuses records longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Deframer {
            limit,
            header: [0; HEADER_LEN],
            header_len: 0,
            body: Vec::new(),
            want: None,
        }
    }

    /// The largest record this reader accepts.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// True when no partial record is buffered.
    pub fn is_idle(&self) -> bool {
        self.header_len == 0 && self.want.is_none()
    }

    /// Bytes buffered for the record in progress (header included).
    pub fn buffered(&self) -> usize {
        self.header_len + self.body.len()
    }

    /// Feeds `input`; appends every record it completes to `out`.
    ///
    /// On error the stream is unusable (the receiver should close it); the
    /// records completed before the error are still in `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), FramingError> {
        while !input.is_empty() {
            match self.want {
                None => {
                    let take = (HEADER_LEN - self.header_len).min(input.len());
                    self.header[self.header_len..self.header_len + take]
                        .copy_from_slice(&input[..take]);
                    self.header_len += take;
                    input = &input[take..];
                    if self.header_len == HEADER_LEN {
                        let len = parse_header(self.header, self.limit)?;
                        self.want = Some(len);
                        // Grow as bytes arrive, never on a mere claim.
                        self.body = Vec::with_capacity(len.min(16 * 1024));
                    }
                }
                Some(len) => {
                    let take = (len - self.body.len()).min(input.len());
                    self.body.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.body.len() == len {
                        out.push(std::mem::take(&mut self.body));
                        self.want = None;
                        self.header_len = 0;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(d: &mut Deframer, chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, FramingError> {
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn encode_prefixes_big_endian_length() {
        assert_eq!(encode(b"abc"), vec![0, 0, 0, 3, b'a', b'b', b'c']);
        assert_eq!(try_encode(b"x").unwrap(), vec![0, 0, 0, 1, b'x']);
    }

    #[test]
    fn one_record_in_one_chunk() {
        let mut d = Deframer::new(100);
        let out = feed(&mut d, &[&encode(b"hello")]).unwrap();
        assert_eq!(out, vec![b"hello".to_vec()]);
        assert!(d.is_idle());
    }

    #[test]
    fn record_split_byte_by_byte() {
        let wire = encode(b"kerberos");
        let mut d = Deframer::new(100);
        let mut out = Vec::new();
        for b in &wire {
            assert!(out.is_empty());
            d.push(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, vec![b"kerberos".to_vec()]);
    }

    #[test]
    fn several_records_in_one_chunk_and_a_tail() {
        let mut wire = encode(b"one");
        wire.extend(encode(b"two"));
        wire.extend(&encode(b"three")[..5]);
        let mut d = Deframer::new(100);
        let out = feed(&mut d, &[&wire]).unwrap();
        assert_eq!(out, vec![b"one".to_vec(), b"two".to_vec()]);
        assert!(!d.is_idle());
        assert_eq!(d.buffered(), 5);
        let out = feed(&mut d, &[b"hree"]).unwrap();
        assert_eq!(out, vec![b"three".to_vec()]);
        assert!(d.is_idle());
    }

    #[test]
    fn header_split_across_chunks() {
        let wire = encode(b"abcdef");
        let mut d = Deframer::new(100);
        let out = feed(&mut d, &[&wire[..2], &wire[2..5], &wire[5..]]).unwrap();
        assert_eq!(out, vec![b"abcdef".to_vec()]);
    }

    #[test]
    fn reserved_bit_is_refused() {
        let mut d = Deframer::new(100);
        let err = feed(&mut d, &[&[0x80, 0, 0, 1, 0]]).unwrap_err();
        assert_eq!(err, FramingError::ReservedBit(0x8000_0001));
        assert!(err.to_string().contains("reserved high bit"));
    }

    #[test]
    fn oversized_claim_is_refused_before_any_body() {
        let mut d = Deframer::new(1000);
        let err = feed(&mut d, &[&0x7fff_ffffu32.to_be_bytes()]).unwrap_err();
        assert_eq!(
            err,
            FramingError::TooLarge {
                claimed: 0x7fff_ffff,
                limit: 1000
            }
        );
        assert!(err.to_string().contains("exceeds the limit of 1000 bytes"));
    }

    #[test]
    fn limit_is_inclusive() {
        let mut d = Deframer::new(3);
        assert_eq!(feed(&mut d, &[&encode(b"abc")]).unwrap().len(), 1);
        let mut d = Deframer::new(3);
        assert!(feed(&mut d, &[&encode(b"abcd")]).is_err());
    }

    #[test]
    fn empty_record_is_refused() {
        let mut d = Deframer::new(10);
        assert_eq!(
            feed(&mut d, &[&[0, 0, 0, 0]]).unwrap_err(),
            FramingError::Empty
        );
    }

    #[test]
    fn records_before_an_error_are_kept() {
        let mut wire = encode(b"ok");
        wire.extend([0xff, 0xff, 0xff, 0xff]);
        let mut d = Deframer::new(10);
        let mut out = Vec::new();
        assert!(d.push(&wire, &mut out).is_err());
        assert_eq!(out, vec![b"ok".to_vec()]);
    }
}
