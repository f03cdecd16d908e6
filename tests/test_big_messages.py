"""Messages as large as Active Directory produces them, with a real MIT KDC.

An S4U2Proxy TGS-REQ carries the TGT and the evidence ticket, each with a
PAC; with AD's MaxTokenSize of 65,535 it can pass 128 KiB. Here MIT's own
client makes requests that large: with `noaddresses = false` and a few
thousand `extra_addresses`, the AS-REQ lists them, the TGT carries them,
and the TGS-REQ (the TGT inside, the list again) passes 128 KiB. The
proxy's default record limit (256 KiB) carries it, over /kdc (the plugin)
and over MS-KKDCP (MIT's https client). Requests that large go to the KDC
over TCP at once (over 1,465 bytes, as libkrb5 decides); a small request
whose reply does not fit the KDC's UDP answer gets KRB_ERR_RESPONSE_TOO_BIG
and the proxy asks again over TCP.
"""

from __future__ import annotations

import re

from conftest import client_env, run, tls_proxy_args, write_krb5_conf, wss_client

# 2,300 IPv6 addresses: an AS-REQ of about 62 KB (it still fits a UDP
# datagram), a TGS-REQ of about 190 KB.
N_ADDRESSES = 2300


def with_addresses(conf_path) -> None:
    lines = [f"\textra_addresses = " + ",".join(f"2001:db8::{j * 50 + i:x}" for i in range(1, 51))
             for j in range(N_ADDRESSES // 50)]
    # The KDC compares the requests' source (the proxy, 127.0.0.1) with the
    # ticket's addresses.
    lines.append("\textra_addresses = 127.0.0.1")
    text = conf_path.read_text().replace(
        "[libdefaults]", "[libdefaults]\n\tnoaddresses = false\n" + "\n".join(lines), 1)
    conf_path.write_text(text)


def sizes(log: str, kind: str) -> list[int]:
    return [int(n) for n in re.findall(rf"{kind} exchange over wss://\S+ \([^)]*\): sent (\d+) bytes", log)]


def test_a_190_kb_tgs_req_over_wss_goes_to_the_kdc_by_tcp(start_proxy, pki, realm, plugin_dir, tmp_path):
    proxy = start_proxy(tls_proxy_args(pki, realm))
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    from pathlib import Path
    with_addresses(Path(client.env["KRB5_CONFIG"]))
    r = client.kinit()
    assert r.returncode == 0, r.output
    r2 = client.run(["kvno", realm.host_princ])
    assert r2.returncode == 0, r2.output
    tgs = max(sizes(r2.stderr, "TGS-REQ"))
    assert 131_072 < tgs < 256 * 1024, tgs
    log = proxy.log()
    # Every request is over the UDP preference limit: TCP at once, no
    # datagram tried first.
    assert re.search(r"type=TGS-REQ .*kdc_transport=tcp result=ok", log), log
    assert len(re.findall(r"type=AS-REQ .*kdc_transport=tcp result=ok", log)) == 2, log
    assert "kdc_transport=udp" not in log and "udp:" not in log, log


def test_a_reply_too_big_for_the_kdcs_udp_answer_is_asked_again_over_tcp(start_proxy, pki, tmp_path):
    # A KDC whose UDP answers are at most 200 bytes: its 231-byte
    # PREAUTH_REQUIRED error becomes KRB_ERR_RESPONSE_TOO_BIG over UDP.
    from k5test import K5Realm
    from conftest import free_ports
    from test_proxy import as_req, assert_preauth_required, frame, recv, ws_connect
    from test_proxy import run as run_async
    portbase = free_ports(6)
    k5 = K5Realm(realm="SMALLUDP.COM", portbase=portbase, start_kadmind=False, get_creds=False,
                 kdc_conf={"kdcdefaults": {"kdc_max_dgram_reply_size": "200"}})
    try:
        k5.run_kadminl(["modprinc", "+requires_preauth", k5.user_princ])
        proxy = start_proxy(["--listen", "127.0.0.1:0", "--cert", str(pki.server_cert),
                             "--key", str(pki.server_key),
                             "--realm", f"SMALLUDP.COM=127.0.0.1:{portbase}"])

        async def go():
            async with ws_connect(proxy, pki) as ws:
                await ws.send(frame(as_req(k5.user_princ.split("@")[0], "SMALLUDP.COM")))
                assert_preauth_required(await recv(ws))

        run_async(go())
        log = proxy.log()
        assert "udp: response too big, trying tcp" in log, log
        assert re.search(r"type=AS-REQ .*kdc_transport=tcp result=ok reply=KRB-ERROR", log), log
    finally:
        k5.stop()


def test_a_190_kb_tgs_req_over_kkdcp(proxy, pki, realm, tmp_path):
    url = f"https://localhost:{proxy.port}/KdcProxy"
    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {
        "kdc": url, "http_anchors": f"FILE:{pki.ca_cert}"}})
    with_addresses(conf)
    env = client_env(tmp_path, conf)
    r = run(["kinit", realm.user], env, input=realm.password + "\n")
    assert r.returncode == 0, r.output
    r = run(["kvno", realm.host_princ], env)
    assert r.returncode == 0, r.output
    log = proxy.log()
    assert re.search(r"transport=kkdcp realm=\S+ type=TGS-REQ .*result=ok", log), log
