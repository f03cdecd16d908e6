//! A realm's krb5-wss configuration, read from the krb5 profile.
//!
//! The plugin reads the same `[realms]` stanza libkrb5 does, through the
//! context's profile (so `KRB5_CONFIG`, `include` and `includedir` all work
//! as usual). A realm belongs to krb5-wss when one of its `kdc`,
//! `primary_kdc`/`master_kdc` or `kpasswd_server` lines holds a `wss://` (or
//! `ws://`) URL:
//!
//! ```text
//! [realms]
//!     EXAMPLE.COM = {
//!         kdc = wss://kdc.example.com/kdc
//!         kpasswd_server = wss://kdc.example.com/kpasswd
//!         http_anchors = FILE:/etc/ssl/example-ca.pem
//!     }
//! ```
//!
//! Options of our own, in the realm's stanza (timeouts also in
//! `[libdefaults]`): `wss_connect_timeout` (default 5 s),
//! `wss_request_timeout` (default 15 s), `wss_allow_plaintext` (default
//! false; permits `ws://` URLs), `wss_dns_discovery` (realm, else
//! `[libdefaults]`; default false: whether a realm with no `kdc` lines is
//! looked for in DNS, see [`dns_lookup_applies`]), `wss_web_proxy` (realm,
//! else `[libdefaults]`: `http://[user:pass@]host:port`, the web proxy to
//! reach the URLs through, used before the `https_proxy` family of
//! environment variables; `no_proxy` still applies). `http_anchors` is MIT's
//! own option for its HTTPS transport, with the same `FILE:`, `DIR:` and
//! `ENV:` forms. Which realms are ours is decided by the owner crate
//! (`owner/`), shared with the front module.

use std::ffi::{CStr, CString};
use std::fmt;
use std::time::Duration;

use krb5_wss_owner::ProfileView;

use krb5_wss_proto::{DEFAULT_KDC_PATH, DEFAULT_KPASSWD_PATH};

use crate::discovery::Discovered;
use crate::url::{is_websocket_url, WssUrl};

/// Read access to a krb5 profile (implemented over libkrb5 in `ffi`, and
/// over a map in tests).
pub trait Profile {
    /// All values of the relation named by `path` (e.g. `["realms",
    /// "EXAMPLE.COM", "kdc"]`), in file order; empty when there are none.
    fn values(&self, path: &[&str]) -> Vec<String>;
}

/// Default bound on TCP connect + TLS + WebSocket handshake, per URL.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default bound on one exchange (request sent to reply received).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest timeout accepted in configuration.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// The krb5.conf relations that may carry KDC URLs.
const KDC_KEY: &str = "kdc";
const PRIMARY_KEYS: [&str; 2] = ["primary_kdc", "master_kdc"];
const KPASSWD_KEY: &str = "kpasswd_server";
/// The web proxy to use before the environment's (realm, else libdefaults).
pub const WEB_PROXY_KEY: &str = "wss_web_proxy";
/// URLs the recv hook retries over when direct delivery failed.
const FALLBACK_KEY: &str = "wss_fallback_kdc";

/// A realm served over WebSockets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealmConfig {
    /// The realm name, as libkrb5 asked for it.
    pub realm: String,
    /// URLs from `kdc` lines, in order.
    pub kdc: Vec<WssUrl>,
    /// URLs from `primary_kdc` (or the older `master_kdc`) lines.
    pub primary: Vec<WssUrl>,
    /// URLs from `kpasswd_server` lines; when there are none, derived from
    /// the primary (else KDC) URLs by replacing the last path segment with
    /// `kpasswd` (see [`RealmConfig::kpasswd_urls`]).
    pub kpasswd: Vec<WssUrl>,
    /// True when `kpasswd_server` lines exist but none is a WebSocket URL:
    /// the administrator chose a direct kpasswd server, so kpasswd lookups
    /// are left to libkrb5.
    pub kpasswd_direct: bool,
    /// `http_anchors` values; empty means the system trust store.
    pub anchors: Vec<String>,
    /// Whether `ws://` (no TLS) URLs are permitted.
    pub allow_plaintext: bool,
    /// Bound on connect + TLS + WebSocket handshake, per URL.
    pub connect_timeout: Duration,
    /// Bound on one exchange.
    pub request_timeout: Duration,
    /// `wss_web_proxy`: the web proxy to use before the environment's.
    pub web_proxy: Option<String>,
    /// `wss_client_certificate` and `wss_client_key`: the TLS client
    /// certificate to present (realm, else `[libdefaults]`).
    pub client_identity: Option<crate::tls::Identity>,
    /// Non-URL entries on the same lines, which krb5-wss ignores.
    pub ignored: Vec<String>,
    /// Where the URLs came from ("krb5.conf", or the DNS records).
    pub source: String,
}

impl RealmConfig {
    /// A configuration with `options` and no URL yet.
    fn empty(realm: &str, options: Options, source: &str) -> RealmConfig {
        RealmConfig {
            realm: realm.to_string(),
            kdc: Vec::new(),
            primary: Vec::new(),
            kpasswd: Vec::new(),
            kpasswd_direct: false,
            anchors: options.anchors,
            allow_plaintext: options.allow_plaintext,
            connect_timeout: options.connect_timeout,
            request_timeout: options.request_timeout,
            web_proxy: options.web_proxy,
            client_identity: options.client_identity,
            ignored: Vec::new(),
            source: source.to_string(),
        }
    }

    /// The URLs for kpasswd: explicit, else derived (see the field docs).
    pub fn kpasswd_urls(&self) -> Vec<WssUrl> {
        if !self.kpasswd.is_empty() {
            return self.kpasswd.clone();
        }
        let base = if self.primary.is_empty() {
            &self.kdc
        } else {
            &self.primary
        };
        let mut out: Vec<WssUrl> = Vec::new();
        for u in base {
            let derived = u.with_last_segment("kpasswd");
            if !out.contains(&derived) {
                out.push(derived);
            }
        }
        out
    }
}

/// A configuration mistake, reported to the user through libkrb5's error
/// message (kinit prints it) and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The realm whose stanza is wrong.
    pub realm: String,
    /// The relation (`kdc`, `http_anchors`, ...).
    pub key: String,
    /// What is wrong, quoting the value.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "krb5-wss: realm {}: {}: {}",
            self.realm, self.key, self.reason
        )
    }
}

impl std::error::Error for ConfigError {}

/// Values of one relation in the realm's stanza.
fn realm_values(profile: &dyn Profile, realm: &str, key: &str) -> Vec<String> {
    profile.values(&["realms", realm, key])
}

/// True when the realm names a WebSocket URL on any line krb5-wss reads.
///
/// This is the cheap test run for every lookup: a few in-memory profile
/// queries, no I/O. The rule is the owner crate's, shared with the front
/// module, so the two cannot disagree.
pub fn realm_is_ours(profile: &dyn Profile, realm: &str) -> bool {
    with_realm(realm, |r| {
        krb5_wss_owner::realm_names_websocket_url(&OwnerView(profile), r)
    })
}

/// Runs `f` on the realm name as a C string; false for a name with a NUL
/// (which libkrb5 cannot pass).
fn with_realm(realm: &str, f: impl FnOnce(&CStr) -> bool) -> bool {
    CString::new(realm).is_ok_and(|r| f(&r))
}

/// A [`Profile`] seen through the owner crate's allocation-free trait.
struct OwnerView<'a>(&'a dyn Profile);

impl ProfileView for OwnerView<'_> {
    fn for_each_value(
        &self,
        section: &CStr,
        name1: &CStr,
        name2: Option<&CStr>,
        f: &mut dyn FnMut(&[u8]),
    ) -> usize {
        let names = [Some(section), Some(name1), name2];
        let mut path: Vec<&str> = Vec::with_capacity(3);
        for name in names.into_iter().flatten() {
            match name.to_str() {
                Ok(n) => path.push(n),
                Err(_) => return 0,
            }
        }
        let values = self.0.values(&path);
        for v in &values {
            f(v.as_bytes());
        }
        values.len()
    }
}

/// Loads the realm's configuration; `Ok(None)` when the realm is not ours.
pub fn load(profile: &dyn Profile, realm: &str) -> Result<Option<RealmConfig>, ConfigError> {
    if !realm_is_ours(profile, realm) {
        return Ok(None);
    }
    let options = Options::load(profile, realm)?;
    let mut ignored = Vec::new();
    let mut list = |keys: &[&str], path: &str| {
        url_list(
            profile,
            realm,
            keys,
            path,
            options.allow_plaintext,
            &mut ignored,
        )
    };
    let kdc = list(&[KDC_KEY], DEFAULT_KDC_PATH)?;
    let primary = list(&PRIMARY_KEYS, DEFAULT_KDC_PATH)?;
    let kpasswd = list(&[KPASSWD_KEY], DEFAULT_KPASSWD_PATH)?;
    let kpasswd_direct =
        kpasswd.is_empty() && !realm_values(profile, realm, KPASSWD_KEY).is_empty();
    Ok(Some(RealmConfig {
        kdc,
        primary,
        kpasswd,
        kpasswd_direct,
        ignored,
        ..RealmConfig::empty(realm, options, "krb5.conf")
    }))
}

/// The realm's own options (everything but the URLs).
struct Options {
    anchors: Vec<String>,
    allow_plaintext: bool,
    connect_timeout: Duration,
    request_timeout: Duration,
    web_proxy: Option<String>,
    client_identity: Option<crate::tls::Identity>,
}

/// The client certificate options (realm, else `[libdefaults]`).
pub const CLIENT_CERT_KEY: &str = "wss_client_certificate";
/// The client key option.
pub const CLIENT_KEY_KEY: &str = "wss_client_key";

/// Reads `wss_client_certificate` and `wss_client_key` (realm, else
/// `[libdefaults]`) through `value`, and checks that both are set or
/// neither, and that the files load and belong together: a realm whose
/// certificate cannot be presented fails closed, naming the file and the
/// cause, rather than connecting without it. Returns the failing key and
/// the reason on error.
pub fn client_identity(
    value: impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::tls::Identity>, (&'static str, String)> {
    let get = |k: &str| {
        value(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let identity = match (get(CLIENT_CERT_KEY), get(CLIENT_KEY_KEY)) {
        (None, None) => return Ok(None),
        (Some(cert), None) => {
            return Err((
                CLIENT_KEY_KEY,
                format!("{CLIENT_CERT_KEY} {cert} is set but {CLIENT_KEY_KEY} is not: give the certificate's key too"),
            ))
        }
        (None, Some(key)) => {
            return Err((
                CLIENT_CERT_KEY,
                format!("{CLIENT_KEY_KEY} {key} is set but {CLIENT_CERT_KEY} is not: give the certificate too"),
            ))
        }
        (Some(cert), Some(key)) => crate::tls::Identity {
            cert: cert.into(),
            key: key.into(),
        },
    };
    crate::tls::load_identity(&identity).map_err(|e| (CLIENT_CERT_KEY, e))?;
    Ok(Some(identity))
}

impl Options {
    fn load(profile: &dyn Profile, realm: &str) -> Result<Options, ConfigError> {
        let anchors = realm_values(profile, realm, "http_anchors")
            .into_iter()
            .map(|a| a.trim().to_string())
            .collect::<Vec<_>>();
        for a in &anchors {
            crate::tls::Anchor::parse(a).map_err(|reason| ConfigError {
                realm: realm.to_string(),
                key: "http_anchors".into(),
                reason,
            })?;
        }
        let web_proxy = option_value(profile, realm, WEB_PROXY_KEY)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        if let Some(v) = &web_proxy {
            crate::webproxy::parse_proxy(v, WEB_PROXY_KEY).map_err(|reason| ConfigError {
                realm: realm.to_string(),
                key: WEB_PROXY_KEY.into(),
                reason,
            })?;
        }
        let client_identity =
            client_identity(|k| option_value(profile, realm, k)).map_err(|(key, reason)| {
                ConfigError {
                    realm: realm.to_string(),
                    key: key.into(),
                    reason,
                }
            })?;
        Ok(Options {
            web_proxy,
            client_identity,
            anchors,
            allow_plaintext: bool_option(profile, realm, "wss_allow_plaintext", false)?,
            connect_timeout: duration_option(
                profile,
                realm,
                "wss_connect_timeout",
                DEFAULT_CONNECT_TIMEOUT,
            )?,
            request_timeout: duration_option(
                profile,
                realm,
                "wss_request_timeout",
                DEFAULT_REQUEST_TIMEOUT,
            )?,
        })
    }
}

/// The realm's `wss_fallback_kdc` URLs, for the recv hook's fallback mode
/// (as `kdc` in the result); `Ok(None)` when it has none.
pub fn load_fallback(
    profile: &dyn Profile,
    realm: &str,
) -> Result<Option<RealmConfig>, ConfigError> {
    if realm_values(profile, realm, FALLBACK_KEY).is_empty() {
        return Ok(None);
    }
    let options = Options::load(profile, realm)?;
    let mut ignored = Vec::new();
    let kdc = url_list(
        profile,
        realm,
        &[FALLBACK_KEY],
        DEFAULT_KDC_PATH,
        options.allow_plaintext,
        &mut ignored,
    )?;
    if !ignored.is_empty() {
        return Err(ConfigError {
            realm: realm.to_string(),
            key: FALLBACK_KEY.into(),
            reason: format!("only wss:// URLs belong here, not {}", ignored.join(", ")),
        });
    }
    Ok(Some(RealmConfig {
        kdc,
        kpasswd_direct: true,
        ..RealmConfig::empty(realm, options, FALLBACK_KEY)
    }))
}

/// True when the realm's KDCs are to be looked for in DNS (wss records
/// first): the realm has no `kdc` lines, `wss_dns_discovery` is on (realm,
/// else `[libdefaults]`; default off) and libkrb5 itself would consult DNS
/// (`dns_lookup_kdc`, else `dns_fallback`, default on). The rule is the
/// owner crate's, shared with the front module.
pub fn dns_lookup_applies(profile: &dyn Profile, realm: &str) -> bool {
    with_realm(realm, |r| {
        krb5_wss_owner::dns_lookup_applies(&OwnerView(profile), r)
    })
}

/// `dns_uri_lookup` from `[libdefaults]` (default true).
pub fn dns_uri_lookup(profile: &dyn Profile) -> bool {
    profile
        .values(&["libdefaults", "dns_uri_lookup"])
        .into_iter()
        .next()
        .and_then(|v| parse_bool(&v))
        .unwrap_or(true)
}

/// Builds the configuration of a realm found in DNS: URLs from the
/// records, options from the realm's stanza (if any). `Ok(None)` when DNS
/// names no wss endpoint for it.
pub fn from_dns(
    profile: &dyn Profile,
    realm: &str,
    kerberos: &Discovered,
    kpasswd: Option<&Discovered>,
) -> Result<Option<RealmConfig>, ConfigError> {
    let kpasswd_urls: Vec<WssUrl> = kpasswd
        .map(|d| d.urls.iter().map(|f| f.url.clone()).collect())
        .unwrap_or_default();
    if kerberos.urls.is_empty() && kpasswd_urls.is_empty() {
        return Ok(None);
    }
    let options = Options::load(profile, realm)?;
    for (service, d) in [("_kerberos", Some(kerberos)), ("_kpasswd", kpasswd)] {
        for f in d.map(|d| d.urls.as_slice()).unwrap_or_default() {
            if !f.url.tls && !options.allow_plaintext {
                return Err(ConfigError {
                    realm: realm.to_string(),
                    key: format!("DNS {service}"),
                    reason: format!(
                        "\"{}\" has no TLS (ws://); set wss_allow_plaintext = true in the realm's section to permit it",
                        f.url
                    ),
                });
            }
        }
    }
    let kpasswd_direct = kpasswd_urls.is_empty()
        && (kpasswd.is_some_and(|d| d.other_transports_only)
            || !realm_values(profile, realm, KPASSWD_KEY).is_empty());
    let mut source = kerberos.source.clone();
    if let Some(d) = kpasswd.filter(|d| !d.urls.is_empty()) {
        source = format!("{source}, {}", d.source);
    }
    Ok(Some(RealmConfig {
        kdc: kerberos.urls.iter().map(|f| f.url.clone()).collect(),
        primary: kerberos
            .urls
            .iter()
            .filter(|f| f.primary)
            .map(|f| f.url.clone())
            .collect(),
        kpasswd: kpasswd_urls,
        kpasswd_direct,
        ..RealmConfig::empty(realm, options, &source)
    }))
}

/// Parses the WebSocket URLs of the given relations (the first relation
/// that has any values wins, as libkrb5 does for primary_kdc/master_kdc).
fn url_list(
    profile: &dyn Profile,
    realm: &str,
    keys: &[&str],
    default_path: &str,
    allow_plaintext: bool,
    ignored: &mut Vec<String>,
) -> Result<Vec<WssUrl>, ConfigError> {
    let mut out: Vec<WssUrl> = Vec::new();
    for key in keys {
        let values = realm_values(profile, realm, key);
        if values.is_empty() {
            continue;
        }
        for v in values {
            if !is_websocket_url(&v) {
                ignored.push(format!("{key} = {v}"));
                continue;
            }
            let url = WssUrl::parse(&v, default_path).map_err(|e| ConfigError {
                realm: realm.to_string(),
                key: key.to_string(),
                reason: e.to_string(),
            })?;
            if !url.tls && !allow_plaintext {
                return Err(ConfigError {
                    realm: realm.to_string(),
                    key: key.to_string(),
                    reason: format!(
                        "\"{v}\" has no TLS (ws://); use wss://, or set wss_allow_plaintext = true in the realm's section to permit it"
                    ),
                });
            }
            if !out.contains(&url) {
                out.push(url);
            }
        }
        break;
    }
    Ok(out)
}

/// The realm's value of `key`, else `[libdefaults]`'s, else None.
fn option_value(profile: &dyn Profile, realm: &str, key: &str) -> Option<String> {
    realm_values(profile, realm, key)
        .into_iter()
        .next()
        .or_else(|| profile.values(&["libdefaults", key]).into_iter().next())
}

/// Parses a boolean the way MIT's profile library does (the owner crate's
/// word list, blanks around it ignored).
pub fn parse_bool(s: &str) -> Option<bool> {
    krb5_wss_owner::parse_bool(s.as_bytes())
}

fn bool_option(
    profile: &dyn Profile,
    realm: &str,
    key: &str,
    default: bool,
) -> Result<bool, ConfigError> {
    // Plaintext permission is per realm only: [libdefaults] cannot grant it.
    match realm_values(profile, realm, key).into_iter().next() {
        None => Ok(default),
        Some(v) => parse_bool(&v).ok_or_else(|| ConfigError {
            realm: realm.to_string(),
            key: key.to_string(),
            reason: format!("\"{v}\" is not a boolean (use true or false)"),
        }),
    }
}

/// Parses a duration: `5` or `5s` (seconds), `500ms`, `1m`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => {
            let (digits, unit) = s.split_at_checked(i)?;
            (digits, unit.trim())
        }
        None => (s, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let d = match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.checked_mul(60)?),
        _ => return None,
    };
    Some(d)
}

fn duration_option(
    profile: &dyn Profile,
    realm: &str,
    key: &str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(v) = option_value(profile, realm, key) else {
        return Ok(default);
    };
    match parse_duration(&v) {
        Some(d) if !d.is_zero() && d <= MAX_TIMEOUT => Ok(d),
        _ => Err(ConfigError {
            realm: realm.to_string(),
            key: key.to_string(),
            reason: format!(
                "\"{v}\" is not a duration between 1ms and 300s (examples: 5, 5s, 500ms)"
            ),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A profile held in a map, for tests.
    #[derive(Default)]
    pub(crate) struct MapProfile(pub HashMap<String, Vec<String>>);

    impl MapProfile {
        pub(crate) fn with(mut self, path: &str, value: &str) -> Self {
            self.0
                .entry(path.to_string())
                .or_default()
                .push(value.to_string());
            self
        }
    }

    impl Profile for MapProfile {
        fn values(&self, path: &[&str]) -> Vec<String> {
            self.0.get(&path.join("/")).cloned().unwrap_or_default()
        }
    }

    const R: &str = "EXAMPLE.COM";

    fn p() -> MapProfile {
        MapProfile::default()
    }

    #[test]
    fn plain_realm_is_not_ours() {
        let prof = p().with("realms/EXAMPLE.COM/kdc", "kdc.example.com:88");
        assert!(!realm_is_ours(&prof, R));
        assert_eq!(load(&prof, R).unwrap(), None);
        assert_eq!(load(&p(), "OTHER").unwrap(), None);
    }

    #[test]
    fn https_kkdcp_realm_is_left_to_libkrb5() {
        let prof = p().with("realms/EXAMPLE.COM/kdc", "https://kdc.example.com/KdcProxy");
        assert_eq!(load(&prof, R).unwrap(), None);
    }

    #[test]
    fn full_realm() {
        let prof = p()
            .with("realms/EXAMPLE.COM/kdc", "wss://a.example.com/kdc")
            .with("realms/EXAMPLE.COM/kdc", "wss://b.example.com:8443")
            .with("realms/EXAMPLE.COM/kdc", "kdc.example.com:88")
            .with("realms/EXAMPLE.COM/master_kdc", "wss://a.example.com/kdc")
            .with(
                "realms/EXAMPLE.COM/kpasswd_server",
                "wss://a.example.com/pw",
            )
            .with("realms/EXAMPLE.COM/http_anchors", "FILE:/etc/ca.pem")
            .with("realms/EXAMPLE.COM/wss_request_timeout", "20s")
            .with("libdefaults/wss_connect_timeout", "2");
        let c = load(&prof, R).unwrap().unwrap();
        assert_eq!(
            c.kdc.iter().map(|u| u.to_string()).collect::<Vec<_>>(),
            ["wss://a.example.com/kdc", "wss://b.example.com:8443/kdc"]
        );
        assert_eq!(c.primary.len(), 1);
        assert_eq!(c.kpasswd_urls()[0].to_string(), "wss://a.example.com/pw");
        assert_eq!(c.anchors, ["FILE:/etc/ca.pem"]);
        assert_eq!(c.ignored, ["kdc = kdc.example.com:88"]);
        assert_eq!(c.connect_timeout, Duration::from_secs(2));
        assert_eq!(c.request_timeout, Duration::from_secs(20));
        assert!(!c.allow_plaintext);
    }

    #[test]
    fn primary_kdc_wins_over_master_kdc() {
        let prof = p()
            .with("realms/EXAMPLE.COM/kdc", "wss://a/kdc")
            .with("realms/EXAMPLE.COM/primary_kdc", "wss://p/kdc")
            .with("realms/EXAMPLE.COM/master_kdc", "wss://m/kdc");
        let c = load(&prof, R).unwrap().unwrap();
        assert_eq!(c.primary[0].to_string(), "wss://p/kdc");
    }

    #[test]
    fn kpasswd_is_derived_from_primary_then_kdc() {
        let prof = p()
            .with("realms/EXAMPLE.COM/kdc", "wss://a/kdc")
            .with("realms/EXAMPLE.COM/kdc", "wss://b/x/kdc");
        let c = load(&prof, R).unwrap().unwrap();
        assert_eq!(
            c.kpasswd_urls()
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>(),
            ["wss://a/kpasswd", "wss://b/x/kpasswd"]
        );
        let prof = prof.with("realms/EXAMPLE.COM/primary_kdc", "wss://p:9/kdc");
        let c = load(&prof, R).unwrap().unwrap();
        assert_eq!(c.kpasswd_urls()[0].to_string(), "wss://p:9/kpasswd");
    }

    #[test]
    fn explicit_direct_kpasswd_server_is_respected() {
        let prof = p()
            .with("realms/EXAMPLE.COM/kdc", "wss://a/kdc")
            .with("realms/EXAMPLE.COM/kpasswd_server", "kdc.example.com:464");
        let c = load(&prof, R).unwrap().unwrap();
        assert!(c.kpasswd_direct);
        assert_eq!(c.ignored, ["kpasswd_server = kdc.example.com:464"]);
    }

    #[test]
    fn kpasswd_only_realm_is_ours() {
        let prof = p()
            .with("realms/EXAMPLE.COM/kdc", "kdc.example.com")
            .with("realms/EXAMPLE.COM/kpasswd_server", "wss://pw.example.com");
        let c = load(&prof, R).unwrap().unwrap();
        assert!(c.kdc.is_empty());
        assert_eq!(
            c.kpasswd_urls()[0].to_string(),
            "wss://pw.example.com/kpasswd"
        );
    }

    #[test]
    fn bad_url_names_realm_key_and_value() {
        let prof = p().with("realms/EXAMPLE.COM/kdc", "wss://h:99999/kdc");
        let e = load(&prof, R).unwrap_err();
        assert_eq!(
            e.to_string(),
            "krb5-wss: realm EXAMPLE.COM: kdc: \"wss://h:99999/kdc\": port \"99999\" is not a number from 1 to 65535"
        );
    }

    #[test]
    fn plaintext_needs_explicit_permission() {
        let prof = p().with("realms/EXAMPLE.COM/kdc", "ws://h/kdc");
        let e = load(&prof, R).unwrap_err();
        assert!(e.reason.contains("wss_allow_plaintext = true"), "{e}");
        // [libdefaults] cannot grant it.
        let prof = prof.with("libdefaults/wss_allow_plaintext", "true");
        assert!(load(&prof, R).is_err());
        let prof = prof.with("realms/EXAMPLE.COM/wss_allow_plaintext", "yes");
        let c = load(&prof, R).unwrap().unwrap();
        assert!(c.allow_plaintext && !c.kdc[0].tls);
    }

    #[test]
    fn bad_options_are_errors() {
        let base = || p().with("realms/EXAMPLE.COM/kdc", "wss://h/kdc");
        let e = load(
            &base().with("realms/EXAMPLE.COM/wss_allow_plaintext", "maybe"),
            R,
        )
        .unwrap_err();
        assert!(e.to_string().contains("\"maybe\" is not a boolean"));
        let e = load(
            &base().with("realms/EXAMPLE.COM/wss_connect_timeout", "0"),
            R,
        )
        .unwrap_err();
        assert_eq!(e.key, "wss_connect_timeout");
        let e = load(
            &base().with("libdefaults/wss_request_timeout", "forever"),
            R,
        )
        .unwrap_err();
        assert_eq!(e.key, "wss_request_timeout");
        let e = load(
            &base().with("realms/EXAMPLE.COM/http_anchors", "PKCS11:x"),
            R,
        )
        .unwrap_err();
        assert_eq!(e.key, "http_anchors");
    }

    #[test]
    fn web_proxy_from_realm_then_libdefaults() {
        let base = || p().with("realms/EXAMPLE.COM/kdc", "wss://h/kdc");
        assert_eq!(load(&base(), R).unwrap().unwrap().web_proxy, None);
        let prof = base().with("libdefaults/wss_web_proxy", "http://lib:3128");
        assert_eq!(
            load(&prof, R).unwrap().unwrap().web_proxy.as_deref(),
            Some("http://lib:3128")
        );
        let prof = prof.with(
            "realms/EXAMPLE.COM/wss_web_proxy",
            " http://u:p@realm:8080 ",
        );
        assert_eq!(
            load(&prof, R).unwrap().unwrap().web_proxy.as_deref(),
            Some("http://u:p@realm:8080")
        );
        let e = load(
            &base().with("realms/EXAMPLE.COM/wss_web_proxy", "socks5://x:1"),
            R,
        )
        .unwrap_err();
        assert_eq!(e.key, "wss_web_proxy");
    }

    #[test]
    fn durations_and_booleans() {
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration(" 250ms "), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5h"), None);
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_bool("On"), Some(true));
        assert_eq!(parse_bool("nil"), Some(false));
        assert_eq!(parse_bool("2"), None);
    }

    fn testdata(name: &str) -> String {
        format!("{}/src/tls/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
    }

    #[test]
    fn client_certificate_from_realm_then_libdefaults() {
        let base = || p().with("realms/EXAMPLE.COM/kdc", "wss://h/kdc");
        assert_eq!(load(&base(), R).unwrap().unwrap().client_identity, None);
        let prof = base()
            .with(
                "libdefaults/wss_client_certificate",
                &testdata("client.pem"),
            )
            .with("libdefaults/wss_client_key", &testdata("client.key"));
        let id = load(&prof, R).unwrap().unwrap().client_identity.unwrap();
        assert_eq!(id.cert.to_str(), Some(testdata("client.pem").as_str()));
        // The realm's pair wins (a SEC1 key reads with rustls).
        let prof = prof.with(
            "realms/EXAMPLE.COM/wss_client_key",
            &testdata("client-sec1.key"),
        );
        let id = load(&prof, R).unwrap().unwrap().client_identity.unwrap();
        assert_eq!(id.key.to_str(), Some(testdata("client-sec1.key").as_str()));
    }

    #[test]
    fn client_certificate_errors_name_realm_file_and_cause() {
        let base = || p().with("realms/EXAMPLE.COM/kdc", "wss://h/kdc");
        let cert = testdata("client.pem");
        let key = testdata("client.key");
        let e = load(
            &base().with("realms/EXAMPLE.COM/wss_client_certificate", &cert),
            R,
        )
        .unwrap_err();
        assert_eq!(e.key, "wss_client_key");
        assert!(
            e.to_string()
                .starts_with("krb5-wss: realm EXAMPLE.COM: wss_client_key: "),
            "{e}"
        );
        assert!(e.reason.contains(&cert), "{e}");
        let e = load(&base().with("libdefaults/wss_client_key", &key), R).unwrap_err();
        assert_eq!(e.key, "wss_client_certificate");
        let e = load(
            &base()
                .with(
                    "realms/EXAMPLE.COM/wss_client_certificate",
                    "/nonexistent/c.pem",
                )
                .with("realms/EXAMPLE.COM/wss_client_key", &key),
            R,
        )
        .unwrap_err();
        assert!(
            e.reason.contains("/nonexistent/c.pem: cannot read it"),
            "{e}"
        );
        let e = load(
            &base()
                .with("realms/EXAMPLE.COM/wss_client_certificate", &cert)
                .with("realms/EXAMPLE.COM/wss_client_key", &testdata("other.key")),
            R,
        )
        .unwrap_err();
        assert!(e.reason.contains("does not match the certificate"), "{e}");
        assert!(e.reason.contains("other.key"), "{e}");
        // A key file given as the certificate: no certificate in it.
        let e = load(
            &base()
                .with("realms/EXAMPLE.COM/wss_client_certificate", &key)
                .with("realms/EXAMPLE.COM/wss_client_key", &key),
            R,
        )
        .unwrap_err();
        assert!(e.reason.contains("no PEM certificate"), "{e}");
    }

    #[test]
    fn duplicate_urls_collapse() {
        let prof = p()
            .with("realms/EXAMPLE.COM/kdc", "wss://h/kdc")
            .with("realms/EXAMPLE.COM/kdc", "wss://H:443/kdc");
        assert_eq!(load(&prof, R).unwrap().unwrap().kdc.len(), 1);
    }
}
