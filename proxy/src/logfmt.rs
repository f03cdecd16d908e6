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

/// How an audit line rendered as JSON starts: the logger splices such a
/// message into its own object instead of quoting it.
pub const JSON_EVENT_PREFIX: &str = "{\"event\":\"";

/// Appends `s` JSON-escaped (without the quotes).
pub fn json_string_body(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// One log record as a JSON line: `time`, `level` and `target`, then the
/// audit line's own fields when `message` is one, else `message`.
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
        Some(rest) if message.starts_with(JSON_EVENT_PREFIX) => {
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

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = !self.0.is_empty()
            && self
                .0
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b'\\');
        if plain {
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
            json_line("T", "INFO", "m", "{\"event\":\"exchange\",\"a\":1}"),
            "{\"time\":\"T\",\"level\":\"INFO\",\"target\":\"m\",\"event\":\"exchange\",\"a\":1}"
        );
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert!(LogFormat::parse("JSON").is_err());
    }
}
