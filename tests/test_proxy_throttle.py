"""krb5-wss-proxy's password-guessing throttle (issue 12, item 3): the
KDC's pre-authentication failures of AS exchanges are counted per
(client address, principal), per address and per principal; past a
threshold that key's AS-REQs are refused (close 4423, KKDCP 429) and never
reach the KDC, while the principal's own user from another address keeps
working until the principal-wide threshold trips. Real proxy, real MIT KDC,
MIT's kinit through the plugin; other client addresses are 127.0.0.2 and
up (a TCP forwarder whose outgoing connections come from there, for the
plugin; a bound socket for raw WebSocket requests)."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import PROXY_BIN, free_ports, tls_proxy_args, wss_client
from test_kkdcp import post, proxy_message
from test_proxy import client_ssl, expect_close, frame, recv, run, unframe, wait_for_log
from websockets.asyncio.client import connect
from test_proxy_audit import as_req_for, kdc_log, kdc_log_end, metrics, metrics_url

THROTTLED = 4423
WRONG = "not-the-password"


class Forwarder:
    """Forwards TCP connections from 127.0.0.1:`port` (its own) to the
    proxy's port; its connections to the proxy come from `source`."""

    def __init__(self, target: int, source: str):
        self.target, self.source = target, source
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.target), timeout=10,
                                              source_address=(self.source, 0))
            except OSError:
                down.close()
                continue
            up.settimeout(None)
            for a, b in ((down, up), (up, down)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()


def ws_from(proxy, pki, source: str):
    """A WebSocket to the proxy's /kdc whose TCP connection comes from `source`."""
    return connect(proxy.url("/kdc"), ssl=client_ssl(pki), subprotocols=["binary"],
                   compression=None, open_timeout=5, close_timeout=5,
                   local_addr=(source, 0))


def counter(text: str, sample: str) -> int:
    m = re.search(rf"^{re.escape(sample)} (\d+)$", text, re.M)
    assert m, f"no {sample} in\n{text}"
    return int(m.group(1))


def start(start_proxy, pki, realm, *flags: str):
    return start_proxy(tls_proxy_args(pki, realm, "--metrics-listen", "127.0.0.1:0", *flags))


def user(realm) -> str:
    return realm.user.split("@")[0]


async def answer(proxy, pki, realm, name: str, source: str = "127.0.0.1") -> bytes:
    """A raw AS-REQ for `name` from `source`: the KDC's reply (unframed)."""
    async with ws_from(proxy, pki, source) as ws:
        await ws.send(frame(as_req_for(name, realm.name, "krbtgt", realm.name)))
        return unframe(await recv(ws))


async def refused(proxy, pki, realm, name: str, source: str = "127.0.0.1") -> None:
    async with ws_from(proxy, pki, source) as ws:
        await ws.send(frame(as_req_for(name, realm.name, "krbtgt", realm.name)))
        await expect_close(ws, THROTTLED)


def is_krb_error(reply: bytes) -> bool:
    return reply[:1] == b"\x7e"


def as_reqs_for(kdc: str, name: str) -> list[str]:
    return [line for line in kdc.splitlines() if "AS_REQ" in line and f"{name}@" in line]


def bystander(realm) -> str:
    """A second principal of the realm (with pre-authentication)."""
    name = "bystander"
    try:
        realm.addprinc(f"{name}@{realm.name}", "bystander-password")
    except Exception:  # already there (the realm is the module's)
        pass
    return name


def test_pair_threshold_refuses_that_address_only(start_proxy, pki, realm, plugin_dir,
                                                  tmp_path):
    other = bystander(realm)
    proxy = start(start_proxy, pki, realm, "--throttle-pair-failures", "3",
                  "--throttle-address-failures", "100", "--throttle-principal-failures", "100")
    url = metrics_url(proxy)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    for _ in range(3):
        r = client.kinit(password=WRONG)
        assert r.returncode != 0, r.output
        assert "4423" not in r.output, r.output
    name = re.escape(realm.user)
    wait_for_log(proxy, rf"throttle key=pair address=127\.0\.0\.1 principal={name} "
                        r"threshold=3 window_s=300 cooldown_s=300$")

    # Now even the right password, from this address, never reaches the KDC.
    mark = kdc_log_end(realm)
    r = client.kinit()
    assert r.returncode != 0, r.output
    assert "4423" in r.output, r.output
    wait_for_log(proxy, r"refused client=127\.0\.0\.1:\d+ service=kdc transport=websocket "
                        rf"close={THROTTLED} reason=\"throttled: too many failed logins\" "
                        rf".*type=AS-REQ cname={name} .*detail=\"pair key: 3 pre-authentication "
                        r"failures within 300s; refused for \d+s more\"")
    run(refused(proxy, pki, realm, user(realm)))
    # MS-KKDCP: 429.
    status, body, _ = post(proxy, pki, proxy_message(
        as_req_for(user(realm), realm.name, "krbtgt", realm.name), realm.name))
    assert status == 429, (status, body)
    assert b"throttled" in body, body
    assert as_reqs_for(kdc_log(realm, mark), user(realm)) == [], kdc_log(realm, mark)

    # A well-behaved client (another principal, same address) is served
    # right after each refusal ...
    assert is_krb_error(run(answer(proxy, pki, realm, other)))
    # ... and the same principal from another address logs in: with the
    # plugin through 127.0.0.2, raw from 127.0.0.3.
    fwd = Forwarder(proxy.port, "127.0.0.2")
    try:
        elsewhere = wss_client(realm, fwd.port, pki, plugin_dir, tmp_path / "e")
        r = elsewhere.kinit()
        assert r.returncode == 0, r.output
    finally:
        fwd.close()
    assert is_krb_error(run(answer(proxy, pki, realm, user(realm), "127.0.0.3")))
    assert len(as_reqs_for(kdc_log(realm, mark), user(realm))) >= 2

    text = metrics(url)
    assert 'krb5_wss_proxy_throttle_trips_total{key="pair"} 1' in text, text
    assert 'krb5_wss_proxy_throttle_trips_total{key="principal"} 0' in text, text
    assert counter(text, 'krb5_wss_proxy_throttled_total{key="pair"}') >= 3, text
    assert 'krb5_wss_proxy_refusals_total{code="4423",' in text
    assert proxy.alive()


def test_principal_threshold_trips_across_addresses(start_proxy, pki, realm, plugin_dir,
                                                    tmp_path):
    other = bystander(realm)
    proxy = start(start_proxy, pki, realm, "--throttle-pair-failures", "100",
                  "--throttle-address-failures", "100", "--throttle-principal-failures", "3")
    url = metrics_url(proxy)
    forwarders = [Forwarder(proxy.port, f"127.0.0.{i}") for i in (2, 3, 4)]
    try:
        # One wrong password from each of three addresses.
        for i, fwd in enumerate(forwarders):
            c = wss_client(realm, fwd.port, pki, plugin_dir, tmp_path / f"c{i}")
            r = c.kinit(password=WRONG)
            assert r.returncode != 0 and "4423" not in r.output, r.output
        wait_for_log(proxy, rf"throttle key=principal principal={re.escape(realm.user)} "
                            r"threshold=3 window_s=300 cooldown_s=300$")
        # The principal is refused from everywhere, right password or not.
        mark = kdc_log_end(realm)
        c = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "d")
        r = c.kinit()
        assert r.returncode != 0 and "4423" in r.output, r.output
        run(refused(proxy, pki, realm, user(realm), "127.0.0.9"))
        assert as_reqs_for(kdc_log(realm, mark), user(realm)) == []
        wait_for_log(proxy, rf"close={THROTTLED} .*detail=\"principal key: 3 ")
        # Other principals are served, from the same addresses.
        assert is_krb_error(run(answer(proxy, pki, realm, other, "127.0.0.2")))
        assert is_krb_error(run(answer(proxy, pki, realm, other)))
    finally:
        for f in forwarders:
            f.close()
    text = metrics(url)
    assert 'krb5_wss_proxy_throttle_trips_total{key="principal"} 1' in text, text
    assert 'krb5_wss_proxy_throttle_trips_total{key="pair"} 0' in text, text
    assert counter(text, 'krb5_wss_proxy_throttled_total{key="principal"}') >= 2, text


def test_address_threshold_refuses_every_principal_from_it(start_proxy, pki, realm,
                                                           plugin_dir, tmp_path):
    other = bystander(realm)
    proxy = start(start_proxy, pki, realm, "--throttle-pair-failures", "100",
                  "--throttle-address-failures", "2", "--throttle-principal-failures", "100")
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    # A spray: one guess each for two principals.
    for princ in (realm.user, f"{other}@{realm.name}"):
        r = client.kinit(princ, password=WRONG)
        assert r.returncode != 0 and "4423" not in r.output, r.output
    wait_for_log(proxy, r"throttle key=address address=127\.0\.0\.1 threshold=2 ")
    run(refused(proxy, pki, realm, "anyone-else"))
    wait_for_log(proxy, rf"close={THROTTLED} .*detail=\"address key: 2 ")
    # Another address: served, for the same principals.
    assert is_krb_error(run(answer(proxy, pki, realm, other, "127.0.0.2")))
    assert is_krb_error(run(answer(proxy, pki, realm, user(realm), "127.0.0.2")))


def test_throttle_off_forwards_every_guess(start_proxy, pki, realm, plugin_dir, tmp_path):
    proxy = start(start_proxy, pki, realm, "--throttle", "false",
                  "--throttle-pair-failures", "1")
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    for _ in range(2):
        r = client.kinit(password=WRONG)
        assert r.returncode != 0 and "4423" not in r.output, r.output
    r = client.kinit()
    assert r.returncode == 0, r.output
    assert "throttle key=" not in proxy.log()


def test_wrong_password_is_preauth_failed_through_the_proxy(start_proxy, pki, realm,
                                                            plugin_dir, tmp_path):
    """What the throttle counts is what MIT's KDC answers for a wrong
    password (KDC_ERR_PREAUTH_FAILED), read from the audit line."""
    proxy = start(start_proxy, pki, realm)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    r = client.kinit(password=WRONG)
    assert r.returncode != 0, r.output
    wait_for_log(proxy, r"exchange .*type=AS-REQ .*krb_error=KDC_ERR_PREAUTH_FAILED "
                        r"krb_error_code=24 ")
    # One failure is far from the default thresholds (5/20/50).
    assert "throttle key=" not in proxy.log()
    assert asyncio.run(answer(proxy, pki, realm, user(realm)))[:1] == b"\x7e"


def test_check_config_names_the_throttle(pki, realm):
    def check(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(PROXY_BIN), "--check-config", *tls_proxy_args(pki, realm),
                               *flags], capture_output=True, text=True, timeout=20)

    p = check()
    assert p.returncode == 0, p.stderr
    assert ("throttle pair=5 address=20 principal=50 failures per 300s, cooldown 300s, "
            "max_keys 100000, store local") in p.stdout, p.stdout
    p = check("--throttle-store", "redis://127.0.0.1:6379", "--throttle-window", "2m")
    assert p.returncode == 0, p.stderr
    assert "per 120s" in p.stdout and "store redis://127.0.0.1:6379" in p.stdout, p.stdout
    assert "throttle off" in check("--throttle", "false").stdout
    for bad, name in (("--throttle-store", "store"), ("--throttle-pair-failures", "pair_failures")):
        p = check(bad, "0" if name == "pair_failures" else "http://x:1")
        assert p.returncode == 1 and name in p.stderr, p.stderr


# ---------------------------------------------------------------------------
# Shared counters in Redis


@pytest.fixture
def redis_server(tmp_path):
    """Debian's redis-server on a free loopback port, in the test's temp dir."""
    port = free_ports(1)
    log = open(tmp_path / "redis.log", "w")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--daemonize", "no",
                             "--dir", str(tmp_path)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"PING\r\n")
                if c.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, \
            (tmp_path / "redis.log").read_text()
        time.sleep(0.05)
    yield proc, port
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)
    log.close()


def test_two_proxies_share_counters_in_redis(start_proxy, pki, realm, plugin_dir, tmp_path,
                                             redis_server):
    other = bystander(realm)
    redis, port = redis_server
    store = f"redis://127.0.0.1:{port}"
    flags = ("--throttle-store", store, "--throttle-pair-failures", "2",
             "--throttle-address-failures", "100", "--throttle-principal-failures", "100")
    a = start(start_proxy, pki, realm, *flags)
    url_a = metrics_url(a)
    b = start(start_proxy, pki, realm, *flags)
    url_b = metrics_url(b)
    # One wrong password through each proxy: 1 each locally, 2 in Redis.
    for proxy, d in ((a, "a"), (b, "b")):
        c = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / d)
        r = c.kinit(password=WRONG)
        assert r.returncode != 0 and "4423" not in r.output, r.output
    wait_for_log(b, rf"throttle key=pair address=127\.0\.0\.1 principal={re.escape(realm.user)} "
                    r"threshold=2 ")
    assert "throttle key=" not in a.log()
    wait_for_log(a, rf"throttle store {re.escape(store)} reachable: counting in Redis")
    # Both refuse the pair; neither forwards it.
    mark = kdc_log_end(realm)
    for proxy in (a, b):
        run(refused(proxy, pki, realm, user(realm)))
        assert is_krb_error(run(answer(proxy, pki, realm, other)))
    assert as_reqs_for(kdc_log(realm, mark), user(realm)) == []
    for url in (url_a, url_b):
        assert "krb5_wss_proxy_throttle_store_up 1" in metrics(url)

    # Redis stops: both keep serving, on their local counters.
    redis.terminate()
    redis.wait(timeout=10)
    for proxy in (a, b):
        assert is_krb_error(run(answer(proxy, pki, realm, other)))
        # The pair's cool-down was in Redis; locally it has one failure.
        assert is_krb_error(run(answer(proxy, pki, realm, user(realm))))
        wait_for_log(proxy, rf"throttle store {re.escape(store)} unreachable \(.*\): "
                            r"counting locally")
        assert proxy.log().count("unreachable (") == 1, "logged once per transition"
    for url in (url_a, url_b):
        assert "krb5_wss_proxy_throttle_store_up 0" in metrics(url)
    # The local threshold still holds: a second failure through A trips it.
    c = wss_client(realm, a.port, pki, plugin_dir, tmp_path / "a2")
    r = c.kinit(password=WRONG)
    assert r.returncode != 0, r.output
    wait_for_log(a, rf"throttle key=pair address=127\.0\.0\.1 principal={re.escape(realm.user)} "
                    r"threshold=2 ")
    run(refused(a, pki, realm, user(realm)))
    assert is_krb_error(run(answer(a, pki, realm, other)))
    assert a.alive() and b.alive()
