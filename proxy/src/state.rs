//! The proxy's shared state: the active configuration (replaced whole by a
//! reload), the admission counters, the metrics and the shutdown signal.
//!
//! A connection takes a snapshot of the active configuration when it is
//! accepted and keeps it to its end, so a reload never changes the rules
//! under a connection in progress.

use crate::admission::Admission;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::throttle;
use std::sync::{Arc, RwLock};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// A configuration with its TLS acceptor (`None` for plaintext).
#[derive(Clone)]
pub struct Active {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The TLS acceptor built from the configuration's certificate and key.
    pub tls: Option<TlsAcceptor>,
}

/// Everything the connections share.
pub struct Shared {
    active: RwLock<Arc<Active>>,
    /// Counted resources.
    pub admission: Admission,
    /// Counters for the metrics endpoint.
    pub metrics: Arc<Metrics>,
    /// The DNS discovery cache (emptied by a reload).
    pub discovery: Arc<crate::discovery::Discovery>,
    /// The password-guessing throttle's counters (kept across reloads).
    pub throttle: throttle::Table,
    /// The throttle's Redis store, when configured.
    pub store: crate::throttle_store::Store,
    /// Idle UDP sockets to the KDCs, and the KDCs asked over TCP only.
    pub udp: crate::udp::Sockets,
    shutdown: watch::Sender<bool>,
}

impl Shared {
    /// Shared state starting with `active`.
    pub fn new(active: Active) -> Arc<Shared> {
        let (shutdown, _) = watch::channel(false);
        Arc::new(Shared {
            active: RwLock::new(Arc::new(active)),
            admission: Admission::new(),
            metrics: Arc::new(Metrics::new()),
            discovery: Arc::default(),
            throttle: throttle::Table::new(),
            store: crate::throttle_store::Store::new(),
            udp: crate::udp::Sockets::default(),
            shutdown,
        })
    }

    /// Shared state for `config` without TLS (tests).
    #[cfg(test)]
    pub fn for_config(config: Config) -> Arc<Shared> {
        Shared::new(Active {
            config: Arc::new(config),
            tls: None,
        })
    }

    /// The active configuration now.
    pub fn active(&self) -> Arc<Active> {
        self.active
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Makes `active` the configuration of new connections.
    pub fn replace(&self, active: Active) {
        *self.active.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(active);
        self.discovery.reset();
    }

    /// Starts the shutdown: every subscriber sees it.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// True once the shutdown began.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// A receiver that sees the shutdown begin.
    pub fn shutdown_signal(&self) -> ShutdownSignal {
        ShutdownSignal(self.shutdown.subscribe())
    }

    /// The metrics text.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .render(&self.admission, &self.throttle, self.shutting_down())
    }
}

/// Waits for the shutdown to begin.
#[derive(Clone)]
pub struct ShutdownSignal(watch::Receiver<bool>);

impl ShutdownSignal {
    /// Resolves once the shutdown began (at once if it already has).
    pub async fn wait(&mut self) {
        // An error means the sender is gone, i.e. the proxy is ending too.
        let _ = self.0.wait_for(|down| *down).await;
    }

    /// True once the shutdown began.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}
