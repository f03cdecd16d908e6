//! The send and recv hooks a program can install on its own contexts
//! (`krb5_wss_install_hooks`, see include/krb5_wss.h).
//!
//! - The **send hook** (`krb5_pre_send_fn`) carries the KDC exchanges of a
//!   realm served over wss itself, so libkrb5 sends nothing and the
//!   loopback relay hop is skipped; other realms pass through untouched.
//! - The **recv hook** (`krb5_post_recv_fn`) is the fallback mode: when
//!   direct delivery to a realm's ordinary KDCs failed, it retries the
//!   request over the realm's `wss_fallback_kdc` URLs.
//!
//! kpasswd never passes through these hooks (libkrb5 sends it with
//! `k5_sendto` directly); the locate plugin carries it regardless.

use krb5_wss_proto::Service;
use log::{debug, warn};

use crate::config::{self, Profile, RealmConfig};
use crate::discovery::Resolver;
use crate::locate::{self, LocateService};
use crate::upstream::{self, Target};

/// What a hook tells libkrb5.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAnswer {
    /// Not ours: let libkrb5 proceed (send) or keep its result (recv).
    PassThrough,
    /// The KDC's reply, to hand back instead of sending (or of the error).
    Reply(Vec<u8>),
    /// A configuration error (KRB5_CONFIG_BADFORMAT) with its message.
    ConfigError(String),
    /// Every URL failed (KRB5_KDC_UNREACH) with the message naming each.
    Unreachable(String),
}

/// Carries `message` over the realm's `kdc` URLs (through the same
/// connection pool and failover as the relay, without the loopback hop).
fn exchange(cfg: &RealmConfig, message: &[u8]) -> HookAnswer {
    let target = Target::new(cfg, Service::Kdc, cfg.kdc.clone());
    let upstream = match upstream::upstream_for(&target) {
        Ok(u) => u,
        Err(e) => return HookAnswer::Unreachable(e),
    };
    match upstream.exchange(message) {
        Ok(reply) => HookAnswer::Reply(reply),
        Err(e) => {
            warn!("{e}");
            HookAnswer::Unreachable(e.to_string())
        }
    }
}

/// The send hook's decision for one request to `realm`.
pub fn send(
    profile: &dyn Profile,
    resolver: &dyn Resolver,
    realm: &str,
    message: &[u8],
) -> HookAnswer {
    let cfg = match locate::realm_config(profile, resolver, realm, LocateService::Kdc) {
        Ok(Some(cfg)) if !cfg.kdc.is_empty() => cfg,
        Ok(_) => return HookAnswer::PassThrough,
        Err(e) => return HookAnswer::ConfigError(e.to_string()),
    };
    crate::logging::init();
    debug!("realm {realm}: send hook carries the request over wss");
    exchange(&cfg, message)
}

/// The recv hook's decision: `failed` is true when libkrb5's own delivery
/// returned an error.
pub fn recv(profile: &dyn Profile, realm: &str, failed: bool, message: &[u8]) -> HookAnswer {
    if !failed {
        return HookAnswer::PassThrough;
    }
    let cfg = match config::load_fallback(profile, realm) {
        Ok(Some(cfg)) => cfg,
        Ok(None) => return HookAnswer::PassThrough,
        Err(e) => return HookAnswer::ConfigError(e.to_string()),
    };
    crate::logging::init();
    debug!("realm {realm}: direct delivery failed; retrying over wss_fallback_kdc");
    exchange(&cfg, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::MapProfile;
    use crate::discovery::tests::TableResolver;

    #[test]
    fn foreign_realms_pass_through() {
        let prof = MapProfile::default().with("realms/P.ORG/kdc", "kdc.p.org");
        assert_eq!(
            send(&prof, &TableResolver::default(), "P.ORG", b"x"),
            HookAnswer::PassThrough
        );
        assert_eq!(recv(&prof, "P.ORG", true, b"x"), HookAnswer::PassThrough);
    }

    #[test]
    fn successful_direct_delivery_is_kept() {
        let prof = MapProfile::default().with("realms/P.ORG/wss_fallback_kdc", "wss://h/kdc");
        assert_eq!(recv(&prof, "P.ORG", false, b"x"), HookAnswer::PassThrough);
    }

    #[test]
    fn bad_fallback_url_is_a_config_error() {
        let prof = MapProfile::default().with("realms/P.ORG/wss_fallback_kdc", "wss://h:0/kdc");
        assert!(
            matches!(recv(&prof, "P.ORG", true, b"x"), HookAnswer::ConfigError(m) if m.contains("wss_fallback_kdc"))
        );
    }
}
