//! krb5_wss.so, the front module of the krb5-wss plugin.
//!
//! MIT libkrb5 loads every file of its locate-plugin directory into every
//! process that uses it (kinit, sshd, curl, ...). This is the file it
//! loads: `#![no_std]`, no allocator, linked against libkrb5 and libc only.
//! For each lookup it asks the owner crate whether the realm is krb5-wss's
//! (a few in-memory profile queries). When it is not, it answers "not mine"
//! and nothing else happens; when it is, it loads the Rust core,
//! `krb5-wss/krb5_wss_core.so` next to itself (by absolute path, once per
//! process), and hands it the call. When the core cannot be used, the
//! lookup fails with an error naming the core and the cause: a wss realm
//! never falls back to libkrb5's own (direct) lookups.
//!
//! It also exports the functions of `include/krb5_wss.h`, forwarding them
//! to the core, so programs link against the one file libkrb5 loads.
//!
//! Modules: `sys` holds every C declaration, every export and every
//! `unsafe` block; `loader` finds and loads the core (after `elf` checked
//! that the file is not truncated); `locate` answers lookups; `msg`
//! formats messages into fixed buffers.
//!
//! No panics: in release builds the panic handler calls a symbol that
//! exists nowhere and the module links with `--no-undefined` (build.rs), so
//! a panic path the optimiser cannot remove fails the build.

#![no_std]
#![deny(unsafe_code)]

mod elf;
mod loader;
mod locate;
mod msg;
mod sys;

/// Release builds: referencing an undefined symbol makes any surviving
/// panic path a link error.
#[cfg(not(debug_assertions))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    sys::panic_path_survived_optimisation()
}

/// Debug builds (unoptimised: panic paths remain): abort.
#[cfg(debug_assertions)]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    sys::abort()
}
