//! The three kinds of client: a persistent WebSocket (`wss`), one TCP
//! connection per exchange (`tcp`), and HTTPS MS-KKDCP (`kkdcp`).

use crate::krb;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Largest reply accepted.
const MAX_REPLY: usize = 1024 * 1024;

/// How the load generator talks to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Persistent WebSocket (TLS unless `ws://`).
    Wss,
    /// One TCP connection per exchange, RFC 4120 framing.
    Tcp,
    /// HTTPS POSTs of KDC-PROXY-MESSAGE.
    Kkdcp,
}

impl Mode {
    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Wss => "wss",
            Mode::Tcp => "tcp",
            Mode::Kkdcp => "kkdcp",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "wss" => Ok(Mode::Wss),
            "tcp" => Ok(Mode::Tcp),
            "kkdcp" => Ok(Mode::Kkdcp),
            _ => Err(format!("unknown --mode {s:?} (wss, tcp, kkdcp)")),
        }
    }
}

/// Where to send, and how.
pub struct Target {
    mode: Mode,
    host: String,
    port: u16,
    path: String,
    url: String,
    tls: Option<Arc<ClientConfig>>,
    addr: Option<SocketAddr>,
}

fn tls_config(ca: Option<&String>) -> Result<Arc<ClientConfig>, String> {
    let ca = ca.ok_or("--ca is required for TLS targets")?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{ca}: {e}"))? {
        let cert = cert.map_err(|e| format!("{ca}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{ca}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Target {
    /// `wss://host:port/path` (or `ws://`), `https://host:port/path`, or
    /// `IP:PORT` for `tcp`.
    pub fn parse(mode: Mode, target: &str, ca: Option<&String>) -> Result<Target, String> {
        if mode == Mode::Tcp {
            let addr: SocketAddr = target
                .parse()
                .map_err(|_| format!("--target for tcp must be IP:PORT, not {target:?}"))?;
            return Ok(Target {
                mode,
                host: addr.ip().to_string(),
                port: addr.port(),
                path: String::new(),
                url: target.to_string(),
                tls: None,
                addr: Some(addr),
            });
        }
        let (scheme, rest) = target
            .split_once("://")
            .ok_or_else(|| format!("--target {target:?} is not a URL"))?;
        let tls = match (mode, scheme) {
            (Mode::Wss, "wss") | (Mode::Kkdcp, "https") => true,
            (Mode::Wss, "ws") | (Mode::Kkdcp, "http") => false,
            _ => return Err(format!("--target {target:?} does not suit --mode {mode:?}")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| format!("--target {target:?} needs an explicit port"))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("--target {target:?}: bad port"))?;
        Ok(Target {
            mode,
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            path: path.to_string(),
            url: target.to_string(),
            tls: if tls { Some(tls_config(ca)?) } else { None },
            addr: None,
        })
    }
}

/// Anything the clients read and write.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A TCP connection to `t`, from `source` (port chosen by the kernel) when
/// given: spreading connections over many loopback source addresses keeps
/// each address's ephemeral ports far from exhaustion.
async fn tcp_connect(t: &Target, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return match t.addr {
            Some(a) => TcpStream::connect(a).await,
            None => TcpStream::connect((t.host.as_str(), t.port)).await,
        };
    };
    let dest = match t.addr {
        Some(a) => a,
        None => tokio::net::lookup_host((t.host.as_str(), t.port))
            .await?
            .find(|a| a.is_ipv4() == source.is_ipv4())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{} has no address of the source's family", t.host),
                )
            })?,
    };
    let socket = if source.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(dest).await
}

async fn open_stream(t: &Target, source: Option<IpAddr>) -> Result<Box<dyn Io>, String> {
    let tcp = tcp_connect(t, source)
        .await
        .map_err(|e| format!("tcp connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    match &t.tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let name = ServerName::try_from(t.host.clone()).map_err(|e| e.to_string())?;
            let tls = TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            Ok(Box::new(tls))
        }
    }
}

/// One exchange's result.
pub struct Outcome {
    /// The reply's message type ("AS-REP", "KRB-ERROR", ...).
    pub kind: &'static str,
    /// The server closed the connection after the reply.
    pub closed: bool,
    /// Reconnections made during the exchange (a stale connection).
    pub reconnects: u64,
}

fn kind_of(message: &[u8]) -> &'static str {
    match message.first() {
        Some(0x6b) => "AS-REP",
        Some(0x6d) => "TGS-REP",
        Some(0x7e) => "KRB-ERROR",
        _ => "other",
    }
}

/// A connected client (for `tcp`, nothing is held between exchanges).
pub enum Client {
    /// An open WebSocket.
    Ws(Box<WebSocketStream<Box<dyn Io>>>),
    /// Direct TCP: connects per exchange.
    Tcp,
    /// An HTTP connection, if the server kept the last one alive.
    Http(Option<BufReader<Box<dyn Io>>>),
}

/// An exchange that failed; `stale` when nothing of a reply arrived on a
/// reused connection (safe to resend once on a new one).
struct Failure {
    stale: bool,
    message: String,
}

fn fail(stale: bool, message: impl Into<String>) -> Failure {
    Failure {
        stale,
        message: message.into(),
    }
}

impl Client {
    /// Connects as the mode requires.
    pub async fn connect(t: &Target) -> Result<Client, String> {
        Client::connect_from(t, None).await
    }

    /// Connects as the mode requires, the WebSocket's TCP connection from
    /// `source` when given.
    pub async fn connect_from(t: &Target, source: Option<IpAddr>) -> Result<Client, String> {
        match t.mode {
            Mode::Tcp => Ok(Client::Tcp),
            // Connected at the first exchange, inside its time, as MIT's
            // client does (and gunicorn's sync workers would block on an
            // idle connection opened ahead of its request).
            Mode::Kkdcp => Ok(Client::Http(None)),
            Mode::Wss => {
                let io = open_stream(t, source).await?;
                let mut request = t
                    .url
                    .as_str()
                    .into_client_request()
                    .map_err(|e| e.to_string())?;
                request
                    .headers_mut()
                    .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("binary"));
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_REPLY + 4))
                    .max_frame_size(Some(MAX_REPLY + 4))
                    .read_buffer_size(4 * 1024)
                    .write_buffer_size(0);
                let (ws, _) =
                    tokio_tungstenite::client_async_with_config(request, io, Some(config))
                        .await
                        .map_err(|e| format!("websocket handshake: {e}"))?;
                Ok(Client::Ws(Box::new(ws)))
            }
        }
    }

    /// Closes politely (WebSocket close frame).
    pub async fn close(self) {
        if let Client::Ws(mut ws) = self {
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(200), ws.close(None)).await;
        }
    }

    /// Sends one framed request and reads its reply.
    pub async fn exchange(
        &mut self,
        framed: &[u8],
        t: &Target,
        realm: &str,
    ) -> Result<Outcome, String> {
        let body = if t.mode == Mode::Kkdcp {
            Some(krb::kdc_proxy_message(framed, realm))
        } else {
            None
        };
        let mut reconnects = 0;
        loop {
            let result = match self {
                Client::Tcp => tcp_exchange(t, framed).await,
                Client::Ws(ws) => ws_exchange(ws, framed).await,
                Client::Http(conn) => {
                    http_exchange(conn, t, body.as_deref().unwrap_or_default()).await
                }
            };
            match result {
                Ok(mut o) => {
                    o.reconnects = reconnects;
                    return Ok(o);
                }
                Err(f) if f.stale && reconnects == 0 => {
                    reconnects += 1;
                    *self = Client::connect(t).await?;
                }
                Err(f) => return Err(f.message),
            }
        }
    }
}

async fn tcp_exchange(t: &Target, framed: &[u8]) -> Result<Outcome, Failure> {
    let addr = t.addr.ok_or_else(|| fail(false, "no address"))?;
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| fail(false, format!("tcp connect: {e}")))?;
    let _ = s.set_nodelay(true);
    s.write_all(framed)
        .await
        .map_err(|e| fail(false, format!("send: {e}")))?;
    let mut header = [0u8; 4];
    s.read_exact(&mut header)
        .await
        .map_err(|e| fail(false, format!("reply header: {e}")))?;
    let len = u32::from_be_bytes(header) as usize;
    if len == 0 || len > MAX_REPLY {
        return Err(fail(false, format!("bad reply length {len}")));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)
        .await
        .map_err(|e| fail(false, format!("reply: {e}")))?;
    Ok(Outcome {
        kind: kind_of(&body),
        closed: true,
        reconnects: 0,
    })
}

async fn ws_exchange(
    ws: &mut WebSocketStream<Box<dyn Io>>,
    framed: &[u8],
) -> Result<Outcome, Failure> {
    ws.send(Message::Binary(Bytes::copy_from_slice(framed)))
        .await
        .map_err(|e| fail(true, format!("send: {e}")))?;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(data))) => {
                buf.extend_from_slice(&data);
                if buf.len() >= 4 {
                    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    if len == 0 || len > MAX_REPLY {
                        return Err(fail(false, format!("bad reply length {len}")));
                    }
                    if buf.len() >= 4 + len {
                        return Ok(Outcome {
                            kind: kind_of(&buf[4..]),
                            closed: false,
                            reconnects: 0,
                        });
                    }
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let why = frame
                    .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                    .unwrap_or_default();
                return Err(fail(buf.is_empty(), format!("closed by server: {why}")));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(fail(buf.is_empty(), format!("read: {e}"))),
            None => return Err(fail(buf.is_empty(), "connection closed")),
        }
    }
}

async fn http_exchange(
    conn: &mut Option<BufReader<Box<dyn Io>>>,
    t: &Target,
    body: &[u8],
) -> Result<Outcome, Failure> {
    let reused = conn.is_some();
    let mut io = match conn.take() {
        Some(io) => io,
        None => BufReader::new(open_stream(t, None).await.map_err(|e| fail(false, e))?),
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/kerberos\r\n\
         Content-Length: {}\r\nAccept: */*\r\n\r\n",
        t.path,
        t.host,
        t.port,
        body.len()
    );
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    io.get_mut()
        .write_all(&request)
        .await
        .map_err(|e| fail(reused, format!("send: {e}")))?;
    io.get_mut()
        .flush()
        .await
        .map_err(|e| fail(reused, format!("send: {e}")))?;
    let mut line = String::new();
    let n = io
        .read_line(&mut line)
        .await
        .map_err(|e| fail(reused, format!("status line: {e}")))?;
    if n == 0 {
        return Err(fail(reused, "connection closed before the status line"));
    }
    let status = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let http10 = line.starts_with("HTTP/1.0");
    let mut length: Option<usize> = None;
    let mut close = http10;
    loop {
        line.clear();
        let n = io
            .read_line(&mut line)
            .await
            .map_err(|e| fail(false, format!("headers: {e}")))?;
        if n == 0 {
            return Err(fail(false, "connection closed in the headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse().ok();
            } else if k == "connection" {
                close = v.eq_ignore_ascii_case("close");
            }
        }
    }
    let length = length.ok_or_else(|| fail(false, "reply without Content-Length"))?;
    if length > MAX_REPLY {
        return Err(fail(false, "reply too large"));
    }
    let mut reply = vec![0u8; length];
    io.read_exact(&mut reply)
        .await
        .map_err(|e| fail(false, format!("body: {e}")))?;
    if status != "200" {
        return Err(fail(false, format!("HTTP status {status}")));
    }
    let kind = kkdcp_reply_kind(&reply).ok_or_else(|| fail(false, "malformed KKDCP reply"))?;
    if !close {
        *conn = Some(io);
    }
    Ok(Outcome {
        kind,
        closed: close,
        reconnects: 0,
    })
}

/// Reads a DER header: (content offset, content length).
fn der_header(b: &[u8]) -> Option<(usize, usize)> {
    let first = *b.get(1)?;
    if first < 0x80 {
        return Some((2, first as usize));
    }
    let n = (first & 0x7f) as usize;
    if n == 0 || n > 4 {
        return None;
    }
    let mut len = 0usize;
    for i in 0..n {
        len = (len << 8) | *b.get(2 + i)? as usize;
    }
    Some((2 + n, len))
}

/// The reply kind inside KDC-PROXY-MESSAGE { [0] OCTET STRING (framed) }.
fn kkdcp_reply_kind(reply: &[u8]) -> Option<&'static str> {
    let (off, _) = der_header(reply)?; // SEQUENCE
    let b = reply.get(off..)?;
    let (off2, _) = der_header(b)?; // [0]
    let b = b.get(off2..)?;
    let (off3, _) = der_header(b)?; // OCTET STRING
    let framed = b.get(off3..)?;
    Some(kind_of(framed.get(4..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kkdcp_round_trip() {
        let framed = krb::frame(&krb::krb_error("R"));
        let msg = krb::kdc_proxy_message(&framed, "R");
        assert_eq!(kkdcp_reply_kind(&msg), Some("KRB-ERROR"));
    }

    #[test]
    fn targets_parse() {
        let t = Target::parse(Mode::Tcp, "127.0.0.1:88", None).unwrap();
        assert_eq!(t.port, 88);
        let t = Target::parse(Mode::Wss, "ws://localhost:8080/kdc", None).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 8080, "/kdc")
        );
        assert!(Target::parse(Mode::Wss, "https://localhost:1/x", None).is_err());
        assert!(
            Target::parse(Mode::Wss, "wss://localhost:1/x", None).is_err(),
            "needs --ca"
        );
    }
}
