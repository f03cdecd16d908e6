//! Structurally valid sample Kerberos messages, built from scratch.
//!
//! They pass the checks of [`crate::kerberos`] but carry no real keys or
//! ciphertext: a KDC answers them with errors. They exist for unit tests,
//! fuzzing seeds and examples, here and in the proxy.

/// Encodes one DER TLV (`tag` is a single identifier byte) with a
/// minimal definite length.
pub fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Samples are small: the only failure (over 4 GiB) cannot happen.
    let _ = crate::der::write_tlv(&mut out, tag, value);
    out
}

/// A small non-negative DER INTEGER.
pub fn integer(n: u8) -> Vec<u8> {
    if n >= 0x80 {
        tlv(0x02, &[0, n])
    } else {
        tlv(0x02, &[n])
    }
}

/// An explicit context tag `[n]` around `value`.
pub fn ctx(n: u8, value: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, value)
}

/// A SEQUENCE of the concatenated `items`.
pub fn seq(items: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &items.concat())
}

/// A GeneralString.
pub fn general_string(s: &str) -> Vec<u8> {
    tlv(0x1b, s.as_bytes())
}

/// A PrincipalName of one name type and components.
pub fn principal(name_type: u8, parts: &[&str]) -> Vec<u8> {
    seq(&[
        ctx(0, &integer(name_type)),
        ctx(
            1,
            &seq(&parts.iter().map(|p| general_string(p)).collect::<Vec<_>>()),
        ),
    ])
}

/// An EncryptedData with 16 zero bytes of "ciphertext".
pub fn encrypted_data() -> Vec<u8> {
    seq(&[ctx(0, &integer(18)), ctx(2, &tlv(0x04, &[0; 16]))])
}

fn kdc_req(msg_type: u8, realm: &str, padata: Option<Vec<u8>>) -> Vec<u8> {
    let body = seq(&[
        ctx(0, &tlv(0x03, &[0, 0x40, 0, 0, 0x10])),
        ctx(1, &principal(1, &["user"])),
        ctx(2, &general_string(realm)),
        ctx(3, &principal(2, &["krbtgt", realm])),
        ctx(5, &tlv(0x18, b"20370913024805Z")),
        ctx(7, &integer(42)),
        ctx(8, &seq(&[integer(18), integer(17)])),
    ]);
    let mut fields = vec![ctx(1, &integer(5)), ctx(2, &integer(msg_type))];
    if let Some(p) = padata {
        fields.push(ctx(3, &p));
    }
    fields.push(ctx(4, &body));
    tlv(0x60 | msg_type, &seq(&fields))
}

/// An AS-REQ for `user@realm`, service `krbtgt/realm`.
pub fn as_req(realm: &str) -> Vec<u8> {
    kdc_req(10, realm, None)
}

/// A TGS-REQ addressed to `realm`, with an (empty) padata list.
pub fn tgs_req(realm: &str) -> Vec<u8> {
    kdc_req(12, realm, Some(seq(&[])))
}

/// An RFC 3244 request (`version` 0x0001 or 0xff80) whose AP-REQ carries
/// a ticket of `realm`.
pub fn kpasswd_req(version: u16, realm: &str) -> Vec<u8> {
    let ticket = tlv(
        0x61,
        &seq(&[
            ctx(0, &integer(5)),
            ctx(1, &general_string(realm)),
            ctx(2, &principal(2, &["kadmin", "changepw"])),
            ctx(3, &encrypted_data()),
        ]),
    );
    let ap_req = tlv(
        0x6e,
        &seq(&[
            ctx(0, &integer(5)),
            ctx(1, &integer(14)),
            ctx(2, &tlv(0x03, &[0, 0, 0, 0, 0])),
            ctx(3, &ticket),
            ctx(4, &encrypted_data()),
        ]),
    );
    let krb_priv = tlv(
        0x75,
        &seq(&[
            ctx(0, &integer(5)),
            ctx(1, &integer(21)),
            ctx(3, &encrypted_data()),
        ]),
    );
    let total = 6 + ap_req.len() + krb_priv.len();
    let mut out = Vec::with_capacity(total);
    out.extend((total as u16).to_be_bytes());
    out.extend(version.to_be_bytes());
    out.extend((ap_req.len() as u16).to_be_bytes());
    out.extend(ap_req);
    out.extend(krb_priv);
    out
}

/// A KRB-ERROR with `code` (e.g. 52, KRB_ERR_RESPONSE_TOO_BIG).
pub fn krb_error(code: u8, realm: &str) -> Vec<u8> {
    tlv(
        0x7e,
        &seq(&[
            ctx(0, &integer(5)),
            ctx(1, &integer(30)),
            ctx(4, &tlv(0x18, b"20250101000000Z")),
            ctx(5, &integer(0)),
            ctx(6, &integer(code)),
            ctx(9, &general_string(realm)),
            ctx(10, &principal(2, &["krbtgt", realm])),
        ]),
    )
}
