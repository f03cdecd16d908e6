//! HTTP request routing, request-wide checks, and the WebSocket upgrade
//! handshake.
//!
//! Every request on a listener comes through [`handle`], which picks a
//! [`Route`] from the path: the two WebSocket paths (`/kdc`, `/kpasswd`),
//! the MS-KKDCP endpoint (`POST /KdcProxy` by default), or "not found".
//! Before a route is served, the client is identified (the TCP peer, or
//! the `X-Forwarded-For` client behind a trusted front, then counted
//! against its address) and its `Origin` is checked.

use crate::admission::AddrGuard;
use crate::client::{self, Client};
use crate::exchange::Refusal;
use crate::kkdcp;
use crate::logfmt::Value;
use crate::metrics::Transport;
use crate::origin;
use crate::server::ConnContext;
use crate::session;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use krb5_wss_proto::{close, upgrade_request, Service, SUBPROTOCOL};
use std::convert::Infallible;
use std::sync::Arc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Response body type for everything the proxy answers itself.
pub type Body = Full<Bytes>;

/// What a request path leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A WebSocket carrying records for this service.
    WebSocket(Service),
    /// The MS-KKDCP endpoint.
    Kkdcp,
    /// Nothing here: 404.
    NotFound,
}

impl Route {
    /// The route for a request path (exact match; the query is ignored);
    /// `kkdcp_path` is the MS-KKDCP endpoint's, if it is on.
    pub fn of(path: &str, kkdcp_path: Option<&str>) -> Route {
        match path {
            p if p == Service::Kdc.default_path() => Route::WebSocket(Service::Kdc),
            p if p == Service::Kpasswd.default_path() => Route::WebSocket(Service::Kpasswd),
            p if Some(p) == kkdcp_path => Route::Kkdcp,
            _ => Route::NotFound,
        }
    }
}

/// The client of a request, and what admission says about it.
pub struct Admitted {
    /// Who the client is (for logs and limits).
    pub client: Client,
    /// A refusal to deliver instead of serving (connection limits).
    pub refusal: Option<Refusal>,
    /// The client's count against its address, when it is counted per
    /// request (behind a trusted front); held while the request is served.
    pub _address: Option<AddrGuard>,
}

/// Answers one HTTP request.
pub async fn handle(
    mut req: Request<Incoming>,
    ctx: Arc<ConnContext>,
) -> Result<Response<Body>, Infallible> {
    let config = &ctx.config;
    let route = Route::of(req.uri().path(), config.kkdcp_path.as_deref());
    log::debug!(
        "http client={} method={} path={:?} route={route:?}",
        ctx.peer,
        req.method(),
        req.uri().path()
    );
    let (service, transport) = match route {
        Route::NotFound => return Ok(text(StatusCode::NOT_FOUND, "not found\n")),
        Route::WebSocket(service) => (service, Transport::WebSocket),
        Route::Kkdcp => (Service::Kdc, Transport::Kkdcp),
    };
    let client = client::identify(ctx.peer, req.headers(), &config.trusted_proxies);
    if let Err(origin) = origin::check(req.headers(), &config.allowed_origins) {
        ctx.shared.metrics.origin_refusal();
        log::warn!(
            "refused client={client} service={service} transport={transport} http=403 \
             reason=\"origin not allowed\" origin={}",
            Value(&origin)
        );
        return Ok(text(StatusCode::FORBIDDEN, "origin not allowed\n"));
    }
    let admitted = admit_request(&ctx, client);
    let response = match route {
        Route::WebSocket(service) => match websocket_handshake(req.method(), req.headers())
            .and_then(|accepted| Ok((accepted, first_request(req.headers())?)))
        {
            Ok((accepted, first)) => {
                let on_upgrade = hyper::upgrade::on(&mut req);
                let ctx = ctx.clone();
                let carried = first.is_some();
                tokio::spawn(async move {
                    match on_upgrade.await {
                        Ok(upgraded) => session::run(upgraded, service, ctx, admitted, first).await,
                        Err(e) => log::debug!("client={client} upgrade failed: {e}"),
                    }
                });
                accepted.response(carried)
            }
            Err(refused) => {
                log::debug!(
                    "http client={client} path={} websocket handshake refused: {} {}",
                    service.default_path(),
                    refused.status().as_u16(),
                    String::from_utf8_lossy(refused.body_text())
                );
                refused.into_response()
            }
        },
        Route::Kkdcp => kkdcp::handle(req, &ctx, admitted).await,
        Route::NotFound => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

/// Applies the per-address limit to a client named by a trusted front
/// (direct clients were counted when their connection was accepted).
fn admit_request(ctx: &ConnContext, client: Client) -> Admitted {
    if let Some(refusal) = &ctx.refusal {
        return Admitted {
            client,
            refusal: Some(refusal.clone()),
            _address: None,
        };
    }
    let behind_front = ctx
        .config
        .trusted_proxies
        .iter()
        .any(|n| n.contains(ctx.peer.ip()));
    if !behind_front {
        return Admitted {
            client,
            refusal: None,
            _address: None,
        };
    }
    let limit = ctx.config.limits.max_connections_per_address;
    match ctx.shared.admission.address(client.key(), limit) {
        Some(guard) => Admitted {
            client,
            refusal: None,
            _address: Some(guard),
        },
        None => Admitted {
            client,
            refusal: Some(Refusal::new(
                close::RATE_LIMITED,
                format!(
                    "{limit} connections open from {} (max_connections_per_address)",
                    client.key()
                ),
            )),
            _address: None,
        },
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A valid WebSocket handshake: what to answer with 101.
#[derive(Debug, PartialEq, Eq)]
pub struct Accepted {
    accept_key: String,
    subprotocol: Option<&'static str>,
}

impl Accepted {
    /// The 101 Switching Protocols response; `carried` acknowledges the
    /// first request carried in the upgrade (see [`first_request`]).
    pub fn response(&self, carried: bool) -> Response<Body> {
        let mut r = Response::new(Body::default());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = r.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&self.accept_key) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if let Some(p) = self.subprotocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        if carried {
            h.insert(
                upgrade_request::HEADER,
                HeaderValue::from_static(upgrade_request::ACCEPTED),
            );
        }
        r
    }
}

/// The first record carried in the upgrade request (docs/protocol.md,
/// "The first request in the upgrade"): None without the header; HTTP 400
/// when it is repeated or not the base64 of at most
/// [`upgrade_request::MAX_RECORD`] bytes. The record is then read like the
/// first the client sends: deframed, checked, limited and logged alike.
pub fn first_request(headers: &HeaderMap) -> Result<Option<Bytes>, Refused> {
    let mut values = headers.get_all(upgrade_request::HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "more than one krb5-wss-request header\n",
        ));
    }
    upgrade_request::decode(value.as_bytes())
        .map(|record| Some(Bytes::from(record)))
        .map_err(|_| {
            Refused::new(
                StatusCode::BAD_REQUEST,
                "malformed krb5-wss-request header (the base64 of at most 3072 bytes)\n",
            )
        })
}

/// A refused WebSocket handshake: an HTTP error.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused {
    status: StatusCode,
    body: &'static str,
    extra: Option<(header::HeaderName, &'static str)>,
}

impl Refused {
    fn new(status: StatusCode, body: &'static str) -> Self {
        Refused {
            status,
            body,
            extra: None,
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response body text.
    pub fn body_text(&self) -> &[u8] {
        self.body.as_bytes()
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Body> {
        let mut r = text(self.status, self.body);
        if let Some((name, value)) = self.extra {
            r.headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        r
    }
}

/// True when a comma-separated header (any of its occurrences) holds
/// `token`, compared case-insensitively.
pub(crate) fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Checks an RFC 6455 opening handshake and negotiates the subprotocol:
/// `binary` when offered; none when none is offered; refused when only
/// other subprotocols are offered.
pub fn websocket_handshake(method: &Method, headers: &HeaderMap) -> Result<Accepted, Refused> {
    if method != Method::GET {
        return Err(Refused {
            extra: Some((header::ALLOW, "GET")),
            ..Refused::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        });
    }
    if !has_token(headers, header::UPGRADE, "websocket")
        || !has_token(headers, header::CONNECTION, "upgrade")
    {
        return Err(Refused {
            extra: Some((header::UPGRADE, "websocket")),
            ..Refused::new(
                StatusCode::UPGRADE_REQUIRED,
                "this endpoint speaks WebSocket only\n",
            )
        });
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refused {
            extra: Some((header::SEC_WEBSOCKET_VERSION, "13")),
            ..Refused::new(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported WebSocket version (need 13)\n",
            )
        });
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .map(HeaderValue::as_bytes)
        .filter(|k| is_websocket_key(k))
        .ok_or_else(|| {
            Refused::new(
                StatusCode::BAD_REQUEST,
                "missing or invalid Sec-WebSocket-Key\n",
            )
        })?;
    let offered: Vec<&str> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect();
    let subprotocol = if offered.is_empty() {
        None
    } else if offered.contains(&SUBPROTOCOL) {
        Some(SUBPROTOCOL)
    } else {
        return Err(Refused::new(
            StatusCode::BAD_REQUEST,
            "unsupported subprotocol: this server speaks \"binary\"\n",
        ));
    };
    Ok(Accepted {
        accept_key: derive_accept_key(key),
        subprotocol,
    })
}

/// A Sec-WebSocket-Key is the base64 form of 16 bytes: 22 base64
/// characters and "==".
fn is_websocket_key(k: &[u8]) -> bool {
    k.len() == 24
        && k.ends_with(b"==")
        && k[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const GOOD: &[(&str, &str)] = &[
        ("upgrade", "websocket"),
        ("connection", "keep-alive, Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn with(extra: &[(&str, &str)]) -> HeaderMap {
        let mut v = GOOD.to_vec();
        v.extend(extra);
        headers(&v)
    }

    #[test]
    fn routes() {
        let k = Some("/KdcProxy");
        assert_eq!(Route::of("/kdc", k), Route::WebSocket(Service::Kdc));
        assert_eq!(Route::of("/kpasswd", k), Route::WebSocket(Service::Kpasswd));
        assert_eq!(Route::of("/KdcProxy", k), Route::Kkdcp);
        assert_eq!(Route::of("/KdcProxy", None), Route::NotFound);
        for other in ["/", "/kdc/", "/KDC", "/kdcx", "/kpasswd/x", "/kdcproxy"] {
            assert_eq!(Route::of(other, k), Route::NotFound, "{other}");
        }
    }

    #[test]
    fn accept_key_follows_rfc6455() {
        let a = websocket_handshake(&Method::GET, &with(&[])).unwrap();
        // The example from RFC 6455 §1.3.
        assert_eq!(a.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(a.subprotocol, None);
        let r = a.response(false);
        assert_eq!(r.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert!(r.headers().get(header::SEC_WEBSOCKET_PROTOCOL).is_none());
    }

    #[test]
    fn binary_is_selected_when_offered() {
        let a = websocket_handshake(
            &Method::GET,
            &with(&[("sec-websocket-protocol", "chat, binary")]),
        )
        .unwrap();
        assert_eq!(a.subprotocol, Some("binary"));
        assert_eq!(
            a.response(false).headers()[header::SEC_WEBSOCKET_PROTOCOL],
            "binary"
        );
        let a = websocket_handshake(
            &Method::GET,
            &with(&[
                ("sec-websocket-protocol", "x"),
                ("sec-websocket-protocol", "binary"),
            ]),
        )
        .unwrap();
        assert_eq!(a.subprotocol, Some("binary"));
    }

    #[test]
    fn other_subprotocols_only_are_refused() {
        let r = websocket_handshake(
            &Method::GET,
            &with(&[("sec-websocket-protocol", "base64, chat")]),
        )
        .unwrap_err();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn non_upgrade_requests_are_refused() {
        let r = websocket_handshake(&Method::GET, &headers(&[])).unwrap_err();
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(r.into_response().headers()[header::UPGRADE], "websocket");
        let r = websocket_handshake(&Method::POST, &with(&[])).unwrap_err();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let mut h = with(&[]);
        h.insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let r = websocket_handshake(&Method::GET, &h).unwrap_err();
        assert_eq!(r.status(), StatusCode::UPGRADE_REQUIRED);
        let mut h = with(&[]);
        h.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("short"));
        let r = websocket_handshake(&Method::GET, &h).unwrap_err();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn the_first_request_in_the_upgrade_is_read_or_refused() {
        assert_eq!(first_request(&headers(GOOD)).unwrap(), None);
        let record = b"\x00\x00\x00\x01\x30";
        let value = upgrade_request::encode(record).unwrap();
        let got = first_request(&with(&[("Krb5-Wss-Request", value.as_str())])).unwrap();
        assert_eq!(got.as_deref(), Some(&record[..]));
        for bad in ["", "not base64", &"QUFB".repeat(1025)] {
            let r = first_request(&with(&[("krb5-wss-request", bad)])).unwrap_err();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let twice = with(&[("krb5-wss-request", "AAAA"), ("krb5-wss-request", "AAAA")]);
        assert_eq!(
            first_request(&twice).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        let accepted = websocket_handshake(&Method::GET, &headers(GOOD)).unwrap();
        assert_eq!(
            accepted.response(true).headers()[upgrade_request::HEADER],
            "accepted"
        );
        assert!(accepted
            .response(false)
            .headers()
            .get(upgrade_request::HEADER)
            .is_none());
    }
}
