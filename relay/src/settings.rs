//! Every setting of the relay, defined once: [`Settings`] is both the
//! command line (clap) and the TOML file (serde), field for field, and
//! [`defaults`] holds the value each setting takes when neither gives it.
//!
//! Merge ([`Settings::merged`]): a setting given on the command line
//! overrides the file's; a list given on the command line replaces the
//! file's list. `--config` and `--check-config` exist only on the command
//! line. The example file `relay/krb5-wss-relay.example.toml` names every
//! key (a test checks it against this struct).

use clap::Parser;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The value of each setting nobody set.
pub mod defaults {
    use std::time::Duration;

    /// `connect_timeout`: TCP + TLS + WebSocket handshake, per URL (the
    /// plugin's default).
    pub const CONNECT_TIMEOUT: Duration = krb5_wss::config::DEFAULT_CONNECT_TIMEOUT;
    /// `request_timeout`: one exchange over wss (the plugin's default).
    pub const REQUEST_TIMEOUT: Duration = krb5_wss::config::DEFAULT_REQUEST_TIMEOUT;
    /// `client_timeout`: how long a TCP client may take to send a record.
    pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
    /// `udp_reply_limit`: the largest reply sent over UDP (bytes); a larger
    /// one is answered with KRB_ERR_RESPONSE_TOO_BIG. MIT's default
    /// `udp_preference_limit`.
    pub const UDP_REPLY_LIMIT: usize = 1465;
    /// `max_request`: the largest TCP record accepted (bytes).
    pub const MAX_REQUEST: usize = 256 * 1024;
    /// `max_concurrent`: requests (UDP) and connections (TCP) served at
    /// once; past it a datagram is dropped and a connection closed.
    pub const MAX_CONCURRENT: usize = 64;
    /// `allow_plaintext`: whether `ws://` URLs are permitted.
    pub const ALLOW_PLAINTEXT: bool = false;
}

/// Kerberos over UDP and TCP for clients that cannot load the krb5-wss
/// plugin (Java, Go, impacket, Heimdal, static builds): listens on local
/// KDC and kpasswd addresses and carries every request over wss:// to
/// krb5-wss-proxy, routed by the realm inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Parser, Deserialize)]
#[command(name = "krb5-wss-relay", version, max_term_width = 100)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// TOML configuration file (see krb5-wss-relay.example.toml); the
    /// command line overrides it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Check the configuration (URLs, trust anchors), print a summary and
    /// exit: 0 when valid, 1 when not. Nothing is bound.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,

    /// KDC address to serve, UDP and TCP on the same port; repeatable
    /// (port 0 picks a free port). [default: none; sockets may also come
    /// from systemd (LISTEN_FDS)]
    #[arg(long, value_name = "IP:PORT")]
    pub listen: Vec<SocketAddr>,

    /// kpasswd address to serve, UDP and TCP; repeatable. [default: none]
    #[arg(long, value_name = "IP:PORT")]
    pub kpasswd_listen: Vec<SocketAddr>,

    /// A realm and a wss:// URL of its proxy's KDC endpoint; repeatable,
    /// several URLs of one realm are tried in the order given.
    #[arg(long, value_name = "REALM=URL")]
    pub realm: Vec<String>,

    /// A realm's kpasswd URL; repeatable. [default: derived from the
    /// realm's KDC URLs as the plugin does: last path segment "kpasswd"]
    #[arg(long, value_name = "REALM=URL")]
    pub kpasswd: Vec<String>,

    /// Find REALM's URLs in DNS (URI, then SRV records, as the plugin
    /// does); repeatable.
    #[arg(long, value_name = "REALM")]
    pub discover: Vec<String>,

    /// Trust anchors for the proxies' certificates, in MIT's http_anchors
    /// forms (FILE:path, DIR:path, ENV:VAR); repeatable. [default: the
    /// system store]
    #[arg(long, value_name = "FILE:PATH|DIR:PATH")]
    pub anchors: Vec<String>,

    /// Sources (IP or IP/PREFIX, comma-separated or repeated) served
    /// besides loopback; required for a non-loopback listen address.
    /// [default: loopback only]
    #[arg(long, value_name = "CIDR,...", value_delimiter = ',')]
    pub allow_clients: Vec<String>,

    /// Permit ws:// URLs (no TLS). [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub allow_plaintext: Option<bool>,

    /// Web proxy for the wss connections, http://[user:pass@]host:port,
    /// used before https_proxy & co. (no_proxy still applies). [default:
    /// the environment's]
    #[arg(long, value_name = "URL")]
    pub wss_web_proxy: Option<String>,

    /// A realm's TLS client certificate (PEM chain, leaf first), presented
    /// to its proxies when they ask for one; repeatable, one per realm;
    /// needs --wss-client-key for the same realm. [default: none]
    #[arg(long, value_name = "REALM=FILE")]
    pub wss_client_certificate: Vec<String>,

    /// The private key (PEM) of a realm's --wss-client-certificate;
    /// repeatable. [default: none]
    #[arg(long, value_name = "REALM=FILE")]
    pub wss_client_key: Vec<String>,

    /// Bound on TCP connect + TLS + WebSocket handshake, per URL
    /// (e.g. 5, 5s, 500ms). [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,

    /// Bound on one exchange over wss. [default: 15s]
    #[arg(long, value_name = "DURATION")]
    pub request_timeout: Option<String>,

    /// How long a TCP client may take to send a record. [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub client_timeout: Option<String>,

    /// Largest reply sent over UDP, in bytes; larger replies are answered
    /// with KRB_ERR_RESPONSE_TOO_BIG so the client retries over TCP.
    /// [default: 1465]
    #[arg(long, value_name = "BYTES")]
    pub udp_reply_limit: Option<usize>,

    /// Largest TCP record accepted, in bytes. [default: 262144]
    #[arg(long, value_name = "BYTES")]
    pub max_request: Option<usize>,

    /// Requests and connections served at once. [default: 64]
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<usize>,
}

/// Largest configuration file read.
const MAX_FILE: u64 = 1024 * 1024;

impl Settings {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Settings, String> {
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.len() > MAX_FILE {
            return Err(format!("{}: larger than {MAX_FILE} bytes", path.display()));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Settings::from_toml(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Settings, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The command line `self` over the file `file`.
    pub fn merged(&self, file: Settings) -> Settings {
        fn list<T: Clone>(cli: &[T], file: Vec<T>) -> Vec<T> {
            if cli.is_empty() {
                file
            } else {
                cli.to_vec()
            }
        }
        let cli = self.clone();
        Settings {
            config: cli.config,
            check_config: cli.check_config,
            listen: list(&cli.listen, file.listen),
            kpasswd_listen: list(&cli.kpasswd_listen, file.kpasswd_listen),
            realm: list(&cli.realm, file.realm),
            kpasswd: list(&cli.kpasswd, file.kpasswd),
            discover: list(&cli.discover, file.discover),
            anchors: list(&cli.anchors, file.anchors),
            allow_clients: list(&cli.allow_clients, file.allow_clients),
            allow_plaintext: cli.allow_plaintext.or(file.allow_plaintext),
            wss_web_proxy: cli.wss_web_proxy.or(file.wss_web_proxy),
            wss_client_certificate: list(&cli.wss_client_certificate, file.wss_client_certificate),
            wss_client_key: list(&cli.wss_client_key, file.wss_client_key),
            connect_timeout: cli.connect_timeout.or(file.connect_timeout),
            request_timeout: cli.request_timeout.or(file.request_timeout),
            client_timeout: cli.client_timeout.or(file.client_timeout),
            udp_reply_limit: cli.udp_reply_limit.or(file.udp_reply_limit),
            max_request: cli.max_request.or(file.max_request),
            max_concurrent: cli.max_concurrent.or(file.max_concurrent),
        }
    }

    /// The effective settings: the command line over `--config`'s file.
    pub fn effective(&self) -> Result<Settings, String> {
        match &self.config {
            None => Ok(self.clone()),
            Some(path) => Ok(self.merged(Settings::from_file(path)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_of_the_issue() {
        let s = Settings::try_parse_from([
            "krb5-wss-relay",
            "--listen",
            "127.0.0.1:88",
            "--kpasswd-listen",
            "127.0.0.1:464",
            "--realm",
            "EXAMPLE.COM=wss://kdc.example.com/kdc",
            "--realm",
            "EXAMPLE.COM=wss://kdc2.example.com/kdc",
            "--anchors",
            "FILE:/etc/ssl/example-ca.pem",
            "--allow-clients",
            "10.0.0.0/8,192.168.1.7",
            "--allow-plaintext",
        ])
        .unwrap();
        assert_eq!(s.listen, ["127.0.0.1:88".parse().unwrap()]);
        assert_eq!(s.realm.len(), 2);
        assert_eq!(s.allow_clients, ["10.0.0.0/8", "192.168.1.7"]);
        assert_eq!(s.allow_plaintext, Some(true));
    }

    #[test]
    fn command_line_overrides_the_file() {
        let file = Settings::from_toml(
            "listen = [\"127.0.0.1:88\"]\nrealm = [\"A=wss://a/kdc\"]\nconnect_timeout = \"2s\"\nmax_concurrent = 5\n",
        )
        .unwrap();
        let cli =
            Settings::try_parse_from(["r", "--realm", "B=wss://b/kdc", "--max-concurrent", "9"])
                .unwrap();
        let m = cli.merged(file);
        assert_eq!(m.listen, ["127.0.0.1:88".parse().unwrap()]);
        assert_eq!(m.realm, ["B=wss://b/kdc"]);
        assert_eq!(m.connect_timeout.as_deref(), Some("2s"));
        assert_eq!(m.max_concurrent, Some(9));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let e = Settings::from_toml("listn = []\n").unwrap_err();
        assert!(e.contains("listn"), "{e}");
        // Command-line-only settings are not file keys.
        assert!(Settings::from_toml("check_config = true\n").is_err());
    }

    /// The example names every setting of the file (each command-line
    /// flag but --config and --check-config), and nothing else.
    #[test]
    fn example_names_every_key() {
        let text = include_str!("../krb5-wss-relay.example.toml");
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut keys: Vec<String> = table.keys().cloned().collect();
        keys.sort();
        let mut flags: Vec<String> = Settings::command()
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .filter(|id| !["config", "check_config", "help", "version"].contains(&id.as_str()))
            .collect();
        flags.sort();
        assert_eq!(keys, flags);
    }
}
