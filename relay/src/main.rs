//! krb5-wss-relay: Kerberos over UDP and TCP on local addresses, carried
//! over wss:// to krb5-wss-proxy, for every client that cannot load the
//! krb5-wss plugin (the JDK, gokrb5, impacket, Heimdal, static builds).
//!
//! The wss side is the plugin core's (`krb5-wss` as a library): URLs, DNS
//! discovery, TLS trust anchors, web proxies, the connection pool, URL
//! health, racing failover and deadlines. This crate adds the listeners
//! ([`udp`], [`tcp`], [`sockets`]), the routing by realm ([`routes`]),
//! the relay's own KRB-ERROR answers ([`reply`], [`exchange`]) and the
//! configuration ([`settings`], [`config`]).
//!
//! Once every socket is bound it prints one line to stdout:
//! `listening on kdc+udp://IP:PORT kdc+tcp://IP:PORT kpasswd+udp://... ...`.
//! SIGHUP re-reads the configuration (realms, anchors, web proxy,
//! timeouts, limits; not the listen addresses).

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

mod cidr;
mod config;
mod exchange;
mod pool;
mod reply;
mod routes;
mod settings;
mod sockets;
mod state;
mod sys;
mod tcp;
mod udp;

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use krb5_wss_proto::Service;
use log::{error, info, warn};

use crate::config::Config;
use crate::routes::Router;
use crate::settings::Settings;
use crate::sockets::{Bound, Listener};
use crate::state::Shared;

/// The environment variable holding the log filter (env_logger syntax).
const LOG_ENV: &str = "KRB5_WSS_RELAY_LOG";
/// How often the main thread looks for a SIGHUP.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

fn main() -> ExitCode {
    let cli = Settings::parse();
    // A panic's message goes to the log, where the guard in each worker
    // reports it (krb5_wss::panic).
    krb5_wss::panic::install_hook();
    env_logger::Builder::from_env(env_logger::Env::new().filter_or(LOG_ENV, "info"))
        .format(|buf, record| {
            writeln!(
                buf,
                "[{} {:<5} {}] {}",
                buf.timestamp_micros(),
                record.level(),
                record.target(),
                record.args()
            )
        })
        .write_style(env_logger::WriteStyle::Never)
        .init();
    let result = if cli.check_config {
        check_config(&cli)
    } else {
        run(&cli)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("krb5-wss-relay: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The effective, validated configuration and its upstreams.
fn load(cli: &Settings) -> Result<Router, String> {
    let config = Config::from_settings(&cli.effective()?)?;
    Router::new(config)
}

/// `--check-config`: validates and summarises; binds nothing.
fn check_config(cli: &Settings) -> Result<(), String> {
    let router = load(cli)?;
    let c = &router.config;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "configuration ok: {} KDC and {} kpasswd listen address(es), {} realm(s) ({}), {} found in DNS, anchors {}, web proxy {}, client certificates for [{}]",
        c.listen.len(),
        c.kpasswd_listen.len(),
        c.realms.len(),
        c.realms.keys().cloned().collect::<Vec<_>>().join(", "),
        c.discover.len(),
        if c.options.anchors.is_empty() {
            "system store".to_string()
        } else {
            c.options.anchors.join(", ")
        },
        c.options.web_proxy.as_deref().unwrap_or("from the environment"),
        c.options
            .client_identities
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    )
    .and_then(|()| out.flush())
    .map_err(|e| format!("cannot write to stdout: {e}"))
}

fn run(cli: &Settings) -> Result<(), String> {
    let router = load(cli)?;
    let mut bound: Vec<Bound> = sockets::activated()?;
    for b in &bound {
        router.config.check_listen(b.addr)?;
        if b.activated {
            info!("{b}: socket passed by systemd");
        }
    }
    for (addrs, service) in [
        (&router.config.listen, Service::Kdc),
        (&router.config.kpasswd_listen, Service::Kpasswd),
    ] {
        for a in addrs {
            // A socket systemd passed for this address is not bound again.
            if bound.iter().any(|b| b.activated && b.addr == *a) {
                info!("{service} {a}: using the socket(s) passed by systemd");
                continue;
            }
            bound.extend(sockets::bind_pair(*a, service)?);
        }
    }
    if bound.is_empty() {
        return Err(
            "nothing to listen on: give --listen/--kpasswd-listen, or start from a systemd socket"
                .into(),
        );
    }
    let hup = Arc::new(AtomicBool::new(false));
    sys::flag_on_signal(libc::SIGHUP, hup.clone())
        .map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
    for (realm, urls) in &router.config.realms {
        let list = |v: &[krb5_wss::url::WssUrl]| {
            v.iter()
                .map(|u| u.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        info!(
            "realm {realm}: kdc {} ; kpasswd {}",
            list(&urls.kdc),
            list(&urls.kpasswd)
        );
    }
    let shared = Arc::new(Shared::new(router));
    let names: Vec<String> = bound.iter().map(|b| b.to_string()).collect();
    for b in bound {
        let shared = shared.clone();
        let name = b.to_string();
        let service = b.service;
        let spawned = match b.listener {
            Listener::Udp(s) => std::thread::Builder::new()
                .name("relay-udp-recv".into())
                .spawn(move || udp::serve(s, service, shared)),
            Listener::Tcp(l) => std::thread::Builder::new()
                .name("relay-tcp-accept".into())
                .spawn(move || tcp::serve(l, service, shared)),
        };
        spawned.map_err(|e| format!("cannot start the thread for {name}: {e}"))?;
    }
    info!("listening on {}", names.join(" "));
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", names.join(" "))
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(out);
    loop {
        std::thread::sleep(SIGNAL_POLL);
        if hup.swap(false, Ordering::SeqCst) {
            reload(cli, &shared);
        }
    }
}

/// SIGHUP: re-reads the configuration; keeps the old one on error.
fn reload(cli: &Settings, shared: &Shared) {
    krb5_wss::tls::forget_cached();
    match load(cli) {
        Ok(router) => {
            let old = shared.router();
            if old.config.listen != router.config.listen
                || old.config.kpasswd_listen != router.config.kpasswd_listen
            {
                warn!("reload: listen addresses change only on restart; keeping the sockets");
            }
            let realms = router.config.realms.len() + router.config.discover.len();
            let old = shared.replace(router);
            let closed = old.close_pooled();
            info!(
                "reloaded: {realms} realm(s); {closed} pooled connection(s) of the old configuration closed"
            );
        }
        Err(e) => error!("reload failed, keeping the running configuration: {e}"),
    }
}
