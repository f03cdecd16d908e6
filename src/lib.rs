//! krb5-wss: Kerberos over TLS WebSockets, as an MIT libkrb5 locate plugin.
//!
//! Installed as `<libdir>/krb5/plugins/libkrb5/krb5_wss.so`, the library is
//! loaded by every program that uses libkrb5. For a realm whose krb5.conf
//! names `wss://` URLs it answers libkrb5's KDC and kpasswd lookups with the
//! address of an in-process loopback relay that carries each exchange over a
//! verified TLS WebSocket to `krb5-wss-proxy` (see `docs/design.md` and
//! `docs/protocol.md`). For every other realm it steps aside at once.
//!
//! The safe core knows nothing of C: [`config`] (the realm's settings),
//! [`url`], [`tls`], [`transport`] (one wss connection), [`relay`] (the
//! loopback relay and connection pool) and [`locate`] (the decision for
//! one lookup). The private `ffi` module adapts them to libkrb5's ABI and is
//! the only place with `unsafe` code.

#![warn(missing_docs)]

pub mod config;
pub mod discovery;
pub mod dns;
pub mod env;
mod ffi;
pub mod forksafe;
pub mod hooks;
pub mod locate;
pub mod logging;
pub mod relay;
pub mod tls;
pub mod transport;
pub mod url;
pub mod webproxy;
