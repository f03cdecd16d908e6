//! Listeners, admission (the connection limit) and the per-connection
//! TLS + HTTP phase, bounded by the handshake deadline.

use crate::config::Config;
use crate::http;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};
use tokio_rustls::TlsAcceptor;

/// Connections over the limit that are still taken through the handshake
/// so they can be told 4503; beyond these, new connections are dropped at
/// once.
pub const OVERLOAD_GRACE: usize = 64;

/// Largest HTTP read buffer (request line and headers).
const MAX_HTTP_BUFFER: usize = 64 * 1024;

/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One admitted connection's place under the connection limit; released
/// when the connection (and any session it became) ends.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    /// True when the connection is over the limit and must be refused
    /// (close 4503) right after its handshake.
    pub overloaded: bool,
}

/// What the HTTP routing and the WebSocket session know about their
/// connection.
#[derive(Debug)]
pub struct ConnContext {
    /// The client's address.
    pub client: SocketAddr,
    /// The proxy's configuration.
    pub config: Arc<Config>,
    /// The connection's slot; held until the session ends.
    pub slot: Slot,
}

/// The running proxy: configuration, TLS and the connection limit.
pub struct Server {
    config: Arc<Config>,
    tls: Option<TlsAcceptor>,
    connections: Arc<Semaphore>,
    overflow: Arc<Semaphore>,
    dropped: AtomicU64,
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

impl Server {
    /// A server for `config`; `tls` is `None` for plaintext.
    pub fn new(config: Arc<Config>, tls: Option<TlsAcceptor>) -> Arc<Server> {
        let max = config.limits.max_connections;
        Arc::new(Server {
            config,
            tls,
            connections: Arc::new(Semaphore::new(max)),
            overflow: Arc::new(Semaphore::new(OVERLOAD_GRACE)),
            dropped: AtomicU64::new(0),
        })
    }

    /// Accepts connections on `listener` until the task is dropped.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            let (tcp, client) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Some(slot) = self.admit(client) else {
                continue;
            };
            tokio::spawn(self.clone().connection(tcp, client, slot));
        }
    }

    /// Takes a slot under the connection limit, or one of the few
    /// overload slots (the client is then told 4503), or none (the
    /// connection is dropped).
    fn admit(&self, client: SocketAddr) -> Option<Slot> {
        if let Ok(permit) = self.connections.clone().try_acquire_owned() {
            return Some(Slot {
                _permit: permit,
                overloaded: false,
            });
        }
        if let Ok(permit) = self.overflow.clone().try_acquire_owned() {
            return Some(Slot {
                _permit: permit,
                overloaded: true,
            });
        }
        // Log the first drop and then every 1000th, not a line per
        // connection of a flood.
        let n = self.dropped.fetch_add(1, Ordering::Relaxed);
        if n % 1000 == 0 {
            log::warn!(
                "refused client={client} reason=overloaded detail=\"{} connections open; \
                 connection dropped before the handshake ({} such drops so far)\"",
                self.config.limits.max_connections,
                n + 1
            );
        }
        None
    }

    /// One client connection: TLS (if configured), then HTTP until the
    /// request is answered or upgraded, all within the handshake deadline.
    async fn connection(self: Arc<Self>, tcp: TcpStream, client: SocketAddr, slot: Slot) {
        let deadline = Instant::now() + self.config.limits.handshake_timeout;
        let _ = tcp.set_nodelay(true);
        let ctx = Arc::new(ConnContext {
            client,
            config: self.config.clone(),
            slot,
        });
        match &self.tls {
            Some(acceptor) => match timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => self.http(tls, ctx, deadline).await,
                Ok(Err(e)) => log::debug!("client={client} TLS handshake failed: {e}"),
                Err(_) => log::debug!("client={client} handshake timed out (TLS)"),
            },
            None => self.http(tcp, ctx, deadline).await,
        }
    }

    async fn http<I>(&self, io: I, ctx: Arc<ConnContext>, deadline: Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let client = ctx.client;
        let service = service_fn(move |req| http::handle(req, ctx.clone()));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.limits.handshake_timeout)
            .max_buf_size(MAX_HTTP_BUFFER)
            // keep_alive(false) would make hyper answer the upgrade with
            // "Connection: Upgrade, close", which strict WebSocket clients
            // (tungstenite) refuse. The whole HTTP phase is still bounded
            // by the handshake deadline below.
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        match timeout_at(deadline, conn).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => log::debug!("client={client} HTTP error: {e}"),
            Err(_) => log::debug!("client={client} handshake timed out (HTTP)"),
        }
    }
}
