//! Keeping the plugin's process-wide locks sound across `fork()`.
//!
//! A child process starts with one thread: if another thread held one of
//! our locks at the moment of the fork, the child would deadlock the first
//! time it asked for a ticket. `ffi` registers [`prepare`] and [`release`]
//! with `pthread_atfork` once per process, the first time libkrb5 or a
//! program calls into the core (through the panic boundary): the forking
//! thread takes every process-wide lock before the fork, in the one global
//! order, and lets them go after it, in parent and child alike. Per-relay
//! and per-upstream locks need no such care: a child never touches its
//! parent's relays or upstreams (see `relay` and `upstream`).
//!
//! The global order, which every code path that nests these locks keeps:
//! relay registry, upstream registry, TLS configuration cache, DNS cache,
//! URL health, then stderr (where the log goes; logging happens while the
//! registries are held).

use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Before fork: take every process-wide lock, in the global order.
pub fn prepare() {
    let guards: Vec<Box<dyn Any>> = vec![
        Box::new(crate::relay::lock_registry()),
        Box::new(crate::upstream::lock_registry()),
        Box::new(crate::tls::lock_cache()),
        Box::new(crate::discovery::lock_cache()),
        Box::new(crate::upstream::lock_health()),
        Box::new(std::io::stderr().lock()),
    ];
    let _ = HELD.try_with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            h.extend(guards);
        }
    });
}

/// After fork, in parent and child: release what [`prepare`] took (in the
/// reverse order).
pub fn release() {
    let _ = HELD.try_with(|h| {
        if let Ok(mut h) = h.try_borrow_mut() {
            while h.pop().is_some() {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_then_release_leaves_every_lock_free() {
        prepare();
        release();
        drop(crate::relay::lock_registry());
        drop(crate::upstream::lock_registry());
        drop(crate::tls::lock_cache());
        drop(crate::discovery::lock_cache());
        drop(crate::upstream::lock_health());
        drop(std::io::stderr().lock());
    }
}
