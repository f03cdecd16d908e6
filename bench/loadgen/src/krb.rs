//! Just enough DER to build the messages the benchmark sends and answers:
//! an AS-REQ whose nonce can be changed in place (so the KDC's lookaside
//! cache never answers a repeat), a KRB-ERROR for the canned responder, and
//! the MS-KKDCP `KDC-PROXY-MESSAGE` wrapper.

/// A DER TLV with a definite length.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (4 - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// INTEGER, minimal two's complement.
pub fn int(v: i64) -> Vec<u8> {
    let bytes = v.to_be_bytes();
    let mut start = 0;
    while start < 7 {
        let (b, next) = (bytes[start], bytes[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    tlv(0x02, &bytes[start..])
}

/// Context tag `[n]`, constructed.
pub fn ctx(n: u8, inner: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, inner)
}

/// SEQUENCE of already encoded items.
pub fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

/// GeneralString (KerberosString).
pub fn gstr(s: &str) -> Vec<u8> {
    tlv(0x1b, s.as_bytes())
}

/// PrincipalName { name-type, name-string }.
pub fn principal(name_type: i64, components: &[&str]) -> Vec<u8> {
    let names: Vec<Vec<u8>> = components.iter().map(|c| gstr(c)).collect();
    seq(&[ctx(0, &int(name_type)), ctx(1, &seq(&names))])
}

/// The placeholder nonce: four content bytes, so every patched value has
/// the same encoded length.
const NONCE_PLACEHOLDER: [u8; 8] = [0xa7, 0x06, 0x02, 0x04, 0x7f, 0x5a, 0x5a, 0x7f];

/// An AS-REQ for `principal@realm` (components split on `/`), with a nonce
/// that [`AsReq::with_nonce`] rewrites.
#[derive(Clone)]
pub struct AsReq {
    bytes: Vec<u8>,
    nonce_at: usize,
}

impl AsReq {
    /// Builds the request: no padata, kdc-options 0, till in 2037,
    /// etypes aes256-cts-hmac-sha1-96 and aes128-cts-hmac-sha1-96.
    pub fn new(principal_name: &str, realm: &str) -> AsReq {
        let components: Vec<&str> = principal_name.split('/').collect();
        let body = seq(&[
            ctx(0, &tlv(0x03, &[0, 0, 0, 0, 0])),
            ctx(1, &principal(1, &components)),
            ctx(2, &gstr(realm)),
            ctx(3, &principal(2, &["krbtgt", realm])),
            ctx(5, &tlv(0x18, b"20370101000000Z")),
            NONCE_PLACEHOLDER.to_vec(),
            ctx(8, &seq(&[int(18), int(17)])),
        ]);
        let bytes = tlv(
            0x6a,
            &seq(&[ctx(1, &int(5)), ctx(2, &int(10)), ctx(4, &body)]),
        );
        let nonce_at = bytes
            .windows(NONCE_PLACEHOLDER.len())
            .position(|w| w == NONCE_PLACEHOLDER)
            .expect("the nonce placeholder is in the request")
            + 4;
        AsReq { bytes, nonce_at }
    }

    /// The request with nonce derived from `n` (always a positive 4-byte
    /// INTEGER, so the encoding keeps its length).
    pub fn with_nonce(&self, n: u64) -> Vec<u8> {
        let mut out = self.bytes.clone();
        let nonce = 0x0100_0000u32 + (n % 0x7e00_0000) as u32;
        out[self.nonce_at..self.nonce_at + 4].copy_from_slice(&nonce.to_be_bytes());
        out
    }
}

/// A KRB-ERROR (KDC_ERR_C_PRINCIPAL_UNKNOWN) as a KDC would send it.
pub fn krb_error(realm: &str) -> Vec<u8> {
    tlv(
        0x7e,
        &seq(&[
            ctx(0, &int(5)),
            ctx(1, &int(30)),
            ctx(4, &tlv(0x18, b"20250101000000Z")),
            ctx(5, &int(0)),
            ctx(6, &int(6)),
            ctx(9, &gstr(realm)),
            ctx(10, &principal(2, &["krbtgt", realm])),
        ]),
    )
}

/// An RFC 4120 TCP record: 4-byte big-endian length, then the message.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = (message.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(message);
    out
}

/// MS-KKDCP `KDC-PROXY-MESSAGE { kerb-message [0] (the framed record),
/// target-domain [1] realm }`.
pub fn kdc_proxy_message(framed: &[u8], realm: &str) -> Vec<u8> {
    seq(&[ctx(0, &tlv(0x04, framed)), ctx(1, &gstr(realm))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal() {
        assert_eq!(int(0), [2, 1, 0]);
        assert_eq!(int(5), [2, 1, 5]);
        assert_eq!(int(128), [2, 2, 0, 128]);
        assert_eq!(int(-1), [2, 1, 0xff]);
        assert_eq!(int(0x7f5a5a7f), [2, 4, 0x7f, 0x5a, 0x5a, 0x7f]);
    }

    #[test]
    fn long_lengths() {
        let t = tlv(4, &[0u8; 300]);
        assert_eq!(&t[..4], &[4, 0x82, 1, 44]);
        assert_eq!(t.len(), 304);
    }

    #[test]
    fn nonce_is_patched_in_place() {
        let req = AsReq::new("user", "KRBTEST.COM");
        let a = req.with_nonce(1);
        let b = req.with_nonce(2);
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b);
        assert_eq!(a[0], 0x6a);
        let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        assert_eq!(diff.len(), 1);
    }

    #[test]
    fn the_proxy_accepts_the_request() {
        let req = AsReq::new("host/localhost", "KRBTEST.COM").with_nonce(7);
        let checked = krb5_wss_proto::kerberos::check_kdc_request(&req).unwrap();
        assert_eq!(checked.realm, "KRBTEST.COM");
        assert_eq!(checked.kind.name(), "AS-REQ");
    }
}
