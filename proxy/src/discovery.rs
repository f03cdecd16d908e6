//! KDC discovery in DNS for realms configured with `kdc = "dns"` (or
//! `kpasswd = "dns"`), and the destination allow-list every discovered
//! address must pass.
//!
//! Only a realm that matched a configured realm (exactly, or a wildcard
//! section `*.SUFFIX`) is ever looked up: [`Discovery::servers`] is called
//! after the realm check. For a KDC the proxy asks SRV
//! `_kerberos._tcp.REALM.`, then (only when that has no record)
//! `_kerberos._udp.REALM.`; for kpasswd `_kpasswd._tcp.REALM.`, then
//! `_kerberos-adm._tcp.REALM.` with its port replaced by 464 (as MIT's
//! libkrb5 does). Names are absolute: no search domain is appended. Each
//! SRV target is resolved (A and AAAA) and every address is checked by
//! [`Settings::check`]; refused ones are logged and counted, never used.
//!
//! Answers are cached for their TTL (the smallest of the SRV and address
//! records), clamped to `[min_ttl, max_ttl]`. An answer past its TTL is
//! still used while a refresh runs in the background (the first request
//! after the TTL starts it); when refreshes fail, the last good answer is
//! used for at most `stale_for` past its TTL, then the realm fails. A
//! failed lookup with no good answer is remembered for [`RETRY_AFTER`]:
//! requests in that time fail at once, without a query. Every lookup is
//! bounded by `timeout`; at most [`MAX_LOOKUPS`] run at once and at most
//! [`MAX_ENTRIES`] answers are kept.

use crate::addr::{Host, ServerAddr, KPASSWD_PORT};
use crate::logfmt::Value;
use crate::metrics::Metrics;
use crate::settings::{Bool, Item, ListOf, Nets, Secs};
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;
use krb5_wss_proto::srv::{order_by_priority_and_weight, random_u32};
use krb5_wss_proto::Service;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::{timeout, Instant};

/// A failed lookup without a good answer to fall back on is remembered
/// this long: requests meanwhile fail at once, without a DNS query.
pub const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Most SRV records used from one answer (in the answer's order).
pub const MAX_RECORDS: usize = 16;
/// Most addresses used for one SRV target.
pub const MAX_ADDRESSES_PER_TARGET: usize = 4;
/// Most addresses one discovered realm hands to an exchange.
pub const MAX_SERVERS: usize = 8;
/// Most (realm, service) answers kept; past it, the entry refreshed
/// longest ago is dropped.
pub const MAX_ENTRIES: usize = 4096;
/// Most lookups in progress at once; past it a request that needs one
/// fails at once.
pub const MAX_LOOKUPS: usize = 64;

crate::settings! {
    /// The `[discovery]` settings.
    pub struct Rules in "discovery", flags "discovery_" {
        /// Ports a discovered destination may have (*KDC discovery*).
        allow_ports: ListOf<PortItem> = vec![88, 464],
        /// Allow discovered loopback destinations (127.0.0.0/8, `::1`).
        allow_loopback: Bool = false,
        /// Networks (`IP` or `IP/PREFIX`) allowed even when loopback or
        /// link-local; the port rule still applies (unspecified, multicast,
        /// broadcast and the proxy's own addresses are never allowed).
        allow_networks: Nets = Vec::new(),
        /// Networks always refused.
        deny_networks: Nets = Vec::new(),
        /// DNS servers to ask (`IP`, `IP:PORT`, `[IPv6]:PORT`); none: those
        /// of `/etc/resolv.conf`.
        nameservers: ListOf<NameserverItem> = Vec::new(),
        /// Shortest time a DNS answer is cached.
        min_ttl: Secs = Duration::from_secs(30),
        /// Longest time a DNS answer is cached.
        max_ttl: Secs = Duration::from_secs(3600),
        /// How long past its TTL the last good answer is used while
        /// refreshes fail.
        stale_for: Secs = Duration::from_secs(3600),
        /// Deadline of one discovery (SRV and address lookups together).
        timeout: Secs = Duration::from_secs(3),
    }
}

/// A port number.
pub struct PortItem;
impl Item for PortItem {
    type T = u16;
    const VALUE_NAME: &'static str = "PORT";
    fn parse(s: &str) -> Result<u16, String> {
        s.trim()
            .parse()
            .map_err(|_| format!("{s:?} is not a port (1 to 65535)"))
    }
    fn from_toml(v: &toml::Value) -> Result<u16, String> {
        v.as_integer()
            .and_then(|i| u16::try_from(i).ok())
            .ok_or_else(|| "expected a port (1 to 65535)".to_string())
    }
}

/// A DNS server: `IP`, `IP:PORT` or `[IPv6]:PORT` (port 53 by default).
pub struct NameserverItem;
impl Item for NameserverItem {
    type T = SocketAddr;
    const VALUE_NAME: &'static str = "IP[:PORT]";
    fn parse(s: &str) -> Result<SocketAddr, String> {
        crate::addr::parse_server(s, 53)
            .ok()
            .and_then(|a| match a.host {
                Host::Ip(ip) => Some(SocketAddr::new(ip, a.port)),
                Host::Name(_) => None,
            })
            .ok_or_else(|| format!("nameservers: {s:?} is not IP[:PORT] or [IPv6]:PORT"))
    }
}

/// The `[discovery]` settings with the proxy's own addresses (listen and
/// metrics), which are never a destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The settings.
    pub rules: Rules,
    /// The proxy's own addresses (from `[server]`).
    pub own: Vec<SocketAddr>,
}

impl From<Rules> for Settings {
    fn from(rules: Rules) -> Settings {
        Settings {
            rules,
            own: Vec::new(),
        }
    }
}

impl std::ops::Deref for Settings {
    type Target = Rules;
    fn deref(&self) -> &Rules {
        &self.rules
    }
}

/// Why a discovered destination is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its port is not in `allow_ports`.
    Port,
    /// Loopback, without `allow_loopback` or `allow_networks`.
    Loopback,
    /// Link-local, without `allow_networks`.
    LinkLocal,
    /// Unspecified, "this network", multicast or broadcast.
    Special,
    /// One of the proxy's own listen addresses.
    Own,
    /// In `deny_networks`.
    Denied,
}

impl Refused {
    /// Every reason, in metric order.
    pub const ALL: [Refused; 6] = [
        Refused::Port,
        Refused::Loopback,
        Refused::LinkLocal,
        Refused::Special,
        Refused::Own,
        Refused::Denied,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Port => "port",
            Refused::Loopback => "loopback",
            Refused::LinkLocal => "link_local",
            Refused::Special => "special",
            Refused::Own => "own_address",
            Refused::Denied => "denied_network",
        }
    }

    /// The position in [`Refused::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    fn explain(self) -> &'static str {
        match self {
            Refused::Port => "port not in [discovery] allow_ports",
            Refused::Loopback => "loopback address ([discovery] allow_loopback is false)",
            Refused::LinkLocal => "link-local address",
            Refused::Special => "unspecified, multicast or broadcast address",
            Refused::Own => "one of the proxy's own listen addresses",
            Refused::Denied => "in [discovery] deny_networks",
        }
    }
}

impl Rules {
    /// Checks the settings' own consistency.
    pub fn validate(&self) -> Result<(), String> {
        if self.allow_ports.is_empty() {
            return Err("[discovery] allow_ports is empty: no destination could be used".into());
        }
        if self.allow_ports.contains(&0) {
            return Err("[discovery] allow_ports: 0 is not a port".into());
        }
        if self.min_ttl > self.max_ttl {
            return Err(format!(
                "[discovery] min_ttl ({:?}) is more than max_ttl ({:?})",
                self.min_ttl, self.max_ttl
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// Whether `dest` may be contacted; the reason when not.
    pub fn check(&self, dest: SocketAddr) -> Result<(), Refused> {
        let ip = dest.ip().to_canonical();
        if special(ip) {
            return Err(Refused::Special);
        }
        let own = self.own.iter().any(|o| {
            o.port() == dest.port() && (o.ip().to_canonical() == ip || o.ip().is_unspecified())
        });
        if own {
            return Err(Refused::Own);
        }
        if !self.allow_ports.contains(&dest.port()) {
            return Err(Refused::Port);
        }
        if self.deny_networks.iter().any(|n| n.contains(ip)) {
            return Err(Refused::Denied);
        }
        if self.allow_networks.iter().any(|n| n.contains(ip)) {
            return Ok(());
        }
        if ip.is_loopback() && !self.allow_loopback {
            return Err(Refused::Loopback);
        }
        if link_local(ip) {
            return Err(Refused::LinkLocal);
        }
        Ok(())
    }

    fn clamp_ttl(&self, ttl: u32) -> Duration {
        Duration::from_secs(u64::from(ttl)).clamp(self.min_ttl, self.max_ttl)
    }
}

/// Never a KDC: unspecified, 0.0.0.0/8, multicast, broadcast.
fn special(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 0 || v4.is_multicast() || v4 == Ipv4Addr::BROADCAST,
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Whether `realm` can be looked up: a DNS name of letters, digits, `-`
/// and `_` labels (a realm such as `EXAMPLE.COM`).
pub fn dns_name(realm: &str) -> Result<(), String> {
    let ok = realm.len() <= 253
        && !realm.is_empty()
        && realm.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("realm {} is not a DNS name", Value(realm)))
    }
}

/// Whether the wildcard section `pattern` (`*.SUFFIX`) serves `realm`:
/// `SUFFIX` itself or any realm ending in `.SUFFIX`, compared exactly
/// (case-sensitive, like every realm name here).
pub fn wildcard_matches(pattern: &str, realm: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => {
            realm == suffix
                || (realm.len() > suffix.len() + 1
                    && realm.ends_with(suffix)
                    && realm.as_bytes()[realm.len() - suffix.len() - 1] == b'.')
        }
        None => false,
    }
}

/// One usable SRV record: its place in the order and its addresses.
#[derive(Debug, Clone)]
struct Target {
    priority: u16,
    weight: u16,
    addresses: Vec<SocketAddr>,
}

/// A good answer: the targets and when it expires.
#[derive(Debug, Clone)]
struct Good {
    targets: Vec<Target>,
    expires: Instant,
}

#[derive(Debug, Default)]
struct State {
    good: Option<Good>,
    /// A failure with no good answer to use: until when it is remembered.
    failed: Option<(Instant, String)>,
    refreshing: bool,
    touched: Option<Instant>,
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<State>,
    /// Held by the one request filling an empty slot.
    fill: tokio::sync::Mutex<()>,
}

type Key = (Service, String);

/// The discovery cache and its resolver, shared by all connections; a
/// reload empties it ([`Discovery::reset`]).
pub struct Discovery {
    slots: Mutex<HashMap<Key, Arc<Slot>>>,
    resolver: Mutex<Option<Arc<TokioResolver>>>,
    lookups: Arc<Semaphore>,
}

impl Default for Discovery {
    fn default() -> Discovery {
        Discovery {
            slots: Mutex::new(HashMap::new()),
            resolver: Mutex::new(None),
            lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
        }
    }
}

/// Why discovery found no server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "discovery: {}", self.0)
    }
}

impl Discovery {
    /// Forgets every answer and the resolver (after a reload: the
    /// settings may have changed).
    pub fn reset(&self) {
        lock(&self.slots).clear();
        *lock(&self.resolver) = None;
    }

    /// The servers of `realm` for `service`, in the order to try them
    /// (priority, then RFC 2782 weights, drawn anew for each request).
    pub async fn servers(
        self: &Arc<Self>,
        settings: &Arc<Settings>,
        metrics: &Arc<Metrics>,
        service: Service,
        realm: &str,
    ) -> Result<Vec<ServerAddr>, Failure> {
        dns_name(realm).map_err(Failure)?;
        let key = (service, realm.to_string());
        let slot = self.slot(&key);
        if let Some(found) = self.cached(&slot, settings, metrics, &key) {
            return found;
        }
        // No usable answer: one request looks it up, the others wait for it.
        let deadline = Instant::now() + settings.timeout;
        let _fill = tokio::time::timeout_at(deadline, slot.fill.lock())
            .await
            .map_err(|_| Failure(format!("lookup for {} timed out", Value(realm))))?;
        if let Some(found) = self.cached(&slot, settings, metrics, &key) {
            return found;
        }
        // The wait for the lock and the lookup share one deadline.
        let result = tokio::time::timeout_at(deadline, self.lookup(settings, metrics, &key))
            .await
            .unwrap_or_else(|_| {
                Err(Failure(format!(
                    "DNS lookup for {} not complete within {:?} ([discovery] timeout)",
                    Value(realm),
                    settings.timeout
                )))
            });
        let mut st = lock(&slot.state);
        match result {
            Ok(good) => {
                let out = order(&good.targets);
                st.good = Some(good);
                st.failed = None;
                Ok(out)
            }
            Err(e) => {
                st.failed = Some((Instant::now() + RETRY_AFTER, e.0.clone()));
                Err(e)
            }
        }
    }

    /// The answer from the cache, if it has a usable one (or a failure to
    /// repeat); starts a background refresh of an expired answer.
    fn cached(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        settings: &Arc<Settings>,
        metrics: &Arc<Metrics>,
        key: &Key,
    ) -> Option<Result<Vec<ServerAddr>, Failure>> {
        let now = Instant::now();
        let mut st = lock(&slot.state);
        st.touched = Some(now);
        let failed_recently = st.failed.as_ref().is_some_and(|(until, _)| now < *until);
        if let Some(good) = &st.good {
            if now < good.expires {
                return Some(Ok(order(&good.targets)));
            }
            if now < good.expires + settings.stale_for {
                let out = order(&good.targets);
                if !st.refreshing && !failed_recently {
                    st.refreshing = true;
                    let (me, slot, settings, metrics, key) = (
                        self.clone(),
                        slot.clone(),
                        settings.clone(),
                        metrics.clone(),
                        key.clone(),
                    );
                    tokio::spawn(async move { me.refresh(slot, settings, metrics, key).await });
                }
                return Some(Ok(out));
            }
        }
        match &st.failed {
            Some((until, why)) if now < *until => Some(Err(Failure(why.clone()))),
            _ => None,
        }
    }

    async fn refresh(
        self: Arc<Self>,
        slot: Arc<Slot>,
        settings: Arc<Settings>,
        metrics: Arc<Metrics>,
        key: Key,
    ) {
        let result = self.lookup(&settings, &metrics, &key).await;
        let mut st = lock(&slot.state);
        st.refreshing = false;
        match result {
            Ok(good) => {
                st.good = Some(good);
                st.failed = None;
            }
            Err(e) => {
                let until = st.good.as_ref().map(|g| g.expires + settings.stale_for);
                log::warn!(
                    "discovery refresh failed realm={} service={} error={}; keeping the last \
                     good answer for at most {:?} more",
                    Value(&key.1),
                    key.0,
                    Value(&e.0),
                    until.map(|u| u.saturating_duration_since(Instant::now()))
                );
                st.failed = Some((Instant::now() + RETRY_AFTER, e.0));
            }
        }
    }

    fn slot(&self, key: &Key) -> Arc<Slot> {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.get(key) {
            return s.clone();
        }
        if slots.len() >= MAX_ENTRIES {
            // Drop the entry used longest ago.
            let oldest = slots
                .iter()
                .min_by_key(|(_, s)| lock(&s.state).touched)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                slots.remove(&k);
            }
        }
        let slot = Arc::new(Slot::default());
        slots.insert(key.clone(), slot.clone());
        slot
    }

    fn resolver(&self, settings: &Settings) -> Result<Arc<TokioResolver>, Failure> {
        let mut held = lock(&self.resolver);
        if let Some(r) = held.as_ref() {
            return Ok(r.clone());
        }
        let provider = TokioRuntimeProvider::default();
        let mut builder = if settings.nameservers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| Failure(format!("cannot read /etc/resolv.conf: {e}")))?
        } else {
            let mut config = ResolverConfig::default();
            for ns in &settings.nameservers {
                let mut c = NameServerConfig::udp_and_tcp(ns.ip());
                for conn in &mut c.connections {
                    conn.port = ns.port();
                }
                config.add_name_server(c);
            }
            TokioResolver::builder_with_config(config, provider)
        };
        let opts: &mut ResolverOpts = builder.options_mut();
        // This module caches, with its own TTL bounds.
        opts.cache_size = 0;
        opts.timeout = opts.timeout.min(settings.timeout);
        let resolver = Arc::new(
            builder
                .build()
                .map_err(|e| Failure(format!("cannot set up the resolver: {e}")))?,
        );
        *held = Some(resolver.clone());
        Ok(resolver)
    }

    /// One discovery in DNS, bounded by `settings.timeout`.
    async fn lookup(
        &self,
        settings: &Settings,
        metrics: &Metrics,
        key: &Key,
    ) -> Result<Good, Failure> {
        let (service, realm) = (key.0, key.1.as_str());
        let Ok(_permit) = self.lookups.clone().try_acquire_owned() else {
            return Err(Failure(format!(
                "{MAX_LOOKUPS} DNS lookups in progress: not looking up {}",
                Value(realm)
            )));
        };
        let resolver = self.resolver(settings)?;
        let result = match timeout(
            settings.timeout,
            discover(&resolver, settings, metrics, service, realm),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Failure(format!(
                "DNS lookup for {} not complete within {:?} ([discovery] timeout)",
                Value(realm),
                settings.timeout
            ))),
        };
        metrics.discovery_lookup(result.is_ok());
        if let Ok(good) = &result {
            let addresses: Vec<String> = order(&good.targets)
                .iter()
                .map(ToString::to_string)
                .collect();
            log::info!(
                "discovered realm={} service={service} servers={} ttl={:?}",
                Value(realm),
                addresses.join(","),
                good.expires.saturating_duration_since(Instant::now())
            );
        }
        result
    }
}

/// The SRV names asked for `service`, in order, with the port that
/// replaces the records' own (kpasswd through `_kerberos-adm`).
fn srv_names(service: Service, realm: &str) -> [(String, Option<u16>); 2] {
    match service {
        Service::Kdc => [
            (format!("_kerberos._tcp.{realm}."), None),
            (format!("_kerberos._udp.{realm}."), None),
        ],
        Service::Kpasswd => [
            (format!("_kpasswd._tcp.{realm}."), None),
            (format!("_kerberos-adm._tcp.{realm}."), Some(KPASSWD_PORT)),
        ],
    }
}

async fn discover(
    resolver: &TokioResolver,
    settings: &Settings,
    metrics: &Metrics,
    service: Service,
    realm: &str,
) -> Result<Good, Failure> {
    let mut errors = Vec::new();
    for (name, port_override) in srv_names(service, realm) {
        let fqdn = Name::from_ascii(&name).map_err(|e| Failure(format!("{name}: {e}")))?;
        let lookup = match resolver.srv_lookup(fqdn).await {
            Ok(l) => l,
            Err(e) => {
                errors.push(format!("{name} {e}"));
                continue;
            }
        };
        let mut ttl = u32::MAX;
        let mut records = Vec::new();
        for r in lookup.answers() {
            if let RData::SRV(srv) = &r.data {
                ttl = ttl.min(r.ttl);
                records.push(srv.clone());
            }
        }
        // A lone "." target: the service is decidedly not available.
        if records.len() == 1 && records.iter().all(|s| s.target.is_root()) {
            return Err(Failure(format!("{name}: the domain says no such service")));
        }
        if records.is_empty() {
            errors.push(format!("{name}: no SRV record"));
            continue;
        }
        let mut targets = Vec::new();
        let mut refused = Vec::new();
        for srv in records.iter().take(MAX_RECORDS) {
            let port = port_override.unwrap_or(srv.port);
            let mut host = srv.target.clone();
            host.set_fqdn(true);
            let ips = match resolver.lookup_ip(host.clone()).await {
                Ok(ips) => ips,
                Err(e) => {
                    errors.push(format!("{name} target {host}: {e}"));
                    continue;
                }
            };
            for r in ips.as_lookup().answers() {
                if matches!(r.data, RData::A(_) | RData::AAAA(_)) {
                    ttl = ttl.min(r.ttl);
                }
            }
            let mut addresses = Vec::new();
            for ip in ips.iter() {
                let dest = SocketAddr::new(ip.to_canonical(), port);
                match settings.check(dest) {
                    Ok(()) if !addresses.contains(&dest) => addresses.push(dest),
                    Ok(()) => {}
                    Err(why) => {
                        metrics.discovery_refused(why);
                        log::warn!(
                            "discovery refused realm={} service={service} record={name} \
                             target={} address={dest} reason={}",
                            Value(realm),
                            Value(&format!("{host}:{}", srv.port)),
                            Value(why.explain())
                        );
                        refused.push(format!("{dest} ({})", why.label()));
                    }
                }
                if addresses.len() == MAX_ADDRESSES_PER_TARGET {
                    break;
                }
            }
            if !addresses.is_empty() {
                targets.push(Target {
                    priority: srv.priority,
                    weight: srv.weight,
                    addresses,
                });
            }
        }
        if targets.is_empty() {
            let mut why = format!("{name}: no allowed destination");
            if !refused.is_empty() {
                why.push_str(&format!(" (refused: {})", refused.join(", ")));
            }
            if !errors.is_empty() {
                why.push_str(&format!(" ({})", errors.join("; ")));
            }
            return Err(Failure(why));
        }
        let ttl = settings.clamp_ttl(ttl);
        return Ok(Good {
            targets,
            expires: Instant::now() + ttl,
        });
    }
    Err(Failure(errors.join("; ")))
}

/// The targets' addresses in the order to try: priority, then weights.
fn order(targets: &[Target]) -> Vec<ServerAddr> {
    order_by_priority_and_weight(targets, |t| (t.priority, t.weight), random_u32)
        .iter()
        .flat_map(|t| t.addresses.iter())
        .take(MAX_SERVERS)
        .map(|a| ServerAddr {
            host: Host::Ip(a.ip()),
            port: a.port(),
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::IpNet;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_allow_list() {
        let s = Settings {
            own: vec![sa("0.0.0.0:443"), sa("192.0.2.7:88")],
            ..Settings::default()
        };
        assert_eq!(s.check(sa("192.0.2.10:88")), Ok(()));
        assert_eq!(s.check(sa("[2001:db8::1]:464")), Ok(()));
        assert_eq!(s.check(sa("10.1.2.3:88")), Ok(()));
        assert_eq!(s.check(sa("192.0.2.10:22")), Err(Refused::Port));
        assert_eq!(s.check(sa("192.0.2.10:443")), Err(Refused::Own));
        assert_eq!(s.check(sa("192.0.2.7:88")), Err(Refused::Own));
        assert_eq!(s.check(sa("127.0.0.1:88")), Err(Refused::Loopback));
        assert_eq!(s.check(sa("127.9.9.9:88")), Err(Refused::Loopback));
        assert_eq!(s.check(sa("[::1]:88")), Err(Refused::Loopback));
        // IPv4-mapped IPv6 is judged as the IPv4 address.
        assert_eq!(s.check(sa("[::ffff:127.0.0.1]:88")), Err(Refused::Loopback));
        assert_eq!(s.check(sa("169.254.169.254:88")), Err(Refused::LinkLocal));
        assert_eq!(s.check(sa("[fe80::1]:88")), Err(Refused::LinkLocal));
        for special in [
            "0.0.0.0:88",
            "0.1.2.3:88",
            "224.0.0.1:88",
            "255.255.255.255:88",
            "[::]:88",
            "[ff02::1]:88",
        ] {
            assert_eq!(s.check(sa(special)), Err(Refused::Special), "{special}");
        }
    }

    #[test]
    fn allow_and_deny_networks() {
        let s = Settings::from(Rules {
            allow_ports: vec![61000],
            allow_networks: vec![
                IpNet::parse("127.0.0.1").unwrap(),
                IpNet::parse("fe80::/10").unwrap(),
            ],
            deny_networks: vec![IpNet::parse("10.0.0.0/8").unwrap()],
            ..Rules::default()
        });
        assert_eq!(s.check(sa("127.0.0.1:61000")), Ok(()));
        assert_eq!(s.check(sa("[fe80::2]:61000")), Ok(()));
        // The port rule still applies inside allowed networks.
        assert_eq!(s.check(sa("127.0.0.1:22")), Err(Refused::Port));
        assert_eq!(s.check(sa("127.0.0.2:61000")), Err(Refused::Loopback));
        assert_eq!(s.check(sa("10.9.9.9:61000")), Err(Refused::Denied));
        let everything = Settings::from(Rules {
            allow_networks: vec![IpNet::parse("0.0.0.0/0").unwrap()],
            ..Rules::default()
        });
        // Special addresses stay refused even inside an allowed network.
        assert_eq!(everything.check(sa("0.0.0.0:88")), Err(Refused::Special));
        let lo = Settings::from(Rules {
            allow_loopback: true,
            ..Rules::default()
        });
        assert_eq!(lo.check(sa("127.0.0.1:88")), Ok(()));
        assert_eq!(lo.check(sa("127.0.0.1:22")), Err(Refused::Port));
    }

    #[test]
    fn validation() {
        Settings::default().validate().unwrap();
        let bad = Settings::from(Rules {
            allow_ports: vec![],
            ..Rules::default()
        });
        assert!(bad.validate().unwrap_err().contains("allow_ports"));
        let bad = Settings::from(Rules {
            min_ttl: Duration::from_secs(10),
            max_ttl: Duration::from_secs(5),
            ..Rules::default()
        });
        assert!(bad.validate().unwrap_err().contains("min_ttl"));
    }

    #[test]
    fn ttl_is_clamped() {
        let s = Settings::from(Rules {
            min_ttl: Duration::from_secs(30),
            max_ttl: Duration::from_secs(600),
            ..Rules::default()
        });
        assert_eq!(s.clamp_ttl(0), Duration::from_secs(30));
        assert_eq!(s.clamp_ttl(120), Duration::from_secs(120));
        assert_eq!(s.clamp_ttl(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn wildcards() {
        let p = "*.EXAMPLE.COM";
        for yes in ["EXAMPLE.COM", "CHILD.EXAMPLE.COM", "A.B.EXAMPLE.COM"] {
            assert!(wildcard_matches(p, yes), "{yes}");
        }
        for no in [
            "EVILEXAMPLE.COM",
            "example.com",
            "CHILD.example.com",
            "EXAMPLE.COM.EVIL",
            ".EXAMPLE.COM",
            "COM",
            "",
        ] {
            assert!(!wildcard_matches(p, no), "{no}");
        }
        assert!(!wildcard_matches("EXAMPLE.COM", "EXAMPLE.COM"));
    }

    #[test]
    fn realm_names_for_dns() {
        dns_name("EXAMPLE.COM").unwrap();
        dns_name("AD.EXAMPLE-1.COM").unwrap();
        for bad in [
            "",
            "A..B",
            ".A",
            "A.",
            "A B",
            "A/B",
            "A\u{e9}",
            &"A".repeat(64),
        ] {
            assert!(dns_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn srv_names_per_service() {
        let kdc = srv_names(Service::Kdc, "A.ORG");
        assert_eq!(kdc[0], ("_kerberos._tcp.A.ORG.".to_string(), None));
        assert_eq!(kdc[1], ("_kerberos._udp.A.ORG.".to_string(), None));
        let kp = srv_names(Service::Kpasswd, "A.ORG");
        assert_eq!(kp[0], ("_kpasswd._tcp.A.ORG.".to_string(), None));
        assert_eq!(kp[1], ("_kerberos-adm._tcp.A.ORG.".to_string(), Some(464)));
    }

    #[test]
    fn order_is_by_priority_then_weight_and_bounded() {
        let t = |priority, weight, a: &str| Target {
            priority,
            weight,
            addresses: vec![sa(a)],
        };
        let targets = vec![
            t(10, 0, "192.0.2.9:88"),
            t(0, 1, "192.0.2.1:88"),
            t(0, 3, "192.0.2.2:88"),
        ];
        let mut firsts = HashMap::new();
        for _ in 0..400 {
            let o = order(&targets);
            assert_eq!(o.len(), 3);
            assert_eq!(
                o[2].to_string(),
                "192.0.2.9:88",
                "the higher priority is last"
            );
            *firsts.entry(o[0].to_string()).or_insert(0) += 1;
        }
        let (one, three) = (firsts["192.0.2.1:88"], firsts["192.0.2.2:88"]);
        assert!(
            one > 40 && three > 2 * one,
            "weights 1:3 gave {one}:{three}"
        );
        let many: Vec<Target> = (0..20)
            .map(|i| t(0, 1, &format!("192.0.2.{i}:88")))
            .collect();
        assert_eq!(order(&many).len(), MAX_SERVERS);
    }
}
