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
    let (stime, susec) = now();
    let t = text(cause);
    let encoded = match service {
        Service::Kdc => krb_error::encode(&KrbError {
            stime,
            susec,
            error_code: code,
            realm,
            sname: &["krbtgt", realm],
            e_text: Some(&t),
            e_data: None,
        }),
        Service::Kpasswd => {
            krb_error::kpasswd_error_reply(stime, susec, realm, KPASSWD_HARDERROR, &t)
        }
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
    }
}
