//! TLS client configuration: trust anchors and readable certificate errors.
//!
//! Verification is always on: the chain must lead to a trust anchor and the
//! certificate must carry the URL's host name (or IP). Anchors come from the
//! realm's `http_anchors` (MIT's `FILE:`, `DIR:` and `ENV:` forms, the same
//! values its HTTPS transport uses) or, when there are none, the system store.
//!
//! Two backends implement the handshake: rustls (the default) and, with the
//! `native-tls` cargo feature, the system's OpenSSL through `native-tls`,
//! for sites whose policy requires it. This module is the part they share.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[cfg(not(feature = "native-tls"))]
mod rustls_backend;
#[cfg(not(feature = "native-tls"))]
use rustls_backend as backend;

#[cfg(feature = "native-tls")]
mod native_backend;
#[cfg(feature = "native-tls")]
use native_backend as backend;

pub use backend::{Client, Stream};

/// The TLS implementation compiled in ("rustls" or "native-tls").
pub const BACKEND: &str = backend::NAME;

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

/// The certificates of a PEM file (DER), unparsed beyond the PEM armour.
fn file_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(CertificateDer::pem_slice_iter(&data)
        .filter_map(Result::ok)
        .collect())
}

fn anchor_certs(
    anchor: &Anchor,
    depth: u8,
    out: &mut Vec<CertificateDer<'static>>,
) -> Result<(), String> {
    match anchor {
        Anchor::File(p) => {
            let certs = file_certs(p)?;
            if certs.is_empty() {
                return Err(format!("no CA certificate found in {}", p.display()));
            }
            out.extend(certs);
        }
        Anchor::Dir(p) => {
            let entries = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read directory {}: {e}", p.display()))?;
            let before = out.len();
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                out.extend(file_certs(&entry.path()).unwrap_or_default());
            }
            if out.len() == before {
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
            anchor_certs(&Anchor::parse(&value)?, depth + 1, out)?;
        }
    }
    Ok(())
}

/// CA bundles of the common distributions, read directly in privileged
/// processes (whose SSL_CERT_* variables belong to the caller).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The trust anchors to use: the certificates named by `anchors`, or None
/// for "the system store" (each backend knows how to load it).
pub fn trust_anchors(anchors: &[String]) -> Result<Option<Vec<CertificateDer<'static>>>, String> {
    if anchors.is_empty() {
        if crate::env::is_secure() {
            let certs = SYSTEM_BUNDLES
                .iter()
                .find_map(|p| file_certs(Path::new(p)).ok().filter(|c| !c.is_empty()))
                .ok_or("no trust anchors in the system CA bundle (install ca-certificates, or set http_anchors)")?;
            return Ok(Some(certs));
        }
        return Ok(None);
    }
    let mut out = Vec::new();
    for a in anchors {
        let anchor = Anchor::parse(a)?;
        anchor_certs(&anchor, 0, &mut out).map_err(|e| format!("http_anchors {a}: {e}"))?;
    }
    Ok(Some(out))
}

/// A realm's client certificate (`wss_client_certificate`,
/// `wss_client_key`): PEM files, read when a TLS client is built.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8; PKCS#1 and SEC1 too with rustls).
    pub key: PathBuf,
}

/// A client certificate and key, read and checked to belong together.
pub struct LoadedIdentity {
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The key.
    pub key: PrivateKeyDer<'static>,
    /// The certificate file as read (PEM).
    pub cert_pem: Vec<u8>,
    /// The key file as read (PEM).
    pub key_pem: Vec<u8>,
}

/// Reads a client certificate and its key; errors name the option, the
/// file and the cause (unreadable, no PEM in it, key not matching).
pub fn load_identity(id: &Identity) -> Result<LoadedIdentity, String> {
    let read = |key: &str, p: &Path| {
        std::fs::read(p).map_err(|e| format!("{key} {}: cannot read it: {e}", p.display()))
    };
    let cert_pem = read("wss_client_certificate", &id.cert)?;
    let key_pem = read("wss_client_key", &id.key)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(format!(
            "wss_client_certificate {}: no PEM certificate (BEGIN CERTIFICATE) in it",
            id.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "wss_client_key {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it ({e})",
            id.key.display()
        )
    })?;
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(
        |e| {
            let why = match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the key does not match the certificate".to_string()
                }
                other => other.to_string(),
            };
            format!(
                "wss_client_key {} and wss_client_certificate {}: {why}",
                id.key.display(),
                id.cert.display()
            )
        },
    )?;
    Ok(LoadedIdentity {
        chain,
        key,
        cert_pem,
        key_pem,
    })
}

/// The words of a TLS alert about our client certificate (the server
/// asked for one we did not send, or refused the one we sent; or
/// handshake_failure, which older servers send for a missing one), for
/// both backends, from rustls' alert names or OpenSSL's messages; `None`
/// for other alerts.
pub fn client_cert_alert(alert: &str) -> Option<&'static str> {
    let a = alert.to_ascii_lowercase().replace(['_', ' '], "");
    if a.contains("certificaterequired") || a.contains("alertnumber116") {
        Some("client certificate required: the server asks for a TLS client certificate; set wss_client_certificate and wss_client_key for the realm")
    } else if [
        "unknownca",
        "badcertificate",
        "certificateunknown",
        "unsupportedcertificate",
        "certificaterevoked",
        "certificateexpired",
        "accessdenied",
        "alertnumber48",
        "alertnumber42",
        "alertnumber46",
    ]
    .iter()
    .any(|w| a.contains(w))
    {
        Some("the server refused the client certificate (is wss_client_certificate issued by a CA the server trusts, and valid?)")
    } else if a.contains("handshakefailure") || a.contains("alertnumber40") {
        // What servers that predate certificate_required send for a
        // missing certificate (and for other mismatches).
        Some("the server refused the handshake (handshake_failure); if it requires a TLS client certificate, set wss_client_certificate and wss_client_key for the realm")
    } else {
        None
    }
}

/// Why a TLS handshake failed.
#[derive(Debug)]
pub enum HandshakeError {
    /// The peer did not complete the handshake in time.
    Timeout,
    /// Described for an administrator (certificate problem, alert, ...).
    Failed(String),
    /// A plain I/O error below TLS.
    Io(std::io::Error),
}

/// Runs the TLS handshake for `host` over `tcp` (whose deadline bounds it).
pub fn handshake(
    client: &Client,
    host: &str,
    tcp: crate::deadline::DeadlineStream,
) -> Result<Stream, HandshakeError> {
    backend::handshake(client, host, tcp)
}

pub use backend::{describe_io, inner, inner_mut};

/// How long a built configuration is reused before anchors are re-read.
const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_MAX: usize = 8;

/// Anchors and client certificate, creating pid, creation time,
/// configuration.
type CacheEntry = ((Vec<String>, Option<Identity>), u32, Instant, Arc<Client>);
static CACHE: Mutex<Vec<CacheEntry>> = Mutex::new(Vec::new());

/// Locks the configuration cache (also taken by the fork handlers).
pub(crate) fn lock_cache() -> MutexGuard<'static, Vec<CacheEntry>> {
    CACHE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The TLS client for `anchors` presenting `identity` (if any), cached
/// per process for a minute (so TLS session resumption works across
/// connections, and the system store is not re-parsed for every relay).
/// Clients with different certificates are different entries, so they
/// never share a session or a connection.
pub fn client_config(
    anchors: &[String],
    identity: Option<&Identity>,
) -> Result<Arc<Client>, String> {
    let pid = std::process::id();
    let mut cache = lock_cache();
    // A forked child builds its own: the parent's session caches may have
    // been locked by a parent thread at the fork.
    cache.retain(|(_, p, at, _)| *p == pid && at.elapsed() < CACHE_TTL);
    if let Some((_, _, _, cfg)) = cache
        .iter()
        .find(|((a, i), _, _, _)| a.as_slice() == anchors && i.as_ref() == identity)
    {
        return Ok(cfg.clone());
    }
    let loaded = identity.map(load_identity).transpose()?;
    let cfg = Arc::new(backend::build(trust_anchors(anchors)?, loaded)?);
    if cache.len() >= CACHE_MAX {
        cache.remove(0);
    }
    cache.push((
        (anchors.to_vec(), identity.cloned()),
        pid,
        Instant::now(),
        cfg.clone(),
    ));
    Ok(cfg)
}

/// Forgets every cached client configuration, so the next connection
/// reads its trust anchors again (the relay's reload).
pub fn forget_cached() {
    lock_cache().clear();
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
        let e = trust_anchors(&["FILE:/nonexistent/ca.pem".into()]).unwrap_err();
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
        let e = trust_anchors(&[format!("FILE:{}", f.display())]).unwrap_err();
        assert!(e.contains("no CA certificate found"), "{e}");
        let e = trust_anchors(&[format!("DIR:{}", dir.display())]).unwrap_err();
        assert!(e.contains("no CA certificate found in directory"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn client_alerts_read_well() {
        let required = client_cert_alert("CertificateRequired").unwrap();
        assert!(required.contains("client certificate required"));
        assert_eq!(
            client_cert_alert("error:0A00045C:SSL routines::tlsv13 alert certificate required:ssl/record/rec_layer_s3.c:907:SSL alert number 116"),
            Some(required)
        );
        for refused in ["UnknownCA", "BadCertificate", "tlsv1 alert unknown ca"] {
            assert!(client_cert_alert(refused)
                .unwrap()
                .contains("refused the client certificate"));
        }
        assert!(client_cert_alert("HandshakeFailure")
            .unwrap()
            .contains("wss_client_certificate"));
        assert!(client_cert_alert("sslv3 alert handshake failure").is_some());
        assert_eq!(client_cert_alert("ProtocolVersion"), None);
    }

    #[test]
    fn clients_with_different_certificates_are_not_shared() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/testdata");
        let anchors = [format!("FILE:{dir}/client.pem")];
        let id = Identity {
            cert: format!("{dir}/client.pem").into(),
            key: format!("{dir}/client.key").into(),
        };
        let other = Identity {
            cert: format!("{dir}/client2.pem").into(),
            key: format!("{dir}/client2.key").into(),
        };
        let none = client_config(&anchors, None).unwrap();
        let a = client_config(&anchors, Some(&id)).unwrap();
        let b = client_config(&anchors, Some(&other)).unwrap();
        assert!(!Arc::ptr_eq(&none, &a) && !Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(
            &a,
            &client_config(&anchors, Some(&id)).unwrap()
        ));
    }

    #[test]
    fn unset_env_anchor_is_named() {
        let e = trust_anchors(&["ENV:KRB5_WSS_TEST_UNSET_VARIABLE".into()]).unwrap_err();
        assert!(e.contains("KRB5_WSS_TEST_UNSET_VARIABLE is not set"), "{e}");
    }
}
