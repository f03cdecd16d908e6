"""The plugin inside real programs: connection reuse, hooks, fork, threads,
leaks, cost for foreign realms, KRB5_TRACE, and outbound web proxies.

Every program here is a real libkrb5 client: MIT's kvno, or a small C
program from tests/c/ (and examples/hooks_client.c, which uses only the
public header) linked against the system libkrb5.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import (
    LIBKRB5_PLUGIN_DIR,
    ROOT,
    client_env,
    free_ports,
    run,
    tls_proxy_args,
    write_krb5_conf,
    wss_client,
)


@pytest.fixture(scope="module")
def hooks_client(tmp_path_factory, plugin_dir) -> Path:
    """examples/hooks_client.c built against include/krb5_wss.h and the
    plugin's front module, found at run time in libkrb5's plugin directory
    (where the namespace bind mount puts it): the process holds one copy of
    each library, the same files libkrb5 loads."""
    out = tmp_path_factory.mktemp("hooks") / "hooks_client"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "krb5"], check=True,
                           capture_output=True, text=True).stdout.split()
    subprocess.run(["cc", "-O1", "-Wall", "-Werror", f"-I{ROOT / 'include'}", "-o", str(out),
                    str(ROOT / "examples" / "hooks_client.c"), *flags, str(plugin_dir / "krb5_wss.so"),
                    f"-Wl,-rpath,{LIBKRB5_PLUGIN_DIR}"], check=True, capture_output=True, text=True)
    return out


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def test_kvno_of_50_services_uses_one_connection(client, realm, proxy):
    services = [f"svc{i}/localhost@{realm.name}" for i in range(50)]
    for s in services:
        realm.addprinc(s, preauth=False)
    assert client.kinit().returncode == 0
    before = proxy.log().count("open")
    r = client.run(["kvno", *services])
    assert r.returncode == 0, r.output
    assert count(r"TGS-REQ exchange over wss://", r.stderr) == 50, r.stderr
    assert count(r"connected to wss://", r.stderr) == 1, r.stderr
    assert count(r"\(pooled connection, exchange #50\)", r.stderr) == 1, r.stderr
    # The proxy saw one WebSocket session for all 50.
    sessions = [l for l in proxy.log().splitlines() if "service=kdc open" in l]
    assert len(sessions) - before <= 2  # kinit's one, and kvno's one
    assert proxy.log().count("type=TGS-REQ") >= 50


def test_dead_pooled_connection_is_replaced_without_failing(start_proxy, pki, realm, plugin_dir, tmp_path,
                                                            c_programs):
    proxy = start_proxy(tls_proxy_args(pki, realm, "--idle-timeout", "1s"))
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    # Two rounds in one process, 2.5 s apart: the proxy closes the idle
    # connection after 1 s; the plugin notices and opens a new one.
    r = client.run([str(c_programs["krb5_loop"]), realm.user, realm.password, "2", "2500"])
    assert r.returncode == 0, r.output
    assert r.stdout.count(": ok") == 2, r.output
    assert count(r"connected to wss://", r.stderr) == 2, r.stderr


def test_fork_child_gets_tickets(client, realm, c_programs):
    r = client.run([str(c_programs["krb5_fork"]), realm.user, realm.password])
    assert r.returncode == 0, r.output
    for step in ["parent before fork", "child, inherited context", "child, new context", "parent after fork"]:
        assert f"{step}: ok" in r.stdout, r.output
    # The child did not use its parent's relay: it made its own.
    pids = set(re.findall(r"krb5-wss\[(\d+)\]: INFO realm \S+ kdc: relay", r.stderr))
    assert len(pids) == 2, r.stderr


def test_eight_threads_hundred_tickets_each(client, realm, c_programs):
    r = client.run([str(c_programs["krb5_threads"]), realm.user, realm.password, realm.host_princ, "8", "100"],
                   timeout=180)
    assert r.returncode == 0, r.output
    assert "8 threads, 800 service tickets, 0 errors" in r.stdout, r.output


def test_hooks_installed_through_the_header(client, realm, hooks_client):
    r = client.run([str(hooks_client), realm.user, realm.password, realm.host_princ, "5"])
    assert r.returncode == 0, r.output
    assert "hooks installed" in r.stdout and "TGT ok" in r.stdout, r.output
    assert "service tickets ok: 5" in r.stdout, r.output
    assert "send hook carries the request over wss" in r.stderr, r.stderr
    assert count(r"TGS-REQ exchange over wss://", r.stderr) == 5, r.stderr


def test_recv_hook_falls_back_to_wss(realm, proxy, pki, plugin_dir, tmp_path, hooks_client):
    """Ordinary KDC lines that do not work (nothing listens there), and a
    wss fallback: the recv hook retries over wss and the program succeeds."""
    dead = free_ports(1)
    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {
        "kdc": f"127.0.0.1:{dead}",
        "wss_fallback_kdc": f"wss://localhost:{proxy.port}/kdc",
        "http_anchors": f"FILE:{pki.ca_cert}",
    }})
    env = client_env(tmp_path, conf)
    r = run([str(hooks_client), realm.user, realm.password, realm.host_princ, "2"], env, plugin_dir=plugin_dir)
    assert r.returncode == 0, r.output
    assert "direct delivery failed; retrying over wss_fallback_kdc" in r.stderr, r.stderr
    # Without the hooks the same program cannot reach the KDC.
    r = run([str(hooks_client), "--no-hooks", realm.user, realm.password, realm.host_princ], env,
            plugin_dir=plugin_dir)
    assert r.returncode != 0 and "Cannot contact any KDC" in r.output, r.output


def test_foreign_realm_lookup_costs_nothing(realm, plugin_dir, tmp_path, c_programs):
    """A lookup for a realm the plugin does not own: no thread, no file
    descriptor, no socket, no file read; only MIT's own profile_copy
    (access + stat of krb5.conf). Timing is printed, not asserted."""
    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {"kdc": realm.kdc_addr}})
    env = client_env(tmp_path, conf)
    so = plugin_dir / "krb5_wss.so"
    r = run([str(c_programs["locate_driver"]), str(so), "cost", realm.name, "20000"], env)
    assert r.returncode == 0, r.output
    m = re.search(r"not-handled yes ns/lookup (\d+) threads (\d+)->(\d+) fds (\d+)->(\d+)", r.stdout)
    assert m, r.output
    print(f"\nforeign-realm lookup: {m.group(1)} ns")
    assert m.group(2) == m.group(3) and m.group(4) == m.group(5), r.stdout
    if shutil.which("strace"):
        trace = tmp_path / "strace.txt"
        r = run(["strace", "-f", "-o", str(trace), str(c_programs["locate_driver"]), str(so), "cost",
                 realm.name, "2000"], env)
        assert r.returncode == 0, r.output
        inside, calls = False, set()
        for line in trace.read_text().splitlines():
            if "MARK begin" in line:
                inside = True
            elif "MARK end" in line:
                inside = False
            elif inside:
                calls.add(line.split(None, 1)[1].split("(", 1)[0])
        assert calls <= {"access", "newfstatat", "stat", "statx"}, calls


def test_krb5_trace_holds_the_plugins_decisions(client, realm, tmp_path):
    trace = tmp_path / "trace.log"
    env = dict(client.env, KRB5_TRACE=str(trace), KRB5_WSS_LOG="off")
    r = run(["kinit", realm.user], env, input=realm.password + "\n", plugin_dir=client.plugin_dir)
    assert r.returncode == 0, r.output
    assert "krb5-wss" not in r.stderr  # KRB5_WSS_LOG=off: stderr stays quiet
    text = trace.read_text()
    assert "Sending request" in text  # MIT's own lines
    assert re.search(r"^\[\d+\] \d+\.\d{6}: krb5-wss: realm \S+ kdc: connected to wss://", text, re.M), text
    assert re.search(r"krb5-wss: realm \S+ kdc: AS-REQ exchange over wss://", text), text


@pytest.mark.skipif(os.geteuid() != 0 and not shutil.which("unshare"), reason="needs unshare")
def test_outbound_web_proxy_with_connect(web_proxy_world, pki, realm, plugin_dir, tmp_path):
    """Only a web proxy is reachable: the wss proxy's name resolves, for the
    client, to an address where nothing listens; tinyproxy (in its own
    namespace, where the name resolves to the real address) is the only
    way through. https_proxy makes kinit work; no_proxy for that host
    makes it fail again."""
    w = web_proxy_world
    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {
        "kdc": f"wss://{w.name}:{w.proxy.port}/kdc", "http_anchors": f"FILE:{pki.ca_cert}"}})

    def kinit(**extra):
        env = client_env(tmp_path, conf, **extra)
        return run(w.hosts_mount(f"kinit {realm.user}"), env, input=realm.password + "\n",
                   plugin_dir=plugin_dir)

    r = kinit()
    assert r.returncode != 0 and "Cannot contact any KDC" in r.output, r.output  # direct: blocked
    r = kinit(https_proxy=w.web_proxy)
    assert r.returncode == 0, r.output
    assert f"through web proxy {w.web_proxy}" in r.stderr, r.stderr
    assert "CONNECT" in w.log.read_text() or w.name in w.log.read_text(), w.log.read_text()
    r = kinit(https_proxy=w.web_proxy, no_proxy=".test")
    assert r.returncode != 0, r.output
    # A proxy that refuses the tunnel is named in the error.
    r = kinit(https_proxy=f"http://127.0.0.1:{free_ports(1)}")
    assert r.returncode != 0 and "connection refused" in r.output, r.output


def _leak_summary(text: str) -> dict[str, int]:
    out = {}
    for kind in ["definitely lost", "indirectly lost", "possibly lost", "still reachable"]:
        m = re.search(rf"{kind}: ([\d,]+) bytes in ([\d,]+) blocks", text)
        out[kind] = int(m.group(1).replace(",", "")) if m else 0
    return out


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is not installed")
def test_no_leaks_under_valgrind(client, realm, proxy, hooks_client, c_programs, tmp_path):
    """A C host looping over init/lookup/fini (owned realm: relay, pooled
    connection) and one using the hooks, under valgrind's leak checker.
    The lookup loop waits for the relay to retire before exiting, so its
    thread and sockets are gone too."""
    # Leaks only: memcheck also flags ring's hand-written AES-GCM assembly
    # ("writev points to uninitialised bytes"), a known false positive.
    vg = ["valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect", "--num-callers=30"]
    so = client.plugin_dir / "krb5_wss.so"
    r = client.run([*vg, str(c_programs["locate_driver"]), str(so), "loop", realm.name, "50"], timeout=300)
    assert r.returncode == 0, "\n".join(l for l in r.stderr.splitlines() if l.startswith("=="))[-6000:]
    assert "lookups 50 addresses 50 " in r.stdout and "threads left 1" in r.stdout, r.output[-4000:]
    loop = _leak_summary(r.stderr)
    r = client.run([*vg, str(hooks_client), realm.user, realm.password, realm.host_princ, "20"], timeout=300)
    assert r.returncode == 0, r.output[-4000:]
    hooks = _leak_summary(r.stderr)
    print(f"\nlocate loop: {loop}\nhooks client: {hooks}")
    for summary in (loop, hooks):
        assert summary["definitely lost"] == 0 and summary["indirectly lost"] == 0, summary


def test_fork_of_a_busy_process(start_proxy, realm, pki, plugin_dir, tmp_path, c_programs):
    """4 threads keep the plugin's relay busy (an exchange at every moment:
    the pool, the URL health map, the registries, the log) while the main
    thread forks 100 times; every child gets initial credentials with a new
    context within 10 s (its alarm counts it as hung otherwise). The
    threads send thousands of requests a second over a few pooled
    connections, past the proxy's default per-connection rate (1,000/s,
    which closes such a connection with 4429), so this proxy's is raised."""
    proxy = start_proxy(tls_proxy_args(pki, realm, "--max-requests-per-second", "1000000"))
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "client")
    env = dict(client.env)
    if os.environ.get("KRB5_FORK_BUSY_GDB"):  # diagnostics: stacks of slow children
        env["KRB5_FORK_BUSY_GDB"] = os.environ["KRB5_FORK_BUSY_GDB"]
    r = run([str(c_programs["krb5_fork_busy"]), realm.user, realm.password,
             f"{LIBKRB5_PLUGIN_DIR}/krb5_wss.so", "4", "100"], env, plugin_dir=client.plugin_dir, timeout=600)
    warnings = "\n".join(l for l in r.stderr.splitlines() if " DEBUG " not in l)
    assert "100 forks: 100 ok, 0 hung, 0 errors" in r.stdout, r.stdout + warnings[-4000:]
    assert r.returncode == 0, r.stdout + warnings[-4000:]
