//! The locate decision: what to answer libkrb5 for one lookup.
//!
//! libkrb5 calls the plugin for every KDC, primary-KDC and kpasswd lookup,
//! first for UDP (SOCK_DGRAM) and then, only if that call returned 0, for
//! TCP (SOCK_STREAM). For a realm it owns the plugin answers the UDP call
//! with no address (so libkrb5 goes on to ask for TCP and never falls back
//! to its own krb5.conf or DNS lookups) and the TCP call with the address
//! of the realm's loopback relay. For every other realm it answers "not
//! mine" after a few in-memory profile queries.

use std::net::SocketAddr;

use krb5_wss_proto::Service;
use log::{debug, warn};

use crate::config::{self, ConfigError, Profile, RealmConfig};
use crate::discovery::{self, DnsService, Resolver};
use crate::relay::{self, Target};

/// The services libkrb5 asks about (`enum locate_service_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocateService {
    /// `locate_service_kdc`.
    Kdc,
    /// `locate_service_primary_kdc` (formerly master_kdc).
    PrimaryKdc,
    /// `locate_service_kadmin`.
    Kadmin,
    /// `locate_service_krb524`.
    Krb524,
    /// `locate_service_kpasswd`.
    Kpasswd,
    /// A value this plugin does not know.
    Other(u32),
}

impl LocateService {
    /// Maps the C enum's value.
    pub fn from_raw(v: u32) -> Self {
        match v {
            1 => LocateService::Kdc,
            2 => LocateService::PrimaryKdc,
            3 => LocateService::Kadmin,
            4 => LocateService::Krb524,
            5 => LocateService::Kpasswd,
            n => LocateService::Other(n),
        }
    }
}

/// The plugin's answer to one lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Not ours: KRB5_PLUGIN_NO_HANDLE, libkrb5 carries on as usual.
    NotOurs,
    /// Ours, but no address for this call (the UDP call; a realm with no
    /// primary KDC configured): return 0 without calling back.
    NoAddress,
    /// Ours: return this TCP address.
    Address(SocketAddr),
    /// The realm's configuration is wrong (KRB5_CONFIG_BADFORMAT).
    ConfigError(String),
    /// No URL of the realm could be reached (KRB5_KDC_UNREACH).
    Unreachable(String),
}

/// The realm's configuration: from krb5.conf when it names wss URLs, else
/// from DNS when wss DNS discovery applies (no `kdc` lines,
/// `wss_dns_discovery` on, libkrb5 would consult DNS). `Ok(None)`: not ours.
pub fn realm_config(
    profile: &dyn Profile,
    resolver: &dyn Resolver,
    realm: &str,
    service: LocateService,
) -> Result<Option<RealmConfig>, ConfigError> {
    if let Some(cfg) = config::load(profile, realm)? {
        return Ok(Some(cfg));
    }
    if !matches!(
        service,
        LocateService::Kdc | LocateService::PrimaryKdc | LocateService::Kpasswd
    ) || !config::dns_lookup_applies(profile, realm)
    {
        return Ok(None);
    }
    let use_uri = config::dns_uri_lookup(profile);
    let kerberos = discovery::discover(resolver, realm, DnsService::Kerberos, use_uri);
    let kpasswd = match service {
        LocateService::Kpasswd => Some(discovery::discover(
            resolver,
            realm,
            DnsService::Kpasswd,
            use_uri,
        )),
        _ => None,
    };
    config::from_dns(profile, realm, &kerberos, kpasswd.as_deref())
}

/// Decides the answer for `service` in `realm`; `stream` is true for the
/// SOCK_STREAM call.
pub fn lookup(
    profile: &dyn Profile,
    resolver: &dyn Resolver,
    service: LocateService,
    realm: &str,
    stream: bool,
) -> Answer {
    // The cheap test comes first: for realms that are not ours, nothing
    // else runs (no logging setup, no allocation beyond the profile query).
    let cfg = match realm_config(profile, resolver, realm, service) {
        Ok(None) => return Answer::NotOurs,
        Ok(Some(cfg)) => {
            crate::logging::init();
            cfg
        }
        Err(e) => {
            crate::logging::init();
            warn!("{e}");
            return Answer::ConfigError(e.to_string());
        }
    };
    let (svc, urls, warm) = match service {
        LocateService::Kdc if !cfg.kdc.is_empty() => (Service::Kdc, cfg.kdc.clone(), true),
        LocateService::PrimaryKdc if !cfg.primary.is_empty() => {
            (Service::Kdc, cfg.primary.clone(), false)
        }
        // The realm is ours but names no primary: libkrb5 then treats every
        // KDC as primary and skips its retry-on-primary.
        LocateService::PrimaryKdc if !cfg.kdc.is_empty() => return Answer::NoAddress,
        LocateService::Kpasswd if !cfg.kpasswd_direct => {
            let urls = cfg.kpasswd_urls();
            if urls.is_empty() {
                return Answer::NotOurs;
            }
            (Service::Kpasswd, urls, true)
        }
        _ => return Answer::NotOurs,
    };
    if !cfg.ignored.is_empty() {
        debug!(
            "realm {realm}: ignoring non-WebSocket entries in a wss realm: {}",
            cfg.ignored.join(", ")
        );
    }
    if !stream {
        debug!(
            "realm {realm} {svc}: UDP lookup answered with no address (wss realm, URLs from {})",
            cfg.source
        );
        return Answer::NoAddress;
    }
    for u in urls.iter().filter(|u| !u.tls) {
        warn!("realm {realm}: {u} has no TLS (ws://, allowed by wss_allow_plaintext)");
    }
    let target = Target::new(&cfg, svc, urls);
    // The lease keeps the relay from retiring until the address is handed
    // to libkrb5, however long the warm-up takes.
    let lease = match relay::relay_for(&target) {
        Ok(r) => r,
        Err(e) => {
            warn!("{e}");
            return Answer::Unreachable(e);
        }
    };
    let relay = lease.relay();
    if warm {
        if let Err(e) = relay.upstream().warm_up() {
            warn!("{e}");
            return Answer::Unreachable(e.to_string());
        }
    }
    debug!(
        "realm {realm} {svc}: {} lookup answered with relay {}",
        match service {
            LocateService::PrimaryKdc => "primary KDC",
            LocateService::Kpasswd => "kpasswd",
            _ => "KDC",
        },
        relay.addr()
    );
    Answer::Address(relay.addr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MapProfile;
    use crate::discovery::tests::TableResolver;

    fn lookup(profile: &MapProfile, service: LocateService, realm: &str, stream: bool) -> Answer {
        super::lookup(profile, &TableResolver::default(), service, realm, stream)
    }

    #[test]
    fn foreign_realm_is_not_ours_for_every_service_and_socktype() {
        let prof = MapProfile::default().with("realms/PLAIN.ORG/kdc", "kdc.plain.org");
        for svc in 1..=6 {
            for stream in [false, true] {
                assert_eq!(
                    lookup(&prof, LocateService::from_raw(svc), "PLAIN.ORG", stream),
                    Answer::NotOurs
                );
            }
        }
    }

    #[test]
    fn udp_lookup_of_our_realm_gets_no_address() {
        let prof = MapProfile::default().with("realms/W.ORG/kdc", "wss://kdc.w.org/kdc");
        assert_eq!(
            lookup(&prof, LocateService::Kdc, "W.ORG", false),
            Answer::NoAddress
        );
        assert_eq!(
            lookup(&prof, LocateService::Kpasswd, "W.ORG", false),
            Answer::NoAddress
        );
    }

    #[test]
    fn kadmin_and_krb524_are_left_to_libkrb5() {
        let prof = MapProfile::default().with("realms/W.ORG/kdc", "wss://kdc.w.org/kdc");
        assert_eq!(
            lookup(&prof, LocateService::Kadmin, "W.ORG", true),
            Answer::NotOurs
        );
        assert_eq!(
            lookup(&prof, LocateService::Krb524, "W.ORG", true),
            Answer::NotOurs
        );
    }

    #[test]
    fn primary_without_configuration_has_no_address() {
        let prof = MapProfile::default().with("realms/W.ORG/kdc", "wss://kdc.w.org/kdc");
        assert_eq!(
            lookup(&prof, LocateService::PrimaryKdc, "W.ORG", true),
            Answer::NoAddress
        );
    }

    #[test]
    fn direct_kpasswd_server_is_left_to_libkrb5() {
        let prof = MapProfile::default()
            .with("realms/W.ORG/kdc", "wss://kdc.w.org/kdc")
            .with("realms/W.ORG/kpasswd_server", "kdc.w.org");
        assert_eq!(
            lookup(&prof, LocateService::Kpasswd, "W.ORG", true),
            Answer::NotOurs
        );
    }

    #[test]
    fn config_errors_are_reported_not_skipped() {
        let prof = MapProfile::default().with("realms/W.ORG/kdc", "ws://kdc.w.org/kdc");
        match lookup(&prof, LocateService::Kdc, "W.ORG", false) {
            Answer::ConfigError(m) => assert!(m.contains("realm W.ORG")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refused_url_is_unreachable_and_named() {
        // Bind and drop a listener to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("wss://127.0.0.1:{port}/kdc");
        let prof = MapProfile::default().with("realms/R.ORG/kdc", &url);
        match lookup(&prof, LocateService::Kdc, "R.ORG", true) {
            Answer::Unreachable(m) => {
                assert!(
                    m.starts_with("Cannot contact any KDC for realm 'R.ORG' over wss"),
                    "{m}"
                );
                assert!(m.contains(&url) && m.contains("connection refused"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    fn dns_realm() -> TableResolver {
        use crate::discovery::tests::{response, uri};
        use crate::discovery::QueryResult;
        let mut r = TableResolver::default();
        r.answers.insert(
            ("_kerberos.DNS.TEST.".into(), crate::dns::TYPE_URI),
            QueryResult::Answer(response(
                crate::dns::TYPE_URI,
                300,
                &[uri(0, 0, "krb5srv::wss:wss://kdc.dns.test/kdc")],
            )),
        );
        r
    }

    /// wss DNS discovery switched on (it is opt-in).
    fn dns_on() -> MapProfile {
        MapProfile::default().with("libdefaults/wss_dns_discovery", "true")
    }

    #[test]
    fn realm_found_in_dns_is_ours() {
        let prof = dns_on();
        let r = dns_realm();
        assert_eq!(
            super::lookup(&prof, &r, LocateService::Kdc, "DNS.TEST", false),
            Answer::NoAddress
        );
        // No m flag: the primary lookup has no address (every KDC is primary).
        assert_eq!(
            super::lookup(&prof, &r, LocateService::PrimaryKdc, "DNS.TEST", true),
            Answer::NoAddress
        );
        assert_eq!(
            super::lookup(&prof, &r, LocateService::Kadmin, "DNS.TEST", true),
            Answer::NotOurs
        );
    }

    #[test]
    fn dns_is_not_consulted_when_libkrb5_would_not() {
        let r = dns_realm();
        let prof = dns_on().with("libdefaults/dns_lookup_kdc", "false");
        assert_eq!(
            super::lookup(&prof, &r, LocateService::Kdc, "DNS.TEST", false),
            Answer::NotOurs
        );
        let prof = dns_on().with("realms/DNS.TEST/kdc", "kdc.dns.test:88");
        assert_eq!(
            super::lookup(&prof, &r, LocateService::Kdc, "DNS.TEST", false),
            Answer::NotOurs
        );
        assert!(r.queries.borrow().is_empty(), "{:?}", r.queries.borrow());
    }

    #[test]
    fn dns_discovery_is_opt_in() {
        // DNS names a wss KDC and libkrb5 would consult DNS, but the
        // realm did not opt in: not ours, and no query is made.
        let r = dns_realm();
        let prof = MapProfile::default().with("libdefaults/dns_lookup_kdc", "true");
        assert_eq!(
            super::lookup(&prof, &r, LocateService::Kdc, "DNS.TEST", true),
            Answer::NotOurs
        );
        assert!(r.queries.borrow().is_empty(), "{:?}", r.queries.borrow());
        // The realm's own switch wins over [libdefaults].
        let prof = dns_on().with("realms/DNS.TEST/wss_dns_discovery", "false");
        assert_eq!(
            super::lookup(&prof, &r, LocateService::Kdc, "DNS.TEST", true),
            Answer::NotOurs
        );
        assert!(r.queries.borrow().is_empty(), "{:?}", r.queries.borrow());
        let prof = MapProfile::default().with("realms/DNS.TEST/wss_dns_discovery", "on");
        assert_eq!(
            super::lookup(&prof, &r, LocateService::Kdc, "DNS.TEST", false),
            Answer::NoAddress
        );
    }

    #[test]
    fn realm_with_nothing_in_dns_is_not_ours() {
        let r = TableResolver::default();
        assert_eq!(
            super::lookup(&dns_on(), &r, LocateService::Kdc, "EMPTY.TEST", false),
            Answer::NotOurs
        );
        assert_eq!(r.queries.borrow().len(), 2, "URI then SRV");
    }
}
