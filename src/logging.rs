//! The plugin's log: `KRB5_WSS_LOG` selects the level (default `warn`).
//!
//! A bare level (`off`, `error`, `warn`, `info`, `debug`, `trace`) applies
//! to krb5-wss's own messages only; anything else is an env_logger filter
//! spec (e.g. `krb5_wss=debug,rustls=debug`). Lines go to stderr as
//! `krb5-wss[PID]: LEVEL message`. Set up on the first lookup for a realm
//! the plugin owns, never for other realms.

use std::io::Write;
use std::sync::Once;

use log::LevelFilter;

static INIT: Once = Once::new();

/// Parses a bare level name.
fn bare_level(spec: &str) -> Option<LevelFilter> {
    match spec.trim().to_ascii_lowercase().as_str() {
        "off" | "none" | "0" => Some(LevelFilter::Off),
        "error" => Some(LevelFilter::Error),
        "warn" | "warning" => Some(LevelFilter::Warn),
        "info" => Some(LevelFilter::Info),
        "debug" => Some(LevelFilter::Debug),
        "trace" => Some(LevelFilter::Trace),
        _ => None,
    }
}

/// Installs the logger once per process.
pub fn init() {
    INIT.call_once(|| {
        let spec = crate::env::var("KRB5_WSS_LOG").unwrap_or_else(|| "warn".into());
        let mut builder = env_logger::Builder::new();
        match bare_level(&spec) {
            Some(level) => {
                builder.filter_level(LevelFilter::Off);
                builder.filter_module("krb5_wss", level);
            }
            None => {
                builder.parse_filters(&spec);
            }
        }
        builder.format(|buf, record| {
            writeln!(
                buf,
                "krb5-wss[{}]: {} {}",
                std::process::id(),
                record.level(),
                record.args()
            )
        });
        builder.target(env_logger::Target::Stderr);
        // Fails only if this copy of `log` already has a logger: keep it.
        let _ = builder.try_init();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(bare_level("DEBUG"), Some(LevelFilter::Debug));
        assert_eq!(bare_level("off"), Some(LevelFilter::Off));
        assert_eq!(bare_level("krb5_wss=debug"), None);
    }
}
