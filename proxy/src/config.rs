//! The proxy's configuration: the TOML file format, and the merge of that
//! file with the command line into one validated [`Config`].
//!
//! Merge rules (documented in `docs/proxy.md`): a flag given on the
//! command line overrides the file's setting; `--listen` replaces the
//! file's `listen` list; `--realm R=…` / `--kpasswd R=…` replace the file's
//! `kdc` / `kpasswd` list of realm `R` only (other realms of the file stay).

use crate::addr::{self, ServerAddr, KDC_PORT, KPASSWD_PORT};
use crate::cli::Args;
use crate::client::IpNet;
use crate::clientcert::{self, ClientAuth};
use crate::limits::{self, Limits};
use crate::logfmt::LogFormat;
use crate::policy::Policy;
use crate::throttle;
use krb5_wss_proto::{Service, DEFAULT_KKDCP_PATH};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest configuration file read (it is a few lines in practice).
const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// The upstream servers of one realm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RealmServers {
    /// KDCs, tried in order, for `/kdc`.
    pub kdc: Vec<ServerAddr>,
    /// kpasswd servers, tried in order, for `/kpasswd`.
    pub kpasswd: Vec<ServerAddr>,
    /// Try each KDC over UDP first (TCP after no UDP answer, or after
    /// KRB_ERR_RESPONSE_TOO_BIG). kpasswd always uses TCP.
    pub udp: bool,
    /// Which client and service principals may be asked for.
    pub policy: Policy,
    /// Patterns of the client certificates whose connections the realm
    /// serves (empty: any connection; see [`crate::clientcert`]).
    pub client_subjects: Vec<String>,
}

impl RealmServers {
    /// The servers for `service` (possibly none).
    pub fn for_service(&self, service: Service) -> &[ServerAddr] {
        match service {
            Service::Kdc => &self.kdc,
            Service::Kpasswd => &self.kpasswd,
        }
    }
}

/// How clients reach the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TLS with this certificate chain and key (PEM files): `wss://`.
    Tls {
        /// Certificate chain file.
        cert: PathBuf,
        /// Private key file.
        key: PathBuf,
    },
    /// No TLS (`ws://`), behind a TLS-terminating web server.
    Plaintext,
}

impl Transport {
    /// The URL scheme clients use: `wss` or `ws`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Tls { .. } => "wss",
            Transport::Plaintext => "ws",
        }
    }
}

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Addresses to listen on (at least one).
    pub listen: Vec<SocketAddr>,
    /// TLS or plaintext.
    pub transport: Transport,
    /// Client certificates asked for at the TLS handshake (`client_ca`).
    pub client_auth: Option<ClientAuth>,
    /// Served realms by exact (case-sensitive) name (at least one).
    pub realms: BTreeMap<String, RealmServers>,
    /// Bounds.
    pub limits: Limits,
    /// Where the metrics and health endpoint listens, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The MS-KKDCP endpoint's path, or `None` when it is turned off.
    pub kkdcp_path: Option<String>,
    /// Origins (lower case, `scheme://host[:port]`) whose requests are
    /// served; `*` allows any. A request without `Origin` is always served.
    pub allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Text or JSON log lines.
    pub log_format: LogFormat,
    /// Principal names in the audit lines (false: left out).
    pub audit_principals: bool,
    /// The password-guessing throttle.
    pub throttle: throttle::Settings,
}

impl Config {
    /// The longest one exchange of any configured realm can take upstream.
    pub fn max_exchange_time(&self) -> Duration {
        self.realms
            .values()
            .map(|r| {
                let n = r.kdc.len().max(r.kpasswd.len());
                self.limits.exchange_bound(n, r.udp)
            })
            .max()
            .unwrap_or_default()
    }
}

/// The TOML file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    limits: LimitsSection,
    #[serde(default)]
    throttle: ThrottleSection,
    #[serde(default)]
    realms: BTreeMap<String, RealmSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Option<Vec<String>>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    plaintext: Option<bool>,
    client_ca: Option<PathBuf>,
    client_certificate: Option<String>,
    metrics_listen: Option<String>,
    kkdcp: Option<bool>,
    kkdcp_path: Option<String>,
    allowed_origins: Option<Vec<String>>,
    trusted_proxies: Option<Vec<String>>,
    log_format: Option<String>,
    audit_principals: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsSection {
    max_record_size: Option<Size>,
    max_partial_bytes: Option<Size>,
    max_reply_size: Option<Size>,
    max_connections: Option<usize>,
    handshake_timeout: Option<Seconds>,
    idle_timeout: Option<Seconds>,
    record_timeout: Option<Seconds>,
    connect_timeout: Option<Seconds>,
    reply_timeout: Option<Seconds>,
    send_timeout: Option<Seconds>,
    max_connections_per_address: Option<usize>,
    max_requests_per_second: Option<u32>,
    max_upstream_exchanges: Option<usize>,
    udp_timeout: Option<Seconds>,
    shutdown_timeout: Option<Seconds>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleSection {
    enabled: Option<bool>,
    pair_failures: Option<u32>,
    address_failures: Option<u32>,
    principal_failures: Option<u32>,
    window: Option<Seconds>,
    cooldown: Option<Seconds>,
    max_keys: Option<usize>,
    store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealmSection {
    #[serde(default)]
    kdc: Vec<String>,
    #[serde(default)]
    kpasswd: Vec<String>,
    #[serde(default)]
    udp: bool,
    #[serde(default)]
    allow_clients: Vec<String>,
    #[serde(default)]
    deny_clients: Vec<String>,
    #[serde(default)]
    allow_services: Vec<String>,
    #[serde(default)]
    deny_services: Vec<String>,
    #[serde(default)]
    client_subjects: Vec<String>,
}

/// A byte count in TOML: an integer, or a string such as "128KiB".
#[derive(Debug, Clone, Copy)]
struct Size(usize);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a byte count: an integer or a string like \"128KiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                usize::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("{v} is not a byte count")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                usize::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                limits::parse_size(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration in TOML: seconds as a number, or a string like "500ms".
#[derive(Debug, Clone, Copy)]
struct Seconds(Duration);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration: seconds as a number, or a string like \"500ms\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                self.visit_f64(v as f64)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Seconds, E> {
                limits::seconds(v)
                    .map(Seconds)
                    .map_err(|e| E::custom(format!("{v}: {e}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                limits::parse_duration(v).map(Seconds).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads and parses a configuration file, naming it in every error.
fn load_file(path: &Path) -> Result<FileConfig, String> {
    use std::io::Read;
    let name = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("config file {name}: {e}"))?;
    let mut text = String::new();
    file.take(MAX_CONFIG_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("config file {name}: {e}"))?;
    if text.len() as u64 > MAX_CONFIG_FILE {
        return Err(format!(
            "config file {name}: larger than {MAX_CONFIG_FILE} bytes"
        ));
    }
    parse_file(&text).map_err(|e| format!("config file {name}: {e}"))
}

fn parse_file(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
}

/// Resolves `p` relative to the configuration file's directory.
fn relative_to(base: Option<&Path>, p: PathBuf) -> PathBuf {
    match base {
        Some(dir) if p.is_relative() => dir.join(p),
        _ => p,
    }
}

impl Config {
    /// Builds the configuration from the command line and the file it
    /// names (if any), and validates it.
    pub fn from_args(args: Args) -> Result<Config, String> {
        let (file, base) = match &args.config {
            Some(path) => (load_file(path)?, path.parent().map(Path::to_path_buf)),
            None => (FileConfig::default(), None),
        };
        merge(args, file, base.as_deref())
    }
}

fn merge(args: Args, file: FileConfig, base: Option<&Path>) -> Result<Config, String> {
    // Listen addresses.
    let listen = if !args.listen.is_empty() {
        args.listen
    } else {
        file.server
            .listen
            .unwrap_or_default()
            .iter()
            .map(|s| addr::parse_listen(s).map_err(|e| format!("[server] listen: {e}")))
            .collect::<Result<Vec<_>, _>>()?
    };
    if listen.is_empty() {
        return Err("no listen address: give --listen IP:PORT (or [server] listen)".into());
    }

    // TLS or plaintext.
    let plaintext = args.plaintext || file.server.plaintext.unwrap_or(false);
    let cert = args
        .cert
        .or_else(|| file.server.cert.map(|p| relative_to(base, p)));
    let key = args
        .key
        .or_else(|| file.server.key.map(|p| relative_to(base, p)));
    let transport = match (plaintext, cert, key) {
        (true, None, None) => Transport::Plaintext,
        (true, _, _) => {
            return Err(
                "--plaintext serves ws:// without TLS: do not also give --cert/--key".into(),
            )
        }
        (false, Some(cert), Some(key)) => Transport::Tls { cert, key },
        (false, _, _) => {
            return Err(
                "TLS needs both --cert FILE and --key FILE (or --plaintext to serve \
                        ws:// behind a TLS-terminating web server)"
                    .into(),
            )
        }
    };

    // Client certificates: only over TLS.
    let client_ca = args
        .client_ca
        .or_else(|| file.server.client_ca.map(|p| relative_to(base, p)));
    let client_mode = match (args.client_certificate, file.server.client_certificate) {
        (Some(m), _) => Some(m),
        (None, Some(s)) => Some(clientcert::Mode::parse(&s).map_err(|e| format!("[server] {e}"))?),
        (None, None) => None,
    };
    let client_auth = match (client_ca, client_mode) {
        (Some(_), _) if transport == Transport::Plaintext => {
            return Err(
                "client_ca (--client-ca) needs TLS: with --plaintext the front \
                        terminates TLS, so the proxy never sees a client certificate"
                    .into(),
            )
        }
        (Some(ca), mode) => Some(ClientAuth {
            ca,
            mode: mode.unwrap_or_default(),
        }),
        (None, Some(_)) => {
            return Err("client_certificate (--client-certificate) needs client_ca \
                        (--client-ca FILE), the CAs client certificates must chain to"
                .into())
        }
        (None, None) => None,
    };

    // Realms: the file's, then the command line's lists replace per realm.
    let mut realms = BTreeMap::new();
    for (name, section) in file.realms {
        addr::check_realm(&name).map_err(|e| format!("[realms.{name:?}]: {e}"))?;
        let parse_all = |list: &[String], port: u16, key: &str| {
            list.iter()
                .map(|s| {
                    addr::parse_server(s, port).map_err(|e| format!("[realms.{name:?}] {key}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let policy = Policy {
            allow_clients: section.allow_clients,
            deny_clients: section.deny_clients,
            allow_services: section.allow_services,
            deny_services: section.deny_services,
        };
        policy.validate(&name)?;
        clientcert::validate(&name, &section.client_subjects)?;
        let servers = RealmServers {
            kdc: parse_all(&section.kdc, KDC_PORT, "kdc")?,
            kpasswd: parse_all(&section.kpasswd, KPASSWD_PORT, "kpasswd")?,
            udp: section.udp,
            policy,
            client_subjects: section.client_subjects,
        };
        realms.insert(name, servers);
    }
    replace_lists(&mut realms, args.realms, |r| &mut r.kdc);
    replace_lists(&mut realms, args.kpasswd, |r| &mut r.kpasswd);
    for name in &args.udp {
        realms
            .get_mut(name)
            .ok_or_else(|| format!("--udp {name}: no such realm configured"))?
            .udp = true;
    }
    if realms.is_empty() {
        return Err("no realm configured: give --realm REALM=HOST[:PORT] \
                    (or a [realms.\"REALM\"] section)"
            .into());
    }
    if client_auth.is_none() {
        if let Some((name, _)) = realms.iter().find(|(_, r)| !r.client_subjects.is_empty()) {
            return Err(format!(
                "[realms.{name:?}] client_subjects needs client_ca (--client-ca FILE): \
                 without it no client certificate is asked for"
            ));
        }
    }
    if let Some((name, _)) = realms
        .iter()
        .find(|(_, r)| r.kdc.is_empty() && r.kpasswd.is_empty())
    {
        return Err(format!(
            "realm {name:?} has neither kdc nor kpasswd servers"
        ));
    }

    // Limits: defaults, then the file, then the command line.
    let d = Limits::default();
    let f = file.limits;
    let limits = Limits {
        max_record_size: args
            .max_record_size
            .or(f.max_record_size.map(|s| s.0))
            .unwrap_or(d.max_record_size),
        max_reply_size: args
            .max_reply_size
            .or(f.max_reply_size.map(|s| s.0))
            .unwrap_or(d.max_reply_size),
        max_partial_bytes: args
            .max_partial_bytes
            .or(f.max_partial_bytes.map(|s| s.0))
            .unwrap_or(d.max_partial_bytes),
        max_connections: args
            .max_connections
            .or(f.max_connections)
            .unwrap_or(d.max_connections),
        handshake_timeout: pick(
            args.handshake_timeout,
            f.handshake_timeout,
            d.handshake_timeout,
        ),
        idle_timeout: pick(args.idle_timeout, f.idle_timeout, d.idle_timeout),
        record_timeout: pick(args.record_timeout, f.record_timeout, d.record_timeout),
        connect_timeout: pick(args.connect_timeout, f.connect_timeout, d.connect_timeout),
        reply_timeout: pick(args.reply_timeout, f.reply_timeout, d.reply_timeout),
        send_timeout: pick(args.send_timeout, f.send_timeout, d.send_timeout),
        max_connections_per_address: args
            .max_connections_per_address
            .or(f.max_connections_per_address)
            .unwrap_or(d.max_connections_per_address),
        max_requests_per_second: args
            .max_requests_per_second
            .or(f.max_requests_per_second)
            .unwrap_or(d.max_requests_per_second),
        max_upstream_exchanges: args
            .max_upstream_exchanges
            .or(f.max_upstream_exchanges)
            .unwrap_or(d.max_upstream_exchanges),
        udp_timeout: pick(args.udp_timeout, f.udp_timeout, d.udp_timeout),
        shutdown_timeout: pick(
            args.shutdown_timeout,
            f.shutdown_timeout,
            d.shutdown_timeout,
        ),
    };
    limits.validate()?;

    // Metrics listener.
    let metrics_listen = match (args.metrics_listen, file.server.metrics_listen) {
        (Some(a), _) => Some(a),
        (None, Some(s)) => {
            Some(addr::parse_listen(&s).map_err(|e| format!("[server] metrics_listen: {e}"))?)
        }
        (None, None) => None,
    };
    if let Some(m) = metrics_listen {
        if m.port() != 0 && listen.contains(&m) {
            return Err(format!(
                "metrics_listen {m} is also a listen address: give it its own"
            ));
        }
    }

    // MS-KKDCP endpoint.
    let kkdcp_on = !args.no_kkdcp && file.server.kkdcp.unwrap_or(true);
    let kkdcp_path = match (args.kkdcp_path, file.server.kkdcp_path) {
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => DEFAULT_KKDCP_PATH.to_string(),
    };
    check_kkdcp_path(&kkdcp_path)?;
    let kkdcp_path = kkdcp_on.then_some(kkdcp_path);

    // Origins and trusted fronts: the command line's list replaces the file's.
    let origins = if !args.allow_origin.is_empty() {
        args.allow_origin
    } else {
        file.server.allowed_origins.unwrap_or_default()
    };
    let allowed_origins = origins
        .iter()
        .map(|o| normalize_origin(o))
        .collect::<Result<Vec<_>, _>>()?;
    let trusted_proxies = if !args.trust_forwarded_for.is_empty() {
        args.trust_forwarded_for
    } else {
        file.server
            .trusted_proxies
            .unwrap_or_default()
            .iter()
            .map(|s| IpNet::parse(s).map_err(|e| format!("[server] trusted_proxies: {e}")))
            .collect::<Result<Vec<_>, _>>()?
    };

    // Audit lines.
    let log_format = match (args.log_format, file.server.log_format) {
        (Some(f), _) => f,
        (None, Some(s)) => LogFormat::parse(&s).map_err(|e| format!("[server] {e}"))?,
        (None, None) => LogFormat::default(),
    };
    let audit_principals = args
        .audit_principals
        .or(file.server.audit_principals)
        .unwrap_or(true);

    // Password-guessing throttle: defaults, then the file, then flags.
    let d = throttle::Settings::default();
    let f = file.throttle;
    let throttle = throttle::Settings {
        enabled: args.throttle.or(f.enabled).unwrap_or(d.enabled),
        pair_failures: args
            .throttle_pair_failures
            .or(f.pair_failures)
            .unwrap_or(d.pair_failures),
        address_failures: args
            .throttle_address_failures
            .or(f.address_failures)
            .unwrap_or(d.address_failures),
        principal_failures: args
            .throttle_principal_failures
            .or(f.principal_failures)
            .unwrap_or(d.principal_failures),
        window: pick(args.throttle_window, f.window, d.window),
        cooldown: pick(args.throttle_cooldown, f.cooldown, d.cooldown),
        max_keys: args.throttle_max_keys.or(f.max_keys).unwrap_or(d.max_keys),
        store: args.throttle_store.or(f.store),
    };
    throttle.validate()?;

    Ok(Config {
        listen,
        transport,
        client_auth,
        realms,
        limits,
        metrics_listen,
        kkdcp_path,
        allowed_origins,
        trusted_proxies,
        log_format,
        audit_principals,
        throttle,
    })
}

/// Checks the MS-KKDCP path: absolute, plain characters, not one of the
/// WebSocket paths.
fn check_kkdcp_path(p: &str) -> Result<(), String> {
    let plain = p.len() <= 256
        && p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'));
    if !plain {
        return Err(format!(
            "kkdcp_path {p:?}: must start with '/' and hold only letters, digits and / - _ . ~"
        ));
    }
    if p == Service::Kdc.default_path() || p == Service::Kpasswd.default_path() {
        return Err(format!("kkdcp_path {p:?} is a WebSocket path"));
    }
    Ok(())
}

/// Normalizes an allowed origin: `*`, `null`, or `scheme://host[:port]`
/// (lower case, no path).
pub fn normalize_origin(o: &str) -> Result<String, String> {
    let lower = o.trim().trim_end_matches('/').to_ascii_lowercase();
    if lower == "*" || lower == "null" {
        return Ok(lower);
    }
    let ok = match lower.split_once("://") {
        Some((scheme, host)) => {
            !scheme.is_empty()
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
                && !host.is_empty()
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'-' | b':' | b'[' | b']' | b'_')
                })
        }
        None => false,
    };
    if ok {
        Ok(lower)
    } else {
        Err(format!(
            "allowed origin {o:?}: expected scheme://host[:port] (e.g. https://app.example.com), null or *"
        ))
    }
}

fn pick(cli: Option<Duration>, file: Option<Seconds>, default: Duration) -> Duration {
    cli.or(file.map(|s| s.0)).unwrap_or(default)
}

/// Groups command-line `(realm, server)` pairs by realm, keeping their
/// order, and makes each named realm's list exactly those servers.
fn replace_lists(
    realms: &mut BTreeMap<String, RealmServers>,
    pairs: Vec<(String, ServerAddr)>,
    list: impl Fn(&mut RealmServers) -> &mut Vec<ServerAddr>,
) {
    let mut given: BTreeMap<String, Vec<ServerAddr>> = BTreeMap::new();
    for (realm, server) in pairs {
        given.entry(realm).or_default().push(server);
    }
    for (realm, servers) in given {
        *list(realms.entry(realm).or_default()) = servers;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("krb5-wss-proxy").chain(list.iter().copied())).unwrap()
    }

    fn from(list: &[&str], toml: &str) -> Result<Config, String> {
        merge(
            args(list),
            parse_file(toml)?,
            Some(Path::new("/etc/krb5-wss")),
        )
    }

    const TLS: &[&str] = &["--cert", "c.pem", "--key", "k.pem"];

    #[test]
    fn command_line_only() {
        let mut a = vec![
            "--listen",
            "127.0.0.1:8443",
            "--realm",
            "EXAMPLE.COM=kdc1.example.com",
            "--realm",
            "EXAMPLE.COM=kdc2.example.com:1088",
            "--kpasswd",
            "EXAMPLE.COM=kdc1.example.com",
        ];
        a.extend(TLS);
        let c = from(&a, "").unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:8443".parse().unwrap()]);
        assert_eq!(
            c.transport,
            Transport::Tls {
                cert: "c.pem".into(),
                key: "k.pem".into()
            }
        );
        let r = &c.realms["EXAMPLE.COM"];
        let kdcs: Vec<_> = r.kdc.iter().map(ToString::to_string).collect();
        assert_eq!(kdcs, ["kdc1.example.com:88", "kdc2.example.com:1088"]);
        assert_eq!(r.kpasswd[0].to_string(), "kdc1.example.com:464");
        assert_eq!(c.limits, Limits::default());
    }

    const FULL: &str = r#"
        [server]
        listen = ["0.0.0.0:443", "[::]:443"]
        cert = "cert.pem"
        key = "/abs/key.pem"
        metrics_listen = "127.0.0.1:9464"
        kkdcp_path = "/kerberos"
        allowed_origins = ["https://App.Example.com/"]
        trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
        log_format = "json"
        audit_principals = false

        [limits]
        max_record_size = "64KiB"
        max_reply_size = 2097152
        max_connections = 500
        handshake_timeout = 5
        idle_timeout = "2m"
        record_timeout = 2.5
        connect_timeout = "500ms"
        reply_timeout = "7s"
        send_timeout = 3
        max_connections_per_address = 7
        max_requests_per_second = 9
        max_upstream_exchanges = 11
        udp_timeout = "300ms"
        shutdown_timeout = "4s"

        [realms."EXAMPLE.COM"]
        kdc = ["kdc1.example.com", "[2001:db8::88]:88"]
        kpasswd = ["kdc1.example.com"]
        udp = true
        allow_clients = ["svc-*"]
        deny_clients = ["svc-old@EXAMPLE.COM"]
        allow_services = ["krbtgt/EXAMPLE.COM", "postgres/db.example.com"]
        deny_services = ["kadmin/*"]

        [realms."OTHER.ORG"]
        kdc = ["192.0.2.7:750"]
    "#;

    #[test]
    fn full_file() {
        let c = from(&[], FULL).unwrap();
        assert_eq!(c.listen.len(), 2);
        assert_eq!(
            c.transport,
            Transport::Tls {
                cert: "/etc/krb5-wss/cert.pem".into(),
                key: "/abs/key.pem".into()
            }
        );
        assert_eq!(c.realms.len(), 2);
        assert_eq!(
            c.realms["EXAMPLE.COM"].kdc[1].to_string(),
            "[2001:db8::88]:88"
        );
        assert_eq!(c.realms["EXAMPLE.COM"].kpasswd[0].port, 464);
        assert!(c.realms["OTHER.ORG"].kpasswd.is_empty());
        let l = &c.limits;
        assert_eq!(l.max_record_size, 65536);
        assert_eq!(l.max_reply_size, 2 << 20);
        assert_eq!(l.max_connections, 500);
        assert_eq!(l.handshake_timeout, Duration::from_secs(5));
        assert_eq!(l.idle_timeout, Duration::from_secs(120));
        assert_eq!(l.record_timeout, Duration::from_millis(2500));
        assert_eq!(l.connect_timeout, Duration::from_millis(500));
        assert_eq!(l.reply_timeout, Duration::from_secs(7));
        assert_eq!(l.send_timeout, Duration::from_secs(3));
        assert_eq!(l.max_connections_per_address, 7);
        assert_eq!(l.max_requests_per_second, 9);
        assert_eq!(l.max_upstream_exchanges, 11);
        assert_eq!(l.udp_timeout, Duration::from_millis(300));
        assert_eq!(l.shutdown_timeout, Duration::from_secs(4));
        assert!(c.realms["EXAMPLE.COM"].udp);
        assert!(!c.realms["OTHER.ORG"].udp);
        assert_eq!(c.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.kkdcp_path.as_deref(), Some("/kerberos"));
        assert_eq!(c.allowed_origins, ["https://app.example.com"]);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.audit_principals);
        let p = &c.realms["EXAMPLE.COM"].policy;
        assert_eq!(p.allow_clients, ["svc-*"]);
        assert_eq!(p.deny_clients, ["svc-old@EXAMPLE.COM"]);
        assert_eq!(p.allow_services.len(), 2);
        assert_eq!(p.deny_services, ["kadmin/*"]);
        assert!(c.realms["OTHER.ORG"].policy.is_open());
    }

    #[test]
    fn audit_settings() {
        let base = ["--listen", "127.0.0.1:1", "--plaintext", "--realm", "A=k"];
        let c = from(&base, "").unwrap();
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.audit_principals);
        let mut v = base.to_vec();
        v.extend(["--log-format", "json", "--audit-principals", "false"]);
        let c = from(&v, "[server]\nlog_format = \"text\"").unwrap();
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.audit_principals);
        let err = from(&base, "[server]\nlog_format = \"xml\"").unwrap_err();
        assert!(err.contains("log_format"), "{err}");
        let err = from(
            &base,
            "[realms.\"A\"]\nkdc = [\"k\"]\ndeny_clients = [\"\"]",
        )
        .unwrap_err();
        assert!(err.contains("deny_clients"), "{err}");
    }

    #[test]
    fn server_options_from_the_command_line() {
        let base = ["--listen", "127.0.0.1:1", "--plaintext", "--realm", "A=k"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend(extra);
            from(&v, "")
        };
        let c = with(&[]).unwrap();
        assert_eq!(c.kkdcp_path.as_deref(), Some("/KdcProxy"));
        assert!(c.allowed_origins.is_empty() && c.trusted_proxies.is_empty());
        assert_eq!(c.metrics_listen, None);
        assert_eq!(with(&["--no-kkdcp"]).unwrap().kkdcp_path, None);
        let c = with(&["--udp", "A", "--allow-origin", "*"]).unwrap();
        assert!(c.realms["A"].udp);
        assert_eq!(c.allowed_origins, ["*"]);
        assert!(with(&["--udp", "B"]).unwrap_err().contains("--udp B"));
        for bad in ["kdcproxy", "/kdc", "/a b", "/a?b"] {
            let err = with(&["--kkdcp-path", bad]).unwrap_err();
            assert!(err.contains("kkdcp_path"), "{bad}: {err}");
        }
        for bad in ["app.example.com", "https://", "https://a/b", "https://a b"] {
            let err = with(&["--allow-origin", bad]).unwrap_err();
            assert!(err.contains("allowed origin"), "{bad}: {err}");
        }
        let err = with(&["--metrics-listen", "127.0.0.1:1"]).unwrap_err();
        assert!(err.contains("metrics_listen"), "{err}");
        let err = from(&base, "[server]\ntrusted_proxies = [\"nope\"]").unwrap_err();
        assert!(err.contains("trusted_proxies"), "{err}");
    }

    #[test]
    fn command_line_overrides_file() {
        let c = from(
            &[
                "--listen",
                "127.0.0.1:0",
                "--realm",
                "EXAMPLE.COM=127.0.0.1:61000",
                "--idle-timeout",
                "1",
                "--cert",
                "/other/cert.pem",
            ],
            FULL,
        )
        .unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:0".parse().unwrap()]);
        assert_eq!(c.realms["EXAMPLE.COM"].kdc.len(), 1);
        assert_eq!(
            c.realms["EXAMPLE.COM"].kdc[0].to_string(),
            "127.0.0.1:61000"
        );
        // Only the list given was replaced; the other realm stays.
        assert_eq!(c.realms["EXAMPLE.COM"].kpasswd.len(), 1);
        assert!(c.realms.contains_key("OTHER.ORG"));
        assert_eq!(c.limits.idle_timeout, Duration::from_secs(1));
        assert_eq!(c.limits.reply_timeout, Duration::from_secs(7));
        assert_eq!(
            c.transport,
            Transport::Tls {
                cert: "/other/cert.pem".into(),
                key: "/abs/key.pem".into()
            }
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        for toml in [
            "[server]\nlisen = [\"127.0.0.1:1\"]",
            "[limit]\nmax_record_size = 1",
            "[limits]\nmax_recod_size = 4096",
            "[realms.\"A.ORG\"]\nkdcs = [\"kdc\"]",
            "realm = \"A.ORG\"",
        ] {
            let err = from(TLS, toml).unwrap_err();
            assert!(err.contains("unknown field"), "{toml}: {err}");
        }
    }

    #[test]
    fn bad_values_in_file_are_named() {
        let err = from(TLS, "[server]\nlisten = [\"localhost:1\"]").unwrap_err();
        assert!(err.contains("listen"), "{err}");
        let err = from(
            &["--listen", "127.0.0.1:1", "--cert", "c", "--key", "k"],
            "[realms.\"A.ORG\"]\nkdc = [\"kdc:0\"]",
        )
        .unwrap_err();
        assert!(err.contains("A.ORG") && err.contains("kdc:0"), "{err}");
        let err = from(TLS, "[limits]\nidle_timeout = \"forever\"").unwrap_err();
        assert!(
            err.contains("idle_timeout") || err.contains("forever"),
            "{err}"
        );
        let err = from(TLS, "[limits]\nmax_record_size = -1").unwrap_err();
        assert!(err.contains("max_record_size"), "{err}");
        let err = from(TLS, "not toml at all").unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn limits_are_validated() {
        let err = from(
            &[
                "--listen",
                "127.0.0.1:1",
                "--plaintext",
                "--realm",
                "A=k",
                "--max-record-size",
                "10",
            ],
            "",
        )
        .unwrap_err();
        assert!(err.contains("max_record_size"), "{err}");
    }

    #[test]
    fn client_certificate_rules() {
        let base = ["--listen", "127.0.0.1:1", "--realm", "A=k"];
        let with = |extra: &[&str], toml: &str| {
            let mut a = base.to_vec();
            a.extend(extra);
            from(&a, toml)
        };
        let c = with(
            &[],
            "[server]\ncert = \"c\"\nkey = \"k\"\nclient_ca = \"ca.pem\"",
        )
        .unwrap();
        assert_eq!(
            c.client_auth,
            Some(ClientAuth {
                ca: "/etc/krb5-wss/ca.pem".into(),
                mode: clientcert::Mode::Required
            })
        );
        let mut a = TLS.to_vec();
        a.extend(["--client-ca", "/ca.pem", "--client-certificate", "optional"]);
        let c = with(
            &a,
            "[realms.\"A\"]\nclient_subjects = [\"CN=h.example\", \"*.dmz.example\"]",
        )
        .unwrap();
        assert_eq!(c.client_auth.unwrap().mode, clientcert::Mode::Optional);
        assert_eq!(
            c.realms["A"].client_subjects,
            ["CN=h.example", "*.dmz.example"]
        );
        // Plaintext never sees a client certificate.
        let err = with(&["--plaintext", "--client-ca", "/ca.pem"], "").unwrap_err();
        assert!(err.contains("client_ca") && err.contains("TLS"), "{err}");
        // A mode, or subjects, without client_ca would refuse or allow
        // everything: both are errors.
        let mut a = TLS.to_vec();
        a.extend(["--client-certificate", "optional"]);
        let err = with(&a, "").unwrap_err();
        assert!(err.contains("needs client_ca"), "{err}");
        let err = with(TLS, "[realms.\"A\"]\nclient_subjects = [\"*\"]").unwrap_err();
        assert!(err.contains("client_subjects needs client_ca"), "{err}");
        let err = with(
            TLS,
            "[server]\nclient_ca = \"c\"\nclient_certificate = \"maybe\"",
        )
        .unwrap_err();
        assert!(err.contains("\"maybe\""), "{err}");
        let mut a = TLS.to_vec();
        a.extend(["--client-ca", "/ca.pem"]);
        let err = with(&a, "[realms.\"A\"]\nclient_subjects = [\"O=Example\"]").unwrap_err();
        assert!(
            err.contains("client_subjects") && err.contains("O=Example"),
            "{err}"
        );
    }

    #[test]
    fn plaintext_and_certificate_rules() {
        let base = ["--listen", "127.0.0.1:1", "--realm", "A=k"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend(extra);
            from(&v, "")
        };
        assert_eq!(
            with(&["--plaintext"]).unwrap().transport,
            Transport::Plaintext
        );
        assert_eq!(with(&["--plaintext"]).unwrap().transport.scheme(), "ws");
        assert_eq!(with(TLS).unwrap().transport.scheme(), "wss");
        let err = with(&[]).unwrap_err();
        assert!(
            err.contains("--cert") && err.contains("--plaintext"),
            "{err}"
        );
        assert!(with(&["--cert", "c.pem"]).unwrap_err().contains("--key"));
        assert!(with(&["--key", "k.pem"]).unwrap_err().contains("--cert"));
        let err = with(&["--plaintext", "--cert", "c", "--key", "k"]).unwrap_err();
        assert!(err.contains("--plaintext"), "{err}");
        // plaintext from the file works too.
        let c = from(&base, "[server]\nplaintext = true").unwrap();
        assert_eq!(c.transport, Transport::Plaintext);
    }

    #[test]
    fn realm_and_listen_are_required() {
        let err = from(&["--listen", "127.0.0.1:1", "--plaintext"], "").unwrap_err();
        assert!(err.contains("no realm"), "{err}");
        let err = from(&["--realm", "A=k", "--plaintext"], "").unwrap_err();
        assert!(err.contains("no listen"), "{err}");
        let err = from(
            &["--listen", "127.0.0.1:1", "--plaintext"],
            "[realms.\"A.ORG\"]\n",
        )
        .unwrap_err();
        assert!(err.contains("neither kdc nor kpasswd"), "{err}");
    }

    #[test]
    fn realm_names_are_exact() {
        let c = from(
            &[
                "--listen",
                "127.0.0.1:1",
                "--plaintext",
                "--realm",
                "Example.COM=k",
                "--realm",
                "EXAMPLE.COM=j",
            ],
            "",
        )
        .unwrap();
        assert_eq!(c.realms.len(), 2);
        assert_eq!(c.realms["Example.COM"].kdc[0].to_string(), "k:88");
    }

    #[test]
    fn missing_config_file_is_named() {
        let mut a = args(&[]);
        a.config = Some("/nonexistent/krb5-wss-proxy.toml".into());
        let err = Config::from_args(a).unwrap_err();
        assert!(err.contains("/nonexistent/krb5-wss-proxy.toml"), "{err}");
    }

    #[test]
    fn example_file_parses() {
        let text = include_str!("../krb5-wss-proxy.example.toml");
        let c = merge(Args::default(), parse_file(text).unwrap(), None).unwrap();
        assert!(!c.realms.is_empty());
        c.limits.validate().unwrap();
        // The audit and policy settings are shown, at their defaults.
        for key in [
            "log_format",
            "audit_principals",
            "allow_clients",
            "deny_clients",
            "allow_services",
            "deny_services",
        ] {
            assert!(text.contains(&format!("\n{key} = ")), "example lacks {key}");
        }
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.audit_principals);
        assert!(c.realms.values().all(|r| r.policy.is_open()));
    }

    /// The limits' names, read from `Limits`'s own Debug output (so a new
    /// field is in this list without anyone adding it).
    fn limit_keys() -> Vec<String> {
        let debug = format!("{:?}", Limits::default());
        debug
            .split(['{', ',', '}'])
            .filter_map(|part| part.split_once(':').map(|(k, _)| k.trim().to_string()))
            .filter(|k| !k.is_empty())
            .collect()
    }

    /// The "[default: X]" that `--help` text shows for `flag`.
    fn help_default(help: &str, flag: &str) -> String {
        // "--flag <N>" ... "[default: X]" before the next flag.
        let start = help
            .find(&format!("{flag} "))
            .unwrap_or_else(|| panic!("{flag}"));
        let rest = &help[start..];
        let end = rest[2..].find("\n  --").map_or(rest.len(), |i| i + 2);
        let block = &rest[..end];
        let at = block
            .find("[default: ")
            .unwrap_or_else(|| panic!("{flag} has no default"));
        block[at + 10..]
            .split(']')
            .next()
            .unwrap()
            .trim()
            .to_string()
    }

    /// The default column of docs/proxy.md's row for `[section] key`.
    fn docs_default(docs: &str, section: &str, key: &str) -> String {
        let row = docs
            .lines()
            .find(|l| l.contains(&format!("`[{section}] {key}`")))
            .unwrap_or_else(|| panic!("docs/proxy.md has no row for [{section}] {key}"));
        row.split('|').nth(3).unwrap().trim().to_string()
    }

    /// Limits from `key -> written default` pairs, through the TOML parser.
    fn limits_from_written(pairs: &[(String, String)]) -> Limits {
        let mut toml = String::from("[limits]\n");
        for (k, v) in pairs {
            if v.bytes().all(|b| b.is_ascii_digit()) {
                toml.push_str(&format!("{k} = {v}\n"));
            } else {
                toml.push_str(&format!("{k} = \"{v}\"\n"));
            }
        }
        from(
            &["--listen", "127.0.0.1:0", "--plaintext", "--realm", "R=k"],
            &toml,
        )
        .unwrap_or_else(|e| panic!("{e}\n{toml}"))
        .limits
    }

    /// Every place a limit's default is written for people says what the
    /// code's default is: the example TOML (which names every limit and
    /// parses to exactly the defaults), `--help` and docs/proxy.md. (The
    /// documented request rate once said 20 while the code said 1000.)
    #[test]
    fn every_written_default_is_the_code_default() {
        let d = Limits::default();
        let keys = limit_keys();
        assert_eq!(keys.len(), 15, "{keys:?}");

        let example = include_str!("../krb5-wss-proxy.example.toml");
        for k in &keys {
            assert!(example.contains(&format!("\n{k} = ")), "example lacks {k}");
        }
        let c = merge(Args::default(), parse_file(example).unwrap(), None).unwrap();
        assert_eq!(c.limits, d, "the example's [limits] are not the defaults");

        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        let docs = include_str!("../../docs/proxy.md");
        for (name, text) in [("--help", help.as_str()), ("docs/proxy.md", docs)] {
            let mut pairs = Vec::new();
            for k in &keys {
                let flag = format!("--{}", k.replace('_', "-"));
                let value = if name == "--help" {
                    help_default(text, &flag)
                } else {
                    docs_default(text, "limits", k)
                };
                pairs.push((k.clone(), value));
            }
            assert_eq!(
                limits_from_written(&pairs),
                d,
                "{name} disagrees: {pairs:?}"
            );
        }
    }

    /// The same for `[throttle]`: the example names every key at its
    /// default, and `--help` and docs/proxy.md write the code's defaults.
    #[test]
    fn every_written_throttle_default_is_the_code_default() {
        let d = throttle::Settings::default();
        let debug = format!("{d:?}");
        let keys: Vec<&str> = debug
            .split(['{', ',', '}'])
            .filter_map(|part| part.split_once(':').map(|(k, _)| k.trim()))
            .filter(|k| !k.is_empty())
            .collect();
        assert_eq!(keys.len(), 8, "{keys:?}");
        let example = include_str!("../krb5-wss-proxy.example.toml");
        assert!(
            example.contains("\n# store = \"redis://"),
            "example lacks store"
        );
        assert!(d.store.is_none());
        let keys: Vec<&str> = keys.into_iter().filter(|k| *k != "store").collect();
        for k in &keys {
            assert!(example.contains(&format!("\n{k} = ")), "example lacks {k}");
        }
        let c = merge(Args::default(), parse_file(example).unwrap(), None).unwrap();
        assert_eq!(
            c.throttle, d,
            "the example's [throttle] is not the defaults"
        );

        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        let docs = include_str!("../../docs/proxy.md");
        for (name, text) in [("--help", help.as_str()), ("docs/proxy.md", docs)] {
            let mut toml = String::from("[throttle]\n");
            for k in &keys {
                let flag = match *k {
                    "enabled" => "--throttle".to_string(),
                    k => format!("--throttle-{}", k.replace('_', "-")),
                };
                let value = if name == "--help" {
                    help_default(text, &flag)
                } else {
                    docs_default(text, "throttle", k)
                };
                if value.bytes().all(|b| b.is_ascii_digit()) || value == "true" || value == "false"
                {
                    toml.push_str(&format!("{k} = {value}\n"));
                } else {
                    toml.push_str(&format!("{k} = \"{value}\"\n"));
                }
            }
            let c = from(
                &["--listen", "127.0.0.1:0", "--plaintext", "--realm", "R=k"],
                &toml,
            )
            .unwrap_or_else(|e| panic!("{e}\n{toml}"));
            assert_eq!(c.throttle, d, "{name} disagrees: {toml}");
        }
        // Flags override the file.
        let c = from(
            &[
                "--listen",
                "127.0.0.1:0",
                "--plaintext",
                "--realm",
                "R=k",
                "--throttle",
                "false",
                "--throttle-pair-failures",
                "2",
                "--throttle-cooldown",
                "10s",
            ],
            "[throttle]\npair_failures = 9\nmax_keys = 50\n",
        )
        .unwrap();
        assert!(!c.throttle.enabled);
        assert_eq!(c.throttle.pair_failures, 2);
        assert_eq!(c.throttle.max_keys, 50);
        assert_eq!(c.throttle.cooldown, Duration::from_secs(10));
        let err = from(
            &["--listen", "127.0.0.1:0", "--plaintext", "--realm", "R=k"],
            "[throttle]\naddress_failures = 0\n",
        )
        .unwrap_err();
        assert!(err.contains("address_failures"), "{err}");
    }
}
