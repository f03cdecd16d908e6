//! The command line.
//!
//! Every flag has a counterpart in the TOML configuration file (see
//! `config.rs` and `docs/proxy.md`); flags override the file.

use crate::addr::{self, ServerAddr, KDC_PORT, KPASSWD_PORT};
use crate::limits;
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Kerberos over WebSockets: accepts wss:// connections on /kdc and
/// /kpasswd and forwards each Kerberos request to the configured KDCs of
/// its realm.
#[derive(Debug, Parser, Default, Clone)]
#[command(name = "krb5-wss-proxy", version, max_term_width = 100)]
pub struct Args {
    /// TOML configuration file; flags given on the command line override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Check the configuration (and load the TLS certificate and key), print
    /// a summary and exit: 0 when it is valid, 1 when not. Nothing is bound.
    #[arg(long)]
    pub check_config: bool,

    /// Address to listen on; repeatable (port 0 picks a free port).
    /// [default: none; required here or in the config file]
    #[arg(long, value_name = "IP:PORT", value_parser = addr::parse_listen)]
    pub listen: Vec<SocketAddr>,

    /// TLS certificate chain (PEM), leaf certificate first.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// TLS private key (PEM: PKCS#8, PKCS#1 or SEC1) matching --cert.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// Serve ws:// without TLS (only behind a TLS-terminating web server).
    #[arg(long)]
    pub plaintext: bool,

    /// Ask clients for a TLS certificate and verify it against the CA
    /// certificates of this PEM file (mutual TLS). [default: none]
    #[arg(long, value_name = "FILE")]
    pub client_ca: Option<PathBuf>,

    /// With --client-ca: "required" (a handshake without a certificate
    /// fails) or "optional" (it goes through; realms with client_subjects
    /// then refuse its requests with 4402). [default: required]
    #[arg(long, value_name = "MODE", value_parser = crate::clientcert::Mode::parse)]
    pub client_certificate: Option<crate::clientcert::Mode>,

    /// A KDC of a realm; repeat to add realms, or further KDCs of a realm
    /// (tried in the order given). Port defaults to 88.
    #[arg(long = "realm", value_name = "REALM=HOST[:PORT]", value_parser = parse_kdc)]
    pub realms: Vec<(String, ServerAddr)>,

    /// A kpasswd server of a realm; repeatable like --realm. Port defaults
    /// to 464.
    #[arg(long = "kpasswd", value_name = "REALM=HOST[:PORT]", value_parser = parse_kpasswd)]
    pub kpasswd: Vec<(String, ServerAddr)>,

    /// Try the KDCs of REALM over UDP first (then TCP); repeatable.
    /// [default: TCP only]
    #[arg(long, value_name = "REALM")]
    pub udp: Vec<String>,

    /// Serve Prometheus metrics (/metrics) and a health check (/healthz)
    /// over plain HTTP on this address. [default: none]
    #[arg(long, value_name = "IP:PORT", value_parser = addr::parse_listen)]
    pub metrics_listen: Option<SocketAddr>,

    /// Path of the MS-KKDCP endpoint (POST). [default: /KdcProxy]
    #[arg(long, value_name = "PATH")]
    pub kkdcp_path: Option<String>,

    /// Turn the MS-KKDCP endpoint off.
    #[arg(long)]
    pub no_kkdcp: bool,

    /// Serve requests carrying this Origin header (scheme://host[:port],
    /// or * for any); repeatable. Requests with any other Origin get 403;
    /// requests without one are served. [default: none allowed]
    #[arg(long, value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,

    /// Take the client address from X-Forwarded-For when the connection
    /// comes from this address or network (IP or IP/PREFIX); repeatable.
    /// [default: never]
    #[arg(long, value_name = "CIDR", value_parser = crate::client::IpNet::parse)]
    pub trust_forwarded_for: Vec<crate::client::IpNet>,

    /// Log format: text (key=value lines) or json (one object per line,
    /// for a SIEM). [default: text]
    #[arg(long, value_name = "FORMAT", value_parser = crate::logfmt::LogFormat::parse)]
    pub log_format: Option<crate::logfmt::LogFormat>,

    /// Write client and service principal names in the audit lines
    /// (false leaves them out). [default: true]
    #[arg(long, value_name = "BOOL")]
    pub audit_principals: Option<bool>,

    /// Largest request record accepted, in bytes (K/KiB/M/MiB suffixes
    /// allowed). [default: 256KiB]
    #[arg(long, value_name = "SIZE", value_parser = limits::parse_size)]
    pub max_record_size: Option<usize>,

    /// Largest KDC reply accepted, in bytes. [default: 1MiB]
    #[arg(long, value_name = "SIZE", value_parser = limits::parse_size)]
    pub max_reply_size: Option<usize>,

    /// Bytes of partial records held across all connections at once; a
    /// record that would take more closes 4503. [default: 256MiB]
    #[arg(long, value_name = "SIZE", value_parser = limits::parse_size)]
    pub max_partial_bytes: Option<usize>,

    /// Most client connections open at once. [default: 10000]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// Deadline for the TLS + HTTP + WebSocket handshake. [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub handshake_timeout: Option<Duration>,

    /// Close a WebSocket (1000 "idle") after this long without a record.
    /// [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub idle_timeout: Option<Duration>,

    /// Close (4408) when a started record is not complete after this long.
    /// [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub record_timeout: Option<Duration>,

    /// Deadline to resolve and connect to one KDC. [default: 3s]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub connect_timeout: Option<Duration>,

    /// Deadline for one KDC to answer once connected. [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub reply_timeout: Option<Duration>,

    /// Deadline to hand a reply or close frame to a client. [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub send_timeout: Option<Duration>,

    /// Most connections open at once from one client address (IPv6: per
    /// /64); over it, close 4429. [default: 100]
    #[arg(long, value_name = "N")]
    pub max_connections_per_address: Option<usize>,

    /// Requests per second one connection may make (bursts of as many);
    /// over it, close 4429. [default: 1000]
    #[arg(long, value_name = "N")]
    pub max_requests_per_second: Option<u32>,

    /// Upstream exchanges in progress at once; over it, close 4503.
    /// [default: 1000]
    #[arg(long, value_name = "N")]
    pub max_upstream_exchanges: Option<usize>,

    /// Wait for a KDC's UDP reply before trying TCP. [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub udp_timeout: Option<Duration>,

    /// On SIGTERM, wait at most this long for exchanges in progress.
    /// [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub shutdown_timeout: Option<Duration>,
    /// Refuse AS-REQs of a principal, a client address or a pair of them
    /// for a cool-down once the KDC answered too many pre-authentication
    /// failures (wrong passwords) for it; false turns it off.
    /// [default: true]
    #[arg(long, value_name = "BOOL")]
    pub throttle: Option<bool>,

    /// Failures of one principal from one client address within the
    /// window that start its cool-down (close 4423). [default: 5]
    #[arg(long, value_name = "N")]
    pub throttle_pair_failures: Option<u32>,

    /// Failures from one client address (IPv6: /64), any principal.
    /// [default: 20]
    #[arg(long, value_name = "N")]
    pub throttle_address_failures: Option<u32>,

    /// Failures of one principal, from any address. [default: 50]
    #[arg(long, value_name = "N")]
    pub throttle_principal_failures: Option<u32>,

    /// The sliding window failures are counted in. [default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub throttle_window: Option<Duration>,

    /// How long a tripped key's AS-REQs are refused. [default: 5m]
    #[arg(long, value_name = "DURATION", value_parser = limits::parse_duration)]
    pub throttle_cooldown: Option<Duration>,

    /// Most throttle keys held; past it the oldest is evicted.
    /// [default: 100000]
    #[arg(long, value_name = "N")]
    pub throttle_max_keys: Option<usize>,

    /// Share the throttle's counters through this Redis server
    /// (redis://HOST:PORT), so that several proxies count together; when
    /// it cannot be reached, each proxy counts locally. [default: none]
    #[arg(long, value_name = "URL")]
    pub throttle_store: Option<String>,
}

fn parse_kdc(s: &str) -> Result<(String, ServerAddr), String> {
    addr::parse_realm_server(s, KDC_PORT)
}

fn parse_kpasswd(s: &str) -> Result<(String, ServerAddr), String> {
    addr::parse_realm_server(s, KPASSWD_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("krb5-wss-proxy").chain(args.iter().copied()))
    }

    #[test]
    fn command_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn the_documented_command_line() {
        let a = parse(&[
            "--listen",
            "127.0.0.1:8443",
            "--cert",
            "cert.pem",
            "--key",
            "key.pem",
            "--realm",
            "EXAMPLE.COM=kdc.example.com:88",
            "--kpasswd",
            "EXAMPLE.COM=kdc.example.com:464",
        ])
        .unwrap();
        assert_eq!(a.listen, vec!["127.0.0.1:8443".parse().unwrap()]);
        assert_eq!(a.cert, Some(PathBuf::from("cert.pem")));
        assert_eq!(a.realms.len(), 1);
        assert_eq!(a.realms[0].0, "EXAMPLE.COM");
        assert_eq!(a.realms[0].1.to_string(), "kdc.example.com:88");
        assert_eq!(a.kpasswd[0].1.to_string(), "kdc.example.com:464");
        assert!(!a.plaintext);
    }

    #[test]
    fn repeatable_flags_and_default_ports() {
        let a = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "[::1]:0",
            "--realm",
            "A.ORG=kdc1",
            "--realm",
            "A.ORG=[2001:db8::1]",
            "--kpasswd",
            "A.ORG=kdc1",
            "--plaintext",
        ])
        .unwrap();
        assert_eq!(a.listen.len(), 2);
        let kdcs: Vec<String> = a.realms.iter().map(|(_, s)| s.to_string()).collect();
        assert_eq!(kdcs, ["kdc1:88", "[2001:db8::1]:88"]);
        assert_eq!(a.kpasswd[0].1.to_string(), "kdc1:464");
        assert!(a.plaintext);
    }

    #[test]
    fn limits_flags() {
        let a = parse(&[
            "--max-record-size",
            "64KiB",
            "--idle-timeout",
            "500ms",
            "--max-connections",
            "5",
        ])
        .unwrap();
        assert_eq!(a.max_record_size, Some(65536));
        assert_eq!(a.idle_timeout, Some(Duration::from_millis(500)));
        assert_eq!(a.max_connections, Some(5));
        let a = parse(&[
            "--max-connections-per-address",
            "3",
            "--max-requests-per-second",
            "7",
            "--max-upstream-exchanges",
            "9",
            "--udp-timeout",
            "250ms",
            "--shutdown-timeout",
            "2",
            "--udp",
            "A.ORG",
            "--metrics-listen",
            "127.0.0.1:9464",
            "--allow-origin",
            "https://app.example.com",
            "--trust-forwarded-for",
            "127.0.0.1",
            "--kkdcp-path",
            "/kkdcp",
            "--check-config",
        ])
        .unwrap();
        assert_eq!(a.max_connections_per_address, Some(3));
        assert_eq!(a.max_requests_per_second, Some(7));
        assert_eq!(a.max_upstream_exchanges, Some(9));
        assert_eq!(a.udp_timeout, Some(Duration::from_millis(250)));
        assert_eq!(a.shutdown_timeout, Some(Duration::from_secs(2)));
        assert_eq!(a.udp, ["A.ORG"]);
        assert_eq!(a.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(a.allow_origin, ["https://app.example.com"]);
        assert_eq!(a.trust_forwarded_for.len(), 1);
        assert_eq!(a.kkdcp_path.as_deref(), Some("/kkdcp"));
        assert!(a.check_config && !a.no_kkdcp);
        assert!(parse(&["--trust-forwarded-for", "example.com"]).is_err());
    }

    #[test]
    fn bad_realm_argument_is_named() {
        let err = parse(&["--realm", "EXAMPLE.COM"]).unwrap_err().to_string();
        assert!(err.contains("--realm"), "{err}");
        assert!(err.contains("EXAMPLE.COM"), "{err}");
        let err = parse(&["--kpasswd", "R=kdc:99999"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--kpasswd") && err.contains("99999"), "{err}");
        let err = parse(&["--listen", "localhost:1"]).unwrap_err().to_string();
        assert!(err.contains("--listen"), "{err}");
    }
}
