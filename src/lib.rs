//! krb5-wss: Kerberos over TLS WebSockets, as an MIT libkrb5 locate plugin:
//! the Rust core.
//!
//! Installed as `<libdir>/krb5/plugins/libkrb5/krb5-wss/krb5_wss_core.so`
//! and loaded by the small front module (`krb5_wss.so`, the file libkrb5
//! loads into every program) only for realms served over wss. For such a
//! realm it answers libkrb5's KDC and kpasswd lookups with the address of an
//! in-process loopback relay that carries each exchange over a verified TLS
//! WebSocket to `krb5-wss-proxy` (see `docs/design.md` and
//! `docs/protocol.md`).
//!
//! The safe core knows nothing of C: [`config`] (the realm's settings),
//! [`url`], [`tls`], [`deadline`] and [`transport`] (one wss connection),
//! [`upstream`] (pool, URL health, racing failover), [`relay`] (the loopback
//! listener and its threads), [`hooks`] and [`locate`] (the decisions). The
//! private `ffi` module, the system-interface module, adapts them to
//! libkrb5's ABI and the C library and is the only place with `unsafe` code.

#![warn(missing_docs)]
// The plugin runs inside every libkrb5 program: no panicking paths outside
// tests, and `unsafe` only in the system-interface module (`ffi`).
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::string_slice,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod config;
pub mod deadline;
pub mod discovery;
pub mod dns;
pub mod env;
#[allow(unsafe_code)]
mod ffi;
pub mod forksafe;
pub mod hooks;
pub mod locate;
pub mod logging;
pub mod panic;
pub mod relay;
pub mod tls;
pub mod transport;
pub mod upstream;
pub mod url;
pub mod webproxy;

/// DNS queries through the C library's resolver, for DNS discovery
/// outside libkrb5 (the `krb5-wss-relay` binary).
pub use ffi::SystemResolver;
