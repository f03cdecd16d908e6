//! The way to a realm's proxies: the connection pool, URL health and
//! failover, shared by the loopback relay (`relay`) and the send hook
//! (`hooks`).
//!
//! An [`Upstream`] serves one [`Target`] (a realm's URLs for one service).
//! It keeps up to [`POOL_MAX`] open WebSocket connections and carries each
//! request over one of them ([`Upstream::exchange`]).
//!
//! **Failover races, as MIT paces its own KDCs.** To open a connection it
//! starts the first URL (in [`try_order`]); when that URL has neither
//! connected nor failed after [`STAGGER`], it starts the next as well,
//! keeping the first in flight, and so on; a URL that fails starts the next
//! at once. The first completed handshake wins; the others are closed when
//! they complete. Each attempt is bounded by the realm's connect timeout.
//!
//! **URL health, process-wide.** A URL that failed (connect, TLS, HTTP,
//! web proxy, or an exchange), or that lost a race without having
//! completed its handshake, is tried after the realm's other URLs for
//! [`SKIP_AFTER_FAILURE`]; a success clears the mark. So a black-holed URL
//! costs one stagger per 30 s in a process, not one per request.
//!
//! **Fork.** The registry remembers the pid that created it: a forked child
//! never uses its parent's upstreams (their locks may have been held by a
//! parent thread at the fork, their sockets are the parent's) and builds
//! its own.

use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use krb5_wss_proto::Service;
use log::{debug, warn};

use crate::transport::{ExchangeFailure, TransportError, WssConnection};
use crate::url::WssUrl;

/// A pooled connection unused for this long is closed, not reused.
pub const POOL_IDLE: Duration = Duration::from_secs(10);
/// Open connections kept per upstream.
pub const POOL_MAX: usize = 8;
/// How long a URL's connect may run before the next URL is started too.
pub const STAGGER: Duration = Duration::from_millis(250);
/// How long a URL that failed is tried only after the realm's other URLs.
pub const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Failed URLs remembered (past this, expired marks are dropped first).
const HEALTH_MAX: usize = 256;
/// Upstreams kept per process (past this, unused ones are dropped).
const REGISTRY_MAX: usize = 64;
/// Extra wait for an attempt's thread to report after its own deadline.
const REPORT_GRACE: Duration = Duration::from_millis(200);

/// What an upstream forwards to: one realm's URLs for one service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The realm (for logs and error messages).
    pub realm: String,
    /// KDC or kpasswd (for logs and error messages).
    pub service: Service,
    /// URLs, in configured order.
    pub urls: Vec<WssUrl>,
    /// `http_anchors` values (empty: system store).
    pub anchors: Vec<String>,
    /// Bound on connect + TLS + WebSocket handshake, per URL.
    pub connect_timeout: Duration,
    /// Bound on one exchange.
    pub request_timeout: Duration,
    /// A configured web proxy (`wss_web_proxy`), used before the
    /// environment's.
    pub web_proxy: Option<String>,
    /// The client certificate to present (part of the key: targets with
    /// different certificates never share a pooled connection).
    pub client_identity: Option<crate::tls::Identity>,
}

impl Target {
    /// The target for `urls` of `service`, with the realm's TLS anchors and
    /// timeouts.
    pub fn new(cfg: &crate::config::RealmConfig, service: Service, urls: Vec<WssUrl>) -> Target {
        Target {
            realm: cfg.realm.clone(),
            service,
            urls,
            anchors: cfg.anchors.clone(),
            connect_timeout: cfg.connect_timeout,
            request_timeout: cfg.request_timeout,
            web_proxy: cfg.web_proxy.clone(),
            client_identity: cfg.client_identity.clone(),
        }
    }
}

/// Every URL failed; each with its own reason.
#[derive(Debug)]
pub struct AllFailed {
    /// The realm.
    pub realm: String,
    /// The service.
    pub service: Service,
    /// Each URL tried, and why it failed.
    pub failures: Vec<(String, TransportError)>,
}

impl fmt::Display for AllFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.service {
            Service::Kdc => "KDC",
            Service::Kpasswd => "kpasswd server",
        };
        write!(
            f,
            "Cannot contact any {what} for realm '{}' over wss: ",
            self.realm
        )?;
        if self.failures.is_empty() {
            return f.write_str("no URL to try");
        }
        for (i, (url, e)) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{url}: {e}")?;
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// URL health

/// When each recently failed URL failed (process-wide).
static HEALTH: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

/// Locks the URL health map (also taken by the fork handlers).
pub(crate) fn lock_health() -> MutexGuard<'static, Option<HashMap<String, Instant>>> {
    lock(&HEALTH)
}

/// Marks `url` failed now: tried last for [`SKIP_AFTER_FAILURE`].
pub fn mark_failed(url: &WssUrl) {
    let mut guard = lock_health();
    let map = guard.get_or_insert_with(HashMap::new);
    if map.len() >= HEALTH_MAX {
        map.retain(|_, at| at.elapsed() < SKIP_AFTER_FAILURE);
        if map.len() >= HEALTH_MAX {
            map.clear();
        }
    }
    map.insert(url.to_string(), Instant::now());
}

/// Clears `url`'s failure mark.
pub fn mark_ok(url: &WssUrl) {
    if let Some(map) = lock_health().as_mut() {
        map.remove(&url.to_string());
    }
}

/// `urls` in the order to try them: those that have not failed in the
/// last [`SKIP_AFTER_FAILURE`] first (in configured order), then the
/// others, oldest failure first (so a realm whose URLs all failed is still
/// tried, every URL of it).
pub fn try_order(urls: &[WssUrl]) -> Vec<&WssUrl> {
    let guard = lock_health();
    let failed_at = |u: &WssUrl| {
        guard
            .as_ref()
            .and_then(|m| m.get(&u.to_string()).copied())
            .filter(|at| at.elapsed() < SKIP_AFTER_FAILURE)
    };
    let mut good = Vec::with_capacity(urls.len());
    let mut bad = Vec::new();
    for u in urls {
        match failed_at(u) {
            None => good.push(u),
            Some(at) => bad.push((at, u)),
        }
    }
    drop(guard);
    if !bad.is_empty() {
        bad.sort_by_key(|(at, _)| *at);
        debug!(
            "recently failed, tried last: {}",
            bad.iter()
                .map(|(_, u)| u.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    good.into_iter()
        .chain(bad.into_iter().map(|(_, u)| u))
        .collect()
}

// ---------------------------------------------------------------------------
// The registry

/// The process's upstreams, by target.
pub(crate) struct Registry {
    pid: u32,
    upstreams: HashMap<Target, Arc<Upstream>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

/// Locks the upstream registry (also taken by the fork handlers).
pub(crate) fn lock_registry() -> MutexGuard<'static, Option<Registry>> {
    lock(&REGISTRY)
}

/// The upstream for `target`, made if needed. Fails (naming the realm)
/// when the realm's trust anchors cannot be loaded.
pub fn upstream_for(target: &Target) -> Result<Arc<Upstream>, String> {
    // Checked on every call (cached for a minute in `tls`), so a broken
    // http_anchors is reported at lookup time.
    crate::tls::client_config(&target.anchors, target.client_identity.as_ref())
        .map_err(|e| format!("krb5-wss: realm {}: {e}", target.realm))?;
    let pid = std::process::id();
    let mut guard = lock_registry();
    let registry = guard.get_or_insert_with(|| Registry {
        pid,
        upstreams: HashMap::new(),
    });
    if registry.pid != pid {
        // A forked child: forget (never drop) the parent's upstreams; a
        // parent thread may have held their pool locks at the fork.
        std::mem::forget(std::mem::take(&mut registry.upstreams));
        registry.pid = pid;
        debug!("forked child (pid {pid}): not reusing the parent's connections");
    }
    if let Some(u) = registry.upstreams.get(target) {
        return Ok(u.clone());
    }
    if registry.upstreams.len() >= REGISTRY_MAX {
        registry.upstreams.retain(|_, u| Arc::strong_count(u) > 1);
    }
    let u = Arc::new(Upstream {
        target: target.clone(),
        pool: Mutex::new(Vec::new()),
    });
    registry.upstreams.insert(target.clone(), u.clone());
    Ok(u)
}

// ---------------------------------------------------------------------------
// One upstream

/// The pooled connections of one target, and the way to open more.
pub struct Upstream {
    target: Target,
    pool: Mutex<Vec<WssConnection>>,
}

/// One connect attempt's report to the racing caller.
type Report = (usize, Result<WssConnection, TransportError>);

impl Upstream {
    /// The target served.
    pub fn target(&self) -> &Target {
        &self.target
    }

    fn take_pooled(&self, url: &WssUrl) -> Option<WssConnection> {
        let mut pool = lock(&self.pool);
        while let Some(i) = pool.iter().rposition(|c| c.url() == url) {
            let mut conn = pool.swap_remove(i);
            if conn.is_alive(POOL_IDLE) {
                return Some(conn);
            }
            debug!(
                "{}: pooled connection is closed or stale; dropping it",
                conn.url()
            );
        }
        None
    }

    fn put_back(&self, conn: WssConnection) {
        let mut pool = lock(&self.pool);
        if pool.len() < POOL_MAX {
            pool.push(conn);
        } else {
            drop(pool);
            conn.close();
        }
    }

    /// Closes every pooled connection (the relay retiring).
    pub fn close_pooled(&self) -> usize {
        let pooled = std::mem::take(&mut *lock(&self.pool));
        let n = pooled.len();
        for conn in pooled {
            conn.close();
        }
        n
    }

    /// Opens one connection to `url` (logged).
    fn connect_one(target: &Target, url: &WssUrl) -> Result<WssConnection, TransportError> {
        let start = Instant::now();
        debug!(
            "realm {} {}: connecting to {url}",
            target.realm, target.service
        );
        let result = crate::tls::client_config(&target.anchors, target.client_identity.as_ref())
            .map_err(TransportError::Tls)
            .and_then(|tls| {
                WssConnection::connect(
                    url,
                    &tls,
                    target.connect_timeout,
                    target.web_proxy.as_deref(),
                )
            });
        match &result {
            Ok(conn) => debug!(
                "realm {} {}: connected to {url} ({}{}) in {} ms",
                target.realm,
                target.service,
                conn.peer(),
                conn.via()
                    .map(|v| format!(" through web proxy {v}"))
                    .unwrap_or_default(),
                start.elapsed().as_millis()
            ),
            Err(e) => warn!("realm {} {}: {url}: {e}", target.realm, target.service),
        }
        result
    }

    /// Starts a thread connecting to `urls[i]` that reports on `tx`; a
    /// connection nobody waits for any more is closed.
    fn spawn_attempt(&self, urls: &[&WssUrl], i: usize, tx: &mpsc::Sender<Report>) -> bool {
        let Some(url) = urls.get(i).map(|u| (*u).clone()) else {
            return false;
        };
        let target = self.target.clone();
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("krb5-wss-connect".into())
            .spawn(move || {
                let result =
                    crate::panic::guard("connect attempt", || Self::connect_one(&target, &url))
                        .unwrap_or_else(|msg| Err(TransportError::Protocol(msg)));
                if let Err(mpsc::SendError((_, Ok(conn)))) = tx.send((i, result)) {
                    debug!("{url}: connected after another URL won; closing");
                    conn.close();
                }
            });
        spawned.is_ok()
    }

    /// Connects to one of `urls` (in that order, racing after [`STAGGER`]).
    /// Failures are marked and pushed to `failures`; so are the URLs that
    /// had not connected when another won.
    fn connect_racing(
        &self,
        urls: &[&WssUrl],
        failures: &mut Vec<(String, TransportError)>,
    ) -> Option<WssConnection> {
        if let [url] = urls {
            // One URL: no race, no thread.
            return match Self::connect_one(&self.target, url) {
                Ok(conn) => {
                    mark_ok(url);
                    Some(conn)
                }
                Err(e) => {
                    mark_failed(url);
                    failures.push((url.to_string(), e));
                    None
                }
            };
        }
        let (tx, rx) = mpsc::channel::<Report>();
        let mut started = 0;
        let mut pending: Vec<usize> = Vec::new();
        let mut next_start = Instant::now();
        let mut last_deadline = Instant::now();
        loop {
            let now = Instant::now();
            if started < urls.len() && now >= next_start {
                let i = started;
                started += 1;
                if self.spawn_attempt(urls, i, &tx) {
                    pending.push(i);
                    last_deadline = now + self.target.connect_timeout + REPORT_GRACE;
                    next_start = now + STAGGER;
                } else if let Some(url) = urls.get(i) {
                    // No thread to be had: connect in this one.
                    match Self::connect_one(&self.target, url) {
                        Ok(conn) => {
                            mark_ok(url);
                            self.lost_race(urls, &pending);
                            return Some(conn);
                        }
                        Err(e) => {
                            mark_failed(url);
                            failures.push((url.to_string(), e));
                        }
                    }
                }
                continue;
            }
            if pending.is_empty() && started >= urls.len() {
                return None;
            }
            let until = if started < urls.len() {
                next_start
            } else {
                last_deadline
            };
            let wait = until.saturating_duration_since(now);
            match rx.recv_timeout(wait) {
                Ok((i, Ok(conn))) => {
                    pending.retain(|&p| p != i);
                    if let Some(url) = urls.get(i) {
                        mark_ok(url);
                    }
                    self.lost_race(urls, &pending);
                    return Some(conn);
                }
                Ok((i, Err(e))) => {
                    pending.retain(|&p| p != i);
                    if let Some(url) = urls.get(i) {
                        mark_failed(url);
                        failures.push((url.to_string(), e));
                    }
                    // A failure starts the next URL at once.
                    next_start = Instant::now();
                }
                Err(mpsc::RecvTimeoutError::Timeout) if started >= urls.len() => {
                    for i in pending {
                        if let Some(url) = urls.get(i) {
                            mark_failed(url);
                            failures.push((
                                url.to_string(),
                                TransportError::Timeout {
                                    phase: "connecting",
                                    after: self.target.connect_timeout,
                                },
                            ));
                        }
                    }
                    return None;
                }
                Err(_) => {}
            }
        }
    }

    /// Marks the URLs still connecting when another won: they were slower
    /// than the winner by at least a stagger, so they go last for a while.
    fn lost_race(&self, urls: &[&WssUrl], pending: &[usize]) {
        for &i in pending {
            if let Some(url) = urls.get(i) {
                debug!(
                    "realm {} {}: {url} had not connected when another URL did; tried last for {} s",
                    self.target.realm,
                    self.target.service,
                    SKIP_AFTER_FAILURE.as_secs()
                );
                mark_failed(url);
            }
        }
    }

    fn exchange_on(
        &self,
        conn: &mut WssConnection,
        request: &[u8],
        reused: bool,
    ) -> Result<Vec<u8>, ExchangeFailure> {
        let start = Instant::now();
        let result = conn.exchange(request, self.target.request_timeout);
        match &result {
            Ok(reply) => debug!(
                "realm {} {}: {} exchange over {} ({}, exchange #{}): sent {} bytes, received {} bytes in {} us",
                self.target.realm,
                self.target.service,
                message_name(request, self.target.service),
                conn.url(),
                // The lookup's warm-up pools a connection not yet upgraded:
                // its first exchange is a new connection's.
                match (conn.exchanges() == 1 && conn.carried_first(), reused) {
                    (true, _) => "new connection, request carried in the upgrade",
                    (false, true) => "pooled connection",
                    (false, false) => "new connection",
                },
                conn.exchanges(),
                request.len(),
                reply.len(),
                start.elapsed().as_micros()
            ),
            Err(f) if f.stale => debug!(
                "realm {} {}: {}: pooled connection was closed by the server ({}); reconnecting and resending",
                self.target.realm,
                self.target.service,
                conn.url(),
                f.error
            ),
            Err(f) => warn!(
                "realm {} {}: {}: {}",
                self.target.realm,
                self.target.service,
                conn.url(),
                f.error
            ),
        }
        result
    }

    /// Sends `request` and returns the reply: over a pooled connection
    /// when one is open (a stale one is replaced and the request resent),
    /// else over a new one (racing the URLs). A URL whose exchange failed
    /// is not used again for this request.
    pub fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, AllFailed> {
        self.exchange_via(request).map(|(reply, _)| reply)
    }

    /// Like [`Upstream::exchange`], also naming the URL that answered.
    pub fn exchange_via(&self, request: &[u8]) -> Result<(Vec<u8>, WssUrl), AllFailed> {
        let mut failures = Vec::new();
        let mut left: Vec<&WssUrl> = try_order(&self.target.urls);
        loop {
            // Pooled connections first, in URL order.
            let pooled = left
                .iter()
                .find_map(|u| self.take_pooled(u).map(|c| (*u, c)));
            let (url, mut conn, reused) = match pooled {
                Some((url, conn)) => (url, conn, true),
                None => {
                    if left.is_empty() {
                        break;
                    }
                    let before = failures.len();
                    let Some(conn) = self.connect_racing(&left, &mut failures) else {
                        break;
                    };
                    let failed: Vec<String> = failures
                        .get(before..)
                        .unwrap_or_default()
                        .iter()
                        .map(|(u, _)| u.clone())
                        .collect();
                    left.retain(|u| !failed.contains(&u.to_string()));
                    let Some(url) = left.iter().copied().find(|u| *u == conn.url()) else {
                        break;
                    };
                    (url, conn, false)
                }
            };
            match self.exchange_on(&mut conn, request, reused) {
                Ok(reply) => {
                    self.put_back(conn);
                    mark_ok(url);
                    return Ok((reply, url.clone()));
                }
                Err(f) if f.stale => continue,
                Err(f) => {
                    mark_failed(url);
                    failures.push((url.to_string(), f.error));
                    left.retain(|u| *u != url);
                }
            }
        }
        Err(AllFailed {
            realm: self.target.realm.clone(),
            service: self.target.service,
            failures,
        })
    }

    /// Makes sure a live connection to some URL is pooled, connecting if
    /// needed. Run at lookup time, so that an unreachable proxy or a
    /// certificate problem is reported to the application through
    /// libkrb5's error message, not only in the log.
    pub fn warm_up(&self) -> Result<(), AllFailed> {
        {
            let mut pool = lock(&self.pool);
            while let Some(conn) = pool.last_mut() {
                if conn.is_alive(POOL_IDLE) {
                    debug!(
                        "realm {} {}: an open connection to {} is pooled",
                        self.target.realm,
                        self.target.service,
                        conn.url()
                    );
                    return Ok(());
                }
                pool.pop();
            }
        }
        let mut failures = Vec::new();
        match self.connect_racing(&try_order(&self.target.urls), &mut failures) {
            Some(conn) => {
                self.put_back(conn);
                Ok(())
            }
            None => Err(AllFailed {
                realm: self.target.realm.clone(),
                service: self.target.service,
                failures,
            }),
        }
    }
}

/// Names a request for the log: AS-REQ, TGS-REQ, kpasswd v1, ...
fn message_name(request: &[u8], service: Service) -> String {
    use krb5_wss_proto::kerberos::{check_kdc_request, check_kpasswd_request};
    match service {
        Service::Kdc => check_kdc_request(request)
            .map(|r| r.kind.name().to_string())
            .unwrap_or_else(|_| "KDC".into()),
        Service::Kpasswd => check_kpasswd_request(request)
            .map(|r| format!("kpasswd v{:#06x}", r.version))
            .unwrap_or_else(|_| "kpasswd".into()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn url(s: &str) -> WssUrl {
        WssUrl::parse(s, "/kdc").unwrap()
    }

    #[test]
    fn failed_urls_go_last_oldest_failure_first() {
        let urls = vec![
            url("wss://order-a.test/kdc"),
            url("wss://order-b.test/kdc"),
            url("wss://order-c.test/kdc"),
        ];
        mark_failed(&urls[1]);
        std::thread::sleep(Duration::from_millis(2));
        mark_failed(&urls[0]);
        let order: Vec<String> = try_order(&urls)
            .iter()
            .map(|u| u.host.to_string())
            .collect();
        assert_eq!(order, ["order-c.test", "order-b.test", "order-a.test"]);
        mark_ok(&urls[0]);
        mark_ok(&urls[1]);
        let order: Vec<String> = try_order(&urls)
            .iter()
            .map(|u| u.host.to_string())
            .collect();
        assert_eq!(order, ["order-a.test", "order-b.test", "order-c.test"]);
    }

    /// A listener that accepts and never answers (a black hole): its TLS
    /// handshake never ends, so connecting to it times out (the upgrade,
    /// and a plain ws:// connection, wait for the first exchange).
    fn black_hole() -> (std::net::TcpListener, String) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, format!("wss://127.0.0.1:{port}/kdc"))
    }

    fn target(urls: Vec<WssUrl>) -> Target {
        Target {
            realm: "RACE.TEST".into(),
            service: Service::Kdc,
            urls,
            anchors: Vec::new(),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(3),
            web_proxy: None,
            client_identity: None,
        }
    }

    #[test]
    fn three_black_holes_are_raced_and_each_named() {
        let holes: Vec<_> = (0..3).map(|_| black_hole()).collect();
        let urls: Vec<WssUrl> = holes.iter().map(|(_, u)| url(u)).collect();
        let up = Upstream {
            target: Target {
                connect_timeout: Duration::from_millis(600),
                ..target(urls.clone())
            },
            pool: Mutex::new(Vec::new()),
        };
        let start = Instant::now();
        let err = up.warm_up().unwrap_err();
        let took = start.elapsed();
        // Raced: the last starts at 2 staggers and times out 600 ms later,
        // not 3 × 600 ms in sequence.
        assert!(took < Duration::from_millis(1600), "{took:?}");
        assert_eq!(err.failures.len(), 3, "{err}");
        for u in &urls {
            assert!(err.to_string().contains(&u.to_string()), "{err}");
        }
        for u in &urls {
            mark_ok(u);
        }
    }
}
