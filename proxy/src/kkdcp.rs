//! The MS-KKDCP endpoint: `POST /KdcProxy` (path configurable) with a
//! KDC-PROXY-MESSAGE body (`krb5_wss_proto::kkdcp`), answered with one
//! holding the KDC's reply. This is what MIT's native `kdc = https://…`
//! client, Windows, and kdcproxy's users speak.
//!
//! Connections: an HTTP/1.1 request without `Connection: close` that is
//! answered (200) leaves the connection open for the next request
//! (Windows, Kerberos.NET); an HTTP/1.0 request (MIT's client, which reads
//! the answer to the end of the connection), one with `Connection: close`,
//! and every refusal get `Connection: close`. The first request's headers
//! and body must arrive within the handshake deadline; after an answer the
//! next request's headers must arrive within `idle_timeout`, and its body
//! within `record_timeout` of them (the connection's
//! [`crate::server::Deadline`]). The body is bounded by `max_record_size`
//! plus the message's own small overhead; each request takes a token of
//! the connection's request rate; the exchange itself is
//! [`crate::exchange::run`], as for WebSocket records, and the realm it
//! goes to is always the one inside the Kerberos message.
//!
//! `target-domain` is required (MS-KKDCP §3.2.5.1: "If target-domain is
//! not present, return ERROR_BAD_FORMAT"): 400, unless
//! `kkdcp_require_target_domain = false`.
//!
//! Browsers: an `Origin` that passed [`crate::origin`]'s allow-list gets
//! CORS answers: a preflight `OPTIONS` asking for `POST` is answered 204
//! with what a `fetch()` POST of `application/kerberos` needs, and every
//! answer carries `Access-Control-Allow-Origin` with that origin. Other
//! origins never get here (403 in [`crate::http`]), so they get no CORS
//! headers at all.

use crate::exchange::{self, Refusal, Request as Exchange};
use crate::http::{self, Admitted, Body};
use crate::metrics::Transport;
use crate::server::ConnContext;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use krb5_wss_proto::close::{self, CloseCode};
use krb5_wss_proto::framing::HEADER_LEN;
use krb5_wss_proto::{kkdcp, Service};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::{timeout_at, Instant};

/// The media type of MS-KKDCP bodies.
pub const CONTENT_TYPE: &str = "application/kerberos";

/// How long a browser may cache a preflight answer, in seconds
/// (`Access-Control-Max-Age`; Chromium caps it at 7200).
pub const PREFLIGHT_MAX_AGE: &str = "600";

/// The HTTP status answering a refusal with `code`. KDCs that cannot be
/// reached give 503, as kdcproxy does.
pub fn status_of(code: CloseCode) -> StatusCode {
    match code.code {
        4401 | 4402 | 4403 | 4406 => StatusCode::FORBIDDEN,
        4408 => StatusCode::REQUEST_TIMEOUT,
        4413 => StatusCode::PAYLOAD_TOO_LARGE,
        4423 | 4429 => StatusCode::TOO_MANY_REQUESTS,
        4502 | 4503 | 1001 => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// Answers one request on the MS-KKDCP path, and decides whether the
/// connection stays open after it.
pub async fn handle(
    req: Request<Incoming>,
    ctx: &Arc<ConnContext>,
    admitted: Admitted,
) -> Response<Body> {
    // Only an allowed Origin gets this far (crate::http checks it first).
    let origin = req.headers().get(header::ORIGIN).cloned();
    let version = req.version();
    let keep_alive = wants_keep_alive(version, req.headers());
    let mut r = serve(req, ctx, admitted).await;
    if version == Version::HTTP_10 {
        // An HTTP/1.0 answer: hyper then adds no "keep-alive" of its own
        // to a client that asked for it.
        *r.version_mut() = Version::HTTP_10;
    }
    let h = r.headers_mut();
    let closes = !keep_alive
        || h.get(header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    if closes {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    } else if r.status() == StatusCode::OK {
        // Open for the next request, for idle_timeout.
        ctx.kept_alive.fetch_add(1, Ordering::Relaxed);
        ctx.deadline
            .set(Instant::now() + ctx.config.limits.idle_timeout);
    }
    if let Some(origin) = origin {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

/// True when the client lets the connection stay open after the answer:
/// HTTP/1.1 without `Connection: close`. HTTP/1.0 clients (MIT's) read
/// the answer to the end of the connection, so they always get a close.
pub fn wants_keep_alive(version: Version, headers: &hyper::HeaderMap) -> bool {
    version == Version::HTTP_11 && !http::has_token(headers, header::CONNECTION, "close")
}

/// The answer to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method: POST`) from an allowed origin; `None`
/// when the request is not one (then it is answered 405).
pub fn preflight(headers: &hyper::HeaderMap) -> Option<Response<Body>> {
    let method = headers.get(header::ACCESS_CONTROL_REQUEST_METHOD)?;
    if headers.get(header::ORIGIN).is_none() || method.as_bytes() != b"POST" {
        return None;
    }
    let mut r = Response::new(Body::default());
    *r.status_mut() = StatusCode::NO_CONTENT;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(PREFLIGHT_MAX_AGE),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(r)
}

/// The answer to one request, before the connection and CORS headers.
async fn serve(
    req: Request<Incoming>,
    ctx: &Arc<ConnContext>,
    admitted: Admitted,
) -> Response<Body> {
    let client = admitted.client;
    let refuse = |service: Service, refusal: Refusal| {
        let status = status_of(refusal.close);
        exchange::log_refusal(
            &ctx.shared,
            &client,
            ctx.client_cert.as_ref(),
            service,
            Transport::Kkdcp,
            &refusal,
            Some(status.as_u16()),
        );
        text(status, refusal.close.reason)
    };
    let limits = &ctx.config.limits;
    let rate_limited = || {
        Refusal::new(
            close::RATE_LIMITED,
            format!(
                "over {} requests per second (max_requests_per_second)",
                limits.max_requests_per_second
            ),
        )
    };
    if let Some(refusal) = admitted.refusal.clone() {
        return refuse(Service::Kdc, refusal);
    }
    if req.method() == Method::OPTIONS {
        if let Some(answer) = preflight(req.headers()) {
            if !ctx.take_request() {
                return refuse(Service::Kdc, rate_limited());
            }
            return answer;
        }
    }
    if req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if ctx.kept_alive.load(Ordering::Relaxed) > 0 {
        // A request after an answer: its headers came within idle_timeout;
        // its body gets record_timeout (the first request's body shares
        // the handshake deadline).
        ctx.deadline.set(Instant::now() + limits.record_timeout);
    }
    let max_body = limits.max_record_size + HEADER_LEN + kkdcp::MAX_OVERHEAD;
    let claimed = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if claimed.is_some_and(|n| n > max_body as u64) {
        return refuse(
            Service::Kdc,
            Refusal::new(
                close::TOO_LARGE,
                format!(
                    "Content-Length {} over {max_body} bytes",
                    claimed.unwrap_or(0)
                ),
            ),
        );
    }
    // The body is due by the connection's deadline; the connection itself
    // lives send_timeout longer, so that a 408 is delivered, not lost to
    // the connection's own timer firing at the same instant.
    let body_due = ctx.deadline.get();
    ctx.deadline.extend_to(body_due + limits.send_timeout);
    let body = Limited::new(req.into_body(), max_body).collect();
    let body: Bytes = match timeout_at(body_due, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return refuse(
                Service::Kdc,
                Refusal::new(close::TOO_LARGE, format!("body over {max_body} bytes")),
            )
        }
        Ok(Err(e)) => {
            return refuse(
                Service::Kdc,
                Refusal::new(close::MALFORMED, format!("reading the body: {e}")),
            )
        }
        Err(_) => {
            return refuse(
                Service::Kdc,
                Refusal::new(
                    close::REQUEST_TIMEOUT,
                    if ctx.kept_alive.load(Ordering::Relaxed) > 0 {
                        "body not complete within record_timeout"
                    } else {
                        "body not complete within handshake_timeout"
                    },
                ),
            )
        }
    };
    let message = match kkdcp::decode(&body) {
        Ok(m) => m,
        Err(e) => return refuse(Service::Kdc, Refusal::new(close::MALFORMED, e.to_string())),
    };
    let service = exchange::classify(message.message);
    if message.message.len() > limits.max_record_size {
        return refuse(
            service,
            Refusal::new(
                close::TOO_LARGE,
                format!(
                    "record of {} bytes exceeds the limit of {} bytes",
                    message.message.len(),
                    limits.max_record_size
                ),
            ),
        );
    }
    if message.target_domain.is_none() && ctx.config.kkdcp_require_target_domain {
        return refuse(
            service,
            Refusal::new(
                close::MALFORMED,
                "no target-domain (required by MS-KKDCP 3.2.5.1; \
                 kkdcp_require_target_domain = false accepts it)",
            ),
        );
    }
    if !ctx.take_request() {
        return refuse(service, rate_limited());
    }
    // The exchange and the answer get their own time, beyond the
    // handshake deadline.
    ctx.deadline
        .extend_to(Instant::now() + ctx.config.max_exchange_time() + limits.send_timeout);
    let request = Exchange {
        service,
        transport: Transport::Kkdcp,
        record: message.message,
        target_realm: message.target_domain.as_deref(),
        client_cert: ctx.client_cert.as_ref(),
    };
    match exchange::run(&ctx.shared, &ctx.config, &client, request).await {
        Ok(framed) => match kkdcp::encode(&framed) {
            Ok(body) => {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                let h = r.headers_mut();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            Err(e) => refuse(
                service,
                Refusal::new(close::KDC_UNREACHABLE, format!("encoding the reply: {e}")),
            ),
        },
        Err(refusal) => refuse(service, refusal),
    }
}

/// A plain-text answer that closes the connection (every refusal does, as
/// on the WebSocket paths).
fn text(status: StatusCode, reason: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(format!("{reason}\n"))));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        for (code, status) in [
            (close::MALFORMED, StatusCode::BAD_REQUEST),
            (close::REALM_NOT_SERVED, StatusCode::FORBIDDEN),
            (close::POLICY_DENIED, StatusCode::FORBIDDEN),
            (close::CLIENT_CERT_REQUIRED, StatusCode::FORBIDDEN),
            (close::CLIENT_CERT_NOT_ALLOWED, StatusCode::FORBIDDEN),
            (close::THROTTLED, StatusCode::TOO_MANY_REQUESTS),
            (close::TOO_LARGE, StatusCode::PAYLOAD_TOO_LARGE),
            (close::RATE_LIMITED, StatusCode::TOO_MANY_REQUESTS),
            (close::KDC_UNREACHABLE, StatusCode::SERVICE_UNAVAILABLE),
            (close::OVERLOADED, StatusCode::SERVICE_UNAVAILABLE),
            (close::REQUEST_TIMEOUT, StatusCode::REQUEST_TIMEOUT),
        ] {
            assert_eq!(status_of(code), status, "{code:?}");
        }
    }
}
