//! Environment variables, read the way a library inside setuid programs must.
//!
//! libkrb5 runs inside setuid programs (ksu). There, the environment belongs
//! to the unprivileged caller, so like MIT's `secure_getenv` we ignore it:
//! the FFI layer records whether the process runs with elevated privileges
//! (AT_SECURE) and every environment read goes through [`var`].

use std::sync::atomic::{AtomicBool, Ordering};

static SECURE: AtomicBool = AtomicBool::new(false);

/// Records whether the process is privileged (set by the FFI layer).
pub fn set_secure(secure: bool) {
    SECURE.store(secure, Ordering::Relaxed);
}

/// True when environment variables must be ignored.
pub fn is_secure() -> bool {
    SECURE.load(Ordering::Relaxed)
}

/// The variable's value, or None when unset, not UTF-8, or ignored because
/// the process is privileged.
pub fn var(name: &str) -> Option<String> {
    if is_secure() {
        return None;
    }
    std::env::var(name).ok()
}
