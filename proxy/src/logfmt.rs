//! Log values in `key=value` lines: a value is written bare when it is
//! plain, and quoted with Rust escapes otherwise, so a line always splits
//! unambiguously (client-supplied text such as a realm cannot forge fields).
//!
//! With `log_format = "json"` every line is one JSON object instead
//! ([`json_line`]); the switch is process-wide (the logger is), set at
//! start and on each reload.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

static JSON: AtomicBool = AtomicBool::new(false);

/// The log format: `text` (`key=value` lines) or `json` (one object per
/// line).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `[time LEVEL target] event key=value …`.
    #[default]
    Text,
    /// `{"time":…,"level":…,"target":…,"event":…,…}`.
    Json,
}

impl LogFormat {
    /// Parses `text` or `json`.
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("log_format {s:?}: expected \"text\" or \"json\"")),
        }
    }

    /// `text` or `json`.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// Makes `format` the format of every line from now on.
pub fn set_format(format: LogFormat) {
    JSON.store(format == LogFormat::Json, Ordering::Relaxed);
}

/// True when lines are JSON objects.
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// The log target of the audit lines (the module that writes them): only
/// its messages are spliced into the JSON line, so no other message, even
/// one quoting a client's text, can add fields.
pub const AUDIT_TARGET: &str = "krb5_wss_proxy::exchange";

/// How an audit line rendered as JSON starts: the logger splices such a
/// message into its own object instead of quoting it.
pub const JSON_EVENT_PREFIX: &str = "{\"event\":\"";

/// Appends `s` JSON-escaped (without the quotes).
pub fn json_string_body(out: &mut String, s: &str) {
    // Every byte escaped is ASCII, so the runs between them are whole
    // UTF-8 sequences; most values have none, and go in one copy. The
    // search skips eight bytes at a time while none of them needs it.
    let mut rest = s;
    while let Some(i) = first_to_escape(rest.as_bytes()) {
        let (run, tail) = rest.split_at(i);
        out.push_str(run);
        let mut chars = tail.chars();
        match chars.next() {
            Some('"') => out.push_str("\\\""),
            Some('\\') => out.push_str("\\\\"),
            Some('\n') => out.push_str("\\n"),
            Some('\r') => out.push_str("\\r"),
            Some('\t') => out.push_str("\\t"),
            Some(c) => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            None => {}
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
}

/// The index of the first byte of `b` that JSON needs escaped.
pub fn first_to_escape(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Whether some byte of `x` is below `n` (n <= 128; exact, see "Bit
    // Twiddling Hacks", hasless).
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH != 0;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for chunk in chunks.by_ref() {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        let hit = below(w, 0x20)
            || below(w ^ (ONES * u64::from(b'"')), 1)
            || below(w ^ (ONES * u64::from(b'\\')), 1)
            || below(w ^ (ONES * 0x7f), 1);
        if hit {
            break;
        }
        at += 8;
    }
    b.get(at..)?
        .iter()
        .position(|&c| needs_json_escape(c))
        .map(|i| at + i)
}

fn needs_json_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f
}

/// One log record as a JSON line: `time`, `level` and `target`, then the
/// audit line's own fields when `message` is one (from [`AUDIT_TARGET`]),
/// else `message`.
pub fn json_line(time: &str, level: &str, target: &str, message: &str) -> String {
    let mut out = String::with_capacity(96 + message.len());
    out.push_str("{\"time\":\"");
    json_string_body(&mut out, time);
    out.push_str("\",\"level\":\"");
    json_string_body(&mut out, level);
    out.push_str("\",\"target\":\"");
    json_string_body(&mut out, target);
    out.push('"');
    match message.strip_prefix('{') {
        Some(rest) if target == AUDIT_TARGET && message.starts_with(JSON_EVENT_PREFIX) => {
            out.push(',');
            out.push_str(rest);
        }
        _ => {
            out.push_str(",\"message\":\"");
            json_string_body(&mut out, message);
            out.push_str("\"}");
        }
    }
    out
}

/// A value for a `key=value` log field.
pub struct Value<'a>(pub &'a str);

/// True when `s` is written bare: not empty, printable ASCII without
/// spaces, quotes, `=` or backslashes.
pub fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\')
}

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_plain(self.0) {
            f.write_str(self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_quoted() {
        assert_eq!(Value("KRBTEST.COM").to_string(), "KRBTEST.COM");
        assert_eq!(Value("a b").to_string(), "\"a b\"");
        assert_eq!(Value("x=1").to_string(), "\"x=1\"");
        assert_eq!(Value("").to_string(), "\"\"");
        assert_eq!(Value("q\"\n").to_string(), "\"q\\\"\\n\"");
    }

    /// The word-at-a-time search finds what a byte-by-byte one finds.
    #[test]
    fn escaping_matches_the_byte_by_byte_rule() {
        let slow = |s: &str| {
            let mut out = String::new();
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                        out.push_str(&format!("\\u{:04x}", c as u32))
                    }
                    c => out.push(c),
                }
            }
            out
        };
        let mut cases: Vec<String> = (0u8..0x80)
            .flat_map(|b| {
                let c = char::from(b);
                (0..17).map(move |pad| format!("{}{c}é{}", "a".repeat(pad), "z".repeat(pad)))
            })
            .collect();
        cases.extend(
            [
                "",
                "plain ascii only, long enough",
                "ünïcødé ✓ 😀 \u{80}\u{7ff}",
            ]
            .map(String::from),
        );
        for s in &cases {
            let mut fast = String::new();
            json_string_body(&mut fast, s);
            assert_eq!(fast, slow(s), "{s:?}");
        }
    }

    #[test]
    fn json_lines() {
        assert_eq!(
            json_line("T", "WARN", "m", "plain \"text\""),
            "{\"time\":\"T\",\"level\":\"WARN\",\"target\":\"m\",\"message\":\"plain \\\"text\\\"\"}"
        );
        assert_eq!(
            json_line(
                "T",
                "INFO",
                AUDIT_TARGET,
                "{\"event\":\"exchange\",\"a\":1}"
            ),
            format!(
                "{{\"time\":\"T\",\"level\":\"INFO\",\"target\":\"{AUDIT_TARGET}\",\
                 \"event\":\"exchange\",\"a\":1}}"
            )
        );
        // The same text from another module is a message, quoted.
        assert!(json_line("T", "INFO", "m", "{\"event\":\"x\"}")
            .ends_with(",\"message\":\"{\\\"event\\\":\\\"x\\\"}\"}"));
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert!(LogFormat::parse("JSON").is_err());
    }
}
