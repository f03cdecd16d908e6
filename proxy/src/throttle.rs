//! Password-guessing throttle: counts the KDC's pre-authentication
//! failures (KDC_ERR_PREAUTH_FAILED, KRB_AP_ERR_BAD_INTEGRITY) of AS
//! exchanges per (client address, principal), per client address and per
//! principal, and refuses a key's AS-REQs for a cool-down once its count
//! within the window reaches its threshold.
//!
//! Each key's window is a two-bucket approximation of a sliding window:
//! the failures of the current window-long bucket plus the previous
//! bucket's, weighted by how much of it the sliding window still covers.
//! Tripping a key starts its cool-down and resets its counts, so after
//! the cool-down it starts again from zero.
//!
//! The table holds at most `max_keys` keys, created by failures only (a
//! request that fails nothing creates nothing). Past the bound, the oldest
//! key (by creation) is evicted, sparing keys in cool-down for up to
//! [`SPARE_TRIES`] of the oldest. Keys are 64-bit hashes keyed per process
//! (so a long principal costs no memory, and collisions cannot be aimed).

use crate::client::AddrKey;
use crate::settings::{Bool, Count, Count32, Secs, Url};
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// KDC_ERR_PREAUTH_FAILED: a wrong password (or key).
pub const PREAUTH_FAILED: i64 = 24;
/// KRB_AP_ERR_BAD_INTEGRITY: what older KDCs answer for a wrong password.
pub const BAD_INTEGRITY: i64 = 31;

/// How many of the oldest keys in cool-down eviction passes over.
const SPARE_TRIES: usize = 16;
/// Largest threshold and key count accepted.
const MAX_COUNT: u32 = 100_000_000;

/// True when a KRB-ERROR `code` is a pre-authentication failure.
pub fn is_failure(code: i64) -> bool {
    code == PREAUTH_FAILED || code == BAD_INTEGRITY
}

crate::settings! {
    /// The throttle's settings (`[throttle]`).
    pub struct Settings in "throttle", flags "throttle_" {
        /// Throttle password guessing (docs/proxy.md, *Throttling password
        /// guessing*); `false` turns it off.
        enabled: Bool = true => "throttle",
        /// Pre-authentication failures of one principal from one client
        /// address (IPv6: /64) within `window` that refuse that pair's
        /// AS-REQs for `cooldown` (close 4423).
        pair_failures: Count32 = 5,
        /// ... from one client address, any principal.
        address_failures: Count32 = 20,
        /// ... of one principal, from any address (the only key others can
        /// trip).
        principal_failures: Count32 = 50,
        /// The sliding window failures are counted in.
        window: Secs = Duration::from_secs(300),
        /// How long a tripped key's AS-REQs are refused.
        cooldown: Secs = Duration::from_secs(300),
        /// Most keys in the counter table (each of the three kinds counts);
        /// past it the oldest is evicted.
        max_keys: Count = 100_000,
        /// `redis://HOST:PORT`: share the counters through this Redis
        /// server, so several proxies count together (*Throttling password
        /// guessing*); none: local counters only.
        store: Url = None,
    }
}

impl Settings {
    /// Checks every value against its accepted range.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("pair_failures", self.pair_failures),
            ("address_failures", self.address_failures),
            ("principal_failures", self.principal_failures),
        ] {
            if !(1..=MAX_COUNT).contains(&v) {
                return Err(format!(
                    "[throttle] {name} = {v}: must be between 1 and {MAX_COUNT}"
                ));
            }
        }
        if !(3..=MAX_COUNT as usize).contains(&self.max_keys) {
            return Err(format!(
                "[throttle] max_keys = {}: must be between 3 and {MAX_COUNT}",
                self.max_keys
            ));
        }
        for (name, d) in [("window", self.window), ("cooldown", self.cooldown)] {
            if d.is_zero() {
                return Err(format!("[throttle] {name}: must be more than 0"));
            }
        }
        if let Some(url) = &self.store {
            crate::throttle_store::target(url)?;
        }
        Ok(())
    }

    /// One line for the startup log and `--check-config`.
    pub fn summary(&self) -> String {
        if !self.enabled {
            return "throttle off".into();
        }
        format!(
            "throttle pair={} address={} principal={} failures per {}s, cooldown {}s, \
             max_keys {}, store {}",
            self.pair_failures,
            self.address_failures,
            self.principal_failures,
            self.window.as_secs(),
            self.cooldown.as_secs(),
            self.max_keys,
            self.store.as_deref().unwrap_or("local")
        )
    }

    /// The threshold of `kind` keys.
    pub fn threshold(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Pair => self.pair_failures,
            Kind::Address => self.address_failures,
            Kind::Principal => self.principal_failures,
        }
    }
}

/// What a key counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One principal from one client address.
    Pair,
    /// One client address.
    Address,
    /// One principal.
    Principal,
}

impl Kind {
    /// Every kind, most specific first.
    pub const ALL: [Kind; 3] = [Kind::Pair, Kind::Address, Kind::Principal];

    /// The name in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Pair => "pair",
            Kind::Address => "address",
            Kind::Principal => "principal",
        }
    }

    /// The index in [`Kind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A key in cool-down (or that just entered it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tripped {
    /// Which of the three keys.
    pub kind: Kind,
    /// Its threshold.
    pub threshold: u32,
    /// The window it is counted in.
    pub window: Duration,
    /// What is left of the cool-down.
    pub remaining: Duration,
}

impl fmt::Display for Tripped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} key: {} pre-authentication failures within {}s; refused for {}s more",
            self.kind.name(),
            self.threshold,
            self.window.as_secs(),
            self.remaining.as_secs().max(1)
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    start: Instant,
    current: u32,
    previous: u32,
    blocked_until: Option<Instant>,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            start: now,
            current: 0,
            previous: 0,
            blocked_until: None,
        }
    }

    /// Moves the buckets so that `now` is in the current one.
    fn roll(&mut self, now: Instant, window: Duration) {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= window * 2 {
            *self = Entry {
                blocked_until: self.blocked_until,
                ..Entry::new(now)
            };
        } else if elapsed >= window {
            self.previous = self.current;
            self.current = 0;
            self.start += window;
        }
    }

    /// The failures within the sliding window ending at `now`.
    fn estimate(&self, now: Instant, window: Duration) -> f64 {
        let into = now.saturating_duration_since(self.start).as_secs_f64() / window.as_secs_f64();
        f64::from(self.previous) * (1.0 - into.min(1.0)) + f64::from(self.current)
    }

    fn blocked(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }
}

struct Inner {
    map: HashMap<u64, Entry>,
    /// Every key of `map` once, oldest first.
    order: VecDeque<u64>,
    evicted: u64,
}

/// The counter table, shared by all connections (it survives reloads).
pub struct Table {
    hasher: RandomState,
    inner: Mutex<Inner>,
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table {
            hasher: RandomState::new(),
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                evicted: 0,
            }),
        }
    }

    fn keys(&self, addr: AddrKey, principal: &str) -> [(Kind, u64); 3] {
        // The principal is hashed once; the pair's key hashes that hash
        // (each kind has its own leading tag, so kinds never share a key).
        let p = self.hasher.hash_one((2u8, principal));
        [
            (Kind::Pair, self.hasher.hash_one((0u8, addr, p))),
            (Kind::Address, self.hasher.hash_one((1u8, addr))),
            (Kind::Principal, p),
        ]
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether an AS-REQ for `principal` from `addr` may be forwarded at
    /// `now`: the first of its keys in cool-down, most specific first.
    pub fn check(
        &self,
        settings: &Settings,
        addr: AddrKey,
        principal: &str,
        now: Instant,
    ) -> Result<(), Tripped> {
        let inner = self.lock();
        for (kind, key) in self.keys(addr, principal) {
            if let Some(remaining) = inner.map.get(&key).and_then(|e| e.blocked(now)) {
                return Err(Tripped {
                    kind,
                    threshold: settings.threshold(kind),
                    window: settings.window,
                    remaining,
                });
            }
        }
        Ok(())
    }

    /// Counts one pre-authentication failure of `principal` from `addr`
    /// at `now`; returns the keys it tripped.
    pub fn failure(
        &self,
        settings: &Settings,
        addr: AddrKey,
        principal: &str,
        now: Instant,
    ) -> Vec<Tripped> {
        let mut tripped = Vec::new();
        let mut inner = self.lock();
        for (kind, key) in self.keys(addr, principal) {
            let entry = inner.entry(key, now, settings.max_keys);
            if entry.blocked(now).is_some() {
                continue;
            }
            entry.roll(now, settings.window);
            entry.current = entry.current.saturating_add(1);
            let threshold = settings.threshold(kind);
            if entry.estimate(now, settings.window) >= f64::from(threshold) {
                *entry = Entry {
                    blocked_until: Some(now + settings.cooldown),
                    ..Entry::new(now)
                };
                tripped.push(Tripped {
                    kind,
                    threshold,
                    window: settings.window,
                    remaining: settings.cooldown,
                });
            }
        }
        tripped
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Keys evicted so far (the table was full).
    pub fn evicted(&self) -> u64 {
        self.lock().evicted
    }
}

impl Inner {
    /// The entry of `key`, created (evicting when full) if new.
    fn entry(&mut self, key: u64, now: Instant, max_keys: usize) -> &mut Entry {
        if !self.map.contains_key(&key) {
            let mut spared = 0;
            while self.map.len() >= max_keys.max(1) {
                let Some(oldest) = self.order.pop_front() else {
                    break;
                };
                let blocked = self
                    .map
                    .get(&oldest)
                    .is_some_and(|e| e.blocked(now).is_some());
                if blocked && spared < SPARE_TRIES {
                    spared += 1;
                    self.order.push_back(oldest);
                    continue;
                }
                if self.map.remove(&oldest).is_some() {
                    self.evicted += 1;
                }
            }
            self.order.push_back(key);
        }
        self.map.entry(key).or_insert_with(|| Entry::new(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn addr(s: &str) -> AddrKey {
        AddrKey::of(s.parse::<IpAddr>().unwrap())
    }

    fn low() -> Settings {
        Settings {
            pair_failures: 3,
            address_failures: 5,
            principal_failures: 7,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            ..Settings::default()
        }
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().unwrap();
        let bad = Settings {
            pair_failures: 0,
            ..Settings::default()
        };
        assert!(bad.validate().unwrap_err().contains("pair_failures"));
        let bad = Settings {
            cooldown: Duration::ZERO,
            ..Settings::default()
        };
        assert!(bad.validate().unwrap_err().contains("cooldown"));
        assert!(is_failure(24) && is_failure(31) && !is_failure(25));
        assert_eq!(
            Settings::default().summary(),
            "throttle pair=5 address=20 principal=50 failures per 300s, cooldown 300s, \
             max_keys 100000, store local"
        );
    }

    #[test]
    fn pair_trips_and_other_addresses_keep_working() {
        let (t, s, t0) = (Table::new(), low(), Instant::now());
        let a = addr("192.0.2.1");
        let b = addr("192.0.2.2");
        assert!(t.failure(&s, a, "alice@R", t0).is_empty());
        assert!(t.failure(&s, a, "alice@R", t0).is_empty());
        let trips = t.failure(&s, a, "alice@R", t0);
        assert_eq!(trips.len(), 1);
        assert_eq!(trips[0].kind, Kind::Pair);
        assert_eq!(trips[0].threshold, 3);
        let err = t.check(&s, a, "alice@R", t0).unwrap_err();
        assert_eq!(err.kind, Kind::Pair);
        assert!(err.to_string().contains("pair key: 3 "), "{err}");
        // The same principal from elsewhere, another principal from here.
        t.check(&s, b, "alice@R", t0).unwrap();
        t.check(&s, a, "bob@R", t0).unwrap();
        // The cool-down ends.
        t.check(&s, a, "alice@R", t0 + Duration::from_secs(31))
            .unwrap();
    }

    #[test]
    fn address_and_principal_trip_across_keys() {
        let (t, s, t0) = (Table::new(), low(), Instant::now());
        let a = addr("192.0.2.1");
        // A spray from one address: one guess per principal.
        for i in 0..5 {
            let trips = t.failure(&s, a, &format!("u{i}@R"), t0);
            assert_eq!(trips.iter().any(|x| x.kind == Kind::Address), i == 4);
        }
        assert_eq!(t.check(&s, a, "new@R", t0).unwrap_err().kind, Kind::Address);
        // One principal guessed from many addresses.
        let mut kinds = vec![];
        for i in 0..7 {
            let from = addr(&format!("198.51.100.{i}"));
            kinds.extend(t.failure(&s, from, "carol@R", t0).iter().map(|x| x.kind));
        }
        assert_eq!(kinds, [Kind::Principal]);
        let err = t.check(&s, addr("203.0.113.1"), "carol@R", t0).unwrap_err();
        assert_eq!(err.kind, Kind::Principal);
        // IPv6 counts by /64.
        let v6 = addr("2001:db8::1");
        t.failure(&s, v6, "dave@R", t0);
        t.failure(&s, addr("2001:db8::2"), "dave@R", t0);
        t.failure(&s, addr("2001:db8::3"), "dave@R", t0);
        assert_eq!(t.check(&s, v6, "dave@R", t0).unwrap_err().kind, Kind::Pair);
    }

    #[test]
    fn the_window_slides() {
        let (t, s, t0) = (Table::new(), low(), Instant::now());
        let a = addr("192.0.2.1");
        t.failure(&s, a, "alice@R", t0);
        t.failure(&s, a, "alice@R", t0);
        // 90 s later the previous bucket weighs half: 2 * 0.5 + 1 = 2 < 3.
        assert!(t
            .failure(&s, a, "alice@R", t0 + Duration::from_secs(90))
            .is_empty());
        let at = t0 + Duration::from_secs(100);
        let trips = t.failure(&s, a, "alice@R", at);
        // 2 * (1 - 40/60) + 2 = 2.67 < 3.
        assert!(trips.is_empty(), "{trips:?}");
        let trips = t.failure(&s, a, "alice@R", at);
        assert_eq!(trips.first().map(|x| x.kind), Some(Kind::Pair));
        // Long after, everything is forgotten.
        let late = t0 + Duration::from_secs(1000);
        t.check(&s, a, "alice@R", late).unwrap();
        assert!(t.failure(&s, a, "alice@R", late).is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_evicts_oldest_first() {
        let s = Settings {
            max_keys: 30,
            pair_failures: 1000,
            address_failures: 1000,
            principal_failures: 1000,
            ..low()
        };
        let (t, t0) = (Table::new(), Instant::now());
        // Each failure from a new address and principal makes 3 keys.
        for i in 0..100u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            t.failure(&s, AddrKey::of(ip.into()), &format!("p{i}@R"), t0);
            assert!(t.len() <= 30);
        }
        assert_eq!(t.len(), 30);
        assert_eq!(t.evicted(), 300 - 30);
    }

    #[test]
    fn eviction_spares_keys_in_cooldown() {
        let s = Settings {
            max_keys: 30,
            pair_failures: 1,
            address_failures: 1000,
            principal_failures: 1000,
            ..low()
        };
        let (t, t0) = (Table::new(), Instant::now());
        let a = addr("192.0.2.1");
        assert_eq!(t.failure(&s, a, "alice@R", t0).len(), 1);
        let s2 = Settings {
            pair_failures: 1000,
            ..s.clone()
        };
        for i in 0..100u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            t.failure(&s2, AddrKey::of(ip.into()), &format!("p{i}@R"), t0);
        }
        assert!(t.len() <= 30);
        assert_eq!(t.check(&s, a, "alice@R", t0).unwrap_err().kind, Kind::Pair);
    }
}
