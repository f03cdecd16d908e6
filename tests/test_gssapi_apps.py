"""GSSAPI programs, unchanged, over wss.

Ordinary GSSAPI applications that know nothing about krb5-wss get their
service tickets through the plugin and the proxy, because libkrb5 asks the
plugin where the KDC is:

- python-gssapi (PyPI `gssapi`): an initiator process (with the plugin)
  establishes a krb5 context with `host@localhost` against a python-gssapi
  acceptor process holding the service keytab (without the plugin, and with
  no reachable KDC: an acceptor needs none); both then exchange wrapped
  messages. tests/apps/gss_peer.py is the program; this module relays the
  tokens between the two processes.
- curl --negotiate against Debian's apache2 with mod_auth_gssapi, run on
  loopback from a config in a temp dir (tests/apps/httpd.conf.in).

The realm's KDC is reachable for the clients only through the proxy: their
krb5.conf names nothing but wss:// URLs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_ports, ns_command, wss_client

APPS = ROOT / "tests" / "apps"
GSS_PEER = APPS / "gss_peer.py"
APACHE_MODULES = Path("/usr/lib/apache2/modules")


def exchanges(log: str, kind: str, port: int) -> list[str]:
    """The plugin's debug lines for completed `kind` exchanges via the proxy."""
    return [l for l in log.splitlines()
            if f"{kind} exchange over wss://localhost:{port}/kdc" in l]


def proxy_lines(proxy, kind: str) -> list[str]:
    return [l for l in proxy.log().splitlines() if f"type={kind} " in l]


@pytest.fixture(scope="module")
def services(realm, tmp_path_factory) -> dict[str, Path]:
    """host/localhost and HTTP/localhost with random keys, each in its own
    keytab (k5test's own host principal is named after the machine's FQDN)."""
    d = tmp_path_factory.mktemp("keytabs")
    keytabs = {}
    for service in ("host", "HTTP"):
        princ = f"{service}/localhost@{realm.name}"
        if princ != realm.host_princ:
            realm.addprinc(princ, preauth=False)
        keytabs[service] = d / f"{service}.keytab"
        realm.k5.extract_keytab(princ, str(keytabs[service]))
    return keytabs


def service_env(client, keytab: Path, workdir: Path) -> dict[str, str]:
    """Environment for an acceptor: the client's krb5.conf (wss URLs only,
    and the acceptor runs without the plugin, so no KDC is reachable), the
    service keytab, and its own replay cache directory."""
    workdir.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "KRB5_CONFIG": client.env["KRB5_CONFIG"],
        "KRB5_KTNAME": f"FILE:{keytab}",
        "KRB5CCNAME": f"FILE:{workdir / 'no-ccache'}",
        "KRB5RCACHEDIR": str(workdir),
    }


# ---------------------------------------------------------------------------
# (a) python-gssapi initiator and acceptor


class Peer:
    """A gss_peer.py process; its stdout lines are read by a thread."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], workdir: Path):
        self.name = name
        self.stderr_path = workdir / f"{name}.stderr"
        self._stderr = open(self.stderr_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, text=True)

    def stderr(self) -> str:
        self._stderr.flush()
        return self.stderr_path.read_text()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def read_into(self, q: queue.Queue) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            q.put((self, line))
        q.put((self, None))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            if f:
                f.close()
        self._stderr.close()


def converse(initiator: Peer, acceptor: Peer, timeout: float = 30) -> tuple[dict, dict, list]:
    """Relays TOKEN and WRAP lines between the peers until both say DONE.
    Returns both DONE records and the transcript (who sent what, how big)."""
    q: queue.Queue = queue.Queue()
    other = {initiator: acceptor, acceptor: initiator}
    for p in other:
        threading.Thread(target=p.read_into, args=(q,), daemon=True).start()
    done: dict[str, dict] = {}
    transcript = []
    deadline = time.monotonic() + timeout

    def failure(why: str) -> str:
        return (f"{why}\n--- initiator stderr:\n{initiator.stderr()}"
                f"\n--- acceptor stderr:\n{acceptor.stderr()}")

    while len(done) < 2:
        try:
            peer, line = q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(failure(f"no DONE after {timeout}s; transcript {transcript}"))
        if line is None:
            if peer.name in done:
                continue
            peer.proc.wait(timeout=10)
            pytest.fail(failure(f"{peer.name} exited with {peer.proc.returncode} before DONE"))
        kind, _, payload = line.rstrip("\n").partition(" ")
        if kind in ("TOKEN", "WRAP"):
            transcript.append((peer.name, kind, len(payload)))
            other[peer].send(line)
        elif kind == "DONE":
            done[peer.name] = json.loads(payload)
        else:
            pytest.fail(failure(f"unexpected line from {peer.name}: {line!r}"))
    for p in other:
        assert p.proc.wait(timeout=10) == 0, failure(f"{p.name} exited with {p.proc.returncode}")
    return done["initiator"], done["acceptor"], transcript


@pytest.fixture
def peers():
    """Factory for Peer processes, all stopped at teardown."""
    started: list[Peer] = []

    def start(*args, **kw) -> Peer:
        p = Peer(*args, **kw)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.mark.parametrize("credentials", ["kinit-ccache", "password"])
def test_python_gssapi_context_over_wss(credentials, realm, services, proxy, pki, plugin_dir,
                                        peers, tmp_path):
    if importlib.util.find_spec("gssapi") is None:
        pytest.fail("python-gssapi is missing: pip install -r tests/requirements.txt")
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "client")
    initiator_cmd = [sys.executable, str(GSS_PEER), "initiate", "host@localhost"]
    initiator_env = dict(client.env)
    if credentials == "kinit-ccache":
        # MIT's kinit over wss fills the ccache; the program uses it.
        r = client.kinit()
        assert r.returncode == 0, r.output
    else:
        # The program gets its TGT itself (gss_acquire_cred_with_password).
        initiator_cmd += ["--principal", realm.user]
        initiator_env["GSS_PEER_PASSWORD"] = realm.password
    tgs_before = len(proxy_lines(proxy, "TGS-REQ"))

    acceptor = peers("acceptor", [sys.executable, str(GSS_PEER), "accept"],
                     service_env(client, services["host"], tmp_path / "acceptor"), tmp_path)
    initiator = peers("initiator", ns_command(initiator_cmd, plugin_dir), initiator_env,
                      tmp_path)
    init, acc, transcript = converse(initiator, acceptor)

    # The context: krb5 mechanism, mutual authentication (AP-REQ, AP-REP),
    # then one wrapped message each way.
    assert [(who, kind) for who, kind, _ in transcript] == [
        ("initiator", "TOKEN"), ("acceptor", "TOKEN"),
        ("initiator", "WRAP"), ("acceptor", "WRAP")], transcript
    assert init["mech"] == acc["mech"] == "1.2.840.113554.1.2.2"
    assert init["mutual"] is True
    assert acc["initiator"] == init["initiator"] == realm.user
    assert acc["target"] == f"host/localhost@{realm.name}"
    assert acc["message"] == "hello from the initiator"
    assert init["reply"] == f"acceptor got 'hello from the initiator' from {realm.user}"

    # The service ticket came over wss, through the proxy.
    log = initiator.stderr()
    assert len(exchanges(log, "TGS-REQ", proxy.port)) == 1, log
    as_reqs = exchanges(log, "AS-REQ", proxy.port)
    if credentials == "password":
        assert len(as_reqs) == 2, log  # PREAUTH_REQUIRED, then the timestamp
    else:
        assert as_reqs == [], log
    assert len(proxy_lines(proxy, "TGS-REQ")) == tgs_before + 1, proxy.log()
    # The acceptor had no plugin and asked no KDC.
    assert "krb5-wss" not in acceptor.stderr()

    if credentials == "kinit-ccache":
        r = client.run(["klist"], plugin_dir=None)
        assert f"host/localhost@{realm.name}" in r.stdout, r.output


# ---------------------------------------------------------------------------
# (b) curl --negotiate against apache2 + mod_auth_gssapi


class Apache:
    """apache2 in the foreground on 127.0.0.1:port, everything in `dir`.

    As root, apache insists on switching to an unprivileged User, which
    could not read the test's 0700 temp dirs. So, as root, it runs inside a
    new user namespace with no uid mapping (`unshare -U`): there it is not
    root (getuid() is the overflow uid), keeps its own uid for file access
    on the host, and skips the switch. Unprivileged, it runs as is.
    """

    def __init__(self, dir: Path, keytab: Path, env: dict[str, str]):
        self.dir = dir
        self.port = free_ports(1)
        (dir / "run").mkdir(parents=True)
        (dir / "htdocs" / "private").mkdir(parents=True)
        self.body = "krb5-wss: SPNEGO over wss works\n"
        (dir / "htdocs" / "private" / "hello.txt").write_text(self.body)
        conf = string.Template((APPS / "httpd.conf.in").read_text()).substitute(
            dir=dir, port=self.port, modules=APACHE_MODULES, keytab=keytab)
        (dir / "httpd.conf").write_text(conf)
        cmd = ["apache2", "-d", str(dir), "-f", str(dir / "httpd.conf"), "-DFOREGROUND"]
        if os.geteuid() == 0:
            cmd = ["unshare", "-U", *cmd]
        self._out = open(dir / "apache2.out", "w")
        # Its own session: on shutdown apache signals its whole process
        # group, which would otherwise include pytest.
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"apache2 exited with {self.proc.returncode}\n{self.logs()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"apache2 is not listening on {self.port}\n{self.logs()}")

    def url(self, path: str) -> str:
        return f"http://localhost:{self.port}{path}"

    def access_log(self) -> str:
        p = self.dir / "access.log"
        return p.read_text() if p.exists() else ""

    def logs(self) -> str:
        parts = []
        for name in ("apache2.out", "error.log", "access.log"):
            p = self.dir / name
            if p.exists():
                parts.append(f"--- {name}:\n{p.read_text()}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # stops the children too
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture
def apache_factory():
    missing = [what for what, ok in [
        ("apache2 (Debian package apache2)", shutil.which("apache2")),
        ("mod_auth_gssapi (Debian package libapache2-mod-auth-gssapi)",
         (APACHE_MODULES / "mod_auth_gssapi.so").exists()),
        ("curl", shutil.which("curl")),
    ] if not ok]
    if missing:
        pytest.fail("missing: " + ", ".join(missing) + " (scripts/setup installs them)")
    started: list[Apache] = []

    def start(*args) -> Apache:
        a = Apache(*args)
        started.append(a)
        return a

    yield start
    for a in started:
        a.stop()


def curl_negotiate(client, url: str, workdir: Path, plugin: bool):
    headers, body = workdir / "headers", workdir / "body"
    for p in (headers, body):
        p.unlink(missing_ok=True)
    r = client.run(["curl", "--negotiate", "-u", ":", "-sS", "--max-time", "20",
                    "-D", str(headers), "-o", str(body), "-w", "%{http_code}", url],
                   plugin_dir=client.plugin_dir if plugin else None)
    final = {}
    if headers.exists():
        # -D writes every response (401, then 200): keep the last one's.
        for line in headers.read_text().splitlines():
            if line.startswith("HTTP/"):
                final = {}
            elif ":" in line:
                k, _, v = line.partition(":")
                final[k.strip().lower()] = v.strip()
    return r, final, body.read_text() if body.exists() else ""


def test_curl_negotiate_to_apache_mod_auth_gssapi_over_wss(realm, services, proxy, pki,
                                                           plugin_dir, apache_factory, tmp_path):
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "client")
    apache = apache_factory(tmp_path / "apache", services["HTTP"],
                            service_env(client, services["HTTP"], tmp_path / "apache-env"))
    url = apache.url("/private/hello.txt")

    r = client.kinit()
    assert r.returncode == 0, r.output

    # Without the plugin libkrb5 cannot use the wss:// KDC URLs: no ticket
    # for HTTP/localhost, so no SPNEGO token, and apache says 401.
    r, _, _ = curl_negotiate(client, url, tmp_path, plugin=False)
    assert r.stdout == "401", r.output + apache.logs()

    # With the plugin, curl's GSSAPI library gets the ticket over wss.
    tgs_before = len(proxy_lines(proxy, "TGS-REQ"))
    r, headers, body = curl_negotiate(client, url, tmp_path, plugin=True)
    assert r.returncode == 0 and r.stdout == "200", r.output + apache.logs()
    assert body == apache.body
    assert headers.get("x-remote-user") == realm.user, (headers, apache.logs())
    assert headers.get("x-gss-name") == realm.user, (headers, apache.logs())
    assert f'user={realm.user} "GET /private/hello.txt HTTP/1.1" 200' in apache.access_log(), \
        apache.logs()

    assert len(exchanges(r.stderr, "TGS-REQ", proxy.port)) == 1, r.stderr
    assert exchanges(r.stderr, "AS-REQ", proxy.port) == [], r.stderr
    assert len(proxy_lines(proxy, "TGS-REQ")) == tgs_before + 1, proxy.log()
    r = client.run(["klist"], plugin_dir=None)
    assert f"HTTP/localhost@{realm.name}" in r.stdout, r.output
