//! The krb5-wss wire protocol, shared by the client plugin and the proxy.
//!
//! A WebSocket over TLS carries RFC 4120 §7.2.2 TCP records in binary
//! messages: a 4-byte big-endian length (high bit clear), then one DER
//! Kerberos message. Receivers treat the binary messages as a byte stream,
//! so a record may span messages and a message may hold several records.
//! `docs/protocol.md` is the normative description; this crate is the code.
//!
//! Nothing here does I/O: [`framing`] turns bytes into records and back,
//! [`kerberos`] checks that a record is a request a proxy may forward and
//! names its realm, [`kkdcp`] reads and writes MS-KKDCP messages, and
//! [`close`] lists the documented close codes, [`krb_error`] writes
//! KRB-ERROR replies, [`srv`] orders SRV records (RFC 2782), [`upgrade_request`] carries a
//! connection's first request in the WebSocket upgrade. [`samples`] builds valid
//! sample requests for tests and fuzzing.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod close;
pub mod der;
pub mod error_names;
pub mod framing;
pub mod kerberos;
pub mod kkdcp;
pub mod krb_error;
pub mod principal;
pub mod samples;
pub mod srv;
pub mod upgrade_request;

/// The WebSocket subprotocol the client offers and the proxy selects.
pub const SUBPROTOCOL: &str = "binary";

/// The default URL path for KDC exchanges (AS, TGS).
pub const DEFAULT_KDC_PATH: &str = "/kdc";

/// The default URL path for kpasswd exchanges (RFC 3244).
pub const DEFAULT_KPASSWD_PATH: &str = "/kpasswd";

/// The default URL path of the MS-KKDCP endpoint (`POST`), as Windows and
/// kdcproxy deployments use it.
pub const DEFAULT_KKDCP_PATH: &str = "/KdcProxy";

/// The default port of a `wss://` URL.
pub const DEFAULT_WSS_PORT: u16 = 443;

/// The default port of a `ws://` URL.
pub const DEFAULT_WS_PORT: u16 = 80;

/// Which kind of exchange a WebSocket path carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    /// KDC exchanges: AS-REQ and TGS-REQ.
    Kdc,
    /// Password changes: RFC 3244 requests.
    Kpasswd,
}

impl Service {
    /// The service's conventional path on the proxy.
    pub fn default_path(self) -> &'static str {
        match self {
            Service::Kdc => DEFAULT_KDC_PATH,
            Service::Kpasswd => DEFAULT_KPASSWD_PATH,
        }
    }

    /// A short lowercase name for logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::Kdc => "kdc",
            Service::Kpasswd => "kpasswd",
        }
    }
}

impl std::fmt::Display for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
