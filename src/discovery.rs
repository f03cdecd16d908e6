//! Finding a realm's wss URLs in DNS.
//!
//! When a realm has no `kdc` lines in krb5.conf and `dns_lookup_kdc` is on
//! (MIT's default), libkrb5 looks for the realm's KDCs in DNS. The plugin
//! looks first, for records that name WebSocket endpoints:
//!
//! 1. URI records (RFC 7553) at `_kerberos.REALM` (and `_kpasswd.REALM`) in
//!    MIT's own `krb5srv:` form with `wss` as the transport:
//!    `krb5srv:[m]:wss:wss://host[:port]/path` (`m` marks a primary KDC).
//!    libkrb5 skips transports it does not know, so these sit beside
//!    ordinary `krb5srv::tcp:` records. Skipped when `dns_uri_lookup` is off.
//! 2. Otherwise SRV records `_kerberos._wss.REALM` (`_kpasswd._wss.REALM`),
//!    each becoming `wss://target:port/kdc` (`/kpasswd`): SRV carries no
//!    path, so the default paths are used.
//!
//! Records are ordered by priority, then RFC 2782 weight; the order is
//! drawn once per cached answer, so one process keeps one order (and one
//! relay) until the records expire. Answers, including "nothing here", are
//! cached per process for their TTL (negative answers for the SOA minimum,
//! at most [`MAX_NEGATIVE_TTL`]; resolver failures for [`FAILURE_TTL`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use krb5_wss_proto::{DEFAULT_KDC_PATH, DEFAULT_KPASSWD_PATH};
use log::debug;

use crate::dns::{self, Srv, Uri, TYPE_SRV, TYPE_URI};
use crate::url::WssUrl;

/// Longest a positive answer is cached, whatever its TTL.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
/// Longest a "no such record" answer is cached.
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(300);
/// Negative caching when the answer carries no SOA.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// How long a resolver failure (timeout, SERVFAIL) is remembered, so that
/// a dead DNS server does not stall every lookup.
pub const FAILURE_TTL: Duration = Duration::from_secs(10);
const CACHE_MAX: usize = 256;

/// The outcome of one DNS query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryResult {
    /// A response (which may still hold no record of the wanted type).
    Answer(Vec<u8>),
    /// NXDOMAIN or no data; the negative TTL from the SOA, if known.
    NotFound(Option<u32>),
    /// The resolver could not get an answer (timeout, server failure).
    Failed(String),
}

/// Makes DNS queries (the system resolver in production, a table in tests).
pub trait Resolver {
    /// Queries `name` (absolute, with a trailing dot) for `rtype` records.
    fn query(&self, name: &str, rtype: u16) -> QueryResult;
}

/// Which records to look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsService {
    /// `_kerberos`: KDCs.
    Kerberos,
    /// `_kpasswd`: password change servers.
    Kpasswd,
}

impl DnsService {
    fn label(self) -> &'static str {
        match self {
            DnsService::Kerberos => "_kerberos",
            DnsService::Kpasswd => "_kpasswd",
        }
    }
    fn default_path(self) -> &'static str {
        match self {
            DnsService::Kerberos => DEFAULT_KDC_PATH,
            DnsService::Kpasswd => DEFAULT_KPASSWD_PATH,
        }
    }
}

/// One URL found in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The endpoint.
    pub url: WssUrl,
    /// True for a URI record with the `m` (primary) flag.
    pub primary: bool,
}

/// What DNS says about one service of a realm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Discovered {
    /// wss URLs in the order to try them.
    pub urls: Vec<Found>,
    /// True when URI records exist for the service but none uses `wss`
    /// (the administrator published only other transports).
    pub other_transports_only: bool,
    /// Where the URLs came from, for logs: "URI _kerberos.R." etc.
    pub source: String,
}

#[derive(Clone)]
struct Entry {
    expires: Instant,
    value: Arc<Discovered>,
}

/// The per-process answer cache.
pub(crate) struct Cache {
    pid: u32,
    entries: HashMap<(String, DnsService, bool), Entry>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// Locks the cache (exposed for the fork handlers, which hold it across
/// fork so no other thread can be inside it).
pub(crate) fn lock_cache() -> MutexGuard<'static, Option<Cache>> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// Parses a `krb5srv:` URI target; returns `(primary, url)` when its
/// transport is `wss`, None for other transports or malformed values.
pub fn parse_krb5srv(target: &str, default_path: &str) -> Option<(bool, Result<WssUrl, String>)> {
    let (scheme, rest) = target.split_at_checked(8)?;
    if !scheme.eq_ignore_ascii_case("krb5srv:") {
        return None;
    }
    let mut parts = rest.splitn(3, ':');
    let flags = parts.next()?;
    let transport = parts.next()?;
    let residual = parts.next()?;
    if !transport.eq_ignore_ascii_case("wss") {
        return None;
    }
    let primary = flags.contains(['m', 'M']);
    Some((
        primary,
        WssUrl::parse(residual, default_path).map_err(|e| e.to_string()),
    ))
}

/// How long to keep an answer with TTL `ttl` seconds.
fn positive_ttl(ttl: u32) -> Duration {
    Duration::from_secs(u64::from(ttl)).min(MAX_TTL)
}

fn negative(ttl: Option<u32>) -> Duration {
    ttl.map(|t| Duration::from_secs(u64::from(t)))
        .unwrap_or(DEFAULT_NEGATIVE_TTL)
        .min(MAX_NEGATIVE_TTL)
}

/// What one query yielded: URLs, whether records of other transports
/// only were found, and how long the answer may be cached.
struct Step {
    urls: Vec<Found>,
    other_transports_only: bool,
    keep: Duration,
}

impl Step {
    fn empty(keep: Duration) -> Step {
        Step {
            urls: Vec::new(),
            other_transports_only: false,
            keep,
        }
    }
}

/// Runs one query and parses it with `parse` (which returns the URLs and
/// whether the records named only other transports).
fn step<T>(
    resolver: &dyn Resolver,
    name: &str,
    rtype: u16,
    parse_answer: impl Fn(&[u8]) -> Result<dns::Answer<T>, dns::ParseError>,
    to_urls: impl FnOnce(Vec<T>) -> (Vec<Found>, bool),
) -> Step {
    match resolver.query(name, rtype) {
        QueryResult::Answer(msg) => match parse_answer(&msg) {
            Ok(ans) if !ans.records.is_empty() => {
                let keep = positive_ttl(ans.ttl);
                let (urls, other_transports_only) = to_urls(ans.records);
                Step {
                    urls,
                    other_transports_only,
                    keep,
                }
            }
            Ok(_) => Step::empty(negative(dns::negative_ttl(&msg))),
            Err(e) => {
                debug!("{name}: {e}");
                Step::empty(FAILURE_TTL)
            }
        },
        QueryResult::NotFound(ttl) => Step::empty(negative(ttl)),
        QueryResult::Failed(e) => {
            debug!("{name}: lookup failed: {e}");
            Step::empty(FAILURE_TTL)
        }
    }
}

fn push_unique(urls: &mut Vec<Found>, found: Found) {
    if !urls.iter().any(|f| f.url == found.url) {
        urls.push(found);
    }
}

/// Queries URI then SRV for `service` of `realm`, uncached. Returns the
/// result and how long it may be cached.
fn lookup_uncached(
    resolver: &dyn Resolver,
    realm: &str,
    service: DnsService,
    use_uri: bool,
    random: &mut dyn FnMut() -> u32,
) -> (Discovered, Duration) {
    let path = service.default_path();
    let mut keep = MAX_TTL;
    let mut other_transports_only = false;
    if use_uri {
        let name = absolute(&format!("{}.{realm}", service.label()));
        let uri = step(resolver, &name, TYPE_URI, dns::parse_uri, |records| {
            let ordered = dns::order_by_priority_and_weight(
                &records,
                |r: &Uri| (r.priority, r.weight),
                &mut *random,
            );
            let mut urls = Vec::new();
            for rec in &ordered {
                match parse_krb5srv(&rec.target, path) {
                    Some((primary, Ok(url))) => push_unique(&mut urls, Found { url, primary }),
                    Some((_, Err(e))) => {
                        debug!("{name} URI record \"{}\" skipped: {e}", rec.target)
                    }
                    None => {}
                }
            }
            let other = urls.is_empty();
            (urls, other)
        });
        keep = keep.min(uri.keep);
        if !uri.urls.is_empty() {
            let discovered = Discovered {
                urls: uri.urls,
                other_transports_only: false,
                source: format!("URI {name}"),
            };
            return (discovered, keep);
        }
        other_transports_only = uri.other_transports_only;
    }
    let name = absolute(&format!("{}._wss.{realm}", service.label()));
    let srv = step(resolver, &name, TYPE_SRV, dns::parse_srv, |records| {
        // A "." target (empty here) means the service is decidedly not here.
        let real: Vec<Srv> = records
            .into_iter()
            .filter(|r| !r.target.is_empty())
            .collect();
        let ordered = dns::order_by_priority_and_weight(
            &real,
            |r: &Srv| (r.priority, r.weight),
            &mut *random,
        );
        let mut urls = Vec::new();
        for rec in &ordered {
            match WssUrl::parse(&format!("wss://{}:{}{path}", rec.target, rec.port), path) {
                Ok(url) => push_unique(
                    &mut urls,
                    Found {
                        url,
                        primary: false,
                    },
                ),
                Err(e) => debug!("{name} SRV record skipped: {e}"),
            }
        }
        if urls.is_empty() {
            debug!("{name}: SRV says there is no service");
        }
        (urls, false)
    });
    let source = if srv.urls.is_empty() {
        String::new()
    } else {
        format!("SRV {name}")
    };
    let discovered = Discovered {
        urls: srv.urls,
        other_transports_only,
        source,
    };
    (discovered, keep.min(srv.keep))
}

/// What DNS says about `service` of `realm`, from the process cache when
/// fresh. `use_uri` is `dns_uri_lookup`.
pub fn discover(
    resolver: &dyn Resolver,
    realm: &str,
    service: DnsService,
    use_uri: bool,
) -> Arc<Discovered> {
    let key = (realm.to_ascii_lowercase(), service, use_uri);
    let pid = std::process::id();
    {
        let mut guard = lock_cache();
        let cache = guard.get_or_insert_with(|| Cache {
            pid,
            entries: HashMap::new(),
        });
        if cache.pid != pid {
            // A forked child: answers are still true, keep them.
            cache.pid = pid;
        }
        if let Some(e) = cache.entries.get(&key) {
            if e.expires > Instant::now() {
                debug!("realm {realm}: DNS answer for {service:?} from the cache");
                return e.value.clone();
            }
        }
    }
    // Query without holding the lock: DNS may take seconds.
    let (found, keep) = lookup_uncached(resolver, realm, service, use_uri, &mut dns::random_u32);
    let value = Arc::new(found);
    if !keep.is_zero() {
        let mut guard = lock_cache();
        if let Some(cache) = guard.as_mut() {
            let now = Instant::now();
            if cache.entries.len() >= CACHE_MAX {
                cache.entries.retain(|_, e| e.expires > now);
                if cache.entries.len() >= CACHE_MAX {
                    cache.entries.clear();
                }
            }
            cache.entries.insert(
                key,
                Entry {
                    expires: now + keep,
                    value: value.clone(),
                },
            );
        }
    }
    value
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A resolver answering from a table of pre-built responses, counting queries.
    #[derive(Default)]
    pub(crate) struct TableResolver {
        pub answers: HashMap<(String, u16), QueryResult>,
        pub queries: RefCell<Vec<(String, u16)>>,
    }

    impl Resolver for TableResolver {
        fn query(&self, name: &str, rtype: u16) -> QueryResult {
            self.queries.borrow_mut().push((name.to_string(), rtype));
            self.answers
                .get(&(name.to_string(), rtype))
                .cloned()
                .unwrap_or(QueryResult::NotFound(None))
        }
    }

    pub(crate) use crate::dns::tests::{srv_rdata as srv, uri_rdata as uri};

    /// A response holding `rdatas` as answers of one type and TTL.
    pub(crate) fn response(qtype: u16, ttl: u32, rdatas: &[Vec<u8>]) -> Vec<u8> {
        let answers: Vec<_> = rdatas.iter().map(|r| (qtype, ttl, r.clone())).collect();
        crate::dns::tests::response("q.example", qtype, &answers, &[])
    }

    fn urls(d: &Discovered) -> Vec<String> {
        d.urls
            .iter()
            .map(|f| format!("{}{}", if f.primary { "m " } else { "" }, f.url))
            .collect()
    }

    fn run(r: &TableResolver, service: DnsService, use_uri: bool) -> (Discovered, Duration) {
        lookup_uncached(r, "EXAMPLE.COM", service, use_uri, &mut || 0)
    }

    #[test]
    fn krb5srv_forms() {
        let (m, u) = parse_krb5srv("krb5srv:m:wss:wss://kdc.example.com/kdc", "/kdc").unwrap();
        assert!(m);
        assert_eq!(u.unwrap().to_string(), "wss://kdc.example.com/kdc");
        let (m, u) = parse_krb5srv("KRB5SRV::WSS:wss://h:8443", "/kpasswd").unwrap();
        assert!(!m);
        assert_eq!(u.unwrap().to_string(), "wss://h:8443/kpasswd");
        assert!(parse_krb5srv("krb5srv::tcp:kdc.example.com", "/kdc").is_none());
        assert!(parse_krb5srv("krb5srv:m:kkdcp:https://h/KdcProxy", "/kdc").is_none());
        assert!(parse_krb5srv("http://x", "/kdc").is_none());
        assert!(parse_krb5srv("krb5srv::wss:wss://", "/kdc")
            .unwrap()
            .1
            .is_err());
    }

    #[test]
    fn uri_records_win_over_srv_and_keep_the_primary_flag() {
        let mut r = TableResolver::default();
        r.answers.insert(
            ("_kerberos.EXAMPLE.COM.".into(), TYPE_URI),
            QueryResult::Answer(response(
                TYPE_URI,
                300,
                &[
                    uri(20, 0, "krb5srv::wss:wss://b.example.com/kdc"),
                    uri(10, 0, "krb5srv:m:wss:wss://a.example.com/kdc"),
                    uri(5, 0, "krb5srv::tcp:kdc.example.com"),
                ],
            )),
        );
        r.answers.insert(
            ("_kerberos._wss.EXAMPLE.COM.".into(), TYPE_SRV),
            QueryResult::Answer(response(
                TYPE_SRV,
                300,
                &[srv(0, 0, 443, "srv.example.com")],
            )),
        );
        let (d, keep) = run(&r, DnsService::Kerberos, true);
        assert_eq!(
            urls(&d),
            ["m wss://a.example.com/kdc", "wss://b.example.com/kdc"]
        );
        assert_eq!(keep, Duration::from_secs(300));
        assert!(d.source.starts_with("URI _kerberos.EXAMPLE.COM."));
        assert_eq!(
            r.queries.borrow().len(),
            1,
            "SRV not asked when URI answered"
        );
    }

    #[test]
    fn srv_when_no_wss_uri_and_when_uri_lookup_is_off() {
        let mut r = TableResolver::default();
        r.answers.insert(
            ("_kerberos.EXAMPLE.COM.".into(), TYPE_URI),
            QueryResult::Answer(response(
                TYPE_URI,
                300,
                &[uri(0, 0, "krb5srv::tcp:kdc.example.com")],
            )),
        );
        r.answers.insert(
            ("_kerberos._wss.EXAMPLE.COM.".into(), TYPE_SRV),
            QueryResult::Answer(response(
                TYPE_SRV,
                120,
                &[
                    srv(2, 0, 443, "b.example.com"),
                    srv(1, 0, 8443, "a.example.com."),
                ],
            )),
        );
        let (d, keep) = run(&r, DnsService::Kerberos, true);
        assert_eq!(
            urls(&d),
            ["wss://a.example.com:8443/kdc", "wss://b.example.com/kdc"]
        );
        assert!(d.other_transports_only);
        assert_eq!(keep, Duration::from_secs(120));

        let r2 = TableResolver {
            answers: r.answers.clone(),
            ..Default::default()
        };
        let (d, _) = run(&r2, DnsService::Kerberos, false);
        assert_eq!(d.urls.len(), 2);
        assert_eq!(
            r2.queries.borrow().as_slice(),
            [("_kerberos._wss.EXAMPLE.COM.".to_string(), TYPE_SRV)]
        );
    }

    #[test]
    fn kpasswd_srv_uses_the_kpasswd_path() {
        let mut r = TableResolver::default();
        r.answers.insert(
            ("_kpasswd._wss.EXAMPLE.COM.".into(), TYPE_SRV),
            QueryResult::Answer(response(TYPE_SRV, 60, &[srv(0, 0, 443, "pw.example.com")])),
        );
        let (d, _) = run(&r, DnsService::Kpasswd, true);
        assert_eq!(urls(&d), ["wss://pw.example.com/kpasswd"]);
    }

    #[test]
    fn dot_target_means_no_service() {
        let mut r = TableResolver::default();
        r.answers.insert(
            ("_kerberos._wss.EXAMPLE.COM.".into(), TYPE_SRV),
            QueryResult::Answer(response(TYPE_SRV, 60, &[srv(0, 0, 0, ".")])),
        );
        let (d, keep) = run(&r, DnsService::Kerberos, true);
        assert!(d.urls.is_empty());
        assert_eq!(keep, Duration::from_secs(60));
    }

    #[test]
    fn nothing_in_dns_is_cached_negatively() {
        let mut r = TableResolver::default();
        r.answers.insert(
            ("_kerberos.EXAMPLE.COM.".into(), TYPE_URI),
            QueryResult::NotFound(Some(30)),
        );
        let (d, keep) = run(&r, DnsService::Kerberos, true);
        assert!(d.urls.is_empty() && !d.other_transports_only);
        // URI said 30 s; SRV had no SOA: the default 60 s; the smaller wins.
        assert_eq!(keep, Duration::from_secs(30));
        r.answers.insert(
            ("_kerberos.EXAMPLE.COM.".into(), TYPE_URI),
            QueryResult::NotFound(Some(86400)),
        );
        let (_, keep) = run(&r, DnsService::Kerberos, true);
        assert_eq!(keep, DEFAULT_NEGATIVE_TTL);
    }

    #[test]
    fn resolver_failures_are_remembered_briefly() {
        let mut r = TableResolver::default();
        r.answers.insert(
            ("_kerberos.EXAMPLE.COM.".into(), TYPE_URI),
            QueryResult::Failed("timed out".into()),
        );
        let (_, keep) = run(&r, DnsService::Kerberos, true);
        assert_eq!(keep, FAILURE_TTL);
    }

    #[test]
    fn cache_serves_repeated_lookups_until_expiry() {
        let mut r = TableResolver::default();
        r.answers.insert(
            ("_kerberos.CACHE.TEST.".into(), TYPE_URI),
            QueryResult::Answer(response(
                TYPE_URI,
                300,
                &[uri(0, 0, "krb5srv::wss:wss://c.test/kdc")],
            )),
        );
        let a = discover(&r, "CACHE.TEST", DnsService::Kerberos, true);
        let b = discover(&r, "CACHE.TEST", DnsService::Kerberos, true);
        assert_eq!(a, b);
        assert_eq!(r.queries.borrow().len(), 1);
        // TTL 0: never cached.
        let mut r0 = TableResolver::default();
        r0.answers.insert(
            ("_kerberos.ZERO.TEST.".into(), TYPE_URI),
            QueryResult::Answer(response(
                TYPE_URI,
                0,
                &[uri(0, 0, "krb5srv::wss:wss://z.test/kdc")],
            )),
        );
        discover(&r0, "ZERO.TEST", DnsService::Kerberos, true);
        discover(&r0, "ZERO.TEST", DnsService::Kerberos, true);
        assert_eq!(r0.queries.borrow().len(), 2);
    }
}
