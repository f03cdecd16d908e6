//! The `Origin` allow-list.
//!
//! Browsers send `Origin` with every WebSocket handshake and every
//! cross-site `POST`. Without a check, any web page a user visits could
//! make the user's browser talk Kerberos to this proxy (and so to the
//! KDCs behind it) from the user's network position. Kerberos clients
//! (the plugin, MIT's and Windows' MS-KKDCP clients) send no `Origin`.
//!
//! Rule: a request without `Origin` passes; a request with exactly one
//! `Origin` passes when it is listed (compared case-insensitively) or the
//! list holds `*`; anything else is refused (HTTP 403).

use hyper::header::{HeaderMap, ORIGIN};

/// Checks the request's `Origin` against `allowed` (normalized lower-case
/// entries); on refusal returns the origin as sent, for the log.
pub fn check(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let mut values = headers.get_all(ORIGIN).iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    let shown = String::from_utf8_lossy(first.as_bytes()).into_owned();
    if values.next().is_some() {
        return Err(format!("{shown} (and more Origin headers)"));
    }
    if allowed.iter().any(|a| a == "*") {
        return Ok(());
    }
    let origin = shown.trim().trim_end_matches('/').to_ascii_lowercase();
    if allowed.contains(&origin) {
        Ok(())
    } else {
        Err(shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with(origins: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for o in origins {
            h.append(ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn no_origin_passes() {
        assert!(check(&with(&[]), &[]).is_ok());
    }

    #[test]
    fn unlisted_origins_are_refused_by_default() {
        assert_eq!(
            check(&with(&["https://evil.example"]), &[]).unwrap_err(),
            "https://evil.example"
        );
        assert!(check(&with(&["null"]), &[]).is_err());
    }

    #[test]
    fn listed_origins_pass() {
        let allowed = vec!["https://app.example.com".to_string()];
        assert!(check(&with(&["https://APP.example.com"]), &allowed).is_ok());
        assert!(check(&with(&["https://app.example.com:8443"]), &allowed).is_err());
        assert!(check(&with(&["http://app.example.com"]), &allowed).is_err());
        assert!(check(
            &with(&["https://app.example.com", "https://evil.example"]),
            &allowed
        )
        .is_err());
        assert!(check(&with(&["https://any.example"]), &["*".to_string()]).is_ok());
    }
}
