//! krb5-wss-proxy: accepts Kerberos exchanges carried over WebSockets
//! (`wss://host/kdc`, `wss://host/kpasswd`, see `docs/protocol.md`) and
//! over MS-KKDCP (`POST /KdcProxy`), and forwards each request to the
//! configured KDCs of its realm.
//!
//! Layout: [`cli`] and [`config`] build the validated configuration,
//! [`reload`] turns it into the active one (at startup and on SIGHUP),
//! [`limits`] holds every bound, [`admission`] and [`ratelimit`] enforce the
//! counted ones, [`client`] says who a client is (`X-Forwarded-For`),
//! [`tls`] the rustls setup, [`server`] the listeners and the handshake
//! phase, [`http`] the routing (with [`origin`] checks), [`session`] the
//! WebSocket record loop, [`kkdcp`] the MS-KKDCP endpoint, [`exchange`] one
//! check-and-forward, [`upstream`] and [`udp`] the exchange with a KDC,
//! [`metrics`] and [`ops`] the metrics and health listener, [`state`] what
//! all connections share.

#![forbid(unsafe_code)]

mod addr;
mod admission;
mod audit;
mod cli;
mod client;
mod clientcert;
mod config;
mod discovery;
mod exchange;
mod fdlimit;
mod glob;
mod http;
mod kdcproxy_conf;
mod kkdcp;
mod limits;
mod logfmt;
mod metrics;
mod ops;
mod origin;
mod policy;
mod ratelimit;
mod reload;
mod resp;
mod server;
mod server_settings;
mod session;
mod settings;
mod state;
mod throttle;
mod throttle_store;
mod tls;
mod udp;
mod upstream;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tokio::time::Instant;

/// The environment variable holding the log filter (env_logger syntax).
const LOG_ENV: &str = "KRB5_WSS_PROXY_LOG";

/// How often the drain after SIGTERM looks at the open connections.
const DRAIN_POLL: Duration = Duration::from_millis(20);

fn main() -> ExitCode {
    let args = cli::Args::parse();
    env_logger::Builder::from_env(env_logger::Env::new().filter_or(LOG_ENV, "info"))
        // One plain line per record, the layout of env_logger's default
        // (`[time LEVEL target] message`) without its multi-line indenting
        // writer, which cost ~7% of the proxy's instructions per exchange.
        .format(|buf, record| {
            use std::io::Write;
            if logfmt::json() {
                let line = logfmt::json_line(
                    &buf.timestamp_micros().to_string(),
                    record.level().as_str(),
                    record.target(),
                    &record.args().to_string(),
                );
                return writeln!(buf, "{line}");
            }
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
    if let Some(cli::Command::ConvertKdcproxy { file, krb5_conf }) = &args.command {
        return convert_kdcproxy(file, krb5_conf);
    }
    let result = if args.check_config {
        check_config(&args)
    } else {
        run(args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Startup errors go to stderr whatever the log level.
            eprintln!("krb5-wss-proxy: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `convert-kdcproxy FILE`: the TOML on stdout, the notes on stderr.
fn convert_kdcproxy(file: &std::path::Path, krb5_conf: &[std::path::PathBuf]) -> ExitCode {
    let files = if krb5_conf.is_empty() {
        kdcproxy_conf::default_krb5_conf()
    } else {
        krb5_conf.to_vec()
    };
    match kdcproxy_conf::convert(file, &files) {
        Ok(c) => {
            for n in &c.notes {
                eprintln!("krb5-wss-proxy: convert-kdcproxy: note: {n}");
            }
            let mut out = std::io::stdout().lock();
            match out.write_all(c.toml.as_bytes()).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("krb5-wss-proxy: error: cannot write to stdout: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("krb5-wss-proxy: error: convert-kdcproxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config`: builds everything but binds nothing.
fn check_config(args: &cli::Args) -> Result<(), String> {
    fdlimit::raise()?;
    let active = reload::build(args)?;
    let c = &active.config;
    let mut out = std::io::stdout().lock();
    let kkdcp = c.kkdcp_path.as_deref().unwrap_or("off");
    let policies = c.realms.values().filter(|r| !r.policy.is_open()).count();
    writeln!(
        out,
        "configuration ok: {} listen address(es) ({}://), {} realm(s), MS-KKDCP {kkdcp}, \
         metrics {}, log_format {}, audit_principals {}, {policies} realm(s) with a policy, {}, \
         {}",
        c.listen.len(),
        c.transport.scheme(),
        c.realms.len(),
        c.metrics_listen
            .map(|a| a.to_string())
            .unwrap_or_else(|| "off".into()),
        c.log_format.name(),
        c.audit_principals,
        c.throttle.summary(),
        client_certificates(c)
    )
    .and_then(|()| out.flush())
    .map_err(|e| format!("cannot write to stdout: {e}"))
}

fn run(args: cli::Args) -> Result<(), String> {
    fdlimit::raise()?;
    let active = reload::build(&args)?;
    logfmt::set_format(active.config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("krb5-wss-proxy")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = runtime.block_on(serve(args, active));
    // Whatever is left after the drain is dropped (TCP connections closed).
    runtime.shutdown_timeout(Duration::from_secs(1));
    result
}

/// Writes one line to stdout and flushes it.
fn announce(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))
}

async fn serve(args: cli::Args, active: state::Active) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first, so a signal right after the listening line is ours.
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("SIGHUP handler: {e}"))?;

    let config = active.config.clone();
    let listeners = server::bind(&config.listen).await?;
    let metrics_listener = match config.metrics_listen {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen on {a} (metrics): {e}"))?,
        ),
        None => None,
    };
    let scheme = config.transport.scheme();
    for l in &listeners {
        let addr = l
            .local_addr()
            .map_err(|e| format!("cannot read a listener's address: {e}"))?;
        announce(&format!("listening on {scheme}://{addr}"))?;
        log::info!("listening on {scheme}://{addr}");
    }
    if let Some(l) = &metrics_listener {
        let addr = l
            .local_addr()
            .map_err(|e| format!("cannot read the metrics listener's address: {e}"))?;
        announce(&format!("metrics on http://{addr}"))?;
        log::info!("metrics and health on http://{addr}/metrics, /healthz");
    }
    log_config(&config);

    let shared = state::Shared::new(active);
    let mut accepting = Vec::new();
    for l in listeners {
        accepting.push(tokio::spawn(server::accept_loop(shared.clone(), l)));
    }
    let ops = metrics_listener.map(|l| tokio::spawn(ops::serve(shared.clone(), l)));

    let signal = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => match reload::reload(&args, &shared) {
                Ok(notes) => {
                    shared.metrics.reload(true);
                    log::info!("SIGHUP: configuration and certificate reloaded");
                    for n in notes {
                        log::warn!("SIGHUP: {n}");
                    }
                    log_config(&shared.active().config);
                }
                Err(e) => {
                    shared.metrics.reload(false);
                    // One line: the error (a TOML one spans lines) is quoted.
                    log::error!(
                        "SIGHUP: reload failed, keeping the running configuration: error={}",
                        logfmt::Value(&e)
                    );
                }
            },
        }
    };

    // Drain: stop accepting, let sessions close (1001) and exchanges in
    // progress finish, within shutdown_timeout.
    let bound = shared.active().config.limits.shutdown_timeout;
    log::info!("{signal} received: shutting down (draining for at most {bound:?})");
    shared.begin_shutdown();
    for task in accepting {
        let _ = task.await;
    }
    let deadline = Instant::now() + bound;
    let open = || shared.admission.open() + shared.admission.overflowing();
    while open() > 0 && Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
    }
    match open() {
        0 => log::info!("drained: no connection open"),
        n => log::warn!("shutdown_timeout reached: closing {n} connection(s) still open"),
    }
    if let Some(task) = ops {
        task.abort();
    }
    Ok(())
}

/// What the listener asks of client certificates, for the summary and
/// the startup log.
fn client_certificates(c: &config::Config) -> String {
    match &c.client_auth {
        None => "client certificates off".into(),
        Some(auth) => format!(
            "client certificates {} (client_ca {}), {} realm(s) with client_subjects",
            auth.mode.name(),
            auth.ca.display(),
            c.realms
                .values()
                .filter(|r| !r.client_subjects.is_empty())
                .count()
        ),
    }
}

/// Logs the realms and the limits in force.
fn log_config(config: &config::Config) {
    for (realm, servers) in &config.realms {
        let list = |v: &[addr::ServerAddr]| {
            v.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let shown = |dns: bool, v: &[addr::ServerAddr]| {
            if dns {
                "dns".to_string()
            } else {
                format!("[{}]", list(v))
            }
        };
        log::info!(
            "realm {} kdc={} kpasswd={} udp={}",
            logfmt::Value(realm),
            shown(servers.dns.kdc, &servers.kdc),
            shown(servers.dns.kpasswd, &servers.kpasswd),
            servers.udp
        );
        let p = &servers.policy;
        if !p.is_open() {
            log::info!(
                "realm {} policy allow_clients={:?} deny_clients={:?} allow_services={:?} \
                 deny_services={:?}",
                logfmt::Value(realm),
                p.allow_clients,
                p.deny_clients,
                p.allow_services,
                p.deny_services
            );
        }
        if !servers.client_subjects.is_empty() {
            log::info!(
                "realm {} client_subjects={:?}",
                logfmt::Value(realm),
                servers.client_subjects
            );
        }
    }
    log::info!("{}", client_certificates(config));
    log::debug!("limits: {:?}", config.limits);
    log::info!("{}", config.throttle.summary());
    for warning in risky_settings(config) {
        log::warn!("{warning}");
    }
}

/// Settings that are allowed but expose more than an operator may mean to.
fn risky_settings(config: &config::Config) -> Vec<String> {
    let mut out = Vec::new();
    if config.transport == config::Transport::Plaintext {
        for a in config.listen.iter().filter(|a| !a.ip().is_loopback()) {
            out.push(format!(
                "plaintext (ws://, no TLS) on {a}, which is not a loopback address: \
                 Kerberos traffic and client addresses cross the network unencrypted \
                 unless a TLS-terminating server on this host is the only one that can reach it"
            ));
        }
    }
    for net in config.trusted_proxies.iter().filter(|n| n.is_everything()) {
        out.push(format!(
            "trusted_proxies includes {net}: any client can set X-Forwarded-For and choose \
             the address the proxy logs and limits by"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risky_settings_are_named() {
        let args = cli::Args::try_parse_from([
            "krb5-wss-proxy",
            "--listen",
            "0.0.0.0:8080",
            "--listen",
            "127.0.0.1:8081",
            "--plaintext",
            "--trust-forwarded-for",
            "0.0.0.0/0",
            "--realm",
            "A.ORG=127.0.0.1:88",
        ])
        .unwrap();
        let c = config::Config::from_args(args).unwrap();
        let w = risky_settings(&c);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("0.0.0.0:8080") && w[0].contains("not a loopback"));
        assert!(w[1].contains("0.0.0.0/0") && w[1].contains("X-Forwarded-For"));
    }

    #[test]
    fn reload_keeps_listen_addresses_and_refuses_a_transport_switch() {
        let args = cli::Args::try_parse_from([
            "krb5-wss-proxy",
            "--listen",
            "127.0.0.1:1",
            "--plaintext",
            "--realm",
            "A.ORG=127.0.0.1:88",
        ])
        .unwrap();
        let shared = state::Shared::new(reload::build(&args).unwrap());
        let mut changed = args.clone();
        let set = |a: &mut cli::Args, flag: &str, v: &[&str]| {
            a.given
                .0
                .insert(flag.into(), v.iter().map(|s| s.to_string()).collect());
        };
        set(&mut changed, "listen", &["127.0.0.1:2"]);
        changed
            .realms
            .push(("B.ORG".into(), addr::parse_server("k", 88).unwrap()));
        let notes = reload::reload(&changed, &shared).unwrap();
        assert!(notes[0].contains("listen addresses changed"), "{notes:?}");
        let now = shared.active();
        assert_eq!(now.config.listen, vec!["127.0.0.1:1".parse().unwrap()]);
        assert!(now.config.realms.contains_key("B.ORG"));
        // A failing reload changes nothing.
        let mut tls = changed.clone();
        tls.given.0.remove("plaintext");
        set(&mut tls, "cert", &["/nonexistent/c.pem"]);
        set(&mut tls, "key", &["/nonexistent/k.pem"]);
        assert!(reload::reload(&tls, &shared).is_err());
        assert!(shared.active().config.realms.contains_key("B.ORG"));
    }
}
