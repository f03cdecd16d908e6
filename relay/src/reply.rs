//! The relay's own answers: KRB-ERROR messages naming the relay and the
//! cause, in the reply format of the service asked (a bare KRB-ERROR for
//! the KDC, RFC 3244 framing for kpasswd).

use std::time::{SystemTime, UNIX_EPOCH};

use krb5_wss_proto::krb_error::{self, KrbError, KPASSWD_HARDERROR};
use krb5_wss_proto::Service;

/// Longest e-text written (the cause is cut, on a character boundary).
const MAX_TEXT: usize = 200;

fn now() -> (u64, u32) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs(), d.subsec_micros())
}

/// `krb5-wss-relay: <cause>`, at most [`MAX_TEXT`] bytes.
pub fn text(cause: &str) -> String {
    let mut t = format!("krb5-wss-relay: {cause}");
    if t.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !t.is_char_boundary(end) {
            end -= 1;
        }
        t.truncate(end);
    }
    t
}

/// A KRB-ERROR (KDC) or an RFC 3244 error reply (kpasswd) for `realm`
/// with `code` (KDC only) and `cause`; None only if it cannot be encoded.
pub fn error(service: Service, realm: &str, code: i32, cause: &str) -> Option<Vec<u8>> {
    encode(service, realm, code, Some(&text(cause)))
}

/// Like [`error`], at most `limit` bytes: without the e-text when the
/// text would not fit (None when even that does not).
pub fn error_within(
    service: Service,
    realm: &str,
    code: i32,
    cause: &str,
    limit: usize,
) -> Option<Vec<u8>> {
    error(service, realm, code, cause)
        .filter(|e| e.len() <= limit)
        .or_else(|| encode(service, realm, code, None).filter(|e| e.len() <= limit))
}

fn encode(service: Service, realm: &str, code: i32, t: Option<&str>) -> Option<Vec<u8>> {
    let (stime, susec) = now();
    let encoded = match service {
        Service::Kdc => krb_error::encode(&KrbError {
            stime,
            susec,
            error_code: code,
            realm,
            sname: &["krbtgt", realm],
            e_text: t,
            e_data: None,
        }),
        Service::Kpasswd => krb_error::kpasswd_error_reply(
            stime,
            susec,
            realm,
            KPASSWD_HARDERROR,
            t.unwrap_or("krb5-wss-relay"),
        ),
    };
    encoded.ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use krb5_wss_proto::kerberos::krb_error_code;

    #[test]
    fn errors_name_the_relay() {
        let e = error(Service::Kdc, "R", 60, "realm R is not served").unwrap();
        assert_eq!(krb_error_code(&e), Some(60));
        let s = String::from_utf8_lossy(&e);
        assert!(s.contains("krb5-wss-relay: realm R is not served"), "{s}");
        let p = error(Service::Kpasswd, "R", 60, "down").unwrap();
        assert_eq!(krb_error_code(&p[6..]), Some(60));
        assert!(text(&"é".repeat(300)).len() <= MAX_TEXT);
        let long = "x".repeat(150);
        let full = error(Service::Kdc, "R", 52, &long).unwrap();
        assert!(full.len() > 200);
        let fitted = error_within(Service::Kdc, "R", 52, &long, 200).unwrap();
        assert!(fitted.len() <= 200 && !String::from_utf8_lossy(&fitted).contains("xxx"));
        assert_eq!(krb_error_code(&fitted), Some(52));
        assert!(error_within(Service::Kdc, "R", 52, &long, 20).is_none());
    }
}
