//! krb5-wss-proxy: accepts Kerberos exchanges carried over WebSockets
//! (`wss://host/kdc`, `wss://host/kpasswd`, see `docs/protocol.md`) and
//! forwards each request to the configured KDCs of its realm.
//!
//! Layout: [`cli`] and [`config`] build the validated configuration,
//! [`limits`] holds every bound, [`tls`] the rustls setup, [`server`] the
//! listeners and the handshake phase, [`http`] the request routing and the
//! WebSocket upgrade, [`session`] the record loop, [`exchange`] one
//! check-and-forward, [`upstream`] the TCP exchange with a KDC.

#![forbid(unsafe_code)]

mod addr;
mod cli;
mod config;
mod exchange;
mod http;
mod limits;
mod logfmt;
mod server;
mod session;
mod tls;
mod upstream;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable holding the log filter (env_logger syntax).
const LOG_ENV: &str = "KRB5_WSS_PROXY_LOG";

fn main() -> ExitCode {
    let args = cli::Args::parse();
    env_logger::Builder::from_env(env_logger::Env::new().filter_or(LOG_ENV, "info"))
        .format_timestamp_micros()
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Startup errors go to stderr whatever the log level.
            eprintln!("krb5-wss-proxy: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: cli::Args) -> Result<(), String> {
    let config = config::Config::from_args(args)?;
    let tls = match &config.transport {
        config::Transport::Tls { cert, key } => Some(tls::acceptor(cert, key)?),
        config::Transport::Plaintext => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("krb5-wss-proxy")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(serve(Arc::new(config), tls));
    // Sessions still open are dropped (their TCP connections closed).
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

async fn serve(
    config: Arc<config::Config>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first, so a signal right after the listening line is ours.
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;

    let listeners = server::bind(&config.listen).await?;
    let scheme = config.transport.scheme();
    let mut out = std::io::stdout().lock();
    for l in &listeners {
        let addr = l
            .local_addr()
            .map_err(|e| format!("cannot read a listener's address: {e}"))?;
        writeln!(out, "listening on {scheme}://{addr}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
        log::info!("listening on {scheme}://{addr}");
    }
    drop(out);
    for (realm, servers) in &config.realms {
        let list = |v: &[addr::ServerAddr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        log::info!(
            "realm {} kdc=[{}] kpasswd=[{}]",
            logfmt::Value(realm),
            list(&servers.kdc),
            list(&servers.kpasswd)
        );
    }
    log::debug!("limits: {:?}", config.limits);

    let server = server::Server::new(config, tls);
    let mut accepting = Vec::new();
    for l in listeners {
        accepting.push(tokio::spawn(server.clone().accept_loop(l)));
    }
    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    log::info!("{signal} received: shutting down");
    for task in accepting {
        task.abort();
    }
    Ok(())
}
