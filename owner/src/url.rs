//! Recognising a WebSocket URL on a krb5.conf line.

/// The whitespace skipped before a URL: ASCII space and tab, nothing else.
pub fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// True when `value`, after leading blanks ([`is_blank`]), starts with
/// `wss://` or `ws://` in any case: the test that makes a krb5.conf entry
/// krb5-wss's. Whether the rest is a valid URL is the core's business (a
/// malformed one is a configuration error, never "not ours").
pub fn is_websocket_url(value: &[u8]) -> bool {
    let start = value
        .iter()
        .position(|b| !is_blank(*b))
        .unwrap_or(value.len());
    let rest = value.get(start..).unwrap_or(&[]);
    starts_with_ignore_case(rest, b"wss://") || starts_with_ignore_case(rest, b"ws://")
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_in_any_case() {
        for s in ["wss://h/kdc", "WSS://h", "Wss://h", "ws://h", "WS://h:80/x"] {
            assert!(is_websocket_url(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn leading_blanks_only() {
        assert!(is_websocket_url(b" wss://h"));
        assert!(is_websocket_url(b"\t \twss://h"));
        // One definition of whitespace: space and tab, not newline or NUL.
        assert!(!is_websocket_url(b"\nwss://h"));
        assert!(!is_websocket_url(b"\x0bwss://h"));
        assert!(!is_websocket_url(b"\0wss://h"));
    }

    #[test]
    fn other_values_are_not_urls() {
        for s in [
            "https://h/KdcProxy",
            "kdc.example.com:88",
            "wss:/h",
            "wss:",
            "ws",
            "",
            "   ",
            "xwss://h",
        ] {
            assert!(!is_websocket_url(s.as_bytes()), "{s:?}");
        }
    }

    #[test]
    fn blanks() {
        assert!(is_blank(b' ') && is_blank(b'\t'));
        assert!(!is_blank(b'\n') && !is_blank(b'\r') && !is_blank(b'x'));
    }
}
