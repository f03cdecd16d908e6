//! One UDP exchange with a KDC: send the request (no length prefix, as
//! UDP carries Kerberos), receive one datagram from that address.
//!
//! The socket is connected, so only datagrams from the KDC's address are
//! received; the wait is bounded by `udp_timeout`, the reply by
//! `max_reply_size` (and by the datagram size).

use crate::limits::Limits;
use crate::upstream::AttemptError;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use tokio::net::UdpSocket;
use tokio::time::timeout;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Sends `request` to `address` over UDP and returns the reply datagram.
pub async fn exchange(
    address: SocketAddr,
    request: &[u8],
    limits: &Limits,
) -> Result<Vec<u8>, AttemptError> {
    let local: SocketAddr = if address.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await.map_err(AttemptError::Udp)?;
    socket.connect(address).await.map_err(AttemptError::Udp)?;
    // One byte more than accepted, to see a reply that is too large.
    let capacity = limits.max_reply_size.min(MAX_DATAGRAM) + 1;
    let mut buf = vec![0u8; capacity];
    let n = timeout(limits.udp_timeout, async {
        socket.send(request).await?;
        socket.recv(&mut buf).await
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
    Ok(buf)
}
