//! The operations listener (`--metrics-listen`): plain HTTP with
//! `GET /metrics` (Prometheus text format) and `GET /healthz` (200 `ok`,
//! or 503 `shutting down` while draining after SIGTERM, so a load balancer
//! stops sending new clients).
//!
//! It is meant for a loopback or management address. Each connection is
//! bounded in time, one request, and at most a few are served at once.

use crate::state::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::timeout;

/// Connections to the operations listener served at once; more are
/// closed at once.
const MAX_CONNECTIONS: usize = 16;

/// Time allowed for one whole connection (request and answer).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest HTTP read buffer.
const MAX_HTTP_BUFFER: usize = 16 * 1024;

/// The Prometheus text format's media type.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves the operations listener until the task is dropped.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                log::warn!("metrics listener: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            log::debug!("metrics listener: {peer} dropped, {MAX_CONNECTIONS} connections busy");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&req, &shared)) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CONNECTION_TIMEOUT)
                .max_buf_size(MAX_HTTP_BUFFER)
                .keep_alive(false)
                .serve_connection(TokioIo::new(tcp), service);
            match timeout(CONNECTION_TIMEOUT, conn).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("metrics listener: {peer}: {e}"),
                Err(_) => log::debug!("metrics listener: {peer}: timed out"),
            }
        });
    }
}

fn answer(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, METRICS_TYPE, shared.render_metrics()),
        "/healthz" if shared.shutting_down() => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "shutting down\n".into(),
        ),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
