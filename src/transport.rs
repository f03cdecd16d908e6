//! One WebSocket connection to a krb5-wss proxy (or any server speaking
//! docs/protocol.md), with blocking I/O and a bound on every phase.
//!
//! [`WssConnection::connect`] resolves the host, connects over TCP (through
//! a web proxy's CONNECT when one is configured) and runs the TLS handshake
//! (verified), all within one connect deadline. The WebSocket upgrade
//! (offering the `binary` subprotocol) waits for the connection's first
//! [`WssConnection::exchange`], which carries its request inside the
//! upgrade request (`krb5_wss_proto::upgrade_request`): a new connection
//! then costs TCP + TLS + one round trip for the upgrade and the first
//! exchange together. A server that does not take the request that way
//! gets it as a message after the upgrade. A connection not used at once
//! is upgraded by [`WssConnection::is_alive`] within a fresh connect
//! deadline. Each exchange sends one record and reads its reply within the
//! request deadline. Failures are typed and say what went wrong in words
//! an administrator can act on.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use krb5_wss_proto::framing::{self, Deframer};
use krb5_wss_proto::upgrade_request;
use log::debug;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::deadline::{is_timeout, remaining, DeadlineStream};
use crate::url::WssUrl;

/// The largest reply the plugin accepts from a proxy.
pub const MAX_REPLY: usize = 1024 * 1024;

/// Why a connection or an exchange failed.
#[derive(Debug)]
pub enum TransportError {
    /// The host name did not resolve.
    Resolve(String),
    /// TCP connect failed on every address (the last error is kept).
    Connect {
        /// The address of the last attempt.
        addr: SocketAddr,
        /// Its error (refused, unreachable, ...).
        error: io::Error,
    },
    /// A phase did not finish in time.
    Timeout {
        /// What was being done ("connecting", "TLS handshake", ...).
        phase: &'static str,
        /// The bound that was exceeded.
        after: Duration,
    },
    /// TLS failed (certificate, protocol); already described for humans.
    Tls(String),
    /// The HTTP/WebSocket handshake was refused or malformed.
    Handshake(String),
    /// The outbound web proxy refused or failed the CONNECT tunnel.
    WebProxy(String),
    /// The server closed the connection before the reply was complete.
    Closed {
        /// The close code, when the server sent a close frame.
        code: Option<u16>,
        /// The close reason.
        reason: String,
    },
    /// The server broke the protocol (bad framing, text message, ...).
    Protocol(String),
    /// Another I/O error (reset, broken pipe, ...).
    Io(io::Error),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Resolve(e) => write!(f, "cannot resolve host: {e}"),
            TransportError::Connect { addr, error } => match error.kind() {
                io::ErrorKind::ConnectionRefused => write!(f, "connection refused by {addr}"),
                _ => write!(f, "cannot connect to {addr}: {error}"),
            },
            TransportError::Timeout { phase, after } => {
                write!(f, "timed out {phase} (after {} ms)", after.as_millis())
            }
            TransportError::Tls(e) => f.write_str(e),
            TransportError::Handshake(e) => write!(f, "WebSocket handshake failed: {e}"),
            TransportError::WebProxy(e) => f.write_str(e),
            TransportError::Closed {
                code: Some(code),
                reason,
            } => {
                let known = krb5_wss_proto::close::describe(*code);
                let reason = if reason.is_empty() {
                    known.unwrap_or("no reason given")
                } else {
                    reason
                };
                write!(f, "the server closed the connection: {code} {reason}")
            }
            TransportError::Closed { code: None, .. } => {
                f.write_str("the server closed the connection without a reply")
            }
            TransportError::Protocol(e) => write!(f, "protocol error: {e}"),
            TransportError::Io(e) => write!(f, "I/O error: {e}"),
        }
    }
}

impl std::error::Error for TransportError {}

/// A failed exchange, and whether resending on a new connection is safe.
#[derive(Debug)]
pub struct ExchangeFailure {
    /// What went wrong.
    pub error: TransportError,
    /// True when the connection was found closed before any reply byte
    /// arrived (a stale pooled connection): resending is safe.
    pub stale: bool,
}

/// The byte stream under the WebSocket: TLS, or plain TCP for `ws://`;
/// either way over a [`DeadlineStream`].
pub enum Stream {
    /// `ws://`.
    Plain(DeadlineStream),
    /// `wss://`.
    Tls(Box<crate::tls::Stream>),
}

impl Stream {
    fn inner(&self) -> &DeadlineStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => crate::tls::inner(s),
        }
    }

    fn inner_mut(&mut self) -> &mut DeadlineStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => crate::tls::inner_mut(s),
        }
    }

    fn tcp(&self) -> &TcpStream {
        self.inner().tcp()
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Where a connection's WebSocket handshake stands.
enum Ws {
    /// TLS (or TCP, for `ws://`) is up; the upgrade is still to be sent,
    /// with the first request in it.
    NotUpgraded(Stream),
    /// Upgraded (boxed: the WebSocket's state is large, and every
    /// connection that is used becomes one).
    Open(Box<WebSocket<Stream>>),
    /// Taken apart by a failed upgrade: never used again.
    Gone,
}

/// An open connection to one URL (upgraded, or upgraded by its first
/// exchange).
pub struct WssConnection {
    ws: Ws,
    /// The connect deadline: the upgrade's response must meet it too.
    connect_deadline: Instant,
    connect_timeout: Duration,
    /// True when the last upgrade carried its first request.
    carried_first: bool,
    url: WssUrl,
    peer: SocketAddr,
    via: Option<String>,
    deframer: Deframer,
    last_used: Instant,
    /// When the connection was last known to be open (a liveness check or
    /// a completed exchange): checks within [`RECHECK_AFTER`] are skipped.
    known_alive: Instant,
    exchanges: u64,
}

/// A connection found open this recently is not checked again (the
/// lookup's warm-up and the exchange right after it would otherwise check
/// the same socket twice within microseconds).
const RECHECK_AFTER: Duration = Duration::from_millis(20);

impl fmt::Debug for WssConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WssConnection")
            .field("url", &self.url.to_string())
            .field("peer", &self.peer)
            .field("exchanges", &self.exchanges)
            .finish()
    }
}

/// Resolves the URL's host to socket addresses (IP literals need no lookup)
/// within `deadline` (see [`resolve_host`]).
pub fn resolve(
    url: &WssUrl,
    deadline: Instant,
    bound: Duration,
) -> Result<Vec<SocketAddr>, TransportError> {
    if let Some(ip) = url.ip() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    resolve_host(&url.host_for_resolve(), url.port, deadline, bound)
}

/// Resolves `host` with the system resolver (getaddrinfo), waiting no
/// longer than `deadline`: the lookup runs in a short-lived thread, which
/// a resolver slower than the deadline leaves to finish on its own (its
/// answer is then dropped), so a silent DNS server cannot hold the caller.
pub fn resolve_host(
    host: &str,
    port: u16,
    deadline: Instant,
    bound: Duration,
) -> Result<Vec<SocketAddr>, TransportError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let lookup = {
        let host = host.to_string();
        move || -> Result<Vec<SocketAddr>, String> {
            let addrs = (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("{host}: {e}"))?
                .collect::<Vec<_>>();
            if addrs.is_empty() {
                return Err(format!("{host}: no addresses"));
            }
            Ok(addrs)
        }
    };
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("krb5-wss-resolve".into())
        .spawn(move || {
            let result = crate::panic::guard("resolving a host name", lookup).and_then(|r| r);
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        return Err(TransportError::Resolve(format!(
            "{host}: cannot start the resolver thread: {e}"
        )));
    }
    let Some(left) = remaining(deadline) else {
        return Err(TransportError::Timeout {
            phase: "resolving the host name",
            after: bound,
        });
    };
    match rx.recv_timeout(left) {
        Ok(result) => result.map_err(TransportError::Resolve),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(TransportError::Timeout {
            phase: "resolving the host name",
            after: bound,
        }),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(TransportError::Resolve(format!(
            "{host}: the resolver thread ended without an answer"
        ))),
    }
}

fn connect_tcp(
    addrs: &[SocketAddr],
    deadline: Instant,
    bound: Duration,
) -> Result<TcpStream, TransportError> {
    let mut last = None;
    for addr in addrs {
        let Some(left) = remaining(deadline) else {
            break;
        };
        match TcpStream::connect_timeout(addr, left) {
            Ok(s) => return Ok(s),
            Err(e) if is_timeout(&e) => {
                last = Some(TransportError::Timeout {
                    phase: "connecting",
                    after: bound,
                })
            }
            Err(error) => last = Some(TransportError::Connect { addr: *addr, error }),
        }
    }
    Err(last.unwrap_or(TransportError::Timeout {
        phase: "connecting",
        after: bound,
    }))
}

fn map_ws_error(e: tungstenite::Error, phase: &'static str, bound: Duration) -> TransportError {
    match e {
        tungstenite::Error::Io(io) if is_timeout(&io) => TransportError::Timeout {
            phase,
            after: bound,
        },
        tungstenite::Error::Io(io) => TransportError::Io(io),
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            TransportError::Closed {
                code: None,
                reason: String::new(),
            }
        }
        tungstenite::Error::Capacity(c) => {
            TransportError::Protocol(format!("reply too large: {c}"))
        }
        other => TransportError::Protocol(other.to_string()),
    }
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_REPLY + framing::HEADER_LEN))
        .max_frame_size(Some(MAX_REPLY + framing::HEADER_LEN))
        // tungstenite zeroes this much of its read buffer before every read:
        // keep it small (a larger frame still reserves its own length).
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

impl WssConnection {
    /// Opens a connection: TCP, web-proxy CONNECT, TLS (when `wss://`) and
    /// WebSocket handshake, all within `connect_timeout`, whatever the
    /// server sends or how slowly (one deadline covers every byte).
    pub fn connect(
        url: &WssUrl,
        tls: &crate::tls::Client,
        connect_timeout: Duration,
        web_proxy: Option<&str>,
    ) -> Result<WssConnection, TransportError> {
        let deadline = Instant::now() + connect_timeout;
        let host = url.host_for_resolve();
        let proxy = crate::webproxy::proxy_for(url, web_proxy, crate::env::var)
            .map_err(TransportError::WebProxy)?;
        let tcp = match &proxy {
            None => connect_tcp(
                &resolve(url, deadline, connect_timeout)?,
                deadline,
                connect_timeout,
            )?,
            Some(p) => connect_tcp(
                &resolve_host(&p.host, p.port, deadline, connect_timeout)?,
                deadline,
                connect_timeout,
            )?,
        };
        let peer = tcp.peer_addr().map_err(TransportError::Io)?;
        let _ = tcp.set_nodelay(true);
        let mut tcp = DeadlineStream::new(tcp, Some(deadline));
        if let Some(p) = &proxy {
            crate::webproxy::connect_tunnel(&mut tcp, p, url).map_err(TransportError::WebProxy)?;
        }
        let stream = if url.tls {
            match crate::tls::handshake(tls, &host, tcp) {
                Ok(s) => Stream::Tls(Box::new(s)),
                Err(crate::tls::HandshakeError::Timeout) => {
                    return Err(TransportError::Timeout {
                        phase: "in the TLS handshake",
                        after: connect_timeout,
                    })
                }
                Err(crate::tls::HandshakeError::Failed(m)) => return Err(TransportError::Tls(m)),
                Err(crate::tls::HandshakeError::Io(e)) => return Err(TransportError::Io(e)),
            }
        } else {
            Stream::Plain(tcp)
        };

        Ok(WssConnection {
            ws: Ws::NotUpgraded(stream),
            connect_deadline: deadline,
            connect_timeout,
            carried_first: false,
            url: url.clone(),
            peer,
            via: proxy.map(|p| p.to_string()),
            deframer: Deframer::new(MAX_REPLY),
            last_used: Instant::now(),
            known_alive: Instant::now(),
            exchanges: 0,
        })
    }

    /// True when the upgrade carried the connection's first request.
    pub fn carried_first(&self) -> bool {
        self.carried_first
    }

    /// Runs the WebSocket upgrade, by `deadline`, with `first` (a record)
    /// carried in it when given and small enough; true when the server
    /// took it (its reply is then the first record it sends).
    fn upgrade(
        &mut self,
        first: Option<&[u8]>,
        deadline: Instant,
        bound: Duration,
    ) -> Result<bool, TransportError> {
        let Ws::NotUpgraded(mut stream) = std::mem::replace(&mut self.ws, Ws::Gone) else {
            return Err(TransportError::Protocol(
                "internal error: upgrading a connection twice".into(),
            ));
        };
        stream.inner_mut().set_deadline(Some(deadline));
        let mut request = self
            .url
            .to_string()
            .into_client_request()
            .map_err(|e| TransportError::Handshake(e.to_string()))?;
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static(krb5_wss_proto::SUBPROTOCOL),
        );
        headers.insert(
            "User-Agent",
            HeaderValue::from_static(concat!("krb5-wss/", env!("CARGO_PKG_VERSION"))),
        );
        let carried = first.and_then(upgrade_request::encode);
        if let Some(value) = carried.as_deref() {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(upgrade_request::HEADER, v);
            }
        }
        let host = self.url.host_for_resolve();
        match tungstenite::client::client_with_config(request, stream, Some(ws_config())) {
            Ok((ws, response)) => {
                self.ws = Ws::Open(Box::new(ws));
                self.carried_first = carried.is_some()
                    && response
                        .headers()
                        .get(upgrade_request::HEADER)
                        .is_some_and(|v| v.as_bytes() == upgrade_request::ACCEPTED.as_bytes());
                Ok(self.carried_first)
            }
            Err(HandshakeError::Interrupted(_)) => Err(TransportError::Timeout {
                phase: "in the WebSocket handshake",
                after: bound,
            }),
            Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                let status = resp.status();
                Err(TransportError::Handshake(format!(
                    "HTTP {} {} for {}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or(""),
                    self.url.path
                )))
            }
            Err(HandshakeError::Failure(tungstenite::Error::Protocol(p))) => {
                Err(TransportError::Handshake(p.to_string()))
            }
            Err(HandshakeError::Failure(tungstenite::Error::Io(io)))
                if crate::tls::describe_io(&io, &host).is_some() =>
            {
                // TLS 1.3: the server's alert about our client
                // certificate comes after the handshake, at the first read.
                Err(TransportError::Tls(
                    crate::tls::describe_io(&io, &host).unwrap_or_default(),
                ))
            }
            Err(HandshakeError::Failure(e)) => {
                Err(map_ws_error(e, "in the WebSocket handshake", bound))
            }
        }
    }

    /// The URL this connection serves.
    pub fn url(&self) -> &WssUrl {
        &self.url
    }

    /// The address connected to (the web proxy's, when tunnelling).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The web proxy tunnelled through, if any.
    pub fn via(&self) -> Option<&str> {
        self.via.as_deref()
    }

    /// How many exchanges completed on this connection.
    pub fn exchanges(&self) -> u64 {
        self.exchanges
    }

    /// How long since the last exchange (or the handshake).
    pub fn idle_for(&self) -> Duration {
        self.last_used.elapsed()
    }

    /// Sends one request (a DER message, without length prefix) and returns
    /// the reply (without prefix), within `timeout`.
    pub fn exchange(
        &mut self,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, ExchangeFailure> {
        let deadline = Instant::now() + timeout;
        let fail = |error, stale| ExchangeFailure { error, stale };
        let record = framing::try_encode(request)
            .map_err(|e| fail(TransportError::Protocol(e.to_string()), false))?;
        // A new connection: the request rides in the upgrade, whose
        // response must come by the connect deadline as well (the connect
        // timeout bounds TCP + TLS + upgrade, wherever the upgrade runs).
        // Nothing was exchanged on the connection, so no failure here is a
        // stale connection's.
        let carried = match self.ws {
            Ws::NotUpgraded(_) => {
                let (by, bound) = if self.connect_deadline < deadline {
                    (self.connect_deadline, self.connect_timeout)
                } else {
                    (deadline, timeout)
                };
                self.upgrade(Some(&record), by, bound)
                    .map_err(|e| fail(e, false))?
            }
            _ => false,
        };
        let Ws::Open(ws) = &mut self.ws else {
            return Err(fail(
                TransportError::Closed {
                    code: None,
                    reason: String::new(),
                },
                false,
            ));
        };
        // Every read and write below (the request, pongs, the reply in any
        // number of frames and pieces) runs under this one deadline.
        ws.get_mut().inner_mut().set_deadline(Some(deadline));
        if !carried {
            if let Err(e) = ws.send(Message::Binary(record.into())) {
                // A write that fails on a connection the server already
                // closed never reached the KDC: safe to resend elsewhere.
                let stale = matches!(
                    &e,
                    tungstenite::Error::ConnectionClosed
                        | tungstenite::Error::AlreadyClosed
                        | tungstenite::Error::Io(_)
                ) && self.exchanges > 0;
                return Err(fail(map_ws_error(e, "sending the request", timeout), stale));
            }
        }
        let mut replies = Vec::new();
        let mut got_bytes = false;
        loop {
            if remaining(deadline).is_none() {
                return Err(fail(
                    TransportError::Timeout {
                        phase: "waiting for the reply",
                        after: timeout,
                    },
                    false,
                ));
            }
            match ws.read() {
                Ok(Message::Binary(data)) => {
                    got_bytes = true;
                    self.deframer
                        .push(&data, &mut replies)
                        .map_err(|e| fail(TransportError::Protocol(e.to_string()), false))?;
                    if let Some(reply) = replies.pop() {
                        if !replies.is_empty() || !self.deframer.is_idle() {
                            return Err(fail(
                                TransportError::Protocol(
                                    "more than one reply to one request".into(),
                                ),
                                false,
                            ));
                        }
                        self.exchanges += 1;
                        self.last_used = Instant::now();
                        self.known_alive = self.last_used;
                        return Ok(reply);
                    }
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                Ok(Message::Text(_)) => {
                    return Err(fail(
                        TransportError::Protocol("the server sent a text message".into()),
                        false,
                    ))
                }
                Ok(Message::Close(frame)) => {
                    let (code, reason) = match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                        None => (None, String::new()),
                    };
                    // A normal close before any reply byte on a reused
                    // connection is an idle close that crossed our request.
                    let stale = !got_bytes
                        && self.exchanges > 0
                        && matches!(code, None | Some(1000) | Some(1001));
                    return Err(fail(TransportError::Closed { code, reason }, stale));
                }
                Err(e) => {
                    let stale = !got_bytes
                        && self.exchanges > 0
                        && match &e {
                            tungstenite::Error::ConnectionClosed
                            | tungstenite::Error::AlreadyClosed => true,
                            tungstenite::Error::Io(io) => matches!(
                                io.kind(),
                                io::ErrorKind::ConnectionReset
                                    | io::ErrorKind::BrokenPipe
                                    | io::ErrorKind::UnexpectedEof
                            ),
                            _ => false,
                        };
                    return Err(fail(
                        map_ws_error(e, "waiting for the reply", timeout),
                        stale,
                    ));
                }
            }
        }
    }

    /// True when the connection is idle, younger than `max_idle`, and the
    /// server has not closed it (checked without blocking; pings are
    /// answered, anything else marks the connection dead).
    pub fn is_alive(&mut self, max_idle: Duration) -> bool {
        if self.last_used.elapsed() > max_idle || !self.deframer.is_idle() {
            return false;
        }
        if self.known_alive.elapsed() < RECHECK_AFTER {
            return true;
        }
        if matches!(self.ws, Ws::NotUpgraded(_)) {
            // Not used at once: upgrade without a request, as a fresh
            // connect would (one round trip, within its own deadline).
            let bound = self.connect_timeout;
            if let Err(e) = self.upgrade(None, Instant::now() + bound, bound) {
                debug!("{}: the WebSocket upgrade failed: {e}", self.url);
                return false;
            }
        }
        let Ws::Open(ws) = &mut self.ws else {
            return false;
        };
        ws.get_mut().inner_mut().set_deadline(None);
        if ws.get_ref().tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let alive = loop {
            match ws.read() {
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    break true
                }
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                _ => break false,
            }
        };
        let alive = ws.get_ref().tcp().set_nonblocking(false).is_ok() && alive;
        if alive {
            self.known_alive = Instant::now();
        }
        alive
    }

    /// Sends a normal close frame (best effort, never blocks long); a
    /// connection not upgraded yet is just dropped.
    pub fn close(self) {
        if let Ws::Open(mut ws) = self.ws {
            let deadline = Instant::now() + Duration::from_millis(200);
            ws.get_mut().inner_mut().set_deadline(Some(deadline));
            let _ = ws.close(None);
            let _ = ws.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc::Receiver;

    /// A ws:// server for one connection: it records whether the upgrade
    /// carried a request (and acknowledges it when `ack`), then echoes
    /// every record it gets, the carried one first.
    #[allow(clippy::result_large_err)] // tungstenite's callback type
    fn server(ack: bool) -> (WssUrl, Receiver<bool>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = WssUrl::parse(
            &format!("ws://127.0.0.1:{}/kdc", l.local_addr().unwrap().port()),
            "/kdc",
        )
        .unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let (sock, _) = l.accept().unwrap();
            let mut carried = None;
            let callback =
                |req: &tungstenite::handshake::server::Request,
                 mut resp: tungstenite::handshake::server::Response| {
                    carried = req
                        .headers()
                        .get(upgrade_request::HEADER)
                        .map(|v| upgrade_request::decode(v.as_bytes()).unwrap());
                    if ack && carried.is_some() {
                        resp.headers_mut().insert(
                            upgrade_request::HEADER,
                            HeaderValue::from_static(upgrade_request::ACCEPTED),
                        );
                    }
                    resp.headers_mut()
                        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("binary"));
                    Ok(resp)
                };
            let mut ws = tungstenite::accept_hdr(sock, callback).unwrap();
            tx.send(carried.is_some()).unwrap();
            if let (true, Some(record)) = (ack, carried) {
                ws.send(Message::Binary(record.into())).unwrap();
            }
            while let Ok(Message::Binary(m)) = ws.read() {
                ws.send(Message::Binary(m)).unwrap();
            }
        });
        (url, rx)
    }

    fn connect(url: &WssUrl) -> WssConnection {
        let tls = crate::tls::client_config(&[], None).unwrap();
        WssConnection::connect(url, &tls, Duration::from_secs(5), None).unwrap()
    }

    #[test]
    fn the_first_request_rides_in_the_upgrade_when_the_server_takes_it() {
        for ack in [true, false] {
            let (url, carried) = server(ack);
            let mut conn = connect(&url);
            let reply = conn.exchange(b"first", Duration::from_secs(5)).unwrap();
            assert_eq!(reply, b"first", "ack={ack}");
            assert!(
                carried.recv().unwrap(),
                "the upgrade carried it (ack={ack})"
            );
            assert_eq!(conn.carried_first(), ack);
            let reply = conn.exchange(b"second", Duration::from_secs(5)).unwrap();
            assert_eq!(reply, b"second", "ack={ack}");
        }
    }

    #[test]
    fn a_connection_not_used_at_once_is_upgraded_by_the_liveness_check() {
        let (url, carried) = server(true);
        let mut conn = connect(&url);
        std::thread::sleep(RECHECK_AFTER * 2);
        assert!(conn.is_alive(Duration::from_secs(60)));
        assert!(!carried.recv().unwrap(), "upgraded without a request");
        assert!(!conn.carried_first());
        let reply = conn.exchange(b"late", Duration::from_secs(5)).unwrap();
        assert_eq!(reply, b"late");
    }
}
