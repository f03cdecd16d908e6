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
    // UTF-8 sequences; most values have none, and go in one copy.
    let mut rest = s;
    while let Some(i) = rest.bytes().position(needs_json_escape) {
        out.push_str(&rest[..i]);
        match rest.as_bytes()[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
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
