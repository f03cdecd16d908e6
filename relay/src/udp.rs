//! UDP: one datagram, one request, one reply to its source.
//!
//! A datagram from a source that is not served, or that does not parse
//! as the port's request, is dropped without an answer (no reflection of
//! garbage). A parsed request is served by a worker thread, within the
//! concurrency bound (past it the datagram is dropped and the client's
//! retry comes later); the reply (the proxy's, or the relay's small
//! KRB-ERROR) goes to the source only, and never exceeds
//! `udp_reply_limit`: a larger reply becomes KRB_ERR_RESPONSE_TOO_BIG so
//! the client retries over TCP.

use std::net::UdpSocket;
use std::sync::Arc;

use krb5_wss_proto::Service;
use log::{debug, warn};

use crate::exchange::{self, Request, Transport};
use crate::state::Shared;

/// Largest datagram read (a UDP payload cannot be larger).
const MAX_DATAGRAM: usize = 65_535;

/// Serves `socket` until the process exits.
pub fn serve(socket: UdpSocket, service: Service, shared: Arc<Shared>) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) => {
                debug!("udp recv: {e}");
                continue;
            }
        };
        let router = shared.router();
        if !router.config.allows(client.ip()) {
            debug!("udp: dropped a datagram from {client}, not an allowed client");
            continue;
        }
        let datagram = buf.get(..n).unwrap_or_default();
        let parsed = match exchange::parse(service, datagram) {
            Ok(p) => p,
            Err(e) => {
                debug!("udp: dropped a datagram from {client} ({n} bytes): {e}");
                continue;
            }
        };
        let Some(slot) = shared.slot(router.config.max_concurrent) else {
            warn!(
                "udp: busy ({} at once): dropped a request from {client}",
                router.config.max_concurrent
            );
            continue;
        };
        let request = datagram.to_vec();
        let socket = socket.clone();
        let queued = shared.pool.run(move || {
            let _slot = slot;
            let req = Request {
                client,
                transport: Transport::Udp,
                service,
                bytes: &request,
            };
            if let Some(reply) = exchange::serve(&router, &req, &parsed) {
                if let Err(e) = socket.send_to(&reply, client) {
                    debug!("udp: reply to {client}: {e}");
                }
            }
        });
        if !queued {
            warn!("udp: cannot queue a request from {client}");
        }
    }
}
