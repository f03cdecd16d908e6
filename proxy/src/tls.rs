//! TLS: loading the certificate chain and key, and the rustls server
//! configuration (ring provider, TLS 1.2 and 1.3, ALPN http/1.1), with
//! client certificates verified against `client_ca` when it is set
//! ([`crate::clientcert`]).

use crate::clientcert::{ClientAuth, Mode};
use rustls::crypto::ring;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Builds the TLS acceptor from PEM files; every error names the file.
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client: Option<&ClientAuth>,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config(
        cert, key, client,
    )?)))
}

/// Builds the rustls server configuration from PEM files.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client: Option<&ClientAuth>,
) -> Result<ServerConfig, String> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match client {
        None => builder.with_no_client_auth(),
        Some(auth) => builder.with_client_cert_verifier(client_verifier(auth, provider)?),
    };
    let mut config = builder.with_single_cert(chain, key_der).map_err(|e| {
        format!(
            "TLS certificate {} and key {} do not fit together: {e}",
            cert.display(),
            key.display()
        )
    })?;
    // hyper serves HTTP/1.1 only; a later KKDCP endpoint shares it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The verifier of client certificates: chained to `client_ca`'s
/// certificates, required or optional.
fn client_verifier(
    auth: &ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let name = auth.ca.display();
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&auth.ca)
        .map_err(|e| format!("client_ca file {name}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("client_ca file {name}: {e}"))?;
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("client_ca file {name}: not a CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "client_ca file {name}: no PEM certificate (BEGIN CERTIFICATE) in it"
        ));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth.mode {
        Mode::Required => builder,
        Mode::Optional => builder.allow_unauthenticated(),
    };
    builder
        .build()
        .map_err(|e| format!("client_ca file {name}: {e}"))
}

/// The reason of a handshake refused for want of a client certificate.
pub const CLIENT_CERT_MISSING: &str = "client certificate required";

/// Describes a failed TLS handshake that was about the client's
/// certificate: `(reason, detail)` for the `refused` line, or `None` for
/// any other failure.
pub fn client_cert_failure(e: &std::io::Error) -> Option<(&'static str, String)> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::NoCertificatesPresented => Some((
            CLIENT_CERT_MISSING,
            "the client presented no certificate (client_certificate = \"required\")".into(),
        )),
        rustls::Error::InvalidCertificate(c) => Some((
            "client certificate rejected",
            format!("the client's certificate does not verify against client_ca: {c:?}"),
        )),
        _ => None,
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let name = path.display();
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("TLS certificate file {name}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS certificate file {name}: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate file {name}: no PEM certificate (BEGIN CERTIFICATE) in it"
        ));
    }
    Ok(chain)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no PEM private key (PKCS#8, PKCS#1 or SEC1) in it".to_string()
            }
            other => other.to_string(),
        };
        format!("TLS key file {}: {why}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let err = server_config(
            Path::new("/nonexistent/c.pem"),
            Path::new("/nonexistent/k.pem"),
            None,
        )
        .unwrap_err();
        assert!(err.contains("/nonexistent/c.pem"), "{err}");
    }

    #[test]
    fn a_file_without_pem_is_named() {
        let dir = std::env::temp_dir().join(format!("krb5-wss-proxy-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let err = server_config(&junk, &junk, None).unwrap_err();
        assert!(err.contains("junk.pem") && err.contains("no PEM"), "{err}");
        for (ca, mode) in [
            (junk.clone(), Mode::Required),
            (dir.join("missing.pem"), Mode::Optional),
        ] {
            let name = ca.display().to_string();
            let auth = ClientAuth { ca, mode };
            let err = client_verifier(&auth, Arc::new(ring::default_provider()))
                .err()
                .unwrap();
            assert!(err.contains(&format!("client_ca file {name}")), "{err}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
