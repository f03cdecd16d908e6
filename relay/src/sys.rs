//! The relay's only `unsafe` code: adopting the sockets systemd passed
//! (socket activation) and registering the SIGHUP handler.

#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Takes ownership of file descriptor `fd`, a socket systemd passed.
///
/// The caller must pass each descriptor once, and only descriptors in
/// systemd's range (`3 .. 3 + LISTEN_FDS`) when `LISTEN_PID` is this
/// process: then nothing else in the process owns them.
pub fn adopt_socket(fd: RawFd) -> socket2::Socket {
    // SAFETY: per the sd_listen_fds protocol, descriptors 3..3+LISTEN_FDS
    // are open sockets handed to this process and owned by nobody else in
    // it; the caller (sockets::activated) adopts each exactly once, after
    // checking LISTEN_PID.
    unsafe { socket2::Socket::from_raw_fd(fd) }
}

/// Sets `flag` whenever `signal` arrives.
pub fn flag_on_signal(signal: libc::c_int, flag: Arc<AtomicBool>) -> std::io::Result<()> {
    // SAFETY: the action only stores to an atomic, which is
    // async-signal-safe; it allocates nothing and takes no lock.
    unsafe { signal_hook_registry::register(signal, move || flag.store(true, Ordering::SeqCst)) }
        .map(|_| ())
}
