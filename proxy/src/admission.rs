//! Admission: the counted resources and their guards.
//!
//! - client connections open at once (`max_connections`), plus a small
//!   overflow allowance for connections that are only taken through the
//!   handshake to be told why they are refused;
//! - connections per client address (`max_connections_per_address`);
//! - upstream exchanges in progress (`max_upstream_exchanges`);
//! - bytes of partial records held across all sessions
//!   (`max_partial_bytes`).
//!
//! The limits are read at each admission, so a configuration reload
//! applies to the next connection. Every count is released by dropping its
//! guard; the per-address table holds only addresses with open
//! connections, so its size is bounded by the connection limits.

use crate::client::AddrKey;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Connections over a limit that are still taken through the handshake so
/// they can be told 4503/4429; beyond these, new connections are dropped
/// at once.
pub const OVERLOAD_GRACE: usize = 64;

/// One session's share of the partial-record budget
/// (`max_partial_bytes`), released when dropped.
#[derive(Debug)]
pub struct PartialBytes {
    total: Arc<AtomicUsize>,
    held: usize,
}

impl PartialBytes {
    /// Makes this session hold `now` bytes; false (and nothing changed)
    /// when the growth would take the total over `budget`.
    pub fn set(&mut self, now: usize, budget: usize) -> bool {
        if now > self.held {
            let more = now - self.held;
            let taken = self
                .total
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                    t.checked_add(more).filter(|n| *n <= budget)
                });
            if taken.is_err() {
                return false;
            }
        } else {
            self.total.fetch_sub(self.held - now, Ordering::AcqRel);
        }
        self.held = now;
        true
    }
}

impl Drop for PartialBytes {
    fn drop(&mut self) {
        self.total.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// A held unit of a counted resource.
#[derive(Debug)]
pub struct CountGuard(Arc<AtomicUsize>);

impl Drop for CountGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes one unit of `counter` if fewer than `limit` are taken.
fn try_take(counter: &Arc<AtomicUsize>, limit: usize) -> Option<CountGuard> {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < limit).then_some(n + 1)
        })
        .ok()
        .map(|_| CountGuard(counter.clone()))
}

type AddressTable = Arc<Mutex<HashMap<AddrKey, usize>>>;

fn lock(table: &AddressTable) -> MutexGuard<'_, HashMap<AddrKey, usize>> {
    // A panic while holding the lock cannot leave the table inconsistent
    // (each update is one statement), so a poisoned lock is still usable.
    table.lock().unwrap_or_else(|e| e.into_inner())
}

/// One connection counted against its client address.
#[derive(Debug)]
pub struct AddrGuard {
    table: AddressTable,
    key: AddrKey,
}

impl Drop for AddrGuard {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        if let Some(n) = t.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.remove(&self.key);
            }
        }
    }
}

/// What admission decided for a new connection.
#[derive(Debug)]
pub enum Admit {
    /// Within the limits.
    Accepted(CountGuard),
    /// Over the connection limit; taken on an overflow place, to be
    /// refused with 4503 after the handshake.
    Overloaded(CountGuard),
    /// Not taken at all: close it now.
    Dropped,
}

/// The counters.
#[derive(Debug, Default)]
pub struct Admission {
    open: Arc<AtomicUsize>,
    overflow: Arc<AtomicUsize>,
    addresses: AddressTable,
    upstream: Arc<AtomicUsize>,
    partial: Arc<AtomicUsize>,
}

impl Admission {
    /// A fresh set of counters.
    pub fn new() -> Admission {
        Admission::default()
    }

    /// A new session's (empty) share of the partial-record budget.
    pub fn partial_bytes(&self) -> PartialBytes {
        PartialBytes {
            total: self.partial.clone(),
            held: 0,
        }
    }

    /// Bytes of partial records held across all sessions now.
    pub fn partial_total(&self) -> usize {
        self.partial.load(Ordering::Acquire)
    }

    /// Admits a new connection under `max_connections`.
    pub fn connection(&self, max_connections: usize) -> Admit {
        if let Some(g) = try_take(&self.open, max_connections) {
            return Admit::Accepted(g);
        }
        match self.overflow_place() {
            Some(g) => Admit::Overloaded(g),
            None => Admit::Dropped,
        }
    }

    /// One of the [`OVERLOAD_GRACE`] places for a connection that is to
    /// be refused after its handshake.
    pub fn overflow_place(&self) -> Option<CountGuard> {
        try_take(&self.overflow, OVERLOAD_GRACE)
    }

    /// Counts one more connection from `key`, unless `limit` are open.
    pub fn address(&self, key: AddrKey, limit: usize) -> Option<AddrGuard> {
        let mut t = lock(&self.addresses);
        let n = t.entry(key).or_insert(0);
        if *n >= limit {
            if *n == 0 {
                t.remove(&key);
            }
            return None;
        }
        *n += 1;
        drop(t);
        Some(AddrGuard {
            table: self.addresses.clone(),
            key,
        })
    }

    /// Takes a place for one upstream exchange, unless `limit` are in
    /// progress.
    pub fn upstream(&self, limit: usize) -> Option<CountGuard> {
        try_take(&self.upstream, limit)
    }

    /// Connections open (admitted within the limit).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Connections open on overflow places.
    pub fn overflowing(&self) -> usize {
        self.overflow.load(Ordering::Acquire)
    }

    /// Distinct client addresses with connections open.
    pub fn addresses(&self) -> usize {
        lock(&self.addresses).len()
    }

    /// Upstream exchanges in progress.
    pub fn upstream_in_flight(&self) -> usize {
        self.upstream.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_limit_then_overflow_then_drop() {
        let a = Admission::new();
        let first = a.connection(1);
        assert!(matches!(first, Admit::Accepted(_)));
        let mut overflow = Vec::new();
        for _ in 0..OVERLOAD_GRACE {
            let g = a.connection(1);
            assert!(matches!(g, Admit::Overloaded(_)));
            overflow.push(g);
        }
        assert!(matches!(a.connection(1), Admit::Dropped));
        assert_eq!((a.open(), a.overflowing()), (1, OVERLOAD_GRACE));
        drop(first);
        assert!(matches!(a.connection(1), Admit::Accepted(_)));
        drop(overflow);
        assert_eq!((a.open(), a.overflowing()), (0, 0));
    }

    #[test]
    fn per_address_counts_are_released() {
        let a = Admission::new();
        let k1 = AddrKey::of("192.0.2.1".parse().unwrap());
        let k2 = AddrKey::of("192.0.2.2".parse().unwrap());
        let g1 = a.address(k1, 2).unwrap();
        let g2 = a.address(k1, 2).unwrap();
        assert!(a.address(k1, 2).is_none());
        let other = a.address(k2, 2).unwrap();
        assert_eq!(a.addresses(), 2);
        drop(g1);
        let g3 = a.address(k1, 2).unwrap();
        drop((g2, g3, other));
        assert_eq!(a.addresses(), 0, "no entry outlives its connections");
        // A limit lowered by a reload applies to the next connection.
        let _g = a.address(k1, 1).unwrap();
        assert!(a.address(k1, 1).is_none());
    }

    #[test]
    fn upstream_places() {
        let a = Admission::new();
        let g = a.upstream(1).unwrap();
        assert!(a.upstream(1).is_none());
        assert_eq!(a.upstream_in_flight(), 1);
        drop(g);
        assert!(a.upstream(1).is_some());
    }
}
