//! File descriptors: enough for the configured connections, or fewer
//! connections.
//!
//! The proxy holds one descriptor per client connection (up to
//! `max_connections`, plus [`OVERLOAD_GRACE`] connections taken through
//! the handshake only to be refused), one per upstream exchange in progress
//! (up to `max_upstream_exchanges`), and [`OWN`] of its own (listeners, the
//! metrics listener, the log, the runtime). At start it raises its soft
//! limit to the hard one; when even that cannot hold all of it, it lowers
//! `max_connections` (and, past a quarter of the descriptors,
//! `max_upstream_exchanges`) to fit, and says so. It refuses to start with
//! fewer than [`MIN_CONNECTIONS`] connections left. So the proxy never runs
//! out of descriptors: over the limits new connections are refused with
//! the documented codes, and the metrics listener keeps answering.

use crate::admission::OVERLOAD_GRACE;
use crate::limits::Limits;
use rlimit::Resource;

/// Descriptors kept for the proxy's own use: listeners, the log, the
/// runtime, and up to [`crate::udp::MAX_IDLE`] idle UDP sockets to the KDCs.
pub const OWN: u64 = 64;
/// Fewest client connections worth starting with.
pub const MIN_CONNECTIONS: u64 = 16;

/// Raises the soft descriptor limit to the hard one; returns the soft
/// limit in force afterwards.
pub fn raise() -> Result<u64, String> {
    let (soft, hard) = Resource::NOFILE
        .get()
        .map_err(|e| format!("cannot read the file descriptor limit: {e}"))?;
    if soft < hard {
        if let Err(e) = Resource::NOFILE.set(hard, hard) {
            log::warn!("cannot raise the file descriptor limit from {soft} to {hard}: {e}");
            return Ok(soft);
        }
        log::debug!("file descriptor limit raised from {soft} to {hard}");
    }
    Ok(hard.max(soft))
}

/// The soft descriptor limit in force.
pub fn available() -> Result<u64, String> {
    Resource::NOFILE
        .get()
        .map(|(soft, _)| soft)
        .map_err(|e| format!("cannot read the file descriptor limit: {e}"))
}

/// Lowers `limits` to fit in `available` descriptors; returns what it
/// changed, in words (empty when everything fits).
pub fn fit(limits: &mut Limits, available: u64) -> Result<Vec<String>, String> {
    let grace = OVERLOAD_GRACE as u64;
    let conns = limits.max_connections as u64;
    let upstream = limits.max_upstream_exchanges as u64;
    if conns + grace + upstream + OWN <= available {
        return Ok(Vec::new());
    }
    let mut notes = Vec::new();
    let upstream_fit = upstream.min(available / 4).max(1);
    let conns_fit = available
        .saturating_sub(OWN + grace + upstream_fit)
        .min(conns);
    if conns_fit < MIN_CONNECTIONS {
        return Err(format!(
            "only {available} file descriptors (ulimit -n): too few for even {MIN_CONNECTIONS} \
             connections; raise the limit (LimitNOFILE= in the systemd unit)"
        ));
    }
    if upstream_fit < upstream {
        notes.push(format!(
            "max_upstream_exchanges lowered from {upstream} to {upstream_fit} to fit {available} file descriptors"
        ));
        limits.max_upstream_exchanges = upstream_fit as usize;
    }
    if conns_fit < conns {
        notes.push(format!(
            "max_connections lowered from {conns} to {conns_fit} to fit {available} file descriptors \
             (each connection takes one; raise ulimit -n or LimitNOFILE= to serve more)"
        ));
        limits.max_connections = conns_fit as usize;
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fit_a_large_limit_unchanged() {
        let mut l = Limits::default();
        assert!(fit(&mut l, 1 << 20).unwrap().is_empty());
        assert_eq!(l, Limits::default());
    }

    #[test]
    fn a_shell_default_of_1024_lowers_both() {
        let mut l = Limits::default();
        let notes = fit(&mut l, 1024).unwrap();
        assert_eq!(l.max_upstream_exchanges, 256);
        assert_eq!(l.max_connections, 1024 - 64 - 64 - 256);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(l.max_connections as u64 + 64 + 64 + l.max_upstream_exchanges as u64 <= 1024);
    }

    /// LimitNOFILE= of the shipped systemd unit.
    fn unit_limit() -> u64 {
        let unit = include_str!("../krb5-wss-proxy.service");
        let values: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.strip_prefix("LimitNOFILE="))
            .collect();
        assert_eq!(
            values.len(),
            1,
            "LimitNOFILE= lines in the unit: {values:?}"
        );
        values[0].parse().unwrap()
    }

    #[test]
    fn the_systemd_unit_holds_the_default_limits_with_room() {
        let limit = unit_limit();
        let mut l = Limits::default();
        assert!(
            fit(&mut l, limit).unwrap().is_empty(),
            "LimitNOFILE={limit}"
        );
        assert_eq!(l, Limits::default());
        // What the unit and docs/proxy.md say: the defaults need 11128, and
        // max_connections can grow to 64408 before the limit lowers it.
        let need = l.max_connections as u64
            + OVERLOAD_GRACE as u64
            + l.max_upstream_exchanges as u64
            + OWN;
        assert_eq!(need, 11128);
        assert!(
            limit >= 4 * need,
            "LimitNOFILE={limit} leaves little room over {need}"
        );
        l.max_connections = 64408;
        assert!(fit(&mut l, limit).unwrap().is_empty());
        l.max_connections = 64409;
        assert_eq!(fit(&mut l, limit).unwrap().len(), 1);
    }

    #[test]
    fn too_few_descriptors_refuse_to_start() {
        let mut l = Limits::default();
        assert!(fit(&mut l, 100).unwrap_err().contains("too few"));
    }
}
