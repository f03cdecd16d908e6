//! A tiny glob matcher for principal patterns: `*` matches any run of
//! characters (`/` and `@` included), `?` exactly one character, every
//! other character itself. Case-sensitive, as Kerberos names are; there is
//! no escape character and no character class.

/// True when `text` matches `pattern` as a whole.
///
/// Runs in O(|pattern| × |text|) at worst (one backtrack point: the last
/// `*`), so a hostile name cannot make it slow.
pub fn matches(pattern: &str, text: &str) -> bool {
    // Names as the proxy writes them are ASCII (other bytes are escaped),
    // so bytes are characters there; a non-ASCII pattern character
    // matches no ASCII text either way, and `?` one character of ASCII.
    if !text.is_ascii() {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        return match_slices(&p, &t);
    }
    match_slices(pattern.as_bytes(), text.as_bytes())
}

fn match_slices<T: Copy + PartialEq + Wild>(p: &[T], t: &[T]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and where in the text it started matching.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(c) if c.is_star() => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c.is_any() || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| c.is_star())
}

/// The two wildcards, for bytes and for characters.
trait Wild {
    fn is_star(&self) -> bool;
    fn is_any(&self) -> bool;
}

impl Wild for u8 {
    fn is_star(&self) -> bool {
        *self == b'*'
    }
    fn is_any(&self) -> bool {
        *self == b'?'
    }
}

impl Wild for char {
    fn is_star(&self) -> bool {
        *self == '*'
    }
    fn is_any(&self) -> bool {
        *self == '?'
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn literals_and_wildcards() {
        assert!(matches(
            "postgres/db.example.com",
            "postgres/db.example.com"
        ));
        assert!(!matches(
            "postgres/db.example.com",
            "postgres/db.example.co"
        ));
        assert!(!matches(
            "postgres/db.example.com",
            "postgres/db.example.com2"
        ));
        assert!(matches("postgres/*", "postgres/db.example.com"));
        assert!(matches("*", ""));
        assert!(matches("*", "anything/at@all"));
        assert!(matches("*@EXAMPLE.COM", "alice@EXAMPLE.COM"));
        assert!(matches("host/*.example.com", "host/a.b.example.com"));
        assert!(!matches("host/*.example.com", "host/example.com"));
        assert!(matches("user?", "user1"));
        assert!(!matches("user?", "user"));
        assert!(!matches("user?", "user12"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYbZ"));
        assert!(matches("**a", "a"));
        assert!(!matches("", "a"));
        assert!(matches("", ""));
        // A non-ASCII pattern: `?` is one character.
        assert!(matches("\u{e9}?", "\u{e9}\u{e8}"));
        assert!(!matches("a?", "a\u{e9}\u{e8}"));
    }

    #[test]
    fn case_sensitive() {
        assert!(!matches("Alice", "alice"));
        assert!(!matches("krbtgt/EXAMPLE.COM", "krbtgt/example.com"));
    }

    #[test]
    fn pathological_is_fast() {
        let text = "a".repeat(2000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!matches(&pattern, &text));
    }
}
