//! WebSocket close codes the proxy sends, with their documented reasons.
//!
//! Codes 4000–4999 are reserved by RFC 6455 for private use; ours mirror
//! the HTTP status a web administrator would recognise (4400 ≈ 400 Bad
//! Request, 4413 ≈ 413 Payload Too Large, and so on). Standard codes are
//! used where RFC 6455 already has one.

/// A close code and its fixed reason text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode {
    /// The numeric code sent in the close frame.
    pub code: u16,
    /// The reason text sent with it (at most 123 bytes by RFC 6455).
    pub reason: &'static str,
}

/// Normal closure: an idle connection, or the client is done.
pub const NORMAL: CloseCode = CloseCode {
    code: 1000,
    reason: "idle",
};

/// The proxy is shutting down.
pub const GOING_AWAY: CloseCode = CloseCode {
    code: 1001,
    reason: "proxy shutting down",
};

/// A text message arrived; only binary messages carry records.
pub const TEXT_MESSAGE: CloseCode = CloseCode {
    code: 1003,
    reason: "binary messages only",
};

/// The bytes are not a record stream, or a record is not an allowed,
/// well-formed Kerberos request for this path.
pub const MALFORMED: CloseCode = CloseCode {
    code: 4400,
    reason: "malformed record",
};

/// The realm's policy (`deny_clients`, `allow_services`, …) refuses the
/// request's client or service principal; it was not forwarded.
pub const POLICY_DENIED: CloseCode = CloseCode {
    code: 4401,
    reason: "denied by policy",
};

/// The request's realm takes only clients with a certificate
/// (`client_subjects`), and the connection presented none.
pub const CLIENT_CERT_REQUIRED: CloseCode = CloseCode {
    code: 4402,
    reason: "client certificate required",
};

/// The connection's client certificate is not one the request's realm
/// takes (no pattern of its `client_subjects` matches the certificate).
pub const CLIENT_CERT_NOT_ALLOWED: CloseCode = CloseCode {
    code: 4406,
    reason: "client certificate not allowed for this realm",
};

/// The request names a realm this proxy does not serve.
pub const REALM_NOT_SERVED: CloseCode = CloseCode {
    code: 4403,
    reason: "realm not served",
};

/// The KDC answered too many pre-authentication failures (wrong
/// passwords) for this AS-REQ's principal, client address or the pair of
/// them: its AS-REQs are refused for a cool-down; it was not forwarded.
pub const THROTTLED: CloseCode = CloseCode {
    code: 4423,
    reason: "throttled: too many failed logins",
};

/// A record was started but not finished in time.
pub const REQUEST_TIMEOUT: CloseCode = CloseCode {
    code: 4408,
    reason: "request timed out",
};

/// A record's length exceeds the proxy's limit.
pub const TOO_LARGE: CloseCode = CloseCode {
    code: 4413,
    reason: "record too large",
};

/// The client sent requests faster than the proxy allows.
pub const RATE_LIMITED: CloseCode = CloseCode {
    code: 4429,
    reason: "too many requests",
};

/// No KDC of the realm could be reached, or none answered in time.
pub const KDC_UNREACHABLE: CloseCode = CloseCode {
    code: 4502,
    reason: "upstream KDC unreachable",
};

/// The proxy is at a connection or exchange limit.
pub const OVERLOADED: CloseCode = CloseCode {
    code: 4503,
    reason: "overloaded",
};

/// Every documented code, for docs and lookups.
pub const ALL: &[CloseCode] = &[
    NORMAL,
    GOING_AWAY,
    TEXT_MESSAGE,
    MALFORMED,
    POLICY_DENIED,
    CLIENT_CERT_REQUIRED,
    CLIENT_CERT_NOT_ALLOWED,
    REALM_NOT_SERVED,
    THROTTLED,
    REQUEST_TIMEOUT,
    TOO_LARGE,
    RATE_LIMITED,
    KDC_UNREACHABLE,
    OVERLOADED,
];

/// The documented reason for `code`, if it is one of ours.
pub fn describe(code: u16) -> Option<&'static str> {
    ALL.iter().find(|c| c.code == code).map(|c| c.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_reasons_fit_a_close_frame() {
        for (i, a) in ALL.iter().enumerate() {
            assert!(a.reason.len() <= 123);
            for b in &ALL[i + 1..] {
                assert_ne!(a.code, b.code);
            }
        }
    }

    #[test]
    fn describe_finds_ours_only() {
        assert_eq!(describe(4403), Some("realm not served"));
        assert_eq!(describe(4999), None);
    }
}
