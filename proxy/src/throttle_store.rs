//! The throttle's counters shared through Redis (`[throttle] store =
//! "redis://HOST:PORT"`), so that several proxies count together.
//!
//! The local table ([`crate::throttle::Table`]) always counts too. With a
//! store, a request is refused when either the local table or Redis has
//! one of its keys in cool-down, and trips are reported (logged, counted)
//! from Redis; when Redis cannot be reached, the proxy goes on with its
//! local counters alone, says so once per transition in its log, and sets
//! the `krb5_wss_proxy_throttle_store_up` gauge to 0 (it retries after
//! [`RETRY`]). Every Redis call is bounded by [`TIMEOUT`].
//!
//! In Redis, each key has one counter per window-long bucket aligned on
//! the Unix clock (`…:c:KEY:N`, N = now / window, expiring after two
//! windows) and a cool-down flag (`…:b:KEY`, set with `PX cooldown NX`,
//! so the one proxy that sets it reports the trip). The window estimate is
//! the same two-bucket approximation as the local table's.

use crate::client::AddrKey;
use crate::metrics::Metrics;
use crate::resp::{self, Connection, Reply};
use crate::throttle::{Kind, Settings, Table, Tripped};
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::Mutex;
use tokio::time::timeout;

/// The bound on one Redis call (connecting included).
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// How long the proxy counts locally after a failed Redis call before it
/// tries Redis again.
pub const RETRY: Duration = Duration::from_secs(1);
/// Prefix of every Redis key the proxy writes.
const PREFIX: &str = "krb5-wss:throttle:";
/// Longest principal put in a Redis key as is (longer ones are cut and
/// carry their length).
const MAX_NAME: usize = 512;

/// The part of a `redis://HOST:PORT` URL to connect to.
pub fn target(url: &str) -> Result<&str, String> {
    let rest = url
        .strip_prefix("redis://")
        .ok_or_else(|| format!("[throttle] store {url:?}: must be redis://HOST:PORT"))?;
    crate::addr::parse_server(rest, 6379).map_err(|e| format!("[throttle] store {url:?}: {e}"))?;
    if rest.contains('/') || !rest.contains(':') {
        return Err(format!(
            "[throttle] store {url:?}: must be redis://HOST:PORT"
        ));
    }
    Ok(rest)
}

#[derive(Default)]
struct State {
    url: Option<String>,
    conn: Option<Connection>,
    retry_at: Option<Instant>,
    /// What the log last said: reachable or not.
    up: Option<bool>,
}

/// The connection to the store, shared by all connections.
#[derive(Default)]
pub struct Store {
    state: Mutex<State>,
}

fn id(kind: Kind, addr: AddrKey, principal: &str) -> String {
    let name = if principal.len() <= MAX_NAME {
        principal.to_string()
    } else {
        let mut cut = MAX_NAME;
        while !principal.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…{}", &principal[..cut], principal.len())
    };
    match kind {
        Kind::Pair => format!("pair:{addr}|{name}"),
        Kind::Address => format!("address:{addr}"),
        Kind::Principal => format!("principal:{name}"),
    }
}

fn block_key(id: &str) -> Vec<u8> {
    format!("{PREFIX}b:{id}").into_bytes()
}

fn count_key(id: &str, bucket: u64) -> Vec<u8> {
    format!("{PREFIX}c:{id}:{bucket}").into_bytes()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn word(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn checked(replies: &[Reply]) -> io::Result<()> {
    match replies.iter().find_map(|r| match r {
        Reply::Error(e) => Some(e),
        _ => None,
    }) {
        Some(e) => Err(io::Error::other(format!("redis: {e}"))),
        None => Ok(()),
    }
}

impl Store {
    /// A store not yet connected.
    pub fn new() -> Store {
        Store::default()
    }

    /// Runs `commands` on the store of `settings` (none: `Ok(None)`);
    /// `Ok(None)` too while counting locally after a failure.
    async fn run(
        &self,
        settings: &Settings,
        metrics: &Metrics,
        commands: &[Vec<Vec<u8>>],
    ) -> Option<Vec<Reply>> {
        let url = settings.store.as_deref()?;
        let Ok(mut state) = timeout(TIMEOUT, self.state.lock()).await else {
            return None;
        };
        if state.url.as_deref() != Some(url) {
            *state = State {
                url: Some(url.to_string()),
                ..State::default()
            };
        }
        if state.retry_at.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let result = timeout(TIMEOUT, async {
            if state.conn.is_none() {
                let to = target(url).map_err(io::Error::other)?;
                state.conn = Some(Connection::connect(to).await?);
            }
            match state.conn.as_mut() {
                Some(c) => {
                    let replies = c.pipeline(commands).await?;
                    checked(&replies)?;
                    Ok(replies)
                }
                None => Err(io::Error::other("not connected")),
            }
        })
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")));
        match result {
            Ok(replies) => {
                if state.up != Some(true) {
                    log::info!("throttle store {url} reachable: counting in Redis");
                    state.up = Some(true);
                }
                metrics.set_store_up(true);
                state.retry_at = None;
                Some(replies)
            }
            Err(e) => {
                if state.up != Some(false) {
                    log::warn!(
                        "throttle store {url} unreachable ({e}): counting locally, retrying every {}s",
                        RETRY.as_secs()
                    );
                    state.up = Some(false);
                }
                metrics.set_store_up(false);
                state.conn = None;
                state.retry_at = Some(Instant::now() + RETRY);
                None
            }
        }
    }

    /// Whether an AS-REQ for `principal` from `addr` may be forwarded:
    /// refused when the local table or the store has a key in cool-down.
    pub async fn check(
        &self,
        table: &Table,
        settings: &Settings,
        metrics: &Metrics,
        addr: AddrKey,
        principal: &str,
    ) -> Result<(), Tripped> {
        table.check(settings, addr, principal, Instant::now())?;
        if settings.store.is_none() {
            return Ok(());
        }
        let commands: Vec<_> = Kind::ALL
            .iter()
            .map(|k| resp::cmd(&[b"PTTL", &block_key(&id(*k, addr, principal))]))
            .collect();
        let Some(replies) = self.run(settings, metrics, &commands).await else {
            return Ok(());
        };
        for (kind, r) in Kind::ALL.iter().zip(&replies) {
            let left = r.number().unwrap_or(0);
            if left > 0 {
                return Err(Tripped {
                    kind: *kind,
                    threshold: settings.threshold(*kind),
                    window: settings.window,
                    remaining: Duration::from_millis(left.unsigned_abs()),
                });
            }
        }
        Ok(())
    }

    /// Counts one failure locally and in the store; returns the keys it
    /// tripped (the store's when it answered, else the local table's).
    pub async fn failure(
        &self,
        table: &Table,
        settings: &Settings,
        metrics: &Metrics,
        addr: AddrKey,
        principal: &str,
    ) -> Vec<Tripped> {
        let local = table.failure(settings, addr, principal, Instant::now());
        if settings.store.is_none() {
            return local;
        }
        let window = ms(settings.window);
        let now = u64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(0);
        let bucket = now / window;
        let into = (now % window) as f64 / window as f64;
        let ids: Vec<String> = Kind::ALL.iter().map(|k| id(*k, addr, principal)).collect();
        let mut commands = Vec::new();
        for i in &ids {
            let current = count_key(i, bucket);
            commands.push(resp::cmd(&[b"INCR", &current]));
            commands.push(resp::cmd(&[b"PEXPIRE", &current, &word(window * 2)]));
            commands.push(resp::cmd(&[
                b"GET",
                &count_key(i, bucket.saturating_sub(1)),
            ]));
            commands.push(resp::cmd(&[b"PTTL", &block_key(i)]));
        }
        let Some(replies) = self.run(settings, metrics, &commands).await else {
            return local;
        };
        let mut trip_commands = Vec::new();
        let mut over = Vec::new();
        for ((kind, i), r) in Kind::ALL.iter().zip(&ids).zip(replies.chunks(4)) {
            let [cur, _, prev, left] = r else { continue };
            if left.number().unwrap_or(0) > 0 {
                continue;
            }
            let (cur, prev) = (cur.number().unwrap_or(0), prev.number().unwrap_or(0));
            let estimate = prev as f64 * (1.0 - into) + cur as f64;
            if estimate >= f64::from(settings.threshold(*kind)) {
                over.push(*kind);
                commands_for_trip(&mut trip_commands, i, bucket, settings);
            }
        }
        if over.is_empty() {
            return Vec::new();
        }
        let Some(replies) = self.run(settings, metrics, &trip_commands).await else {
            return local;
        };
        over.iter()
            .zip(replies.chunks(2))
            .filter(|(_, r)| matches!(r.first(), Some(Reply::Simple(_))))
            .map(|(kind, _)| Tripped {
                kind: *kind,
                threshold: settings.threshold(*kind),
                window: settings.window,
                remaining: settings.cooldown,
            })
            .collect()
    }
}

/// Sets the cool-down flag (only if unset) and resets the counts.
fn commands_for_trip(out: &mut Vec<Vec<Vec<u8>>>, id: &str, bucket: u64, s: &Settings) {
    out.push(resp::cmd(&[
        b"SET",
        &block_key(id),
        b"1",
        b"PX",
        &word(ms(s.cooldown)),
        b"NX",
    ]));
    out.push(resp::cmd(&[
        b"DEL",
        &count_key(id, bucket),
        &count_key(id, bucket.saturating_sub(1)),
    ]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_keys() {
        assert_eq!(target("redis://127.0.0.1:6379").unwrap(), "127.0.0.1:6379");
        assert_eq!(
            target("redis://redis.example:7000").unwrap(),
            "redis.example:7000"
        );
        for bad in [
            "127.0.0.1:6379",
            "redis://h",
            "redis://h:1/0",
            "rediss://h:1",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
        let a = AddrKey::of("192.0.2.1".parse().unwrap());
        assert_eq!(id(Kind::Pair, a, "u@R"), "pair:192.0.2.1|u@R");
        assert_eq!(id(Kind::Address, a, "u@R"), "address:192.0.2.1");
        let long = "x".repeat(1000);
        assert_eq!(
            id(Kind::Principal, a, &long).len(),
            "principal:".len() + 512 + 3 + 4
        );
    }

    #[tokio::test]
    async fn unreachable_store_counts_locally() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = Settings {
            pair_failures: 2,
            store: Some(format!("redis://127.0.0.1:{port}")),
            ..Settings::default()
        };
        let (store, table, m) = (Store::new(), Table::new(), Metrics::new());
        let a = AddrKey::of("192.0.2.1".parse().unwrap());
        assert!(store.failure(&table, &s, &m, a, "u@R").await.is_empty());
        let trips = store.failure(&table, &s, &m, a, "u@R").await;
        assert_eq!(trips.first().map(|t| t.kind), Some(Kind::Pair));
        let err = store.check(&table, &s, &m, a, "u@R").await.unwrap_err();
        assert_eq!(err.kind, Kind::Pair);
        assert!(!m.store_up());
    }
}
