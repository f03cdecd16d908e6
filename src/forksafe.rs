//! Keeping the plugin's process-wide locks sound across `fork()`.
//!
//! A child process starts with one thread: if another thread held one of
//! our locks at the moment of the fork, the child would deadlock the first
//! time it asked for a ticket. The FFI layer registers [`prepare`] and
//! [`release`] with `pthread_atfork`: the forking thread takes every
//! process-wide lock before the fork (in the one global order) and lets
//! them go after it, in parent and child alike. Per-relay locks need no
//! such care: a child never touches its parent's relays (see `relay`).

use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// Before fork: take every process-wide lock, in the global order
/// (registry, then the TLS cache, the DNS cache and the URL health map).
pub fn prepare() {
    let guards: Vec<Box<dyn Any>> = vec![
        Box::new(crate::relay::lock_registry()),
        Box::new(crate::tls::lock_cache()),
        Box::new(crate::discovery::lock_cache()),
        Box::new(crate::relay::lock_health()),
    ];
    HELD.with(|h| h.borrow_mut().extend(guards));
}

/// After fork, in parent and child: release what [`prepare`] took.
pub fn release() {
    HELD.with(|h| h.borrow_mut().clear());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_then_release_leaves_every_lock_free() {
        prepare();
        release();
        drop(crate::relay::lock_registry());
        drop(crate::tls::lock_cache());
        drop(crate::discovery::lock_cache());
        drop(crate::relay::lock_health());
    }
}
