//! Forwarding one request record to a realm's KDCs (or kpasswd servers)
//! over TCP, and reading the framed reply.
//!
//! Servers are tried in the configured order; a name is resolved at each
//! exchange and its addresses tried in turn (at most
//! [`MAX_ADDRESSES_PER_NAME`]). Every step is bounded: resolution and
//! connection by `connect_timeout`, sending the request and reading the
//! whole reply by `reply_timeout`, the reply's size by `max_reply_size`.
//! One TCP connection carries one exchange (the MIT KDC closes after one
//! reply anyway).
//!
//! For a realm with `udp` (the default), each KDC address is asked over
//! UDP first ([`crate::udp`], bounded by `udp_timeout`) when the request
//! is at most [`udp::UDP_PREFERENCE_LIMIT`] bytes; when that brings no
//! reply, or the reply is KRB_ERR_RESPONSE_TOO_BIG, the same address is
//! asked over TCP (and, when the address stays silent, over TCP only for
//! a while: see [`crate::udp`]).

use crate::addr::{Host, ServerAddr};
use crate::limits::Limits;
use crate::udp;
use krb5_wss_proto::framing::{self, FramingError, HEADER_LEN};
use krb5_wss_proto::kerberos::{krb_error_code, KRB_ERR_RESPONSE_TOO_BIG};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

/// Most addresses tried for one server name.
pub const MAX_ADDRESSES_PER_NAME: usize = 4;

/// A reply from a server.
#[derive(Debug)]
pub struct Reply {
    /// The reply record with its 4-byte length prefix, ready to send.
    pub framed: Vec<u8>,
    /// The address that answered.
    pub server: SocketAddr,
    /// How it answered: "tcp" or "udp".
    pub protocol: &'static str,
}

/// Why one server did not answer.
#[derive(Debug)]
pub enum AttemptError {
    /// The name did not resolve (or resolution failed).
    Resolve(io::Error),
    /// The name resolved to no address.
    NoAddress,
    /// Resolving took longer than the connect timeout.
    ResolveTimeout,
    /// The TCP connection failed.
    Connect(io::Error),
    /// The TCP connection took longer than the connect timeout.
    ConnectTimeout,
    /// Sending the request or reading the reply failed.
    Io(io::Error),
    /// The server closed the connection before a whole reply.
    Closed,
    /// The reply's length prefix is invalid or over the limit.
    BadReply(FramingError),
    /// No whole reply within the reply timeout.
    ReplyTimeout,
    /// UDP: the request could not be sent or the reply not received.
    Udp(io::Error),
    /// UDP: no reply within the UDP timeout.
    UdpTimeout,
    /// DNS discovery found no server (`kdc = "dns"`).
    Discovery(String),
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptError::Resolve(e) => write!(f, "resolve: {e}"),
            AttemptError::NoAddress => f.write_str("resolve: no address"),
            AttemptError::ResolveTimeout => f.write_str("resolve: timed out"),
            AttemptError::Connect(e) => write!(f, "connect: {e}"),
            AttemptError::ConnectTimeout => f.write_str("connect: timed out"),
            AttemptError::Io(e) => write!(f, "exchange: {e}"),
            AttemptError::Closed => f.write_str("closed without a reply"),
            AttemptError::BadReply(e) => write!(f, "bad reply: {e}"),
            AttemptError::ReplyTimeout => f.write_str("no reply in time"),
            AttemptError::Udp(e) => write!(f, "udp: {e}"),
            AttemptError::UdpTimeout => f.write_str("udp: no reply in time"),
            AttemptError::Discovery(e) => f.write_str(e),
        }
    }
}

/// Every server failed; the errors in the order tried.
#[derive(Debug, Default)]
pub struct Failure {
    /// `(server as configured or address tried, what went wrong)`.
    pub attempts: Vec<(String, AttemptError)>,
}

impl Failure {
    /// DNS discovery found no server to try.
    pub fn discovery(why: String) -> Failure {
        Failure {
            attempts: vec![("discovery".to_string(), AttemptError::Discovery(why))],
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attempts.is_empty() {
            return f.write_str("no server configured");
        }
        for (i, (server, err)) in self.attempts.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{server}: {err}")?;
        }
        Ok(())
    }
}

/// Sends `request` (an unframed record) to the first of `servers` that
/// answers, and returns its framed reply.
pub async fn forward(
    servers: &[ServerAddr],
    request: &[u8],
    limits: &Limits,
    udp: Option<&udp::Sockets>,
) -> Result<Reply, Failure> {
    let udp = udp.filter(|_| request.len() <= udp::UDP_PREFERENCE_LIMIT);
    let framed_request = framing::encode(request);
    let mut failure = Failure::default();
    for server in servers {
        let addresses = match resolve(server, limits).await {
            Ok(a) => a,
            Err(e) => {
                failure.attempts.push((server.to_string(), e));
                continue;
            }
        };
        for address in addresses {
            if let Some(sockets) = udp.filter(|s| s.use_udp(address)) {
                match sockets.exchange(address, request, limits).await {
                    Ok(datagram) if krb_error_code(&datagram) == Some(KRB_ERR_RESPONSE_TOO_BIG) => {
                        log::debug!(
                            "upstream {server} ({address}) udp: response too big, trying tcp"
                        );
                    }
                    Ok(datagram) => {
                        return Ok(Reply {
                            framed: framing::encode(&datagram),
                            server: address,
                            protocol: "udp",
                        })
                    }
                    Err(e) => {
                        log::debug!("upstream {server} ({address}) failed: {e}; trying tcp");
                        failure.attempts.push((format!("udp/{address}"), e));
                    }
                }
            }
            match exchange(address, &framed_request, limits).await {
                Ok(framed) => {
                    return Ok(Reply {
                        framed,
                        server: address,
                        protocol: "tcp",
                    })
                }
                Err(e) => {
                    log::debug!("upstream {server} ({address}) failed: {e}");
                    failure.attempts.push((address.to_string(), e));
                }
            }
        }
    }
    Err(failure)
}

/// The addresses to try for `server`.
async fn resolve(server: &ServerAddr, limits: &Limits) -> Result<Vec<SocketAddr>, AttemptError> {
    match &server.host {
        Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, server.port)]),
        Host::Name(name) => {
            let found = timeout(
                limits.connect_timeout,
                tokio::net::lookup_host((name.as_str(), server.port)),
            )
            .await
            .map_err(|_| AttemptError::ResolveTimeout)?
            .map_err(AttemptError::Resolve)?;
            let mut addresses: Vec<SocketAddr> = Vec::new();
            for a in found {
                if !addresses.contains(&a) {
                    addresses.push(a);
                }
                if addresses.len() == MAX_ADDRESSES_PER_NAME {
                    break;
                }
            }
            if addresses.is_empty() {
                return Err(AttemptError::NoAddress);
            }
            Ok(addresses)
        }
    }
}

/// One TCP exchange: connect, send the framed request, read one framed
/// reply.
async fn exchange(
    address: SocketAddr,
    framed_request: &[u8],
    limits: &Limits,
) -> Result<Vec<u8>, AttemptError> {
    let mut stream = timeout(limits.connect_timeout, TcpStream::connect(address))
        .await
        .map_err(|_| AttemptError::ConnectTimeout)?
        .map_err(AttemptError::Connect)?;
    // Nagle would only delay a request that is written in one piece.
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + limits.reply_timeout;
    timeout_at(deadline, async {
        stream
            .write_all(framed_request)
            .await
            .map_err(AttemptError::Io)?;
        let mut header = [0u8; HEADER_LEN];
        read_exact(&mut stream, &mut header).await?;
        let len =
            framing::parse_header(header, limits.max_reply_size).map_err(AttemptError::BadReply)?;
        let mut framed = vec![0u8; HEADER_LEN + len];
        framed[..HEADER_LEN].copy_from_slice(&header);
        read_exact(&mut stream, &mut framed[HEADER_LEN..]).await?;
        Ok(framed)
    })
    .await
    .map_err(|_| AttemptError::ReplyTimeout)?
}

async fn read_exact(stream: &mut TcpStream, buf: &mut [u8]) -> Result<(), AttemptError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(AttemptError::Closed),
        Err(e) => Err(AttemptError::Io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::parse_server;
    use std::time::Duration;
    use tokio::net::TcpListener;

    fn limits() -> Limits {
        Limits {
            connect_timeout: Duration::from_millis(500),
            reply_timeout: Duration::from_millis(500),
            udp_timeout: Duration::from_millis(300),
            max_reply_size: 1024,
            ..Limits::default()
        }
    }

    /// A fake KDC that checks each connection's request and answers
    /// `reply` (raw bytes, framing included).
    async fn fake_kdc(reply: Vec<u8>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let reply = reply.clone();
                tokio::spawn(async move {
                    let mut header = [0u8; 4];
                    s.read_exact(&mut header).await.unwrap();
                    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
                    s.read_exact(&mut body).await.unwrap();
                    assert_eq!(body, b"request");
                    s.write_all(&reply).await.unwrap();
                    // Hold the connection open a while, like a slow peer would.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                });
            }
        });
        addr
    }

    /// `forward` with UDP first, fresh UDP state.
    async fn with_udp(servers: &[ServerAddr], request: &[u8]) -> Result<Reply, Failure> {
        forward(servers, request, &limits(), Some(&udp::Sockets::default())).await
    }

    fn server(addr: SocketAddr) -> ServerAddr {
        parse_server(&addr.to_string(), 88).unwrap()
    }

    async fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        addr
    }

    #[tokio::test]
    async fn forwards_and_returns_the_framed_reply() {
        let kdc = fake_kdc(framing::encode(b"reply")).await;
        let reply = forward(&[server(kdc)], b"request", &limits(), None)
            .await
            .unwrap();
        assert_eq!(reply.framed, framing::encode(b"reply"));
        assert_eq!(reply.server, kdc);
    }

    #[tokio::test]
    async fn falls_over_to_the_next_server() {
        let dead = closed_port().await;
        let kdc = fake_kdc(framing::encode(b"reply")).await;
        let reply = forward(&[server(dead), server(kdc)], b"request", &limits(), None)
            .await
            .unwrap();
        assert_eq!(reply.server, kdc);
    }

    #[tokio::test]
    async fn all_failures_are_reported() {
        let dead = closed_port().await;
        let silent = fake_kdc(Vec::new()).await;
        let big = fake_kdc(0x10000u32.to_be_bytes().to_vec()).await;
        let err = forward(
            &[server(dead), server(silent), server(big)],
            b"request",
            &limits(),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(err.attempts.len(), 3);
        assert!(matches!(err.attempts[0].1, AttemptError::Connect(_)));
        assert!(matches!(err.attempts[1].1, AttemptError::ReplyTimeout));
        assert!(matches!(err.attempts[2].1, AttemptError::BadReply(_)));
        let text = err.to_string();
        assert!(
            text.contains("connect:") && text.contains("no reply in time"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_truncated_reply_is_a_failure() {
        let mut reply = framing::encode(b"reply");
        reply.truncate(6);
        let kdc = fake_kdc(reply).await;
        // The fake holds the connection open: this is a timeout, not EOF.
        let err = forward(&[server(kdc)], b"request", &limits(), None)
            .await
            .unwrap_err();
        assert!(matches!(err.attempts[0].1, AttemptError::ReplyTimeout));
    }

    #[tokio::test]
    async fn udp_first_then_tcp_on_response_too_big() {
        use krb5_wss_proto::samples;
        // A TCP KDC and, on the same port, a UDP KDC that answers
        // RESPONSE_TOO_BIG.
        let kdc = fake_kdc(framing::encode(b"reply")).await;
        let sock = tokio::net::UdpSocket::bind(kdc).await.unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let (n, from) = sock.recv_from(&mut buf).await.unwrap();
            assert_eq!(&buf[..n], b"request", "UDP carries no length prefix");
            let too_big = samples::krb_error(52, "A.ORG");
            sock.send_to(&too_big, from).await.unwrap();
        });
        let reply = with_udp(&[server(kdc)], b"request").await.unwrap();
        assert_eq!(
            (reply.protocol, reply.framed),
            ("tcp", framing::encode(b"reply"))
        );
    }

    #[tokio::test]
    async fn udp_reply_is_framed() {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let (_, from) = sock.recv_from(&mut buf).await.unwrap();
            sock.send_to(b"datagram reply", from).await.unwrap();
        });
        let reply = with_udp(&[server(addr)], b"request").await.unwrap();
        assert_eq!(reply.protocol, "udp");
        assert_eq!(reply.framed, framing::encode(b"datagram reply"));
    }

    #[tokio::test]
    async fn silent_udp_falls_back_to_tcp_and_is_skipped_after_three_timeouts() {
        // A UDP socket that never answers, on the TCP KDC's port.
        let kdc = fake_kdc(framing::encode(b"reply")).await;
        let _silent = tokio::net::UdpSocket::bind(kdc).await.unwrap();
        let sockets = udp::Sockets::default();
        for _ in 0..udp::SILENT_TIMEOUTS {
            assert!(sockets.use_udp(kdc));
            let start = Instant::now();
            let reply = forward(&[server(kdc)], b"request", &limits(), Some(&sockets))
                .await
                .unwrap();
            assert_eq!(reply.protocol, "tcp");
            assert!(
                start.elapsed() >= limits().udp_timeout,
                "UDP was waited for"
            );
        }
        // After those, exchanges go to TCP at once.
        assert!(!sockets.use_udp(kdc));
    }

    #[tokio::test]
    async fn a_request_over_the_udp_preference_limit_goes_to_tcp_at_once() {
        // A UDP server that would answer, on the TCP KDC's port.
        let big = vec![7u8; udp::UDP_PREFERENCE_LIMIT + 1];
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let kdc = listener.local_addr().unwrap();
        let sock = tokio::net::UdpSocket::bind(kdc).await.unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let (_, from) = sock.recv_from(&mut buf).await.unwrap();
            sock.send_to(b"udp reply", from).await.unwrap();
        });
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut header = [0u8; 4];
            s.read_exact(&mut header).await.unwrap();
            let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
            s.read_exact(&mut body).await.unwrap();
            s.write_all(&framing::encode(b"tcp reply")).await.unwrap();
        });
        let reply = with_udp(&[server(kdc)], &big).await.unwrap();
        assert_eq!(reply.protocol, "tcp");
    }
}
