//! Ownership of a realm, decided from krb5.conf alone.

use core::ffi::CStr;

use crate::bool_word::parse_bool;
use crate::url::is_websocket_url;

/// Read access to a krb5 profile, without allocation.
pub trait ProfileView {
    /// Calls `f` on each value of the relation `[section] name1 name2` (or
    /// `[section] name1` when `name2` is `None`), in file order, and returns
    /// how many values there were (0 when the relation is absent or the
    /// profile cannot be read).
    fn for_each_value(
        &self,
        section: &CStr,
        name1: &CStr,
        name2: Option<&CStr>,
        f: &mut dyn FnMut(&[u8]),
    ) -> usize;
}

/// What krb5-wss is to a realm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// Not ours: libkrb5 carries on as if krb5-wss were not installed.
    NotOurs,
    /// krb5.conf names a WebSocket URL for the realm: ours, and it must
    /// never be left to libkrb5 (which would use its other lines directly).
    Ours,
    /// No `kdc` lines, wss DNS discovery switched on, and libkrb5 would
    /// consult DNS: the core looks for wss records first, and leaves the
    /// realm to libkrb5 when there are none.
    Dns,
}

/// The `[realms] REALM` relations whose values may be WebSocket URLs.
/// The first, `kdc`, is also the one whose absence lets DNS in.
pub const URL_KEYS: [&CStr; 4] = [c"kdc", c"primary_kdc", c"master_kdc", c"kpasswd_server"];

/// The opt-in switch for wss DNS discovery, in the realm's stanza or in
/// `[libdefaults]` (the realm's wins); default false.
pub const DNS_DISCOVERY_KEY: &CStr = c"wss_dns_discovery";

const REALMS: &CStr = c"realms";
const LIBDEFAULTS: &CStr = c"libdefaults";

/// Decides whether `realm` is krb5-wss's: see the crate documentation.
///
/// Cost for a realm with `kdc` lines and no URL: four profile queries; for
/// a realm with no `kdc` lines and the switch off: six.
pub fn ownership(profile: &dyn ProfileView, realm: &CStr) -> Ownership {
    let scan = scan_url_keys(profile, realm);
    if scan.url {
        Ownership::Ours
    } else if scan.kdc_lines == 0 && dns_wanted(profile, realm) {
        Ownership::Dns
    } else {
        Ownership::NotOurs
    }
}

/// True when a `kdc`, `primary_kdc`, `master_kdc` or `kpasswd_server` line
/// of the realm holds a WebSocket URL.
pub fn realm_names_websocket_url(profile: &dyn ProfileView, realm: &CStr) -> bool {
    scan_url_keys(profile, realm).url
}

/// True when wss DNS discovery applies to the realm: it has no `kdc` lines,
/// [`dns_discovery_enabled`], and libkrb5 itself would consult DNS.
pub fn dns_lookup_applies(profile: &dyn ProfileView, realm: &CStr) -> bool {
    count(profile, REALMS, realm, URL_KEYS[0]) == 0 && dns_wanted(profile, realm)
}

/// `wss_dns_discovery` for the realm: its stanza's first value, else
/// `[libdefaults]`'s; true only for one of MIT's "yes" words.
pub fn dns_discovery_enabled(profile: &dyn ProfileView, realm: &CStr) -> bool {
    let value = first_bool(profile, REALMS, realm, Some(DNS_DISCOVERY_KEY))
        .or_else(|| first_bool(profile, LIBDEFAULTS, DNS_DISCOVERY_KEY, None));
    value == Some(Some(true))
}

/// libkrb5's own rule: the first value of `dns_lookup_kdc`, else of
/// `dns_fallback`, is a "yes" word; neither set means yes.
fn libkrb5_consults_dns(profile: &dyn ProfileView) -> bool {
    let value = first_bool(profile, LIBDEFAULTS, c"dns_lookup_kdc", None)
        .or_else(|| first_bool(profile, LIBDEFAULTS, c"dns_fallback", None));
    match value {
        None => true,
        Some(word) => word == Some(true),
    }
}

/// The switch first: with it off (the default), libkrb5's settings are
/// not even read.
fn dns_wanted(profile: &dyn ProfileView, realm: &CStr) -> bool {
    dns_discovery_enabled(profile, realm) && libkrb5_consults_dns(profile)
}

struct Scan {
    url: bool,
    kdc_lines: usize,
}

fn scan_url_keys(profile: &dyn ProfileView, realm: &CStr) -> Scan {
    let mut url = false;
    let mut kdc_lines = 0;
    for (i, key) in URL_KEYS.iter().enumerate() {
        let n = profile.for_each_value(REALMS, realm, Some(key), &mut |v| {
            url |= is_websocket_url(v);
        });
        if i == 0 {
            kdc_lines = n;
        }
    }
    Scan { url, kdc_lines }
}

fn count(profile: &dyn ProfileView, section: &CStr, name1: &CStr, name2: &CStr) -> usize {
    profile.for_each_value(section, name1, Some(name2), &mut |_| {})
}

/// `None`: the relation is absent; `Some(parse)`: its first value, parsed.
fn first_bool(
    profile: &dyn ProfileView,
    section: &CStr,
    name1: &CStr,
    name2: Option<&CStr>,
) -> Option<Option<bool>> {
    let mut first: Option<Option<bool>> = None;
    profile.for_each_value(section, name1, name2, &mut |v| {
        if first.is_none() {
            first = Some(parse_bool(v));
        }
    });
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::ffi::CString;
    use std::string::{String, ToString};
    use std::vec::Vec;

    /// A profile as (path, value) pairs; counts queries.
    #[derive(Default)]
    struct Map {
        entries: Vec<(String, String)>,
        queries: Cell<usize>,
    }

    impl Map {
        fn with(mut self, path: &str, value: &str) -> Self {
            self.entries.push((path.to_string(), value.to_string()));
            self
        }
    }

    impl ProfileView for Map {
        fn for_each_value(
            &self,
            section: &CStr,
            name1: &CStr,
            name2: Option<&CStr>,
            f: &mut dyn FnMut(&[u8]),
        ) -> usize {
            self.queries.set(self.queries.get() + 1);
            let mut path =
                std::format!("{}/{}", section.to_str().unwrap(), name1.to_str().unwrap());
            if let Some(n) = name2 {
                path = std::format!("{path}/{}", n.to_str().unwrap());
            }
            let mut n = 0;
            for (p, v) in &self.entries {
                if *p == path {
                    f(v.as_bytes());
                    n += 1;
                }
            }
            n
        }
    }

    const R: &CStr = c"EXAMPLE.COM";

    fn own(m: &Map) -> Ownership {
        ownership(m, R)
    }

    #[test]
    fn url_on_any_key_is_ours() {
        for key in ["kdc", "primary_kdc", "master_kdc", "kpasswd_server"] {
            let m = Map::default()
                .with("realms/EXAMPLE.COM/kdc", "kdc.example.com:88")
                .with(&std::format!("realms/EXAMPLE.COM/{key}"), " WSS://h/kdc");
            assert_eq!(own(&m), Ownership::Ours, "{key}");
            assert!(realm_names_websocket_url(&m, R));
        }
    }

    #[test]
    fn mixed_kdc_lines_are_ours() {
        let m = Map::default()
            .with("realms/EXAMPLE.COM/kdc", "wss://localhost:1/kdc")
            .with("realms/EXAMPLE.COM/kdc", "127.0.0.1:88");
        assert_eq!(own(&m), Ownership::Ours);
    }

    #[test]
    fn plain_and_https_realms_are_not_ours_in_four_queries() {
        for v in ["kdc.example.com:88", "https://h/KdcProxy"] {
            let m = Map::default().with("realms/EXAMPLE.COM/kdc", v);
            assert_eq!(own(&m), Ownership::NotOurs);
            assert_eq!(m.queries.get(), 4);
        }
        // Other realms' URLs do not count.
        let m = Map::default().with("realms/OTHER/kdc", "wss://h/kdc");
        assert_eq!(own(&m), Ownership::NotOurs);
    }

    #[test]
    fn dns_only_realm_needs_the_switch() {
        // libkrb5 would consult DNS (default on), but the switch is off.
        let m = Map::default();
        assert_eq!(own(&m), Ownership::NotOurs);
        assert_eq!(m.queries.get(), 6, "dns_lookup_kdc is not even read");
        let m = Map::default().with("libdefaults/dns_lookup_kdc", "true");
        assert_eq!(own(&m), Ownership::NotOurs);
        assert!(!dns_lookup_applies(&m, R));

        let m = Map::default().with("libdefaults/wss_dns_discovery", "true");
        assert_eq!(own(&m), Ownership::Dns);
        assert!(dns_lookup_applies(&m, R));
        let m = Map::default().with("realms/EXAMPLE.COM/wss_dns_discovery", "yes");
        assert_eq!(own(&m), Ownership::Dns);
    }

    #[test]
    fn realm_switch_wins_over_libdefaults() {
        let m = Map::default()
            .with("libdefaults/wss_dns_discovery", "true")
            .with("realms/EXAMPLE.COM/wss_dns_discovery", "false");
        assert_eq!(own(&m), Ownership::NotOurs);
        let m = Map::default()
            .with("libdefaults/wss_dns_discovery", "off")
            .with("realms/EXAMPLE.COM/wss_dns_discovery", "on");
        assert_eq!(own(&m), Ownership::Dns);
        // Not a boolean: off.
        let m = Map::default().with("libdefaults/wss_dns_discovery", "maybe");
        assert_eq!(own(&m), Ownership::NotOurs);
    }

    #[test]
    fn switch_follows_libkrb5s_dns_settings() {
        let on = || Map::default().with("libdefaults/wss_dns_discovery", "1");
        assert_eq!(
            own(&on().with("libdefaults/dns_lookup_kdc", "false")),
            Ownership::NotOurs
        );
        assert_eq!(
            own(&on().with("libdefaults/dns_fallback", "no")),
            Ownership::NotOurs
        );
        // dns_lookup_kdc wins over dns_fallback.
        let m = on()
            .with("libdefaults/dns_lookup_kdc", "yes")
            .with("libdefaults/dns_fallback", "no");
        assert_eq!(own(&m), Ownership::Dns);
        // libkrb5 reads a word it does not know as no.
        assert_eq!(
            own(&on().with("libdefaults/dns_lookup_kdc", "sometimes")),
            Ownership::NotOurs
        );
        // The first value counts.
        let m = on()
            .with("libdefaults/dns_lookup_kdc", "off")
            .with("libdefaults/dns_lookup_kdc", "on");
        assert_eq!(own(&m), Ownership::NotOurs);
    }

    #[test]
    fn kdc_lines_keep_dns_out() {
        let m = Map::default()
            .with("libdefaults/wss_dns_discovery", "true")
            .with("realms/EXAMPLE.COM/kdc", "kdc.example.com");
        assert_eq!(own(&m), Ownership::NotOurs);
        assert!(!dns_lookup_applies(&m, R));
        // kpasswd_server alone does not: DNS still finds the KDCs.
        let m = Map::default()
            .with("libdefaults/wss_dns_discovery", "true")
            .with("realms/EXAMPLE.COM/kpasswd_server", "pw.example.com");
        assert_eq!(own(&m), Ownership::Dns);
    }

    #[test]
    fn realm_names_are_matched_exactly() {
        let m = Map::default().with("realms/EXAMPLE.COM/kdc", "wss://h/kdc");
        let lower = CString::new("example.com").unwrap();
        assert_eq!(ownership(&m, &lower), Ownership::NotOurs);
    }
}
