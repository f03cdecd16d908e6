"""End-to-end tests of krb5-wss-proxy against a real MIT KDC (k5test).

A real WebSocket client (the `websockets` package) talks to the release
binary over TLS with the test CA's certificate. Kerberos requests are
hand-encoded DER: a minimal AS-REQ for the test user is answered by the KDC
with KRB-ERROR PREAUTH_REQUIRED, which proves the round trip.
"""

from __future__ import annotations

import asyncio
import http.client
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest
import websockets
from websockets.asyncio.client import connect

from conftest import PROXY_BIN, tls_proxy_args

# ---------------------------------------------------------------------------
# DER, by hand


def der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + der_len(len(content)) + content


def integer(n: int) -> bytes:
    b = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True)
    return tlv(0x02, b)


def ctx(n: int, content: bytes) -> bytes:
    return tlv(0xA0 | n, content)


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def gstring(s: str) -> bytes:
    return tlv(0x1B, s.encode())


def principal(name_type: int, *parts: str) -> bytes:
    return seq(ctx(0, integer(name_type)), ctx(1, seq(*(gstring(p) for p in parts))))


def as_req(user: str, realm: str, nonce: int = 123456789) -> bytes:
    """A minimal AS-REQ for user@realm, for krbtgt/realm."""
    body = seq(
        ctx(0, tlv(0x03, b"\x00\x40\x00\x00\x10")),  # kdc-options: forwardable, renewable-ok
        ctx(1, principal(1, user)),
        ctx(2, gstring(realm)),
        ctx(3, principal(2, "krbtgt", realm)),
        ctx(5, tlv(0x18, b"20370913024805Z")),
        ctx(7, integer(nonce)),
        ctx(8, seq(integer(18), integer(17))),
    )
    return tlv(0x6A, seq(ctx(1, integer(5)), ctx(2, integer(10)), ctx(4, body)))


def encrypted_data(etype: int = 18) -> bytes:
    return seq(ctx(0, integer(etype)), ctx(1, integer(1)), ctx(2, tlv(0x04, b"\x00" * 32)))


def kpasswd_req(realm: str) -> bytes:
    """An RFC 3244 request that is well-formed but cryptographically junk."""
    ticket = tlv(0x61, seq(
        ctx(0, integer(5)),
        ctx(1, gstring(realm)),
        ctx(2, principal(2, "kadmin", "changepw")),
        ctx(3, encrypted_data()),
    ))
    ap_req = tlv(0x6E, seq(
        ctx(0, integer(5)),
        ctx(1, integer(14)),
        ctx(2, tlv(0x03, b"\x00\x00\x00\x00\x00")),
        ctx(3, ticket),
        ctx(4, encrypted_data()),
    ))
    krb_priv = tlv(0x75, seq(ctx(0, integer(5)), ctx(1, integer(21)), ctx(3, encrypted_data())))
    total = 6 + len(ap_req) + len(krb_priv)
    return total.to_bytes(2, "big") + b"\x00\x01" + len(ap_req).to_bytes(2, "big") + ap_req + krb_priv


def frame(record: bytes) -> bytes:
    return len(record).to_bytes(4, "big") + record


def unframe(message: bytes) -> bytes:
    n = int.from_bytes(message[:4], "big")
    assert n == len(message) - 4, f"reply framing: claims {n}, has {len(message) - 4}"
    return message[4:]


PREAUTH_REQUIRED = ctx(6, integer(25))  # error-code [6] INTEGER 25


def assert_preauth_required(message: bytes) -> None:
    reply = unframe(message)
    assert reply[0] == 0x7E, f"not a KRB-ERROR: {reply[:8].hex()}"
    assert PREAUTH_REQUIRED in reply, "KRB-ERROR is not PREAUTH_REQUIRED"


# ---------------------------------------------------------------------------
# Client helpers


def user_of(realm) -> str:
    return realm.user.split("@")[0]


def client_ssl(pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca_cert))


def ws_connect(proxy, pki, path="/kdc", subprotocols=("binary",), scheme="wss"):
    return connect(
        proxy.url(path, scheme=scheme),
        ssl=client_ssl(pki) if scheme == "wss" else None,
        subprotocols=list(subprotocols) if subprotocols is not None else None,
        compression=None,
        open_timeout=5,
        close_timeout=5,
        max_size=2 * 1024 * 1024,
    )


async def recv(ws, timeout=10) -> bytes:
    msg = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(msg, bytes), "reply must be a binary message"
    return msg


async def expect_close(ws, code: int, timeout: float = 10) -> float:
    """Waits for the proxy's close frame; returns the time it took."""
    start = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), timeout)
    rcvd = info.value.rcvd
    assert rcvd is not None, f"no close frame received ({info.value!r})"
    assert rcvd.code == code, f"close {rcvd.code} {rcvd.reason!r}, wanted {code}"
    return time.monotonic() - start


async def served(proxy, pki, realm, **kw) -> None:
    """A well-behaved client gets a real KDC answer."""
    async with ws_connect(proxy, pki, **kw) as ws:
        await ws.send(frame(as_req(user_of(realm), realm.name)))
        assert_preauth_required(await recv(ws))


def run(coro):
    return asyncio.run(coro)


def wait_for_log(proxy, pattern: str, timeout: float = 5) -> re.Match:
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, proxy.log(), re.M)
        if m or time.monotonic() > deadline:
            assert m, f"no log line matching {pattern!r} in:\n{proxy.log()}"
            return m
        time.sleep(0.05)


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# Exchanges


EXCHANGE_LINE = (
    r"exchange client=127\.0\.0\.1:\d+ service=kdc transport=websocket realm={realm} "
    r"type=AS-REQ cname=\S+@{realm} sname=krbtgt/{realm} kdc=127\.0\.0\.1:{port} kdc_transport=udp "
    r"result=ok reply=KRB-ERROR krb_error=KDC_ERR_PREAUTH_REQUIRED krb_error_code=25 "
    r"(?:e_text=.* )?reply_bytes=(\d+) elapsed_us=\d+$"
)


def test_as_req_round_trip_and_log_line(proxy, pki, realm):
    async def go():
        async with ws_connect(proxy, pki) as ws:
            assert ws.subprotocol == "binary"
            # Two exchanges on one connection (the KDC closes TCP after each).
            for nonce in (1, 2):
                await ws.send(frame(as_req(user_of(realm), realm.name, nonce)))
                reply = await recv(ws)
                assert_preauth_required(reply)
        return reply

    reply = run(go())
    m = wait_for_log(proxy, EXCHANGE_LINE.format(realm=re.escape(realm.name), port=realm.portbase))
    assert int(m.group(1)) == len(reply) - 4
    assert proxy.log().count(" exchange client=") == 2


def test_no_subprotocol_is_accepted(proxy, pki, realm):
    async def go():
        async with ws_connect(proxy, pki, subprotocols=None) as ws:
            assert ws.subprotocol is None
            await ws.send(frame(as_req(user_of(realm), realm.name)))
            assert_preauth_required(await recv(ws))

    run(go())


def test_other_subprotocols_only_get_400(proxy, pki, realm):
    async def go():
        with pytest.raises(websockets.InvalidStatus) as info:
            async with ws_connect(proxy, pki, subprotocols=("base64",)):
                pass
        assert info.value.response.status_code == 400
        await served(proxy, pki, realm)

    run(go())


def test_record_split_across_messages(proxy, pki, realm):
    async def go():
        async with ws_connect(proxy, pki) as ws:
            wire = frame(as_req(user_of(realm), realm.name))
            await ws.send(wire[:2])  # half a length prefix
            await asyncio.sleep(0.05)
            await ws.send(wire[2:30])
            await asyncio.sleep(0.05)
            await ws.send(wire[30:])
            assert_preauth_required(await recv(ws))

    run(go())


def test_two_records_in_one_message(proxy, pki, realm):
    async def go():
        async with ws_connect(proxy, pki) as ws:
            user = user_of(realm)
            await ws.send(frame(as_req(user, realm.name, 7)) + frame(as_req(user, realm.name, 8)))
            assert_preauth_required(await recv(ws))
            assert_preauth_required(await recv(ws))

    run(go())


def test_kpasswd_request_is_forwarded(proxy, pki, realm):
    """A structurally valid kpasswd request reaches kadmind's kpasswd
    service, which answers (with an error: the AP-REQ is junk)."""

    async def go():
        async with ws_connect(proxy, pki, path="/kpasswd") as ws:
            await ws.send(frame(kpasswd_req(realm.name)))
            reply = unframe(await recv(ws))
            # RFC 3244 reply header: length, then version 1; or a bare KRB-ERROR.
            assert reply[0] == 0x7E or int.from_bytes(reply[:2], "big") == len(reply)

    run(go())
    wait_for_log(proxy, r"exchange .* service=kpasswd .*type=kpasswd-0x0001 .*result=ok")


def test_second_kdc_is_tried_in_order(start_proxy, pki, realm):
    dead = closed_port()
    proxy = start_proxy([
        "--listen", "127.0.0.1:0",
        "--cert", str(pki.server_cert), "--key", str(pki.server_key),
        "--realm", f"{realm.name}=127.0.0.1:{dead}",
        "--realm", f"{realm.name}={realm.kdc_addr}",
    ])
    run(served(proxy, pki, realm))
    wait_for_log(proxy, rf"exchange .* kdc=127\.0\.0\.1:{realm.portbase} kdc_transport=udp result=ok")


# ---------------------------------------------------------------------------
# Refusals: the right close code, nothing forwarded, the next client served


def non_kerberos(realm):
    return [frame(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")]


def reserved_bit(realm):
    return [b"\x80\x00\x00\x10" + b"\x00" * 16]


def huge_claim(realm):
    return [b"\x7f\xff\xff\xff" + b"\x6a"]


def oversized_record(realm):
    # One byte over the default 256 KiB limit, in one message.
    return [frame(b"\x6a" + b"\x00" * (256 * 1024))]


def oversized_record_split(realm):
    # The claim alone is refused, before the body is sent.
    return [(256 * 1024 + 1).to_bytes(4, "big"), b"\x6a" * 1000]


def unconfigured_realm(realm):
    return [frame(as_req("user", "NOT-" + realm.name))]


def realm_case_differs(realm):
    return [frame(as_req("user", realm.name.lower()))]


def krb_error_not_request(realm):
    return [frame(tlv(0x7E, seq(ctx(0, integer(5)), ctx(1, integer(30)))))]


def text_message(realm):
    return ["hello"]


REFUSALS = [
    ("/kdc", non_kerberos, 4400),
    ("/kdc", reserved_bit, 4400),
    ("/kdc", krb_error_not_request, 4400),
    ("/kdc", huge_claim, 4413),
    ("/kdc", oversized_record, 4413),
    ("/kdc", oversized_record_split, 4413),
    ("/kdc", unconfigured_realm, 4403),
    ("/kdc", realm_case_differs, 4403),
    ("/kdc", text_message, 1003),
    ("/kpasswd", lambda realm: [frame(as_req("user", realm.name))], 4400),
    ("/kdc", lambda realm: [frame(kpasswd_req(realm.name))], 4400),
]


@pytest.mark.parametrize(
    "path,payload,code", REFUSALS,
    ids=[f"{p[1:]}-{f.__name__ if f.__name__ != '<lambda>' else 'wrong-path'}-{c}"
         for p, f, c in REFUSALS],
)
def test_refusal(proxy, pki, realm, path, payload, code):
    async def go():
        async with ws_connect(proxy, pki, path=path) as ws:
            for message in payload(realm):
                try:
                    await ws.send(message)
                except websockets.ConnectionClosed:
                    break
            elapsed = await expect_close(ws, code)
            assert elapsed < 5
        # The next, well-behaved client is served.
        await served(proxy, pki, realm)

    run(go())
    log = wait_for_log(proxy, rf"refused client=127\.0\.0\.1:\d+ service=\w+ transport=websocket close={code} ").string
    # Nothing refused was forwarded: the only exchange is the good client's.
    assert log.count(" exchange client=") == 1, log


def test_unknown_path_is_404(proxy, pki, realm):
    async def go():
        with pytest.raises(websockets.InvalidStatus) as info:
            async with ws_connect(proxy, pki, path="/nope"):
                pass
        assert info.value.response.status_code == 404
        await served(proxy, pki, realm)

    run(go())


def test_plain_get_on_kdc_path_is_refused(proxy, pki, realm):
    conn = http.client.HTTPSConnection("localhost", proxy.port, context=client_ssl(pki), timeout=5)
    conn.request("GET", "/kdc")
    r = conn.getresponse()
    assert r.status in (400, 426)
    assert r.read()
    conn.close()
    run(served(proxy, pki, realm))


def test_kdc_unreachable_is_4502(start_proxy, pki, realm):
    proxy = start_proxy([
        "--listen", "127.0.0.1:0",
        "--cert", str(pki.server_cert), "--key", str(pki.server_key),
        "--realm", f"{realm.name}=127.0.0.1:{closed_port()}",
        "--realm", f"OTHER.ORG={realm.kdc_addr}",
    ])

    async def go():
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req(user_of(realm), realm.name)))
            assert await expect_close(ws, 4502) < 5
        # The next client, for a realm whose KDC is up, is answered (the
        # KDC answers a realm it does not serve with a KRB-ERROR).
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req(user_of(realm), "OTHER.ORG")))
            assert unframe(await recv(ws))[0] == 0x7E

    run(go())
    wait_for_log(proxy, rf"exchange client=\S+ service=kdc transport=websocket realm={re.escape(realm.name)} "
                        r"type=AS-REQ cname=\S+ sname=\S+ kdc=- result=failed error=.*connect.* "
                        r"elapsed_us=\d+$")
    wait_for_log(proxy, r"refused client=\S+ service=kdc transport=websocket close=4502 ")


# ---------------------------------------------------------------------------
# Bounds


def test_connection_limit_is_4503(start_proxy, pki, realm):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--max-connections", "1"))

    async def go():
        async with ws_connect(proxy, pki) as first:
            async with ws_connect(proxy, pki) as second:
                await expect_close(second, 4503)
            # The first connection is unaffected.
            await first.send(frame(as_req(user_of(realm), realm.name)))
            assert_preauth_required(await recv(first))
        await asyncio.sleep(0.2)
        await served(proxy, pki, realm)

    run(go())
    wait_for_log(proxy, r"refused client=\S+ service=kdc transport=websocket close=4503 reason=overloaded")


def test_idle_connection_is_closed_1000(start_proxy, pki, realm):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--idle-timeout", "0.5"))

    async def go():
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req(user_of(realm), realm.name)))
            assert_preauth_required(await recv(ws))
            with pytest.raises(websockets.ConnectionClosedOK) as info:
                await asyncio.wait_for(ws.recv(), 5)
            assert info.value.rcvd.code == 1000
            assert info.value.rcvd.reason == "idle"

    run(go())


def test_incomplete_record_times_out_4408(start_proxy, pki, realm):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--record-timeout", "0.5"))

    async def go():
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req(user_of(realm), realm.name))[:10])
            elapsed = await expect_close(ws, 4408)
            assert 0.3 < elapsed < 3
        await served(proxy, pki, realm)

    run(go())


def test_silent_connection_is_dropped_after_handshake_timeout(start_proxy, pki, realm):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--handshake-timeout", "0.5"))
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        assert s.recv(1) == b""  # closed by the proxy, nothing sent
    assert time.monotonic() - start < 3
    run(served(proxy, pki, realm))
    wait_for_log(proxy, r"refused client=127\.0\.0\.1:\d+ reason=\"handshake timed out\" "
                        r"detail=\"TLS handshake not complete")


# ---------------------------------------------------------------------------
# Startup, configuration, shutdown


def startup(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROXY_BIN), *args], capture_output=True, text=True, timeout=10,
                          stdin=subprocess.DEVNULL)


def test_startup_errors_are_clear(pki, realm, tmp_path):
    base = ["--listen", "127.0.0.1:0", "--realm", f"{realm.name}={realm.kdc_addr}"]
    cases = [
        (base, "--cert"),  # TLS without certificate
        (base + ["--cert", str(tmp_path / "missing.pem"), "--key", str(pki.server_key)],
         "missing.pem"),
        (base + ["--cert", str(pki.server_cert), "--key", str(pki.rogue_key)], "do not fit"),
        (["--listen", "127.0.0.1:0", "--plaintext"], "no realm"),
        (["--listen", "127.0.0.1:0", "--plaintext", "--realm", "EXAMPLE.COM"], "EXAMPLE.COM"),
        (["--listen", "127.0.0.1:0", "--plaintext", "--realm", "R=kdc:99999"], "--realm"),
    ]
    for args, needle in cases:
        p = startup(args)
        assert p.returncode != 0, args
        assert p.stdout == "", args
        assert needle in p.stderr, f"{args}: {p.stderr}"


def test_config_file(start_proxy, pki, realm, tmp_path):
    conf = tmp_path / "proxy.toml"
    conf.write_text(
        "[server]\n"
        'listen = ["127.0.0.1:0"]\n'
        f'cert = "{pki.server_cert}"\n'
        f'key = "{pki.server_key}"\n'
        "[limits]\n"
        'idle_timeout = "30s"\n'
        f'[realms."{realm.name}"]\n'
        f'kdc = ["{realm.kdc_addr}"]\n'
    )
    proxy = start_proxy(["--config", str(conf)])
    assert proxy.listen_url.startswith("wss://127.0.0.1:")
    run(served(proxy, pki, realm))

    conf.write_text(conf.read_text() + "kdcs = []\n")
    p = startup(["--config", str(conf)])
    assert p.returncode != 0 and "unknown field" in p.stderr and "proxy.toml" in p.stderr


def test_plaintext(start_proxy, pki, realm):
    proxy = start_proxy(["--listen", "127.0.0.1:0", "--plaintext",
                         "--realm", f"{realm.name}={realm.kdc_addr}"])
    assert proxy.listen_url.startswith("ws://127.0.0.1:")
    run(served(proxy, pki, realm, scheme="ws"))


def test_sigterm_exits_zero_promptly(start_proxy, pki, realm):
    proxy = start_proxy(tls_proxy_args(pki, realm))

    async def go():
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req(user_of(realm), realm.name)))
            await recv(ws)
            # An open session does not hold the exit up.
            proxy.proc.send_signal(signal.SIGTERM)
            assert proxy.proc.wait(timeout=5) == 0

    run(go())
    assert "SIGTERM received" in proxy.log()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
