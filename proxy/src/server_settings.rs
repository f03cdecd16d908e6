//! The `[server]` settings: the listener, TLS, the MS-KKDCP endpoint,
//! browsers' origins, trusted fronts and the log format (one definition
//! each; see [`crate::settings`]).

use crate::clientcert::CertMode;
use crate::logfmt::LogFormat;
use crate::settings::{Bool, FilePath, Format, Listen, Listens, Nets, Off, On, Origins, UrlPath};
use krb5_wss_proto::DEFAULT_KKDCP_PATH;

crate::settings! {
    /// The `[server]` section.
    pub struct ServerSettings in "server", flags "" {
        /// Address to listen on; repeatable; `IPv4:PORT` or `[IPv6]:PORT`;
        /// port 0 picks a free port. At least one is required (here or in
        /// the file). Changing it takes a restart.
        listen: Listens = Vec::new(),
        /// PEM certificate chain, leaf first (in the file: relative to the
        /// file's directory). Read again on SIGHUP.
        cert: FilePath = None,
        /// PEM private key (PKCS#8, PKCS#1 or SEC1) matching the leaf.
        key: FilePath = None,
        /// Serve `ws://` (and MS-KKDCP over HTTP) without TLS, behind a
        /// TLS-terminating web server (*TLS or plaintext*); then give no cert
        /// or key.
        plaintext: On = false,
        /// Ask clients for a TLS certificate and verify it against the CA
        /// certificates of this PEM file (mutual TLS; *Client
        /// certificates*); none: no client certificate is asked for.
        client_ca: FilePath = None,
        /// With `client_ca`: `required` (a handshake without a certificate
        /// fails) or `optional` (it goes through; realms with
        /// `client_subjects` then refuse its requests with 4402); none:
        /// `required`.
        client_certificate: CertMode = None,
        /// Plain-HTTP listener for `/metrics` and `/healthz`; none: off.
        metrics_listen: Listen = None,
        /// Serve MS-KKDCP (POST, `application/kerberos`) on the listener;
        /// `--no-kkdcp` (in the file `kkdcp = false`) turns it off (its path
        /// is then 404).
        kkdcp: Off = true => "no-kkdcp",
        /// Path of the MS-KKDCP endpoint (`/` followed by letters, digits,
        /// `/-_.~`; not `/kdc` or `/kpasswd`).
        kkdcp_path: UrlPath = DEFAULT_KKDCP_PATH.to_string(),
        /// Refuse (4400/400) a `KDC-PROXY-MESSAGE` without `target-domain`,
        /// as MS-KKDCP §3.2.5.1 says; `false` accepts one (the realm inside
        /// the message routes either way).
        kkdcp_require_target_domain: Bool = true,
        /// Serve requests with this `Origin` (`scheme://host[:port]`, `null`,
        /// or `*` for any); repeatable. Requests with any other Origin get
        /// 403; requests without one are served.
        allowed_origins: Origins = Vec::new() => "allow-origin",
        /// Take the client address from `X-Forwarded-For` on connections from
        /// this address or network (`IP` or `IP/PREFIX`); repeatable.
        trusted_proxies: Nets = Vec::new() => "trust-forwarded-for",
        /// `text` (`key=value` lines) or `json` (one JSON object per line;
        /// see *Logs*).
        log_format: Format = LogFormat::Text,
        /// Write client and service principal names in the log lines;
        /// `false` leaves them out.
        audit_principals: Bool = true,
    }
}
