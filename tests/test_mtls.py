"""Client certificates (mutual TLS), end to end.

The real proxy asks for a client certificate (`--client-ca`, the test CA);
MIT's kinit, kvno and kpasswd go through the plugin, which presents the
realm's `wss_client_certificate`/`wss_client_key`, or through the relay,
which presents its own per-realm certificate. Run against both TLS
backends of the plugin (scripts/test runs this file again with the
native-tls build through KRB5_WSS_PLUGIN_SO).
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import client_env, run, tls_proxy_args, write_krb5_conf, wss_client
from test_relay import kinit as relay_kinit, relay_args, relay_conf


def cert_opts(pki, cert: Path | None, key: Path | None) -> dict[str, str]:
    opts = {}
    if cert is not None:
        opts["wss_client_certificate"] = str(cert)
    if key is not None:
        opts["wss_client_key"] = str(key)
    return opts


def mtls_proxy(start_proxy, pki, realm, *extra: str):
    return start_proxy(tls_proxy_args(pki, realm, "--client-ca", str(pki.ca_cert), *extra))


def refused_lines(log: str, reason: str) -> list[str]:
    return [l for l in log.splitlines() if "refused " in l and f'reason="{reason}"' in l]


def test_no_certificate_is_refused_at_tls_and_the_error_says_so(start_proxy, pki, realm,
                                                                  plugin_dir, tmp_path):
    from test_proxy_ops import get, metrics_url
    proxy = mtls_proxy(start_proxy, pki, realm, "--metrics-listen", "127.0.0.1:0")
    metrics = metrics_url(proxy) + "/metrics"
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    r = client.kinit()
    assert r.returncode != 0, r.output
    url = f"wss://localhost:{proxy.port}/kdc"
    # One line names the realm, the URL and the cause.
    line = next((l for l in r.stderr.splitlines()
                 if realm.name in l and url in l and "client certificate required" in l), None)
    assert line, r.stderr
    # Refused at TLS: the proxy says so, and never forwarded anything.
    log = proxy.log()
    assert refused_lines(log, "client certificate required"), log
    assert " exchange " not in log, log
    status, text = get(metrics)
    assert status == 200, text
    m = re.search(r'^krb5_wss_proxy_client_cert_refusals_total\{reason="missing"\} (\d+)$', text,
                  re.M)
    assert m and int(m.group(1)) >= 1, text


def test_certificate_of_another_ca_is_refused(start_proxy, pki, realm, plugin_dir, tmp_path):
    proxy = mtls_proxy(start_proxy, pki, realm)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c",
                        cert_opts(pki, pki.rogue_client_cert, pki.rogue_client_key))
    r = client.kinit()
    assert r.returncode != 0, r.output
    assert re.search(rf"{re.escape(realm.name)}.*wss://localhost:{proxy.port}/kdc.*"
                     r"refused the client certificate", r.stderr), r.stderr
    log = proxy.log()
    lines = refused_lines(log, "client certificate rejected")
    assert lines and "UnknownIssuer" in lines[0], log
    assert " exchange " not in log, log


def test_right_certificate_kinit_kvno_kpasswd(start_proxy, pki, realm, plugin_dir, tmp_path):
    proxy = mtls_proxy(start_proxy, pki, realm)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c",
                        cert_opts(pki, pki.client_a_cert, pki.client_a_key))
    realm.addprinc("mtlsuser", "old-password-1")
    r = client.kinit(f"mtlsuser@{realm.name}", "old-password-1")
    assert r.returncode == 0, r.output
    r = client.run(["kvno", realm.host_princ])
    assert r.returncode == 0 and "kvno = " in r.stdout, r.output
    r = client.run(["kpasswd", f"mtlsuser@{realm.name}"],
                   input="old-password-1\nnew-password-2\nnew-password-2\n")
    assert r.returncode == 0 and "Password changed" in r.output, r.output
    r = client.kinit(f"mtlsuser@{realm.name}", "new-password-2")
    assert r.returncode == 0, r.output
    # The audit lines name the certificate.
    log = proxy.log()
    lines = [l for l in log.splitlines() if " exchange " in l]
    assert any("type=TGS-REQ" in l for l in lines), log
    assert any("service=kpasswd" in l for l in lines), log
    assert all('client_cert="CN=host1.a.example,DNS=host1.a.example"' in l for l in lines), log


def test_client_subjects_limit_a_certificate_to_its_realms(start_proxy, pki, realm,
                                                           plugin_dir, tmp_path):
    conf = tmp_path / "proxy.toml"
    conf.write_text(
        "[server]\n"
        f'client_ca = "{pki.ca_cert}"\n'
        'client_certificate = "optional"\n'
        f'[realms."{realm.name}"]\n'
        f'kdc = ["{realm.kdc_addr}"]\n'
        f'kpasswd = ["{realm.kpasswd_addr}"]\n'
        'client_subjects = ["DNS=*.b.example"]\n'
    )
    proxy = start_proxy(["--config", str(conf), "--listen", "127.0.0.1:0",
                         "--cert", str(pki.server_cert), "--key", str(pki.server_key)])
    # A certificate issued for another realm's hosts: 4406, one line, the
    # subject in it, nothing forwarded.
    a = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "a",
                   cert_opts(pki, pki.client_a_cert, pki.client_a_key))
    r = a.kinit()
    assert r.returncode != 0, r.output
    assert "4406 client certificate not allowed for this realm" in r.stderr, r.stderr
    # Optional mode: no certificate passes TLS, then the realm refuses (4402).
    none = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "none")
    r = none.kinit()
    assert r.returncode != 0, r.output
    assert "4402 client certificate required" in r.stderr, r.stderr
    log = proxy.log()
    denied = [l for l in log.splitlines() if "refused " in l and "close=4406" in l]
    assert len(denied) == 1, log
    assert 'client_cert="CN=host1.a.example,DNS=host1.a.example"' in denied[0], denied[0]
    assert f"realm={realm.name}" in denied[0] and "client_subjects" in denied[0], denied[0]
    assert [l for l in log.splitlines() if "refused " in l and "close=4402" in l], log
    assert " exchange " not in log, log
    # The realm's own certificate is served.
    b = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "b",
                   cert_opts(pki, pki.client_b_cert, pki.client_b_key))
    r = b.kinit()
    assert r.returncode == 0, r.output
    r = b.run(["kvno", realm.host_princ])
    assert r.returncode == 0, r.output
    assert 'client_cert="CN=host1.b.example' in proxy.log()


def test_kkdcp_requests_are_judged_by_client_subjects_too(start_proxy, pki, realm, tmp_path):
    import http.client
    import ssl

    from test_kkdcp import parse_proxy_message, proxy_message
    from test_proxy import as_req
    conf = tmp_path / "proxy.toml"
    conf.write_text(
        f'[server]\nclient_ca = "{pki.ca_cert}"\nclient_certificate = "optional"\n'
        f'[realms."{realm.name}"]\nkdc = ["{realm.kdc_addr}"]\n'
        'client_subjects = ["host1.b.example"]\n')
    proxy = start_proxy(["--config", str(conf), "--listen", "127.0.0.1:0",
                         "--cert", str(pki.server_cert), "--key", str(pki.server_key)])
    body = proxy_message(as_req("user", realm.name), realm.name)

    def post(cert: Path | None, key: Path | None) -> tuple[int, bytes]:
        ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
        if cert is not None:
            ctx.load_cert_chain(str(cert), str(key))
        conn = http.client.HTTPSConnection("localhost", proxy.port, context=ctx, timeout=10)
        try:
            conn.request("POST", "/KdcProxy", body=body,
                         headers={"Content-Type": "application/kerberos"})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    assert post(None, None) == (403, b"client certificate required\n")
    assert post(pki.client_a_cert, pki.client_a_key) == (
        403, b"client certificate not allowed for this realm\n")
    status, reply = post(pki.client_b_cert, pki.client_b_key)
    assert status == 200, reply
    assert parse_proxy_message(reply)[:1] == b"\x7e"  # the KDC's KRB-ERROR
    log = proxy.log()
    for code in ("4402", "4406"):
        assert [l for l in log.splitlines()
                if f"close={code} http=403" in l and "transport=kkdcp" in l], log


def test_configuration_errors_name_realm_file_and_cause(start_proxy, pki, realm, plugin_dir,
                                                        tmp_path):
    proxy = mtls_proxy(start_proxy, pki, realm)
    missing = tmp_path / "missing.pem"
    cases = [
        (cert_opts(pki, pki.client_a_cert, None),
         ["wss_client_key", str(pki.client_a_cert), "is not"]),
        (cert_opts(pki, None, pki.client_a_key), ["wss_client_certificate", "is not"]),
        (cert_opts(pki, missing, pki.client_a_key), [str(missing), "cannot read"]),
        (cert_opts(pki, pki.client_a_cert, pki.client_b_key),
         [str(pki.client_b_key), "does not match"]),
    ]
    for i, (opts, words) in enumerate(cases):
        client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / f"c{i}", opts)
        r = client.kinit()
        assert r.returncode != 0, r.output
        line = next((l for l in r.stderr.splitlines()
                     if f"realm {realm.name}" in l and all(w in l for w in words)), None)
        assert line, (words, r.stderr)
    # Fail closed: nothing reached the proxy without a certificate.
    log = proxy.log()
    assert " exchange " not in log and "refused " not in log, log


def test_relay_presents_the_realm_certificate(start_proxy, start_relay, pki, realm, tmp_path):
    proxy = mtls_proxy(start_proxy, pki, realm)
    # Without a certificate the relay's upstream is refused at TLS.
    bare = start_relay(relay_args(realm, proxy, pki))
    env = client_env(tmp_path / "bare", relay_conf(tmp_path / "bare.conf", realm, bare,
                                                   udp_preference_limit="1"))
    (tmp_path / "bare").mkdir()
    r = relay_kinit(realm, env)
    assert r.returncode != 0, r.output
    assert "client certificate required" in bare.log(), bare.log()
    bare.stop()
    relay = start_relay(relay_args(
        realm, proxy, pki,
        "--wss-client-certificate", f"{realm.name}={pki.client_a_cert}",
        "--wss-client-key", f"{realm.name}={pki.client_a_key}"))
    (tmp_path / "ok").mkdir()
    env = client_env(tmp_path / "ok", relay_conf(tmp_path / "ok.conf", realm, relay))
    realm.addprinc("mtlsrelay", "old-password-1")
    r = relay_kinit(realm, env, princ=f"mtlsrelay@{realm.name}", password="old-password-1")
    assert r.returncode == 0, r.output
    r = run(["kvno", realm.host_princ], env)
    assert r.returncode == 0, r.output
    r = run(["kpasswd", f"mtlsrelay@{realm.name}"],
            dict(env, KRB5CCNAME=f"FILE:{tmp_path / 'ccache-pw'}"),
            input="old-password-1\nnew-password-2\nnew-password-2\n")
    assert r.returncode == 0 and "Password changed" in r.output, r.output
    assert 'client_cert="CN=host1.a.example' in proxy.log()


def test_relay_refuses_to_start_with_a_bad_certificate(pki, realm, tmp_path):
    from conftest import RELAY_BIN
    base = ["--listen", "127.0.0.1:0", "--realm", f"{realm.name}=wss://localhost:1/kdc",
            "--anchors", f"FILE:{pki.ca_cert}", "--check-config"]
    cases = [
        (["--wss-client-certificate", f"{realm.name}={pki.client_a_cert}"],
         ["wss_client_key", "is not"]),
        (["--wss-client-certificate", f"{realm.name}={pki.client_a_cert}",
          "--wss-client-key", f"{realm.name}={pki.client_b_key}"],
         [str(pki.client_b_key), "does not match"]),
        (["--wss-client-certificate", f"OTHER.ORG={pki.client_a_cert}",
          "--wss-client-key", f"OTHER.ORG={pki.client_a_key}"],
         ["OTHER.ORG", "neither configured"]),
    ]
    for extra, words in cases:
        p = run([str(RELAY_BIN), *base, *extra], {"PATH": "/usr/bin:/bin"}, plugin_dir=None)
        assert p.returncode != 0, p.output
        assert all(w in p.stderr for w in words), (words, p.stderr)
    p = run([str(RELAY_BIN), *base, "--wss-client-certificate",
             f"{realm.name}={pki.client_a_cert}", "--wss-client-key",
             f"{realm.name}={pki.client_a_key}"], {"PATH": "/usr/bin:/bin"}, plugin_dir=None)
    assert p.returncode == 0, p.output
    assert p.stdout.rstrip().endswith(f"client certificates for [{realm.name}]"), p.output


def test_proxy_refuses_client_ca_in_plaintext_and_bad_files(pki, realm, tmp_path):
    from conftest import PROXY_BIN
    base = ["--listen", "127.0.0.1:0", "--realm", f"{realm.name}={realm.kdc_addr}",
            "--check-config"]
    p = run([str(PROXY_BIN), *base, "--plaintext", "--client-ca", str(pki.ca_cert)],
            {"PATH": "/usr/bin:/bin"}, plugin_dir=None)
    assert p.returncode == 1 and "client_ca" in p.stderr and "TLS" in p.stderr, p.output
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    p = run([str(PROXY_BIN), *base, "--cert", str(pki.server_cert), "--key",
             str(pki.server_key), "--client-ca", str(junk)], {"PATH": "/usr/bin:/bin"},
            plugin_dir=None)
    assert p.returncode == 1 and f"client_ca file {junk}" in p.stderr, p.output
    p = run([str(PROXY_BIN), *base, "--cert", str(pki.server_cert), "--key",
             str(pki.server_key), "--client-ca", str(pki.ca_cert)], {"PATH": "/usr/bin:/bin"},
            plugin_dir=None)
    assert p.returncode == 0 and "client certificates required" in p.stdout, p.output


def test_tls12_server_sending_handshake_failure_names_the_certificate_options(
        pki, realm, plugin_dir, tmp_path):
    """OpenSSL's server over TLS 1.2 answers a missing certificate with
    handshake_failure (40), not certificate_required: the error still points at
    the client certificate options."""
    import subprocess

    from conftest import free_ports, wait_port
    port = free_ports()
    server = subprocess.Popen(
        ["openssl", "s_server", "-quiet", "-tls1_2", "-accept", f"127.0.0.1:{port}",
         "-cert", str(pki.server_cert), "-key", str(pki.server_key),
         "-CAfile", str(pki.ca_cert), "-Verify", "1", "-verify_return_error"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        client = wss_client(realm, port, pki, plugin_dir, tmp_path / "c")
        r = client.kinit()
        assert r.returncode != 0, r.output
        assert re.search(rf"{re.escape(realm.name)}.*wss://localhost:{port}/kdc.*"
                         r"handshake_failure.*wss_client_certificate", r.stderr), r.stderr
    finally:
        server.kill()
        server.wait(timeout=10)


def test_sighup_applies_client_subjects_and_refuses_a_bad_client_ca(start_proxy, pki, realm,
                                                                    plugin_dir, tmp_path):
    import signal

    from test_proxy import wait_for_log
    conf = tmp_path / "proxy.toml"

    def write(ca: Path, subjects: str) -> None:
        conf.write_text(
            f'[server]\nclient_ca = "{ca}"\nclient_certificate = "optional"\n'
            f'[realms."{realm.name}"]\nkdc = ["{realm.kdc_addr}"]\n'
            f'client_subjects = [{subjects}]\n')

    write(pki.ca_cert, '"DNS=*.b.example"')
    proxy = start_proxy(["--config", str(conf), "--listen", "127.0.0.1:0",
                         "--cert", str(pki.server_cert), "--key", str(pki.server_key)])
    a = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "a",
                   cert_opts(pki, pki.client_a_cert, pki.client_a_key))
    r = a.kinit()
    assert r.returncode != 0 and "4406" in r.stderr, r.output
    # The realm now takes host1.a.example: applied by the reload.
    write(pki.ca_cert, '"CN=host1.a.example"')
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for_log(proxy, r"SIGHUP: configuration and certificate reloaded")
    r = a.kinit()
    assert r.returncode == 0, r.output
    # A client_ca file without a certificate fails the reload, naming the
    # file; the running configuration stays.
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    write(junk, '"CN=host1.a.example"')
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for_log(proxy, rf"SIGHUP: reload failed, keeping the running configuration: "
                        rf"error=.*client_ca file {re.escape(str(junk))}")
    r = a.kinit()
    assert r.returncode == 0, r.output
