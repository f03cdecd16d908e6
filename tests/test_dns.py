"""Finding the proxy in DNS: URI and SRV records, ordering, failover, caching.

A real DNS server (dnsmasq) on a loopback address serves the records; the
client's libkrb5 and the plugin see it through a resolv.conf bind-mounted
over /etc/resolv.conf inside the test's private mount namespace. The
client's krb5.conf names no KDC at all for the realm: everything comes from
DNS. wss DNS discovery is opt-in (`wss_dns_discovery = true`, in the
realm's stanza or [libdefaults]): the realms here set it, except in the
tests showing that without it a DNS-only realm costs nothing (no wss query,
no core loaded) and that with it a broken core fails closed.
"""

from __future__ import annotations

import itertools
import os
import re
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LIBKRB5_PLUGIN_DIR, client_env, free_ports, run, tls_proxy_args, write_krb5_conf

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="dnsmasq must bind port 53 on a loopback address (run as root, as CI does)"
)

_addresses = itertools.count(1)


class DnsServer:
    """dnsmasq on 127.0.53.N:53, authoritative for the realm's domain."""

    def __init__(self, workdir: Path, realm: str, uri: dict[str, list[tuple[int, int, str]]] | None = None,
                 srv: dict[str, list[tuple[str, int, int, int]]] | None = None, ttl: int = 60,
                 no_service: list[str] | None = None, hosts: dict[str, str] | None = None):
        self.address = f"127.0.53.{next(_addresses) % 250 + 1}"
        self.log_path = workdir / f"dnsmasq-{self.address}.log"
        args = [
            "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", f"--listen-address={self.address}", "--port=53",
            "--log-queries", f"--log-facility={self.log_path}", f"--local-ttl={ttl}",
            "--user=root", "--group=root", "--pid-file=", f"--local=/{realm.lower()}/",
        ]
        for name, records in (uri or {}).items():
            for prio, weight, target in records:
                rdata = struct.pack(">HH", prio, weight) + target.encode()
                args.append(f"--dns-rr={name},256,{rdata.hex()}")
        for name, records in (srv or {}).items():
            for target, port, prio, weight in records:
                args.append(f"--srv-host={name},{target},{port},{prio},{weight}")
        for name in no_service or []:
            args.append(f"--srv-host={name}")
        for name, addr in (hosts or {}).items():
            args.append(f"--host-record={name},{addr}")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dnsmasq failed: {self.proc.stderr.read()}")
            if self.log_path.exists() and "started" in self.log_path.read_text():
                break
            time.sleep(0.02)
        self.resolv_conf = workdir / f"resolv-{self.address}.conf"
        self.resolv_conf.write_text(f"nameserver {self.address}\noptions timeout:1 attempts:2\n")

    def queries(self, name: str, qtype: str) -> int:
        """How many queries for `name` of `qtype` (URI, SRV) arrived."""
        log = self.log_path.read_text()
        return len(re.findall(rf"query\[{qtype}\] {re.escape(name)} from", log, re.IGNORECASE))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def dns(tmp_path):
    servers: list[DnsServer] = []

    def start(*args, **kw) -> DnsServer:
        s = DnsServer(tmp_path, *args, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def dns_client(realm, pki, tmp_path, **realm_opts):
    """krb5.conf with NO kdc lines for the realm, opted in to wss DNS
    discovery: DNS must find it."""
    d = tmp_path / "client"
    d.mkdir(exist_ok=True)
    opts = {"http_anchors": f"FILE:{pki.ca_cert}", "wss_dns_discovery": "true"}
    opts.update(realm_opts)
    conf = write_krb5_conf(d / "krb5.conf", realm.name, {realm.name: opts},
                           libdefaults={"dns_lookup_kdc": "true"})
    return client_env(d, conf)


def kinit(realm, env, plugin_dir, server, **kw):
    return run(["kinit", realm.user], env, input=realm.password + "\n", plugin_dir=plugin_dir,
               resolv_conf=server.resolv_conf, **kw)


def wss_uri(port: int, path: str = "/kdc", flags: str = "") -> str:
    return f"krb5srv:{flags}:wss:wss://localhost:{port}{path}"


def test_uri_records_only(dns, proxy, realm, pki, plugin_dir, tmp_path):
    server = dns(realm.name, uri={
        f"_kerberos.{realm.name}": [(1, 0, wss_uri(proxy.port))],
        f"_kpasswd.{realm.name}": [(1, 0, wss_uri(proxy.port, "/kpasswd"))],
    })
    env = dns_client(realm, pki, tmp_path)
    r = kinit(realm, env, plugin_dir, server)
    assert r.returncode == 0, r.output
    assert f"URLs from URI _kerberos.{realm.name}." in r.stderr, r.stderr
    assert "AS-REQ exchange over wss://localhost" in r.stderr
    r = run(["kvno", realm.host_princ], env, plugin_dir=plugin_dir, resolv_conf=server.resolv_conf)
    assert r.returncode == 0, r.output

    princ = f"dnspw@{realm.name}"
    realm.addprinc(princ, "dns-old-1")
    r = run(["kpasswd", princ], env, input="dns-old-1\ndns-new-2\ndns-new-2\n", plugin_dir=plugin_dir,
            resolv_conf=server.resolv_conf)
    assert r.returncode == 0, r.output
    assert "kpasswd v0x0001 exchange over wss://localhost" in r.stderr, r.stderr
    assert f"URI _kpasswd.{realm.name}." in r.stderr, r.stderr


def test_srv_records_only(dns, proxy, realm, pki, plugin_dir, tmp_path):
    server = dns(realm.name, srv={f"_kerberos._wss.{realm.name}": [("localhost", proxy.port, 0, 0)]})
    env = dns_client(realm, pki, tmp_path)
    r = kinit(realm, env, plugin_dir, server)
    assert r.returncode == 0, r.output
    assert f"URLs from SRV _kerberos._wss.{realm.name}." in r.stderr, r.stderr
    assert f"wss://localhost:{proxy.port}/kdc" in r.stderr
    # kpasswd: no _kpasswd records, so the URL is derived (/kpasswd).
    princ = f"srvpw@{realm.name}"
    realm.addprinc(princ, "srv-old-1")
    r = run(["kpasswd", princ], env, input="srv-old-1\nsrv-new-2\nsrv-new-2\n", plugin_dir=plugin_dir,
            resolv_conf=server.resolv_conf)
    assert r.returncode == 0, r.output
    assert f"wss://localhost:{proxy.port}/kpasswd" in r.stderr, r.stderr


def test_uri_wins_over_srv(dns, start_proxy, pki, realm, plugin_dir, tmp_path):
    a = start_proxy(tls_proxy_args(pki, realm))
    b = start_proxy(tls_proxy_args(pki, realm))
    server = dns(realm.name, uri={f"_kerberos.{realm.name}": [(1, 0, wss_uri(a.port))]},
                 srv={f"_kerberos._wss.{realm.name}": [("localhost", b.port, 0, 0)]})
    env = dns_client(realm, pki, tmp_path)
    r = kinit(realm, env, plugin_dir, server)
    assert r.returncode == 0, r.output
    assert "AS-REQ" in a.log() and "AS-REQ" not in b.log()
    assert server.queries(f"_kerberos._wss.{realm.name}", "SRV") == 0


def test_priorities_and_weights(dns, start_proxy, pki, realm, plugin_dir, tmp_path):
    low = start_proxy(tls_proxy_args(pki, realm))    # priority 2: never used while 1 works
    light = start_proxy(tls_proxy_args(pki, realm))  # priority 1, weight 1
    heavy = start_proxy(tls_proxy_args(pki, realm))  # priority 1, weight 99
    server = dns(realm.name, uri={f"_kerberos.{realm.name}": [
        (2, 0, wss_uri(low.port)), (1, 1, wss_uri(light.port)), (1, 99, wss_uri(heavy.port))]})
    env = dns_client(realm, pki, tmp_path)
    runs = 10
    for _ in range(runs):
        r = kinit(realm, env, plugin_dir, server)
        assert r.returncode == 0, r.output
    count = lambda p: p.log().count("type=AS-REQ")  # noqa: E731
    assert count(low) == 0
    # Each kinit makes 2 AS exchanges on the first URL of its random order.
    # P(light first) = 2/101 per run: 7 or more heavy runs out of 10 is
    # all but certain (the chance of fewer is below 1e-7).
    assert count(heavy) >= 2 * 7, (count(heavy), count(light))
    assert count(heavy) + count(light) == 2 * runs


def test_no_records_leaves_the_realm_to_libkrb5(dns, realm, pki, plugin_dir, tmp_path):
    # Only libkrb5's own SRV record (plain TCP to the KDC): the plugin must
    # step aside so that libkrb5's lookup finds it.
    # (libkrb5 looks the SRV target up as an absolute name, so it is served
    # by the test DNS server too.)
    host, port = realm.kdc_addr.split(":")
    kdc_host = f"kdc.{realm.name.lower()}"
    server = dns(realm.name, srv={f"_kerberos._tcp.{realm.name}": [(kdc_host, int(port), 0, 0)]},
                 hosts={kdc_host: host})
    env = dns_client(realm, pki, tmp_path)
    r = kinit(realm, env, plugin_dir, server)
    assert r.returncode == 0, r.output
    assert "krb5-wss" not in r.output, r.output
    assert server.queries(f"_kerberos._wss.{realm.name}", "SRV") >= 1
    assert server.queries(f"_kerberos._tcp.{realm.name}", "SRV") >= 1


def test_dot_srv_target_means_no_wss_service(dns, realm, pki, plugin_dir, tmp_path):
    host, port = realm.kdc_addr.split(":")
    kdc_host = f"kdc.{realm.name.lower()}"
    server = dns(realm.name, srv={f"_kerberos._tcp.{realm.name}": [(kdc_host, int(port), 0, 0)]},
                 no_service=[f"_kerberos._wss.{realm.name}"], hosts={kdc_host: host})
    env = dns_client(realm, pki, tmp_path)
    r = kinit(realm, env, plugin_dir, server)
    assert r.returncode == 0, r.output
    assert "AS-REQ exchange over wss" not in r.output
    # The plugin asked, and was told "no service" (target ".").
    assert server.queries(f"_kerberos._wss.{realm.name}", "SRV") >= 1
    assert f"config _kerberos._wss.{realm.name} is <SRV>" in server.log_path.read_text()


def test_uri_lookup_can_be_turned_off(dns, start_proxy, pki, realm, plugin_dir, tmp_path):
    a = start_proxy(tls_proxy_args(pki, realm))
    b = start_proxy(tls_proxy_args(pki, realm))
    server = dns(realm.name, uri={f"_kerberos.{realm.name}": [(1, 0, wss_uri(a.port))]},
                 srv={f"_kerberos._wss.{realm.name}": [("localhost", b.port, 0, 0)]})
    d = tmp_path / "client"
    d.mkdir()
    conf = write_krb5_conf(d / "krb5.conf", realm.name, {realm.name: {"http_anchors": f"FILE:{pki.ca_cert}"}},
                           libdefaults={"dns_lookup_kdc": "true", "dns_uri_lookup": "false",
                                        "wss_dns_discovery": "true"})
    r = kinit(realm, client_env(d, conf), plugin_dir, server)
    assert r.returncode == 0, r.output
    assert "AS-REQ" in b.log() and "AS-REQ" not in a.log()
    assert server.queries(f"_kerberos.{realm.name}", "URI") == 0


def test_dead_first_url_then_live_second(dns, proxy, realm, pki, plugin_dir, tmp_path):
    # The first URL accepts TCP but never answers (a stalled server): the
    # second is started after one stagger (250 ms) and wins the race.
    stalled = socket.socket()
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(8)
    try:
        server = dns(realm.name, uri={f"_kerberos.{realm.name}": [
            (1, 0, wss_uri(stalled.getsockname()[1])), (2, 0, wss_uri(proxy.port))]})
        env = dns_client(realm, pki, tmp_path, wss_connect_timeout="5s")
        r = kinit(realm, env, plugin_dir, server)
        assert r.returncode == 0, r.output
        assert "had not connected when another URL did" in r.stderr, r.stderr
        # One stagger plus the work, not the connect timeout (5 s).
        assert r.elapsed < 1.5, r.elapsed
    finally:
        stalled.close()


def test_every_url_failing_names_each(dns, realm, pki, plugin_dir, tmp_path):
    dead1, dead2 = free_ports(1), free_ports(1)
    server = dns(realm.name, uri={f"_kerberos.{realm.name}": [
        (1, 0, wss_uri(dead1)), (2, 0, wss_uri(dead2))]})
    env = dns_client(realm, pki, tmp_path)
    r = kinit(realm, env, plugin_dir, server)
    assert r.returncode != 0
    assert f"Cannot contact any KDC for realm '{realm.name}'" in r.output, r.output
    assert f"wss://localhost:{dead1}/kdc: connection refused" in r.output, r.output
    assert f"wss://localhost:{dead2}/kdc: connection refused" in r.output, r.output


def test_answers_are_cached_for_their_ttl(dns, proxy, realm, pki, plugin_dir, tmp_path, c_programs):
    ttl = 3
    server = dns(realm.name, ttl=ttl, uri={f"_kerberos.{realm.name}": [(1, 0, wss_uri(proxy.port))]})
    env = dns_client(realm, pki, tmp_path)
    name = f"_kerberos.{realm.name}"
    # One process, three rounds of initial credentials (each several
    # lookups): the first two within the TTL, the third after it.
    r = run([str(c_programs["krb5_loop"]), realm.user, realm.password, "2", "100"], env,
            plugin_dir=plugin_dir, resolv_conf=server.resolv_conf)
    assert r.returncode == 0, r.output
    assert server.queries(name, "URI") == 1, server.log_path.read_text()
    assert "from the cache" in r.stderr

    before = server.queries(name, "URI")
    r = run([str(c_programs["krb5_loop"]), realm.user, realm.password, "2", str((ttl + 1) * 1000)], env,
            plugin_dir=plugin_dir, resolv_conf=server.resolv_conf)
    assert r.returncode == 0, r.output
    assert server.queries(name, "URI") - before == 2, server.log_path.read_text()


def _kdc_in_dns(dns, realm, proxy, **kw):
    """DNS naming both the wss proxy (URI and SRV) and, for libkrb5, the
    real KDC (_kerberos._tcp SRV, and its host's address)."""
    host, port = realm.kdc_addr.split(":")
    kdc_host = f"kdc.{realm.name.lower()}"
    return dns(realm.name, uri={f"_kerberos.{realm.name}": [(1, 0, wss_uri(proxy.port))]},
               srv={f"_kerberos._wss.{realm.name}": [("localhost", proxy.port, 0, 0)],
                    f"_kerberos._tcp.{realm.name}": [(kdc_host, int(port), 0, 0)]},
               hosts={kdc_host: host}, **kw)


def test_without_the_switch_a_dns_only_realm_costs_nothing(dns, proxy, realm, pki, plugin_dir, tmp_path):
    """No wss_dns_discovery: the front module answers "not mine" after
    profile queries only. The core is never loaded (the dynamic loader's
    own log says so), the plugin makes no DNS query, and libkrb5 finds the
    KDC through its own records, as without krb5-wss."""
    server = _kdc_in_dns(dns, realm, proxy)
    d = tmp_path / "client"
    d.mkdir()
    conf = write_krb5_conf(d / "krb5.conf", realm.name, {realm.name: {"http_anchors": f"FILE:{pki.ca_cert}"}},
                           libdefaults={"dns_lookup_kdc": "true"})
    trace = tmp_path / "trace.log"
    env = client_env(d, conf, KRB5_TRACE=str(trace), LD_DEBUG="files")
    r = kinit(realm, env, plugin_dir, server)
    assert r.returncode == 0, r.output
    # The front module was loaded, the core was not.
    assert f"{LIBKRB5_PLUGIN_DIR}/krb5_wss.so" in r.stderr, r.stderr[-3000:]
    assert "krb5_wss_core.so" not in r.stderr, r.stderr[-3000:]
    assert "krb5-wss" not in trace.read_text(), trace.read_text()
    # No query of the plugin's; libkrb5's own (URI _kerberos, SRV _tcp) are fine.
    assert server.queries(f"_kerberos._wss.{realm.name}", "SRV") == 0, server.log_path.read_text()
    assert server.queries(f"_kerberos._tcp.{realm.name}", "SRV") >= 1, server.log_path.read_text()
    assert "AS-REQ" not in proxy.log()
    # The same realm opted in goes over wss (the records are right).
    env = dns_client(realm, pki, tmp_path)
    r = kinit(realm, env, plugin_dir, server)
    assert r.returncode == 0, r.output
    assert "AS-REQ exchange over wss://localhost" in r.stderr, r.stderr


def test_opted_in_realm_fails_closed_without_its_core(dns, proxy, realm, pki, plugin_dir, tmp_path):
    """wss_dns_discovery on and the core missing: the lookup fails with the
    front module's error; libkrb5 does not go on to the _kerberos._tcp
    record (the real KDC sees nothing)."""
    server = _kdc_in_dns(dns, realm, proxy)
    broken = tmp_path / "plugins-no-core"
    (broken / "krb5-wss").mkdir(parents=True)
    (broken / "krb5_wss.so").write_bytes((plugin_dir / "krb5_wss.so").read_bytes())
    princ, password = f"dnsclosed@{realm.name}", "dns-closed-1"
    realm.addprinc(princ, password)
    env = dns_client(realm, pki, tmp_path)
    r = run(["kinit", princ], env, input=password + "\n", plugin_dir=broken, resolv_conf=server.resolv_conf)
    assert r.returncode == 1, r.output
    assert f"krb5-wss: realm {realm.name}: cannot load the core {LIBKRB5_PLUGIN_DIR}/krb5-wss/krb5_wss_core.so" \
        in r.output, r.output
    kdc_log = (Path(realm.k5.tmpdir) / "kdc.log").read_text()
    assert princ not in kdc_log, kdc_log[-2000:]
