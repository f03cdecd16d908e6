//! The live configuration shared by every thread, swapped whole on
//! reload; and the bound on concurrent work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use crate::pool::Pool;
use crate::routes::Router;

/// The current [`Router`] (and its configuration), and the workers.
pub struct Shared {
    current: RwLock<Arc<Router>>,
    busy: AtomicUsize,
    /// The worker threads.
    pub pool: Pool,
}

/// A unit of the concurrency bound, released on drop.
pub struct Slot(Arc<Shared>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shared {
    /// Starts with `router`.
    pub fn new(router: Router) -> Shared {
        Shared {
            current: RwLock::new(Arc::new(router)),
            busy: AtomicUsize::new(0),
            pool: Pool::new(),
        }
    }

    /// The router in force.
    pub fn router(&self) -> Arc<Router> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `router` in force; returns the previous one.
    pub fn replace(&self, router: Router) -> Arc<Router> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *guard, Arc::new(router))
    }

    /// A slot, unless `max_concurrent` requests and connections are
    /// already being served.
    pub fn slot(self: &Arc<Self>, max: usize) -> Option<Slot> {
        let mut n = self.busy.load(Ordering::Acquire);
        loop {
            if n >= max {
                return None;
            }
            match self
                .busy
                .compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Slot(self.clone())),
                Err(now) => n = now,
            }
        }
    }
}
