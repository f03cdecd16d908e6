//! The in-process loopback relay.
//!
//! A locate plugin can only hand libkrb5 socket addresses, so for a realm
//! served over WebSockets the plugin returns the address of a relay: a TCP
//! listener on 127.0.0.1 (ephemeral port) inside the same process, one per
//! realm, service and URL list. libkrb5 speaks plain RFC 4120 TCP framing to
//! it; the relay forwards each record over a pooled wss connection and
//! writes the reply back. This carries every libkrb5 path alike: KDC
//! exchanges, kpasswd (which never passes through the send hooks) and the
//! primary-KDC retries.
//!
//! Lifetime: a relay's accept thread exits, closing the listener and its
//! pooled connections, once no lookup has named it and no connection has
//! used it for [`IDLE`]. A lookup refreshes that clock under the registry
//! lock, so an address handed to libkrb5 stays served for at least that
//! long. Each accepted connection gets a short-lived worker thread.
//!
//! Fork: the registry remembers the pid that created it; a child process
//! never uses its parent's relays (their threads do not exist in the child)
//! and builds its own.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use krb5_wss_proto::framing;
use krb5_wss_proto::Service;
use log::{debug, info, warn};
use socket2::{Domain, Socket, Type};

use crate::transport::{ExchangeFailure, TransportError, WssConnection};
use crate::url::WssUrl;

/// How long an unused relay (and its pooled connections) lives on.
pub const IDLE: Duration = Duration::from_secs(10);
/// How often an idle accept loop wakes to check whether to retire.
const TICK: Duration = Duration::from_millis(500);
/// Idle wss connections kept per relay.
const POOL_MAX: usize = 8;
/// Concurrent worker threads per relay; past this, connections wait.
const WORKERS_MAX: usize = 64;
/// The largest request libkrb5 may hand the relay.
const MAX_REQUEST: usize = 1024 * 1024;

/// What a relay forwards to: one realm's URLs for one service.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The realm (for logs and error messages).
    pub realm: String,
    /// KDC or kpasswd (for logs and error messages).
    pub service: Service,
    /// URLs, tried in order.
    pub urls: Vec<WssUrl>,
    /// `http_anchors` values (empty: system store).
    pub anchors: Vec<String>,
    /// Bound on connect + TLS + WebSocket handshake, per URL.
    pub connect_timeout: Duration,
    /// Bound on one exchange.
    pub request_timeout: Duration,
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

struct State {
    last_used: Instant,
    /// Threads serving a libkrb5 connection.
    active: usize,
    /// Threads waiting in accept().
    idle: usize,
    retired: bool,
}

/// A running relay.
pub struct Relay {
    target: Target,
    addr: SocketAddr,
    tls: Arc<crate::tls::Client>,
    pool: Mutex<Vec<WssConnection>>,
    state: Mutex<State>,
}

/// The process's relays, by target.
pub(crate) struct Registry {
    pid: u32,
    relays: HashMap<Target, Arc<Relay>>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Locks the relay registry (also taken by the fork handlers).
pub(crate) fn lock_registry() -> MutexGuard<'static, Option<Registry>> {
    lock(&REGISTRY)
}

/// How long a URL that failed (refused, timed out, TLS, HTTP or proxy
/// error) is tried only after the realm's other URLs.
pub const SKIP_AFTER_FAILURE: Duration = Duration::from_secs(30);
const HEALTH_MAX: usize = 256;

/// When each recently failed URL failed (process-wide, shared by relays).
static HEALTH: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);

/// Locks the URL health map (also taken by the fork handlers).
pub(crate) fn lock_health() -> MutexGuard<'static, Option<HashMap<String, Instant>>> {
    lock(&HEALTH)
}

fn mark_failed(url: &WssUrl) {
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

fn mark_ok(url: &WssUrl) {
    if let Some(map) = lock_health().as_mut() {
        map.remove(&url.to_string());
    }
}

/// `urls` in the order to try them: those that have not failed in the
/// last [`SKIP_AFTER_FAILURE`] first (in configured order), then the
/// others (so a realm whose URLs all failed is still tried).
pub fn try_order(urls: &[WssUrl]) -> Vec<&WssUrl> {
    let guard = lock_health();
    let failed = |u: &WssUrl| {
        guard
            .as_ref()
            .and_then(|m| m.get(&u.to_string()))
            .is_some_and(|at| at.elapsed() < SKIP_AFTER_FAILURE)
    };
    let (bad, good): (Vec<&WssUrl>, Vec<&WssUrl>) = urls.iter().partition(|u| failed(u));
    if !bad.is_empty() {
        debug!(
            "recently failed, tried last: {}",
            bad.iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    good.into_iter().chain(bad).collect()
}

/// The relay for `target`, started if needed; its use clock is refreshed.
pub fn relay_for(target: &Target) -> Result<Arc<Relay>, String> {
    let pid = std::process::id();
    let mut guard = lock(&REGISTRY);
    let registry = guard.get_or_insert_with(|| Registry {
        pid,
        relays: HashMap::new(),
    });
    if registry.pid != pid {
        // A forked child: the parent's relay threads do not exist here.
        // Forget (never drop) their state: the parent's threads may have
        // held its locks at fork time.
        let stale = std::mem::take(&mut registry.relays);
        std::mem::forget(stale);
        registry.pid = pid;
        debug!("forked child (pid {pid}): not reusing the parent's relays");
    }
    if let Some(relay) = registry.relays.get(target) {
        if relay.touch() {
            return Ok(relay.clone());
        }
        registry.relays.remove(target);
    }
    let relay = Relay::start(target)?;
    registry.relays.insert(target.clone(), relay.clone());
    Ok(relay)
}

fn bind_loopback() -> io::Result<TcpListener> {
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, 0));
    let mut last = None;
    for addr in [v4, v6] {
        let socket = match Socket::new(Domain::for_address(addr), Type::STREAM, None) {
            Ok(s) => s,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        // SO_RCVTIMEO makes accept() return EAGAIN, so the loop can retire.
        let bound = socket
            .set_read_timeout(Some(TICK))
            .and_then(|_| socket.bind(&addr.into()))
            .and_then(|_| socket.listen(64));
        match bound {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no loopback address")))
}

impl Relay {
    fn start(target: &Target) -> Result<Arc<Relay>, String> {
        let tls = crate::tls::client_config(&target.anchors)
            .map_err(|e| format!("krb5-wss: realm {}: {e}", target.realm))?;
        let listener =
            bind_loopback().map_err(|e| format!("krb5-wss: cannot open a loopback relay: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("krb5-wss: loopback relay address: {e}"))?;
        let relay = Arc::new(Relay {
            target: target.clone(),
            addr,
            tls,
            pool: Mutex::new(Vec::new()),
            state: Mutex::new(State {
                last_used: Instant::now(),
                active: 0,
                idle: 0,
                retired: false,
            }),
        });
        relay
            .spawn_acceptor(Arc::new(listener))
            .map_err(|e| format!("krb5-wss: cannot start the relay thread: {e}"))?;
        info!(
            "realm {} {}: relay {} started for {}",
            target.realm,
            target.service,
            addr,
            target
                .urls
                .iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(relay)
    }

    /// The loopback address libkrb5 should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Refreshes the use clock; false if the relay already retired.
    fn touch(&self) -> bool {
        let mut st = lock(&self.state);
        if st.retired {
            return false;
        }
        st.last_used = Instant::now();
        true
    }

    /// Starts one more thread waiting in accept() (counted idle at once).
    fn spawn_acceptor(self: &Arc<Self>, listener: Arc<TcpListener>) -> io::Result<()> {
        lock(&self.state).idle += 1;
        let relay = self.clone();
        let spawned = std::thread::Builder::new()
            .name("krb5-wss-relay".into())
            .spawn(move || relay.accept_loop(listener));
        if spawned.is_err() {
            lock(&self.state).idle -= 1;
        }
        spawned.map(|_| ())
    }

    /// Retires the relay if it has been unused for [`IDLE`]. Takes the
    /// registry lock first (the same order as [`relay_for`]), so a lookup
    /// either sees the relay retired or keeps it alive.
    fn try_retire(self: &Arc<Self>) -> bool {
        let mut guard = lock(&REGISTRY);
        let mut st = lock(&self.state);
        if st.active > 0 || st.idle > 1 || st.last_used.elapsed() < IDLE {
            return false;
        }
        st.retired = true;
        if let Some(reg) = guard.as_mut() {
            if reg.pid == std::process::id()
                && reg
                    .relays
                    .get(&self.target)
                    .is_some_and(|r| Arc::ptr_eq(r, self))
            {
                reg.relays.remove(&self.target);
            }
        }
        true
    }

    /// One acceptor thread (leader/follower): it accepts a connection,
    /// makes sure another thread is waiting in accept() (spawning one only
    /// when none is), serves the connection, and goes back to accept().
    /// So a process that talks to the relay one connection at a time keeps
    /// two threads and spawns none per exchange; concurrent callers get up
    /// to WORKERS_MAX threads. Surplus idle threads exit at the next tick;
    /// the last one retires the relay after IDLE.
    fn accept_loop(self: Arc<Self>, listener: Arc<TcpListener>) {
        loop {
            match listener.accept() {
                Ok((sock, peer)) => {
                    if !peer.ip().is_loopback() {
                        continue;
                    }
                    let need_follower = {
                        let mut st = lock(&self.state);
                        st.idle -= 1;
                        st.active += 1;
                        st.last_used = Instant::now();
                        st.idle == 0 && st.active < WORKERS_MAX
                    };
                    if need_follower {
                        if let Err(e) = self.spawn_acceptor(listener.clone()) {
                            warn!(
                                "realm {}: cannot start a relay thread: {e}",
                                self.target.realm
                            );
                        }
                    }
                    self.serve(sock);
                    let mut st = lock(&self.state);
                    st.active -= 1;
                    st.idle += 1;
                    st.last_used = Instant::now();
                }
                Err(e) => {
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) {
                        debug!("relay {}: accept: {e}", self.addr);
                        std::thread::sleep(TICK);
                    }
                    {
                        let mut st = lock(&self.state);
                        if st.retired || st.idle > 1 {
                            st.idle -= 1;
                            return;
                        }
                    }
                    if self.try_retire() {
                        break;
                    }
                }
            }
        }
        drop(listener);
        let pooled = std::mem::take(&mut *lock(&self.pool));
        let n = pooled.len();
        for conn in pooled {
            conn.close();
        }
        info!(
            "realm {} {}: relay {} retired after {} s idle ({n} pooled connection(s) closed)",
            self.target.realm,
            self.target.service,
            self.addr,
            IDLE.as_secs()
        );
    }

    /// Serves one libkrb5 TCP connection: records in, records out.
    fn serve(&self, sock: TcpStream) {
        let _ = sock.set_nodelay(true);
        let _ = sock.set_read_timeout(Some(self.target.request_timeout));
        let _ = sock.set_write_timeout(Some(self.target.request_timeout));
        // libkrb5 writes length and message with one sendmsg: one read
        // usually brings both.
        let mut reader = io::BufReader::with_capacity(16 * 1024, &sock);
        let mut writer = &sock;
        loop {
            let mut header = [0u8; framing::HEADER_LEN];
            match reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(_) => break, // EOF between requests is the normal end
            }
            let len = match framing::parse_header(header, MAX_REQUEST) {
                Ok(len) => len,
                Err(e) => {
                    warn!(
                        "realm {}: relay {}: bad request from libkrb5: {e}",
                        self.target.realm, self.addr
                    );
                    break;
                }
            };
            let mut request = vec![0u8; len];
            if reader.read_exact(&mut request).is_err() {
                break;
            }
            match self.exchange(&request) {
                Ok(reply) => {
                    if writer.write_all(&framing::encode(&reply)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    // Closing without a reply makes libkrb5 move on and,
                    // with no other server left, report "Cannot contact
                    // any KDC"; the log says why.
                    warn!("{e}");
                    break;
                }
            }
        }
    }

    fn take_pooled(&self, url: &WssUrl) -> Option<WssConnection> {
        let mut pool = lock(&self.pool);
        while let Some(i) = pool.iter().rposition(|c| c.url() == url) {
            let mut conn = pool.swap_remove(i);
            if conn.is_alive(IDLE) {
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

    fn connect(&self, url: &WssUrl) -> Result<WssConnection, TransportError> {
        let start = Instant::now();
        debug!(
            "realm {} {}: connecting to {url}",
            self.target.realm, self.target.service
        );
        match WssConnection::connect(url, &self.tls, self.target.connect_timeout) {
            Ok(conn) => {
                debug!(
                    "realm {} {}: connected to {url} ({}{}) in {} ms",
                    self.target.realm,
                    self.target.service,
                    conn.peer(),
                    conn.via()
                        .map(|v| format!(" through web proxy {v}"))
                        .unwrap_or_default(),
                    start.elapsed().as_millis()
                );
                Ok(conn)
            }
            Err(e) => {
                warn!(
                    "realm {} {}: {url}: {e}",
                    self.target.realm, self.target.service
                );
                Err(e)
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
                "realm {} {}: {} exchange over {} ({} connection, exchange #{}): sent {} bytes, received {} bytes in {} us",
                self.target.realm,
                self.target.service,
                message_name(request, self.target.service),
                conn.url(),
                if reused { "pooled" } else { "new" },
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

    /// Sends `request` over the first URL that answers; a stale pooled
    /// connection is replaced and the request resent.
    pub fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, AllFailed> {
        let mut failures = Vec::new();
        'urls: for url in try_order(&self.target.urls) {
            while let Some(mut conn) = self.take_pooled(url) {
                match self.exchange_on(&mut conn, request, true) {
                    Ok(reply) => {
                        self.put_back(conn);
                        mark_ok(url);
                        return Ok(reply);
                    }
                    Err(f) if f.stale => continue,
                    Err(f) => {
                        mark_failed(url);
                        failures.push((url.to_string(), f.error));
                        continue 'urls;
                    }
                }
            }
            let mut conn = match self.connect(url) {
                Ok(c) => c,
                Err(e) => {
                    failures.push((url.to_string(), e));
                    continue;
                }
            };
            match self.exchange_on(&mut conn, request, false) {
                Ok(reply) => {
                    self.put_back(conn);
                    mark_ok(url);
                    return Ok(reply);
                }
                Err(f) => {
                    mark_failed(url);
                    failures.push((url.to_string(), f.error));
                }
            }
        }
        Err(AllFailed {
            realm: self.target.realm.clone(),
            service: self.target.service,
            failures,
        })
    }

    /// Makes sure a live connection to some URL is pooled, connecting in
    /// URL order if needed. Run at lookup time, so that an unreachable
    /// proxy or a certificate problem is reported to the application
    /// through libkrb5's error message, not only in the log.
    pub fn warm_up(&self) -> Result<(), AllFailed> {
        {
            let mut pool = lock(&self.pool);
            while let Some(conn) = pool.last_mut() {
                if conn.is_alive(IDLE) {
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
        for url in try_order(&self.target.urls) {
            match self.connect(url) {
                Ok(conn) => {
                    self.put_back(conn);
                    mark_ok(url);
                    return Ok(());
                }
                Err(e) => failures.push((url.to_string(), e)),
            }
        }
        Err(AllFailed {
            realm: self.target.realm.clone(),
            service: self.target.service,
            failures,
        })
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
