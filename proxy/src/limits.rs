//! The proxy's bounds: sizes, counts and timeouts, with their defaults,
//! their accepted ranges and the parsers for their textual forms.
//!
//! Every buffer, connection and wait in the proxy is bounded by one of
//! these values (or by a constant derived from them).

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::settings::{Bytes, Count, Count32, Secs, MAX_TIMEOUT};

/// Smallest record/reply limit accepted (no Kerberos message is smaller).
const MIN_SIZE: usize = 1024;
/// Largest record/reply limit accepted.
const MAX_SIZE: usize = 16 * 1024 * 1024;
/// Largest partial-record budget accepted.
const MAX_PARTIAL: usize = 64 * 1024 * 1024 * 1024;
/// Largest connection limit accepted.
const MAX_CONNECTIONS: usize = 1_000_000;

crate::settings! {
    /// All the configurable bounds (`[limits]`).
    pub struct Limits in "limits", flags "" {
        /// Largest request record (length-prefix value) accepted; larger
        /// closes 4413. 256 KiB because Active Directory's requests can pass
        /// 128 KiB: an S4U2Proxy TGS-REQ carries the TGT and the evidence
        /// ticket, each with a PAC, and AD's `MaxTokenSize` is 65,535 (test:
        /// `tests/test_big_messages.py`, a 190 KB TGS-REQ over /kdc and
        /// MS-KKDCP).
        max_record_size: Bytes = 256 * 1024,
        /// Largest reply accepted from a KDC; a larger one counts as that KDC
        /// failing.
        max_reply_size: Bytes = 1024 * 1024,
        /// Bytes of partial records (a record whose first bytes arrived, not
        /// yet complete) held across all connections at once; a record that
        /// would take more closes 4503. Each partial record is held once, in
        /// the buffer it arrived in (pieces under 16 KiB are copied and
        /// joined).
        max_partial_bytes: Bytes = 256 * 1024 * 1024,
        /// Client connections (TLS, HTTP or WebSocket) open at once; over it,
        /// close 4503.
        max_connections: Count = 10_000,
        /// Client connections open at once from one address (IPv6: one /64);
        /// over it, close 4429.
        max_connections_per_address: Count = 100,
        /// Requests per connection per second, in bursts of up to N; over it,
        /// close 4429. High on purpose: the plugin carries a whole process's
        /// requests over one pooled connection (`kvno` of 50 services sends
        /// 50 in about 70 ms); password guessing is not this limit's job.
        max_requests_per_second: Count32 = 1000,
        /// Exchanges with upstream servers in progress at once, over all
        /// clients; over it, close 4503.
        max_upstream_exchanges: Count = 1000,
        /// TLS + HTTP + WebSocket handshake together (and the first MS-KKDCP
        /// request's body).
        handshake_timeout: Secs = Duration::from_secs(10),
        /// A WebSocket with no record in progress for this long is closed
        /// 1000 `idle`; an MS-KKDCP connection kept open after an answer is
        /// closed when no next request's headers are complete this long
        /// after it.
        idle_timeout: Secs = Duration::from_secs(60),
        /// A record not complete this long after its first byte: close 4408;
        /// an MS-KKDCP request after the first on its connection: its body
        /// must be complete this long after its headers, else 408.
        record_timeout: Secs = Duration::from_secs(10),
        /// Resolving and connecting to one KDC.
        connect_timeout: Secs = Duration::from_secs(3),
        /// Sending the request to one KDC over TCP and reading its whole
        /// reply.
        reply_timeout: Secs = Duration::from_secs(10),
        /// Waiting for one KDC's UDP reply (realms with `udp`) before trying
        /// TCP to the same KDC.
        udp_timeout: Secs = Duration::from_secs(1),
        /// Handing a reply or a close frame to the client.
        send_timeout: Secs = Duration::from_secs(10),
        /// On SIGTERM, the longest wait for exchanges in progress.
        shutdown_timeout: Secs = Duration::from_secs(10),
    }
}

impl Limits {
    /// Checks every value against its accepted range.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v, max) in [
            ("max_record_size", self.max_record_size, MAX_SIZE),
            ("max_reply_size", self.max_reply_size, MAX_SIZE),
            ("max_partial_bytes", self.max_partial_bytes, MAX_PARTIAL),
        ] {
            if !(MIN_SIZE..=max).contains(&v) {
                return Err(format!(
                    "{name} = {v}: must be between {MIN_SIZE} and {max} bytes"
                ));
            }
        }
        for (name, v) in [
            ("max_connections", self.max_connections),
            (
                "max_connections_per_address",
                self.max_connections_per_address,
            ),
            ("max_upstream_exchanges", self.max_upstream_exchanges),
            (
                "max_requests_per_second",
                self.max_requests_per_second as usize,
            ),
        ] {
            if !(1..=MAX_CONNECTIONS).contains(&v) {
                return Err(format!(
                    "{name} = {v}: must be between 1 and {MAX_CONNECTIONS}"
                ));
            }
        }
        for (name, d) in [
            ("handshake_timeout", self.handshake_timeout),
            ("idle_timeout", self.idle_timeout),
            ("record_timeout", self.record_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reply_timeout", self.reply_timeout),
            ("send_timeout", self.send_timeout),
            ("udp_timeout", self.udp_timeout),
            ("shutdown_timeout", self.shutdown_timeout),
        ] {
            if d.is_zero() || d > MAX_TIMEOUT {
                return Err(format!(
                    "{name} = {d:?}: must be more than 0 and at most 24 hours"
                ));
            }
        }
        Ok(())
    }

    /// The longest one exchange with upstream servers can take when the
    /// realm has `servers` servers (each tried over UDP first when `udp`),
    /// each name resolving to at most
    /// [`crate::upstream::MAX_ADDRESSES_PER_NAME`] addresses.
    pub fn exchange_bound(&self, servers: usize, udp: bool) -> Duration {
        let per_address = self.connect_timeout
            + self.reply_timeout
            + if udp {
                self.udp_timeout
            } else {
                Duration::ZERO
            };
        // Resolution shares connect_timeout, once per server.
        let per_server =
            self.connect_timeout + per_address * crate::upstream::MAX_ADDRESSES_PER_NAME as u32;
        per_server.saturating_mul(servers.max(1) as u32)
    }

    /// The largest WebSocket message (and frame) a client may send: one
    /// whole record with its length prefix. Several smaller records may
    /// share a message up to the same total.
    pub fn max_message_size(&self) -> usize {
        self.max_record_size + krb5_wss_proto::framing::HEADER_LEN
    }

    /// tungstenite's settings for a client connection: message and frame
    /// sizes capped at [`Limits::max_message_size`] (tungstenite's own
    /// defaults are 64 MiB and 16 MiB), and a bounded write buffer.
    pub fn websocket_config(&self) -> WebSocketConfig {
        let max = self.max_message_size();
        let reply = self.max_reply_size + krb5_wss_proto::framing::HEADER_LEN;
        WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
            // tungstenite zeroes this much of its read buffer before every
            // read and keeps it allocated per connection, idle or not: keep
            // it small (4 KiB → 2 KiB took an idle connection from 15.6 to
            // 13.6 KiB, BENCHMARKS.md section D); a larger frame still
            // reserves its own length, and TLS has already buffered the
            // record, so a request over 2 KiB costs another copy, not
            // another system call.
            .read_buffer_size(2 * 1024)
            .write_buffer_size(0)
            // One reply plus its frame header and a close frame.
            .max_write_buffer_size(reply + 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let l = Limits::default();
        l.validate().unwrap();
        assert_eq!(l.max_record_size, 262144);
        assert_eq!(l.max_message_size(), 262148);
        let ws = l.websocket_config();
        assert_eq!(ws.max_message_size, Some(262148));
        assert_eq!(ws.max_frame_size, Some(262148));
    }

    #[test]
    fn validation_names_the_bad_value() {
        let l = Limits {
            max_record_size: 10,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("max_record_size"));
        let l = Limits {
            idle_timeout: Duration::ZERO,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("idle_timeout"));
        let l = Limits {
            max_connections: 0,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("max_connections"));
        let l = Limits {
            max_requests_per_second: 0,
            ..Limits::default()
        };
        assert!(l
            .validate()
            .unwrap_err()
            .contains("max_requests_per_second"));
        let l = Limits {
            shutdown_timeout: Duration::ZERO,
            ..Limits::default()
        };
        assert!(l.validate().unwrap_err().contains("shutdown_timeout"));
    }

    #[test]
    fn exchange_bound_covers_every_attempt() {
        let l = Limits::default();
        // 2 servers x (3s resolve + 4 addresses x (3s + 10s)).
        assert_eq!(
            l.exchange_bound(2, false),
            Duration::from_secs(2 * (3 + 4 * 13))
        );
        assert!(l.exchange_bound(1, true) > l.exchange_bound(1, false));
    }
}
