//! The audit lines: one per exchange (`exchange …`) and one per refusal
//! (`refused …`), written as `key=value` text or, with
//! `log_format = "json"`, as one JSON object per line (see
//! [`crate::logfmt`] for both encodings and the process-wide switch).
//!
//! A line is written field by field, in a fixed order, into one buffer.

use crate::logfmt::{self, Value};
use std::fmt::{self, Write};

/// One audit line under construction: each field is written as it is
/// added, into one buffer (no allocation per field).
pub struct Line {
    out: String,
    json: bool,
}

impl Line {
    /// A line for `event` (`exchange`, `refused`), in the active format.
    pub fn new(event: &'static str) -> Line {
        Line::with_format(event, logfmt::json())
    }

    /// A line for `event`, in JSON when `json`.
    pub fn with_format(event: &'static str, json: bool) -> Line {
        let mut out = String::with_capacity(384);
        if json {
            out.push_str(logfmt::JSON_EVENT_PREFIX);
            logfmt::json_string_body(&mut out, event);
            out.push('"');
        } else {
            out.push_str(event);
        }
        Line { out, json }
    }

    /// Adds a text field.
    pub fn text(&mut self, key: &'static str, value: impl fmt::Display) -> &mut Line {
        if self.json {
            self.out.push_str(",\"");
            self.out.push_str(key);
            self.out.push_str("\":\"");
            // Written as is, then escaped from the first byte that needs
            // it (most values have none). Writing to a String cannot fail.
            let start = self.out.len();
            let _ = write!(self.out, "{value}");
            let written = self.out.get(start..).unwrap_or_default().as_bytes();
            if let Some(i) = logfmt::first_to_escape(written) {
                // An ASCII byte: a char boundary.
                let raw = self.out.split_off(start + i);
                logfmt::json_string_body(&mut self.out, &raw);
            }
            self.out.push('"');
        } else {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push('=');
            let start = self.out.len();
            let _ = write!(self.out, "{value}");
            if !logfmt::is_plain(&self.out[start..]) {
                let raw = self.out.split_off(start);
                let _ = write!(self.out, "{}", Value(&raw));
            }
        }
        self
    }

    /// Adds a text field when there is a value.
    pub fn opt(&mut self, key: &'static str, value: Option<impl fmt::Display>) -> &mut Line {
        if let Some(v) = value {
            self.text(key, v);
        }
        self
    }

    /// Adds a numeric field (bare in text, a JSON number in JSON).
    pub fn number(&mut self, key: &'static str, value: impl Into<i128>) -> &mut Line {
        let n: i128 = value.into();
        let _ = if self.json {
            write!(self.out, ",\"{key}\":{n}")
        } else {
            write!(self.out, " {key}={n}")
        };
        self
    }

    /// The finished line.
    pub fn finish(mut self) -> String {
        if self.json {
            self.out.push('}');
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats() {
        let line = |json| {
            let mut l = Line::with_format("exchange", json);
            l.text("client", "192.0.2.1:5")
                .text("realm", "A B")
                .opt("cname", None::<&str>)
                .opt("sname", Some("krbtgt/A"))
                .number("elapsed_us", 12u64);
            l.finish()
        };
        assert_eq!(
            line(false),
            "exchange client=192.0.2.1:5 realm=\"A B\" sname=krbtgt/A elapsed_us=12"
        );
        assert_eq!(
            line(true),
            "{\"event\":\"exchange\",\"client\":\"192.0.2.1:5\",\"realm\":\"A B\",\
             \"sname\":\"krbtgt/A\",\"elapsed_us\":12}"
        );
        let mut l = Line::with_format("refused", true);
        l.text("detail", "q\"\\\n\u{1}é");
        assert_eq!(
            l.finish(),
            "{\"event\":\"refused\",\"detail\":\"q\\\"\\\\\\n\\u0001é\"}"
        );
        let mut l = Line::with_format("refused", false);
        l.text("detail", "a=b").text("e", "");
        assert_eq!(l.finish(), "refused detail=\"a=b\" e=\"\"");
    }
}
