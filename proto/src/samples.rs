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
    kdc_req_names(msg_type, realm, padata, Some(&["user"]), &["krbtgt", realm])
}

fn kdc_req_names(
    msg_type: u8,
    realm: &str,
    padata: Option<Vec<u8>>,
    cname: Option<&[&str]>,
    sname: &[&str],
) -> Vec<u8> {
    let mut body = vec![ctx(0, &tlv(0x03, &[0, 0x40, 0, 0, 0x10]))];
    if let Some(c) = cname {
        body.push(ctx(1, &principal(1, c)));
    }
    body.extend([
        ctx(2, &general_string(realm)),
        ctx(3, &principal(2, sname)),
        ctx(5, &tlv(0x18, b"20370913024805Z")),
        ctx(7, &integer(42)),
        ctx(8, &seq(&[integer(18), integer(17)])),
    ]);
    let body = seq(&body);
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

/// An AS-REQ for `client@realm`, service `sname` (components).
pub fn as_req_for(realm: &str, client: &str, sname: &[&str]) -> Vec<u8> {
    kdc_req_names(10, realm, None, Some(&[client]), sname)
}

/// A TGS-REQ addressed to `realm`, with an (empty) padata list.
pub fn tgs_req(realm: &str) -> Vec<u8> {
    kdc_req(12, realm, Some(seq(&[])))
}

/// A TGS-REQ addressed to `realm` for service `sname` (components), with
/// no cname, as clients send it.
pub fn tgs_req_for(realm: &str, sname: &[&str]) -> Vec<u8> {
    kdc_req_names(12, realm, Some(seq(&[])), None, sname)
}

/// An AS-REP for `client@realm` (ticket and enc-part are placeholders).
pub fn as_rep(realm: &str, client: &str) -> Vec<u8> {
    let ticket = tlv(
        0x61,
        &seq(&[
            ctx(0, &integer(5)),
            ctx(1, &general_string(realm)),
            ctx(2, &principal(2, &["krbtgt", realm])),
            ctx(3, &encrypted_data()),
        ]),
    );
    tlv(
        0x6b,
        &seq(&[
            ctx(0, &integer(5)),
            ctx(1, &integer(11)),
            ctx(3, &general_string(realm)),
            ctx(4, &principal(1, &[client])),
            ctx(5, &ticket),
            ctx(6, &encrypted_data()),
        ]),
    )
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
    krb_error_with(code, realm, None)
}

/// A KRB-ERROR with `code` and an e-text.
pub fn krb_error_text(code: u8, realm: &str, e_text: &str) -> Vec<u8> {
    krb_error_with(code, realm, Some(e_text))
}

fn krb_error_with(code: u8, realm: &str, e_text: Option<&str>) -> Vec<u8> {
    let mut fields = vec![
        ctx(0, &integer(5)),
        ctx(1, &integer(30)),
        ctx(4, &tlv(0x18, b"20250101000000Z")),
        ctx(5, &integer(0)),
        ctx(6, &integer(code)),
        ctx(9, &general_string(realm)),
        ctx(10, &principal(2, &["krbtgt", realm])),
    ];
    if let Some(t) = e_text {
        fields.push(ctx(11, &general_string(t)));
    }
    tlv(0x7e, &seq(&fields))
}
