"""krb5-wss-proxy behind nginx (Debian's), with the documented
configuration `proxy/examples/nginx.conf` itself: nginx on loopback
terminates TLS and passes the WebSocket upgrade and MS-KKDCP POSTs to a
`--plaintext` proxy. Also: X-Forwarded-For is used only when trusted, and
two proxies behind nginx keep serving tickets while one is killed.

nginx runs unprivileged-port, with every path (config, pid, logs, temp
files) in the test's temp dir, and is stopped by the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, client_env, free_ports, wait_port, write_krb5_conf, wss_client
from conftest import run as run_cmd
from test_proxy import (
    as_req,
    assert_preauth_required,
    client_ssl,
    expect_close,
    frame,
    recv,
    run,
    user_of,
    wait_for_log,
)

import websockets

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
EXAMPLE = ROOT / "proxy" / "examples" / "nginx.conf"

pytestmark = pytest.mark.skipif(not os.path.exists(NGINX), reason="nginx is not installed")


def substitute(text: str, old: str, new: str) -> str:
    """Replaces `old` exactly once: the example must keep the lines the
    test relies on, so the documented file stays the tested one."""
    assert text.count(old) == 1, f"{EXAMPLE} no longer has exactly one {old!r}"
    return text.replace(old, new)


class Nginx:
    """nginx running the example configuration on `port`, in front of the
    proxies at `upstreams` (host:port). bench/bench.py (scale-out) runs it
    too, with more workers and connections."""

    def __init__(self, workdir: Path, pki, port: int, upstreams: list[str], workers: int = 1,
                 worker_connections: int = 256):
        self.dir = workdir / "nginx"
        self.dir.mkdir()
        self.port = port
        site = EXAMPLE.read_text()
        site = substitute(site, "listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;")
        site = substitute(site, "listen [::]:443 ssl;", "")
        site = substitute(site, "/etc/krb5-wss/fullchain.pem", str(pki.server_cert))
        site = substitute(site, "/etc/krb5-wss/privkey.pem", str(pki.server_key))
        site = substitute(site, "    server 127.0.0.1:8088;\n",
                          "".join(f"    server {u};\n" for u in upstreams))
        (self.dir / "krb5-wss.conf").write_text(site)
        d = self.dir
        user = "user root;\n" if os.geteuid() == 0 else ""
        (d / "nginx.conf").write_text(
            f"{user}worker_processes {workers};\n"
            f"error_log {d}/error.log info;\n"
            f"pid {d}/nginx.pid;\n"
            f"events {{ worker_connections {worker_connections}; }}\n"
            "http {\n"
            f"  access_log {d}/access.log;\n"
            f"  client_body_temp_path {d}/client_body;\n"
            f"  proxy_temp_path {d}/proxy;\n"
            f"  fastcgi_temp_path {d}/fastcgi;\n"
            f"  uwsgi_temp_path {d}/uwsgi;\n"
            f"  scgi_temp_path {d}/scgi;\n"
            f"  include {d}/krb5-wss.conf;\n"
            "}\n"
        )
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(d), "-c", str(d / "nginx.conf"), "-e", str(d / "error.log"),
             "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_port(port)
        except AssertionError:
            self.stop()
            raise AssertionError(f"nginx did not start: {self.proc.stderr.read() if self.proc.stderr else ''}"
                                 f"\n{(d / 'error.log').read_text() if (d / 'error.log').exists() else ''}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


@pytest.fixture
def nginx_factory(tmp_path, pki):
    started: list[Nginx] = []

    def start(upstreams: list[str]) -> Nginx:
        n = Nginx(tmp_path, pki, free_ports(1), upstreams)
        started.append(n)
        return n

    yield start
    for n in started:
        n.stop()


def plaintext_args(realm, *extra: str) -> list[str]:
    return ["--listen", "127.0.0.1:0", "--plaintext",
            "--realm", f"{realm.name}={realm.kdc_addr}",
            "--kpasswd", f"{realm.name}={realm.kpasswd_addr}", *extra]


def ws_from(nginx: Nginx, pki, source: str):
    """A WebSocket to nginx from loopback address `source`."""
    return websockets.connect(
        f"wss://localhost:{nginx.port}/kdc", ssl=client_ssl(pki), subprotocols=["binary"],
        open_timeout=5, close_timeout=5, local_addr=(source, 0))


def test_behind_nginx_trusting_x_forwarded_for(start_proxy, nginx_factory, pki, realm,
                                               plugin_dir, tmp_path):
    proxy = start_proxy(plaintext_args(realm, "--trust-forwarded-for", "127.0.0.1",
                                       "--max-connections-per-address", "1"))
    nginx = nginx_factory([f"127.0.0.1:{proxy.port}"])

    async def go():
        async with ws_from(nginx, pki, "127.0.0.2") as ws:
            await ws.send(frame(as_req(user_of(realm), realm.name)))
            assert_preauth_required(await recv(ws))
            # The per-address limit counts the client nginx names, not nginx.
            async with ws_from(nginx, pki, "127.0.0.2") as second:
                await expect_close(second, 4429)
            async with ws_from(nginx, pki, "127.0.0.3") as other:
                await other.send(frame(as_req(user_of(realm), realm.name)))
                assert_preauth_required(await recv(other))

    run(go())
    wait_for_log(proxy, r"exchange client=127\.0\.0\.2 service=kdc transport=websocket .*result=ok")
    wait_for_log(proxy, r"exchange client=127\.0\.0\.3 service=kdc .*result=ok")
    wait_for_log(proxy, r"refused client=127\.0\.0\.2 service=kdc transport=websocket close=4429 ")

    # MIT's kinit/kvno/kpasswd through nginx: with the plugin over wss://,
    # and natively over MS-KKDCP. nginx passes the first request carried in
    # the upgrade, and its acknowledgement, through (docs/protocol.md).
    client = wss_client(realm, nginx.port, pki, plugin_dir, tmp_path / "wss")
    r = client.kinit()
    assert r.returncode == 0, r.output
    assert "request carried in the upgrade" in r.stderr, r.stderr
    r = client.run(["kvno", realm.host_princ])
    assert r.returncode == 0, r.output

    url = f"https://localhost:{nginx.port}/KdcProxy"
    (tmp_path / "kkdcp").mkdir()
    conf = write_krb5_conf(tmp_path / "kkdcp" / "krb5.conf", realm.name, {realm.name: {
        "kdc": url, "kpasswd_server": url, "http_anchors": f"FILE:{pki.ca_cert}"}})
    env = client_env(tmp_path / "kkdcp", conf)
    r = run_cmd(["kinit", realm.user], env, input=realm.password + "\n")
    assert r.returncode == 0, r.output
    r = run_cmd(["kvno", realm.host_princ], env)
    assert r.returncode == 0, r.output
    wait_for_log(proxy, r"exchange client=127\.0\.0\.1 service=kdc transport=kkdcp .*"
                        r"type=TGS-REQ .*result=ok")


def test_x_forwarded_for_is_ignored_unless_trusted(start_proxy, nginx_factory, pki, realm):
    proxy = start_proxy(plaintext_args(realm))
    nginx = nginx_factory([f"127.0.0.1:{proxy.port}"])

    async def go():
        async with ws_from(nginx, pki, "127.0.0.2") as ws:
            await ws.send(frame(as_req(user_of(realm), realm.name)))
            assert_preauth_required(await recv(ws))

    run(go())
    # nginx's own address, with its port: the header was not believed.
    wait_for_log(proxy, r"exchange client=127\.0\.0\.1:\d+ service=kdc .*result=ok")
    assert "client=127.0.0.2" not in proxy.log()


def test_two_proxies_one_killed_mid_run(start_proxy, nginx_factory, pki, realm, plugin_dir,
                                        tmp_path):
    a = start_proxy(plaintext_args(realm, "--trust-forwarded-for", "127.0.0.1"))
    b = start_proxy(plaintext_args(realm, "--trust-forwarded-for", "127.0.0.1"))
    nginx = nginx_factory([f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    client = wss_client(realm, nginx.port, pki, plugin_dir, tmp_path / "c")
    runs = 12
    served_by_b_at_kill = 0
    for i in range(runs):
        if i == runs // 3:
            a.proc.kill()  # no drain, no goodbye
            a.proc.wait(timeout=5)
            served_by_b_at_kill = b.log().count(" exchange client=")
        r = client.kinit()
        assert r.returncode == 0, f"kinit {i}: {r.output}"
        r = client.run(["kvno", realm.host_princ])
        assert r.returncode == 0, f"kvno {i}: {r.output}"
    served_by_a = len(re.findall(r" exchange client=", a.log()))
    served_by_b = len(re.findall(r" exchange client=", b.log()))
    # Both served before the kill; every exchange after it went to b.
    assert served_by_a > 0 and served_by_b > 0, (served_by_a, served_by_b)
    assert served_by_a + served_by_b >= runs * 3
    # Each run after the kill: 2 AS-REQs and a TGS-REQ, all through b.
    assert served_by_b - served_by_b_at_kill >= (runs - runs // 3) * 3
