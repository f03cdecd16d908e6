//! The validated configuration: [`Config::from_settings`] turns the
//! effective [`Settings`] into addresses, realms with parsed URLs, trust
//! anchors checked, and bounds, applying [`defaults`] to what is unset.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use krb5_wss::config::{parse_duration, RealmConfig, MAX_TIMEOUT};
use krb5_wss::url::WssUrl;
use krb5_wss_proto::{DEFAULT_KDC_PATH, DEFAULT_KPASSWD_PATH};

use crate::cidr::Cidr;
use crate::settings::{defaults, Settings};

/// One realm's URLs, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmUrls {
    /// KDC URLs, in order.
    pub kdc: Vec<WssUrl>,
    /// kpasswd URLs, in order (explicit or derived).
    pub kpasswd: Vec<WssUrl>,
}

/// The options every realm shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `http_anchors` forms; empty: the system store.
    pub anchors: Vec<String>,
    /// ws:// permitted.
    pub allow_plaintext: bool,
    /// `wss_web_proxy`.
    pub web_proxy: Option<String>,
    /// Per-URL connect bound.
    pub connect_timeout: Duration,
    /// Per-exchange bound.
    pub request_timeout: Duration,
    /// Client certificates by realm (`wss_client_certificate`,
    /// `wss_client_key`).
    pub client_identities: BTreeMap<String, krb5_wss::tls::Identity>,
}

impl Options {
    /// The plugin core's realm configuration for these URLs.
    pub fn realm_config(&self, realm: &str, kdc: Vec<WssUrl>, kpasswd: Vec<WssUrl>) -> RealmConfig {
        RealmConfig {
            realm: realm.to_string(),
            kdc,
            primary: Vec::new(),
            kpasswd,
            kpasswd_direct: false,
            anchors: self.anchors.clone(),
            allow_plaintext: self.allow_plaintext,
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            web_proxy: self.web_proxy.clone(),
            client_identity: self.client_identities.get(realm).cloned(),
            ignored: Vec::new(),
            source: "krb5-wss-relay".into(),
        }
    }
}

/// The configuration the relay runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// KDC addresses to bind (UDP and TCP each).
    pub listen: Vec<SocketAddr>,
    /// kpasswd addresses to bind.
    pub kpasswd_listen: Vec<SocketAddr>,
    /// Realms with configured URLs, by exact name.
    pub realms: BTreeMap<String, RealmUrls>,
    /// Realms whose URLs come from DNS.
    pub discover: Vec<String>,
    /// Shared realm options.
    pub options: Options,
    /// Sources served besides loopback.
    pub allow_clients: Vec<Cidr>,
    /// Bound on a TCP client sending its record.
    pub client_timeout: Duration,
    /// Largest UDP reply.
    pub udp_reply_limit: usize,
    /// Largest TCP record.
    pub max_request: usize,
    /// Requests and connections at once.
    pub max_concurrent: usize,
}

fn duration(key: &str, value: Option<&str>, default: Duration) -> Result<Duration, String> {
    let Some(v) = value else {
        return Ok(default);
    };
    match parse_duration(v) {
        Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => Ok(d),
        _ => Err(format!(
            "{key}: \"{v}\" is not a duration between 1ms and 300s (examples: 5, 5s, 500ms)"
        )),
    }
}

fn realm_url(key: &str, entry: &str) -> Result<(String, String), String> {
    let (realm, url) = entry
        .split_once('=')
        .ok_or_else(|| format!("{key}: \"{entry}\" is not REALM=URL"))?;
    let realm = realm.trim();
    if realm.is_empty() || realm.len() > krb5_wss_proto::kerberos::MAX_REALM_LEN {
        return Err(format!("{key}: \"{entry}\": bad realm name"));
    }
    Ok((realm.to_string(), url.trim().to_string()))
}

fn parse_url(key: &str, url: &str, path: &str, plaintext: bool) -> Result<WssUrl, String> {
    let u = WssUrl::parse(url, path).map_err(|e| format!("{key}: \"{url}\": {e}"))?;
    if !u.tls && !plaintext {
        return Err(format!(
            "{key}: \"{url}\" has no TLS (ws://); use wss://, or set allow_plaintext"
        ));
    }
    Ok(u)
}

/// The realms' client certificates: `wss_client_certificate` and
/// `wss_client_key` entries (`REALM=FILE`), at most one of each per realm,
/// both or neither, loaded and checked (errors name the realm, the key,
/// the file and the cause, as the plugin's do).
fn client_identities(s: &Settings) -> Result<BTreeMap<String, krb5_wss::tls::Identity>, String> {
    use krb5_wss::config::{client_identity, CLIENT_CERT_KEY, CLIENT_KEY_KEY};
    let mut files: BTreeMap<String, [Option<String>; 2]> = BTreeMap::new();
    for (i, (key, entries)) in [
        (CLIENT_CERT_KEY, &s.wss_client_certificate),
        (CLIENT_KEY_KEY, &s.wss_client_key),
    ]
    .into_iter()
    .enumerate()
    {
        for entry in entries {
            let (realm, file) = realm_url(key, entry)?;
            let slot = files.entry(realm.clone()).or_default();
            match slot.get_mut(i) {
                Some(v @ None) => *v = Some(file),
                _ => return Err(format!("{key}: realm {realm} is given more than once")),
            }
        }
    }
    let mut out = BTreeMap::new();
    for (realm, [cert, key]) in files {
        let value = |k: &str| {
            if k == CLIENT_CERT_KEY {
                cert.clone()
            } else if k == CLIENT_KEY_KEY {
                key.clone()
            } else {
                None
            }
        };
        let identity = client_identity(value)
            .map_err(|(k, reason)| format!("realm {realm}: {k}: {reason}"))?;
        if let Some(id) = identity {
            out.insert(realm, id);
        }
    }
    Ok(out)
}

/// True when `ip` is loopback (an IPv4-mapped loopback too).
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_loopback(),
        IpAddr::V6(a) => a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

impl Config {
    /// Validates `s` (the effective settings).
    pub fn from_settings(s: &Settings) -> Result<Config, String> {
        let allow_plaintext = s.allow_plaintext.unwrap_or(defaults::ALLOW_PLAINTEXT);
        for a in &s.anchors {
            krb5_wss::tls::Anchor::parse(a).map_err(|e| format!("anchors: {e}"))?;
        }
        if let Some(p) = &s.wss_web_proxy {
            krb5_wss::webproxy::parse_proxy(p, "wss_web_proxy")?;
        }
        let client_identities = client_identities(s)?;
        let options = Options {
            client_identities,
            anchors: s.anchors.iter().map(|a| a.trim().to_string()).collect(),
            allow_plaintext,
            web_proxy: s.wss_web_proxy.clone().filter(|p| !p.trim().is_empty()),
            connect_timeout: duration(
                "connect_timeout",
                s.connect_timeout.as_deref(),
                defaults::CONNECT_TIMEOUT,
            )?,
            request_timeout: duration(
                "request_timeout",
                s.request_timeout.as_deref(),
                defaults::REQUEST_TIMEOUT,
            )?,
        };
        let mut kdc: BTreeMap<String, Vec<WssUrl>> = BTreeMap::new();
        for entry in &s.realm {
            let (realm, url) = realm_url("realm", entry)?;
            let u = parse_url("realm", &url, DEFAULT_KDC_PATH, allow_plaintext)?;
            let list = kdc.entry(realm).or_default();
            if !list.contains(&u) {
                list.push(u);
            }
        }
        let mut kpasswd: BTreeMap<String, Vec<WssUrl>> = BTreeMap::new();
        for entry in &s.kpasswd {
            let (realm, url) = realm_url("kpasswd", entry)?;
            let u = parse_url("kpasswd", &url, DEFAULT_KPASSWD_PATH, allow_plaintext)?;
            let list = kpasswd.entry(realm).or_default();
            if !list.contains(&u) {
                list.push(u);
            }
        }
        let mut realms = BTreeMap::new();
        let names: Vec<String> = kdc.keys().chain(kpasswd.keys()).cloned().collect();
        for name in names {
            if realms.contains_key(&name) {
                continue;
            }
            let k = kdc.get(&name).cloned().unwrap_or_default();
            let explicit = kpasswd.get(&name).cloned().unwrap_or_default();
            // The plugin's derivation when no kpasswd URL is given.
            let p = options
                .realm_config(&name, k.clone(), explicit)
                .kpasswd_urls();
            realms.insert(name, RealmUrls { kdc: k, kpasswd: p });
        }
        let mut discover = Vec::new();
        for r in &s.discover {
            let r = r.trim().to_string();
            if realms.contains_key(&r) {
                return Err(format!(
                    "discover: realm {r} also has URLs configured; give one or the other"
                ));
            }
            if r.is_empty() {
                return Err("discover: empty realm name".into());
            }
            if !discover.contains(&r) {
                discover.push(r);
            }
        }
        let allow_clients = s
            .allow_clients
            .iter()
            .map(|c| Cidr::parse(c.trim()).map_err(|e| format!("allow_clients: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let config = Config {
            listen: s.listen.clone(),
            kpasswd_listen: s.kpasswd_listen.clone(),
            realms,
            discover,
            options,
            allow_clients,
            client_timeout: duration(
                "client_timeout",
                s.client_timeout.as_deref(),
                defaults::CLIENT_TIMEOUT,
            )?,
            udp_reply_limit: s.udp_reply_limit.unwrap_or(defaults::UDP_REPLY_LIMIT),
            max_request: s.max_request.unwrap_or(defaults::MAX_REQUEST),
            max_concurrent: s.max_concurrent.unwrap_or(defaults::MAX_CONCURRENT),
        };
        if config.udp_reply_limit < 200 || config.udp_reply_limit > 65_507 {
            return Err(format!(
                "udp_reply_limit: {} is not between 200 and 65507 bytes",
                config.udp_reply_limit
            ));
        }
        if config.max_request < 1024 || config.max_request > 16 * 1024 * 1024 {
            return Err(format!(
                "max_request: {} is not between 1024 and 16777216 bytes",
                config.max_request
            ));
        }
        if config.max_concurrent == 0 || config.max_concurrent > 4096 {
            return Err(format!(
                "max_concurrent: {} is not between 1 and 4096",
                config.max_concurrent
            ));
        }
        if let Some(r) = config
            .options
            .client_identities
            .keys()
            .find(|r| !config.realms.contains_key(*r) && !config.discover.contains(*r))
        {
            return Err(format!(
                "wss_client_certificate: realm {r} is neither configured (--realm) nor discovered"
            ));
        }
        if config.realms.is_empty() && config.discover.is_empty() {
            return Err("no realm: give --realm REALM=URL or --discover REALM".into());
        }
        for a in config.listen.iter().chain(&config.kpasswd_listen) {
            config.check_listen(*a)?;
        }
        Ok(config)
    }

    /// Refuses a non-loopback listen address unless clients are allowed.
    pub fn check_listen(&self, addr: SocketAddr) -> Result<(), String> {
        if !is_loopback(addr.ip()) && self.allow_clients.is_empty() {
            return Err(format!(
                "listen address {addr} is not a loopback address: give --allow-clients CIDR,... \
                 (the sources to serve besides loopback)"
            ));
        }
        Ok(())
    }

    /// True when requests from `ip` are served: loopback, or a source in
    /// `allow_clients`.
    pub fn allows(&self, ip: IpAddr) -> bool {
        is_loopback(ip) || self.allow_clients.iter().any(|c| c.contains(ip))
    }

    /// Checks that the trust anchors load (what `--check-config` and a
    /// reload verify before going live).
    pub fn check_anchors(&self) -> Result<(), String> {
        krb5_wss::tls::client_config(&self.options.anchors, None)?;
        for (realm, id) in &self.options.client_identities {
            krb5_wss::tls::client_config(&self.options.anchors, Some(id))
                .map_err(|e| format!("realm {realm}: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use clap::Parser;

    fn cfg(args: &[&str]) -> Result<Config, String> {
        let mut v = vec!["krb5-wss-relay"];
        v.extend_from_slice(args);
        Config::from_settings(&Settings::try_parse_from(v).unwrap())
    }

    /// The configuration of the empty settings but for `realm`.
    fn defaults_with(realm: &str) -> Config {
        Config::from_settings(&Settings {
            realm: vec![realm.into()],
            ..Settings::default()
        })
        .unwrap()
    }

    #[test]
    fn defaults_apply() {
        let c = defaults_with("R=wss://p.example/kdc");
        assert_eq!(c.options.connect_timeout, defaults::CONNECT_TIMEOUT);
        assert_eq!(c.options.request_timeout, defaults::REQUEST_TIMEOUT);
        assert_eq!(c.client_timeout, defaults::CLIENT_TIMEOUT);
        assert_eq!(c.udp_reply_limit, defaults::UDP_REPLY_LIMIT);
        assert_eq!(c.max_request, defaults::MAX_REQUEST);
        assert_eq!(c.max_concurrent, defaults::MAX_CONCURRENT);
        assert!(!c.options.allow_plaintext);
        assert!(c.options.anchors.is_empty() && c.options.web_proxy.is_none());
        assert!(c.listen.is_empty() && c.kpasswd_listen.is_empty());
        assert!(c.allow_clients.is_empty() && c.discover.is_empty());
    }

    #[test]
    fn kpasswd_is_derived_as_the_plugin_does() {
        let c = cfg(&[
            "--realm",
            "R=wss://a.example/kdc",
            "--realm",
            "R=wss://b.example:8443/x/kdc",
        ])
        .unwrap();
        let r = &c.realms["R"];
        assert_eq!(r.kdc.len(), 2);
        let p: Vec<String> = r.kpasswd.iter().map(|u| u.to_string()).collect();
        assert_eq!(
            p,
            ["wss://a.example/kpasswd", "wss://b.example:8443/x/kpasswd"]
        );
        let c = cfg(&[
            "--realm",
            "R=wss://a.example/kdc",
            "--kpasswd",
            "R=wss://pw.example/pw",
        ])
        .unwrap();
        assert_eq!(c.realms["R"].kpasswd[0].to_string(), "wss://pw.example/pw");
    }

    #[test]
    fn client_certificates_per_realm() {
        let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../src/tls/testdata");
        let cert = format!("R={data}/client.pem");
        let key = format!("R={data}/client.key");
        let c = cfg(&[
            "--realm",
            "R=wss://a.example/kdc",
            "--realm",
            "S=wss://b.example/kdc",
            "--wss-client-certificate",
            &cert,
            "--wss-client-key",
            &key,
        ])
        .unwrap();
        let r = c.options.realm_config("R", vec![], vec![]);
        assert_eq!(r.client_identity.unwrap().key.to_str(), Some(&key[2..]));
        assert!(c
            .options
            .realm_config("S", vec![], vec![])
            .client_identity
            .is_none());
        let base = ["--realm", "R=wss://a.example/kdc"];
        let with = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            cfg(&v).unwrap_err()
        };
        let e = with(&["--wss-client-certificate", &cert]);
        assert!(e.starts_with("realm R: wss_client_key: "), "{e}");
        let e = with(&[
            "--wss-client-certificate",
            &cert,
            "--wss-client-certificate",
            &cert,
        ]);
        assert!(e.contains("more than once"), "{e}");
        let e = with(&["--wss-client-key", "R"]);
        assert!(e.contains("REALM="), "{e}");
    }

    #[test]
    fn mistakes_are_named() {
        let e = cfg(&["--realm", "R"]).unwrap_err();
        assert!(e.contains("REALM=URL"), "{e}");
        let e = cfg(&["--realm", "R=ws://a/kdc"]).unwrap_err();
        assert!(e.contains("no TLS"), "{e}");
        assert!(cfg(&["--realm", "R=ws://a/kdc", "--allow-plaintext"]).is_ok());
        let e = cfg(&["--realm", "R=wss://a/kdc", "--anchors", "/x.pem"]).unwrap_err();
        assert!(e.contains("anchors"), "{e}");
        let e = cfg(&["--realm", "R=wss://a/kdc", "--connect-timeout", "1h"]).unwrap_err();
        assert!(e.contains("connect_timeout"), "{e}");
        let e = cfg(&[]).unwrap_err();
        assert!(e.contains("no realm"), "{e}");
        let e = cfg(&["--realm", "R=wss://a/kdc", "--wss-web-proxy", "socks5://x"]).unwrap_err();
        assert!(e.contains("only http://"), "{e}");
    }

    #[test]
    fn non_loopback_listen_needs_allowed_clients() {
        let e = cfg(&["--realm", "R=wss://a/kdc", "--listen", "0.0.0.0:88"]).unwrap_err();
        assert!(e.contains("--allow-clients"), "{e}");
        let c = cfg(&[
            "--realm",
            "R=wss://a/kdc",
            "--listen",
            "0.0.0.0:88",
            "--allow-clients",
            "10.0.0.0/8",
        ])
        .unwrap();
        assert!(c.allows("10.1.2.3".parse().unwrap()));
        assert!(c.allows("127.0.0.1".parse().unwrap()));
        assert!(c.allows("::1".parse().unwrap()));
        assert!(!c.allows("192.168.0.1".parse().unwrap()));
        assert!(cfg(&["--realm", "R=wss://a/kdc", "--listen", "[::1]:88"]).is_ok());
    }

    /// The example file parses to exactly the defaults plus what it sets.
    #[test]
    fn example_file_is_defaults_plus_its_settings() {
        let text = include_str!("../krb5-wss-relay.example.toml");
        let c = Config::from_settings(&Settings::from_toml(text).unwrap()).unwrap();
        let mut want = defaults_with("EXAMPLE.COM=wss://kdc1.example.com/kdc");
        want.listen = vec!["127.0.0.1:88".parse().unwrap()];
        want.kpasswd_listen = vec!["127.0.0.1:464".parse().unwrap()];
        want.realms.insert(
            "EXAMPLE.COM".into(),
            RealmUrls {
                kdc: vec![
                    WssUrl::parse("wss://kdc1.example.com/kdc", "/kdc").unwrap(),
                    WssUrl::parse("wss://kdc2.example.com/kdc", "/kdc").unwrap(),
                ],
                kpasswd: vec![WssUrl::parse("wss://kdc1.example.com/kpasswd", "/kpasswd").unwrap()],
            },
        );
        want.discover = vec!["DNS.EXAMPLE.ORG".into()];
        want.options.anchors = vec!["FILE:/etc/ssl/example-ca.pem".into()];
        want.options.web_proxy = Some("http://proxy.example.com:3128".into());
        assert_eq!(c, want);
    }
}
