//! The proxy's bounds: sizes, counts and timeouts, with their defaults,
//! their accepted ranges and the parsers for their textual forms.
//!
//! Every buffer, connection and wait in the proxy is bounded by one of
//! these values (or by a constant derived from them).

use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Smallest record/reply limit accepted (no Kerberos message is smaller).
const MIN_SIZE: usize = 1024;
/// Largest record/reply limit accepted.
const MAX_SIZE: usize = 16 * 1024 * 1024;
/// Largest partial-record budget accepted.
const MAX_PARTIAL: usize = 64 * 1024 * 1024 * 1024;
/// Largest connection limit accepted.
const MAX_CONNECTIONS: usize = 1_000_000;
/// Longest timeout accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// All the configurable bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request record accepted from a client, in bytes (the
    /// length-prefix value; larger claims close with 4413).
    pub max_record_size: usize,
    /// Largest reply record accepted from a KDC, in bytes.
    pub max_reply_size: usize,
    /// Bytes of partial records held across all connections at once (a
    /// global budget); a record that would take more closes 4503.
    pub max_partial_bytes: usize,
    /// Most client connections (TLS, HTTP or WebSocket) open at once.
    pub max_connections: usize,
    /// Time allowed for the TLS, HTTP and WebSocket handshakes together.
    pub handshake_timeout: Duration,
    /// Time a WebSocket may stay open with no record in progress.
    pub idle_timeout: Duration,
    /// Time allowed to complete a record once its first byte arrived.
    pub record_timeout: Duration,
    /// Time allowed to resolve and connect to one KDC.
    pub connect_timeout: Duration,
    /// Time allowed for one KDC to take the request and answer it.
    pub reply_timeout: Duration,
    /// Time allowed to hand a reply or a close frame to a client.
    pub send_timeout: Duration,
    /// Most connections open at once from one client address (an IPv6
    /// client counts by its /64); over it, close 4429.
    pub max_connections_per_address: usize,
    /// Requests one connection may make per second (a token bucket of this
    /// many tokens, refilled at this rate); over it, close 4429.
    pub max_requests_per_second: u32,
    /// Exchanges with upstream servers in progress at once, over all
    /// connections; over it, close 4503.
    pub max_upstream_exchanges: usize,
    /// Time to wait for a KDC's UDP reply (realms with `udp`) before
    /// trying TCP to the same KDC.
    pub udp_timeout: Duration,
    /// On SIGTERM, the longest wait for exchanges in progress to finish.
    pub shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_record_size: 256 * 1024,
            max_reply_size: 1024 * 1024,
            max_partial_bytes: 256 * 1024 * 1024,
            max_connections: 10_000,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            record_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            reply_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            max_connections_per_address: 100,
            max_requests_per_second: 1000,
            max_upstream_exchanges: 1000,
            udp_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(10),
        }
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

/// Parses a byte count: `131072`, `128KiB`, `128K`, `1MiB`, `1M`
/// (K and M are binary multiples; case-insensitive).
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (digits, mult) = [("kib", 1024), ("k", 1024), ("mib", 1 << 20), ("m", 1 << 20)]
        .iter()
        .find_map(|(suffix, m)| lower.strip_suffix(suffix).map(|d| (d.trim(), *m)))
        .unwrap_or((lower.as_str(), 1));
    let n: usize = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size (bytes, or a number with K/KiB/M/MiB)"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses a duration: a number of seconds (`10`, `2.5`) or a number with a
/// unit: `ms`, `s`, `m` (`500ms`, `10s`, `2m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim().to_ascii_lowercase();
    let (number, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (seconds, or a number with ms/s/m)"))?;
    seconds(v * scale).map_err(|e| format!("{s:?}: {e}"))
}

/// Converts a number of seconds, refusing negative, non-finite and absurd
/// values.
pub fn seconds(v: f64) -> Result<Duration, String> {
    if !v.is_finite() || v < 0.0 || v > MAX_TIMEOUT.as_secs_f64() {
        return Err("must be between 0 and 24 hours".into());
    }
    Ok(Duration::from_secs_f64(v))
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
    fn sizes() {
        assert_eq!(parse_size("131072").unwrap(), 131072);
        assert_eq!(parse_size("128KiB").unwrap(), 131072);
        assert_eq!(parse_size("128k").unwrap(), 131072);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("2M").unwrap(), 2 << 20);
        for bad in ["", "-1", "1.5K", "12 bytes", "K"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "-1", "ten", "1h", "inf", "NaN", "100000000"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
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
