//! The single rule deciding whether a realm belongs to krb5-wss.
//!
//! Both halves of the plugin use it: the front module (`front/`, loaded
//! into every libkrb5 process) to decide whether to load the core at all,
//! and the core (`src/config.rs`) to decide what to answer. Because the
//! rule lives only here, they cannot disagree.
//!
//! The crate is `#![no_std]`, allocation-free and has no dependencies: it
//! sees krb5.conf only through [`ProfileView`], which the front implements
//! over libkrb5's profile calls and the core over its own `Profile` trait.
//!
//! The rule ([`ownership`]):
//!
//! - [`Ownership::Ours`] when a `kdc`, `primary_kdc`, `master_kdc` or
//!   `kpasswd_server` line of `[realms] REALM` holds a WebSocket URL
//!   ([`is_websocket_url`]);
//! - else [`Ownership::Dns`] when the realm has no `kdc` lines, wss DNS
//!   discovery is switched on (`wss_dns_discovery`, see [`dns_discovery_enabled`])
//!   and libkrb5 itself would consult DNS (`dns_lookup_kdc`, else
//!   `dns_fallback`, default on);
//! - else [`Ownership::NotOurs`].

#![no_std]
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

mod bool_word;
mod rule;
mod url;

pub use bool_word::parse_bool;
pub use rule::{
    dns_discovery_enabled, dns_lookup_applies, ownership, realm_names_websocket_url, Ownership,
    ProfileView, DNS_DISCOVERY_KEY, URL_KEYS,
};
pub use url::{is_blank, is_websocket_url};
