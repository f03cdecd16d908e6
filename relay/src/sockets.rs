//! The listening sockets: bound from the configuration (UDP and TCP on the
//! same port, port 0 picking one free for both), or adopted from systemd
//! socket activation (`LISTEN_FDS`).
//!
//! An adopted socket's protocol comes from `SO_TYPE`, its address from
//! `getsockname`, and its service from `LISTEN_FDNAMES` (a name containing
//! "kpasswd" or "kdc", as `FileDescriptorName=` in a .socket unit) or
//! else from its port (464 is kpasswd, anything else KDC).

use std::fmt;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use krb5_wss_proto::Service;
use socket2::{Domain, Protocol, Socket, Type};

/// A listening socket.
pub enum Listener {
    /// UDP.
    Udp(UdpSocket),
    /// TCP.
    Tcp(TcpListener),
}

/// A listening socket and what it serves.
pub struct Bound {
    /// KDC or kpasswd.
    pub service: Service,
    /// The socket.
    pub listener: Listener,
    /// Its address.
    pub addr: SocketAddr,
    /// True when systemd passed it.
    pub activated: bool,
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = match self.listener {
            Listener::Udp(_) => "udp",
            Listener::Tcp(_) => "tcp",
        };
        write!(f, "{}+{proto}://{}", self.service, self.addr)
    }
}

/// The kpasswd port.
const KPASSWD_PORT: u16 = 464;
/// Tries for a port free for both UDP and TCP when asked for port 0.
const PORT_TRIES: usize = 32;

fn socket(addr: SocketAddr, ty: Type, proto: Protocol) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), ty, Some(proto))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if ty == Type::STREAM {
        s.set_reuse_address(true)?;
    }
    Ok(s)
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = socket(addr, Type::STREAM, Protocol::TCP)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    Ok(s.into())
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket(addr, Type::DGRAM, Protocol::UDP)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// Binds UDP and TCP on `addr` (the same port for both).
pub fn bind_pair(addr: SocketAddr, service: Service) -> Result<[Bound; 2], String> {
    let mut last = String::new();
    let tries = if addr.port() == 0 { PORT_TRIES } else { 1 };
    for _ in 0..tries {
        let tcp = bind_tcp(addr).map_err(|e| format!("cannot listen on tcp {addr}: {e}"))?;
        let tcp_addr = tcp
            .local_addr()
            .map_err(|e| format!("tcp {addr}: getsockname: {e}"))?;
        match bind_udp(tcp_addr) {
            Ok(udp) => {
                return Ok([
                    Bound {
                        service,
                        listener: Listener::Udp(udp),
                        addr: tcp_addr,
                        activated: false,
                    },
                    Bound {
                        service,
                        listener: Listener::Tcp(tcp),
                        addr: tcp_addr,
                        activated: false,
                    },
                ])
            }
            Err(e) => last = format!("cannot listen on udp {tcp_addr}: {e}"),
        }
    }
    Err(last)
}

/// The sockets systemd passed, if `LISTEN_FDS` names this process; the
/// variables are removed from the environment.
pub fn activated() -> Result<Vec<Bound>, String> {
    let Some(count) = std::env::var("LISTEN_FDS").ok() else {
        return Ok(Vec::new());
    };
    let pid = std::env::var("LISTEN_PID").ok();
    let names = std::env::var("LISTEN_FDNAMES").ok();
    for v in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        std::env::remove_var(v);
    }
    if let Some(pid) = pid {
        if pid.trim() != std::process::id().to_string() {
            log::warn!("LISTEN_PID={pid} is not this process: ignoring LISTEN_FDS");
            return Ok(Vec::new());
        }
    }
    let count: i32 = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (0..=64).contains(n))
        .ok_or_else(|| format!("LISTEN_FDS={count}: not a count of sockets"))?;
    let names: Vec<&str> = names
        .as_deref()
        .map(|n| n.split(':').collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for i in 0..count {
        let fd = 3 + i;
        let socket = crate::sys::adopt_socket(fd);
        let name = names.get(usize::try_from(i).unwrap_or(usize::MAX)).copied();
        out.push(classify(socket, name).map_err(|e| format!("socket-activated fd {fd}: {e}"))?);
    }
    Ok(out)
}

fn classify(socket: Socket, name: Option<&str>) -> Result<Bound, String> {
    let ty = socket.r#type().map_err(|e| format!("SO_TYPE: {e}"))?;
    let addr = socket
        .local_addr()
        .map_err(|e| format!("getsockname: {e}"))?
        .as_socket()
        .ok_or("not an IP socket")?;
    let service = match name {
        Some(n) if n.contains("kpasswd") => Service::Kpasswd,
        Some(n) if n.contains("kdc") => Service::Kdc,
        _ if addr.port() == KPASSWD_PORT => Service::Kpasswd,
        _ => Service::Kdc,
    };
    let listener = if ty == Type::DGRAM {
        Listener::Udp(socket.into())
    } else if ty == Type::STREAM {
        if !socket.is_listener().unwrap_or(true) {
            socket
                .listen(128)
                .map_err(|e| format!("listen on a passed socket: {e}"))?;
        }
        Listener::Tcp(socket.into())
    } else {
        return Err("neither a datagram nor a stream socket".into());
    };
    Ok(Bound {
        service,
        listener,
        addr,
        activated: true,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn port_zero_gives_one_port_for_both() {
        let [a, b] = bind_pair("127.0.0.1:0".parse().unwrap(), Service::Kdc).unwrap();
        assert_eq!(a.addr, b.addr);
        assert_ne!(a.addr.port(), 0);
        assert_eq!(a.to_string(), format!("kdc+udp://{}", a.addr));
        assert_eq!(b.to_string(), format!("kdc+tcp://{}", b.addr));
    }

    #[test]
    fn passed_sockets_are_classified() {
        let tcp = socket("127.0.0.1:0".parse().unwrap(), Type::STREAM, Protocol::TCP).unwrap();
        tcp.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let b = classify(tcp, Some("kpasswd")).unwrap();
        assert!(matches!(b.listener, Listener::Tcp(_)));
        assert_eq!(b.service, Service::Kpasswd);
        let udp = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        udp.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let b = classify(udp, None).unwrap();
        assert!(matches!(b.listener, Listener::Udp(_)));
        assert_eq!(b.service, Service::Kdc);
    }
}
