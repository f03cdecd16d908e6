//! The first request of a connection, carried in the WebSocket opening
//! handshake (docs/protocol.md, "The first request in the upgrade").
//!
//! RFC 6455 §4.1 has a client wait for the server's handshake response
//! before it sends any frame, so a new connection would pay a round trip
//! for the upgrade and another for its first exchange. Instead the client
//! may put its first record in the upgrade request, base64-encoded in
//! [`HEADER`]; a server that takes it answers [`ACCEPTED`] in the same
//! header of its 101 response and sends the record's reply as its first
//! record. A server that does not know the header ignores it (as HTTP
//! has servers do with unknown headers), and the client, seeing no
//! [`ACCEPTED`], sends the request as a binary message as usual.

use data_encoding::BASE64;

/// The request header carrying the record, and the response header
/// acknowledging it (lowercase, as HTTP/1.1 compares names without case).
pub const HEADER: &str = "krb5-wss-request";

/// The response header's value when the server took the record.
pub const ACCEPTED: &str = "accepted";

/// The largest record (length prefix included) a client carries in the
/// upgrade: its base64 form is [`MAX_ENCODED`] characters, well within
/// the 8 KiB a request header line may take in common web servers
/// (nginx's `large_client_header_buffers`). Larger records go as a
/// message after the upgrade.
pub const MAX_RECORD: usize = 3072;

/// The longest header value a server accepts.
pub const MAX_ENCODED: usize = MAX_RECORD / 3 * 4;

/// The header value carrying `record`, or None when it is too large to
/// carry (over [`MAX_RECORD`]).
pub fn encode(record: &[u8]) -> Option<String> {
    (record.len() <= MAX_RECORD).then(|| BASE64.encode(record))
}

/// Why a header value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than [`MAX_ENCODED`].
    TooLong(usize),
    /// Not base64 (RFC 4648 §4, with padding).
    NotBase64,
    /// Decodes to nothing.
    Empty,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLong(n) => {
                write!(f, "{HEADER} is {n} characters long (at most {MAX_ENCODED})")
            }
            DecodeError::NotBase64 => write!(f, "{HEADER} is not base64"),
            DecodeError::Empty => write!(f, "{HEADER} is empty"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// The record carried by a header value (still to be deframed and checked
/// like any record the client sends).
pub fn decode(value: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if value.len() > MAX_ENCODED {
        return Err(DecodeError::TooLong(value.len()));
    }
    let record = BASE64.decode(value).map_err(|_| DecodeError::NotBase64)?;
    if record.is_empty() {
        return Err(DecodeError::Empty);
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_up_to_the_limit() {
        for len in [1, 2, 3, 300, MAX_RECORD - 1, MAX_RECORD] {
            let record: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let value = encode(&record).unwrap();
            assert!(value.len() <= MAX_ENCODED, "{len}");
            assert_eq!(decode(value.as_bytes()).unwrap(), record);
        }
        assert_eq!(encode(&vec![0; MAX_RECORD + 1]), None);
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        assert_eq!(decode(b"").unwrap_err(), DecodeError::Empty);
        assert_eq!(decode(b"not base64!").unwrap_err(), DecodeError::NotBase64);
        assert_eq!(decode(b"AAA").unwrap_err(), DecodeError::NotBase64);
        let long = vec![b'A'; MAX_ENCODED + 4];
        assert_eq!(
            decode(&long).unwrap_err(),
            DecodeError::TooLong(MAX_ENCODED + 4)
        );
        assert!(DecodeError::NotBase64.to_string().contains(HEADER));
    }
}
