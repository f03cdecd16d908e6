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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Config;
    use crate::settings::Settings;

    #[test]
    fn slots_bound_the_work_and_reload_swaps_the_router() {
        let router = |realm: &str| {
            Router::new(
                Config::from_settings(&Settings {
                    realm: vec![format!("{realm}=wss://proxy.invalid/kdc")],
                    ..Settings::default()
                })
                .unwrap(),
            )
            .unwrap()
        };
        let shared = Arc::new(Shared::new(router("A.TEST")));
        let a = shared.slot(2).unwrap();
        let b = shared.slot(2).unwrap();
        assert!(shared.slot(2).is_none());
        drop(a);
        let c = shared.slot(2).unwrap();
        drop((b, c));
        assert_eq!(shared.busy.load(Ordering::Acquire), 0);
        let old = shared.replace(router("B.TEST"));
        assert!(old.config.realms.contains_key("A.TEST"));
        assert!(shared.router().config.realms.contains_key("B.TEST"));
    }
}
