//! The native-tls backend (cargo feature `native-tls`): the system's
//! OpenSSL, its default verify paths for the system store, TLS 1.2+.

use native_tls::{Certificate, Protocol, TlsConnector, TlsStream};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::HandshakeError;
use crate::deadline::DeadlineStream;

/// Backend name, for logs.
pub const NAME: &str = "native-tls";

/// A ready TLS client configuration.
pub type Client = TlsConnector;

/// A TLS stream over TCP.
pub type Stream = TlsStream<DeadlineStream>;

/// Builds the client; `anchors` None means OpenSSL's default verify
/// paths; `identity` is the client certificate to present (its key must
/// be PKCS#8, what `native_tls::Identity::from_pkcs8` reads).
pub fn build(
    anchors: Option<Vec<CertificateDer<'static>>>,
    identity: Option<super::LoadedIdentity>,
) -> Result<Client, String> {
    let mut b = TlsConnector::builder();
    if let Some(id) = identity {
        if !matches!(id.key, PrivateKeyDer::Pkcs8(_)) {
            return Err(
                "wss_client_key: the native-tls build reads PKCS#8 keys only \
                 (BEGIN PRIVATE KEY); convert it with `openssl pkcs8 -topk8 -nocrypt`"
                    .into(),
            );
        }
        let identity = native_tls::Identity::from_pkcs8(&id.cert_pem, &id.key_pem)
            .map_err(|e| format!("TLS client certificate (OpenSSL): {e}"))?;
        b.identity(identity);
    }
    b.min_protocol_version(Some(Protocol::Tlsv12));
    b.request_alpns(&["http/1.1"]);
    if let Some(certs) = anchors {
        b.disable_built_in_roots(true);
        let mut added = 0;
        for der in certs {
            if let Ok(c) = Certificate::from_der(der.as_ref()) {
                b.add_root_certificate(c);
                added += 1;
            }
        }
        if added == 0 {
            return Err("no usable trust anchors in http_anchors".into());
        }
    }
    b.build().map_err(|e| format!("TLS setup (OpenSSL): {e}"))
}

/// Runs the handshake to completion (bounded by `tcp`'s deadline).
pub fn handshake(
    client: &Client,
    host: &str,
    tcp: DeadlineStream,
) -> Result<Stream, HandshakeError> {
    match client.connect(host, tcp) {
        Ok(s) => Ok(s),
        Err(native_tls::HandshakeError::WouldBlock(_)) => Err(HandshakeError::Timeout),
        Err(native_tls::HandshakeError::Failure(e)) => Err(describe(&e, host)),
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

/// Describes an I/O error of the TLS stream after the handshake (in TLS
/// 1.3 the server's verdict on our client certificate arrives then), or
/// `None` when it is not a TLS alert about our certificate.
pub fn describe_io(e: &std::io::Error, host: &str) -> Option<String> {
    super::client_cert_alert(&e.to_string())
        .map(|words| format!("TLS handshake with {host} failed: {words}"))
}

/// Maps OpenSSL's verify messages to the same words as the rustls backend.
fn describe(e: &native_tls::Error, host: &str) -> HandshakeError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let msg = if let Some(words) = super::client_cert_alert(&text) {
        format!("TLS handshake with {host} failed: {words}")
    } else if lower.contains("unable to get local issuer certificate")
        || lower.contains("self-signed certificate")
        || lower.contains("self signed certificate")
        || lower.contains("unable to get issuer certificate")
    {
        format!("TLS certificate of {host} is not signed by a trusted CA (unknown issuer; check http_anchors)")
    } else if lower.contains("hostname mismatch") || lower.contains("ip address mismatch") {
        format!("TLS certificate name mismatch: the certificate is not valid for {host}")
    } else if lower.contains("certificate has expired") {
        format!("TLS certificate of {host} has expired")
    } else if lower.contains("certificate is not yet valid") {
        format!("TLS certificate of {host} is not valid yet")
    } else if lower.contains("timed out") || lower.contains("resource temporarily unavailable") {
        return HandshakeError::Timeout;
    } else if lower.contains("unexpected eof") || lower.contains("connection reset") {
        format!("TLS handshake with {host} failed: the server closed the connection (is it serving TLS on this port?)")
    } else {
        format!("TLS with {host} failed: {text}")
    };
    HandshakeError::Failed(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pkcs8_keys_are_read() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/tls/testdata");
        let id = |key: &str| super::super::Identity {
            cert: format!("{dir}/client.pem").into(),
            key: format!("{dir}/{key}").into(),
        };
        let loaded = super::super::load_identity(&id("client-sec1.key")).unwrap();
        let e = build(None, Some(loaded)).err().unwrap();
        assert!(e.contains("PKCS#8"), "{e}");
        let loaded = super::super::load_identity(&id("client.key")).unwrap();
        assert!(build(None, Some(loaded)).is_ok());
    }
}
