//! The audit lines: one per exchange (`exchange …`) and one per refusal
//! (`refused …`), written as `key=value` text or, with
//! `log_format = "json"`, as one JSON object per line (see
//! [`crate::logfmt`] for both encodings and the process-wide switch).
//!
//! A line is built field by field, in a fixed order, and rendered once.

use crate::logfmt::{self, Value};
use std::fmt::{self, Write};

/// A field's value.
enum Field {
    Text(String),
    /// Written bare in text, unquoted in JSON.
    Number(i128),
}

/// One audit line under construction.
pub struct Line {
    event: &'static str,
    fields: Vec<(&'static str, Field)>,
}

impl Line {
    /// A line for `event` (`exchange`, `refused`).
    pub fn new(event: &'static str) -> Line {
        Line {
            event,
            fields: Vec::with_capacity(20),
        }
    }

    /// Adds a text field.
    pub fn text(&mut self, key: &'static str, value: impl fmt::Display) -> &mut Line {
        self.fields.push((key, Field::Text(value.to_string())));
        self
    }

    /// Adds a text field when there is a value.
    pub fn opt(&mut self, key: &'static str, value: Option<impl fmt::Display>) -> &mut Line {
        if let Some(v) = value {
            self.text(key, v);
        }
        self
    }

    /// Adds a numeric field.
    pub fn number(&mut self, key: &'static str, value: impl Into<i128>) -> &mut Line {
        self.fields.push((key, Field::Number(value.into())));
        self
    }

    /// Renders the line in the active log format.
    pub fn render(&self) -> String {
        if logfmt::json() {
            self.json()
        } else {
            self.key_value()
        }
    }

    /// `event key=value …`.
    pub fn key_value(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str(self.event);
        for (k, v) in &self.fields {
            // Writing to a String cannot fail.
            let _ = match v {
                Field::Text(s) => write!(out, " {k}={}", Value(s)),
                Field::Number(n) => write!(out, " {k}={n}"),
            };
        }
        out
    }

    /// `{"event":"…","key":value,…}`.
    pub fn json(&self) -> String {
        let mut out = String::with_capacity(320);
        out.push_str(logfmt::JSON_EVENT_PREFIX);
        logfmt::json_string_body(&mut out, self.event);
        out.push('"');
        for (k, v) in &self.fields {
            out.push_str(",\"");
            out.push_str(k);
            out.push_str("\":");
            match v {
                Field::Text(s) => {
                    out.push('"');
                    logfmt::json_string_body(&mut out, s);
                    out.push('"');
                }
                Field::Number(n) => {
                    let _ = write!(out, "{n}");
                }
            }
        }
        out.push('}');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats() {
        let mut l = Line::new("exchange");
        l.text("client", "192.0.2.1:5")
            .text("realm", "A B")
            .opt("cname", None::<&str>)
            .opt("sname", Some("krbtgt/A"))
            .number("elapsed_us", 12u64);
        assert_eq!(
            l.key_value(),
            "exchange client=192.0.2.1:5 realm=\"A B\" sname=krbtgt/A elapsed_us=12"
        );
        assert_eq!(
            l.json(),
            "{\"event\":\"exchange\",\"client\":\"192.0.2.1:5\",\"realm\":\"A B\",\
             \"sname\":\"krbtgt/A\",\"elapsed_us\":12}"
        );
        let mut l = Line::new("refused");
        l.text("detail", "q\"\\\n\u{1}é");
        assert_eq!(
            l.json(),
            "{\"event\":\"refused\",\"detail\":\"q\\\"\\\\\\n\\u0001é\"}"
        );
    }
}
