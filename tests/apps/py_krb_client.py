"""Kerberos clients in pure Python, without libkrb5: minikerberos and impacket.

    py_krb_client.py MODE KDC_HOST:PORT USER@REALM SERVICE/HOST OUT_DIR [KEYTAB]
    (the password on stdin; MODE below)

Gets a TGT (AS exchange with encrypted-timestamp preauth) and, unless MODE
ends in -tgt, a service ticket for SERVICE/HOST (TGS exchange) from the KDC
at KDC_HOST:PORT over TCP, the only transport either library implements.
With KEYTAB it decrypts the service ticket with the service's own key (key
usage 2) to show that it is a real ticket for USER. Prints one JSON line
({"tgt", "service_ticket", "ticket_client", "exchanges": ["host:port", ...]});
exits 1 with "error" in the JSON on failure.

minikerberos (PyPI `minikerberos` 0.4.9), modes minikerberos-tgt, minikerberos:
its library API (`AIOKerberosClient` with `KerberosTarget(ip, port=PORT)`):
it takes a port and reads MIT's AS-REP, and the TGT is saved as an MIT ccache
(OUT_DIR/tgt.ccache) with its own writer.

impacket (PyPI `impacket` 0.13.1), modes impacket-tgt, impacket,
impacket-stock-tgt: its library API, `impacket.krb5.kerberosv5.getKerberosTGT`
/ `getKerberosTGS` (what getTGT.py and getST.py call), with shims, each
wrapping one name of impacket's modules and changing nothing else:
  port     impacket has no setting for the KDC's port: its one socket
           function, `kerberosv5.sendReceive(data, host, kdcHost, port=88)`,
           is always called without `port` (getTGT.py/getST.py have only
           -dc-ip); it is wrapped to pass PORT. (All modes.)
  as-rep   an MIT KDC encrypts the AS-REP's enc-part as an EncTGSRepPart
           ([APPLICATION 26], which RFC 4120 5.4.2 allows); impacket decodes
           it only as EncASRepPart ([APPLICATION 25]) and fails with
           "<TagSet ... 64:32:26> not in asn1Spec: <EncASRepPart ...>". The
           shim lets that decode fall back to EncTGSRepPart. (Not in
           impacket-stock-tgt, which shows the failure.)
TGS checksum (both libraries, modes minikerberos and impacket; not in
minikerberos-stock, which shows the failure): neither puts
the checksum of the KDC-REQ-BODY in the TGS-REQ's authenticator (RFC 4120
7.2.2 / 5.5.1: "cksum" of the req-body, key usage 6), which MIT's KDC
requires: it answers KRB_AP_ERR_INAPP_CKSUM ("Inappropriate type of checksum
in message"; the KDC logs authtime 0). The shim takes the TGS-REQ the
library built, just before it is sent, adds that checksum (the session key's
keyed checksum, e.g. hmac-sha1-96-aes256) to the authenticator and encrypts
it again with the TGT session key; the library's own code sends the request
and decodes the reply. Their ccache writers are not used for service tickets
(impacket's also assumes a starttime that MIT's replies omit).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

# enctype -> its keyed checksum (RFC 3962: aes256 -> hmac-sha1-96-aes256 16,
# aes128 -> hmac-sha1-96-aes128 15; RFC 8009: 20 -> 20, 19 -> 19).
CKSUM_FOR_ETYPE = {18: 16, 17: 15, 20: 20, 19: 19}
KU_TGS_REQ_AUTH_CKSUM = 6
KU_TGS_REQ_AUTH = 7


def untag(der: bytes) -> bytes:
    """The contents of one DER TLV: a req-body as the libraries encode it
    keeps its [4] EXPLICIT tag, and the checksum covers the KDC-REQ-BODY
    SEQUENCE inside it."""
    n = der[1]
    if n < 0x80:
        return der[2:2 + n]
    k = n & 0x7F
    length = int.from_bytes(der[2:2 + k], "big")
    return der[2 + k:2 + k + length]


def decrypt_ticket(etype: int, key_bytes: bytes, cipher: bytes) -> str:
    """The client principal inside a ticket, decrypted with the service key."""
    from impacket.krb5.asn1 import EncTicketPart
    from impacket.krb5.crypto import Key, _enctype_table
    from pyasn1.codec.der import decoder

    plain = _enctype_table[etype].decrypt(Key(etype, key_bytes), 2, cipher)
    part = decoder.decode(plain, asn1Spec=EncTicketPart())[0]
    cname = "/".join(str(c) for c in part["cname"]["name-string"])
    return f"{cname}@{part['crealm']}"


def keytab_key(keytab: str, principal: str, etype: int) -> bytes:
    from impacket.krb5.keytab import Keytab

    kb = Keytab.loadFile(keytab).getKey(principal, specificEncType=etype, ignoreRealm=False)
    if kb is None:
        raise RuntimeError(f"no key of etype {etype} for {principal} in {keytab}")
    return kb["keyvalue"]["data"]


# ---------------------------------------------------------------------------
# impacket


def run_impacket(host: str, port: int, user: str, password: str, service: str, out_dir: Path,
                 keytab: str | None, out: dict, as_rep_shim: bool, tgs: bool) -> None:
    from impacket.krb5 import constants, kerberosv5
    from impacket.krb5.asn1 import AP_REQ, TGS_REP, TGS_REQ, Authenticator, EncASRepPart, EncTGSRepPart
    from impacket.krb5.crypto import _checksum_table, _enctype_table
    from impacket.krb5.types import Principal
    from pyasn1.codec.der import decoder, encoder

    # Shim "port".
    original_send = kerberosv5.sendReceive

    def send_receive(data, domain, kdc_host, port_=88):
        out["exchanges"].append(f"{kdc_host}:{port}")
        return original_send(data, domain, kdc_host, port)

    kerberosv5.sendReceive = send_receive

    class Shimmed:
        """kerberosv5's `decoder` / `encoder`, with one function replaced."""

        def __init__(self, module, **replace):
            self._module = module
            self.__dict__.update(replace)

        def __getattr__(self, name):
            return getattr(self._module, name)

    # Shim "as-rep".
    if as_rep_shim:
        def decode(substrate, asn1Spec=None, **kw):
            if isinstance(asn1Spec, EncASRepPart):
                try:
                    return decoder.decode(substrate, asn1Spec=asn1Spec, **kw)
                except Exception:  # noqa: BLE001 - MIT's [APPLICATION 26]
                    return decoder.decode(substrate, asn1Spec=EncTGSRepPart(), **kw)
            return decoder.decode(substrate, asn1Spec=asn1Spec, **kw)

        kerberosv5.decoder = Shimmed(decoder, decode=decode)

    # Shim "TGS checksum": the TGT session key, set before getKerberosTGS.
    tgs_key: list = []

    def encode(value, **kw):
        if isinstance(value, TGS_REQ) and tgs_key:
            key = tgs_key[0]
            body = untag(encoder.encode(value["req-body"]))
            ap_req = decoder.decode(value["padata"][0]["padata-value"], asn1Spec=AP_REQ())[0]
            cipher = _enctype_table[key.enctype]
            auth = decoder.decode(cipher.decrypt(key, KU_TGS_REQ_AUTH, ap_req["authenticator"]["cipher"]),
                                  asn1Spec=Authenticator())[0]
            ctype = CKSUM_FOR_ETYPE[key.enctype]
            auth["cksum"]["cksumtype"] = ctype
            auth["cksum"]["checksum"] = _checksum_table[ctype].checksum(key, KU_TGS_REQ_AUTH_CKSUM, body)
            ap_req["authenticator"]["cipher"] = cipher.encrypt(key, KU_TGS_REQ_AUTH, encoder.encode(auth), None)
            value["padata"][0]["padata-value"] = encoder.encode(ap_req)
        return encoder.encode(value, **kw)

    kerberosv5.encoder = Shimmed(encoder, encode=encode)

    name, realm = user.split("@", 1)
    client = Principal(name, type=constants.PrincipalNameType.NT_PRINCIPAL.value)
    tgt, cipher, _old_key, session_key = kerberosv5.getKerberosTGT(
        client, password, realm, "", "", "", kdcHost=host)
    out["tgt"] = f"{user} for krbtgt/{realm}@{realm}"
    if not tgs:
        return

    tgs_key.append(session_key)
    server = Principal(service, type=constants.PrincipalNameType.NT_SRV_INST.value)
    rep_bytes, _c, _k, _service_session_key = kerberosv5.getKerberosTGS(
        server, realm, host, tgt, cipher, session_key)
    rep = decoder.decode(rep_bytes, asn1Spec=TGS_REP())[0]
    sname = "/".join(str(c) for c in rep["ticket"]["sname"]["name-string"])
    out["service_ticket"] = f"{sname}@{rep['ticket']['realm']}"
    if keytab:
        etype = int(rep["ticket"]["enc-part"]["etype"])
        key = keytab_key(keytab, f"{service}@{realm}", etype)
        out["ticket_client"] = decrypt_ticket(etype, key, rep["ticket"]["enc-part"]["cipher"].asOctets())


# ---------------------------------------------------------------------------
# minikerberos


async def run_minikerberos(host: str, port: int, user: str, password: str, service: str, out_dir: Path,
                           keytab: str | None, out: dict, tgs: bool, checksum_shim: bool = True) -> None:
    from minikerberos.aioclient import AIOKerberosClient
    from minikerberos.common.creds import KerberosCredential
    from minikerberos.common.spn import KerberosSPN
    from minikerberos.common.target import KerberosTarget
    from minikerberos.protocol.asn1_structs import AP_REQ, TGS_REQ, Authenticator, Checksum
    from minikerberos.protocol.encryption import _checksum_table

    name, realm = user.split("@", 1)
    cred = KerberosCredential()
    cred.username = name
    cred.domain = realm
    cred.password = password
    target = KerberosTarget(host, port=port, timeout=10)
    client = AIOKerberosClient(cred, target)

    # Record each request with its destination (the library's own socket).
    ksoc = client.ksoc
    original_sendrecv = ksoc.sendrecv

    async def sendrecv(data, throw=False):
        out["exchanges"].append(f"{ksoc.target.get_hostname_or_ip()}:{ksoc.target.port}")
        if data[:1] == b"\x6c" and checksum_shim:  # [APPLICATION 12] TGS-REQ: shim "TGS checksum"
            data = add_tgs_checksum(data)
        return await original_sendrecv(data, throw)

    def add_tgs_checksum(data: bytes) -> bytes:
        key, cipher = client.kerberos_session_key, client.kerberos_cipher
        req = TGS_REQ.load(data).native
        body = untag(TGS_REQ.load(data)["req-body"].dump())
        ap_req = AP_REQ.load(req["padata"][0]["padata-value"]).native
        auth = Authenticator.load(cipher.decrypt(key, KU_TGS_REQ_AUTH, ap_req["authenticator"]["cipher"])).native
        ctype = CKSUM_FOR_ETYPE[key.enctype]
        auth["cksum"] = Checksum({"cksumtype": ctype,
                                  "checksum": _checksum_table[ctype].checksum(key, KU_TGS_REQ_AUTH_CKSUM, body)})
        ap_req["authenticator"]["cipher"] = cipher.encrypt(key, KU_TGS_REQ_AUTH, Authenticator(auth).dump(), None)
        req["padata"][0]["padata-value"] = AP_REQ(ap_req).dump()
        return TGS_REQ(req).dump()

    ksoc.sendrecv = sendrecv

    await client.get_TGT()
    out["tgt"] = f"{user} for krbtgt/{realm}@{realm}"
    client.ccache.to_file(str(out_dir / "tgt.ccache"))
    if not tgs:
        return

    rep, _enc_part, _key = await client.get_TGS(KerberosSPN.from_spn(f"{service}@{realm}"))
    sname = "/".join(rep["ticket"]["sname"]["name-string"])
    out["service_ticket"] = f"{sname}@{rep['ticket']['realm']}"
    if keytab:
        etype = int(rep["ticket"]["enc-part"]["etype"])
        key = keytab_key(keytab, f"{service}@{realm}", etype)
        out["ticket_client"] = decrypt_ticket(etype, key, rep["ticket"]["enc-part"]["cipher"])


def main() -> int:
    mode, kdc, user, service, out_dir = sys.argv[1:6]
    keytab = sys.argv[6] if len(sys.argv) > 6 else None
    host, port_s = kdc.rsplit(":", 1)
    port = int(port_s)
    password = sys.stdin.readline().rstrip("\n")
    out_path = Path(out_dir)
    out_path.mkdir(parents=True, exist_ok=True)
    out: dict = {"mode": mode, "kdc": kdc, "exchanges": []}
    start = time.monotonic()
    try:
        if mode in ("impacket", "impacket-tgt", "impacket-stock-tgt"):
            run_impacket(host, port, user, password, service, out_path, keytab, out,
                         as_rep_shim=mode != "impacket-stock-tgt", tgs=mode == "impacket")
        elif mode in ("minikerberos", "minikerberos-tgt", "minikerberos-stock"):
            asyncio.run(run_minikerberos(host, port, user, password, service, out_path, keytab, out,
                                         tgs=mode != "minikerberos-tgt",
                                         checksum_shim=mode != "minikerberos-stock"))
        else:
            raise SystemExit(f"unknown mode {mode}")
        out["seconds"] = round(time.monotonic() - start, 3)
        print(json.dumps(out))
        return 0
    except Exception as e:  # noqa: BLE001 - report whatever the library raised
        out["error"] = f"{type(e).__name__}: {e}"[:600]
        print(json.dumps(out))
        return 1


if __name__ == "__main__":
    sys.exit(main())
