"""Messages as large as Active Directory produces them, with a real MIT KDC.

An S4U2Proxy TGS-REQ carries the TGT and the evidence ticket, each with a
PAC; with AD's MaxTokenSize of 65,535 it can pass 128 KiB. Here MIT's own
client makes requests that large: with `noaddresses = false` and a few
thousand `extra_addresses`, the AS-REQ lists them, the TGT carries them,
and the TGS-REQ (the TGT inside, the list again) passes 128 KiB. The
proxy's default record limit (256 KiB) carries it, over /kdc (the plugin)
and over MS-KKDCP (MIT's https client), and the KDC's UDP answer
KRB_ERR_RESPONSE_TOO_BIG makes the proxy retry over TCP.
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


def test_a_190_kb_tgs_req_over_wss_with_udp_first_to_the_kdc(start_proxy, pki, realm, plugin_dir, tmp_path):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--udp", realm.name))
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
    # The AS-REP did not fit the KDC's UDP answer: KRB_ERR_RESPONSE_TOO_BIG,
    # then TCP to the same KDC.
    assert "udp: response too big, trying tcp" in log, log
    assert re.search(r"type=TGS-REQ .*kdc_transport=tcp result=ok", log), log


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
