"""krb5-wss-relay with MIT's clients WITHOUT the plugin.

A real MIT KDC and kpasswd server (k5test) reachable only through the real
krb5-wss-proxy; the relay listens on local UDP and TCP ports and carries
every request over wss. The clients' krb5.conf names the relay as an
ordinary KDC (`kdc = 127.0.0.1:PORT`, `kpasswd_server = 127.0.0.1:PORT2`)
and no plugin is loaded (plugin_dir=None), as for the JDK, Heimdal or
impacket. Faults: unknown realm, garbage, truncated and oversized TCP
records, replies too big for UDP, a proxy down or black-holed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (
    RELAY_BIN,
    ROOT,
    client_env,
    free_ports,
    run,
    write_krb5_conf,
)


# ---------------------------------------------------------------------------
# Helpers


def relay_args(realm, proxy, pki, *extra: str) -> list[str]:
    """The issue's command line, on free ports."""
    return [
        "--listen", "127.0.0.1:0",
        "--kpasswd-listen", "127.0.0.1:0",
        "--realm", f"{realm.name}={proxy.url('/kdc')}",
        "--anchors", f"FILE:{pki.ca_cert}",
        *extra,
    ]


def relay_conf(path: Path, realm, relay, **libdefaults: str) -> Path:
    """A krb5.conf naming the relay as the realm's KDC and kpasswd server."""
    return write_krb5_conf(path, realm.name, {realm.name: {
        "kdc": f"127.0.0.1:{relay.kdc_port}",
        "kpasswd_server": f"127.0.0.1:{relay.kpasswd_port}",
    }}, libdefaults=libdefaults or None)


def exchange_lines(log: str, **fields: str) -> list[str]:
    """The relay's per-exchange log lines whose fields match."""
    out = []
    for line in log.splitlines():
        if " exchange client=" not in line:
            continue
        if all(f" {k}={v}" in line for k, v in fields.items()):
            out.append(line)
    return out


def kinit(realm, env, princ=None, password=None, **kw):
    princ = princ or realm.user
    password = realm.password if password is None else password
    return run(["kinit", princ], env, input=password + "\n", **kw)


def black_hole() -> tuple[socket.socket, int]:
    """A TCP listener that never accepts: connects complete (backlog),
    nothing is ever answered."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s, s.getsockname()[1]


# Minimal DER, to build requests and read the relay's KRB-ERRORs.

def tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        length = bytes([n])
    else:
        b = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(b)]) + b
    return bytes([tag]) + length + value


def ctx(n: int, v: bytes) -> bytes:
    return tlv(0xA0 | n, v)


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def gstr(s: str) -> bytes:
    return tlv(0x1B, s.encode())


def principal(name_type: int, *parts: str) -> bytes:
    return seq(ctx(0, integer(name_type)), ctx(1, seq(*(gstr(p) for p in parts))))


def as_req(realm: str, user: str = "user") -> bytes:
    body = seq(
        ctx(0, tlv(0x03, b"\x00\x40\x00\x00\x10")),
        ctx(1, principal(1, user)),
        ctx(2, gstr(realm)),
        ctx(3, principal(2, "krbtgt", realm)),
        ctx(5, tlv(0x18, b"20370913024805Z")),
        ctx(7, integer(42)),
        ctx(8, seq(integer(18), integer(17))),
    )
    return tlv(0x6A, seq(ctx(1, integer(5)), ctx(2, integer(10)), ctx(4, body)))


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, bytes, int]:
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    return tag, data[pos:pos + n], pos + n


def parse_krb_error(msg: bytes) -> dict:
    """error-code, realm and e-text of a KRB-ERROR."""
    tag, body, _ = read_tlv(msg)
    assert tag == 0x7E, msg[:8].hex()
    _, fields, _ = read_tlv(body)
    out, pos = {}, 0
    while pos < len(fields):
        tag, value, pos = read_tlv(fields, pos)
        _, inner, _ = read_tlv(value)
        n = tag & 0x1F
        if n == 6:
            out["code"] = int.from_bytes(inner, "big", signed=True)
        elif n == 9:
            out["realm"] = inner.decode()
        elif n == 11:
            out["e_text"] = inner.decode()
    return out


def udp_exchange(port: int, data: bytes, timeout: float = 5) -> bytes | None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(data, ("127.0.0.1", port))
        return s.recv(65535)
    except socket.timeout:
        return None
    finally:
        s.close()


def tcp_exchange(port: int, data: bytes, timeout: float = 5) -> bytes:
    """Sends `data`, half-closes, returns everything until the relay closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


@pytest.fixture
def relay(start_relay, proxy, pki, realm):
    return start_relay(relay_args(realm, proxy, pki))


# ---------------------------------------------------------------------------
# MIT clients without the plugin


def test_kinit_kvno_kpasswd_over_udp(relay, realm, tmp_path):
    realm.addprinc("relayudp", "old-password-1")
    env = client_env(tmp_path, relay_conf(tmp_path / "krb5.conf", realm, relay))
    r = kinit(realm, env)
    assert r.returncode == 0, r.output
    r = run(["kvno", realm.host_princ], env)
    assert r.returncode == 0 and "kvno = " in r.stdout, r.output
    pw_env = dict(env, KRB5CCNAME=f"FILE:{tmp_path / 'ccache-pw'}")
    r = run(["kpasswd", f"relayudp@{realm.name}"], pw_env,
            input="old-password-1\nnew-password-2\nnew-password-2\n")
    assert r.returncode == 0 and "Password changed" in r.output, r.output
    r = kinit(realm, pw_env, princ=f"relayudp@{realm.name}", password="new-password-2")
    assert r.returncode == 0, r.output
    log = relay.log()
    for kind in ("AS-REQ", "TGS-REQ"):
        assert exchange_lines(log, transport="udp", service="kdc", realm=realm.name, type=kind,
                              result="ok"), log
    # MIT's kpasswd client uses TCP first whatever the preference.
    assert exchange_lines(log, service="kpasswd", realm=realm.name, type="kpasswd-v1",
                          result="ok"), log
    # The first AS-REQ gets PREAUTH_REQUIRED from the KDC, passed through.
    assert exchange_lines(log, type="AS-REQ", result="krb-error-25"), log
    # One line per exchange, with the URL and the microseconds.
    line = exchange_lines(log, transport="udp", type="TGS-REQ")[0]
    assert f"url={relay_url(relay, log)}" in line and re.search(r" us=\d+$", line), line


def relay_url(relay, log: str) -> str:
    m = re.search(r"url=(wss://\S+/kdc)", log)
    assert m, log
    return m.group(1)


def test_kinit_kvno_kpasswd_over_tcp(relay, realm, tmp_path):
    realm.addprinc("relaytcp", "old-password-1")
    env = client_env(tmp_path, relay_conf(tmp_path / "krb5.conf", realm, relay,
                                          udp_preference_limit="1"))
    r = kinit(realm, env)
    assert r.returncode == 0, r.output
    r = run(["kvno", realm.host_princ], env)
    assert r.returncode == 0, r.output
    pw_env = dict(env, KRB5CCNAME=f"FILE:{tmp_path / 'ccache-pw'}")
    r = run(["kpasswd", f"relaytcp@{realm.name}"], pw_env,
            input="old-password-1\nnew-password-2\nnew-password-2\n")
    assert r.returncode == 0 and "Password changed" in r.output, r.output
    log = relay.log()
    for kind in ("AS-REQ", "TGS-REQ"):
        assert exchange_lines(log, transport="tcp", type=kind, result="ok"), log
    assert exchange_lines(log, transport="tcp", service="kpasswd", result="ok"), log
    assert not exchange_lines(log, transport="udp"), log


def test_reply_too_big_for_udp_then_tcp(start_relay, proxy, pki, realm, tmp_path):
    """With a small UDP limit the AS-REP does not fit: the relay answers
    RESPONSE_TOO_BIG over UDP, kinit retries over TCP and succeeds."""
    relay = start_relay(relay_args(realm, proxy, pki, "--udp-reply-limit", "300"))
    env = client_env(tmp_path, relay_conf(tmp_path / "krb5.conf", realm, relay))
    r = kinit(realm, env)
    assert r.returncode == 0, r.output
    log = relay.log()
    big = exchange_lines(log, transport="udp", type="AS-REQ")
    assert any("result=too-big-for-udp(" in l for l in big), log
    assert exchange_lines(log, transport="tcp", type="AS-REQ", result="ok"), log
    # Nothing larger than the limit went out over UDP.
    for l in exchange_lines(log, transport="udp"):
        assert int(re.search(r" reply=(\d+)", l).group(1)) <= 300, l


# ---------------------------------------------------------------------------
# Bad input


def test_unknown_realm_gets_a_krb_error_naming_the_relay(relay, realm, tmp_path):
    # Over UDP and TCP, parsed by hand.
    for reply in (udp_exchange(relay.kdc_port, as_req("NOPE.TEST")),
                  tcp_exchange(relay.kdc_port, struct.pack(">I", len(as_req("NOPE.TEST")))
                               + as_req("NOPE.TEST"))[4:]):
        assert reply is not None
        e = parse_krb_error(reply)
        assert e["code"] == 60 and e["realm"] == "NOPE.TEST", e
        assert e["e_text"] == "krb5-wss-relay: realm NOPE.TEST is not served by this relay", e
    # And as MIT's kinit reports it.
    conf = write_krb5_conf(tmp_path / "krb5.conf", "NOPE.TEST", {
        "NOPE.TEST": {"kdc": f"127.0.0.1:{relay.kdc_port}"}})
    r = kinit(realm, client_env(tmp_path, conf), princ="user@NOPE.TEST", password="x")
    assert r.returncode != 0, r.output
    # MIT prints the code's message, not the e-text.
    assert "Generic error (see e-text)" in r.output, r.output
    assert r.elapsed < 2, r.elapsed
    assert exchange_lines(relay.log(), realm="NOPE.TEST", result="unknown-realm")


def test_garbage_datagram_gets_no_reply(relay):
    start = time.monotonic()
    assert udp_exchange(relay.kdc_port, b"\x00" * 64, timeout=1.0) is None
    assert udp_exchange(relay.kpasswd_port, os.urandom(200), timeout=1.0) is None
    assert time.monotonic() - start >= 1.9
    assert "udp: dropped a datagram from 127.0.0.1" in relay.log()
    # Still serving.
    assert udp_exchange(relay.kdc_port, as_req("NOPE.TEST")) is not None


def test_truncated_oversized_and_malformed_tcp_records(relay):
    # Truncated: the header promises 100 bytes, 10 come, then EOF.
    start = time.monotonic()
    assert tcp_exchange(relay.kdc_port, struct.pack(">I", 100) + b"x" * 10) == b""
    # Oversized: closed at the header, without reading a body.
    s = socket.create_connection(("127.0.0.1", relay.kdc_port), timeout=5)
    s.sendall(struct.pack(">I", 0x7FFF0000))
    assert s.recv(100) == b""
    s.close()
    assert time.monotonic() - start < 2
    log = relay.log()
    assert "a record of 100 bytes was cut short" in log, log
    assert "max_request 262144" in log, log
    # A record that is not a Kerberos request: a KRB-ERROR saying so, then the close.
    reply = tcp_exchange(relay.kdc_port, struct.pack(">I", 5) + b"hello")
    e = parse_krb_error(reply[4:])
    assert e["code"] == 60 and e["e_text"].startswith("krb5-wss-relay: malformed request"), e
    # A silent client is closed after client_timeout, never held forever.


def test_silent_tcp_client_is_closed_after_client_timeout(start_relay, proxy, pki, realm):
    relay = start_relay(relay_args(realm, proxy, pki, "--client-timeout", "500ms"))
    s = socket.create_connection(("127.0.0.1", relay.kdc_port), timeout=5)
    start = time.monotonic()
    s.sendall(b"\x00\x00")
    assert s.recv(10) == b""
    assert 0.4 < time.monotonic() - start < 3
    s.close()


# ---------------------------------------------------------------------------
# Faults upstream


def test_proxy_down_fails_within_the_connect_timeout(start_relay, pki, realm, tmp_path):
    hole, port = black_hole()
    try:
        relay = start_relay([
            "--listen", "127.0.0.1:0", "--kpasswd-listen", "127.0.0.1:0",
            "--realm", f"{realm.name}=wss://localhost:{port}/kdc",
            "--anchors", f"FILE:{pki.ca_cert}", "--connect-timeout", "1s"])
        # The relay's own answer, read by hand: a KRB-ERROR naming the cause.
        start = time.monotonic()
        reply = udp_exchange(relay.kdc_port, as_req(realm.name))
        took = time.monotonic() - start
        e = parse_krb_error(reply)
        assert e["code"] == 60, e
        assert e["e_text"].startswith(f"krb5-wss-relay: no proxy of realm {realm.name} answered"), e
        assert "timed out" in e["e_text"], e
        assert 0.9 < took < 2.5, took
        # kinit gives up as soon as the relay answered (over TCP, and over UDP).
        env = client_env(tmp_path, relay_conf(tmp_path / "krb5.conf", realm, relay,
                                              udp_preference_limit="1"))
        r = kinit(realm, env)
        assert r.returncode != 0 and "Generic error" in r.output, r.output
        assert r.elapsed < 2.5, r.elapsed
        env = client_env(tmp_path, relay_conf(tmp_path / "krb5.conf", realm, relay))
        r = kinit(realm, env)
        assert r.returncode != 0 and "Generic error" in r.output, r.output
        assert r.elapsed < 2.5, r.elapsed
        assert len(exchange_lines(relay.log(), result="upstream-failed")) >= 3, relay.log()
    finally:
        hole.close()


def test_black_holed_url_then_a_live_one(start_relay, proxy, pki, realm, tmp_path):
    """Racing failover as the plugin does: the second URL starts after the
    stagger (250 ms), not after the first URL's connect timeout."""
    hole, port = black_hole()
    try:
        relay = start_relay([
            "--listen", "127.0.0.1:0",
            "--realm", f"{realm.name}=wss://localhost:{port}/kdc",
            "--realm", f"{realm.name}={proxy.url('/kdc')}",
            "--anchors", f"FILE:{pki.ca_cert}", "--connect-timeout", "10s"])
        env = client_env(tmp_path, relay_conf(tmp_path / "krb5.conf", realm, relay))
        r = kinit(realm, env)
        assert r.returncode == 0, r.output
        assert r.elapsed < 3, r.elapsed
        ok = exchange_lines(relay.log(), type="AS-REQ", url=proxy.url("/kdc"))
        assert ok, relay.log()
    finally:
        hole.close()


# ---------------------------------------------------------------------------
# Operation


def relay_cmd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(RELAY_BIN), *args], capture_output=True, text=True, timeout=30)


def test_non_loopback_listen_needs_allowed_clients(pki):
    p = relay_cmd("--listen", "0.0.0.0:0", "--realm", "R.TEST=wss://localhost:1/kdc")
    assert p.returncode == 1, p
    assert "0.0.0.0:0 is not a loopback address: give --allow-clients" in p.stderr, p.stderr
    p = relay_cmd("--listen", "0.0.0.0:0", "--realm", "R.TEST=wss://localhost:1/kdc",
                  "--allow-clients", "10.0.0.0/8", "--check-config")
    assert p.returncode == 0, p


def test_check_config(pki, tmp_path):
    conf = tmp_path / "relay.toml"
    conf.write_text(f'listen = ["127.0.0.1:8888"]\nrealm = ["R.TEST=wss://kdc.r.test/kdc"]\n'
                    f'anchors = ["FILE:{pki.ca_cert}"]\n')
    p = relay_cmd("--config", str(conf), "--check-config")
    assert p.returncode == 0, p
    assert p.stdout.startswith("configuration ok: 1 KDC and 0 kpasswd listen address(es), "
                               "1 realm(s) (R.TEST)"), p.stdout
    # Nothing was bound: the port is still free.
    s = socket.socket()
    s.bind(("127.0.0.1", 8888))
    s.close()
    p = relay_cmd("--config", str(conf), "--check-config", "--anchors", "FILE:/nonexistent/ca.pem")
    assert p.returncode == 1 and "/nonexistent/ca.pem" in p.stderr, p
    conf.write_text('listn = ["127.0.0.1:8888"]\n')
    p = relay_cmd("--config", str(conf), "--check-config")
    assert p.returncode == 1 and "listn" in p.stderr, p
    # The example configuration is complete and valid (but for its CA file).
    example = ROOT / "relay" / "krb5-wss-relay.example.toml"
    p = relay_cmd("--config", str(example), "--check-config", "--anchors", f"FILE:{pki.ca_cert}")
    assert p.returncode == 0, p


def test_sighup_reloads_realms_and_anchors(start_relay, proxy, pki, realm, tmp_path):
    dead = free_ports(1)
    conf = tmp_path / "relay.toml"

    def write(url: str, ca: Path) -> None:
        conf.write_text(f'listen = ["127.0.0.1:0"]\nrealm = ["{realm.name}={url}"]\n'
                        f'anchors = ["FILE:{ca}"]\nconnect_timeout = "1s"\n')

    # A CA that does not sign the proxy's certificate.
    other_ca = tmp_path / "other-ca.pem"
    from conftest import _make_ca
    other_ca = _make_ca(tmp_path, "otherca")[0]
    write(proxy.url("/kdc"), other_ca)
    relay = start_relay(["--config", str(conf)])
    env = client_env(tmp_path, relay_conf(tmp_path / "krb5.conf", realm, relay,
                                          udp_preference_limit="1"))
    r = kinit(realm, env)
    assert r.returncode != 0, r.output
    assert exchange_lines(relay.log(), result="upstream-failed")
    # The right CA, and a broken file: the reload fails, the old config stays.
    conf.write_text("realm = [\n")
    relay.reload()
    wait_for(lambda: "reload failed, keeping the running configuration" in relay.log(), relay)
    write(proxy.url("/kdc"), pki.ca_cert)
    relay.reload()
    wait_for(lambda: "reloaded: 1 realm(s)" in relay.log(), relay)
    r = kinit(realm, env)
    assert r.returncode == 0, r.output
    # A realm change: now served by a dead URL only.
    write(f"wss://localhost:{dead}/kdc", pki.ca_cert)
    relay.reload()
    wait_for(lambda: relay.log().count("reloaded: 1 realm(s)") == 2, relay)
    r = kinit(realm, env)
    assert r.returncode != 0, r.output
    assert f"wss://localhost:{dead}/kdc" in relay.log()
    assert relay.alive()


def wait_for(cond, relay, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(relay.log())


LAUNCHER = """
import os, sys
fds = [int(x) for x in sys.argv[1].split(",")]
for i, fd in enumerate(fds):
    os.dup2(fd, 3 + i)
for fd in fds:
    if fd >= 3 + len(fds):
        os.close(fd)
os.environ["LISTEN_FDS"] = str(len(fds))
os.environ["LISTEN_PID"] = str(os.getpid())
if sys.argv[2]:
    os.environ["LISTEN_FDNAMES"] = sys.argv[2]
os.execv(sys.argv[3], sys.argv[3:])
"""


def socket_pair_on_one_port() -> tuple[socket.socket, socket.socket, int]:
    for _ in range(20):
        t = socket.socket()
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            u.close()
            continue
        t.listen(16)
        return u, t, port
    raise RuntimeError("no port free for UDP and TCP")


@pytest.mark.parametrize("names", ["kdc:kdc:kpasswd:kpasswd", ""])
def test_socket_activation(start_relay, proxy, pki, realm, tmp_path, names):
    """The sockets come from the parent as systemd passes them (fds 3..6,
    LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES); the relay binds nothing.
    Without names, the service comes from the port (464 is kpasswd): both
    ports here are KDC then."""
    ku, kt, kport = socket_pair_on_one_port()
    pu, pt, pport = socket_pair_on_one_port()
    high = []
    for i, s in enumerate((ku, kt, pu, pt)):
        fd = os.dup2(s.fileno(), 40 + i)
        high.append(40 + i)
    try:
        relay = start_relay(
            ["--realm", f"{realm.name}={proxy.url('/kdc')}", "--anchors", f"FILE:{pki.ca_cert}"],
            launcher=[sys.executable, "-c", LAUNCHER, ",".join(map(str, high)), names],
            pass_fds=tuple(high))
    finally:
        for fd in high:
            os.close(fd)
        for s in (ku, kt, pu, pt):
            s.close()
    assert relay.kdc_port == kport
    want_pw = "kpasswd" if names else "kdc"
    assert f"{want_pw}+udp://127.0.0.1:{pport}" in relay.listening, relay.listening
    assert f"{want_pw}+tcp://127.0.0.1:{pport}" in relay.listening, relay.listening
    assert "socket passed by systemd" in relay.log()
    for limit in ("1465", "1"):
        env = client_env(tmp_path, write_krb5_conf(tmp_path / "krb5.conf", realm.name, {
            realm.name: {"kdc": f"127.0.0.1:{kport}", "kpasswd_server": f"127.0.0.1:{pport}"}},
            libdefaults={"udp_preference_limit": limit}))
        r = kinit(realm, env)
        assert r.returncode == 0, r.output
    log = relay.log()
    assert exchange_lines(log, transport="udp", result="ok") and \
        exchange_lines(log, transport="tcp", result="ok"), log


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_units_verify(tmp_path):
    for name in ("krb5-wss-relay.socket", "krb5-wss-relay.service"):
        text = (ROOT / "relay" / name).read_text().replace("/usr/bin/krb5-wss-relay", str(RELAY_BIN))
        (tmp_path / name).write_text(text)
    p = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "krb5-wss-relay.socket"),
                        str(tmp_path / "krb5-wss-relay.service")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    service = (ROOT / "relay" / "krb5-wss-relay.service").read_text()
    socket_unit = (ROOT / "relay" / "krb5-wss-relay.socket").read_text()
    for needed in ("DynamicUser=yes", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n",
                   "ExecReload=/bin/kill -HUP $MAINPID", "--check-config"):
        assert needed in service, needed
    assert "AmbientCapabilities" not in service  # the ports come from systemd
    for needed in ("ListenDatagram=127.0.0.1:88", "ListenStream=127.0.0.1:88",
                   "ListenDatagram=127.0.0.1:464", "ListenStream=127.0.0.1:464"):
        assert needed in socket_unit, needed


# ---------------------------------------------------------------------------
# wss_web_proxy: a daemon's web proxy without https_proxy in its environment


@pytest.mark.skipif(not shutil.which("tinyproxy"), reason="tinyproxy is not installed")
def test_wss_web_proxy_for_the_plugin_and_the_relay(web_proxy_world, start_relay, pki, realm,
                                                     plugin_dir, tmp_path):
    """Only a web proxy is reachable (the wss proxy's name resolves, for the
    clients, to an address where nothing listens) and the environment is
    empty: krb5.conf's wss_web_proxy (plugin) and the relay's
    --wss-web-proxy make it work; no_proxy still exempts."""
    w = web_proxy_world
    url = f"wss://{w.name}:{w.proxy.port}/kdc"

    def plugin_kinit(opts: dict, **env_extra):
        conf = write_krb5_conf(tmp_path / "krb5-plugin.conf", realm.name, {realm.name: {
            "kdc": url, "http_anchors": f"FILE:{pki.ca_cert}", **opts}})
        env = client_env(tmp_path, conf, **env_extra)
        assert not any(k.lower().endswith("_proxy") and k != "no_proxy" for k in env), env
        return run(w.hosts_mount(f"kinit {realm.user}"), env, input=realm.password + "\n",
                   plugin_dir=plugin_dir)

    r = plugin_kinit({})
    assert r.returncode != 0, r.output  # direct: blocked
    r = plugin_kinit({"wss_web_proxy": w.web_proxy})
    assert r.returncode == 0, r.output
    assert f"through web proxy {w.web_proxy}" in r.stderr, r.stderr
    r = plugin_kinit({"wss_web_proxy": w.web_proxy}, no_proxy=".test")
    assert r.returncode != 0, r.output

    # The relay, in the same view of the network, with an empty environment.
    launcher = ["unshare", "-Urm", *w.hosts_mount('env -i KRB5_WSS_RELAY_LOG=debug "$@"'), "sh"]
    relay = start_relay(["--listen", "127.0.0.1:0", "--realm", f"{realm.name}={url}",
                         "--anchors", f"FILE:{pki.ca_cert}", "--wss-web-proxy", w.web_proxy],
                        launcher=launcher)
    env = client_env(tmp_path, relay_conf(tmp_path / "krb5-relay.conf", realm, relay))
    r = kinit(realm, env)
    assert r.returncode == 0, r.output
    assert f"through web proxy {w.web_proxy}" in relay.log(), relay.log()
    assert exchange_lines(relay.log(), type="AS-REQ", result="ok", url=url)
    assert w.name in w.log.read_text(), w.log.read_text()


# ---------------------------------------------------------------------------
# --discover: the URLs from DNS, as the plugin finds them


@pytest.mark.skipif(not shutil.which("dnsmasq"), reason="dnsmasq is not installed")
def test_discover_realm_in_dns(start_relay, proxy, pki, realm, tmp_path):
    from test_dns import DnsServer, wss_uri
    server = DnsServer(tmp_path, realm.name, uri={
        f"_kerberos.{realm.name}": [(1, 0, wss_uri(proxy.port))],
        f"_kpasswd.{realm.name}": [(1, 0, wss_uri(proxy.port, "/kpasswd"))]})
    try:
        launcher = ["unshare", "-Urm", "sh", "-c",
                    f'mount --bind "{server.resolv_conf}" /etc/resolv.conf && exec "$@"', "sh"]
        relay = start_relay(["--listen", "127.0.0.1:0", "--kpasswd-listen", "127.0.0.1:0",
                             "--discover", realm.name, "--anchors", f"FILE:{pki.ca_cert}"],
                            launcher=launcher)
        realm.addprinc("relaydns", "old-password-1")
        env = client_env(tmp_path, relay_conf(tmp_path / "krb5.conf", realm, relay))
        r = kinit(realm, env)
        assert r.returncode == 0, r.output
        r = run(["kpasswd", f"relaydns@{realm.name}"], dict(env, KRB5CCNAME=f"FILE:{tmp_path}/pw"),
                input="old-password-1\nnew-password-2\nnew-password-2\n")
        assert r.returncode == 0, r.output
        log = relay.log()
        assert exchange_lines(log, type="AS-REQ", result="ok", url=proxy.url("/kdc")), log
        assert exchange_lines(log, service="kpasswd", result="ok", url=proxy.url("/kpasswd")), log
        assert server.queries(f"_kerberos.{realm.name}", "URI") >= 1
    finally:
        server.stop()


def test_kpasswd_server_unreachable_is_a_kpasswd_error(start_relay, proxy, pki, realm, tmp_path):
    """The KDC is reachable, the kpasswd URL is not: MIT's kpasswd gets the
    relay's answer in the RFC 3244 reply framing (a KRB-ERROR whose e-data
    is result code 2, hard error, and the relay's message) and prints it."""
    dead = free_ports(1)
    relay = start_relay(relay_args(realm, proxy, pki, "--kpasswd",
                                   f"{realm.name}=wss://localhost:{dead}/kpasswd"))
    realm.addprinc("relaypwfail", "old-password-1")
    env = client_env(tmp_path, relay_conf(tmp_path / "krb5.conf", realm, relay))
    r = run(["kpasswd", f"relaypwfail@{realm.name}"], env,
            input="old-password-1\nnew-password-2\nnew-password-2\n")
    assert r.returncode != 0, r.output
    assert "krb5-wss-relay: no proxy of realm" in r.output, r.output
    assert r.elapsed < 5, r.elapsed
    assert exchange_lines(relay.log(), service="kpasswd", result="upstream-failed"), relay.log()


@pytest.mark.skipif(not shutil.which("readelf"), reason="readelf is not installed")
def test_relay_needs_no_libkrb5():
    """The relay runs where no Kerberos library is installed (a JDK-only
    container): it links only the C library."""
    out = subprocess.run(["readelf", "-d", str(RELAY_BIN)], capture_output=True, text=True,
                         check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)
    assert needed and not any("krb5" in n or "gssapi" in n or "k5crypto" in n for n in needed), needed
