//! One exchange, independent of the transport that carried the request:
//! check the record, find its realm's servers, forward it, log one line.
//!
//! The WebSocket session uses this for each record; an MS-KKDCP endpoint
//! can use it for each POST body.

use crate::config::Config;
use crate::logfmt::Value;
use crate::upstream;
use krb5_wss_proto::close::{self, CloseCode};
use krb5_wss_proto::kerberos::{check_kdc_request, check_kpasswd_request, MessageError};
use krb5_wss_proto::Service;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// Why a request was not answered: the documented close code, and a
/// detail for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The close code (and reason) to send.
    pub close: CloseCode,
    /// What exactly was wrong, for the log only (never sent).
    pub detail: String,
    /// The request's realm and type, when it passed the checks.
    pub request: Option<Checked>,
}

impl Refusal {
    /// A refusal with `close` and a detail.
    pub fn new(close: CloseCode, detail: impl Into<String>) -> Self {
        Refusal {
            close,
            detail: detail.into(),
            request: None,
        }
    }

    /// The same refusal, naming the checked request.
    pub fn with_request(self, request: Checked) -> Self {
        Refusal {
            request: Some(request),
            ..self
        }
    }
}

/// What a checked request is, for routing and logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The realm whose servers must answer (exact, as sent).
    pub realm: String,
    /// "AS-REQ", "TGS-REQ", "kpasswd-0x0001" or "kpasswd-0xff80".
    pub kind: String,
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "realm={} type={}", Value(&self.realm), self.kind)
    }
}

/// Checks that `record` is a request allowed on `service`'s path.
pub fn check(service: Service, record: &[u8]) -> Result<Checked, MessageError> {
    match service {
        Service::Kdc => check_kdc_request(record).map(|r| Checked {
            realm: r.realm,
            kind: r.kind.name().to_string(),
        }),
        Service::Kpasswd => check_kpasswd_request(record).map(|r| Checked {
            realm: r.realm,
            kind: format!("kpasswd-{:#06x}", r.version),
        }),
    }
}

/// Handles one request record from `client`: on success returns the
/// framed reply to send back. A refused record is never forwarded.
///
/// Logs one `exchange` line at info for every request that was forwarded
/// (answered or not); refusals are for the caller to log.
pub async fn run(
    config: &Config,
    client: SocketAddr,
    service: Service,
    record: &[u8],
) -> Result<Vec<u8>, Refusal> {
    let start = Instant::now();
    let checked =
        check(service, record).map_err(|e| Refusal::new(close::MALFORMED, e.to_string()))?;
    let servers = match config.realms.get(&checked.realm) {
        None => {
            return Err(
                Refusal::new(close::REALM_NOT_SERVED, "realm not configured").with_request(checked),
            )
        }
        Some(r) if r.for_service(service).is_empty() => {
            return Err(Refusal::new(
                close::REALM_NOT_SERVED,
                format!("no {service} servers configured for the realm"),
            )
            .with_request(checked))
        }
        Some(r) => r.for_service(service),
    };
    match upstream::forward(servers, record, &config.limits).await {
        Ok(reply) => {
            log::info!(
                "exchange client={client} service={service} {checked} kdc={} result=ok \
                 reply_bytes={} elapsed_us={}",
                reply.server,
                reply.framed.len().saturating_sub(4),
                start.elapsed().as_micros()
            );
            Ok(reply.framed)
        }
        Err(failure) => {
            let error = failure.to_string();
            log::info!(
                "exchange client={client} service={service} {checked} kdc=- result=failed \
                 error={} elapsed_us={}",
                Value(&error),
                start.elapsed().as_micros()
            );
            Err(Refusal::new(close::KDC_UNREACHABLE, error).with_request(checked))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
        assert!(value.len() < 0x80);
        [&[tag, value.len() as u8][..], value].concat()
    }

    /// A minimal AS-REQ: pvno 5, msg-type 10, req-body with kdc-options
    /// and realm.
    fn as_req(realm: &str) -> Vec<u8> {
        let body = [
            tlv(0xa0, &tlv(0x03, &[0, 0, 0, 0, 0])),
            tlv(0xa2, &tlv(0x1b, realm.as_bytes())),
        ]
        .concat();
        let fields = [
            tlv(0xa1, &tlv(0x02, &[5])),
            tlv(0xa2, &tlv(0x02, &[10])),
            tlv(0xa4, &tlv(0x30, &body)),
        ]
        .concat();
        tlv(0x6a, &tlv(0x30, &fields))
    }

    #[test]
    fn kdc_path_checks() {
        let c = check(Service::Kdc, &as_req("A.ORG")).unwrap();
        assert_eq!(c.realm, "A.ORG");
        assert_eq!(c.kind, "AS-REQ");
        assert_eq!(c.to_string(), "realm=A.ORG type=AS-REQ");
        assert!(check(Service::Kpasswd, &as_req("A.ORG")).is_err());
        assert!(check(Service::Kdc, b"hello").is_err());
    }

    #[tokio::test]
    async fn unserved_realm_and_service_are_refused_unforwarded() {
        use crate::config::{RealmServers, Transport};
        let mut realms = std::collections::BTreeMap::new();
        realms.insert(
            "A.ORG".to_string(),
            RealmServers {
                // Would fail loudly (4502, not 4403) if it were tried.
                kdc: Vec::new(),
                kpasswd: Vec::new(),
            },
        );
        let config = Config {
            listen: vec![],
            transport: Transport::Plaintext,
            realms,
            limits: Default::default(),
        };
        let client: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let err = run(&config, client, Service::Kdc, &as_req("B.ORG"))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::REALM_NOT_SERVED);
        assert_eq!(err.request.unwrap().realm, "B.ORG");
        let err = run(&config, client, Service::Kdc, &as_req("a.org"))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::REALM_NOT_SERVED, "realm match is exact");
        let err = run(&config, client, Service::Kdc, &as_req("A.ORG"))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::REALM_NOT_SERVED, "no kdc for A.ORG");
        assert!(err.detail.contains("no kdc servers"), "{}", err.detail);
        let err = run(&config, client, Service::Kdc, b"\x30\x00")
            .await
            .unwrap_err();
        assert_eq!(err.close, close::MALFORMED);
    }
}
