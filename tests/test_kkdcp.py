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
import signal
import socket
import ssl
import subprocess
import time

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
    # MIT's client speaks HTTP/1.0 and reads to the end of the connection:
    # each of its requests was answered and closed, on its own connection.
    ports = re.findall(r"exchange client=127\.0\.0\.1:(\d+) \S+ transport=kkdcp", log)
    assert len(ports) >= 4 and len(set(ports)) == len(ports), ports
    for kind in ("AS-REQ", "TGS-REQ", "kpasswd-0x0001"):
        assert re.search(rf"exchange client=127\.0\.0\.1:\d+ service=\w+ transport=kkdcp "
                         rf"realm={re.escape(realm.name)} type={kind} .*result=ok", log), \
            f"no {kind} exchange in:\n{log}"


def test_post_round_trip_and_log_line(proxy, pki, realm):
    status, body, headers = post(proxy, pki, proxy_message(as_req(user_of(realm), realm.name),
                                                           realm.name))
    assert status == 200
    assert headers["Content-Type"] == "application/kerberos"
    reply = parse_proxy_message(body)
    assert reply[0] == 0x7E, "KRB-ERROR (PREAUTH_REQUIRED) expected"
    # Windows sends the domain in lower case: MS-KKDCP compares it so.
    status, body, _ = post(proxy, pki, proxy_message(as_req(user_of(realm), realm.name),
                                                     realm.name.lower()))
    assert status == 200
    assert parse_proxy_message(body)[0] == 0x7E
    wait_for_log(proxy, r"exchange client=127\.0\.0\.1:\d+ service=kdc transport=kkdcp "
                        rf"realm={re.escape(realm.name)} type=AS-REQ cname=\S+ sname=\S+ kdc=\S+ "
                        r"kdc_transport=udp result=ok reply=KRB-ERROR .*reply_bytes=\d+ elapsed_us=\d+$")


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
    ("realm-case-differs", lambda r: proxy_message(as_req("u", r.name.lower()), r.name.lower()),
     403, 4403),
    ("no-target-domain", lambda r: proxy_message(as_req("u", r.name)), 400, 4400),
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
    body = proxy_message(as_req(user_of(realm), realm.name), realm.name)
    assert post(p, pki, body, path="/kerberos")[0] == 200
    assert post(p, pki, body)[0] == 404
    off = start_proxy(tls_proxy_args(pki, realm, "--no-kkdcp"))
    assert post(off, pki, body)[0] == 404


# ---------------------------------------------------------------------------
# Connections: HTTP/1.1 keep-alive, HTTP/1.0 and refusals close, deadlines


def tls_socket(proxy, pki, timeout: float = 10) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout)
    return client_ssl(pki).wrap_socket(raw, server_hostname="localhost")


def raw_request(body: bytes, version: str = "1.1", method: str = "POST",
                headers: dict | None = None) -> bytes:
    lines = [f"{method} /KdcProxy HTTP/{version}", "Host: localhost",
             "Content-Type: application/kerberos", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_response(s, buf: bytes = b"") -> tuple[int, dict, bytes]:
    """One HTTP response (Content-Length framed, as the proxy sends)."""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        assert chunk, f"closed before a response: {buf!r}"
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        assert chunk, "closed in the middle of a response body"
        rest += chunk
    assert len(rest) == n, "more bytes than one response"
    return status, headers, rest


def closed(s, within: float) -> bool:
    """True when the proxy closes the connection within `within` seconds
    (nothing else arrives first)."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return True
    except (socket.timeout, TimeoutError):
        return False


def good_message(realm) -> bytes:
    return proxy_message(as_req(user_of(realm), realm.name), realm.name)


def exchange_ports(proxy, n: int) -> list[str]:
    """The client ports of the first `n` MS-KKDCP exchange lines."""
    deadline = time.monotonic() + 5
    while True:
        ports = re.findall(r"exchange client=127\.0\.0\.1:(\d+) \S+ transport=kkdcp", proxy.log())
        if len(ports) >= n or time.monotonic() > deadline:
            assert len(ports) == n, (ports, proxy.log())
            return ports
        time.sleep(0.05)


def test_http11_keeps_the_connection_open_for_further_requests(proxy, pki, realm):
    with tls_socket(proxy, pki) as s:
        for _ in range(3):
            s.sendall(raw_request(good_message(realm)))
            status, headers, body = read_response(s)
            assert status == 200, body
            assert headers.get("connection", "").lower() != "close", headers
            assert parse_proxy_message(body)[0] == 0x7E
        # The client asks for the close: the answer, then the close.
        s.sendall(raw_request(good_message(realm), headers={"Connection": "close"}))
        status, headers, body = read_response(s)
        assert status == 200 and headers["connection"].lower() == "close", headers
        assert closed(s, 3)
    assert len(set(exchange_ports(proxy, 4))) == 1, "not one connection"


def test_http10_and_refusals_close_the_connection(proxy, pki, realm):
    # HTTP/1.0 (MIT's client), even with "Connection: keep-alive".
    for extra in ({}, {"Connection": "keep-alive"}):
        with tls_socket(proxy, pki) as s:
            s.sendall(raw_request(good_message(realm), version="1.0", headers=extra))
            status, headers, _ = read_response(s)
            assert status == 200 and headers["connection"].lower() == "close", headers
            assert closed(s, 3)
    # A refusal on a connection kept open closes it (as on the WebSocket
    # paths); nothing after it is read.
    with tls_socket(proxy, pki) as s:
        s.sendall(raw_request(good_message(realm)))
        assert read_response(s)[0] == 200
        s.sendall(raw_request(b"hello") + raw_request(good_message(realm)))
        status, headers, _ = read_response(s)
        assert status == 400 and headers["connection"].lower() == "close", headers
        assert closed(s, 3)
    exchange_ports(proxy, 3)


def test_a_silent_kept_alive_connection_is_closed_at_idle_timeout(start_proxy, pki, realm):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--idle-timeout", "2.5",
                                       "--handshake-timeout", "1"))
    with tls_socket(proxy, pki) as s:
        s.sendall(raw_request(good_message(realm)))
        assert read_response(s)[0] == 200
        answered = time.monotonic()
        assert closed(s, 8)
        elapsed = time.monotonic() - answered
    # idle_timeout: not handshake_timeout (hyper's header timer would cut
    # it there), and not never.
    assert 2.2 < elapsed < 5, elapsed
    wait_for_log(proxy, r"MS-KKDCP connection closed after 1 answer\(s\): no complete request "
                        r"within idle_timeout \(2\.5s\)")


def drip(s, data: bytes, limit: float, gap: float = 0.05) -> tuple[bytes, float, bool]:
    """Sends `data` one byte every `gap` seconds, reading in between, until
    the proxy answers or closes, or `limit` seconds pass. Returns what the
    proxy sent, when that happened, and whether it closed."""
    start = time.monotonic()
    got = b""
    for b in data:
        try:
            s.sendall(bytes([b]))
        except (OSError, ssl.SSLError):
            return got, time.monotonic() - start, True
        s.settimeout(gap)
        try:
            chunk = s.recv(65536)
            if not chunk:
                return got, time.monotonic() - start, True
            got += chunk
            return got, time.monotonic() - start, False
        except (socket.timeout, TimeoutError):
            pass
        except (ConnectionResetError, ssl.SSLError):
            return got, time.monotonic() - start, True
        if time.monotonic() - start > limit:
            break
    return got, time.monotonic() - start, False


def test_a_dripped_request_cannot_hold_a_kept_alive_connection(start_proxy, pki, realm):
    """After an answer, a next request dripped a byte at a time: headers
    that never complete are cut at idle_timeout; a body dripped after
    whole headers is answered 408 at record_timeout."""
    proxy = start_proxy(tls_proxy_args(pki, realm, "--idle-timeout", "1.5",
                                       "--record-timeout", "1"))
    request = raw_request(good_message(realm))
    head_len = request.index(b"\r\n\r\n") + 4
    with tls_socket(proxy, pki) as s:
        s.sendall(request)
        assert read_response(s)[0] == 200
        # ~300 header bytes at 20 per second would take 15 s.
        got, elapsed, was_closed = drip(s, request[:head_len - 1], limit=8)
        assert got == b"" and was_closed, got
        assert elapsed < 4, elapsed
    with tls_socket(proxy, pki) as s:
        s.sendall(request)
        assert read_response(s)[0] == 200
        s.sendall(request[:head_len])
        got, elapsed, _ = drip(s, request[head_len:], limit=8)
        status, headers, body = read_response(s, got)
        assert status == 408, body
        assert b"request timed out" in body
        assert headers["connection"].lower() == "close"
        assert elapsed < 3, elapsed
        assert closed(s, 3)
    wait_for_log(proxy, r"refused client=127\.0\.0\.1:\d+ service=kdc transport=kkdcp close=4408 "
                        r"http=408 .*body not complete within record_timeout")
    run_async(served(proxy, pki, realm))


def test_sigterm_closes_kept_alive_connections_at_once(start_proxy, pki, realm):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--idle-timeout", "60"))
    with tls_socket(proxy, pki) as s:
        s.sendall(raw_request(good_message(realm)))
        assert read_response(s)[0] == 200
        start = time.monotonic()
        proxy.proc.send_signal(signal.SIGTERM)
        assert closed(s, 5)
        assert proxy.proc.wait(timeout=5) == 0
        assert time.monotonic() - start < 3


def test_curl_sends_several_posts_on_one_connection(proxy, pki, realm, tmp_path):
    body = tmp_path / "request.der"
    body.write_bytes(good_message(realm))
    url = f"https://localhost:{proxy.port}/KdcProxy"
    outs = [tmp_path / f"reply{i}" for i in range(3)]
    cmd = ["curl", "-sS", "-v", "--http1.1", "--max-time", "20", "--cacert", str(pki.ca_cert),
           "-H", "Content-Type: application/kerberos", "--data-binary", f"@{body}"]
    for out in outs:
        cmd += ["-o", str(out), url]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("Re-using existing connection") == 2, r.stderr
    for out in outs:
        assert parse_proxy_message(out.read_bytes())[0] == 0x7E
    assert len(set(exchange_ports(proxy, 3))) == 1


# ---------------------------------------------------------------------------
# target-domain and CORS


def test_missing_target_domain_is_accepted_only_with_the_switch(start_proxy, pki, realm):
    body = proxy_message(as_req(user_of(realm), realm.name))
    p = start_proxy(tls_proxy_args(pki, realm))
    status, text, _ = post(p, pki, body)
    assert status == 400, text
    wait_for_log(p, r"refused .*transport=kkdcp close=4400 http=400 .*detail=\"no target-domain "
                    r"\(required by MS-KKDCP 3\.2\.5\.1; kkdcp_require_target_domain")
    assert " exchange client=" not in p.log()
    lax = start_proxy(tls_proxy_args(pki, realm, "--kkdcp-require-target-domain", "false"))
    status, reply, _ = post(lax, pki, body)
    assert status == 200
    assert parse_proxy_message(reply)[0] == 0x7E


APP = "https://app.example.com"


def cors_headers(headers) -> dict:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("access-control-")}


def test_cors_for_allowed_origins_only(start_proxy, pki, realm):
    p = start_proxy(tls_proxy_args(pki, realm, "--allow-origin", APP))
    preflight = {"Origin": APP, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"}
    status, _, headers = post(p, pki, b"", method="OPTIONS", headers=preflight)
    assert status == 204
    assert cors_headers(headers) == {
        "access-control-allow-origin": APP,
        "access-control-allow-methods": "POST",
        "access-control-allow-headers": "Content-Type",
        "access-control-max-age": "600",
    }, headers
    assert headers["Vary"] == "Origin"
    # The POST's answer, and a refusal's, carry the origin.
    status, body, headers = post(p, pki, good_message(realm), headers={"Origin": APP})
    assert status == 200 and parse_proxy_message(body)[0] == 0x7E
    assert headers["Access-Control-Allow-Origin"] == APP and headers["Vary"] == "Origin"
    status, _, headers = post(p, pki, b"hello", headers={"Origin": APP})
    assert status == 400 and headers["Access-Control-Allow-Origin"] == APP
    # Other origins: a plain 403 to the preflight and the POST, no CORS.
    for origin in ("https://evil.example", "null", "https://app.example.com.evil.example"):
        status, _, headers = post(p, pki, b"", method="OPTIONS",
                                  headers={**preflight, "Origin": origin})
        assert status == 403 and cors_headers(headers) == {}, headers
        status, _, headers = post(p, pki, good_message(realm), headers={"Origin": origin})
        assert status == 403 and cors_headers(headers) == {}, headers
    # Without Origin (Kerberos clients): no CORS headers; OPTIONS that is
    # not a preflight for POST: 405.
    status, _, headers = post(p, pki, good_message(realm))
    assert status == 200 and cors_headers(headers) == {}
    for asked in ({"Origin": APP}, {"Origin": APP, "Access-Control-Request-Method": "PUT"},
                  {"Access-Control-Request-Method": "POST"}):
        status, _, headers = post(p, pki, b"", method="OPTIONS", headers=asked)
        assert status == 405 and headers["Allow"] == "POST", asked
        assert "Access-Control-Allow-Methods" not in headers
    # Only forwarded POSTs reached the KDC.
    assert len(exchange_ports(p, 2)) == 2


def test_a_dripped_first_body_is_answered_408_at_handshake_timeout(start_proxy, pki, realm):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--handshake-timeout", "1"))
    request = raw_request(good_message(realm))
    head_len = request.index(b"\r\n\r\n") + 4
    for _ in range(3):  # the answer, never a bare close (the timers fire together)
        with tls_socket(proxy, pki) as s:
            s.sendall(request[:head_len])
            got, elapsed, _ = drip(s, request[head_len:], limit=8)
            status, headers, body = read_response(s, got)
            assert status == 408 and b"request timed out" in body, body
            assert headers["connection"].lower() == "close"
            assert elapsed < 3, elapsed
            assert closed(s, 3)
    wait_for_log(proxy, r"close=4408 http=408 .*body not complete within handshake_timeout")
