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

use bytes::Bytes;

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

/// Input pieces of at least this many bytes given as shared buffers
/// ([`Deframer::push_shared`]) are kept as they are, not copied: a large
/// partial record then costs one copy (the receive buffer it arrived in),
/// not two. Smaller pieces are copied (and coalesced), so that a record
/// dripped in tiny messages cannot pin a receive buffer per byte.
pub const SHARE_AT_LEAST: usize = 16 * 1024;

/// Most shared pieces held for one record; past it, input is copied.
const MAX_SHARED_PIECES: usize = 16;

/// Part of a record body.
#[derive(Debug)]
enum Piece {
    Owned(Vec<u8>),
    Shared(Bytes),
}

impl Piece {
    fn bytes(&self) -> &[u8] {
        match self {
            Piece::Owned(v) => v,
            Piece::Shared(b) => b,
        }
    }
}

/// Incremental record reader over an arbitrarily chunked byte stream.
#[derive(Debug)]
pub struct Deframer {
    limit: usize,
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// The current record body so far, in order.
    pieces: Vec<Piece>,
    body_len: usize,
    /// Length the current header announced, once complete.
    want: Option<usize>,
    /// Shared pieces at least this long are kept by reference.
    share_at_least: usize,
}

impl Deframer {
    /// A reader that refuses records longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Deframer {
            limit,
            header: [0; HEADER_LEN],
            header_len: 0,
            pieces: Vec::new(),
            body_len: 0,
            want: None,
            share_at_least: SHARE_AT_LEAST,
        }
    }

    /// A reader that keeps shared pieces of at least `share_at_least`
    /// bytes by reference (instead of [`SHARE_AT_LEAST`]; for tests and
    /// fuzzing, which feed small inputs).
    pub fn with_share_threshold(limit: usize, share_at_least: usize) -> Self {
        Deframer {
            share_at_least: share_at_least.max(1),
            ..Deframer::new(limit)
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
        self.header_len + self.body_len
    }

    /// Feeds `input` (copied as needed); appends every record it completes
    /// to `out`.
    ///
    /// On error the stream is unusable (the receiver should close it); the
    /// records completed before the error are still in `out`.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), FramingError> {
        self.feed(input, None, out)
    }

    /// Like [`Deframer::push`], for input in a shared buffer: pieces of at
    /// least [`SHARE_AT_LEAST`] bytes of a record in progress are kept by
    /// reference instead of copied.
    pub fn push_shared(
        &mut self,
        input: &Bytes,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FramingError> {
        self.feed(input, Some(input), out)
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        shared: Option<&Bytes>,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), FramingError> {
        // Offset of `input` within `shared`, as `input` is consumed.
        let mut offset = 0usize;
        while !input.is_empty() {
            match self.want {
                None => {
                    let take = (HEADER_LEN - self.header_len).min(input.len());
                    let (head, rest) = input.split_at(take);
                    if let Some(slot) = self.header.get_mut(self.header_len..self.header_len + take)
                    {
                        slot.copy_from_slice(head);
                    }
                    self.header_len += take;
                    input = rest;
                    offset += take;
                    if self.header_len == HEADER_LEN {
                        let len = parse_header(self.header, self.limit)?;
                        self.want = Some(len);
                    }
                }
                Some(len) => {
                    let take = (len - self.body_len).min(input.len());
                    let (part, rest) = input.split_at(take);
                    let share = shared.filter(|_| {
                        take >= self.share_at_least
                            && take < len
                            && self.pieces.len() < MAX_SHARED_PIECES
                    });
                    match share {
                        Some(buf) => self
                            .pieces
                            .push(Piece::Shared(buf.slice(offset..offset + take))),
                        None => match self.pieces.last_mut() {
                            Some(Piece::Owned(v)) => v.extend_from_slice(part),
                            _ => {
                                // Grow as bytes arrive, never on a mere claim.
                                let mut v = Vec::with_capacity(len.min(16 * 1024).max(take));
                                v.extend_from_slice(part);
                                self.pieces.push(Piece::Owned(v));
                            }
                        },
                    }
                    self.body_len += take;
                    input = rest;
                    offset += take;
                    if self.body_len == len {
                        out.push(self.take_body(len));
                        self.want = None;
                        self.header_len = 0;
                    }
                }
            }
        }
        Ok(())
    }

    /// The completed body as one buffer (moved when it is one owned piece).
    fn take_body(&mut self, len: usize) -> Vec<u8> {
        self.body_len = 0;
        let mut pieces = std::mem::take(&mut self.pieces);
        if let [Piece::Owned(_)] = pieces.as_slice() {
            if let Some(Piece::Owned(v)) = pieces.pop() {
                return v;
            }
        }
        let mut body = Vec::with_capacity(len);
        for p in &pieces {
            body.extend_from_slice(p.bytes());
        }
        body
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

    #[test]
    fn large_shared_pieces_are_kept_small_ones_copied_and_the_record_is_whole() {
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let wire = encode(&body);
        let mut d = Deframer::new(200_000);
        let mut out = Vec::new();
        // A 40 KB piece (kept), then 3 small ones (copied), then the rest.
        let chunks = [0..40_004, 40_004..40_010, 40_010..40_020, 40_020..40_030];
        for r in &chunks {
            d.push_shared(&Bytes::copy_from_slice(&wire[r.clone()]), &mut out)
                .unwrap();
        }
        assert!(matches!(d.pieces.first(), Some(Piece::Shared(p)) if p.len() == 40_000));
        assert_eq!(d.pieces.len(), 2, "small pieces coalesce into one");
        assert_eq!(d.buffered(), 40_030);
        d.push_shared(&Bytes::copy_from_slice(&wire[40_030..]), &mut out)
            .unwrap();
        assert_eq!(out, vec![body]);
        assert!(d.is_idle() && d.pieces.is_empty());
    }

    #[test]
    fn shared_and_copied_input_give_the_same_records() {
        let mut wire = encode(&[7u8; 50_000]);
        wire.extend(encode(b"two"));
        wire.extend(encode(&[9u8; 30_000]));
        for cut in [1usize, 3, 17, 20_000, 49_000, 50_004, 70_000] {
            let (a, b) = wire.split_at(cut.min(wire.len()));
            let (mut x, mut y) = (Deframer::new(100_000), Deframer::new(100_000));
            let (mut ox, mut oy) = (Vec::new(), Vec::new());
            for part in [a, b] {
                x.push(part, &mut ox).unwrap();
                y.push_shared(&Bytes::copy_from_slice(part), &mut oy)
                    .unwrap();
            }
            assert_eq!(ox, oy, "cut at {cut}");
            assert_eq!(ox.len(), 3);
        }
    }
}
