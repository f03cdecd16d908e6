//! The MS-KKDCP endpoint: `POST /KdcProxy` (path configurable) with a
//! KDC-PROXY-MESSAGE body (`krb5_wss_proto::kkdcp`), answered with one
//! holding the KDC's reply. This is what MIT's native `kdc = https://…`
//! client, Windows, and kdcproxy's users speak.
//!
//! One request per connection: every answer carries `Connection: close`
//! (MIT's client reads the answer to the end of the connection anyway).
//! The body must arrive within the handshake deadline and is bounded by
//! `max_record_size` plus the message's own small overhead; the exchange
//! itself is [`crate::exchange::run`], as for WebSocket records, and the
//! realm it goes to is always the one inside the Kerberos message.

use crate::exchange::{self, Refusal, Request as Exchange};
use crate::http::{Admitted, Body};
use crate::metrics::Transport;
use crate::server::ConnContext;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use krb5_wss_proto::close::{self, CloseCode};
use krb5_wss_proto::framing::HEADER_LEN;
use krb5_wss_proto::{kkdcp, Service};
use std::sync::Arc;
use tokio::time::{timeout_at, Instant};

/// The media type of MS-KKDCP bodies.
pub const CONTENT_TYPE: &str = "application/kerberos";

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

/// Answers one request on the MS-KKDCP path.
pub async fn handle(
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
    if req.method() != Method::POST {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if let Some(refusal) = admitted.refusal.clone() {
        return refuse(Service::Kdc, refusal);
    }
    let limits = &ctx.config.limits;
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
    let body = Limited::new(req.into_body(), max_body).collect();
    let body: Bytes = match timeout_at(ctx.deadline.get(), body).await {
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
                    "body not complete within handshake_timeout",
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
    if !ctx.take_request() {
        return refuse(
            service,
            Refusal::new(
                close::RATE_LIMITED,
                format!(
                    "over {} requests per second (max_requests_per_second)",
                    limits.max_requests_per_second
                ),
            ),
        );
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
                h.insert(header::CONNECTION, HeaderValue::from_static("close"));
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

/// A plain-text answer that closes the connection.
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
