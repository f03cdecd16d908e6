"""Shared fixtures for the krb5-wss end-to-end tests.

Everything here is real: an MIT KDC and kadmind from k5test, the real
krb5-wss-proxy with certificates from a throwaway test CA, MIT's own kinit,
kvno, klist and kpasswd, and the plugin installed for the client commands
only, through a private mount namespace (`unshare -Urm` plus a bind mount
over libkrb5's locate-plugin directory). Nothing outside the tests' temp
dirs changes, and every process a fixture starts is stopped.

The build artefacts come from `target/release` (override with
KRB5_WSS_TARGET_DIR); `scripts/test` builds them before running pytest.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from k5test import K5Realm

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("KRB5_WSS_TARGET_DIR", ROOT / "target" / "release"))
# KRB5_WSS_PLUGIN_SO selects another build of the plugin (scripts/test runs
# the plugin suites a second time with the native-tls build).
PLUGIN_SO = Path(os.environ.get("KRB5_WSS_PLUGIN_SO", TARGET / "libkrb5_wss.so"))
PROXY_BIN = TARGET / "krb5-wss-proxy"
RELAY_BIN = TARGET / "krb5-wss-relay"


def _libkrb5_plugin_dir() -> str:
    libdir = subprocess.run(
        ["pkg-config", "--variable=libdir", "krb5"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return os.path.join(libdir, "krb5", "plugins", "libkrb5")


LIBKRB5_PLUGIN_DIR = _libkrb5_plugin_dir()

# ---------------------------------------------------------------------------
# Ports


_port_lock = threading.Lock()
_next_port = [20000 + (os.getpid() * 37) % 20000]


def _free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def wait_port(port: int, timeout: float = 10) -> None:
    """Waits until something accepts TCP connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def free_ports(count: int = 1) -> int:
    """Returns the first of `count` consecutive ports free for TCP and UDP.

    Ports are handed out from a per-process sequence, so two realms in one
    test run never share a portbase (k5test starts a second KDC on a taken
    port without complaint).
    """
    with _port_lock:
        while True:
            base = _next_port[0]
            _next_port[0] += count + 1
            if _next_port[0] > 60000:
                _next_port[0] = 20000
            if all(_free(base + i) for i in range(count)):
                return base


# ---------------------------------------------------------------------------
# Certificates


@dataclasses.dataclass
class TestPKI:
    """A test CA with a server certificate, and an unrelated rogue CA; client
    certificates (clientAuth, PKCS#8 keys) for host1.a.example and
    host1.b.example from the test CA, and for host1.a.example from the rogue CA."""

    dir: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    rogue_ca_cert: Path
    rogue_cert: Path
    rogue_key: Path
    wrong_name_cert: Path
    wrong_name_key: Path
    client_a_cert: Path
    client_a_key: Path
    client_b_cert: Path
    client_b_key: Path
    rogue_client_cert: Path
    rogue_client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(d: Path, name: str) -> tuple[Path, Path]:
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
        "-subj", f"/CN=krb5-wss test CA {name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )
    return cert, key


# Distinct file names for certificates made by fixtures.
_leaf_serial = itertools.count()


def _make_leaf(d: Path, name: str, ca: tuple[Path, Path], san: str,
               usage: str = "serverAuth", cn: str | None = None) -> tuple[Path, Path]:
    key, csr, cert = d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem"
    ext = d / f"{name}.ext"
    ext.write_text(
        f"subjectAltName={san}\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        f"extendedKeyUsage={usage}\n"
    )
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn or name}", cwd=d,
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
        cwd=d,
    )
    return cert, key


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> TestPKI:
    d = tmp_path_factory.mktemp("pki")
    ca = _make_ca(d, "ca")
    server = _make_leaf(d, "server", ca, "DNS:localhost,IP:127.0.0.1,IP:::1")
    wrong = _make_leaf(d, "wrongname", ca, "DNS:not-this-host.example")
    rogue_ca = _make_ca(d, "rogue-ca")
    rogue = _make_leaf(d, "rogue", rogue_ca, "DNS:localhost,IP:127.0.0.1,IP:::1")
    client_a = _make_leaf(d, "client-a", ca, "DNS:host1.a.example", "clientAuth",
                          "host1.a.example")
    client_b = _make_leaf(d, "client-b", ca, "DNS:host1.b.example", "clientAuth",
                          "host1.b.example")
    rogue_client = _make_leaf(d, "rogue-client", rogue_ca, "DNS:host1.a.example",
                              "clientAuth", "host1.a.example")
    return TestPKI(
        dir=d,
        ca_cert=ca[0],
        server_cert=server[0],
        server_key=server[1],
        rogue_ca_cert=rogue_ca[0],
        rogue_cert=rogue[0],
        rogue_key=rogue[1],
        wrong_name_cert=wrong[0],
        wrong_name_key=wrong[1],
        client_a_cert=client_a[0],
        client_a_key=client_a[1],
        client_b_cert=client_b[0],
        client_b_key=client_b[1],
        rogue_client_cert=rogue_client[0],
        rogue_client_key=rogue_client[1],
    )


# ---------------------------------------------------------------------------
# The plugin, installed through a private mount namespace


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    """A libkrb5 plugin directory as meson installs it: the C front module
    krb5_wss.so, and the Rust core (PLUGIN_SO) in krb5-wss/krb5_wss_core.so."""
    if not PLUGIN_SO.exists():
        pytest.fail(f"{PLUGIN_SO} is missing: build with `cargo build --release` first")
    d = tmp_path_factory.mktemp("plugins")
    subprocess.run([str(ROOT / "scripts" / "plugin-dir"), str(d), str(PLUGIN_SO)], check=True,
                   capture_output=True, text=True)
    return d


def ns_command(cmd: list[str], plugin_dir: Path | None, resolv_conf: Path | None = None) -> list[str]:
    """Wraps `cmd` to run in a private mount namespace where libkrb5's
    locate-plugin directory is `plugin_dir` (and /etc/resolv.conf is
    `resolv_conf`, when given). Only that process tree sees the mounts."""
    mounts = []
    if plugin_dir is not None:
        mounts.append(f'mount --bind "{plugin_dir}" "{LIBKRB5_PLUGIN_DIR}"')
    if resolv_conf is not None:
        mounts.append(f'mount --bind "{resolv_conf}" /etc/resolv.conf')
    if not mounts:
        return cmd
    script = " && ".join(mounts) + ' && exec "$@"'
    return ["unshare", "-Urm", "sh", "-c", script, "sh", *cmd]


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    elapsed: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run(
    cmd: list[str],
    env: dict[str, str],
    *,
    input: str | None = None,
    plugin_dir: Path | None = None,
    resolv_conf: Path | None = None,
    timeout: float = 60,
) -> Result:
    """Runs a client command (with the plugin when `plugin_dir` is given)."""
    full = ns_command(cmd, plugin_dir, resolv_conf)
    start = time.monotonic()
    p = subprocess.run(
        full,
        env=env,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(p.returncode, p.stdout, p.stderr, time.monotonic() - start)


# ---------------------------------------------------------------------------
# Realms


class Realm:
    """A k5test MIT realm (KDC + kadmind/kpasswd) on its own ports."""

    def __init__(self, name: str = "KRBTEST.COM"):
        self.portbase = free_ports(6)
        self.k5 = K5Realm(
            realm=name,
            portbase=self.portbase,
            start_kadmind=True,
            get_creds=False,
        )
        self.name = name
        # The user principal must use preauth, as most real realms require.
        self.k5.run_kadminl(["modprinc", "+requires_preauth", self.k5.user_princ])
        self.user = self.k5.user_princ
        self.password = self.k5.password("user")
        self.host_princ = self.k5.host_princ
        self.kdc_addr = f"127.0.0.1:{self.portbase}"
        self.kpasswd_addr = f"127.0.0.1:{self.portbase + 2}"

    def addprinc(self, princ: str, password: str | None = None, preauth: bool = True) -> None:
        self.k5.addprinc(princ, password)
        if preauth:
            self.k5.run_kadminl(["modprinc", "+requires_preauth", princ])

    def stop(self) -> None:
        self.k5.stop()


@pytest.fixture(scope="module")
def realm():
    r = Realm()
    yield r
    r.stop()


# ---------------------------------------------------------------------------
# The proxy


class Daemon:
    """A server process the tests start (the proxy, the relay): its stderr
    goes to `log_path`; it is ready once its first stdout line starts with
    "listening on " (kept in `listen_line`)."""

    name = "daemon"

    def __init__(self, cmd: list[str], workdir: Path, env: dict[str, str], pass_fds=()):
        self.log_path = workdir / f"{self.name}-{time.monotonic_ns()}.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            pass_fds=pass_fds,
        )
        self.listen_line = self._wait_for_listen_line()

    def _wait_for_listen_line(self) -> str:
        assert self.proc.stdout is not None
        result: list[str] = []

        def reader():
            result.append(self.proc.stdout.readline())

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(20)
        line = result[0] if result else ""
        if not line.startswith("listening on "):
            log = self.log()
            self.stop()
            raise RuntimeError(f"{self.name} did not start: {line!r}\n{log}")
        return line.strip()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


class Proxy(Daemon):
    """A running krb5-wss-proxy."""

    name = "proxy"

    def __init__(self, args: list[str], workdir: Path, env: dict[str, str] | None = None,
                 nofile: int | None = None):
        proc_env = dict(os.environ)
        proc_env.setdefault("KRB5_WSS_PROXY_LOG", "debug")
        if env:
            proc_env.update(env)
        # nofile: run with this file descriptor limit (soft and hard).
        prefix = ["prlimit", f"--nofile={nofile}:{nofile}", "--"] if nofile else []
        super().__init__([*prefix, str(PROXY_BIN), *args], workdir, proc_env)
        self.listen_url = self.listen_line.split()[2]
        # "wss://127.0.0.1:PORT" -> port
        self.port = int(self.listen_url.rsplit(":", 1)[1].split("/")[0])

    def url(self, path: str = "/kdc", host: str = "localhost", scheme: str = "wss") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


@pytest.fixture
def start_proxy(tmp_path):
    """Factory: start_proxy(args) -> Proxy, stopped at teardown."""
    if not PROXY_BIN.exists():
        pytest.fail(f"{PROXY_BIN} is missing: build with `cargo build --release` first")
    started: list[Proxy] = []

    def start(args: list[str], env: dict[str, str] | None = None, nofile: int | None = None) -> Proxy:
        p = Proxy(args, tmp_path, env, nofile)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


# ---------------------------------------------------------------------------
# The relay (krb5-wss-relay): Kerberos over UDP/TCP for clients without the
# plugin


class Relay(Daemon):
    """A running krb5-wss-relay.

    Ready once it printed `listening on SERVICE+PROTO://IP:PORT ...`;
    `addresses` maps "kdc+udp", "kdc+tcp", "kpasswd+udp", "kpasswd+tcp" to
    the first (ip, port) of each, and `kdc_port` / `kpasswd_port` are the
    ports (UDP and TCP share one)."""

    name = "relay"

    def __init__(self, args: list[str], workdir: Path, env: dict[str, str] | None = None,
                 launcher: list[str] | None = None, pass_fds: tuple[int, ...] = ()):
        proc_env = dict(os.environ)
        proc_env.setdefault("KRB5_WSS_RELAY_LOG", "info,krb5_wss=debug,krb5_wss_relay=debug")
        if env is not None:
            proc_env.update(env)
        super().__init__([*(launcher or []), str(RELAY_BIN), *args], workdir, proc_env, pass_fds)
        self.listening = self.listen_line.split()[2:]
        self.addresses: dict[str, tuple[str, int]] = {}
        for token in self.listening:
            kind, _, hostport = token.partition("://")
            host, _, port = hostport.rpartition(":")
            self.addresses.setdefault(kind, (host.strip("[]"), int(port)))
        self.kdc_port = self.addresses.get("kdc+udp", self.addresses.get("kdc+tcp", ("", 0)))[1]
        self.kpasswd_port = self.addresses.get("kpasswd+udp",
                                               self.addresses.get("kpasswd+tcp", ("", 0)))[1]

    def reload(self) -> None:
        self.proc.send_signal(signal.SIGHUP)


@pytest.fixture
def start_relay(tmp_path):
    """Factory: start_relay(args, env=None) -> Relay, stopped at teardown.
    `env` is added to this process's environment (pass a complete one
    through `launcher=["env", "-i", ...]` for an empty environment)."""
    if not RELAY_BIN.exists():
        pytest.fail(f"{RELAY_BIN} is missing: build with `cargo build --release` first")
    started: list[Relay] = []

    def start(args: list[str], env: dict[str, str] | None = None, **kw) -> Relay:
        r = Relay(args, tmp_path, env, **kw)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def tls_proxy_args(pki: TestPKI, realm: Realm, *extra: str) -> list[str]:
    """The usual command line: TLS with the test CA's certificate, one realm."""
    return [
        "--listen", "127.0.0.1:0",
        "--cert", str(pki.server_cert),
        "--key", str(pki.server_key),
        "--realm", f"{realm.name}={realm.kdc_addr}",
        "--kpasswd", f"{realm.name}={realm.kpasswd_addr}",
        *extra,
    ]


# ---------------------------------------------------------------------------
# Client configuration


def write_krb5_conf(path: Path, default_realm: str, realms: dict[str, dict[str, list[str] | str]],
                    libdefaults: dict[str, str] | None = None) -> Path:
    """Writes a krb5.conf; realm values may be strings or lists of lines."""
    settings = {"default_realm": default_realm, "dns_lookup_kdc": "false",
                "dns_lookup_realm": "false", "rdns": "false"}
    settings.update(libdefaults or {})
    lines = ["[libdefaults]"] + [f"\t{k} = {v}" for k, v in settings.items()]
    lines.append("[realms]")
    for name, opts in realms.items():
        lines.append(f"\t{name} = {{")
        for k, v in opts.items():
            for item in [v] if isinstance(v, str) else v:
                lines.append(f"\t\t{k} = {item}")
        lines.append("\t}")
    path.write_text("\n".join(lines) + "\n")
    return path


def client_env(workdir: Path, krb5_conf: Path, **extra: str) -> dict[str, str]:
    """Environment for a client command: its own config, ccache and logs."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "KRB5_CONFIG": str(krb5_conf),
        "KRB5CCNAME": f"FILE:{workdir / 'ccache'}",
        "KRB5RCACHEDIR": str(workdir),
        "KRB5_WSS_LOG": "debug",
        "LANG": "C.UTF-8",
    }
    env.update(extra)
    return env


@dataclasses.dataclass
class WssClient:
    """A client set up for one realm through one proxy."""

    realm: Realm
    env: dict[str, str]
    plugin_dir: Path
    workdir: Path

    def run(self, cmd: list[str], **kw) -> Result:
        kw.setdefault("plugin_dir", self.plugin_dir)
        return run(cmd, self.env, **kw)

    def kinit(self, princ: str | None = None, password: str | None = None, **kw) -> Result:
        princ = princ or self.realm.user
        password = self.realm.password if password is None else password
        return self.run(["kinit", princ], input=password + "\n", **kw)


def wss_client(realm: Realm, proxy_port: int, pki: TestPKI, plugin_dir: Path, workdir: Path,
               extra_realm_opts: dict | None = None, **env_extra: str) -> WssClient:
    """A client whose krb5.conf names no KDC address, only wss URLs."""
    workdir.mkdir(parents=True, exist_ok=True)
    opts: dict[str, list[str] | str] = {
        "kdc": f"wss://localhost:{proxy_port}/kdc",
        "kpasswd_server": f"wss://localhost:{proxy_port}/kpasswd",
        "http_anchors": f"FILE:{pki.ca_cert}",
    }
    opts.update(extra_realm_opts or {})
    conf = write_krb5_conf(workdir / "krb5.conf", realm.name, {realm.name: opts})
    return WssClient(realm, client_env(workdir, conf, **env_extra), plugin_dir, workdir)


@pytest.fixture
def proxy(start_proxy, pki, realm):
    """The usual proxy: TLS with the test CA's certificate, the module's realm."""
    return start_proxy(tls_proxy_args(pki, realm))


@pytest.fixture
def client(realm, proxy, pki, plugin_dir, tmp_path):
    """A wss-only client of `proxy`."""
    return wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "client")


# ---------------------------------------------------------------------------
# Small C programs linked against the real libkrb5 (tests/c/*.c)


@pytest.fixture(scope="session")
def c_programs(tmp_path_factory) -> dict[str, Path]:
    """Compiles tests/c/*.c against libkrb5; returns name -> executable."""
    out = tmp_path_factory.mktemp("cbin")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "krb5", "krb5-gssapi"],
                           check=True, capture_output=True, text=True).stdout.split()
    progs = {}
    for src in sorted((ROOT / "tests" / "c").glob("*.c")):
        exe = out / src.stem
        subprocess.run(["cc", "-O1", "-Wall", "-Werror", "-o", str(exe), str(src), *flags,
                        "-lpthread", "-ldl"], check=True, capture_output=True, text=True)
        progs[src.stem] = exe
    return progs


# ---------------------------------------------------------------------------
# A network where only a web proxy gets out


@dataclasses.dataclass
class WebProxyWorld:
    """A krb5-wss-proxy reachable by name (`name`, a certificate from the
    test CA) only through tinyproxy: in the clients' view (`hosts_client`,
    to bind-mount over /etc/hosts) the name resolves to an address where
    nothing listens; tinyproxy (in its own namespace) resolves it to the
    real one. `web_proxy` is tinyproxy's URL, `log` its log file."""

    name: str
    proxy: "Proxy"
    hosts_client: Path
    web_proxy: str
    port: int
    log: Path

    def hosts_mount(self, command: str) -> list[str]:
        """`command` (a shell command) with the clients' /etc/hosts."""
        return ["sh", "-c", f'mount --bind "{self.hosts_client}" /etc/hosts && exec {command}']


@pytest.fixture
def web_proxy_world(start_proxy, pki, realm, tmp_path):
    if not shutil.which("tinyproxy"):
        pytest.skip("tinyproxy is not installed")
    name = "wss-proxy.test"
    cert, key = _make_leaf(pki.dir, f"wssproxy{next(_leaf_serial)}", (pki.ca_cert, pki.dir / "ca.key"),
                           f"DNS:{name}")
    proxy_named = start_proxy(["--listen", "127.0.0.1:0", "--cert", str(cert), "--key", str(key),
                               "--realm", f"{realm.name}={realm.kdc_addr}"])
    hosts_real = tmp_path / "hosts.real"
    hosts_real.write_text(f"127.0.0.1 localhost\n127.0.0.1 {name}\n")
    hosts_client = tmp_path / "hosts.client"
    hosts_client.write_text(f"127.0.0.1 localhost\n127.0.0.254 {name}\n")  # nothing listens there
    tp_port = free_ports(1)
    tp_conf = tmp_path / "tinyproxy.conf"
    tp_log = tmp_path / "tinyproxy.log"
    tp_conf.write_text(f"Port {tp_port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{tp_log}\"\n"
                       "LogLevel Connect\nMaxClients 20\nAllow 127.0.0.1\n")
    tp = subprocess.Popen(
        ["unshare", "-Urm", "sh", "-c",
         f'mount --bind "{hosts_real}" /etc/hosts && exec tinyproxy -d -c "{tp_conf}"'],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_port(tp_port, timeout=5)
        yield WebProxyWorld(name, proxy_named, hosts_client, f"http://127.0.0.1:{tp_port}", tp_port, tp_log)
    finally:
        tp.terminate()
        tp.wait(timeout=10)

