//! One exchange: check the request, route it by its realm, carry it over
//! wss, and decide the reply (the proxy's, or the relay's own KRB-ERROR),
//! with one log line per exchange:
//!
//! ```text
//! exchange client=127.0.0.1:40312 transport=udp service=kdc realm=EXAMPLE.COM type=AS-REQ url=wss://kdc.example.com/kdc result=ok reply=712 us=2380
//! ```
//!
//! `result` is `ok`, `krb-error-N` (the KDC answered with KRB-ERROR N),
//! `too-big-for-udp` (RESPONSE_TOO_BIG sent instead), `unknown-realm`,
//! `unavailable` or `upstream-failed` (a KRB-ERROR from the relay), or
//! `malformed` (TCP: a KRB-ERROR; UDP: dropped, logged at debug level
//! only). When the relay answered itself, `cause="..."` ends the line.

use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use krb5_wss_proto::kerberos::{check_kdc_request, check_kpasswd_request, krb_error_code};
use krb5_wss_proto::krb_error::{KRB_ERR_GENERIC, KRB_ERR_RESPONSE_TOO_BIG};
use krb5_wss_proto::Service;
use log::{info, warn};

use crate::reply;
use crate::routes::{NoRoute, Router};

/// The error code of the relay's answer when no proxy could be reached:
/// KRB_ERR_GENERIC, not KDC_ERR_SVC_UNAVAILABLE. On SVC_UNAVAILABLE MIT's
/// libkrb5 keeps waiting for other KDCs and retries over UDP and TCP for
/// its whole schedule (27 s measured with the relay as the only KDC); a
/// generic error ends the attempt at once, and clients that report e-text
/// show the cause.
const UPSTREAM_FAILED: i32 = KRB_ERR_GENERIC;

/// How the client reached the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One datagram.
    Udp,
    /// A TCP record.
    Tcp,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        })
    }
}

/// A request that parsed: its realm and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// The realm it is for.
    pub realm: String,
    /// "AS-REQ", "TGS-REQ", "kpasswd-v1", "kpasswd-v0xff80".
    pub kind: String,
}

/// Checks `request` as the service's request.
pub fn parse(service: Service, request: &[u8]) -> Result<Parsed, String> {
    match service {
        Service::Kdc => check_kdc_request(request)
            .map(|r| Parsed {
                realm: r.realm,
                kind: r.kind.name().to_string(),
            })
            .map_err(|e| e.to_string()),
        Service::Kpasswd => check_kpasswd_request(request)
            .map(|r| Parsed {
                realm: r.realm,
                kind: if r.version == 1 {
                    "kpasswd-v1".into()
                } else {
                    format!("kpasswd-v{:#06x}", r.version)
                },
            })
            .map_err(|e| e.to_string()),
    }
}

/// One request as it arrived.
pub struct Request<'a> {
    /// The client.
    pub client: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// The port's service.
    pub service: Service,
    /// The Kerberos message (no length prefix).
    pub bytes: &'a [u8],
}

struct Line<'a> {
    req: &'a Request<'a>,
    realm: &'a str,
    kind: &'a str,
    url: String,
    result: String,
    reply: usize,
    start: Instant,
    /// Why the relay answered itself (logged last, quoted).
    cause: String,
}

impl Line<'_> {
    fn log(&self, warn_level: bool) {
        let msg = format!(
            "exchange client={} transport={} service={} realm={} type={} url={} result={} reply={} us={}{}",
            self.req.client,
            self.req.transport,
            self.req.service,
            if self.realm.is_empty() { "-" } else { self.realm },
            self.kind,
            if self.url.is_empty() { "-" } else { &self.url },
            self.result,
            self.reply,
            self.start.elapsed().as_micros(),
            if self.cause.is_empty() {
                String::new()
            } else {
                format!(" cause={:?}", self.cause)
            }
        );
        if warn_level {
            warn!("{msg}");
        } else {
            info!("{msg}");
        }
    }
}

/// Serves a request that did not parse over TCP: a KRB-ERROR naming the
/// cause (the connection is closed after it). Over UDP such a datagram
/// is dropped before this point.
pub fn malformed(req: &Request<'_>, cause: &str) -> Option<Vec<u8>> {
    let reply = reply::error(
        req.service,
        "",
        KRB_ERR_GENERIC,
        &format!("malformed request: {cause}"),
    );
    Line {
        req,
        realm: "",
        kind: "-",
        url: String::new(),
        result: "malformed".into(),
        reply: reply.as_ref().map_or(0, Vec::len),
        start: Instant::now(),
        cause: cause.to_string(),
    }
    .log(true);
    reply
}

/// Serves a parsed request: the reply to send (None: nothing can be
/// formed, close).
pub fn serve(router: &Router, req: &Request<'_>, parsed: &Parsed) -> Option<Vec<u8>> {
    let mut line = Line {
        req,
        realm: &parsed.realm,
        kind: &parsed.kind,
        url: String::new(),
        result: String::new(),
        reply: 0,
        start: Instant::now(),
        cause: String::new(),
    };
    let realm = parsed.realm.as_str();
    let (reply, warned) = match router.route(req.service, realm) {
        Err(NoRoute::UnknownRealm) => {
            line.result = "unknown-realm".into();
            let cause = format!("realm {realm} is not served by this relay");
            (
                reply::error(req.service, realm, KRB_ERR_GENERIC, &cause),
                true,
            )
        }
        Err(NoRoute::Unavailable(cause)) => {
            line.result = "unavailable".into();
            let reply = reply::error(req.service, realm, UPSTREAM_FAILED, &cause);
            line.cause = cause;
            (reply, true)
        }
        Ok(upstream) => match upstream.exchange_via(req.bytes) {
            Ok((reply, url)) => {
                line.url = url.to_string();
                let code = match req.service {
                    Service::Kdc => krb_error_code(&reply),
                    Service::Kpasswd => reply.get(6..).and_then(krb_error_code),
                };
                line.result = match code {
                    Some(c) => format!("krb-error-{c}"),
                    None => "ok".into(),
                };
                (Some(reply), false)
            }
            Err(e) => {
                line.url = e
                    .failures
                    .last()
                    .map(|(u, _)| u.clone())
                    .unwrap_or_default();
                line.result = "upstream-failed".into();
                line.cause = format!("no proxy of realm {realm} answered: {e}");
                (
                    reply::error(req.service, realm, UPSTREAM_FAILED, &line.cause),
                    true,
                )
            }
        },
    };
    let limit = router.config.udp_reply_limit;
    let reply = match reply {
        Some(r) if req.transport == Transport::Udp && r.len() > limit => {
            line.result = format!("too-big-for-udp({}>{limit})", r.len());
            reply::error_within(
                req.service,
                realm,
                KRB_ERR_RESPONSE_TOO_BIG,
                &format!(
                    "reply of {} bytes is larger than the UDP limit ({limit}); retry over TCP",
                    r.len()
                ),
                limit,
            )
        }
        other => other,
    };
    line.reply = reply.as_ref().map_or(0, Vec::len);
    line.log(warned);
    reply
}
