//! The in-process loopback relay.
//!
//! A locate plugin can only hand libkrb5 socket addresses, so for a realm
//! served over WebSockets the plugin returns the address of a relay: a TCP
//! listener on 127.0.0.1 (ephemeral port) inside the same process, one per
//! realm, service and URL list. libkrb5 speaks plain RFC 4120 TCP framing to
//! it; the relay hands each record to the target's [`Upstream`] (pool,
//! failover, deadlines) and writes the reply back. This carries every
//! libkrb5 path alike: KDC exchanges, kpasswd (which never passes through
//! the send hooks) and the primary-KDC retries.
//!
//! Lifetime: a relay's acceptor threads exit, closing the listener and the
//! upstream's pooled connections, once no lookup holds a [`Lease`] on it and
//! no connection has used it for [`IDLE`]. A lookup holds its lease from
//! [`relay_for`] until it has handed the address to libkrb5, and dropping
//! the lease restarts the idle clock: an address handed to libkrb5 stays
//! served for at least [`IDLE`], however long the lookup's warm-up took.
//!
//! Threads (leader/follower): one thread waits in accept(); when it takes
//! a connection it makes sure another is waiting (spawning one only when
//! none is), serves the connection, and goes back to accept(). Surplus idle
//! threads exit at the next tick. Every thread body runs inside
//! `panic::guard`.
//!
//! Fork: the registry remembers the pid that created it; a child process
//! never uses its parent's relays (their threads do not exist in the child)
//! and builds its own.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use krb5_wss_proto::framing;
use log::{debug, info, warn};
use socket2::{Domain, Socket, Type};

use crate::deadline::DeadlineStream;
use crate::upstream::{upstream_for, Upstream};
pub use crate::upstream::{AllFailed, Target};

/// How long an unused relay (and its pooled connections) lives on.
pub const IDLE: Duration = Duration::from_secs(10);
/// How often an idle accept loop wakes to check whether to retire.
const TICK: Duration = Duration::from_millis(500);
/// Concurrent worker threads per relay; past this, connections wait.
const WORKERS_MAX: usize = 64;
/// The largest request libkrb5 may hand the relay.
const MAX_REQUEST: usize = 1024 * 1024;

struct State {
    last_used: Instant,
    /// Lookups holding a lease.
    leases: usize,
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
    upstream: Arc<Upstream>,
    state: Mutex<State>,
}

/// A lookup's hold on a relay: it does not retire while this lives.
pub struct Lease {
    relay: Arc<Relay>,
}

impl Lease {
    /// The relay.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut st = lock(&self.relay.state);
        st.leases = st.leases.saturating_sub(1);
        st.last_used = Instant::now();
    }
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

/// The relay for `target`, started if needed, with a lease on it.
pub fn relay_for(target: &Target) -> Result<Lease, String> {
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
        if let Some(lease) = relay.lease() {
            return Ok(lease);
        }
        registry.relays.remove(target);
    }
    let relay = Relay::start(target)?;
    registry.relays.insert(target.clone(), relay.clone());
    relay
        .lease()
        .ok_or_else(|| "krb5-wss: the relay retired at once".to_string())
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
        let upstream = upstream_for(target)?;
        let listener =
            bind_loopback().map_err(|e| format!("krb5-wss: cannot open a loopback relay: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("krb5-wss: loopback relay address: {e}"))?;
        let relay = Arc::new(Relay {
            target: target.clone(),
            addr,
            upstream,
            state: Mutex::new(State {
                last_used: Instant::now(),
                leases: 0,
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

    /// The upstream the relay forwards to.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// A lease, unless the relay already retired.
    fn lease(self: &Arc<Self>) -> Option<Lease> {
        let mut st = lock(&self.state);
        if st.retired {
            return None;
        }
        st.leases += 1;
        st.last_used = Instant::now();
        Some(Lease {
            relay: self.clone(),
        })
    }

    /// Starts one more thread waiting in accept() (counted idle at once).
    fn spawn_acceptor(self: &Arc<Self>, listener: Arc<TcpListener>) -> io::Result<()> {
        lock(&self.state).idle += 1;
        let relay = self.clone();
        let spawned = std::thread::Builder::new()
            .name("krb5-wss-relay".into())
            .spawn(move || {
                let _ =
                    crate::panic::guard("the relay's accept loop", || relay.accept_loop(listener));
            });
        if spawned.is_err() {
            lock(&self.state).idle -= 1;
        }
        spawned.map(|_| ())
    }

    /// Retires the relay if no lease is held and it has been unused for
    /// [`IDLE`]. Takes the registry lock first (the same order as
    /// [`relay_for`]), so a lookup either sees the relay retired or keeps
    /// it alive.
    fn try_retire(self: &Arc<Self>) -> bool {
        let mut guard = lock(&REGISTRY);
        let mut st = lock(&self.state);
        if st.leases > 0 || st.active > 0 || st.idle > 1 || st.last_used.elapsed() < IDLE {
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

    /// One acceptor thread (see the module documentation).
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
                    // A panic while serving ends that connection only; the
                    // counts below are restored either way.
                    let _ = crate::panic::guard("the relay", || self.serve(sock));
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
        let n = self.upstream.close_pooled();
        info!(
            "realm {} {}: relay {} retired after {} s idle ({n} pooled connection(s) closed)",
            self.target.realm,
            self.target.service,
            self.addr,
            IDLE.as_secs()
        );
    }

    /// Serves one libkrb5 TCP connection: records in, records out. Reading
    /// a request and writing its reply each run under a deadline of the
    /// request timeout, so even a local peer that drips cannot hold the
    /// thread longer.
    fn serve(&self, sock: TcpStream) {
        let _ = sock.set_nodelay(true);
        let bound = self.target.request_timeout;
        // libkrb5 writes length and message with one sendmsg: one read
        // usually brings both.
        let mut reader = io::BufReader::with_capacity(
            16 * 1024,
            DeadlineStream::new(sock, Some(Instant::now() + bound)),
        );
        loop {
            reader.get_mut().set_deadline(Some(Instant::now() + bound));
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
            match self.upstream.exchange(&request) {
                Ok(reply) => {
                    let writer = reader.get_mut();
                    writer.set_deadline(Some(Instant::now() + bound));
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
}
