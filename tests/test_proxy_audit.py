"""krb5-wss-proxy as the operator's control point (issue 12, items 1 and 2):
the audit line of each exchange (names, the KDC's KRB-ERROR by name, text
and JSON, the privacy switch, metrics by error code) and the per-realm
policy (allow/deny lists of client and service principals: close 4401,
KKDCP 403, never forwarded), with the real proxy, an MIT KDC and MIT's
kinit/kvno through the plugin."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import urllib.request

from conftest import PROXY_BIN, tls_proxy_args, wss_client
from test_kkdcp import post, proxy_message
from test_proxy import (
    ctx,
    expect_close,
    frame,
    gstring,
    integer,
    principal,
    recv,
    run,
    seq,
    served,
    tlv,
    unframe,
    user_of,
    wait_for_log,
    ws_connect,
)

POLICY_DENIED = 4401


def as_req_for(user: str, realm: str, *sname: str) -> bytes:
    """An AS-REQ for user@realm asking for service `sname` (components)."""
    body = seq(
        ctx(0, tlv(0x03, b"\x00\x40\x00\x00\x10")),
        ctx(1, principal(1, user)),
        ctx(2, gstring(realm)),
        ctx(3, principal(2, *sname)),
        ctx(5, tlv(0x18, b"20370913024805Z")),
        ctx(7, integer(4242)),
        ctx(8, seq(integer(18), integer(17))),
    )
    return tlv(0x6A, seq(ctx(1, integer(5)), ctx(2, integer(10)), ctx(4, body)))


def kdc_log(realm, since: int = 0) -> str:
    """The KDC's log from byte `since` on (the realm is the module's)."""
    with open(os.path.join(realm.k5.tmpdir, "kdc.log"), "rb") as f:
        f.seek(since)
        return f.read().decode(errors="replace")


def kdc_log_end(realm) -> int:
    return os.path.getsize(os.path.join(realm.k5.tmpdir, "kdc.log"))


def exchange_lines(proxy) -> list[str]:
    return [line for line in proxy.log().splitlines() if " exchange client=" in line]


def metrics_url(proxy) -> str:
    line = proxy.proc.stdout.readline()
    assert line.startswith("metrics on http://"), line
    return line.split()[2]


def metrics(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as r:
        return r.read().decode()


def write_config(tmp_path, realm, **policy: list[str]) -> str:
    lines = [f'[realms."{realm.name}"]', f'kdc = ["{realm.kdc_addr}"]']
    lines += [f"{k} = {json.dumps(v)}" for k, v in policy.items()]
    path = tmp_path / "proxy.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# ---------------------------------------------------------------------------
# Audit


def test_kinit_audit_lines_name_the_error_and_the_client(start_proxy, pki, realm, plugin_dir,
                                                        tmp_path):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--metrics-listen", "127.0.0.1:0"))
    url = metrics_url(proxy)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    r = client.kinit()
    assert r.returncode == 0, r.output
    name = re.escape(realm.name)
    user = re.escape(realm.user)
    # First the KDC asks for pre-authentication, by name ...
    wait_for_log(proxy, rf"exchange client=127\.0\.0\.1:\d+ service=kdc transport=websocket "
                        rf"realm={name} type=AS-REQ cname={user} sname=krbtgt/{name} "
                        rf"kdc=127\.0\.0\.1:{realm.portbase} kdc_transport=udp result=ok "
                        r"reply=KRB-ERROR krb_error=KDC_ERR_PREAUTH_REQUIRED krb_error_code=25 "
                        r"(?:e_text=.* )?reply_bytes=\d+ elapsed_us=\d+$")
    # ... then answers with an AS-REP whose cname is the client's.
    wait_for_log(proxy, rf"exchange .* type=AS-REQ cname={user} sname=krbtgt/{name} .*result=ok "
                        rf"reply=AS-REP reply_cname={user} reply_bytes=\d+ elapsed_us=\d+$")
    # A TGS exchange: the service asked for, and the TGS-REP's client.
    r = client.run(["kvno", realm.host_princ])
    assert r.returncode == 0, r.output
    host = re.escape(realm.host_princ.split("@")[0])
    wait_for_log(proxy, rf"exchange .* type=TGS-REQ sname={host} .*result=ok reply=TGS-REP "
                        rf"reply_cname={user} ")

    # A wrong password: KDC_ERR_PREAUTH_FAILED, by name, and counted.
    r = client.kinit(password="not-the-password")
    assert r.returncode != 0, r.output
    wait_for_log(proxy, rf"exchange .* type=AS-REQ cname={user} .*reply=KRB-ERROR "
                        r"krb_error=KDC_ERR_PREAUTH_FAILED krb_error_code=24 ")
    text = metrics(url)
    counts = dict(re.findall(r'^krb5_wss_proxy_krb_errors_total\{code="(\w+)"\} (\d+)$', text, re.M))
    assert int(counts["KDC_ERR_PREAUTH_REQUIRED"]) >= 2, text
    assert int(counts["KDC_ERR_PREAUTH_FAILED"]) == 1, text
    assert int(counts["KDC_ERR_C_PRINCIPAL_UNKNOWN"]) == 0, text

    # An unknown client: KDC_ERR_C_PRINCIPAL_UNKNOWN.
    r = client.kinit(f"nobody@{realm.name}", password="x")
    assert r.returncode != 0, r.output
    wait_for_log(proxy, rf"exchange .* cname=nobody@{name} .*krb_error=KDC_ERR_C_PRINCIPAL_UNKNOWN ")
    assert 'krb5_wss_proxy_krb_errors_total{code="KDC_ERR_C_PRINCIPAL_UNKNOWN"} 1' in metrics(url)
    run(served(proxy, pki, realm))


def test_json_log_format(start_proxy, pki, realm, plugin_dir, tmp_path):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--log-format", "json"))
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    r = client.kinit()
    assert r.returncode == 0, r.output
    r = client.kinit(password="wrong")
    assert r.returncode != 0, r.output
    wait_for_log(proxy, r'"krb_error":"KDC_ERR_PREAUTH_FAILED"')
    # Every line is one JSON object (the audit lines and all others).
    records = [json.loads(line) for line in proxy.log().splitlines()]
    for rec in records:
        assert {"time", "level", "target"} <= rec.keys(), rec
    exchanges = [rec for rec in records if rec.get("event") == "exchange"]
    rep = next(e for e in exchanges if e.get("reply") == "AS-REP")
    assert rep["client"].startswith("127.0.0.1:")
    assert rep["service"] == "kdc" and rep["transport"] == "websocket"
    assert rep["realm"] == realm.name and rep["type"] == "AS-REQ"
    assert rep["cname"] == realm.user
    assert rep["sname"] == f"krbtgt/{realm.name}"
    assert rep["reply_cname"] == realm.user
    assert rep["kdc"] == realm.kdc_addr and rep["kdc_transport"] == "udp"
    assert rep["result"] == "ok"
    assert isinstance(rep["elapsed_us"], int) and isinstance(rep["reply_bytes"], int)
    failed = next(e for e in exchanges if e.get("krb_error") == "KDC_ERR_PREAUTH_FAILED")
    assert failed["krb_error_code"] == 24 and failed["reply"] == "KRB-ERROR"
    assert failed["cname"] == realm.user


def test_privacy_switch_leaves_principals_out(start_proxy, pki, realm, plugin_dir, tmp_path):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--audit-principals", "false"))
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    assert client.kinit().returncode == 0
    assert client.run(["kvno", realm.host_princ]).returncode == 0
    wait_for_log(proxy, r"exchange .* type=TGS-REQ .*reply=TGS-REP ")
    lines = exchange_lines(proxy)
    assert len(lines) >= 3, proxy.log()
    assert any("krb_error=KDC_ERR_PREAUTH_REQUIRED" in line for line in lines), lines
    log = proxy.log()
    for needle in ("cname=", "sname=", realm.user.split("@")[0] + "@",
                   realm.host_princ.split("@")[0]):
        assert needle not in log, f"{needle!r} in:\n{log}"


# ---------------------------------------------------------------------------
# Policy


def test_dmz_host_may_only_reach_postgres(start_proxy, pki, realm, plugin_dir, tmp_path):
    realm.addprinc(f"postgres/db.example.com@{realm.name}", preauth=False)
    conf = write_config(tmp_path, realm,
                        allow_services=[f"krbtgt/{realm.name}", "postgres/db.example.com"])
    proxy = start_proxy(["--config", conf, *tls_proxy_args(pki, realm)])
    start = kdc_log_end(realm)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    r = client.kinit()
    assert r.returncode == 0, r.output
    r = client.run(["kvno", f"postgres/db.example.com@{realm.name}"])
    assert r.returncode == 0, r.output
    assert "kvno = " in r.stdout

    # Another service: refused at the proxy, never at the KDC.
    r = client.run(["kvno", realm.host_princ])
    assert r.returncode != 0, r.output
    # The plugin says why (its log is on, KRB5_WSS_LOG=debug).
    assert "4401 denied by policy" in r.output, r.output
    host = realm.host_princ.split("@")[0]
    log = wait_for_log(proxy, r"refused client=127\.0\.0\.1:\d+ service=kdc transport=websocket "
                              rf"close={POLICY_DENIED} reason=\"denied by policy\" "
                              rf"realm={re.escape(realm.name)} type=TGS-REQ "
                              rf"sname={re.escape(host)} detail=.*allow_services").group(0)
    assert host in log
    kdc = kdc_log(realm, start)
    assert "postgres/db.example.com" in kdc, kdc
    assert host not in kdc, kdc
    # The denial is one line.
    assert proxy.log().count(f"close={POLICY_DENIED}") == 1

    # A hand-made TGS-like AS-REQ for the other service: the close code.
    async def go():
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req_for("user", realm.name, *host.split("/"))))
            await expect_close(ws, POLICY_DENIED)
        await served(proxy, pki, realm)

    run(go())
    assert host not in kdc_log(realm, start)
    # A well-behaved client keeps being served.
    r = client.run(["kvno", f"postgres/db.example.com@{realm.name}"])
    assert r.returncode == 0, r.output


def test_denied_client_never_reaches_the_kdc(start_proxy, pki, realm, plugin_dir, tmp_path):
    realm.addprinc(f"intruder@{realm.name}", "intruder-pw")
    conf = write_config(tmp_path, realm, deny_clients=["intr*"])
    proxy = start_proxy(["--config", conf, *tls_proxy_args(pki, realm)])
    start = kdc_log_end(realm)
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    r = client.kinit(f"intruder@{realm.name}", password="intruder-pw")
    assert r.returncode != 0, r.output
    wait_for_log(proxy, rf"refused client=\S+ service=kdc transport=websocket close={POLICY_DENIED} "
                        rf"reason=\"denied by policy\" realm={re.escape(realm.name)} type=AS-REQ "
                        rf"cname=intruder@{re.escape(realm.name)} .*detail=.*deny_clients.*intr\*")
    assert "intruder" not in kdc_log(realm, start)
    assert not any("intruder" in line for line in exchange_lines(proxy))
    # The principal exists and works directly: only the proxy refused it.
    realm.k5.kinit(f"intruder@{realm.name}", "intruder-pw")
    assert "intruder" in kdc_log(realm, start)
    r = client.kinit()
    assert r.returncode == 0, r.output
    run(served(proxy, pki, realm))


def test_kkdcp_denied_is_403(start_proxy, pki, realm, tmp_path):
    conf = write_config(tmp_path, realm, allow_clients=[user_of(realm)],
                        deny_services=["kadmin/*"])
    proxy = start_proxy(["--config", conf, *tls_proxy_args(pki, realm)])
    start = kdc_log_end(realm)
    status, body, _ = post(proxy, pki, proxy_message(as_req_for("mallory", realm.name, "krbtgt",
                                                                realm.name), realm.name))
    assert status == 403, body
    wait_for_log(proxy, rf"refused client=\S+ service=kdc transport=kkdcp close={POLICY_DENIED} "
                        r"http=403 reason=\"denied by policy\" .*no pattern of allow_clients")
    status, body, _ = post(proxy, pki, proxy_message(as_req_for(user_of(realm), realm.name,
                                                                "kadmin", "admin"), realm.name))
    assert status == 403, body
    wait_for_log(proxy, r"refused .*close=4401 http=403 .*deny_services \\\"kadmin/\*\\\"")
    kdc = kdc_log(realm, start)
    assert "mallory" not in kdc and "kadmin/admin" not in kdc, kdc
    # An allowed request right after: the KDC's answer.
    status, body, _ = post(proxy, pki, proxy_message(as_req_for(user_of(realm), realm.name,
                                                                "krbtgt", realm.name), realm.name))
    assert status == 200
    run(served(proxy, pki, realm))


def test_reload_applies_a_new_policy_to_open_connections(start_proxy, pki, realm, tmp_path):
    conf = write_config(tmp_path, realm)
    proxy = start_proxy(["--config", conf, *tls_proxy_args(pki, realm)])

    async def go():
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req_for("user", realm.name, "krbtgt", realm.name)))
            assert unframe(await recv(ws))[0] == 0x7E
            write_config(tmp_path, realm, deny_clients=["user"])
            proxy.proc.send_signal(signal.SIGHUP)
            await asyncio.to_thread(wait_for_log, proxy, r"SIGHUP: configuration and certificate reloaded")
            await ws.send(frame(as_req_for("user", realm.name, "krbtgt", realm.name)))
            await expect_close(ws, POLICY_DENIED)
        async with ws_connect(proxy, pki) as ws:
            await ws.send(frame(as_req_for("other", realm.name, "krbtgt", realm.name)))
            assert unframe(await recv(ws))[0] == 0x7E

    run(go())


def test_check_config_reports_the_new_settings(pki, realm, tmp_path):
    conf = write_config(tmp_path, realm, allow_services=["krbtgt/*"])
    p = subprocess.run([str(PROXY_BIN), "--check-config", "--config", conf, "--log-format", "json",
                        "--audit-principals", "false", *tls_proxy_args(pki, realm)],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr
    assert "log_format json, audit_principals false, 1 realm(s) with a policy" in p.stdout, p.stdout
    (tmp_path / "bad.toml").write_text(f'[realms."{realm.name}"]\nkdc = ["{realm.kdc_addr}"]\n'
                                       'deny_services = [""]\n')
    p = subprocess.run([str(PROXY_BIN), "--check-config", "--config", str(tmp_path / "bad.toml"),
                        *tls_proxy_args(pki, realm)], capture_output=True, text=True, timeout=20)
    assert p.returncode == 1 and "deny_services" in p.stderr, p.stderr
