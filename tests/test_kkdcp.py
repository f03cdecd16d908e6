"""MS-KKDCP (`POST /KdcProxy`) on the proxy's listener.

The client here is MIT's own: `kdc = https://…/KdcProxy` with per-realm
`http_anchors`, which needs Debian's krb5-k5tls. No plugin is involved
(the commands run without it), so this is the drop-in replacement for
kdcproxy: kinit, kvno and kpasswd against a real MIT KDC through the proxy.
Raw POSTs check the refusals.
"""

from __future__ import annotations

import http.client
import re

import pytest

from conftest import client_env, run, tls_proxy_args, write_krb5_conf
from test_proxy import as_req, client_ssl, kpasswd_req, served, tlv, user_of, wait_for_log
from test_proxy import run as run_async

K5TLS = "/usr/lib/x86_64-linux-gnu/krb5/plugins/tls/k5tls.so"


def proxy_message(record: bytes, target: str | None = None, prefix: bytes | None = None) -> bytes:
    """A KDC-PROXY-MESSAGE: kerb-message [0] OCTET STRING (with the TCP
    length prefix), target-domain [1] GeneralString OPTIONAL."""
    framed = (prefix if prefix is not None else len(record).to_bytes(4, "big")) + record
    fields = tlv(0xA0, tlv(0x04, framed))
    if target is not None:
        fields += tlv(0xA1, tlv(0x1B, target.encode()))
    return tlv(0x30, fields)


def parse_proxy_message(body: bytes) -> bytes:
    """The framed Kerberos message of a KDC-PROXY-MESSAGE reply, unframed."""

    def read(b: bytes, tag: int) -> tuple[bytes, bytes]:
        assert b[0] == tag, f"tag {b[0]:#x}, wanted {tag:#x}"
        n, i = b[1], 2
        if n & 0x80:
            k = n & 0x7F
            n, i = int.from_bytes(b[2:2 + k], "big"), 2 + k
        return b[i:i + n], b[i + n:]

    seq, rest = read(body, 0x30)
    assert rest == b""
    field, _ = read(seq, 0xA0)
    framed, _ = read(field, 0x04)
    assert int.from_bytes(framed[:4], "big") == len(framed) - 4
    return framed[4:]


def post(proxy, pki, body: bytes, path: str = "/KdcProxy", method: str = "POST",
         headers: dict | None = None) -> tuple[int, bytes, http.client.HTTPMessage]:
    conn = http.client.HTTPSConnection("localhost", proxy.port, context=client_ssl(pki), timeout=10)
    try:
        conn.request(method, path, body=body,
                     headers={"Content-Type": "application/kerberos", **(headers or {})})
        r = conn.getresponse()
        return r.status, r.read(), r.headers
    finally:
        conn.close()


@pytest.fixture
def native_env(realm, proxy, pki, tmp_path):
    """MIT's native MS-KKDCP client configuration: no plugin, https URLs."""
    url = f"https://localhost:{proxy.port}/KdcProxy"
    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {
        "kdc": url,
        "kpasswd_server": url,
        "http_anchors": f"FILE:{pki.ca_cert}",
    }})
    return client_env(tmp_path, conf, KRB5_TRACE="/dev/stderr")


def test_k5tls_is_installed():
    import os

    assert os.path.exists(K5TLS), "MIT's native MS-KKDCP client needs Debian's krb5-k5tls"


def test_mit_kinit_kvno_kpasswd_over_kkdcp(native_env, proxy, realm):
    r = run(["kinit", realm.user], native_env, input=realm.password + "\n")
    assert r.returncode == 0, r.output
    # The trace shows the HTTPS transport, not a direct KDC connection.
    assert re.search(r"Sending HTTPS request to https 127\.0\.0\.1:\d+", r.stderr) or \
        "HTTPS" in r.stderr, r.stderr
    r = run(["kvno", realm.host_princ], native_env)
    assert r.returncode == 0, r.output
    assert "kvno = " in r.stdout

    princ = f"kkdcpuser@{realm.name}"
    realm.addprinc(princ, "old-password-1")
    r = run(["kpasswd", princ], native_env,
            input="old-password-1\nnew-password-2\nnew-password-2\n")
    assert r.returncode == 0, r.output
    assert "Password changed" in r.output, r.output
    r = run(["kinit", princ], native_env, input="new-password-2\n")
    assert r.returncode == 0, r.output

    log = proxy.log()
    for kind in ("AS-REQ", "TGS-REQ", "kpasswd-0x0001"):
        assert re.search(rf"exchange client=127\.0\.0\.1:\d+ service=\w+ transport=kkdcp "
                         rf"realm={re.escape(realm.name)} type={kind} .*result=ok", log), \
            f"no {kind} exchange in:\n{log}"


def test_post_round_trip_and_log_line(proxy, pki, realm):
    status, body, headers = post(proxy, pki, proxy_message(as_req(user_of(realm), realm.name),
                                                           realm.name))
    assert status == 200
    assert headers["Content-Type"] == "application/kerberos"
    assert headers.get("Connection", "").lower() == "close"
    reply = parse_proxy_message(body)
    assert reply[0] == 0x7E, "KRB-ERROR (PREAUTH_REQUIRED) expected"
    # Without target-domain too (it is optional).
    status, body, _ = post(proxy, pki, proxy_message(as_req(user_of(realm), realm.name)))
    assert status == 200
    wait_for_log(proxy, r"exchange client=127\.0\.0\.1:\d+ service=kdc transport=kkdcp "
                        rf"realm={re.escape(realm.name)} type=AS-REQ cname=\S+ sname=\S+ kdc=\S+ "
                        r"kdc_transport=tcp result=ok reply=KRB-ERROR .*reply_bytes=\d+ elapsed_us=\d+$")


def test_kpasswd_message_goes_to_the_kpasswd_server(proxy, pki, realm):
    status, body, _ = post(proxy, pki, proxy_message(kpasswd_req(realm.name), realm.name))
    assert status == 200
    assert parse_proxy_message(body)
    wait_for_log(proxy, rf"exchange .* service=kpasswd transport=kkdcp .*"
                        rf"kdc=127\.0\.0\.1:{realm.portbase + 2} .*result=ok")


REFUSALS = [
    ("garbage", lambda r: b"hello", 400, 4400),
    ("bad-length-prefix", lambda r: proxy_message(as_req("u", r.name), r.name, b"\x00\x00\x00\x01"),
     400, 4400),
    ("not-a-request", lambda r: proxy_message(tlv(0x7E, tlv(0x30, b"")), r.name), 400, 4400),
    ("target-domain-differs", lambda r: proxy_message(as_req("u", r.name), "OTHER.ORG"), 400, 4400),
    ("unconfigured-realm", lambda r: proxy_message(as_req("u", "OTHER.ORG"), "OTHER.ORG"), 403, 4403),
    ("realm-case-differs", lambda r: proxy_message(as_req("u", r.name.lower())), 403, 4403),
    ("oversized", lambda r: proxy_message(b"\x6a" * (256 * 1024 + 1)), 413, 4413),
]


@pytest.mark.parametrize("name,body,status,code", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals(proxy, pki, realm, name, body, status, code):
    got, text, headers = post(proxy, pki, body(realm))
    assert got == status, text
    assert headers.get("Connection", "").lower() == "close"
    log = wait_for_log(proxy, rf"refused client=127\.0\.0\.1:\d+ service=\w+ transport=kkdcp "
                              rf"close={code} http={status} ").string
    assert " exchange client=" not in log, "a refused request was forwarded"
    run_async(served(proxy, pki, realm))


def test_only_post(proxy, pki):
    status, _, headers = post(proxy, pki, b"", method="GET")
    assert status == 405 and headers["Allow"] == "POST"


def test_custom_path_and_off(start_proxy, pki, realm):
    p = start_proxy(tls_proxy_args(pki, realm, "--kkdcp-path", "/kerberos"))
    body = proxy_message(as_req(user_of(realm), realm.name))
    assert post(p, pki, body, path="/kerberos")[0] == 200
    assert post(p, pki, body)[0] == 404
    off = start_proxy(tls_proxy_args(pki, realm, "--no-kkdcp"))
    assert post(off, pki, body)[0] == 404
