//! The plugin's log.
//!
//! - `KRB5_WSS_LOG` selects what goes to stderr (default `warn`). A bare
//!   level (`off`, `error`, `warn`, `info`, `debug`, `trace`) applies to
//!   krb5-wss's own messages only; anything else is an env_logger filter
//!   spec (e.g. `krb5_wss=debug,rustls=debug`). Lines look like
//!   `krb5-wss[PID]: LEVEL message`.
//! - When `KRB5_TRACE` names a file (MIT's tracing), the plugin's decisions
//!   at `debug` and above (URL chosen, connection opened or reused,
//!   exchanges, failures) are appended to that file too, in MIT's trace
//!   line format, so one trace tells the whole story.
//!
//! Set up on the first lookup for a realm the plugin owns, never for other
//! realms. Both variables are ignored in privileged processes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

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

/// Formats a line the way MIT's trace does: `[pid] secs.usecs: message`.
pub fn trace_line(pid: u32, now: SystemTime, message: &str) -> String {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!(
        "[{pid}] {}.{:06}: krb5-wss: {message}\n",
        d.as_secs(),
        d.subsec_micros()
    )
}

struct Tee {
    stderr: env_logger::Logger,
    /// Written with one write per line and no lock (O_APPEND keeps lines
    /// whole), so there is no lock to be held at a fork.
    trace: Option<File>,
}

impl Tee {
    fn traced(&self, metadata: &Metadata<'_>) -> bool {
        self.trace.is_some()
            && metadata.target().starts_with("krb5_wss")
            && metadata.level() <= log::Level::Debug
    }
}

impl Log for Tee {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.stderr.enabled(metadata) || self.traced(metadata)
    }

    fn log(&self, record: &Record<'_>) {
        if self.stderr.matches(record) {
            self.stderr.log(record);
        }
        if self.traced(record.metadata()) {
            if let Some(file) = &self.trace {
                let line = trace_line(
                    std::process::id(),
                    SystemTime::now(),
                    &record.args().to_string(),
                );
                // One write per line: O_APPEND keeps lines whole beside
                // libkrb5's own writes to the same file.
                let mut f: &File = file;
                let _ = f.write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
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
        let stderr = builder.build();
        let trace = crate::env::var("KRB5_TRACE").and_then(|path| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)
                .ok()
        });
        let max = if trace.is_some() {
            stderr.filter().max(LevelFilter::Debug)
        } else {
            stderr.filter()
        };
        // Fails only if this copy of `log` already has a logger: keep it.
        if log::set_boxed_logger(Box::new(Tee { stderr, trace })).is_ok() {
            log::set_max_level(max);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn levels() {
        assert_eq!(bare_level("DEBUG"), Some(LevelFilter::Debug));
        assert_eq!(bare_level("off"), Some(LevelFilter::Off));
        assert_eq!(bare_level("krb5_wss=debug"), None);
    }

    #[test]
    fn trace_lines_look_like_mits() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(
            trace_line(42, t, "hello"),
            "[42] 1700000000.123456: krb5-wss: hello\n"
        );
    }
}
