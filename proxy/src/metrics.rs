//! Counters and gauges, rendered in the Prometheus text exposition format
//! (version 0.0.4) for the metrics listener.
//!
//! Everything is a fixed set of atomics: recording never allocates or
//! blocks, and the set of label values is closed (no label comes from a
//! client), so the output is bounded.

use crate::admission::Admission;
use crate::throttle::{self, Kind};
use krb5_wss_proto::{close, error_names, Service};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a request reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A WebSocket (`/kdc`, `/kpasswd`).
    WebSocket,
    /// An MS-KKDCP `POST`.
    Kkdcp,
}

impl Transport {
    /// The name used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Kkdcp => "kkdcp",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

const SERVICES: [Service; 2] = [Service::Kdc, Service::Kpasswd];
const TRANSPORTS: [Transport; 2] = [Transport::WebSocket, Transport::Kkdcp];
const RESULTS: [&str; 2] = ["ok", "failed"];

/// Upper bounds (seconds) of the upstream latency histogram's buckets.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn service_index(s: Service) -> usize {
    match s {
        Service::Kdc => 0,
        Service::Kpasswd => 1,
    }
}

/// The proxy's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    connections: AtomicU64,
    dropped: AtomicU64,
    /// [service][transport][result]
    exchanges: [[[AtomicU64; 2]; 2]; 2],
    /// One counter per entry of `close::ALL`.
    refusals: [AtomicU64; 16],
    origin_refusals: AtomicU64,
    /// TLS handshakes refused for the client certificate: none, rejected.
    client_cert_refusals: [AtomicU64; 2],
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    reloads: [AtomicU64; 2],
    /// One counter per entry of `error_names::NAMES`, then one for codes
    /// no RFC names.
    krb_errors: Vec<AtomicU64>,
    /// AS-REQs refused by the throttle, by [`Kind`].
    throttled: [AtomicU64; 3],
    /// Keys that entered a cool-down, by [`Kind`].
    throttle_trips: [AtomicU64; 3],
    /// 1 while the throttle counts in its Redis store.
    store_up: AtomicU64,
    /// DNS discoveries of KDCs, [ok, failed].
    discovery_lookups: [AtomicU64; 2],
    /// Discovered destinations refused, by `discovery::Refused`.
    discovery_refused: [AtomicU64; 6],
}

impl Metrics {
    /// A new set, all zero.
    pub fn new() -> Metrics {
        Metrics {
            krb_errors: (0..=error_names::NAMES.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            ..Metrics::default()
        }
    }

    /// A KDC answered with KRB-ERROR `code`.
    pub fn krb_error(&self, code: i64) {
        let i = error_names::index(code).unwrap_or(error_names::NAMES.len());
        if let Some(c) = self.krb_errors.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An AS-REQ was refused because its `kind` key is in cool-down.
    pub fn throttled(&self, kind: Kind) {
        self.throttled[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// A `kind` key entered its cool-down.
    pub fn throttle_trip(&self, kind: Kind) {
        self.throttle_trips[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Whether the throttle's Redis store answered its last call.
    pub fn set_store_up(&self, up: bool) {
        self.store_up.store(u64::from(up), Ordering::Relaxed);
    }

    /// True while the throttle counts in its Redis store.
    #[cfg(test)]
    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Relaxed) == 1
    }

    /// A connection was accepted (TCP).
    pub fn connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was dropped at accept time (no place even to refuse);
    /// returns how many were dropped before this one.
    pub fn dropped(&self) -> u64 {
        self.dropped.fetch_add(1, Ordering::Relaxed)
    }

    /// A request was forwarded; `ok` when a server answered, after
    /// `elapsed` upstream.
    pub fn exchange(&self, service: Service, transport: Transport, ok: bool, elapsed: Duration) {
        self.exchanges[service_index(service)][transport.index()][usize::from(!ok)]
            .fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// A request or connection was refused with `code`.
    pub fn refusal(&self, code: close::CloseCode) {
        if let Some(i) = close::ALL.iter().position(|c| c.code == code.code) {
            if let Some(c) = self.refusals.get(i) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A request was refused for its `Origin`.
    pub fn origin_refusal(&self) {
        self.origin_refusals.fetch_add(1, Ordering::Relaxed);
    }

    /// A DNS discovery of a realm's servers ended.
    pub fn discovery_lookup(&self, ok: bool) {
        self.discovery_lookups[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// A discovered destination was refused by the allow-list.
    pub fn discovery_refused(&self, why: crate::discovery::Refused) {
        if let Some(c) = self.discovery_refused.get(why.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A TLS handshake failed for the client's certificate: `missing`
    /// (none presented) or not (one that does not verify).
    pub fn client_cert_refusal(&self, missing: bool) {
        let i = usize::from(!missing);
        if let Some(c) = self.client_cert_refusals.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A configuration reload ended.
    pub fn reload(&self, ok: bool) {
        self.reloads[usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition, with the gauges read from `admission`.
    pub fn render(
        &self,
        admission: &Admission,
        table: &throttle::Table,
        shutting_down: bool,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Writing to a String cannot fail.
        let w = &mut out;
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_info Build information.\n\
             # TYPE krb5_wss_proxy_info gauge\n\
             krb5_wss_proxy_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_connections_total Client connections accepted (TCP).\n\
             # TYPE krb5_wss_proxy_connections_total counter\n\
             krb5_wss_proxy_connections_total {}",
            get(&self.connections)
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_connections_open Client connections open, within the limit.\n\
             # TYPE krb5_wss_proxy_connections_open gauge\n\
             krb5_wss_proxy_connections_open {}\n\
             # HELP krb5_wss_proxy_connections_overflow Connections over the limit, being refused.\n\
             # TYPE krb5_wss_proxy_connections_overflow gauge\n\
             krb5_wss_proxy_connections_overflow {}\n\
             # HELP krb5_wss_proxy_client_addresses Client addresses (IPv6: /64) with connections open.\n\
             # TYPE krb5_wss_proxy_client_addresses gauge\n\
             krb5_wss_proxy_client_addresses {}",
            admission.open(),
            admission.overflowing(),
            admission.addresses()
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_connections_dropped_total Connections closed at once, over every limit.\n\
             # TYPE krb5_wss_proxy_connections_dropped_total counter\n\
             krb5_wss_proxy_connections_dropped_total {}",
            get(&self.dropped)
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_exchanges_total Requests forwarded upstream, by outcome.\n\
             # TYPE krb5_wss_proxy_exchanges_total counter"
        );
        for s in SERVICES {
            for t in TRANSPORTS {
                for (ri, r) in RESULTS.iter().enumerate() {
                    let _ = writeln!(
                        w,
                        "krb5_wss_proxy_exchanges_total{{service=\"{s}\",transport=\"{t}\",result=\"{r}\"}} {}",
                        get(&self.exchanges[service_index(s)][t.index()][ri])
                    );
                }
            }
        }
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_refusals_total Requests or connections refused, by close code.\n\
             # TYPE krb5_wss_proxy_refusals_total counter"
        );
        for (i, c) in close::ALL.iter().enumerate() {
            if c.code == close::NORMAL.code {
                continue;
            }
            let n = self.refusals.get(i).map(get).unwrap_or(0);
            let _ = writeln!(
                w,
                "krb5_wss_proxy_refusals_total{{code=\"{}\",reason=\"{}\"}} {n}",
                c.code, c.reason
            );
        }
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_discovery_lookups_total DNS discoveries of KDCs (kdc = \"dns\"), by result.\n\
             # TYPE krb5_wss_proxy_discovery_lookups_total counter"
        );
        for (ri, r) in RESULTS.iter().enumerate() {
            let _ = writeln!(
                w,
                "krb5_wss_proxy_discovery_lookups_total{{result=\"{r}\"}} {}",
                get(&self.discovery_lookups[ri])
            );
        }
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_discovery_refused_total Discovered destinations refused by the allow-list, by reason.\n\
             # TYPE krb5_wss_proxy_discovery_refused_total counter"
        );
        for why in crate::discovery::Refused::ALL {
            let _ = writeln!(
                w,
                "krb5_wss_proxy_discovery_refused_total{{reason=\"{}\"}} {}",
                why.label(),
                get(&self.discovery_refused[why.index()])
            );
        }
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_krb_errors_total KRB-ERROR replies from the KDCs, by error code name.\n\
             # TYPE krb5_wss_proxy_krb_errors_total counter"
        );
        let names = error_names::NAMES.iter().map(|(_, n)| *n).chain(["other"]);
        for (n, c) in names.zip(&self.krb_errors) {
            let _ = writeln!(
                w,
                "krb5_wss_proxy_krb_errors_total{{code=\"{n}\"}} {}",
                get(c)
            );
        }
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_throttled_total AS-REQs refused (4423) because a key is in cool-down, by key kind.\n\
             # TYPE krb5_wss_proxy_throttled_total counter"
        );
        for k in Kind::ALL {
            let _ = writeln!(
                w,
                "krb5_wss_proxy_throttled_total{{key=\"{}\"}} {}",
                k.name(),
                get(&self.throttled[k.index()])
            );
        }
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_throttle_trips_total Keys that reached their pre-authentication failure threshold, by key kind.\n\
             # TYPE krb5_wss_proxy_throttle_trips_total counter"
        );
        for k in Kind::ALL {
            let _ = writeln!(
                w,
                "krb5_wss_proxy_throttle_trips_total{{key=\"{}\"}} {}",
                k.name(),
                get(&self.throttle_trips[k.index()])
            );
        }
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_throttle_keys Keys in the throttle's table (max_keys).\n\
             # TYPE krb5_wss_proxy_throttle_keys gauge\n\
             krb5_wss_proxy_throttle_keys {}\n\
             # HELP krb5_wss_proxy_throttle_evictions_total Keys evicted from the full throttle table.\n\
             # TYPE krb5_wss_proxy_throttle_evictions_total counter\n\
             krb5_wss_proxy_throttle_evictions_total {}\n\
             # HELP krb5_wss_proxy_throttle_store_up 1 while the throttle's counters are in its Redis store; 0 when counting locally (no store, or unreachable).\n\
             # TYPE krb5_wss_proxy_throttle_store_up gauge\n\
             krb5_wss_proxy_throttle_store_up {}",
            table.len(),
            table.evicted(),
            get(&self.store_up)
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_origin_refusals_total Requests refused (HTTP 403) for their Origin.\n\
             # TYPE krb5_wss_proxy_origin_refusals_total counter\n\
             krb5_wss_proxy_origin_refusals_total {}",
            get(&self.origin_refusals)
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_client_cert_refusals_total TLS handshakes refused for the client certificate (client_ca).\n\
             # TYPE krb5_wss_proxy_client_cert_refusals_total counter"
        );
        for (i, reason) in ["missing", "rejected"].iter().enumerate() {
            let n = self.client_cert_refusals.get(i).map(get).unwrap_or(0);
            let _ = writeln!(
                w,
                "krb5_wss_proxy_client_cert_refusals_total{{reason=\"{reason}\"}} {n}"
            );
        }
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_upstream_in_flight Upstream exchanges in progress.\n\
             # TYPE krb5_wss_proxy_upstream_in_flight gauge\n\
             krb5_wss_proxy_upstream_in_flight {}",
            admission.upstream_in_flight()
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_partial_record_bytes Bytes of partial records held (max_partial_bytes).\n\
             # TYPE krb5_wss_proxy_partial_record_bytes gauge\n\
             krb5_wss_proxy_partial_record_bytes {}",
            admission.partial_total()
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_upstream_seconds Time from a forwarded request to its reply (or failure).\n\
             # TYPE krb5_wss_proxy_upstream_seconds histogram"
        );
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += get(&self.buckets[i]);
            let _ = writeln!(
                w,
                "krb5_wss_proxy_upstream_seconds_bucket{{le=\"{b}\"}} {cumulative}"
            );
        }
        let count = get(&self.latency_count);
        let _ = writeln!(
            w,
            "krb5_wss_proxy_upstream_seconds_bucket{{le=\"+Inf\"}} {count}\n\
             krb5_wss_proxy_upstream_seconds_sum {}\n\
             krb5_wss_proxy_upstream_seconds_count {count}",
            get(&self.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_reloads_total Configuration reloads (SIGHUP), by outcome.\n\
             # TYPE krb5_wss_proxy_reloads_total counter\n\
             krb5_wss_proxy_reloads_total{{result=\"ok\"}} {}\n\
             krb5_wss_proxy_reloads_total{{result=\"failed\"}} {}",
            get(&self.reloads[0]),
            get(&self.reloads[1])
        );
        let _ = writeln!(
            w,
            "# HELP krb5_wss_proxy_shutting_down 1 while draining after SIGTERM.\n\
             # TYPE krb5_wss_proxy_shutting_down gauge\n\
             krb5_wss_proxy_shutting_down {}",
            u8::from(shutting_down)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_close_code_has_a_counter() {
        assert!(close::ALL.len() <= Metrics::new().refusals.len());
    }

    #[test]
    fn render_counts() {
        let m = Metrics::new();
        let a = Admission::new();
        m.connection();
        m.exchange(
            Service::Kdc,
            Transport::Kkdcp,
            true,
            Duration::from_millis(3),
        );
        m.exchange(
            Service::Kdc,
            Transport::WebSocket,
            false,
            Duration::from_secs(60),
        );
        m.refusal(close::REALM_NOT_SERVED);
        m.krb_error(24);
        m.krb_error(24);
        m.krb_error(25);
        m.krb_error(4242);
        m.reload(false);
        let _held = a.upstream(5);
        m.throttled(Kind::Pair);
        m.throttle_trip(Kind::Principal);
        let text = m.render(&a, &throttle::Table::new(), false);
        for line in [
            "krb5_wss_proxy_connections_total 1",
            "krb5_wss_proxy_exchanges_total{service=\"kdc\",transport=\"kkdcp\",result=\"ok\"} 1",
            "krb5_wss_proxy_exchanges_total{service=\"kdc\",transport=\"websocket\",result=\"failed\"} 1",
            "krb5_wss_proxy_refusals_total{code=\"4403\",reason=\"realm not served\"} 1",
            "krb5_wss_proxy_krb_errors_total{code=\"KDC_ERR_PREAUTH_FAILED\"} 2",
            "krb5_wss_proxy_krb_errors_total{code=\"KDC_ERR_PREAUTH_REQUIRED\"} 1",
            "krb5_wss_proxy_krb_errors_total{code=\"KDC_ERR_C_PRINCIPAL_UNKNOWN\"} 0",
            "krb5_wss_proxy_krb_errors_total{code=\"other\"} 1",
            "krb5_wss_proxy_upstream_seconds_bucket{le=\"0.0025\"} 0",
            "krb5_wss_proxy_upstream_seconds_bucket{le=\"0.005\"} 1",
            "krb5_wss_proxy_upstream_seconds_bucket{le=\"+Inf\"} 2",
            "krb5_wss_proxy_upstream_seconds_count 2",
            "krb5_wss_proxy_upstream_in_flight 1",
            "krb5_wss_proxy_reloads_total{result=\"failed\"} 1",
            "krb5_wss_proxy_shutting_down 0",
            "krb5_wss_proxy_throttled_total{key=\"pair\"} 1",
            "krb5_wss_proxy_throttled_total{key=\"address\"} 0",
            "krb5_wss_proxy_throttle_trips_total{key=\"principal\"} 1",
            "krb5_wss_proxy_throttle_keys 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // Every sample line is "name{labels} value" or "name value".
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(
                l.rsplit_once(' ').map(|(_, v)| v.parse::<f64>().is_ok()),
                Some(true),
                "{l}"
            );
        }
    }
}
