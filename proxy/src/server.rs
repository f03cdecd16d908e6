//! Listeners, admission of new connections (the connection limits) and the
//! per-connection TLS + HTTP phase, bounded by the handshake deadline.

use crate::admission::{AddrGuard, Admit, CountGuard};
use crate::client::Client;
use crate::clientcert::PeerCert;
use crate::config::Config;
use crate::exchange::Refusal;
use crate::http;
use crate::logfmt::Value;
use crate::ratelimit::TokenBucket;
use crate::state::{Active, Shared};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use krb5_wss_proto::close;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::{sleep_until, timeout_at, Instant};

/// Largest HTTP read buffer (request line and headers).
const MAX_HTTP_BUFFER: usize = 64 * 1024;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The deadline of a connection's HTTP phase. It starts as the handshake
/// deadline; an MS-KKDCP request extends it by the time its exchange may
/// take, once its body is in; an MS-KKDCP answer that keeps the
/// connection open sets it to the idle deadline, and the next request's
/// headers set it to that request's deadline (see [`crate::kkdcp`]).
/// Whoever waits on it is woken when it moves.
#[derive(Debug)]
pub struct Deadline(watch::Sender<Instant>);

impl Deadline {
    /// A deadline at `at`.
    pub fn new(at: Instant) -> Deadline {
        Deadline(watch::Sender::new(at))
    }

    /// The deadline now.
    pub fn get(&self) -> Instant {
        *self.0.borrow()
    }

    /// Moves the deadline to `at` (never earlier than it is).
    pub fn extend_to(&self, at: Instant) {
        self.0.send_if_modified(|d| {
            let later = at > *d;
            if later {
                *d = at;
            }
            later
        });
    }

    /// Moves the deadline to `at`, earlier or later.
    pub fn set(&self, at: Instant) {
        self.0.send_replace(at);
    }

    /// A receiver that sees the deadline move.
    fn watch(&self) -> watch::Receiver<Instant> {
        self.0.subscribe()
    }
}

/// What the HTTP routing, the WebSocket session and the MS-KKDCP endpoint
/// know about their connection.
pub struct ConnContext {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The configuration the connection runs with (a snapshot).
    pub config: Arc<Config>,
    /// Shared state: counters, metrics, shutdown.
    pub shared: Arc<Shared>,
    /// Set when admission decided to refuse the connection after its
    /// handshake (connection limits).
    pub refusal: Option<Refusal>,
    /// The deadline of the HTTP phase.
    pub deadline: Deadline,
    /// The connection's request rate.
    pub rate: Mutex<TokenBucket>,
    /// MS-KKDCP answers after which the connection stayed open for
    /// another request (HTTP/1.1 keep-alive).
    pub kept_alive: AtomicU64,
    /// The client certificate the TLS handshake verified, if any.
    pub client_cert: Option<PeerCert>,
    /// The connection's place under the connection limit.
    _slot: CountGuard,
    /// The connection's count against its (TCP peer) address.
    _address: Option<AddrGuard>,
}

impl ConnContext {
    /// Takes one request from the connection's rate budget.
    pub fn take_request(&self) -> bool {
        self.rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .try_take()
    }
}

/// Binds every configured listen address; errors name the address.
pub async fn bind(addresses: &[SocketAddr]) -> Result<Vec<TcpListener>, String> {
    let mut listeners = Vec::with_capacity(addresses.len());
    for address in addresses {
        let l = TcpListener::bind(address)
            .await
            .map_err(|e| format!("cannot listen on {address}: {e}"))?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// Accepts connections on `listener` until the shutdown begins.
pub async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = shutdown.wait() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                log::warn!("accept failed: {e}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        shared.metrics.connection();
        let active = shared.active();
        let Some(ctx) = admit(&shared, &active, peer) else {
            continue;
        };
        tokio::spawn(connection(active, tcp, ctx));
    }
}

/// Applies the connection limits to a new connection from `peer`: a
/// context (possibly carrying a refusal to deliver after the handshake),
/// or `None` when the connection must be closed at once.
fn admit(shared: &Arc<Shared>, active: &Active, peer: SocketAddr) -> Option<ConnContext> {
    let config = &active.config;
    let limits = &config.limits;
    let client = Client::direct(peer);
    let admission = &shared.admission;
    let (slot, address, refusal) = match admission.connection(limits.max_connections) {
        Admit::Accepted(slot) => {
            // A trusted front's connections carry many clients: they are
            // counted per client at the HTTP request instead.
            let behind_front = config.trusted_proxies.iter().any(|n| n.contains(client.ip));
            if behind_front {
                (slot, None, None)
            } else {
                match admission.address(client.key(), limits.max_connections_per_address) {
                    Some(a) => (slot, Some(a), None),
                    None => {
                        // Refused connections do not hold places under the
                        // connection limit: they take an overflow place.
                        drop(slot);
                        let Some(place) = admission.overflow_place() else {
                            note_drop(shared, peer, "every overflow place is taken");
                            return None;
                        };
                        let refusal = Refusal::new(
                            close::RATE_LIMITED,
                            format!(
                                "{} connections open from {} (max_connections_per_address)",
                                limits.max_connections_per_address,
                                client.key()
                            ),
                        );
                        (place, None, Some(refusal))
                    }
                }
            }
        }
        Admit::Overloaded(place) => {
            let refusal = Refusal::new(
                close::OVERLOADED,
                format!(
                    "{} connections open (max_connections)",
                    limits.max_connections
                ),
            );
            (place, None, Some(refusal))
        }
        Admit::Dropped => {
            note_drop(
                shared,
                peer,
                &format!("{} connections open", limits.max_connections),
            );
            return None;
        }
    };
    Some(ConnContext {
        peer,
        config: config.clone(),
        shared: shared.clone(),
        refusal,
        deadline: Deadline::new(Instant::now() + limits.handshake_timeout),
        rate: Mutex::new(TokenBucket::new(limits.max_requests_per_second)),
        kept_alive: AtomicU64::new(0),
        client_cert: None,
        _slot: slot,
        _address: address,
    })
}

/// Counts a dropped connection; logs the first and then every 1000th, not
/// a line per connection of a flood.
fn note_drop(shared: &Shared, peer: SocketAddr, why: &str) {
    let n = shared.metrics.dropped();
    if n % 1000 == 0 {
        log::warn!(
            "refused client={peer} reason=overloaded detail=\"{why}; connection dropped \
             before the handshake ({} such drops so far)\"",
            n + 1
        );
    }
}

/// One client connection: TLS (if configured), then HTTP until the
/// request is answered or upgraded, all within the connection's deadline.
async fn connection(active: Arc<Active>, tcp: TcpStream, mut ctx: ConnContext) {
    let _ = tcp.set_nodelay(true);
    let peer = ctx.peer;
    match &active.tls {
        Some(acceptor) => match timeout_at(ctx.deadline.get(), acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => {
                ctx.client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| PeerCert::from_der(leaf.as_ref()));
                http(tls, Arc::new(ctx)).await
            }
            Ok(Err(e)) => match crate::tls::client_cert_failure(&e) {
                // One line per connection refused for its certificate:
                // the operator's evidence, as for a refused request.
                Some((reason, detail)) => {
                    ctx.shared
                        .metrics
                        .client_cert_refusal(reason == crate::tls::CLIENT_CERT_MISSING);
                    log::info!(
                        "refused client={peer} reason={} detail={}",
                        Value(reason),
                        Value(&detail)
                    )
                }
                None => log::debug!("client={peer} TLS handshake failed: {e}"),
            },
            Err(_) => handshake_timed_out(&ctx, "TLS handshake"),
        },
        None => http(tcp, Arc::new(ctx)).await,
    }
}

/// The one line for a connection cut at its deadline (a slowloris, or a
/// client that connects and says nothing).
fn handshake_timed_out(ctx: &ConnContext, phase: &str) {
    log::info!(
        "refused client={} reason=\"handshake timed out\" detail=\"{phase} not complete \
         within {:?} (handshake_timeout)\"",
        ctx.peer,
        ctx.config.limits.handshake_timeout
    );
}

async fn http<I>(io: I, ctx: Arc<ConnContext>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = ctx.peer;
    let handler_ctx = ctx.clone();
    let service = service_fn(move |req| http::handle(req, handler_ctx.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        // The connection's deadline bounds the headers (hyper's own timer
        // would start again, at handshake_timeout, while a kept-alive
        // connection waits for its next request, not at idle_timeout).
        .header_read_timeout(None)
        .max_buf_size(MAX_HTTP_BUFFER)
        // keep_alive(false) would make hyper answer the upgrade with
        // "Connection: Upgrade, close", which strict WebSocket clients
        // (tungstenite) refuse. The whole HTTP phase is still bounded by
        // the connection's deadline below; MS-KKDCP answers say whether
        // the connection stays open (crate::kkdcp).
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let mut moved = ctx.deadline.watch();
    let mut shutdown = ctx.shared.shutdown_signal();
    let mut draining = false;
    loop {
        let at = *moved.borrow_and_update();
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    log::debug!("client={peer} HTTP error: {e}");
                }
                break;
            }
            // The deadline moved while we waited.
            Ok(()) = moved.changed() => continue,
            () = sleep_until(at) => {
                if ctx.deadline.get() > Instant::now() {
                    continue;
                }
                match ctx.kept_alive.load(Ordering::Relaxed) {
                    0 => handshake_timed_out(&ctx, "HTTP request"),
                    n => log::debug!(
                        "client={peer} MS-KKDCP connection closed after {n} answer(s): no \
                         complete request within idle_timeout ({:?}) of the last answer, or \
                         within record_timeout ({:?}) of its headers",
                        ctx.config.limits.idle_timeout,
                        ctx.config.limits.record_timeout
                    ),
                }
                break;
            }
            // A connection kept open between MS-KKDCP requests closes when
            // the shutdown begins (after the answer in progress, if any);
            // others are bounded by the handshake deadline as before.
            () = shutdown.wait(), if !draining && ctx.kept_alive.load(Ordering::Relaxed) > 0 => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_only_move_later() {
        let now = Instant::now();
        let d = Deadline::new(now + Duration::from_secs(5));
        d.extend_to(now + Duration::from_secs(1));
        assert_eq!(d.get(), now + Duration::from_secs(5));
        d.extend_to(now + Duration::from_secs(9));
        assert_eq!(d.get(), now + Duration::from_secs(9));
        d.set(now + Duration::from_secs(2));
        assert_eq!(d.get(), now + Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_waiter_sees_the_deadline_move() {
        let now = Instant::now();
        let d = Deadline::new(now + Duration::from_secs(60));
        let mut w = d.watch();
        assert_eq!(*w.borrow_and_update(), now + Duration::from_secs(60));
        d.extend_to(now + Duration::from_secs(1));
        assert!(!w.has_changed().unwrap(), "an earlier extend_to is no move");
        d.set(now + Duration::from_secs(1));
        assert!(w.has_changed().unwrap());
        assert_eq!(*w.borrow_and_update(), now + Duration::from_secs(1));
    }
}
