//! Log values in `key=value` lines: a value is written bare when it is
//! plain, and quoted with Rust escapes otherwise, so a line always splits
//! unambiguously (client-supplied text such as a realm cannot forge fields).

use std::fmt;

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
}
