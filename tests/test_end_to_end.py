"""Kerberos over wss, end to end, with MIT's own programs.

A real MIT KDC and kpasswd server (k5test) reachable only through the real
krb5-wss-proxy, which serves TLS with a certificate from the test CA; the
client's krb5.conf names no KDC address, only wss:// URLs; kinit, kvno,
klist and kpasswd are MIT's binaries with the plugin installed through a
private mount namespace.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import (
    PLUGIN_SO,
    client_env,
    free_ports,
    run,
    tls_proxy_args,
    wait_port,
    write_krb5_conf,
    wss_client,
)


def exchanges(log: str, kind: str) -> list[str]:
    """The plugin's debug lines for completed exchanges of `kind`."""
    return [l for l in log.splitlines() if f"{kind} exchange over wss://" in l]


def test_kinit_kvno_klist_over_wss(client, proxy, realm):
    r = client.kinit()
    assert r.returncode == 0, r.output
    # Preauth is required, so the first AS-REQ is answered with
    # PREAUTH_REQUIRED and a second one carries the encrypted timestamp.
    assert len(exchanges(r.stderr, "AS-REQ")) == 2, r.stderr

    r = client.run(["kvno", realm.host_princ])
    assert r.returncode == 0, r.output
    assert "kvno = " in r.stdout
    assert len(exchanges(r.stderr, "TGS-REQ")) == 1, r.stderr

    r = client.run(["klist"])
    assert r.returncode == 0, r.output
    assert f"krbtgt/{realm.name}@{realm.name}" in r.stdout
    assert realm.host_princ in r.stdout

    # The proxy saw the exchanges: one log line each.
    log = proxy.log()
    assert log.count("AS-REQ") >= 2, log
    assert "TGS-REQ" in log, log


def test_wrong_password_over_wss(client):
    r = client.kinit(password="not-the-password")
    assert r.returncode != 0
    assert "Password incorrect" in r.output, r.output
    assert exchanges(r.stderr, "AS-REQ"), r.stderr


def test_unknown_principal_over_wss(client, realm):
    r = client.kinit(princ=f"nobody@{realm.name}", password="x")
    assert r.returncode != 0
    assert "not found" in r.output, r.output
    assert exchanges(r.stderr, "AS-REQ"), r.stderr


def test_kpasswd_changes_password_over_wss(client, realm):
    princ = f"changer@{realm.name}"
    realm.addprinc(princ, "old-password-1")
    r = client.run(["kpasswd", princ], input="old-password-1\nnew-password-2\nnew-password-2\n")
    assert r.returncode == 0, r.output
    assert "Password changed" in r.output, r.output
    assert exchanges(r.stderr, "kpasswd v0x0001"), r.stderr

    r = client.kinit(princ=princ, password="new-password-2")
    assert r.returncode == 0, r.output
    r = client.kinit(princ=princ, password="old-password-1")
    assert r.returncode != 0 and "Password incorrect" in r.output, r.output


def test_proxy_stopped_fails_fast_and_names_the_url(client, proxy):
    proxy.stop()
    r = client.kinit()
    assert r.returncode != 0
    assert "Cannot contact any KDC" in r.output, r.output
    assert r.elapsed < 5, f"took {r.elapsed:.1f}s"
    url = f"wss://localhost:{proxy.port}/kdc"
    assert url in r.stderr and "connection refused" in r.stderr, r.stderr


def test_certificate_from_another_ca_is_refused(start_proxy, pki, realm, plugin_dir, tmp_path):
    args = tls_proxy_args(pki, realm)
    args[args.index("--cert") + 1] = str(pki.rogue_cert)
    args[args.index("--key") + 1] = str(pki.rogue_key)
    proxy = start_proxy(args)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    r = client.kinit()
    assert r.returncode != 0
    assert "unknown issuer" in r.output, r.output
    assert f"wss://localhost:{proxy.port}/kdc" in r.output, r.output
    assert realm.name in r.output


def test_self_signed_ca_certificate_as_server_certificate_is_explained(start_proxy, pki, realm, plugin_dir,
                                                                       tmp_path):
    """A self-signed certificate made with CA:TRUE, trusted as the anchor and
    served as the proxy's own: refused, in words (not a verifier enum).
    (rustls refuses it; OpenSSL, the native-tls build, accepts it.)"""
    if "native-tls" in str(PLUGIN_SO):
        pytest.skip("the native-tls build (OpenSSL) accepts a trusted CA certificate as a leaf")
    cert, key = tmp_path / "self.pem", tmp_path / "self.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    args = tls_proxy_args(pki, realm)
    args[args.index("--cert") + 1] = str(cert)
    args[args.index("--key") + 1] = str(key)
    proxy = start_proxy(args)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c",
                        extra_realm_opts={"http_anchors": f"FILE:{cert}"})
    r = client.kinit()
    assert r.returncode != 0
    assert "is a CA certificate used as a server certificate" in r.output, r.output
    assert "OtherError" not in r.output, r.output


def test_certificate_for_another_name_is_refused(start_proxy, pki, realm, plugin_dir, tmp_path):
    args = tls_proxy_args(pki, realm)
    args[args.index("--cert") + 1] = str(pki.wrong_name_cert)
    args[args.index("--key") + 1] = str(pki.wrong_name_key)
    proxy = start_proxy(args)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    r = client.kinit()
    assert r.returncode != 0
    assert "name mismatch" in r.output and "localhost" in r.output, r.output


def test_system_trust_store_does_not_trust_the_test_ca(proxy, realm, pki, plugin_dir, tmp_path):
    """Without http_anchors the system store is used, which does not hold
    the test CA: verification is on by default."""
    (tmp_path / "c").mkdir(parents=True, exist_ok=True)
    conf = write_krb5_conf(tmp_path / "c" / "krb5.conf", realm.name, {realm.name: {
        "kdc": f"wss://localhost:{proxy.port}/kdc"}})
    env = client_env(tmp_path / "c", conf)
    r = run(["kinit", realm.user], env, input=realm.password + "\n", plugin_dir=plugin_dir)
    assert r.returncode != 0
    assert "unknown issuer" in r.output, r.output


def test_plain_realm_still_works_with_the_plugin_installed(realm, plugin_dir, tmp_path):
    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {
        "kdc": realm.kdc_addr, "kpasswd_server": realm.kpasswd_addr}})
    env = client_env(tmp_path, conf)
    r = run(["kinit", realm.user], env, input=realm.password + "\n", plugin_dir=plugin_dir)
    assert r.returncode == 0, r.output
    r = run(["kvno", realm.host_princ], env, plugin_dir=plugin_dir)
    assert r.returncode == 0, r.output
    # The plugin stepped aside: not one line from it, even at debug level.
    assert "krb5-wss" not in r.output


def test_plaintext_ws_needs_explicit_permission(start_proxy, realm, plugin_dir, tmp_path):
    proxy = start_proxy([
        "--listen", "127.0.0.1:0", "--plaintext",
        "--realm", f"{realm.name}={realm.kdc_addr}",
    ])
    url = f"ws://localhost:{proxy.port}/kdc"
    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {"kdc": url}})
    env = client_env(tmp_path, conf)
    r = run(["kinit", realm.user], env, input=realm.password + "\n", plugin_dir=plugin_dir)
    assert r.returncode != 0
    assert "wss_allow_plaintext = true" in r.output and realm.name in r.output, r.output
    assert "AS-REQ exchange" not in r.output

    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {
        "kdc": url, "wss_allow_plaintext": "true"}})
    r = run(["kinit", realm.user], env, input=realm.password + "\n", plugin_dir=plugin_dir)
    assert r.returncode == 0, r.output
    # Allowed, but never silent.
    assert "has no TLS" in r.stderr, r.stderr


def test_bad_url_is_a_clear_configuration_error(realm, plugin_dir, tmp_path):
    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {
        "kdc": "wss://localhost:99999/kdc"}})
    env = client_env(tmp_path, conf)
    r = run(["kinit", realm.user], env, input=realm.password + "\n", plugin_dir=plugin_dir)
    assert r.returncode != 0
    assert f"realm {realm.name}: kdc:" in r.output and "99999" in r.output, r.output


def test_dead_first_url_then_live_second(proxy, realm, pki, plugin_dir, tmp_path):
    dead = free_ports(1)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c", {
        "kdc": [f"wss://localhost:{dead}/kdc", f"wss://localhost:{proxy.port}/kdc"]})
    r = client.kinit()
    assert r.returncode == 0, r.output
    assert f"wss://localhost:{dead}/kdc: connection refused" in r.stderr, r.stderr


def test_websockify_byte_pipe_is_a_valid_server(realm, pki, plugin_dir, tmp_path):
    """The protocol is designed so that websockify in front of a KDC works:
    it closes after each exchange (the KDC closes TCP after one reply) and
    the plugin reconnects. websockify ignores the first request carried in
    the upgrade (docs/protocol.md): the plugin sends it after the upgrade."""
    port = free_ports(1)
    log = open(tmp_path / "websockify.log", "w")
    ws = subprocess.Popen(
        ["websockify", "--ssl-only", "--cert", str(pki.server_cert), "--key", str(pki.server_key),
         f"127.0.0.1:{port}", realm.kdc_addr],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port)
        client = wss_client(realm, port, pki, plugin_dir, tmp_path / "c")
        r = client.kinit()
        assert r.returncode == 0, r.output
        assert "carried in the upgrade" not in r.stderr, r.stderr
        # The first exchange on the warmed connection: normally its upgrade
        # (new connection); on a loaded machine, when libkrb5 came later than
        # 20 ms, the liveness check upgraded it first (exchange #1).
        assert re.search(r"AS-REQ exchange over wss://\S+ \((new connection|pooled connection, "
                         r"exchange #1\))", r.stderr), r.stderr
        r = client.run(["kvno", realm.host_princ])
        assert r.returncode == 0, r.output
    finally:
        ws.terminate()
        ws.wait(timeout=10)
        log.close()


def test_one_connection_serves_the_preauth_round_trip(client, proxy):
    """kinit's two AS exchanges share the wss connection the lookup opened."""
    r = client.kinit()
    assert r.returncode == 0, r.output
    assert len(re.findall(r"connected to wss://", r.stderr)) == 1, r.stderr
