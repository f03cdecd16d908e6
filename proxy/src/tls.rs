//! TLS: loading the certificate chain and key, and the rustls server
//! configuration (ring provider, TLS 1.2 and 1.3, ALPN http/1.1).

use rustls::crypto::ring;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Builds the TLS acceptor from PEM files; every error names the file.
pub fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server_config(
        cert, key,
    )?)))
}

/// Builds the rustls server configuration from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, String> {
    let chain = load_certs(cert)?;
    let key_der = load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| {
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
        let err = server_config(&junk, &junk).unwrap_err();
        assert!(err.contains("junk.pem") && err.contains("no PEM"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
