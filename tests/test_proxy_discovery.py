"""The proxy finds KDCs in DNS (`kdc = "dns"`): SRV records, priorities and
weights, the TTL cache, the destination allow-list, wildcard realm sections,
and realms that must never be looked up.

A real DNS server (dnsmasq, on 127.0.53.N:53, logging every query it gets)
serves the records; the proxy is pointed at it with `[discovery]
nameservers`, or (the last test) reads a resolv.conf bind-mounted over
/etc/resolv.conf in its own mount namespace. The test KDC listens on
loopback, so each test allows exactly the loopback addresses and ports it
means the proxy to use (`allow_networks`, `allow_ports`): anything else on
loopback stays refused, which is what the refusal tests rely on.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time

import pytest

from conftest import PROXY_BIN, Daemon, Realm, ns_command, wss_client
from test_dns import dns  # noqa: F401 (the fixture)
from test_proxy import (as_req, assert_preauth_required, expect_close, frame, kpasswd_req, recv, run,
                        user_of, wait_for_log, ws_connect)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="dnsmasq must bind port 53 on a loopback address (run as root, as CI does)"
)


def kdc_port(realm) -> int:
    return realm.portbase


def proxy_toml(tmp_path, pki, realms: str, discovery: str) -> str:
    path = tmp_path / f"proxy-{time.monotonic_ns()}.toml"
    path.write_text(
        f'[server]\nlisten = ["127.0.0.1:0"]\ncert = "{pki.server_cert}"\nkey = "{pki.server_key}"\n\n'
        f"{realms}\n[discovery]\n{discovery}\n"
    )
    return str(path)


def start_dns_proxy(start_proxy, tmp_path, pki, server, realms: str, allow: str, extra: str = ""):
    discovery = f'nameservers = ["{server.address}"]\n{allow}\n{extra}'
    return start_proxy(["--config", proxy_toml(tmp_path, pki, realms, discovery)])


def exchanges(proxy, realm_name: str) -> list[str]:
    """The `kdc=` of every exchange line for the realm, in order."""
    return re.findall(rf"exchange .* realm={re.escape(realm_name)} .* kdc=(\S+)", proxy.log())


def metric(proxy_metrics_port: int, name: str) -> float:
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{proxy_metrics_port}/metrics", timeout=5).read().decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in metrics"
    return float(m.group(1))


async def as_reqs(proxy, pki, realm_name: str, user: str, n: int) -> list[bytes]:
    out = []
    async with ws_connect(proxy, pki) as ws:
        for i in range(n):
            await ws.send(frame(as_req(user, realm_name, nonce=1000 + i)))
            out.append(await recv(ws))
    return out


def test_srv_priorities_and_weights(dns, start_proxy, realm, pki, tmp_path):
    """The lowest priority is used first; within it, weights 1:3 spread the
    first pick about 1:3; the higher priority is never first."""
    port = kdc_port(realm)
    server = dns(realm.name, srv={f"_kerberos._tcp.{realm.name}": [
        ("kdc-a.krbtest.com", port, 0, 1),
        ("kdc-b.krbtest.com", port, 0, 3),
        ("kdc-c.krbtest.com", port, 5, 0),
    ]}, hosts={"kdc-a.krbtest.com": "127.0.0.3", "kdc-b.krbtest.com": "127.0.0.4",
               "kdc-c.krbtest.com": "127.0.0.1"})
    proxy = start_dns_proxy(
        start_proxy, tmp_path, pki, server, f'[realms."{realm.name}"]\nkdc = "dns"\n',
        f'allow_ports = [{port}]\nallow_networks = ["127.0.0.1", "127.0.0.3", "127.0.0.4"]')
    replies = run(as_reqs(proxy, pki, realm.name, user_of(realm), 60))
    for r in replies:
        assert_preauth_required(r)
    used = exchanges(proxy, realm.name)
    assert len(used) == 60, proxy.log()
    a, b = used.count(f"127.0.0.3:{port}"), used.count(f"127.0.0.4:{port}")
    assert a + b == 60, f"the priority-5 KDC was used first: {used}"
    assert a >= 3 and b > a, f"weights 1:3 gave {a}:{b}"
    # One discovery served all 60 requests.
    assert server.queries(f"_kerberos._tcp.{realm.name}", "SRV") == 1
    assert re.search(rf"discovered realm={realm.name} service=kdc servers=\S+", proxy.log())


def test_the_lower_priority_is_used_when_the_first_fails(dns, start_proxy, realm, pki, tmp_path):
    port = kdc_port(realm)
    dead = socket.socket()
    dead.bind(("127.0.0.5", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    server = dns(realm.name, srv={f"_kerberos._tcp.{realm.name}": [
        ("dead.krbtest.com", dead_port, 0, 0),
        ("kdc.krbtest.com", port, 1, 0),
    ]}, hosts={"dead.krbtest.com": "127.0.0.5", "kdc.krbtest.com": "127.0.0.1"})
    proxy = start_dns_proxy(
        start_proxy, tmp_path, pki, server, f'[realms."{realm.name}"]\nkdc = "dns"\n',
        f'allow_ports = [{port}, {dead_port}]\nallow_networks = ["127.0.0.1", "127.0.0.5"]')
    assert_preauth_required(run(as_reqs(proxy, pki, realm.name, user_of(realm), 1))[0])
    assert exchanges(proxy, realm.name) == [f"127.0.0.1:{port}"]
    wait_for_log(proxy, rf"upstream 127\.0\.0\.5:{dead_port} .*failed")


def test_ttl_expiry_queries_again(dns, start_proxy, realm, pki, tmp_path):
    """Cached for the record's TTL (2 s, above min_ttl 1s): no query within
    it; after it, the next request is served from the old answer and the
    refresh queries DNS once more, in the background."""
    port = kdc_port(realm)
    name = f"_kerberos._tcp.{realm.name}"
    server = dns(realm.name, srv={name: [("kdc.krbtest.com", port, 0, 0)]},
                 hosts={"kdc.krbtest.com": "127.0.0.1"}, ttl=2)
    proxy = start_dns_proxy(
        start_proxy, tmp_path, pki, server, f'[realms."{realm.name}"]\nkdc = "dns"\n',
        f'allow_ports = [{port}]\nallow_networks = ["127.0.0.1"]\nmin_ttl = "1s"')
    run(as_reqs(proxy, pki, realm.name, user_of(realm), 2))
    run(as_reqs(proxy, pki, realm.name, user_of(realm), 1))
    assert server.queries(name, "SRV") == 1
    assert re.search(r"discovered .* ttl=(1\.\d+|2(\.0+)?)s", proxy.log()), proxy.log()
    time.sleep(2.5)
    start = time.monotonic()
    run(as_reqs(proxy, pki, realm.name, user_of(realm), 1))
    assert time.monotonic() - start < 1.5, "the request waited for the refresh"
    deadline = time.monotonic() + 5
    while server.queries(name, "SRV") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.queries(name, "SRV") == 2
    assert len(exchanges(proxy, realm.name)) == 4


def test_last_good_answer_is_kept_for_stale_for_when_dns_fails(dns, start_proxy, realm, pki, tmp_path):
    """DNS goes away after the first lookup: past the TTL (1 s) the old answer
    still serves, the failed refresh is logged, and once `stale_for` (3 s)
    past the TTL has gone the realm fails closed (4502)."""
    port = kdc_port(realm)
    server = dns(realm.name, srv={f"_kerberos._tcp.{realm.name}": [("kdc.krbtest.com", port, 0, 0)]},
                 hosts={"kdc.krbtest.com": "127.0.0.1"}, ttl=1)
    proxy = start_dns_proxy(
        start_proxy, tmp_path, pki, server, f'[realms."{realm.name}"]\nkdc = "dns"\n',
        f'allow_ports = [{port}]\nallow_networks = ["127.0.0.1"]\nmin_ttl = "1s"\nstale_for = "3s"\n'
        f'timeout = "1s"')
    start = time.monotonic()
    assert_preauth_required(run(as_reqs(proxy, pki, realm.name, user_of(realm), 1))[0])
    server.stop()
    time.sleep(max(0.0, start + 1.5 - time.monotonic()))
    assert_preauth_required(run(as_reqs(proxy, pki, realm.name, user_of(realm), 1))[0])
    wait_for_log(proxy, rf"discovery refresh failed realm={realm.name} service=kdc .*keeping the last good answer")
    time.sleep(max(0.0, start + 2.5 - time.monotonic()))
    assert_preauth_required(run(as_reqs(proxy, pki, realm.name, user_of(realm), 1))[0])
    time.sleep(max(0.0, start + 4.6 - time.monotonic()))

    async def fails():
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req(user_of(realm), realm.name)))
            await expect_close(ws, 4502)
    run(fails())
    assert len(exchanges(proxy, realm.name)) == 4


class Trap:
    """A TCP listener that counts connections (nothing may reach it)."""

    def __init__(self, host: str):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def stop(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def test_refused_destinations_are_never_contacted_and_are_logged(dns, start_proxy, realm, pki, tmp_path):
    """Records at 127.0.0.1:22 (port not allowed), at a listener on an
    unlisted port, at 127.0.0.2 (loopback, not allowed) and at an
    IPv4-mapped ::ffff:127.0.0.2 come first in priority: each is refused,
    logged and counted, nothing connects to the listener, and the allowed
    record behind them serves the request."""
    port = kdc_port(realm)
    trap = Trap("127.0.0.1")
    try:
        name = f"_kerberos._tcp.{realm.name}"
        server = dns(realm.name, srv={name: [
            ("ssh.krbtest.com", 22, 0, 0),
            ("trap.krbtest.com", trap.port, 1, 0),
            ("other-lo.krbtest.com", port, 2, 0),
            ("mapped.krbtest.com", port, 3, 0),
            ("kdc.krbtest.com", port, 9, 0),
        ]}, hosts={"ssh.krbtest.com": "127.0.0.1", "trap.krbtest.com": "127.0.0.1",
                   "other-lo.krbtest.com": "127.0.0.2", "mapped.krbtest.com": "::ffff:127.0.0.2",
                   "kdc.krbtest.com": "127.0.0.1"})
        metrics_port = socket.socket()
        metrics_port.bind(("127.0.0.1", 0))
        mport = metrics_port.getsockname()[1]
        metrics_port.close()
        path = proxy_toml(tmp_path, pki, f'[realms."{realm.name}"]\nkdc = "dns"\n',
                          f'nameservers = ["{server.address}"]\nallow_ports = [{port}]\n'
                          f'allow_networks = ["127.0.0.1"]')
        proxy = start_proxy(["--config", path, "--metrics-listen", f"127.0.0.1:{mport}"])
        assert_preauth_required(run(as_reqs(proxy, pki, realm.name, user_of(realm), 1))[0])
        assert exchanges(proxy, realm.name) == [f"127.0.0.1:{port}"]
        log = proxy.log()
        for address, reason in [("127.0.0.1:22", "port not in"), (f"127.0.0.1:{trap.port}", "port not in"),
                                (f"127.0.0.2:{port}", "loopback"), (f"127.0.0.2:{port}", "loopback")]:
            assert re.search(rf"discovery refused realm={realm.name} service=kdc record={name}\. "
                             rf"target=\S+ address={re.escape(address)} reason=\"{reason}", log), log
        assert metric(mport, 'krb5_wss_proxy_discovery_refused_total{reason="port"}') == 2
        assert metric(mport, 'krb5_wss_proxy_discovery_refused_total{reason="loopback"}') == 2
        assert metric(mport, 'krb5_wss_proxy_discovery_lookups_total{result="ok"}') == 1
        assert trap.accepted == 0
    finally:
        trap.stop()


def test_only_refused_destinations_fail_closed(dns, start_proxy, realm, pki, tmp_path):
    """Every record refused: the request fails (4502) naming why, nothing is
    contacted, and the failure is remembered (no second query at once)."""
    trap = Trap("127.0.0.1")
    try:
        name = f"_kerberos._tcp.{realm.name}"
        server = dns(realm.name, srv={name: [("trap.krbtest.com", trap.port, 0, 0)]},
                     hosts={"trap.krbtest.com": "127.0.0.1"})
        # The default allow-list: loopback refused, ports 88 and 464 only.
        proxy = start_dns_proxy(start_proxy, tmp_path, pki, server,
                                f'[realms."{realm.name}"]\nkdc = "dns"\n', "")

        async def go():
            for _ in range(2):
                async with ws_connect(proxy, pki) as ws:
                    await ws.send(frame(as_req(user_of(realm), realm.name)))
                    await expect_close(ws, 4502)
        run(go())
        wait_for_log(proxy, rf"result=failed error=\"discovery: {re.escape(name)}\.: no allowed destination "
                            rf"\(refused: 127\.0\.0\.1:{trap.port} \(port\)\)")
        assert trap.accepted == 0
        assert server.queries(name, "SRV") == 1
    finally:
        trap.stop()


def test_wildcard_section_serves_sub_realms(dns, start_proxy, realm, pki, plugin_dir, tmp_path):
    """`*.KRBTEST.COM` with kdc = "dns" serves KRBTEST.COM and SUB.KRBTEST.COM
    (a second real KDC), each looked up under its own name: real kinit
    through the plugin for both. Realms that only look alike are refused
    without a query."""
    sub = Realm("SUB.KRBTEST.COM")
    try:
        server = dns(realm.name, srv={
            f"_kerberos._tcp.{realm.name}": [("kdc.krbtest.com", realm.portbase, 0, 0)],
            f"_kerberos._tcp.{sub.name}": [("kdc.sub.krbtest.com", sub.portbase, 0, 0)],
        }, hosts={"kdc.krbtest.com": "127.0.0.1", "kdc.sub.krbtest.com": "127.0.0.1"})
        proxy = start_dns_proxy(
            start_proxy, tmp_path, pki, server, f'[realms."*.{realm.name}"]\nkdc = "dns"\n',
            f'allow_ports = [{realm.portbase}, {sub.portbase}]\nallow_networks = ["127.0.0.1"]')
        for r in (realm, sub):
            c = wss_client(r, proxy.port, pki, plugin_dir, tmp_path / f"client-{r.name}")
            res = c.kinit()
            assert res.returncode == 0, res.output
            assert server.queries(f"_kerberos._tcp.{r.name}", "SRV") == 1
            assert exchanges(proxy, r.name), proxy.log()

        async def refused(name: str):
            async with ws_connect(proxy, pki) as ws:
                await ws.send(frame(as_req("someone", name)))
                await expect_close(ws, 4403)
        for lookalike in ["EVILKRBTEST.COM", "sub.krbtest.com", "KRBTEST.COM.EVIL.ORG", f"*.{realm.name}"]:
            run(refused(lookalike))
        log = server.log_path.read_text()
        assert "evilkrbtest" not in log.lower() and "evil.org" not in log.lower(), log
        assert not re.search(r"query\[SRV\] _kerberos\._tcp\.sub\.krbtest\.com ", log), log
    finally:
        sub.stop()


def test_unconfigured_realm_is_never_looked_up(dns, start_proxy, realm, pki, tmp_path):
    port = kdc_port(realm)
    server = dns(realm.name, srv={f"_kerberos._tcp.{realm.name}": [("kdc.krbtest.com", port, 0, 0)]},
                 hosts={"kdc.krbtest.com": "127.0.0.1"})
    # The realm from the command line (`--realm R=dns`), [discovery] from the file.
    path = proxy_toml(tmp_path, pki, "", f'nameservers = ["{server.address}"]\nallow_ports = [{port}]\n'
                                         f'allow_networks = ["127.0.0.1"]')
    proxy = start_proxy(["--config", path, "--realm", f"{realm.name}=dns"])
    assert_preauth_required(run(as_reqs(proxy, pki, realm.name, user_of(realm), 1))[0])
    assert server.queries(f"_kerberos._tcp.{realm.name}", "SRV") == 1

    async def go():
        for name in ["OTHER.ORG", "KRBTEST.COM.OTHER.ORG", "X.KRBTEST.COM"]:
            async with ws_connect(proxy, pki) as ws:
                await ws.send(frame(as_req("someone", name)))
                await expect_close(ws, 4403)
    run(go())
    wait_for_log(proxy, r"refused .* close=4403 .* realm=OTHER\.ORG .* detail=\"realm not configured\"")
    log = server.log_path.read_text().lower()
    assert "other.org" not in log and "x.krbtest.com" not in log, log
    assert server.queries(f"_kerberos._tcp.{realm.name}", "SRV") == 1, "only the configured realm was asked"


def test_kpasswd_falls_back_to_kerberos_adm_with_port_464(dns, start_proxy, realm, pki, tmp_path):
    """No _kpasswd._tcp record: _kerberos-adm._tcp's target is used with port
    464 (its own port, 749, is ignored)."""
    server = dns(realm.name, srv={f"_kerberos-adm._tcp.{realm.name}": [("adm.krbtest.com", 749, 0, 0)]},
                 hosts={"adm.krbtest.com": "127.0.0.6"})
    proxy = start_dns_proxy(start_proxy, tmp_path, pki, server, f'[realms."{realm.name}"]\nkpasswd = "dns"\n',
                            'allow_networks = ["127.0.0.6"]')

    async def go():
        async with ws_connect(proxy, pki, path="/kpasswd") as ws:
            await ws.send(frame(kpasswd_req(realm.name)))
            await expect_close(ws, 4502)
    run(go())
    assert server.queries(f"_kpasswd._tcp.{realm.name}", "SRV") == 1
    assert server.queries(f"_kerberos-adm._tcp.{realm.name}", "SRV") == 1
    wait_for_log(proxy, r"service=kpasswd .* result=failed error=\"127\.0\.0\.6:464: connect")


def test_kinit_kvno_kpasswd_through_a_kdc_found_with_the_system_resolv_conf(
        dns, realm, pki, plugin_dir, tmp_path):
    """The proxy without `nameservers` reads /etc/resolv.conf (here its own,
    bind-mounted in a private mount namespace): kinit, kvno and kpasswd
    through the plugin, the proxy and a KDC and kpasswd server found in DNS."""
    server = dns(realm.name, srv={
        f"_kerberos._tcp.{realm.name}": [("kdc.krbtest.com", realm.portbase, 0, 0)],
        f"_kpasswd._tcp.{realm.name}": [("kdc.krbtest.com", realm.portbase + 2, 0, 0)],
    }, hosts={"kdc.krbtest.com": "127.0.0.1"})
    path = proxy_toml(tmp_path, pki, f'[realms."{realm.name}"]\nkdc = "dns"\nkpasswd = "dns"\n',
                      f'allow_ports = [{realm.portbase}, {realm.portbase + 2}]\nallow_networks = ["127.0.0.1"]')
    env = dict(os.environ, KRB5_WSS_PROXY_LOG="debug")
    proxy = Daemon(ns_command([str(PROXY_BIN), "--config", path], None, server.resolv_conf), tmp_path, env)
    try:
        proxy.port = int(proxy.listen_line.rsplit(":", 1)[1])
        c = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "client")
        r = c.kinit()
        assert r.returncode == 0, r.output
        r = c.run(["kvno", realm.host_princ])
        assert r.returncode == 0, r.output
        princ = f"discpw@{realm.name}"
        realm.addprinc(princ, "disc-old-1")
        r = c.run(["kpasswd", princ], input="disc-old-1\ndisc-new-2\ndisc-new-2\n")
        assert r.returncode == 0, r.output
        log = proxy.log()
        assert re.search(rf"service=kpasswd .* kdc=127\.0\.0\.1:{realm.portbase + 2} .*result=ok", log), log
        assert server.queries(f"_kerberos._tcp.{realm.name}", "SRV") == 1
        assert server.queries(f"_kpasswd._tcp.{realm.name}", "SRV") == 1
    finally:
        proxy.stop()


# ---------------------------------------------------------------------------
# kdcproxy.conf: convert-kdcproxy


def convert(conf, env=None, *extra):
    import subprocess
    return subprocess.run([str(PROXY_BIN), "convert-kdcproxy", str(conf), *extra], capture_output=True,
                          text=True, timeout=30, env=env)


def test_freeipa_kdcproxy_conf_converts_and_serves_kinit_and_kpasswd(start_proxy, realm, pki, plugin_dir,
                                                                       tmp_path):
    """kdcproxy.conf as FreeIPA installs it (`configs = mit`, `use_dns =
    false`): the realms come from krb5.conf ($KRB5_CONFIG, through an
    includedir as FreeIPA's krb5.conf has one); the converted TOML serves a
    real kinit and kpasswd through the plugin."""
    conf = tmp_path / "kdcproxy.conf"
    conf.write_text("[global]\nconfigs = mit\nuse_dns = false\n\n")
    included = tmp_path / "krb5.conf.d"
    included.mkdir()
    (included / "realm.conf").write_text(
        f"[realms]\n {realm.name} = {{\n  kdc = {realm.kdc_addr}\n"
        f"  kpasswd_server = {realm.kpasswd_addr}\n  admin_server = 127.0.0.1:749\n"
        f"  pkinit_anchors = FILE:/etc/ipa/ca.crt\n }}\n")
    krb5 = tmp_path / "krb5.conf"
    krb5.write_text(f"includedir {included}/\n\n[libdefaults]\n default_realm = {realm.name}\n")
    r = convert(conf, dict(os.environ, KRB5_CONFIG=str(krb5)))
    assert r.returncode == 0, r.stderr
    assert f'[realms."{realm.name}"]\nkdc = ["{realm.kdc_addr}"]\n' in r.stdout, r.stdout
    # kpasswd_server, then admin_server's host on port 464.
    assert f'kpasswd = ["{realm.kpasswd_addr}", "127.0.0.1:464"]\n' in r.stdout, r.stdout
    assert "dns" not in r.stdout.split("# Add [server]")[1], r.stdout
    toml = tmp_path / "converted.toml"
    toml.write_text(f'[server]\nlisten = ["127.0.0.1:0"]\ncert = "{pki.server_cert}"\n'
                    f'key = "{pki.server_key}"\n{r.stdout}')
    proxy = start_proxy(["--config", str(toml)])
    c = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "client")
    res = c.kinit()
    assert res.returncode == 0, res.output
    princ = f"kdcproxypw@{realm.name}"
    realm.addprinc(princ, "kp-old-1")
    res = c.run(["kpasswd", princ], input="kp-old-1\nkp-new-2\nkp-new-2\n")
    assert res.returncode == 0, res.output


def test_dns_realm_discovery_is_refused_with_the_reason(tmp_path):
    conf = tmp_path / "kdcproxy.conf"
    conf.write_text("[global]\nuse_dns = true\ndns_realm_discovery = true\n\n[EXAMPLE.COM]\n")
    r = convert(conf)
    assert r.returncode == 1 and r.stdout == "", r
    assert "dns_realm_discovery = true is refused" in r.stderr and "CVE-2025-59088" in r.stderr, r.stderr
    assert str(conf) in r.stderr


def test_what_cannot_be_honoured_is_named(tmp_path):
    conf = tmp_path / "kdcproxy.conf"
    conf.write_text("[global]\nsilence_port_warn = true\n\n[EXAMPLE.COM]\n"
                    "kerberos = kerberos+udp://kdc.example.com https://kdc.example.com/KdcProxy\n\n"
                    "[*AD.EXAMPLE.COM]\n")
    r = convert(conf)
    assert r.returncode == 0, r.stderr
    for want in ["UDP only", "scheme https://", "silence_port_warn"]:
        assert f"convert-kdcproxy: note: " in r.stderr and want in r.stderr, r.stderr
    assert '[realms."EXAMPLE.COM"]\nkdc = ["kdc.example.com:88"]\nkpasswd = "dns"\nudp = true\n' in r.stdout
    assert '[realms."*.AD.EXAMPLE.COM"]\nkdc = "dns"\nkpasswd = "dns"\n' in r.stdout
