//! One UDP exchange with a KDC: send the request (no length prefix, as
//! UDP carries Kerberos), receive one datagram from that address.
//!
//! The socket is connected, so only datagrams from the KDC's address are
//! received; the wait is bounded by `udp_timeout`, the reply by
//! `max_reply_size` (and by the datagram size).
//!
//! Two things make UDP cheap and safe as the default (libkrb5's own):
//!
//! - [`Sockets`] keeps the connected sockets of exchanges that ended with
//!   exactly one reply, per KDC address, and reuses them: no socket, bind,
//!   connect, epoll registration and close per exchange. A socket whose
//!   exchange failed or timed out is closed, never reused, so a late reply
//!   can never answer a later request; a reused socket with a datagram
//!   already waiting is closed too.
//! - An address that does not answer over UDP is asked over TCP only for
//!   [`TCP_ONLY_FOR`]: at once on ICMP port unreachable, and after
//!   [`SILENT_TIMEOUTS`] timeouts in a row during each of which the
//!   address sent no UDP reply at all. A KDC behind a firewall that drops
//!   UDP costs that many `udp_timeout`s, then one per period, not one per
//!   exchange; a busy KDC that loses some datagrams but answers others
//!   keeps being asked over UDP, the cheaper transport for it.

use crate::limits::Limits;
use crate::upstream::AttemptError;
use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Requests larger than this go to TCP at once, as libkrb5's default
/// `udp_preference_limit` (1465 bytes) sends them.
pub const UDP_PREFERENCE_LIMIT: usize = 1465;

/// How long an address that did not answer over UDP is asked over TCP
/// only.
pub const TCP_ONLY_FOR: Duration = Duration::from_secs(300);

/// Timeouts in a row, each with no UDP reply from the address while it
/// waited, that make the address TCP-only. After [`TCP_ONLY_FOR`] one
/// more such timeout does.
pub const SILENT_TIMEOUTS: u32 = 3;

/// Idle sockets kept per KDC address.
const IDLE_PER_ADDRESS: usize = 16;

/// Idle sockets kept in all: counted among the proxy's own descriptors
/// ([`crate::fdlimit::OWN`]).
pub const MAX_IDLE: usize = 32;

/// Most KDC addresses whose UDP health is kept; beyond it all is
/// forgotten. Addresses come from the configuration and DNS discovery
/// only.
const MAX_ADDRESSES: usize = 256;

/// The UDP state of one proxy: idle connected sockets and the addresses
/// that are, for now, asked over TCP only.
#[derive(Debug, Default)]
pub struct Sockets {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    idle: HashMap<SocketAddr, Vec<UdpSocket>>,
    /// Sockets in `idle`, all addresses together.
    idle_count: usize,
    health: HashMap<SocketAddr, Health>,
}

/// What UDP exchanges with one address have shown.
#[derive(Debug, Default)]
struct Health {
    /// Asked over TCP only since then.
    tcp_only_since: Option<Instant>,
    /// Timeouts in a row with no reply from the address while they waited.
    silent: u32,
    /// When the address last answered over UDP.
    last_reply: Option<Instant>,
}

impl Inner {
    fn health(&mut self, address: SocketAddr) -> &mut Health {
        if self.health.len() >= MAX_ADDRESSES && !self.health.contains_key(&address) {
            self.health.clear();
        }
        self.health.entry(address).or_default()
    }

    /// Asks `address` over TCP only for [`TCP_ONLY_FOR`] and closes its
    /// idle sockets.
    fn mark_tcp_only(&mut self, address: SocketAddr) {
        let health = self.health(address);
        health.tcp_only_since = Some(Instant::now());
        health.silent = 0;
        if let Some(closed) = self.idle.remove(&address) {
            self.idle_count -= closed.len();
        }
    }
}

impl Sockets {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when `address` should be asked over UDP now.
    pub fn use_udp(&self, address: SocketAddr) -> bool {
        let mut inner = self.lock();
        let Some(health) = inner.health.get_mut(&address) else {
            return true;
        };
        match health.tcp_only_since {
            Some(since) if since.elapsed() < TCP_ONLY_FOR => false,
            Some(_) => {
                // Known silent: one more silent timeout marks it again.
                health.tcp_only_since = None;
                health.silent = SILENT_TIMEOUTS - 1;
                true
            }
            None => true,
        }
    }

    /// An exchange sent at `sent` got no reply in time: a strike against
    /// `address` unless it answered some other exchange meanwhile (then
    /// this datagram or its reply was lost, and UDP still works).
    fn timed_out(&self, address: SocketAddr, sent: Instant) {
        let mut inner = self.lock();
        let health = inner.health(address);
        if health.last_reply.is_some_and(|at| at >= sent) {
            return;
        }
        health.silent += 1;
        if health.silent >= SILENT_TIMEOUTS {
            inner.mark_tcp_only(address);
        }
    }

    fn take(&self, address: SocketAddr) -> Option<UdpSocket> {
        let mut inner = self.lock();
        let socket = inner.idle.get_mut(&address).and_then(Vec::pop);
        if socket.is_some() {
            inner.idle_count -= 1;
        }
        socket
    }

    /// `address` answered over UDP: keeps `socket` for reuse, unless the
    /// pool is full (then it is closed).
    fn answered(&self, address: SocketAddr, socket: UdpSocket) {
        let mut inner = self.lock();
        let health = inner.health(address);
        health.silent = 0;
        health.last_reply = Some(Instant::now());
        if inner.idle_count >= MAX_IDLE {
            return;
        }
        let list = inner.idle.entry(address).or_default();
        if list.len() < IDLE_PER_ADDRESS {
            list.push(socket);
            inner.idle_count += 1;
        }
    }

    /// Idle sockets kept (tests).
    #[cfg(test)]
    fn idle(&self, address: SocketAddr) -> usize {
        self.lock().idle.get(&address).map_or(0, Vec::len)
    }

    /// A connected socket for `address`: an idle one with nothing waiting
    /// in it, else a new one.
    async fn socket(&self, address: SocketAddr) -> io::Result<UdpSocket> {
        while let Some(s) = self.take(address) {
            let mut probe = [0u8; 1];
            match s.try_recv(&mut probe) {
                // Nothing waiting: as clean as a new socket.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(s),
                // A stray datagram or a pending error: close it.
                _ => continue,
            }
        }
        let local: SocketAddr = if address.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(address).await?;
        Ok(socket)
    }

    /// Sends `request` to `address` over UDP and returns the reply
    /// datagram. ICMP port unreachable marks the address TCP-only at once,
    /// a timeout counts towards [`SILENT_TIMEOUTS`].
    pub async fn exchange(
        &self,
        address: SocketAddr,
        request: &[u8],
        limits: &Limits,
    ) -> Result<Vec<u8>, AttemptError> {
        let sent = Instant::now();
        let result = self.try_exchange(address, request, limits).await;
        match result {
            Ok((socket, reply)) => {
                self.answered(address, socket);
                Ok(reply)
            }
            Err(e) => {
                match &e {
                    AttemptError::UdpTimeout => self.timed_out(address, sent),
                    AttemptError::Udp(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
                        self.lock().mark_tcp_only(address);
                    }
                    // A local socket error or a malformed reply says
                    // nothing about whether the KDC listens on UDP.
                    _ => {}
                }
                Err(e)
            }
        }
    }

    async fn try_exchange(
        &self,
        address: SocketAddr,
        request: &[u8],
        limits: &Limits,
    ) -> Result<(UdpSocket, Vec<u8>), AttemptError> {
        let socket = self.socket(address).await.map_err(AttemptError::Udp)?;
        // One byte more than accepted, to see a reply that is too large;
        // recv_buf fills the spare capacity, nothing is zeroed first.
        let capacity = limits.max_reply_size.min(MAX_DATAGRAM) + 1;
        let mut buf = Vec::with_capacity(capacity);
        let n = timeout(limits.udp_timeout, async {
            socket.send(request).await?;
            socket.recv_buf(&mut buf).await
        })
        .await
        .map_err(|_| AttemptError::UdpTimeout)?
        .map_err(AttemptError::Udp)?;
        if n == 0 {
            return Err(AttemptError::Udp(io::Error::new(
                io::ErrorKind::InvalidData,
                "empty datagram",
            )));
        }
        if n > limits.max_reply_size {
            return Err(AttemptError::Udp(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "reply larger than max_reply_size ({} bytes)",
                    limits.max_reply_size
                ),
            )));
        }
        buf.truncate(n);
        Ok((socket, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            udp_timeout: Duration::from_millis(300),
            ..Limits::default()
        }
    }

    /// A UDP server answering each datagram with `reply` (and, when
    /// `twice`, a second, late copy after 50 ms).
    async fn server(reply: &'static [u8], twice: bool) -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let (_, from) = sock.recv_from(&mut buf).await.unwrap();
                sock.send_to(reply, from).await.unwrap();
                if twice {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    sock.send_to(b"late", from).await.unwrap();
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_socket_is_reused_after_a_clean_exchange() {
        let addr = server(b"reply", false).await;
        let s = Sockets::default();
        assert_eq!(s.exchange(addr, b"req", &limits()).await.unwrap(), b"reply");
        assert_eq!(s.idle(addr), 1);
        assert_eq!(s.exchange(addr, b"req", &limits()).await.unwrap(), b"reply");
        assert_eq!(s.idle(addr), 1, "the same socket went back");
    }

    #[tokio::test]
    async fn the_pool_is_bounded_per_address_and_in_all() {
        let s = Sockets::default();
        let mut addresses = Vec::new();
        for _ in 0..3 {
            addresses.push(server(b"reply", false).await);
        }
        // 20 exchanges in flight at once to each address.
        for &addr in &addresses {
            let l = limits();
            let all = (0..20).map(|_| s.exchange(addr, b"req", &l));
            for r in futures_join_all(all).await {
                assert_eq!(r.unwrap(), b"reply");
            }
        }
        assert_eq!(s.idle(addresses[0]), IDLE_PER_ADDRESS);
        assert_eq!(s.idle(addresses[1]), MAX_IDLE - IDLE_PER_ADDRESS);
        assert_eq!(s.idle(addresses[2]), 0);
        assert_eq!(s.lock().idle_count, MAX_IDLE);
    }

    /// Runs `futures` concurrently, in order of the results.
    async fn futures_join_all<F: std::future::Future>(
        futures: impl Iterator<Item = F>,
    ) -> Vec<F::Output> {
        let mut set = Vec::new();
        for f in futures {
            set.push(Box::pin(f));
        }
        let mut out = Vec::new();
        // Poll all together: each waits for its own reply.
        let mut pending: Vec<_> = set.into_iter().map(Some).collect();
        std::future::poll_fn(|cx| {
            let mut done = true;
            for slot in pending.iter_mut() {
                if let Some(f) = slot {
                    match f.as_mut().poll(cx) {
                        std::task::Poll::Ready(v) => {
                            out.push(v);
                            *slot = None;
                        }
                        std::task::Poll::Pending => done = false,
                    }
                }
            }
            if done {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await;
        out
    }

    #[tokio::test]
    async fn a_reused_socket_holding_a_stray_datagram_is_closed() {
        let addr = server(b"reply", true).await;
        let s = Sockets::default();
        assert_eq!(s.exchange(addr, b"req", &limits()).await.unwrap(), b"reply");
        // The late copy lands in the idle socket.
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The next exchange must not take "late" for its answer.
        assert_eq!(s.exchange(addr, b"req", &limits()).await.unwrap(), b"reply");
    }

    /// A UDP server that answers the datagrams starting with "answer" and
    /// drops the others, as a lossy network or a busy KDC does.
    async fn lossy_server() -> SocketAddr {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                let (n, from) = sock.recv_from(&mut buf).await.unwrap();
                if buf[..n].starts_with(b"answer") {
                    sock.send_to(b"reply", from).await.unwrap();
                }
            }
        });
        addr
    }

    async fn time_out(s: &Sockets, addr: SocketAddr) {
        let err = s.exchange(addr, b"drop", &limits()).await.unwrap_err();
        assert!(matches!(err, AttemptError::UdpTimeout), "{err}");
    }

    #[tokio::test]
    async fn a_silent_address_is_asked_over_tcp_only_after_three_timeouts() {
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let s = Sockets::default();
        for _ in 1..SILENT_TIMEOUTS {
            time_out(&s, addr).await;
            assert!(s.use_udp(addr));
        }
        time_out(&s, addr).await;
        assert!(!s.use_udp(addr));
        assert_eq!(s.idle(addr), 0);
        // Once the period is over, UDP is tried again, and a single
        // silent timeout marks the known-silent address again.
        let expire = |s: &Sockets, addr| {
            s.lock().health(addr).tcp_only_since = Some(Instant::now() - TCP_ONLY_FOR);
        };
        expire(&s, addr);
        assert!(s.use_udp(addr));
        time_out(&s, addr).await;
        assert!(!s.use_udp(addr));
        // A reply after the period clears that.
        let lossy = lossy_server().await;
        let s = Sockets::default();
        for _ in 0..SILENT_TIMEOUTS {
            time_out(&s, lossy).await;
        }
        expire(&s, lossy);
        assert!(s.use_udp(lossy));
        assert_eq!(
            s.exchange(lossy, b"answer", &limits()).await.unwrap(),
            b"reply"
        );
        time_out(&s, lossy).await;
        assert!(s.use_udp(lossy));
    }

    #[tokio::test]
    async fn a_reply_between_timeouts_clears_the_strikes() {
        let addr = lossy_server().await;
        let s = Sockets::default();
        for _ in 0..3 {
            for _ in 1..SILENT_TIMEOUTS {
                time_out(&s, addr).await;
            }
            assert_eq!(
                s.exchange(addr, b"answer", &limits()).await.unwrap(),
                b"reply"
            );
        }
        assert!(s.use_udp(addr));
    }

    #[tokio::test]
    async fn timeouts_while_the_address_answers_others_are_no_strikes() {
        // A busy KDC: of five exchanges in flight together, four lose
        // their datagram and one is answered. The four time out after that
        // answer, one after another; the address keeps UDP.
        let addr = lossy_server().await;
        let s = Sockets::default();
        let lost = futures_join_all((0..4).map(|_| time_out(&s, addr)));
        let answered = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            assert_eq!(
                s.exchange(addr, b"answer", &limits()).await.unwrap(),
                b"reply"
            );
        };
        tokio::join!(lost, answered);
        assert!(s.use_udp(addr));
        // The same four with no answer among them do mark it.
        futures_join_all((0..4).map(|_| time_out(&s, addr))).await;
        assert!(!s.use_udp(addr));
    }

    #[tokio::test]
    async fn a_closed_port_is_asked_over_tcp_only_at_once() {
        let addr = {
            let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            s.local_addr().unwrap()
        };
        let s = Sockets::default();
        let start = Instant::now();
        let err = s.exchange(addr, b"req", &limits()).await.unwrap_err();
        assert!(matches!(err, AttemptError::Udp(_)), "{err}");
        assert!(
            start.elapsed() < Duration::from_millis(250),
            "ICMP, not the timeout"
        );
        assert!(!s.use_udp(addr));
    }
}
