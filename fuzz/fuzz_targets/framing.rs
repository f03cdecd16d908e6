//! The record framing: arbitrary bytes in arbitrary chunks.
//!
//! Input: byte 0 picks the record limit, byte 1 seeds the chunk sizes; the
//! rest is the stream. Properties: no panic; the records are the same
//! whatever the chunking (compared with feeding everything at once); no
//! record exceeds the limit; the buffered bytes never exceed one header
//! plus the limit; re-encoding the records gives back the stream's prefix;
//! feeding the chunks as shared buffers (pieces kept by reference) changes
//! nothing.
#![no_main]

use krb5_wss_proto::framing::{encode, Deframer, HEADER_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [limit_byte, chunk_seed, stream @ ..] = data else {
        return;
    };
    let limit = 1 + usize::from(*limit_byte) * 64;

    let mut whole = Deframer::new(limit);
    let mut expected = Vec::new();
    let whole_result = whole.push(stream, &mut expected);

    let mut chunked = Deframer::new(limit);
    let mut got = Vec::new();
    let mut rest = stream;
    let mut seed = *chunk_seed;
    let mut chunked_result = Ok(());
    while !rest.is_empty() {
        seed = seed.wrapping_mul(31).wrapping_add(7);
        let n = (usize::from(seed) % 17 + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        chunked_result = chunked.push(chunk, &mut got);
        assert!(chunked.buffered() <= HEADER_LEN + limit);
        if chunked_result.is_err() {
            break;
        }
    }
    assert_eq!(got, expected, "chunking changed the records");

    // The same chunks as shared buffers, with pieces of 2 bytes or more kept
    // by reference: the same records and outcome.
    let mut shared = Deframer::with_share_threshold(limit, 2);
    let mut got_shared = Vec::new();
    let mut rest = stream;
    let mut seed = *chunk_seed;
    let mut shared_result = Ok(());
    while !rest.is_empty() {
        seed = seed.wrapping_mul(31).wrapping_add(7);
        let n = (usize::from(seed) % 17 + 1).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        shared_result = shared.push_shared(&bytes::Bytes::copy_from_slice(chunk), &mut got_shared);
        assert!(shared.buffered() <= HEADER_LEN + limit);
        if shared_result.is_err() {
            break;
        }
    }
    assert_eq!(got_shared, expected, "shared buffers changed the records");
    assert_eq!(chunked_result, shared_result, "shared buffers changed the outcome");
    assert_eq!(whole_result, chunked_result, "chunking changed the outcome");
    let mut reencoded = Vec::new();
    for r in &expected {
        assert!(!r.is_empty() && r.len() <= limit);
        reencoded.extend(encode(r));
    }
    assert_eq!(&stream[..reencoded.len()], &reencoded[..]);
});
