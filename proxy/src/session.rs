//! The WebSocket record loop of one client connection.
//!
//! Binary messages are a byte stream of RFC 4120 TCP records; each
//! completed record is checked, forwarded and answered before the next one
//! is looked at (strictly in order, one reply message per request). Any
//! refusal closes the connection with the documented close code; nothing
//! refused is forwarded.
//!
//! When the proxy shuts down, a session waiting for a record closes with
//! 1001 at once; one in the middle of an exchange finishes it, sends the
//! reply, then closes with 1001.

use crate::client::Client;
use crate::exchange::{self, Refusal};
use crate::http::Admitted;
use crate::metrics::Transport;
use crate::server::ConnContext;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use krb5_wss_proto::close::{self, CloseCode};
use krb5_wss_proto::framing::{Deframer, FramingError};
use krb5_wss_proto::Service;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TokioIo<Upgraded>>;

/// How long the proxy waits, after sending a close frame, for the client's
/// close frame (reading and discarding whatever else arrives), so that the
/// close frame is not lost to a TCP reset.
const LINGER: Duration = Duration::from_secs(2);

/// Most bytes discarded while lingering on a broken stream.
const LINGER_MAX_BYTES: usize = 1024 * 1024;

/// While discarding raw bytes, this long without any ends the wait.
const LINGER_QUIET: Duration = Duration::from_millis(200);

/// Most control frames (ping, pong) a client may send within one second;
/// past it, close 4429. Each ping costs a pong: a flood of them must not
/// buy a connection CPU time or an endless life.
pub const MAX_CONTROL_FRAMES_PER_SECOND: u32 = 20;

/// Runs one WebSocket session on an upgraded connection; `first` is the
/// record the client carried in the upgrade request, read as the first
/// bytes of its stream.
pub async fn run(
    upgraded: Upgraded,
    service: Service,
    ctx: Arc<ConnContext>,
    admitted: Admitted,
    first: Option<Bytes>,
) {
    let limits = &ctx.config.limits;
    let client = admitted.client;
    let mut ws = WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Server,
        Some(limits.websocket_config()),
    )
    .await;
    log::debug!("session client={client} service={service} open");
    if let Some(refusal) = admitted.refusal.clone() {
        refuse(&mut ws, &ctx, &client, service, refusal).await;
        return;
    }
    let end = records(&mut ws, service, &ctx, &client, first).await;
    match end {
        End::ClientClosed => {
            log::debug!("session client={client} service={service} closed by client")
        }
        End::Gone(why) => log::debug!("session client={client} service={service} ended: {why}"),
        End::Idle => {
            log::debug!("session client={client} service={service} idle: closing");
            close_with(&mut ws, close::NORMAL, limits.send_timeout, false).await;
        }
        End::ShuttingDown => {
            log::debug!("session client={client} service={service} closing: shutting down");
            close_with(&mut ws, close::GOING_AWAY, limits.send_timeout, false).await;
        }
        End::Refused(refusal) => refuse(&mut ws, &ctx, &client, service, refusal).await,
        End::Broken(refusal) => {
            exchange::log_refusal(
                &ctx.shared,
                &client,
                ctx.client_cert.as_ref(),
                service,
                Transport::WebSocket,
                &refusal,
                None,
            );
            close_with(&mut ws, refusal.close, limits.send_timeout, true).await;
        }
    }
    drop(admitted);
}

/// Why the record loop stopped.
enum End {
    /// The client closed the WebSocket.
    ClientClosed,
    /// The connection broke or stalled; nothing more can be sent.
    Gone(String),
    /// No record in progress for the idle timeout.
    Idle,
    /// The proxy is shutting down.
    ShuttingDown,
    /// A refusal to send as a close frame.
    Refused(Refusal),
    /// A refusal after a WebSocket-level error: the stream may be in the
    /// middle of a frame, so nothing more can be read as frames.
    Broken(Refusal),
}

/// Reads records and answers them until the connection must end.
async fn records(
    ws: &mut Ws,
    service: Service,
    ctx: &ConnContext,
    client: &Client,
    mut first: Option<Bytes>,
) -> End {
    let limits = &ctx.config.limits;
    let mut shutdown = ctx.shared.shutdown_signal();
    let mut deframer = Deframer::new(limits.max_record_size);
    let mut completed: Vec<Vec<u8>> = Vec::new();
    // When the last record finished (or the session began).
    let mut last_activity = Instant::now();
    // When the record in progress began, if one is.
    let mut partial_since: Option<Instant> = None;
    // Control frames in the current one-second window.
    let mut control = (Instant::now(), 0u32);
    // This session's share of the global partial-record budget.
    let mut partial = ctx.shared.admission.partial_bytes();
    loop {
        let deadline = match partial_since {
            Some(t) => t + limits.record_timeout,
            None => last_activity + limits.idle_timeout,
        };
        if shutdown.is_set() {
            return End::ShuttingDown;
        }
        // Checked here, not only by the timer below: a stream that always
        // has a frame ready (a ping flood) would otherwise never let the
        // timer fire.
        if Instant::now() >= deadline {
            return match partial_since {
                Some(_) => End::Refused(Refusal::new(
                    close::REQUEST_TIMEOUT,
                    format!(
                        "record incomplete after {:?} ({} bytes buffered)",
                        limits.record_timeout,
                        deframer.buffered()
                    ),
                )),
                None => End::Idle,
            };
        }
        let next = match first.take() {
            Some(data) => Ok(Some(Ok(Message::Binary(data)))),
            None => tokio::select! {
                n = timeout_at(deadline, ws.next()) => n,
                () = shutdown.wait() => return End::ShuttingDown,
            },
        };
        let message = match next {
            Err(_) if partial_since.is_some() => {
                return End::Refused(Refusal::new(
                    close::REQUEST_TIMEOUT,
                    format!(
                        "record incomplete after {:?} ({} bytes buffered)",
                        limits.record_timeout,
                        deframer.buffered()
                    ),
                ))
            }
            Err(_) => return End::Idle,
            Ok(None) => return End::ClientClosed,
            Ok(Some(Err(e))) => return read_error(e),
            Ok(Some(Ok(m))) => m,
        };
        let data = match message {
            Message::Binary(data) => data,
            Message::Text(_) => {
                return End::Refused(Refusal::new(close::TEXT_MESSAGE, "text message"))
            }
            // tungstenite answers pings and close frames itself; neither
            // counts as activity, and control frames are bounded.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                let now = Instant::now();
                if now.duration_since(control.0) >= Duration::from_secs(1) {
                    control = (now, 0);
                }
                control.1 += 1;
                if control.1 > MAX_CONTROL_FRAMES_PER_SECOND {
                    return End::Refused(Refusal::new(
                        close::RATE_LIMITED,
                        format!(
                            "over {MAX_CONTROL_FRAMES_PER_SECOND} control frames (ping, pong) per second"
                        ),
                    ));
                }
                continue;
            }
            Message::Close(_) => continue,
        };
        if data.is_empty() {
            continue;
        }
        let was_idle = deframer.is_idle();
        let pushed = deframer.push_shared(&data, &mut completed);
        let answered_any = !completed.is_empty();
        // Records completed before a framing error are answered first:
        // they came first.
        for record in completed.drain(..) {
            if !ctx.take_request() {
                return End::Refused(Refusal::new(
                    close::RATE_LIMITED,
                    format!(
                        "over {} requests per second (max_requests_per_second)",
                        limits.max_requests_per_second
                    ),
                ));
            }
            let request = exchange::Request {
                service,
                transport: Transport::WebSocket,
                record: &record,
                target_realm: None,
                client_cert: ctx.client_cert.as_ref(),
            };
            // Boxed: the exchange's state (upstream, discovery, throttle)
            // would otherwise sit inline in every session's task, idle or
            // not: 4,712 bytes per session task, 2,312 boxed (BENCHMARKS.md, D).
            let exchange = Box::pin(exchange::run(&ctx.shared, &ctx.config, client, request));
            let reply = match exchange.await {
                Ok(reply) => reply,
                Err(refusal) => return End::Refused(refusal),
            };
            match timeout(
                limits.send_timeout,
                ws.send(Message::Binary(Bytes::from(reply))),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return End::Gone(format!("sending the reply failed: {e}")),
                Err(_) => {
                    return End::Gone(format!(
                        "client did not take the reply within {:?}",
                        limits.send_timeout
                    ))
                }
            }
        }
        if let Err(e) = pushed {
            let code = match e {
                FramingError::TooLarge { .. } => close::TOO_LARGE,
                FramingError::ReservedBit(_) | FramingError::Empty => close::MALFORMED,
            };
            return End::Refused(Refusal::new(code, e.to_string()));
        }
        if !partial.set(deframer.buffered(), limits.max_partial_bytes) {
            return End::Refused(Refusal::new(
                close::OVERLOADED,
                format!(
                    "a partial record of {} bytes would take the partial records held across \
                     all connections over {} bytes (max_partial_bytes)",
                    deframer.buffered(),
                    limits.max_partial_bytes
                ),
            ));
        }
        let now = Instant::now();
        if answered_any {
            last_activity = now;
        }
        partial_since = match (deframer.is_idle(), partial_since) {
            (true, _) => None,
            // A new record began in this message.
            (false, _) if was_idle || answered_any => Some(now),
            (false, since) => since,
        };
    }
}

/// Maps a read error to how the session ends.
fn read_error(e: WsError) -> End {
    match e {
        WsError::Capacity(c) => End::Broken(Refusal::new(
            close::TOO_LARGE,
            format!("WebSocket message: {c}"),
        )),
        WsError::Utf8(_) => End::Broken(Refusal::new(close::TEXT_MESSAGE, "invalid UTF-8")),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            End::Gone("connection reset without a close frame".into())
        }
        // A broken WebSocket frame is bad framing too (the documented
        // codes have no separate one for it).
        WsError::Protocol(p) => End::Broken(Refusal::new(
            close::MALFORMED,
            format!("WebSocket protocol: {p}"),
        )),
        WsError::ConnectionClosed | WsError::AlreadyClosed => End::ClientClosed,
        other => End::Gone(format!("read failed: {other}")),
    }
}

/// Logs a refusal at warn and closes with its code.
async fn refuse(
    ws: &mut Ws,
    ctx: &ConnContext,
    client: &Client,
    service: Service,
    refusal: Refusal,
) {
    exchange::log_refusal(
        &ctx.shared,
        client,
        ctx.client_cert.as_ref(),
        service,
        Transport::WebSocket,
        &refusal,
        None,
    );
    close_with(ws, refusal.close, ctx.config.limits.send_timeout, false).await;
}

/// Sends a close frame, waits (bounded) for the client's, then shuts the
/// connection down. `broken`: the stream cannot be read as frames any
/// more (raw bytes are discarded instead).
async fn close_with(ws: &mut Ws, code: CloseCode, send_timeout: Duration, broken: bool) {
    let frame = CloseFrame {
        code: code.code.into(),
        reason: code.reason.into(),
    };
    match timeout(send_timeout, ws.close(Some(frame))).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            log::debug!("sending close {} failed: {e}", code.code);
            return;
        }
        Err(_) => {
            log::debug!("sending close {} timed out", code.code);
            return;
        }
    }
    let deadline = Instant::now() + LINGER;
    // Read frames until the client's close arrives (tungstenite drops data
    // received after our close).
    let mut broken = broken;
    while !broken {
        match timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed))) | Ok(None) => break,
            Ok(Some(Err(_))) => {
                broken = true;
                break;
            }
            Err(_) => break,
        }
    }
    let io = ws.get_mut();
    if broken {
        // The stream is mid-frame (e.g. after an oversized message): discard
        // raw bytes for a while so the close frame is not lost to a reset.
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0usize;
        while total < LINGER_MAX_BYTES && Instant::now() < deadline {
            let quiet = (Instant::now() + LINGER_QUIET).min(deadline);
            match timeout_at(quiet, io.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => total += n,
                _ => break,
            }
        }
    }
    let _ = timeout(Duration::from_secs(1), io.shutdown()).await;
}
