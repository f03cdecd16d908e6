"""Operating krb5-wss-proxy: graceful shutdown (SIGTERM), reload (SIGHUP),
metrics and health, --check-config, UDP to the KDC."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request

import pytest
import websockets

from conftest import PROXY_BIN, _make_leaf, tls_proxy_args
from standins import LateKdc, TcpOnlyKdc
from test_proxy import (
    as_req,
    assert_preauth_required,
    expect_close,
    frame,
    kpasswd_req,
    recv,
    run,
    served,
    user_of,
    wait_for_log,
    ws_connect,
)


def metrics_url(proxy) -> str:
    """The metrics listener's URL, from the proxy's second stdout line."""
    line = proxy.proc.stdout.readline()
    assert line.startswith("metrics on http://"), line
    return line.split()[2]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_sigterm_drains_in_flight_exchanges_then_exits_zero(start_proxy, pki, realm):
    reply = frame(b"\x7e\x03\x02\x01\x05")  # any bytes: replies pass unchanged
    with LateKdc(delay=1.0, reply=reply) as late:
        proxy = start_proxy(tls_proxy_args(
            pki, realm, "--realm", f"LATE.ORG={late.addr}", "--metrics-listen", "127.0.0.1:0"))
        metrics = metrics_url(proxy)

        async def go():
            async with ws_connect(proxy, pki) as idle, ws_connect(proxy, pki) as busy:
                await busy.send(frame(as_req("user", "LATE.ORG")))
                await asyncio.sleep(0.3)  # the exchange is in progress
                start = time.monotonic()
                proxy.proc.send_signal(signal.SIGTERM)
                # The idle session is told 1001 at once.
                assert await expect_close(idle, 1001) < 0.5
                # Health says draining, so a load balancer stops sending.
                status, text = await asyncio.to_thread(get, metrics + "/healthz")
                assert (status, text) == (503, "shutting down\n")
                # No new connections.
                with pytest.raises(OSError):
                    socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
                # The busy one gets its reply, then 1001.
                assert await recv(busy) == reply
                await expect_close(busy, 1001)
                assert time.monotonic() - start > 0.5
            code = await asyncio.to_thread(proxy.proc.wait, 5)
            assert code == 0

        run(go())
    log = proxy.log()
    assert "SIGTERM received: shutting down" in log
    assert "drained: no connection open" in log, log


def test_sigterm_drain_is_bounded(start_proxy, pki, realm):
    with LateKdc(delay=5.0, reply=frame(b"x")) as late:
        proxy = start_proxy(tls_proxy_args(pki, realm, "--realm", f"LATE.ORG={late.addr}",
                                           "--shutdown-timeout", "0.5"))

        async def go():
            async with ws_connect(proxy, pki) as busy:
                await busy.send(frame(as_req("user", "LATE.ORG")))
                await asyncio.sleep(0.2)
                start = time.monotonic()
                proxy.proc.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(proxy.proc.wait, 5)
                assert code == 0
                assert time.monotonic() - start < 3

        run(go())
    assert "shutdown_timeout reached" in proxy.log()


def write_config(path, pki, realm, cert, key, kpasswd: bool, extra: str = "") -> None:
    text = (
        "[server]\n"
        'listen = ["127.0.0.1:0"]\n'
        f'cert = "{cert}"\n'
        f'key = "{key}"\n'
        f"[realms.\"{realm.name}\"]\n"
        f'kdc = ["{realm.kdc_addr}"]\n'
    )
    if kpasswd:
        text += f'kpasswd = ["{realm.kpasswd_addr}"]\n'
    path.write_text(text + extra)


def peer_cn(port: int, pki) -> str:
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.check_hostname = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            subject = dict(x[0] for x in s.getpeercert()["subject"])
            return subject["commonName"]


def test_sighup_reloads_config_and_certificate_without_dropping(start_proxy, pki, realm, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    # A renewed certificate from the same CA, for the same names.
    new_cert, new_key = _make_leaf(tmp_path, "renewed", (pki.ca_cert, pki.dir / "ca.key"),
                                   "DNS:localhost,IP:127.0.0.1")
    shutil.copy(pki.server_cert, cert)
    shutil.copy(pki.server_key, key)
    conf = tmp_path / "proxy.toml"
    write_config(conf, pki, realm, cert, key, kpasswd=False)
    proxy = start_proxy(["--config", str(conf)])
    assert peer_cn(proxy.port, pki) == "server"

    async def kpasswd_code() -> int | None:
        async with ws_connect(proxy, pki, path="/kpasswd") as ws:
            await ws.send(frame(kpasswd_req(realm.name)))
            try:
                await recv(ws)
                return None
            except websockets.ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else -1

    async def go():
        async with ws_connect(proxy, pki) as old:
            await old.send(frame(as_req(user_of(realm), realm.name, 1)))
            assert_preauth_required(await recv(old))
            assert await kpasswd_code() == 4403  # no kpasswd server yet

            # New config (kpasswd server added) and a new certificate.
            write_config(conf, pki, realm, cert, key, kpasswd=True)
            shutil.copy(new_cert, cert)
            shutil.copy(new_key, key)
            proxy.proc.send_signal(signal.SIGHUP)
            await asyncio.to_thread(wait_for_log, proxy, r"SIGHUP: configuration and certificate reloaded")
            assert await kpasswd_code() is None  # answered now
            assert await asyncio.to_thread(peer_cn, proxy.port, pki) == "renewed"

            # The connection opened before the reload still works.
            await old.send(frame(as_req(user_of(realm), realm.name, 2)))
            assert_preauth_required(await recv(old))

            # A broken config is refused; the running one stays.
            conf.write_text(conf.read_text() + "bogus = 1\n")
            proxy.proc.send_signal(signal.SIGHUP)
            await asyncio.to_thread(wait_for_log, proxy, r"SIGHUP: reload failed, keeping the running configuration: error=.*unknown field")
            assert await kpasswd_code() is None
            assert proxy.alive()

    run(go())


def test_metrics_and_health(start_proxy, pki, realm):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--metrics-listen", "127.0.0.1:0"))
    metrics = metrics_url(proxy)
    assert get(metrics + "/healthz") == (200, "ok\n")
    run(served(proxy, pki, realm))

    async def refused():
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req("user", "NOT-SERVED.ORG")))
            await expect_close(ws, 4403)

    run(refused())
    status, text = get(metrics + "/metrics")
    assert status == 200
    for line in [
        'krb5_wss_proxy_exchanges_total{service="kdc",transport="websocket",result="ok"} 1',
        'krb5_wss_proxy_refusals_total{code="4403",reason="realm not served"} 1',
        "krb5_wss_proxy_upstream_seconds_count 1",
        "krb5_wss_proxy_shutting_down 0",
    ]:
        assert line in text.splitlines(), f"{line!r} not in\n{text}"
    assert re.search(r"^krb5_wss_proxy_connections_total [1-9]", text, re.M)
    assert re.search(r"^krb5_wss_proxy_connections_open \d+$", text, re.M)
    assert get(metrics + "/nope")[0] == 404


def check_config(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROXY_BIN), "--check-config", *args], capture_output=True,
                          text=True, timeout=10, stdin=subprocess.DEVNULL)


def test_check_config(pki, realm, tmp_path):
    good = tls_proxy_args(pki, realm)
    p = check_config(*good)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("configuration ok: 1 listen address(es) (wss://), 1 realm(s)")
    bad_key = list(good)
    bad_key[bad_key.index("--key") + 1] = str(pki.rogue_key)
    p = check_config(*bad_key)
    assert p.returncode == 1 and "do not fit" in p.stderr
    conf = tmp_path / "bad.toml"
    conf.write_text("[limits]\nmax_connections = 0\n")
    p = check_config("--config", str(conf), *good)
    assert p.returncode == 1 and "max_connections" in p.stderr
    # The shipped example is complete and valid (its certificate paths
    # do not exist here, so check it in plaintext form).
    from conftest import ROOT

    example = (ROOT / "proxy" / "krb5-wss-proxy.example.toml").read_text()
    example = re.sub(r'(?m)^(cert|key) = .*\n', "", example).replace("plaintext = false",
                                                                      "plaintext = true")
    conf.write_text(example)
    p = check_config("--config", str(conf))
    assert p.returncode == 0, p.stderr


def test_udp_first_is_the_default_and_tcp_only_turns_it_off(start_proxy, pki, realm):
    """As libkrb5 does by default: a small KDC request goes over UDP;
    `--tcp-only REALM` keeps the realm on TCP."""
    async def ask(proxy):
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req(user_of(realm), realm.name)))
            assert_preauth_required(await recv(ws))

    default = start_proxy(tls_proxy_args(pki, realm))
    run(ask(default))
    wait_for_log(default, rf"exchange .* kdc=127\.0\.0\.1:{realm.portbase} kdc_transport=udp result=ok")
    tcp = start_proxy(tls_proxy_args(pki, realm, "--tcp-only", realm.name))
    run(ask(tcp))
    wait_for_log(tcp, rf"exchange .* kdc=127\.0\.0\.1:{realm.portbase} kdc_transport=tcp result=ok")


def _as_exchanges(proxy, pki, realm, n):
    """`n` AS exchanges on one WebSocket, each answered PREAUTH_REQUIRED;
    returns the seconds each took."""
    async def go():
        times = []
        async with ws_connect(proxy, pki) as ws:
            for _ in range(n):
                start = time.monotonic()
                await ws.send(frame(as_req(user_of(realm), realm.name)))
                assert_preauth_required(await recv(ws))
                times.append(time.monotonic() - start)
        return times
    return run(go())


def test_a_kdc_that_drops_udp_costs_three_udp_timeouts(start_proxy, pki, realm):
    """A firewall drops UDP to the KDC: the first three exchanges each wait
    udp_timeout and go on over TCP; later ones go to TCP at once, on the
    same connection and on a new one, and UDP is not tried again."""
    with TcpOnlyKdc(("127.0.0.1", realm.portbase)) as kdc:
        proxy = start_proxy(["--listen", "127.0.0.1:0", "--cert", str(pki.server_cert),
                             "--key", str(pki.server_key), "--realm", f"{realm.name}={kdc.addr}",
                             "--udp-timeout", "600ms"])
        first = _as_exchanges(proxy, pki, realm, 5)
        again = _as_exchanges(proxy, pki, realm, 2)
        assert min(first[:3]) >= 0.6, first
        assert max(first[3:] + again) < 0.6, (first, again)
        assert kdc.datagrams == 3
        assert kdc.accepted == 7
        log = proxy.log()
        assert len(re.findall(r"kdc_transport=tcp result=ok", log)) == 7, log
        assert "kdc_transport=udp" not in log, log


def test_a_kdc_that_loses_every_other_datagram_keeps_udp(start_proxy, pki, realm):
    """A lossy path, or a KDC too busy for some datagrams: every other one
    gets no answer. Each lost one costs udp_timeout and goes on over TCP,
    but the answered ones keep the KDC on UDP (which costs it less than
    TCP): all 8 requests are tried over UDP first."""
    with TcpOnlyKdc(("127.0.0.1", realm.portbase), udp_answers_every=2) as kdc:
        proxy = start_proxy(["--listen", "127.0.0.1:0", "--cert", str(pki.server_cert),
                             "--key", str(pki.server_key), "--realm", f"{realm.name}={kdc.addr}",
                             "--udp-timeout", "300ms"])
        _as_exchanges(proxy, pki, realm, 8)
        assert kdc.datagrams == 8
        assert kdc.udp_answered == 4
        assert kdc.accepted == 4
        log = proxy.log()
        assert len(re.findall(r"kdc_transport=udp result=ok", log)) == 4, log
        assert len(re.findall(r"kdc_transport=tcp result=ok", log)) == 4, log


def test_systemd_unit_verifies(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    from conftest import ROOT

    unit = (ROOT / "proxy" / "krb5-wss-proxy.service").read_text()
    # The unit names the installed binary; point it at the built one.
    unit = unit.replace("/usr/bin/krb5-wss-proxy", str(PROXY_BIN))
    path = tmp_path / "krb5-wss-proxy.service"
    path.write_text(unit)
    p = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    for needed in ("CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "NoNewPrivileges=yes",
                   "ProtectSystem=strict", "ExecReload=/bin/kill -HUP $MAINPID"):
        assert needed in unit


def test_a_1024_descriptor_limit_lowers_max_connections_and_keeps_serving(start_proxy, pki, realm):
    """Run with a common shell limit (1024 descriptors, soft and hard) and
    the default max_connections (10000): the proxy says it lowers the limit
    to fit, a flood of 1100 connections gets no "Too many open files", the
    metrics listener keeps answering, and a client is served after it."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    proxy = start_proxy(tls_proxy_args(pki, realm, "--metrics-listen", "127.0.0.1:0"), nofile=1024)
    metrics = metrics_url(proxy)
    flood = []
    try:
        wait_for_log(proxy, r"max_connections lowered from 10000 to 640 to fit 1024 file descriptors")
        for _ in range(1100):
            s = socket.socket()
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", proxy.port))
            except OSError:
                s.close()
                continue
            flood.append(s)
        time.sleep(0.5)
        assert get(metrics + "/healthz") == (200, "ok\n")
        assert "Too many open files" not in proxy.log()
    finally:
        for s in flood:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    time.sleep(0.5)
    run(served(proxy, pki, realm))
    assert "Too many open files" not in proxy.log()
