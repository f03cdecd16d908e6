//! TCP: RFC 4120 §7.2.2 records (4-byte length, then the message), each
//! answered on the same connection.
//!
//! Every connection is served by a worker thread within the concurrency bound (past
//! it, a new connection is closed at once). A record longer than
//! `max_request`, a connection that ends inside a record or takes longer
//! than `client_timeout` to send one are closed without a reply (a clean
//! close: FIN, never a hang). A record that does not parse gets a
//! KRB-ERROR naming the cause, then the close.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use krb5_wss_proto::{framing, Service};
use log::{debug, warn};

use crate::exchange::{self, Request, Transport};
use crate::state::{Shared, Slot};

/// Accepts on `listener` until the process exits.
pub fn serve(listener: TcpListener, service: Service, shared: Arc<Shared>) {
    loop {
        let (stream, client) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                debug!("tcp accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(10));
                continue;
            }
        };
        let router = shared.router();
        if !router.config.allows(client.ip()) {
            debug!("tcp: closed a connection from {client}, not an allowed client");
            continue;
        }
        let Some(slot) = shared.slot(router.config.max_concurrent) else {
            warn!(
                "tcp: busy ({} at once): closed a connection from {client}",
                router.config.max_concurrent
            );
            continue;
        };
        let shared2 = shared.clone();
        if !shared
            .pool
            .run(move || connection(stream, client, service, &shared2, slot))
        {
            warn!("tcp: cannot queue the connection from {client}");
        }
    }
}

/// Reads exactly `buf.len()` bytes by `deadline`; Ok(false) on EOF
/// before the first.
fn read_full(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else {
            break;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(rest) {
            Ok(0) if done == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn connection(
    mut stream: TcpStream,
    client: SocketAddr,
    service: Service,
    shared: &Arc<Shared>,
    _slot: Slot,
) {
    let _ = stream.set_nodelay(true);
    loop {
        let router = shared.router();
        let config = &router.config;
        let _ = stream.set_write_timeout(Some(config.client_timeout));
        let deadline = Instant::now() + config.client_timeout;
        let mut header = [0u8; framing::HEADER_LEN];
        match read_full(&mut stream, &mut header, deadline) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                debug!("tcp {client}: closed: reading a record header: {e}");
                break;
            }
        }
        let len = match framing::parse_header(header, config.max_request) {
            Ok(len) => len,
            Err(e) => {
                warn!(
                    "tcp {client}: closed: {e} (max_request {})",
                    config.max_request
                );
                break;
            }
        };
        let mut record = vec![0u8; len];
        if let Err(e) = read_full(&mut stream, &mut record, deadline).and_then(|full| {
            if full || len == 0 {
                Ok(())
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            }
        }) {
            warn!("tcp {client}: closed: a record of {len} bytes was cut short: {e}");
            break;
        }
        let req = Request {
            client,
            transport: Transport::Tcp,
            service,
            bytes: &record,
        };
        let (reply, keep_open) = match exchange::parse(service, &record) {
            Ok(parsed) => (exchange::serve(&router, &req, &parsed), true),
            Err(cause) => (exchange::malformed(&req, &cause), false),
        };
        let Some(reply) = reply else {
            break;
        };
        let framed = match framing::try_encode(&reply) {
            Ok(f) => f,
            Err(_) => break,
        };
        if let Err(e) = stream.write_all(&framed) {
            debug!("tcp {client}: writing the reply: {e}");
            break;
        }
        if !keep_open {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
