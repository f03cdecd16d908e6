//! krb5-wss-loadgen: the load generator of the krb5-wss benchmarks
//! (`bench/run`). Loopback use only; every loop is bounded in time.
//!
//! ```text
//! krb5-wss-loadgen run --mode wss   --target wss://localhost:PORT/kdc --ca CA.pem ...
//! krb5-wss-loadgen run --mode tcp   --target 127.0.0.1:PORT ...
//! krb5-wss-loadgen run --mode kkdcp --target https://localhost:PORT/KdcProxy --ca CA.pem ...
//!     [--clients N] [--seconds S] [--warmup S] [--threads T]
//!     [--realm R] [--principal P]
//! krb5-wss-loadgen responder --listen 127.0.0.1:0 [--realm R] [--max-seconds S]
//! krb5-wss-loadgen idle --target wss://localhost:PORT/kdc --ca CA.pem
//!     [--connections N] [--parallel P] [--hold-seconds S]
//!     [--sources K] [--source-first 127.A.B.C]
//! ```
//!
//! `run` opens N clients, each doing sequential exchanges as fast as its
//! answers come back, and prints one JSON line: exchanges per second over
//! the measured window, latency percentiles, errors, and the kinds of
//! replies seen. `wss` keeps one WebSocket per client (reconnecting only if
//! the server closed it, as websockify does after every reply); `tcp` opens
//! one TCP connection per exchange (the MIT KDC closes after each reply);
//! `kkdcp` POSTs MS-KKDCP messages over HTTPS, reusing the connection when
//! the server keeps it alive. Every request is an AS-REQ with a fresh
//! nonce, so the KDC's lookaside cache never answers a repeat.
//!
//! `responder` answers an RFC 4120 TCP record at once with a fixed
//! KRB-ERROR and closes the connection, as the MIT KDC does, and a UDP
//! datagram on the same port with the same KRB-ERROR: an upstream that
//! costs (almost) nothing, to find the proxy's own limit.
//! It stops when its standard input closes or after `--max-seconds`.
//!
//! `idle` opens N WebSocket connections, prints one JSON line once they are
//! open, holds them until its standard input gets a line (or closes) or
//! `--hold-seconds` pass, then exits, closing them. With `--sources K`
//! connection i is made from loopback address `--source-first` + (i mod K)
//! (in 127.0.0.0/8 only), so that N can exceed one address's ephemeral
//! ports.

mod clients;
mod krb;

use clients::{Client, Mode, Target};
use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// Longest a single exchange may take before it counts as an error.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest all clients together may take to connect.
const CONNECT_PHASE: Duration = Duration::from_secs(60);
/// How long stragglers get after the window closes.
const DRAIN: Duration = Duration::from_secs(5);
/// Most idle connections one `idle` process opens.
const MAX_IDLE: usize = 200_000;

type Opts = HashMap<String, String>;

fn parse_opts(args: impl Iterator<Item = String>) -> Result<Opts, String> {
    let mut opts = Opts::new();
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let Some(key) = a.strip_prefix("--") else {
            return Err(format!("unexpected argument {a:?}"));
        };
        let value = args
            .next()
            .ok_or_else(|| format!("--{key} needs a value"))?;
        opts.insert(key.to_string(), value);
    }
    Ok(opts)
}

fn opt<T: std::str::FromStr>(opts: &Opts, key: &str, default: T) -> Result<T, String> {
    match opts.get(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("--{key}: cannot parse {v:?}")),
    }
}

fn required<'a>(opts: &'a Opts, key: &str) -> Result<&'a str, String> {
    opts.get(key)
        .map(String::as_str)
        .ok_or_else(|| format!("--{key} is required"))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let sub = args.next().unwrap_or_default();
    let result = parse_opts(args).and_then(|opts| match sub.as_str() {
        "run" => run(&opts),
        "responder" => responder(&opts),
        "idle" => idle(&opts),
        _ => Err(
            "usage: krb5-wss-loadgen run|responder|idle [--option value ...] \
                  (see the source's header)"
                .into(),
        ),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("krb5-wss-loadgen: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, String> {
    let mut b = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn print_line(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// A JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------
// run

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    reconnects: u64,
    stalled: u64,
    kinds: HashMap<&'static str, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.reconnects += other.reconnects;
        self.stalled += other.stalled;
        for (k, v) in other.kinds {
            *self.kinds.entry(k).or_default() += v;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

struct Shared {
    target: Target,
    request: krb::AsReq,
    realm: String,
    nonce: AtomicU64,
    connected: AtomicUsize,
}

/// The measured window: (start counting at, stop at).
type Window = Option<(Instant, Instant)>;

async fn client_task(shared: Arc<Shared>, mut window: watch::Receiver<Window>) -> Tally {
    let mut tally = Tally::default();
    let mut client: Option<Client> = match Client::connect(&shared.target).await {
        Ok(c) => Some(c),
        Err(e) => {
            tally.error(format!("connect: {e}"));
            None
        }
    };
    shared.connected.fetch_add(1, Ordering::SeqCst);
    let w: Window = match window.wait_for(Option::is_some).await {
        Ok(w) => *w,
        Err(_) => return tally,
    };
    let Some((count_from, end)) = w else {
        return tally;
    };
    loop {
        let start = Instant::now();
        if start >= end {
            break;
        }
        let nonce = shared.nonce.fetch_add(1, Ordering::Relaxed);
        let framed = krb::frame(&shared.request.with_nonce(nonce));
        let c = match client.as_mut() {
            Some(c) => c,
            None => match Client::connect(&shared.target).await {
                Ok(c) => {
                    if !matches!(c, Client::Tcp) {
                        tally.reconnects += 1;
                    }
                    client.insert(c)
                }
                Err(e) => {
                    tally.error(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let result = tokio::time::timeout(
            EXCHANGE_TIMEOUT,
            c.exchange(&framed, &shared.target, &shared.realm),
        )
        .await;
        let done = Instant::now();
        match result {
            Ok(Ok(outcome)) => {
                tally.reconnects += outcome.reconnects;
                if outcome.closed {
                    client = None;
                }
                if start >= count_from && done <= end {
                    let us = done.duration_since(start).as_micros();
                    tally.latencies_us.push(us.min(u32::MAX as u128) as u32);
                    *tally.kinds.entry(outcome.kind).or_default() += 1;
                }
            }
            Ok(Err(e)) => {
                tally.error(e);
                client = None;
            }
            Err(_) => {
                tally.error(format!("no reply within {EXCHANGE_TIMEOUT:?}"));
                client = None;
            }
        }
    }
    if let Some(c) = client {
        c.close().await;
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn run(opts: &Opts) -> Result<(), String> {
    let mode: Mode = required(opts, "mode")?.parse()?;
    let target = Target::parse(mode, required(opts, "target")?, opts.get("ca"))?;
    let clients: usize = opt(opts, "clients", 1)?;
    let seconds: f64 = opt(opts, "seconds", 5.0)?;
    let warmup: f64 = opt(opts, "warmup", 0.5)?;
    let threads: usize = opt(opts, "threads", 1)?;
    let realm: String = opt(opts, "realm", "KRBTEST.COM".to_string())?;
    let principal: String = opt(opts, "principal", "loadgen".to_string())?;
    if clients == 0 || clients > 20_000 {
        return Err("--clients must be 1..=20000".into());
    }
    if !(0.1..=600.0).contains(&seconds) || !(0.0..=60.0).contains(&warmup) {
        return Err("--seconds must be 0.1..=600 and --warmup 0..=60".into());
    }
    let shared = Arc::new(Shared {
        target,
        request: krb::AsReq::new(&principal, &realm),
        realm,
        nonce: AtomicU64::new(std::process::id() as u64 * 7919),
        connected: AtomicUsize::new(0),
    });
    let rt = runtime(threads)?;
    let (tally, window) = rt.block_on(async {
        let (tx, rx) = watch::channel::<Window>(None);
        let mut tasks = Vec::with_capacity(clients);
        for _ in 0..clients {
            tasks.push(tokio::spawn(client_task(shared.clone(), rx.clone())));
        }
        let connect_deadline = Instant::now() + CONNECT_PHASE;
        while shared.connected.load(Ordering::SeqCst) < clients && Instant::now() < connect_deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let now = Instant::now();
        let count_from = now + Duration::from_secs_f64(warmup);
        let end = count_from + Duration::from_secs_f64(seconds);
        let _ = tx.send(Some((count_from, end)));
        let mut tally = Tally::default();
        let drain_until = end + DRAIN;
        for t in tasks {
            let left = drain_until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, t).await {
                Ok(Ok(t)) => tally.merge(t),
                Ok(Err(e)) => tally.error(format!("client task failed: {e}")),
                // Still inside an exchange long after the window closed
                // (e.g. a SYN retransmitted because a listen backlog
                // overflowed): counted apart from errors.
                Err(_) => tally.stalled += 1,
            }
        }
        (tally, end.duration_since(count_from))
    });
    let mut lat = tally.latencies_us;
    lat.sort_unstable();
    let n = lat.len();
    let rate = n as f64 / window.as_secs_f64();
    let kinds = tally
        .kinds
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k)))
        .collect::<Vec<_>>()
        .join(",");
    print_line(&format!(
        "{{\"mode\":{},\"clients\":{clients},\"threads\":{threads},\"seconds\":{:.3},\
         \"exchanges\":{n},\"rate\":{rate:.1},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\
         \"max_us\":{},\"errors\":{},\"stalled\":{},\"reconnects\":{},\"kinds\":{{{kinds}}},\"first_error\":{}}}",
        json_str(mode.name()),
        window.as_secs_f64(),
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(0),
        tally.errors,
        tally.stalled,
        tally.reconnects,
        tally
            .first_error
            .as_deref()
            .map(json_str)
            .unwrap_or_else(|| "null".into()),
    ))?;
    // Stragglers (if any) are abandoned: their exchanges were not counted.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}

// ---------------------------------------------------------------------------
// responder

/// Largest request record the responder reads.
const RESPONDER_MAX_RECORD: usize = 1024 * 1024;

async fn serve_canned(mut s: TcpStream, reply: Arc<Vec<u8>>) {
    // Like the MIT KDC: one record, one reply, then close (so the closing
    // side, and its TIME_WAIT, is the responder's, as with the KDC).
    let _ = s.set_nodelay(true);
    let mut header = [0u8; 4];
    if s.read_exact(&mut header).await.is_err() {
        return;
    }
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 || len > RESPONDER_MAX_RECORD {
        return;
    }
    let mut body = vec![0u8; len];
    if s.read_exact(&mut body).await.is_err() {
        return;
    }
    let _ = s.write_all(&reply).await;
}

fn responder(opts: &Opts) -> Result<(), String> {
    let listen: String = opt(opts, "listen", "127.0.0.1:0".to_string())?;
    let realm: String = opt(opts, "realm", "KRBTEST.COM".to_string())?;
    let max_seconds: u64 = opt(opts, "max-seconds", 3600)?;
    let error = krb::krb_error(&realm);
    let reply = Arc::new(krb::frame(&error));
    runtime(1)?.block_on(async move {
        let l = TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        // UDP on the same port, as a KDC listens: one datagram answered
        // with the same KRB-ERROR, unframed.
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (UDP): {e}"))?;
        print_line(&format!("listening on {addr}"))?;
        let accept = async {
            loop {
                if let Ok((s, _)) = l.accept().await {
                    tokio::spawn(serve_canned(s, reply.clone()));
                }
            }
        };
        let datagrams = async {
            let mut buf = vec![0u8; 65_536];
            loop {
                if let Ok((n, from)) = udp.recv_from(&mut buf).await {
                    if n > 0 {
                        let _ = udp.send_to(&error, from).await;
                    }
                }
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = datagrams => {}
            _ = stdin_line() => {}
            _ = tokio::time::sleep(Duration::from_secs(max_seconds)) => {}
        }
        Ok(())
    })
}

/// Resolves when standard input yields a line or closes.
async fn stdin_line() {
    let mut line = String::new();
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let _ = stdin.read_line(&mut line).await;
}

// ---------------------------------------------------------------------------
// idle

/// The loopback source addresses of `idle`: `count` of them from `first`,
/// all inside 127.0.0.0/8 (none when `count` is 0: the kernel chooses).
#[derive(Debug, Clone, Copy)]
struct Sources {
    first: u32,
    count: u32,
}

impl Sources {
    fn new(first: Ipv4Addr, count: u32) -> Result<Sources, String> {
        let start = u32::from(first);
        let last = start.checked_add(count.saturating_sub(1));
        if count > 0 && !matches!(last, Some(l) if (start >> 24) == 127 && (l >> 24) == 127) {
            return Err(format!(
                "--source-first {first} with --sources {count} leaves 127.0.0.0/8"
            ));
        }
        Ok(Sources {
            first: start,
            count,
        })
    }

    /// The source of connection `i`: the addresses in turn.
    fn of(self, i: usize) -> Option<IpAddr> {
        let offset = (i % self.count.max(1) as usize) as u32;
        (self.count > 0).then(|| IpAddr::V4(Ipv4Addr::from(self.first + offset)))
    }
}

fn idle(opts: &Opts) -> Result<(), String> {
    let target = Target::parse(Mode::Wss, required(opts, "target")?, opts.get("ca"))?;
    let connections: usize = opt(opts, "connections", 10_000)?;
    let parallel: usize = opt(opts, "parallel", 64)?;
    let hold: u64 = opt(opts, "hold-seconds", 120)?;
    let sources: u32 = opt(opts, "sources", 0)?;
    let first: Ipv4Addr = opt(opts, "source-first", Ipv4Addr::new(127, 100, 0, 1))?;
    if connections == 0 || connections > MAX_IDLE || parallel == 0 || hold > 3600 {
        return Err(format!(
            "--connections must be 1..={MAX_IDLE}, --parallel at least 1, --hold-seconds at most 3600"
        ));
    }
    let sources = Sources::new(first, sources)?;
    let source_of = move |i: usize| sources.of(i);
    let target = Arc::new(target);
    runtime(1)?.block_on(async move {
        let started = Instant::now();
        let gate = Arc::new(Semaphore::new(parallel));
        let open: Arc<Mutex<Vec<Client>>> = Arc::new(Mutex::new(Vec::with_capacity(connections)));
        let failed = Arc::new(AtomicUsize::new(0));
        let first_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let mut tasks = Vec::with_capacity(connections);
        for i in 0..connections {
            let source = source_of(i);
            let (gate, open, failed, first_error, target) = (
                gate.clone(),
                open.clone(),
                failed.clone(),
                first_error.clone(),
                target.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let Ok(_permit) = gate.acquire().await else {
                    return;
                };
                match tokio::time::timeout(EXCHANGE_TIMEOUT, Client::connect_from(&target, source))
                    .await
                {
                    Ok(Ok(c)) => open.lock().unwrap_or_else(|e| e.into_inner()).push(c),
                    Ok(Err(e)) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .get_or_insert(e);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        let n_open = open.lock().unwrap_or_else(|e| e.into_inner()).len();
        let first = first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        print_line(&format!(
            "{{\"open\":{n_open},\"failed\":{},\"seconds\":{:.3},\"first_error\":{}}}",
            failed.load(Ordering::SeqCst),
            started.elapsed().as_secs_f64(),
            first
                .as_deref()
                .map(json_str)
                .unwrap_or_else(|| "null".into())
        ))?;
        tokio::select! {
            _ = stdin_line() => {}
            _ = tokio::time::sleep(Duration::from_secs(hold)) => {}
        }
        let all = std::mem::take(&mut *open.lock().unwrap_or_else(|e| e.into_inner()));
        drop(all);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_take_the_addresses_in_turn() {
        let s = Sources::new(Ipv4Addr::new(127, 100, 3, 1), 250).unwrap();
        assert_eq!(s.of(0), Some(IpAddr::V4(Ipv4Addr::new(127, 100, 3, 1))));
        assert_eq!(s.of(249), Some(IpAddr::V4(Ipv4Addr::new(127, 100, 3, 250))));
        assert_eq!(s.of(250), Some(IpAddr::V4(Ipv4Addr::new(127, 100, 3, 1))));
        // Crossing an octet boundary stays inside 127.0.0.0/8.
        let s = Sources::new(Ipv4Addr::new(127, 100, 0, 255), 3).unwrap();
        assert_eq!(s.of(2), Some(IpAddr::V4(Ipv4Addr::new(127, 100, 1, 1))));
    }

    #[test]
    fn no_sources_leaves_the_choice_to_the_kernel() {
        let s = Sources::new(Ipv4Addr::new(127, 100, 0, 1), 0).unwrap();
        assert_eq!(s.of(0), None);
        assert_eq!(s.of(12345), None);
    }

    #[test]
    fn sources_outside_loopback_are_refused() {
        for (first, count) in [
            (Ipv4Addr::new(10, 0, 0, 1), 1),
            (Ipv4Addr::new(127, 255, 255, 250), 10),
            (Ipv4Addr::new(255, 255, 255, 255), 2),
            (Ipv4Addr::new(126, 255, 255, 255), 2),
        ] {
            let e = Sources::new(first, count).unwrap_err();
            assert!(e.contains("leaves 127.0.0.0/8"), "{first} x {count}: {e}");
        }
    }
}
