//! Building the active configuration, at startup and on SIGHUP.
//!
//! A reload reads the configuration file again, merges it with the
//! original command line, loads the certificate and key again, and makes
//! the result the configuration of new connections; connections already
//! open keep the one they started with. A reload that fails changes
//! nothing. What needs new sockets (listen addresses, the metrics address)
//! or a new kind of listener (TLS or plaintext) takes a restart: a reload
//! that changes the listen addresses keeps the old ones, and says so;
//! one that switches between TLS and plaintext is refused.

use crate::cli::Args;
use crate::config::{Config, Transport};
use crate::state::{Active, Shared};
use crate::tls;
use std::sync::Arc;

/// Builds a configuration and its TLS acceptor from the command line (and
/// the file it names).
pub fn build(args: &Args) -> Result<Active, String> {
    let mut config = Config::from_args(args.clone())?;
    // Connections must fit in the file descriptors the proxy has.
    for note in crate::fdlimit::fit(&mut config.limits, crate::fdlimit::available()?)? {
        log::warn!("{note}");
    }
    let tls = match &config.transport {
        Transport::Tls { cert, key } => {
            Some(tls::acceptor(cert, key, config.client_auth.as_ref())?)
        }
        Transport::Plaintext => None,
    };
    Ok(Active {
        config: Arc::new(config),
        tls,
    })
}

/// Reloads: on success the new configuration serves new connections and
/// the returned notes say what could not change; on failure nothing
/// changed.
pub fn reload(args: &Args, shared: &Shared) -> Result<Vec<String>, String> {
    let old = shared.active();
    let mut new = build(args)?;
    let mut notes = Vec::new();
    let plaintext = |c: &Config| c.transport == Transport::Plaintext;
    if plaintext(&new.config) != plaintext(&old.config) {
        return Err(format!(
            "switching between TLS and plaintext takes a restart (now serving {}://)",
            old.config.transport.scheme()
        ));
    }
    let mut config = (*new.config).clone();
    if config.listen != old.config.listen {
        notes.push(format!(
            "listen addresses changed: they take a restart; still listening on {:?}",
            old.config.listen
        ));
        config.listen = old.config.listen.clone();
    }
    if config.metrics_listen != old.config.metrics_listen {
        notes.push("metrics_listen changed: it takes a restart".to_string());
        config.metrics_listen = old.config.metrics_listen;
    }
    crate::logfmt::set_format(config.log_format);
    new.config = Arc::new(config);
    shared.replace(new);
    Ok(notes)
}
