//! The rustls backend (default): ring crypto provider, TLS 1.2 and 1.3,
//! system roots through rustls-native-certs.

use std::io;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::HandshakeError;
use crate::deadline::DeadlineStream;

/// Backend name, for logs.
pub const NAME: &str = "rustls";

/// A ready TLS client configuration.
pub type Client = Arc<ClientConfig>;

/// A TLS stream over TCP.
pub type Stream = StreamOwned<ClientConnection, DeadlineStream>;

/// Builds the client; `anchors` None means the system store; `identity`
/// is the client certificate to present when the server asks for one.
pub fn build(
    anchors: Option<Vec<CertificateDer<'static>>>,
    identity: Option<super::LoadedIdentity>,
) -> Result<Client, String> {
    let mut roots = RootCertStore::empty();
    let certs = match anchors {
        Some(c) => c,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(
            "no usable trust anchors (install ca-certificates, or set http_anchors for the realm)"
                .into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let mut cfg = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| format!("TLS client certificate: {e}"))?,
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Runs the handshake to completion (bounded by `tcp`'s deadline).
pub fn handshake(
    client: &Client,
    host: &str,
    mut tcp: DeadlineStream,
) -> Result<Stream, HandshakeError> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        HandshakeError::Failed(format!(
            "\"{host}\" cannot be checked against a certificate: {e}"
        ))
    })?;
    let mut conn = ClientConnection::new(client.clone(), name)
        .map_err(|e| HandshakeError::Failed(format!("TLS setup for {host}: {e}")))?;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            return Err(map_io(e, host));
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// Describes an I/O error of the TLS stream after the handshake (in TLS
/// 1.3 the server's verdict on our client certificate arrives then), or
/// `None` when it is not a TLS alert about our certificate.
pub fn describe_io(e: &io::Error, host: &str) -> Option<String> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => super::client_cert_alert(&format!("{alert:?}"))
            .map(|words| format!("TLS handshake with {host} failed: {words}")),
        _ => None,
    }
}

/// The deadline stream under the TLS stream.
pub fn inner(s: &Stream) -> &DeadlineStream {
    s.get_ref()
}

/// The deadline stream under the TLS stream, to change its deadline.
pub fn inner_mut(s: &mut Stream) -> &mut DeadlineStream {
    s.get_mut()
}

fn map_io(e: io::Error, host: &str) -> HandshakeError {
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return HandshakeError::Timeout;
    }
    if let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        return HandshakeError::Failed(describe_error(tls, host));
    }
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => HandshakeError::Failed(format!(
            "TLS handshake with {host} failed: the server closed the connection (is it serving TLS on this port?)"
        )),
        _ => HandshakeError::Io(e),
    }
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
            CertificateError::Other(other) => {
                let what = format!("{other:?}");
                if what.contains("CaUsedAsEndEntity") {
                    format!(
                        "TLS certificate of {host} is a CA certificate used as a server certificate (a self-signed certificate made with CA:TRUE?); give the server a certificate issued by a CA, and trust that CA in http_anchors"
                    )
                } else {
                    format!("TLS certificate of {host} rejected by the verifier: {what}")
                }
            }
            other => format!("TLS certificate of {host} rejected: {other:?}"),
        },
        rustls::Error::AlertReceived(alert) => match super::client_cert_alert(&format!("{alert:?}")) {
            Some(words) => format!("TLS handshake with {host} failed: {words}"),
            None => format!("TLS handshake with {host} failed: the server sent alert {alert:?}"),
        },
        other => format!("TLS with {host} failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error shaped as webpki's (its Debug is the variant's name).
    mod webpki_like {
        #[derive(Debug)]
        pub struct CaUsedAsEndEntity;
        impl std::fmt::Display for CaUsedAsEndEntity {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("CaUsedAsEndEntity")
            }
        }
        impl std::error::Error for CaUsedAsEndEntity {}
    }

    #[test]
    fn certificate_errors_read_well() {
        let e = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert!(describe_error(&e, "kdc.example.com").contains("unknown issuer"));
        let e = rustls::Error::InvalidCertificate(CertificateError::NotValidForName);
        assert!(describe_error(&e, "kdc.example.com").contains("name mismatch"));
        let e = rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
            std::sync::Arc::new(webpki_like::CaUsedAsEndEntity),
        )));
        let m = describe_error(&e, "kdc.example.com");
        assert!(
            m.contains("is a CA certificate used as a server certificate"),
            "{m}"
        );
        let e = rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired);
        let m = describe_error(&e, "kdc.example.com");
        assert!(m.contains("client certificate required"), "{m}");
        let e = rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
        let m = describe_error(&e, "kdc.example.com");
        assert!(m.contains("refused the client certificate"), "{m}");
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        );
        let m = describe_io(&io, "kdc.example.com").unwrap();
        assert!(m.contains("client certificate required"), "{m}");
    }
}
