"""The plugin against hostile and unlucky servers: every wait is a deadline
(a server that drips cannot extend it), failover races black-holed URLs,
a lookup's relay never retires under it, and input from the environment
cannot panic the host.

Real kinit and a C host (tests/c/krb5_loop.c) with the plugin installed,
the real proxy and KDC for the URLs that work, and the peers of
tests/hostile.py for the ones that do not.
"""

from __future__ import annotations

import socket
import time

import pytest

from conftest import client_env, run, tls_proxy_args, write_krb5_conf
from hostile import DelayedForwarder, HostileWss
from standins import SilentKdc


def conf_for(realm, tmp_path, pki, urls, **opts):
    d = tmp_path / "c"
    d.mkdir(exist_ok=True)
    realm_opts = {"kdc": urls, "http_anchors": f"FILE:{pki.ca_cert}"}
    realm_opts.update(opts)
    conf = write_krb5_conf(d / "krb5.conf", realm.name, {realm.name: realm_opts})
    return client_env(d, conf)


def kinit(realm, env, plugin_dir, timeout=60):
    return run(["kinit", realm.user], env, input=realm.password + "\n", plugin_dir=plugin_dir,
               timeout=timeout)


# ---------------------------------------------------------------------------
# Deadlines against servers that drip


@pytest.mark.parametrize("mode,phase", [
    ("tls_drip", "timed out in the TLS handshake"),
    ("upgrade_drip", "timed out in the WebSocket handshake"),
])
def test_connect_timeout_bounds_a_dripping_handshake(mode, phase, realm, pki, plugin_dir, tmp_path):
    with HostileWss(mode, str(pki.server_cert), str(pki.server_key), gap=0.3) as srv:
        url = f"wss://localhost:{srv.port}/kdc"
        env = conf_for(realm, tmp_path, pki, url, wss_connect_timeout="2s")
        r = kinit(realm, env, plugin_dir)
        assert r.returncode != 0
        assert srv.dripped >= 3, "the server did drip"
    # The whole connect (TCP + TLS + upgrade) within the timeout + 0.5 s.
    assert r.elapsed < 2.5, r.elapsed
    assert f"realm '{realm.name}'" in r.output and url in r.output, r.output
    assert phase in r.output and "after 2000 ms" in r.output, r.output


@pytest.mark.parametrize("mode", ["reply_drip", "pings"])
def test_request_timeout_bounds_one_exchange(mode, realm, pki, plugin_dir, tmp_path, c_programs):
    """One exchange (write, read, pings, pongs) ends within the request
    timeout; the long-lived host (still running, sleeping before its next
    round) has closed its socket to that server by then."""
    with HostileWss(mode, str(pki.server_cert), str(pki.server_key), gap=0.3) as srv:
        url = f"wss://localhost:{srv.port}/kdc"
        env = conf_for(realm, tmp_path, pki, url, wss_request_timeout="2s")
        start = time.monotonic()
        r = run([str(c_programs["krb5_loop"]), realm.user, realm.password, "2", "4000"], env,
                plugin_dir=plugin_dir, timeout=60)
        end = time.monotonic()
        assert r.returncode != 0
        assert srv.request_at is not None and srv.closed_at is not None, r.output
        # The socket closed within the timeout + 0.5 s of the request, while
        # the host was still alive (it sleeps 4 s before its second round).
        assert srv.closed_at - srv.request_at < 2.5, srv.closed_at - srv.request_at
        assert srv.closed_at < end - 2, (srv.closed_at - start, end - start, r.stderr[-3000:])
    assert "timed out waiting for the reply (after 2000 ms)" in r.stderr, r.stderr
    assert r.stdout.count("error") == 2, r.stdout


def test_connect_timeout_bounds_a_silent_dns_server(realm, pki, plugin_dir, tmp_path):
    """The URL's host name is resolved under the connect deadline too: a DNS
    server that never answers (resolv.conf allowing 2 x 5 s) costs the
    connect timeout, not the resolver's own."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.53.251", 53))
    try:
        resolv = tmp_path / "resolv.conf"
        resolv.write_text("nameserver 127.0.53.251\noptions timeout:5 attempts:2\n")
        env = conf_for(realm, tmp_path, pki, "wss://kdc.silent-dns.test/kdc", wss_connect_timeout="1s")
        r = run(["kinit", realm.user], env, input=realm.password + "\n", plugin_dir=plugin_dir,
                resolv_conf=resolv, timeout=60)
    finally:
        silent.close()
    assert r.returncode != 0
    assert r.elapsed < 1.5, r.elapsed
    assert "timed out resolving the host name (after 1000 ms)" in r.output, r.output


# ---------------------------------------------------------------------------
# Failover that races


@pytest.mark.parametrize("holes,bound", [(1, 1.5), (3, 2.5)])
def test_black_holed_urls_then_a_live_one(holes, bound, realm, proxy, pki, plugin_dir, tmp_path):
    silent = [SilentKdc().__enter__() for _ in range(holes)]
    try:
        urls = [f"wss://localhost:{s.port}/kdc" for s in silent] + [f"wss://localhost:{proxy.port}/kdc"]
        env = conf_for(realm, tmp_path, pki, urls)
        r = kinit(realm, env, plugin_dir)
        assert r.returncode == 0, r.output
        assert r.elapsed < bound, r.elapsed
        assert all(s.accepted == 1 for s in silent), [s.accepted for s in silent]
        assert "had not connected when another URL did" in r.stderr, r.stderr
    finally:
        for s in silent:
            s.__exit__(None, None, None)


def test_dead_url_costs_one_stagger_per_30_seconds(start_proxy, realm, pki, plugin_dir, tmp_path,
                                                   c_programs):
    """Three rounds in one process, each needing a new connection (the
    proxy closes idle ones after 1 s): the black hole is tried once."""
    proxy = start_proxy(tls_proxy_args(pki, realm, "--idle-timeout", "1s"))
    with SilentKdc() as hole:
        urls = [f"wss://localhost:{hole.port}/kdc", f"wss://localhost:{proxy.port}/kdc"]
        env = conf_for(realm, tmp_path, pki, urls)
        r = run([str(c_programs["krb5_loop"]), realm.user, realm.password, "3", "1500"], env,
                plugin_dir=plugin_dir, timeout=60)
        assert r.returncode == 0, r.output
        assert r.stdout.count(": ok") == 3, r.output
        assert hole.accepted == 1, hole.accepted
    assert r.stderr.count("connected to wss://") == 3, r.stderr
    assert "recently failed, tried last" in r.stderr, r.stderr


def test_relay_does_not_retire_during_a_long_warm_up(realm, proxy, pki, plugin_dir, tmp_path):
    """A path so slow that the lookup's connect takes 11 s, longer than the
    relay's 10 s idle lifetime: the address handed to libkrb5 still works."""
    with DelayedForwarder(proxy.port, delay=11) as slow:
        env = conf_for(realm, tmp_path, pki, f"wss://localhost:{slow.port}/kdc",
                       wss_connect_timeout="20s")
        r = kinit(realm, env, plugin_dir, timeout=60)
    assert r.returncode == 0, r.output
    assert r.elapsed > 11, r.elapsed
    assert "retired" not in r.stderr, r.stderr


# ---------------------------------------------------------------------------
# No panic from the environment


def test_malformed_proxy_credentials_do_not_panic(realm, pki, plugin_dir, tmp_path):
    with SilentKdc() as web_proxy:
        env = conf_for(realm, tmp_path, pki, "wss://kdc.example.invalid/kdc", wss_connect_timeout="1s")
        env["https_proxy"] = f"http://%a\u00e9:pw@127.0.0.1:{web_proxy.port}"
        r = kinit(realm, env, plugin_dir)
        assert web_proxy.accepted == 1
    assert r.returncode != 0
    assert "panicked" not in r.stderr and "internal error" not in r.output, r.output
    assert "web proxy" in r.output and "timed out waiting for the CONNECT" in r.output, r.output
    assert f"realm '{realm.name}'" in r.output, r.output
