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
use crate::discovery;
use crate::limits::Limits;
use crate::logfmt::LogFormat;
use crate::policy::Policy;
use crate::server_settings::ServerSettings;
use crate::settings::{Given, Section, Table};
use crate::throttle;
use krb5_wss_proto::Service;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Largest configuration file read (it is a few lines in practice).
const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// The upstream servers of one realm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmServers {
    /// KDCs, tried in order, for `/kdc`.
    pub kdc: Vec<ServerAddr>,
    /// kpasswd servers, tried in order, for `/kpasswd`.
    pub kpasswd: Vec<ServerAddr>,
    /// Try each KDC over UDP first, as libkrb5 does (requests up to
    /// [`crate::udp::UDP_PREFERENCE_LIMIT`] bytes; TCP after no UDP
    /// answer, or after KRB_ERR_RESPONSE_TOO_BIG). On by default; kpasswd
    /// always uses TCP.
    pub udp: bool,
    /// Which client and service principals may be asked for.
    pub policy: Policy,
    /// Which lists come from DNS (`kdc = "dns"`, `kpasswd = "dns"`).
    pub dns: Discover,
    /// Patterns of the client certificates whose connections the realm
    /// serves (empty: any connection; see [`crate::clientcert`]).
    pub client_subjects: Vec<String>,
}

/// Which of a realm's server lists are discovered in DNS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Discover {
    /// `kdc = "dns"`.
    pub kdc: bool,
    /// `kpasswd = "dns"`.
    pub kpasswd: bool,
}

impl Default for RealmServers {
    fn default() -> Self {
        RealmServers {
            kdc: Vec::new(),
            kpasswd: Vec::new(),
            udp: true,
            policy: Policy::default(),
            dns: Discover::default(),
            client_subjects: Vec::new(),
        }
    }
}

impl RealmServers {
    /// The servers for `service` (possibly none).
    pub fn for_service(&self, service: Service) -> &[ServerAddr] {
        match service {
            Service::Kdc => &self.kdc,
            Service::Kpasswd => &self.kpasswd,
        }
    }

    /// Whether the servers for `service` are discovered in DNS.
    pub fn discovers(&self, service: Service) -> bool {
        match service {
            Service::Kdc => self.dns.kdc,
            Service::Kpasswd => self.dns.kpasswd,
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
    /// Refuse a KDC-PROXY-MESSAGE without `target-domain` (MS-KKDCP
    /// §3.2.5.1); false accepts it (the realm inside the message routes).
    pub kkdcp_require_target_domain: bool,
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
    /// KDC discovery in DNS and its destination allow-list.
    pub discovery: Arc<discovery::Settings>,
}

impl Config {
    /// The longest one exchange of any configured realm can take upstream.
    pub fn max_exchange_time(&self) -> Duration {
        self.realms
            .values()
            .map(|r| {
                if r.dns.kdc || r.dns.kpasswd {
                    return self.discovery.timeout
                        + self.limits.exchange_bound(discovery::MAX_SERVERS, r.udp);
                }
                let n = r.kdc.len().max(r.kpasswd.len());
                self.limits.exchange_bound(n, r.udp)
            })
            .max()
            .unwrap_or_default()
    }

    /// The configured realm serving requests for `realm`: the section of
    /// that exact name, else the wildcard section (`*.SUFFIX`) with the
    /// longest suffix matching it.
    pub fn realm(&self, realm: &str) -> Option<&RealmServers> {
        // No configured realm holds '*' but a wildcard section's name,
        // which a client must not match by sending it.
        if realm.contains('*') {
            return None;
        }
        if let Some(r) = self.realms.get(realm) {
            return Some(r);
        }
        self.realms
            .iter()
            .filter(|(pattern, _)| discovery::wildcard_matches(pattern, realm))
            .max_by_key(|(pattern, _)| pattern.len())
            .map(|(_, r)| r)
    }
}

/// The TOML file, as written: the settings sections as key → value (read
/// by their definitions), the realms typed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: Section,
    #[serde(default)]
    limits: Section,
    #[serde(default)]
    throttle: Section,
    #[serde(default)]
    realms: BTreeMap<String, RealmSection>,
    #[serde(default)]
    discovery: Section,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealmSection {
    #[serde(default)]
    kdc: ServerList,
    #[serde(default)]
    kpasswd: ServerList,
    #[serde(default = "udp_default")]
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

/// A configuration file read and parsed, with what its errors name.
#[derive(Debug, Default)]
struct Loaded {
    file: FileConfig,
    /// Its text (for the lines errors name).
    text: String,
    /// How errors name it ("config file PATH: ").
    name: String,
    /// Its directory, for relative paths.
    dir: Option<PathBuf>,
}

/// A realm's `kdc` or `kpasswd` in TOML: a list of servers, or the
/// string "dns".
#[derive(Debug, Clone, PartialEq, Eq)]
enum ServerList {
    List(Vec<String>),
    Dns,
}

impl Default for ServerList {
    fn default() -> Self {
        ServerList::List(Vec::new())
    }
}

impl<'de> Deserialize<'de> for ServerList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServerList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of servers, or \"dns\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ServerList, E> {
                match v {
                    "dns" => Ok(ServerList::Dns),
                    _ => Err(E::custom(format!(
                        "{v:?}: expected a list of servers ([\"{v}\"]) or \"dns\""
                    ))),
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<ServerList, A::Error> {
                let mut list = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    list.push(s);
                }
                Ok(ServerList::List(list))
            }
        }
        d.deserialize_any(V)
    }
}

impl Loaded {
    /// Parses `text`, naming `name` in errors.
    fn parse(text: String, name: String, dir: Option<PathBuf>) -> Result<Loaded, String> {
        let file =
            toml::from_str(&text).map_err(|e| format!("{name}{}", e.to_string().trim_end()))?;
        Ok(Loaded {
            file,
            text,
            name,
            dir,
        })
    }

    /// Reads and parses a configuration file, naming it in every error.
    fn read(path: &Path) -> Result<Loaded, String> {
        let text = read_bounded(path, MAX_CONFIG_FILE).map_err(|e| format!("config file {e}"))?;
        let name = format!("config file {}: ", path.display());
        Loaded::parse(text, name, path.parent().map(Path::to_path_buf))
    }

    /// A section's settings: the defaults, then this file's values, then
    /// the command line's.
    fn settings<T: Table>(&self, section: &Section, given: &Given) -> Result<T, String> {
        let mut t = T::default();
        t.apply_file(section, &self.text)
            .map_err(|e| format!("{}{e}", self.name))?;
        t.apply_cli(given)?;
        Ok(t)
    }

    /// Resolves `p` relative to the file's directory.
    fn relative(&self, p: Option<PathBuf>) -> Option<PathBuf> {
        match (p, &self.dir) {
            (Some(p), Some(dir)) if p.is_relative() => Some(dir.join(p)),
            (p, _) => p,
        }
    }
}

/// Reads the text file at `path`, at most `max` bytes; errors start with
/// the path.
pub fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    use std::io::Read;
    let name = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let mut text = String::new();
    file.take(max + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{name}: {e}"))?;
    if text.len() as u64 > max {
        return Err(format!("{name}: larger than {max} bytes"));
    }
    Ok(text)
}

/// A configuration from TOML text alone (tests of other modules).
#[cfg(test)]
pub fn tests_parse(text: &str) -> Result<Config, String> {
    merge(
        Args::default(),
        &Loaded::parse(text.into(), String::new(), None)?,
    )
}

impl Config {
    /// Builds the configuration from the command line and the file it
    /// names (if any), and validates it.
    pub fn from_args(args: Args) -> Result<Config, String> {
        let loaded = match &args.config {
            Some(path) => Loaded::read(path)?,
            None => Loaded::default(),
        };
        merge(args, &loaded)
    }
}

fn merge(args: Args, loaded: &Loaded) -> Result<Config, String> {
    let file = &loaded.file;

    // [server]: the file's paths are relative to it, the command line's
    // to the working directory.
    let mut server = ServerSettings::default();
    server
        .apply_file(&file.server, &loaded.text)
        .map_err(|e| format!("{}{e}", loaded.name))?;
    server.cert = loaded.relative(server.cert.take());
    server.key = loaded.relative(server.key.take());
    server.client_ca = loaded.relative(server.client_ca.take());
    server.apply_cli(&args.given)?;
    let limits: Limits = loaded.settings(&file.limits, &args.given)?;
    limits.validate()?;
    let throttle: throttle::Settings = loaded.settings(&file.throttle, &args.given)?;
    throttle.validate()?;

    let listen = server.listen;
    if listen.is_empty() {
        return Err("no listen address: give --listen IP:PORT (or [server] listen)".into());
    }
    let transport = match (server.plaintext, server.cert, server.key) {
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
    let client_auth = match (server.client_ca, server.client_certificate) {
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
    for (name, section) in &file.realms {
        addr::check_realm(name).map_err(|e| format!("[realms.{name:?}]: {e}"))?;
        let parse_all = |list: &ServerList, port: u16, key: &str| match list {
            ServerList::Dns => Ok(Vec::new()),
            ServerList::List(list) => list
                .iter()
                .map(|s| {
                    addr::parse_server(s, port).map_err(|e| format!("[realms.{name:?}] {key}: {e}"))
                })
                .collect::<Result<Vec<_>, _>>(),
        };
        let dns = Discover {
            kdc: section.kdc == ServerList::Dns,
            kpasswd: section.kpasswd == ServerList::Dns,
        };
        let policy = Policy {
            allow_clients: section.allow_clients.clone(),
            deny_clients: section.deny_clients.clone(),
            allow_services: section.allow_services.clone(),
            deny_services: section.deny_services.clone(),
        };
        policy.validate(name)?;
        clientcert::validate(name, &section.client_subjects)?;
        let servers = RealmServers {
            kdc: parse_all(&section.kdc, KDC_PORT, "kdc")?,
            kpasswd: parse_all(&section.kpasswd, KPASSWD_PORT, "kpasswd")?,
            udp: section.udp,
            policy,
            dns,
            client_subjects: section.client_subjects.clone(),
        };
        realms.insert(name.clone(), servers);
    }
    replace_lists(&mut realms, args.realms, |r| &mut r.kdc);
    replace_lists(&mut realms, args.kpasswd, |r| &mut r.kpasswd);
    for name in &args.udp {
        realms
            .get_mut(name)
            .ok_or_else(|| format!("--udp {name}: no such realm configured"))?
            .udp = true;
    }
    for name in &args.tcp_only {
        if args.udp.contains(name) {
            return Err(format!("--udp {name} and --tcp-only {name}: choose one"));
        }
        realms
            .get_mut(name)
            .ok_or_else(|| format!("--tcp-only {name}: no such realm configured"))?
            .udp = false;
    }
    if realms.is_empty() {
        return Err("no realm configured: give --realm REALM=HOST[:PORT] \
                    (or a [realms.\"REALM\"] section)"
            .into());
    }
    // A command-line list replaces a file's "dns" too; `--realm R=dns`
    // (alone for its realm) is "dns".
    for (name, r) in realms.iter_mut() {
        r.dns.kdc &= r.kdc.is_empty();
        r.dns.kpasswd &= r.kpasswd.is_empty();
        for (flag, list, dns) in [
            ("--realm", &mut r.kdc, &mut r.dns.kdc),
            ("--kpasswd", &mut r.kpasswd, &mut r.dns.kpasswd),
        ] {
            if list.contains(&addr::dns_marker()) {
                if list.len() > 1 {
                    return Err(format!(
                        "{flag} {name}=dns: give either dns or servers for a realm, not both"
                    ));
                }
                list.clear();
                *dns = true;
            }
        }
        check_realm_discovery(name, r)?;
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
        .find(|(_, r)| r.kdc.is_empty() && r.kpasswd.is_empty() && !r.dns.kdc && !r.dns.kpasswd)
    {
        return Err(format!(
            "realm {name:?} has neither kdc nor kpasswd servers"
        ));
    }

    if let Some(m) = server.metrics_listen {
        if m.port() != 0 && listen.contains(&m) {
            return Err(format!(
                "metrics_listen {m} is also a listen address: give it its own"
            ));
        }
    }
    let p = &server.kkdcp_path;
    if p == Service::Kdc.default_path() || p == Service::Kpasswd.default_path() {
        return Err(format!("kkdcp_path {p:?} is a WebSocket path"));
    }

    // KDC discovery in DNS; the proxy's own addresses are never a
    // destination.
    let rules: discovery::Rules = loaded.settings(&file.discovery, &args.given)?;
    rules.validate()?;
    let discovery = discovery::Settings {
        rules,
        own: listen
            .iter()
            .copied()
            .chain(server.metrics_listen)
            .collect(),
    };

    Ok(Config {
        listen,
        transport,
        client_auth,
        realms,
        limits,
        metrics_listen: server.metrics_listen,
        kkdcp_path: server.kkdcp.then_some(server.kkdcp_path),
        kkdcp_require_target_domain: server.kkdcp_require_target_domain,
        allowed_origins: server.allowed_origins,
        trusted_proxies: server.trusted_proxies,
        log_format: server.log_format,
        audit_principals: server.audit_principals,
        throttle,
        discovery: Arc::new(discovery),
    })
}

/// A wildcard realm section (`*.SUFFIX`) must discover its servers in DNS:
/// a fixed list would send every sub-realm's requests to the same KDCs.
fn check_realm_discovery(name: &str, r: &RealmServers) -> Result<(), String> {
    let Some(suffix) = name.strip_prefix("*.") else {
        if name.contains('*') {
            return Err(format!(
                "[realms.{name:?}]: '*' is allowed only as a leading \"*.\" (a wildcard section)"
            ));
        }
        return Ok(());
    };
    if suffix.contains('*') || discovery::dns_name(suffix).is_err() {
        return Err(format!(
            "[realms.{name:?}]: a wildcard section is \"*.\" followed by a realm that is a DNS name"
        ));
    }
    if !r.kdc.is_empty() || !r.kpasswd.is_empty() || !r.dns.kdc {
        return Err(format!(
            "[realms.{name:?}]: a wildcard section must have kdc = \"dns\" (and kpasswd = \"dns\" \
             or none): a fixed server list cannot serve every sub-realm"
        ));
    }
    Ok(())
}

/// Groups command-line `(realm, server)` pairs by realm, keeping their
/// order, and makes each named realm's list exactly those servers.
/// A realm asks its KDCs over UDP first unless it says `udp = false`.
fn udp_default() -> bool {
    true
}

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
    use crate::settings::{docs_rows, Kind, Secs};
    use clap::Parser;

    fn args(list: &[&str]) -> Result<Args, String> {
        Args::try_parse_from(std::iter::once("krb5-wss-proxy").chain(list.iter().copied()))
            .map_err(|e| e.to_string())
    }

    fn from(list: &[&str], toml: &str) -> Result<Config, String> {
        let loaded = Loaded::parse(toml.into(), String::new(), Some("/etc/krb5-wss".into()))?;
        merge(args(list)?, &loaded)
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
        assert!(c.realms["OTHER.ORG"].udp, "UDP first is the default");
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
        assert!(c.kkdcp_require_target_domain);
        let off = ["--kkdcp-require-target-domain", "false"];
        assert!(!with(&off).unwrap().kkdcp_require_target_domain);
        let mut v = base.to_vec();
        v.extend(["--kkdcp-require-target-domain", "true"]);
        let file = "[server]\nkkdcp_require_target_domain = false";
        assert!(!from(&base, file).unwrap().kkdcp_require_target_domain);
        assert!(from(&v, file).unwrap().kkdcp_require_target_domain);
        let c = with(&["--udp", "A", "--allow-origin", "*"]).unwrap();
        assert!(c.realms["A"].udp);
        assert_eq!(c.allowed_origins, ["*"]);
        assert!(with(&["--udp", "B"]).unwrap_err().contains("--udp B"));
        assert!(!with(&["--tcp-only", "A"]).unwrap().realms["A"].udp);
        assert!(with(&["--udp", "A", "--tcp-only", "A"])
            .unwrap_err()
            .contains("choose one"));
        assert!(with(&["--tcp-only", "B"])
            .unwrap_err()
            .contains("--tcp-only B"));
        for bad in ["kdcproxy", "/kdc", "/a b", "/a?b"] {
            let err = with(&["--kkdcp-path", bad]).unwrap_err();
            assert!(err.contains("kkdcp"), "{bad}: {err}");
        }
        let err = from(&base, "[server]\nkkdcp_path = \"/kpasswd\"").unwrap_err();
        assert!(err.contains("WebSocket path"), "{err}");
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
            assert!(err.contains("unknown"), "{toml}: {err}");
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
        let mut a = args(&[]).unwrap();
        a.config = Some("/nonexistent/krb5-wss-proxy.toml".into());
        let err = Config::from_args(a).unwrap_err();
        assert!(err.contains("/nonexistent/krb5-wss-proxy.toml"), "{err}");
    }

    #[test]
    fn file_errors_name_the_line_and_key() {
        let err = from(TLS, "[limits]\n\nidle_timeout = \"forever\"").unwrap_err();
        assert!(
            err.contains("line 3") && err.contains("[limits] idle_timeout"),
            "{err}"
        );
        let err = from(TLS, "[throttle]\nmax_keyz = 5").unwrap_err();
        assert!(
            err.contains("line 2") && err.contains("known: enabled"),
            "{err}"
        );
        let err = from(TLS, "[server]\nplaintext = \"yes\"").unwrap_err();
        assert!(
            err.contains("[server] plaintext") && err.contains("true or false"),
            "{err}"
        );
    }

    /// The section `[name]` of a TOML text, up to the next section.
    fn section_text<'a>(text: &'a str, name: &str) -> &'a str {
        let head = format!("\n[{name}]\n");
        let start = text.find(&head).unwrap_or_else(|| panic!("no [{name}]")) + head.len();
        let rest = &text[start..];
        &rest[..rest.find("\n[").unwrap_or(rest.len())]
    }

    /// The example file names every setting in its section, and what it
    /// sets is the default, except the listener's addresses and TLS files,
    /// which have none.
    #[test]
    fn example_file_names_every_setting_at_its_default() {
        let text = include_str!("../krb5-wss-proxy.example.toml");
        for (d, _) in crate::cli::tables().iter().flatten() {
            let section = section_text(text, d.section);
            let set = format!("\n{} = ", d.key);
            let shown = format!("\n# {} = ", d.key);
            assert!(
                section.contains(&set)
                    || section.contains(&shown)
                    || section.starts_with(&set[1..]),
                "the example's [{}] lacks {}",
                d.section,
                d.key
            );
        }
        let l = Loaded::parse(text.into(), String::new(), None).unwrap();
        let none = Given::default();
        let server: ServerSettings = l.settings(&l.file.server, &none).unwrap();
        assert!(!server.listen.is_empty() && server.cert.is_some() && server.key.is_some());
        let expected = ServerSettings {
            listen: server.listen.clone(),
            cert: server.cert.clone(),
            key: server.key.clone(),
            ..ServerSettings::default()
        };
        assert_eq!(
            server, expected,
            "the example's [server] is not the defaults"
        );
        let limits: Limits = l.settings(&l.file.limits, &none).unwrap();
        assert_eq!(limits, Limits::default(), "the example's [limits]");
        let throttle: throttle::Settings = l.settings(&l.file.throttle, &none).unwrap();
        assert_eq!(
            throttle,
            throttle::Settings::default(),
            "the example's [throttle]"
        );
        let c = merge(Args::default(), &l).unwrap();
        assert!(!c.realms.is_empty());
        assert!(c.realms.values().all(|r| r.policy.is_open()));
    }

    /// Every default as `--help` and the docs write it reads back as the
    /// default, as a flag's value and as a file's.
    #[test]
    fn written_defaults_read_back() {
        fn check<T: Table + PartialEq + std::fmt::Debug>() {
            let d = T::default();
            for (def, shown) in crate::settings::described::<T>() {
                if shown == "none" {
                    continue;
                }
                // A list is shown "a, b"; its flag is given once per item.
                let texts: Vec<String> = match def.form {
                    crate::settings::Form::List => shown.split(", ").map(String::from).collect(),
                    _ => vec![shown.clone()],
                };
                let mut t = T::default();
                t.set_texts(def.key, &texts).unwrap();
                assert_eq!(t, d, "{} = {shown}", def.key);
            }
        }
        check::<ServerSettings>();
        check::<Limits>();
        check::<throttle::Settings>();
        check::<discovery::Rules>();
        assert_eq!(Secs::show(&Duration::from_secs(300)), "5m");
    }

    /// docs/proxy.md's settings table is rendered from the definitions;
    /// `KRB5_WSS_WRITE_DOCS=1 cargo test -p krb5-wss-proxy settings_table`
    /// rewrites it after a change.
    #[test]
    fn docs_settings_table_is_the_definitions() {
        let rows = [
            docs_rows::<ServerSettings>(),
            docs_rows::<Limits>(),
            docs_rows::<throttle::Settings>(),
            docs_rows::<discovery::Rules>(),
        ]
        .concat();
        let want = format!(
            "\n| flag | TOML key | default | meaning |\n|---|---|---|---|\n{}\n",
            rows.join("\n")
        );
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/proxy.md");
        let docs = std::fs::read_to_string(path).unwrap();
        let (begin, end) = (
            "<!-- settings table: begin -->",
            "<!-- settings table: end -->",
        );
        let (head, rest) = docs.split_once(begin).expect("begin marker");
        let (table, tail) = rest.split_once(end).expect("end marker");
        if std::env::var_os("KRB5_WSS_WRITE_DOCS").is_some() {
            std::fs::write(path, format!("{head}{begin}{want}{end}{tail}")).unwrap();
        } else {
            assert_eq!(
                table, want,
                "docs/proxy.md's settings table is not the code's: run \
                 KRB5_WSS_WRITE_DOCS=1 cargo test -p krb5-wss-proxy settings_table"
            );
        }
    }

    #[test]
    fn dns_realms_and_wildcards() {
        let base = ["--listen", "127.0.0.1:0", "--plaintext"];
        let c = from(
            &base,
            "[realms.\"A.ORG\"]\nkdc = \"dns\"\nkpasswd = \"dns\"\n\
             [realms.\"*.B.ORG\"]\nkdc = \"dns\"\nudp = false\n\
             [realms.\"*.C.B.ORG\"]\nkdc = \"dns\"\n\
             [realms.\"X.B.ORG\"]\nkdc = [\"k\"]\n",
        )
        .unwrap();
        let a = &c.realms["A.ORG"];
        assert!(a.discovers(Service::Kdc) && a.discovers(Service::Kpasswd));
        assert!(a.kdc.is_empty());
        // Exact wins; then the longest wildcard suffix.
        assert_eq!(c.realm("X.B.ORG").unwrap().kdc.len(), 1);
        assert!(!c.realm("B.ORG").unwrap().udp);
        assert!(c.realm("D.C.B.ORG").unwrap().udp);
        assert!(c.realm("C.B.ORG").unwrap().udp);
        assert!(!c.realm("Q.B.ORG").unwrap().udp);
        assert!(c.realm("X.B.ORG").unwrap().udp, "the default");
        for no in [
            "b.org",
            "EVILB.ORG",
            "B.ORG.EVIL",
            "A.ORG.X",
            "OTHER",
            "*.B.ORG",
            "*.C.B.ORG",
        ] {
            assert!(c.realm(no).is_none(), "{no}");
        }
        // A discovered realm's exchange bound includes the DNS deadline.
        assert!(c.max_exchange_time() >= c.discovery.timeout);
        // --realm R=dns, alone for its realm.
        let mut v = base.to_vec();
        v.extend([
            "--realm",
            "A.ORG=dns",
            "--kpasswd",
            "A.ORG=dns",
            "--realm",
            "B.ORG=dns:88",
        ]);
        let c = from(&v, "").unwrap();
        assert!(c.realms["A.ORG"].dns.kdc && c.realms["A.ORG"].kdc.is_empty());
        assert!(c.realms["A.ORG"].dns.kpasswd && c.realms["A.ORG"].kpasswd.is_empty());
        assert_eq!(c.realms["B.ORG"].kdc[0].to_string(), "dns:88");
        let mut v = base.to_vec();
        v.extend(["--realm", "A.ORG=dns", "--realm", "A.ORG=k"]);
        assert!(from(&v, "").unwrap_err().contains("not both"));
        // --realm replaces the file's "dns".
        let mut v = base.to_vec();
        v.extend(["--realm", "A.ORG=k"]);
        let c = from(&v, "[realms.\"A.ORG\"]\nkdc = \"dns\"\n").unwrap();
        assert!(!c.realms["A.ORG"].dns.kdc && c.realms["A.ORG"].kdc.len() == 1);

        for (toml, want) in [
            (
                "[realms.\"*.B.ORG\"]\nkdc = [\"k\"]\n",
                "wildcard section must have kdc = \"dns\"",
            ),
            (
                "[realms.\"*.B.ORG\"]\nkpasswd = \"dns\"\n",
                "wildcard section must have",
            ),
            (
                "[realms.\"*.B.ORG\"]\nkdc = \"dns\"\nkpasswd = [\"k\"]\n",
                "wildcard section must have",
            ),
            (
                "[realms.\"B.*.ORG\"]\nkdc = \"dns\"\n",
                "'*' is allowed only",
            ),
            (
                "[realms.\"*B.ORG\"]\nkdc = \"dns\"\n",
                "'*' is allowed only",
            ),
            ("[realms.\"*.*.ORG\"]\nkdc = \"dns\"\n", "DNS name"),
            (
                "[realms.\"A\"]\nkdc = \"kdc1\"\n",
                "expected a list of servers",
            ),
            (
                "[realms.\"A\"]\nkdc = \"DNS\"\n",
                "expected a list of servers",
            ),
            (
                "[realms.\"A\"]\nkdc = \"dns\"\n[discovery]\nallow_ports = []\n",
                "allow_ports is empty",
            ),
            (
                "[realms.\"A\"]\nkdc = \"dns\"\n[discovery]\nallow_ports = [0]\n",
                "allow_ports",
            ),
            (
                "[realms.\"A\"]\nkdc = \"dns\"\n[discovery]\nallow_ports = [70000]\n",
                "allow_ports",
            ),
            (
                "[realms.\"A\"]\nkdc = \"dns\"\n[discovery]\nmin_ttl = \"2h\"\n",
                "min_ttl",
            ),
            (
                "[realms.\"A\"]\nkdc = \"dns\"\n[discovery]\nallow_networks = [\"10/8\"]\n",
                "allow_networks",
            ),
            (
                "[realms.\"A\"]\nkdc = \"dns\"\n[discovery]\nnameservers = [\"dns.example\"]\n",
                "nameservers",
            ),
            (
                "[realms.\"A\"]\nkdc = \"dns\"\n[discovery]\nresolver = \"x\"\n",
                "unknown key",
            ),
        ] {
            let err = from(&base, toml).unwrap_err();
            assert!(err.contains(want), "{toml}: {err}");
        }
        let c = from(
            &base,
            "[realms.\"A\"]\nkdc = \"dns\"\n[discovery]\nnameservers = [\"192.0.2.53\", \"[2001:db8::53]:5353\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.discovery.nameservers,
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[2001:db8::53]:5353".parse().unwrap()
            ]
        );
        assert_eq!(c.discovery.own, vec!["127.0.0.1:0".parse().unwrap()]);
    }
}
