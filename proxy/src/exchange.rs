//! One exchange, independent of the transport that carried the request:
//! check the record, find its realm's servers, apply the realm's policy,
//! forward it, write one audit line (see [`crate::audit`]).
//!
//! The WebSocket session uses this for each record, the MS-KKDCP endpoint
//! for each POST body.

use crate::audit::Line;
use crate::client::Client;
use crate::clientcert::{self, Mismatch, PeerCert};
use crate::config::Config;
use crate::logfmt::Value;
use crate::metrics::Transport;
use crate::state::Shared;
use crate::upstream;
use krb5_wss_proto::close::{self, CloseCode};
use krb5_wss_proto::error_names;
use krb5_wss_proto::kerberos::{
    check_kdc_request, check_kpasswd_request, kdc_reply, KdcReply, KdcRequestKind, MessageError,
};
use krb5_wss_proto::Service;
use std::fmt;
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
    /// A KDC request's client name (AS-REQ `cname`), without the realm.
    pub cname: Option<String>,
    /// A KDC request's service name (`sname`), without the realm.
    pub sname: Option<String>,
}

impl Checked {
    /// True for an AS-REQ.
    pub fn is_as_req(&self) -> bool {
        self.kind == KdcRequestKind::AsReq.name()
    }

    /// Adds `realm`, `type` and (when `principals`) `cname` and `sname`.
    fn fields(&self, line: &mut Line, principals: bool) {
        line.text("realm", &self.realm).text("type", &self.kind);
        if principals {
            line.opt("cname", self.cname.as_deref().map(|c| At(c, &self.realm)))
                .opt("sname", self.sname.as_deref());
        }
    }
}

/// `name@realm`, written without building the string first.
struct At<N, R>(N, R);

impl<N: fmt::Display, R: fmt::Display> fmt::Display for At<N, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)?;
        f.write_str("@")?;
        self.1.fmt(f)
    }
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
            cname: r.cname.map(|n| n.to_string()),
            sname: r.sname.map(|n| n.to_string()),
        }),
        Service::Kpasswd => check_kpasswd_request(record).map(|r| Checked {
            realm: r.realm,
            kind: format!("kpasswd-{:#06x}", r.version),
            cname: None,
            sname: None,
        }),
    }
}

/// The service a record addressed to a single endpoint (MS-KKDCP) is for:
/// kpasswd when it is a well-formed RFC 3244 request, else the KDC (whose
/// check then decides).
pub fn classify(record: &[u8]) -> Service {
    if check_kpasswd_request(record).is_ok() {
        Service::Kpasswd
    } else {
        Service::Kdc
    }
}

/// One request to answer.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Which servers it is for.
    pub service: Service,
    /// How it arrived.
    pub transport: Transport,
    /// The record, without its length prefix.
    pub record: &'a [u8],
    /// The realm the client said it addresses (MS-KKDCP `target-domain`);
    /// it must name the request's own realm. \[MS-KKDCP\] §2.2.2 makes it
    /// case-insensitive, so it is compared so; it never routes: the realm
    /// inside the message does, matched exactly.
    pub target_realm: Option<&'a str>,
    /// The client certificate of the connection, when it presented one.
    pub client_cert: Option<&'a PeerCert>,
}

/// Handles one request from `client`: on success returns the framed reply
/// to send back. A refused request is never forwarded.
///
/// Logs one `exchange` line at info for every request that was forwarded
/// (answered or not); refusals, a policy's included, are for the caller
/// to log (see [`log_refusal`]).
///
/// The realm's policy and the audit settings are read from the active
/// configuration at each request, so a reload applies them to
/// connections already open too (a pooled client connection can live
/// long); servers and limits stay the connection's.
pub async fn run(
    shared: &Shared,
    config: &Config,
    client: &Client,
    req: Request<'_>,
) -> Result<Vec<u8>, Refusal> {
    let Request {
        service,
        transport,
        record,
        target_realm,
        client_cert,
    } = req;
    let checked =
        check(service, record).map_err(|e| Refusal::new(close::MALFORMED, e.to_string()))?;
    if let Some(target) = target_realm {
        if !target.eq_ignore_ascii_case(&checked.realm) {
            return Err(Refusal::new(
                close::MALFORMED,
                format!("target-domain {} is not the request's realm", Value(target)),
            )
            .with_request(checked));
        }
    }
    let realm = match config.realm(&checked.realm) {
        None => {
            return Err(
                Refusal::new(close::REALM_NOT_SERVED, "realm not configured").with_request(checked),
            )
        }
        Some(r) if r.for_service(service).is_empty() && !r.discovers(service) => {
            return Err(Refusal::new(
                close::REALM_NOT_SERVED,
                format!("no {service} servers configured for the realm"),
            )
            .with_request(checked))
        }
        Some(r) => r,
    };
    let now = shared.active();
    let principals = now.config.audit_principals;
    // The realm's client certificates, read like its policy from the
    // active configuration; every service of the realm is judged.
    let subjects = now
        .config
        .realms
        .get(&checked.realm)
        .map_or(&realm.client_subjects, |r| &r.client_subjects);
    if let Err(mismatch) = clientcert::check(subjects, client_cert) {
        let (close, detail) = match mismatch {
            Mismatch::Missing => (
                close::CLIENT_CERT_REQUIRED,
                format!(
                    "[realms.{:?}] client_subjects is set and the connection presented no client certificate",
                    checked.realm
                ),
            ),
            Mismatch::NotAllowed => (
                close::CLIENT_CERT_NOT_ALLOWED,
                format!(
                    "[realms.{:?}] no pattern of client_subjects matches the client certificate",
                    checked.realm
                ),
            ),
        };
        return Err(Refusal::new(close, detail).with_request(checked));
    }
    if service == Service::Kdc {
        let policy = now
            .config
            .realm(&checked.realm)
            .map_or(&realm.policy, |r| &r.policy);
        if let Err(denial) = policy.check(
            &checked.realm,
            checked.is_as_req(),
            checked.cname.as_deref(),
            checked.sname.as_deref(),
        ) {
            let mut detail = format!("[realms.{:?}] {denial}", checked.realm);
            if let (true, Some(name)) = (principals, &denial.name) {
                detail.push_str(&format!(" {name}"));
            }
            return Err(Refusal::new(close::POLICY_DENIED, detail).with_request(checked));
        }
    }
    // The throttle's principal: an AS-REQ's cname@realm.
    let settings = &now.config.throttle;
    let guessed = match (&checked.cname, service, settings.enabled) {
        (Some(c), Service::Kdc, true) if checked.is_as_req() => {
            let mut p = String::with_capacity(c.len() + 1 + checked.realm.len());
            p.push_str(c);
            p.push('@');
            p.push_str(&checked.realm);
            Some(p)
        }
        _ => None,
    };
    if let Some(principal) = &guessed {
        if let Err(t) = shared
            .store
            .check(
                &shared.throttle,
                settings,
                &shared.metrics,
                client.key(),
                principal,
            )
            .await
        {
            shared.metrics.throttled(t.kind);
            return Err(Refusal::new(close::THROTTLED, t.to_string()).with_request(checked));
        }
    }
    let limits = &config.limits;
    let Some(_place) = shared.admission.upstream(limits.max_upstream_exchanges) else {
        return Err(Refusal::new(
            close::OVERLOADED,
            format!(
                "{} upstream exchanges in progress (max_upstream_exchanges)",
                limits.max_upstream_exchanges
            ),
        )
        .with_request(checked));
    };
    let udp = (realm.udp && service == Service::Kdc).then_some(&shared.udp);
    let start = Instant::now();
    let result = match servers(shared, config, realm, service, &checked.realm).await {
        Ok(servers) => upstream::forward(&servers, record, limits, udp).await,
        Err(e) => Err(e),
    };
    let elapsed = start.elapsed();
    shared
        .metrics
        .exchange(service, transport, result.is_ok(), elapsed);
    let mut line = Line::new("exchange");
    line.text("client", client);
    cert_field(&mut line, client_cert, principals);
    line.text("service", service).text("transport", transport);
    checked.fields(&mut line, principals);
    let outcome = match result {
        Ok(reply) => {
            line.text("kdc", reply.server)
                .text("kdc_transport", reply.protocol)
                .text("result", "ok");
            let message = reply.framed.get(4..).unwrap_or_default();
            if service == Service::Kdc {
                let error = reply_fields(shared, &mut line, message, principals);
                if let (Some(principal), Some(code)) = (&guessed, error) {
                    if crate::throttle::is_failure(code) {
                        count_failure(shared, settings, client, principal, principals).await;
                    }
                }
            }
            line.number("reply_bytes", message.len() as u64);
            Ok(reply.framed)
        }
        Err(failure) => {
            let error = failure.to_string();
            line.text("kdc", "-")
                .text("result", "failed")
                .text("error", &error);
            Err(Refusal::new(close::KDC_UNREACHABLE, error).with_request(checked))
        }
    };
    line.number(
        "elapsed_us",
        elapsed.as_micros().min(u64::MAX as u128) as u64,
    );
    log::info!(target: crate::logfmt::AUDIT_TARGET, "{}", line.finish());
    outcome
}

/// The servers to try: the configured list, or the one discovered in DNS
/// (`kdc = "dns"`) for the request's realm.
async fn servers(
    shared: &Shared,
    config: &Config,
    realm: &crate::config::RealmServers,
    service: Service,
    name: &str,
) -> Result<Vec<crate::addr::ServerAddr>, upstream::Failure> {
    if !realm.discovers(service) {
        return Ok(realm.for_service(service).to_vec());
    }
    shared
        .discovery
        .servers(&config.discovery, &shared.metrics, service, name)
        .await
        .map_err(|e| upstream::Failure::discovery(e.0))
}

/// Counts a pre-authentication failure of `principal` from `client`;
/// writes one `throttle` line (and counts a trip) for each key it trips.
async fn count_failure(
    shared: &Shared,
    settings: &crate::throttle::Settings,
    client: &Client,
    principal: &str,
    principals: bool,
) {
    let key = client.key();
    let trips = shared
        .store
        .failure(&shared.throttle, settings, &shared.metrics, key, principal)
        .await;
    for t in trips {
        shared.metrics.throttle_trip(t.kind);
        let mut line = Line::new("throttle");
        line.text("key", t.kind.name());
        if t.kind != crate::throttle::Kind::Principal {
            line.text("address", key);
        }
        if principals && t.kind != crate::throttle::Kind::Address {
            line.text("principal", principal);
        }
        line.number("threshold", t.threshold)
            .number("window_s", t.window.as_secs())
            .number("cooldown_s", t.remaining.as_secs());
        log::warn!(target: crate::logfmt::AUDIT_TARGET, "{}", line.finish());
    }
}

/// What the KDC's reply says in the clear: its type, the ticket's client,
/// or the error by name (counted in the metrics) and its e-text. Returns
/// the KRB-ERROR code when the reply is one.
fn reply_fields(shared: &Shared, line: &mut Line, message: &[u8], principals: bool) -> Option<i64> {
    match kdc_reply(message) {
        Some(KdcReply::Ticket {
            kind,
            crealm,
            cname,
        }) => {
            line.text("reply", kind);
            if principals {
                line.text("reply_cname", At(&cname, &crealm));
            }
            None
        }
        Some(KdcReply::Error { code, e_text }) => {
            shared.metrics.krb_error(code);
            line.text("reply", "KRB-ERROR")
                .text(
                    "krb_error",
                    error_names::name(code)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("KRB_ERROR_{code}")),
                )
                .number("krb_error_code", code)
                .opt("e_text", e_text);
            Some(code)
        }
        None => {
            line.text("reply", "-");
            None
        }
    }
}

/// Adds `client_cert` (the certificate's names, `CN=…,DNS=…`) when the
/// connection presented one and principals are written: a certificate's
/// names identify a host or a person as a principal does.
fn cert_field(line: &mut Line, cert: Option<&PeerCert>, principals: bool) {
    if let (Some(c), true) = (cert, principals) {
        line.text("client_cert", c);
    }
}

/// The one warn line of a refusal (and its count in the metrics).
/// `service` is what the path or the message named; `http` the status
/// answered when the refusal went out as an HTTP response.
pub fn log_refusal(
    shared: &Shared,
    client: &Client,
    client_cert: Option<&PeerCert>,
    service: Service,
    transport: Transport,
    refusal: &Refusal,
    http: Option<u16>,
) {
    shared.metrics.refusal(refusal.close);
    let principals = shared.active().config.audit_principals;
    let mut line = Line::new("refused");
    line.text("client", client);
    cert_field(&mut line, client_cert, principals);
    line.text("service", service)
        .text("transport", transport)
        .number("close", refusal.close.code);
    if let Some(s) = http {
        line.number("http", s);
    }
    line.text("reason", refusal.close.reason);
    if let Some(r) = &refusal.request {
        r.fields(&mut line, principals);
    }
    line.text("detail", &refusal.detail);
    log::warn!(target: crate::logfmt::AUDIT_TARGET, "{}", line.finish());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RealmServers, Transport as Listen};
    use krb5_wss_proto::samples;
    use std::net::SocketAddr;

    #[test]
    fn kdc_path_checks() {
        let c = check(Service::Kdc, &samples::as_req("A.ORG")).unwrap();
        assert_eq!(c.realm, "A.ORG");
        assert_eq!(c.kind, "AS-REQ");
        assert_eq!(c.to_string(), "realm=A.ORG type=AS-REQ");
        assert!(check(Service::Kpasswd, &samples::as_req("A.ORG")).is_err());
        assert!(check(Service::Kdc, b"hello").is_err());
        let c = check(Service::Kpasswd, &samples::kpasswd_req(0xff80, "A.ORG")).unwrap();
        assert_eq!(c.kind, "kpasswd-0xff80");
    }

    #[test]
    fn audit_target_is_this_module() {
        let here = module_path!().trim_end_matches("::tests");
        assert_eq!(here, crate::logfmt::AUDIT_TARGET);
    }

    #[test]
    fn classification() {
        assert_eq!(classify(&samples::as_req("A")), Service::Kdc);
        assert_eq!(classify(&samples::tgs_req("A")), Service::Kdc);
        assert_eq!(classify(&samples::kpasswd_req(1, "A")), Service::Kpasswd);
        assert_eq!(classify(b"junk"), Service::Kdc);
    }

    fn config(realms: &[(&str, RealmServers)]) -> Config {
        Config {
            listen: vec![],
            transport: Listen::Plaintext,
            client_auth: None,
            realms: realms
                .iter()
                .map(|(n, r)| (n.to_string(), r.clone()))
                .collect(),
            limits: Default::default(),
            metrics_listen: None,
            kkdcp_path: None,
            allowed_origins: vec![],
            trusted_proxies: vec![],
            log_format: Default::default(),
            audit_principals: true,
            kkdcp_require_target_domain: true,
            throttle: Default::default(),
            discovery: Default::default(),
        }
    }

    fn request(record: &[u8]) -> Request<'_> {
        Request {
            service: Service::Kdc,
            transport: Transport::WebSocket,
            record,
            target_realm: None,
            client_cert: None,
        }
    }

    #[tokio::test]
    async fn unserved_realm_and_service_are_refused_unforwarded() {
        // No servers at all: a forward would fail loudly (4502, not 4403).
        let config = config(&[("A.ORG", RealmServers::default())]);
        let shared = Shared::for_config(config.clone());
        let client = Client::direct("127.0.0.1:1".parse::<SocketAddr>().unwrap());
        let run = |record: Vec<u8>, target: Option<&'static str>| {
            let (shared, config) = (shared.clone(), config.clone());
            async move {
                let req = Request {
                    target_realm: target,
                    client_cert: None,
                    ..request(&record)
                };
                run(&shared, &config, &client, req).await
            }
        };
        let err = run(samples::as_req("B.ORG"), None).await.unwrap_err();
        assert_eq!(err.close, close::REALM_NOT_SERVED);
        assert_eq!(err.request.unwrap().realm, "B.ORG");
        let err = run(samples::as_req("a.org"), None).await.unwrap_err();
        assert_eq!(err.close, close::REALM_NOT_SERVED, "realm match is exact");
        let err = run(samples::as_req("A.ORG"), None).await.unwrap_err();
        assert_eq!(err.close, close::REALM_NOT_SERVED, "no kdc for A.ORG");
        assert!(err.detail.contains("no kdc servers"), "{}", err.detail);
        let err = run(b"\x30\x00".to_vec(), None).await.unwrap_err();
        assert_eq!(err.close, close::MALFORMED);
        // An MS-KKDCP target-domain must be the message's own realm: it
        // never routes by itself.
        let err = run(samples::as_req("B.ORG"), Some("A.ORG"))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::MALFORMED);
        assert!(err.detail.contains("target-domain"), "{}", err.detail);
        // A target-domain in another case passes the check (MS-KKDCP makes
        // it case-insensitive), and routing stays by the message's realm.
        let err = run(samples::as_req("A.ORG"), Some("a.org"))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::REALM_NOT_SERVED);
        assert!(err.detail.contains("no kdc servers"), "{}", err.detail);
    }

    #[tokio::test]
    async fn client_subjects_refuse_before_forwarding() {
        // The KDC is unreachable: a forwarded request would be 4502.
        let servers = RealmServers {
            kdc: vec![crate::addr::parse_server("127.0.0.1:1", 88).unwrap()],
            kpasswd: vec![crate::addr::parse_server("127.0.0.1:1", 464).unwrap()],
            client_subjects: vec!["*.a.example".into()],
            ..Default::default()
        };
        let config = config(&[("A.ORG", servers)]);
        let shared = Shared::for_config(config.clone());
        let client = Client::direct("127.0.0.1:1".parse::<SocketAddr>().unwrap());
        let ours = PeerCert {
            cn: vec!["h1.a.example".into()],
            dns: vec![],
        };
        let theirs = PeerCert {
            cn: vec!["h1.b.example".into()],
            dns: vec![],
        };
        let kpasswd = samples::kpasswd_req(1, "A.ORG");
        for (service, record) in [
            (Service::Kdc, samples::as_req("A.ORG")),
            (Service::Kpasswd, kpasswd),
        ] {
            let req = |cert| Request {
                service,
                client_cert: cert,
                ..request(&record)
            };
            let err = run(&shared, &config, &client, req(None)).await.unwrap_err();
            assert_eq!(err.close, close::CLIENT_CERT_REQUIRED);
            assert!(err.detail.contains("client_subjects"), "{}", err.detail);
            let err = run(&shared, &config, &client, req(Some(&theirs)))
                .await
                .unwrap_err();
            assert_eq!(err.close, close::CLIENT_CERT_NOT_ALLOWED);
            let err = run(&shared, &config, &client, req(Some(&ours)))
                .await
                .unwrap_err();
            assert_eq!(err.close, close::KDC_UNREACHABLE, "forwarded");
        }
    }

    #[tokio::test]
    async fn policy_denies_before_forwarding() {
        // The KDC is unreachable: a forwarded request would be 4502.
        let servers = RealmServers {
            kdc: vec![crate::addr::parse_server("127.0.0.1:1", 88).unwrap()],
            policy: crate::policy::Policy {
                allow_services: vec!["krbtgt/A.ORG".into()],
                deny_clients: vec!["mallory".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let config = config(&[("A.ORG", servers)]);
        let shared = Shared::for_config(config.clone());
        let client = Client::direct("127.0.0.1:1".parse::<SocketAddr>().unwrap());
        let record = samples::tgs_req_for("A.ORG", &["host", "x"]);
        let err = run(&shared, &config, &client, request(&record))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::POLICY_DENIED);
        assert!(err.detail.contains("allow_services"), "{}", err.detail);
        assert!(err.detail.ends_with(" host/x"), "{}", err.detail);
        let record = samples::as_req_for("A.ORG", "mallory", &["krbtgt", "A.ORG"]);
        let err = run(&shared, &config, &client, request(&record))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::POLICY_DENIED);
        assert!(
            err.detail.contains("deny_clients \"mallory\""),
            "{}",
            err.detail
        );
        // Allowed: forwarded (and unreachable).
        let record = samples::as_req_for("A.ORG", "alice", &["krbtgt", "A.ORG"]);
        let err = run(&shared, &config, &client, request(&record))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::KDC_UNREACHABLE);
    }

    #[tokio::test]
    async fn upstream_exchange_limit() {
        let servers = RealmServers {
            kdc: vec![crate::addr::parse_server("127.0.0.1:1", 88).unwrap()],
            ..Default::default()
        };
        let mut config = config(&[("A.ORG", servers)]);
        config.limits.max_upstream_exchanges = 1;
        let shared = Shared::for_config(config.clone());
        let _busy = shared.admission.upstream(1).unwrap();
        let client = Client::direct("127.0.0.1:1".parse::<SocketAddr>().unwrap());
        let record = samples::as_req("A.ORG");
        let err = run(&shared, &config, &client, request(&record))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::OVERLOADED);
        assert!(err.detail.contains("max_upstream_exchanges"));
    }

    #[tokio::test]
    async fn throttled_as_req_is_refused_unforwarded() {
        // The KDC is unreachable: a forwarded request would be 4502.
        let servers = RealmServers {
            kdc: vec![crate::addr::parse_server("127.0.0.1:1", 88).unwrap()],
            ..Default::default()
        };
        let config = config(&[("A.ORG", servers)]);
        let shared = Shared::for_config(config.clone());
        let client = Client::direct("127.0.0.1:1".parse::<SocketAddr>().unwrap());
        let settings = &config.throttle;
        for _ in 0..settings.pair_failures {
            count_failure(&shared, settings, &client, "alice@A.ORG", true).await;
        }
        let record = samples::as_req_for("A.ORG", "alice", &["krbtgt", "A.ORG"]);
        let err = run(&shared, &config, &client, request(&record))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::THROTTLED);
        assert!(err.detail.starts_with("pair key: 5 "), "{}", err.detail);
        // Another principal, and alice from another address: forwarded.
        let record = samples::as_req_for("A.ORG", "bob", &["krbtgt", "A.ORG"]);
        let err = run(&shared, &config, &client, request(&record))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::KDC_UNREACHABLE);
        let other = Client::direct("127.0.0.2:1".parse::<SocketAddr>().unwrap());
        let record = samples::as_req_for("A.ORG", "alice", &["krbtgt", "A.ORG"]);
        let err = run(&shared, &config, &other, request(&record))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::KDC_UNREACHABLE);
        // TGS-REQs are not throttled.
        let record = samples::tgs_req("A.ORG");
        let err = run(&shared, &config, &client, request(&record))
            .await
            .unwrap_err();
        assert_eq!(err.close, close::KDC_UNREACHABLE);
    }
}
