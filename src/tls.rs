//! TLS client configuration: trust anchors and readable certificate errors.
//!
//! Verification is always on: the chain must lead to a trust anchor and the
//! certificate must carry the URL's host name (or IP). Anchors come from the
//! realm's `http_anchors` (MIT's `FILE:`, `DIR:` and `ENV:` forms, the same
//! values its HTTPS transport uses) or, when there are none, the system store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// One `http_anchors` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// `FILE:path`: a PEM file of CA certificates.
    File(PathBuf),
    /// `DIR:path`: every file (not starting with `.`) in a directory.
    Dir(PathBuf),
    /// `ENV:NAME`: the environment variable holds a `FILE:`/`DIR:` value.
    Env(String),
}

impl Anchor {
    /// Parses an `http_anchors` value.
    pub fn parse(s: &str) -> Result<Anchor, String> {
        let s = s.trim();
        let nonempty = |rest: &str, form: &str| {
            if rest.is_empty() {
                Err(format!("\"{s}\": {form} needs a value"))
            } else {
                Ok(rest.to_string())
            }
        };
        if let Some(rest) = s.strip_prefix("FILE:") {
            nonempty(rest, "FILE:").map(|p| Anchor::File(p.into()))
        } else if let Some(rest) = s.strip_prefix("DIR:") {
            nonempty(rest, "DIR:").map(|p| Anchor::Dir(p.into()))
        } else if let Some(rest) = s.strip_prefix("ENV:") {
            nonempty(rest, "ENV:").map(Anchor::Env)
        } else {
            Err(format!(
                "\"{s}\" is not FILE:path, DIR:path or ENV:variable"
            ))
        }
    }
}

/// Adds every certificate in a PEM file; returns how many were added.
fn add_file(store: &mut RootCertStore, path: &Path) -> Result<usize, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&data)
        .filter_map(Result::ok)
        .collect();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    Ok(added)
}

fn add_anchor(store: &mut RootCertStore, anchor: &Anchor, depth: u8) -> Result<(), String> {
    match anchor {
        Anchor::File(p) => {
            let n = add_file(store, p)?;
            if n == 0 {
                return Err(format!("no CA certificate found in {}", p.display()));
            }
        }
        Anchor::Dir(p) => {
            let entries = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read directory {}: {e}", p.display()))?;
            let mut total = 0;
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                total += add_file(store, &entry.path()).unwrap_or(0);
            }
            if total == 0 {
                return Err(format!(
                    "no CA certificate found in directory {}",
                    p.display()
                ));
            }
        }
        Anchor::Env(var) => {
            if depth > 0 {
                return Err(format!("ENV:{var} points at another ENV: value"));
            }
            let value = crate::env::var(var)
                .ok_or_else(|| format!("environment variable {var} is not set"))?;
            add_anchor(store, &Anchor::parse(&value)?, depth + 1)?;
        }
    }
    Ok(())
}

/// CA bundles of the common distributions, for privileged processes.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Builds the trust store for `anchors` (the system store when empty).
pub fn root_store(anchors: &[String]) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    if anchors.is_empty() {
        let added = if crate::env::is_secure() {
            // rustls-native-certs honours SSL_CERT_FILE/SSL_CERT_DIR, which
            // belong to the caller in a privileged process: read the
            // distribution bundles instead.
            SYSTEM_BUNDLES
                .iter()
                .find_map(|p| add_file(&mut store, Path::new(p)).ok().filter(|n| *n > 0))
                .unwrap_or(0)
        } else {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs).0
        };
        if added == 0 {
            return Err(
                "no trust anchors in the system store (install ca-certificates, or set http_anchors for the realm)"
                    .into(),
            );
        }
        return Ok(store);
    }
    for a in anchors {
        let anchor = Anchor::parse(a)?;
        add_anchor(&mut store, &anchor, 0).map_err(|e| format!("http_anchors {a}: {e}"))?;
    }
    Ok(store)
}

/// How long a built configuration is reused before anchors are re-read.
const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 8;

/// Anchors, creating pid, creation time, configuration.
type CacheEntry = (Vec<String>, u32, Instant, Arc<ClientConfig>);
static CACHE: Mutex<Vec<CacheEntry>> = Mutex::new(Vec::new());

/// Locks the configuration cache (also taken by the fork handlers).
pub(crate) fn lock_cache() -> MutexGuard<'static, Vec<CacheEntry>> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The TLS client configuration for `anchors`, cached per process for a
/// minute (so TLS session resumption works across connections, and the
/// system store is not re-parsed for every relay).
pub fn client_config(anchors: &[String]) -> Result<Arc<ClientConfig>, String> {
    let pid = std::process::id();
    let mut cache = lock_cache();
    // A forked child builds its own: the parent's session caches may have
    // been locked by a parent thread at the fork.
    cache.retain(|(_, p, at, _)| *p == pid && at.elapsed() < CACHE_TTL);
    if let Some((_, _, _, cfg)) = cache.iter().find(|(a, _, _, _)| a.as_slice() == anchors) {
        return Ok(cfg.clone());
    }
    let roots = root_store(anchors)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let cfg = Arc::new(cfg);
    if cache.len() >= CACHE_MAX {
        cache.remove(0);
    }
    cache.push((anchors.to_vec(), pid, Instant::now(), cfg.clone()));
    Ok(cfg)
}

/// Describes a TLS failure for an administrator, naming the host.
pub fn describe_error(e: &rustls::Error, host: &str) -> String {
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => format!(
                "TLS certificate of {host} is not signed by a trusted CA (unknown issuer; check http_anchors)"
            ),
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("TLS certificate name mismatch: the certificate is not valid for {host}")
            }
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                format!("TLS certificate of {host} has expired")
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                format!("TLS certificate of {host} is not valid yet")
            }
            CertificateError::Revoked => format!("TLS certificate of {host} is revoked"),
            CertificateError::BadSignature => format!("TLS certificate of {host} has a bad signature"),
            other => format!("TLS certificate of {host} rejected: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => format!("TLS handshake with {host} failed: the server sent alert {alert:?}"),
        other => format!("TLS with {host} failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_forms() {
        assert_eq!(
            Anchor::parse("FILE:/a.pem").unwrap(),
            Anchor::File("/a.pem".into())
        );
        assert_eq!(Anchor::parse(" DIR:/d ").unwrap(), Anchor::Dir("/d".into()));
        assert_eq!(Anchor::parse("ENV:X").unwrap(), Anchor::Env("X".into()));
        assert!(Anchor::parse("FILE:")
            .unwrap_err()
            .contains("needs a value"));
        assert!(Anchor::parse("/a.pem").unwrap_err().contains("FILE:path"));
    }

    #[test]
    fn missing_anchor_file_is_named() {
        let e = root_store(&["FILE:/nonexistent/ca.pem".into()]).unwrap_err();
        assert!(
            e.contains("http_anchors FILE:/nonexistent/ca.pem: cannot read /nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn file_without_certificates_is_an_error() {
        let dir = std::env::temp_dir().join(format!("krb5-wss-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.pem");
        std::fs::write(&f, "not a certificate\n").unwrap();
        let e = root_store(&[format!("FILE:{}", f.display())]).unwrap_err();
        assert!(e.contains("no CA certificate found"), "{e}");
        let e = root_store(&[format!("DIR:{}", dir.display())]).unwrap_err();
        assert!(e.contains("no CA certificate found in directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unset_env_anchor_is_named() {
        let e = root_store(&["ENV:KRB5_WSS_TEST_UNSET_VARIABLE".into()]).unwrap_err();
        assert!(e.contains("KRB5_WSS_TEST_UNSET_VARIABLE is not set"), "{e}");
    }

    #[test]
    fn certificate_errors_read_well() {
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(describe_error(&e, "kdc.example.com").contains("unknown issuer"));
        let e = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(describe_error(&e, "kdc.example.com").contains("name mismatch"));
    }
}
