//! MIT's boolean words.

use crate::url::is_blank;

const YES: [&[u8]; 6] = [b"y", b"yes", b"true", b"t", b"1", b"on"];
const NO: [&[u8]; 7] = [b"n", b"no", b"false", b"f", b"nil", b"0", b"off"];

/// Parses a boolean as MIT's profile library does (`yes`/`no`, `true`/
/// `false`, `on`/`off`, `1`/`0`, `t`/`f`, `y`/`n`, `nil`; any case), after
/// trimming blanks ([`is_blank`]) on both sides; `None` for anything else.
pub fn parse_bool(value: &[u8]) -> Option<bool> {
    let word = trim_blanks(value);
    if YES.iter().any(|w| word.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if NO.iter().any(|w| word.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

fn trim_blanks(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !is_blank(*b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !is_blank(*b))
        .map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        for w in ["y", "YES", "true", "T", "1", "On", " on\t"] {
            assert_eq!(parse_bool(w.as_bytes()), Some(true), "{w}");
        }
        for w in ["n", "No", "FALSE", "f", "nil", "0", "off"] {
            assert_eq!(parse_bool(w.as_bytes()), Some(false), "{w}");
        }
        for w in ["", " ", "2", "maybe", "yess", "o", "\nyes"] {
            assert_eq!(parse_bool(w.as_bytes()), None, "{w:?}");
        }
    }
}
