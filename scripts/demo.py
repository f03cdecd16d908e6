"""krb5-wss demo: MIT kinit and kvno reach a KDC only through wss://.

Run through `scripts/demo`, which installs what is missing and builds first.

It makes, in one temp dir: a throwaway MIT realm (k5test: KDC + kadmind on
free loopback ports), a throwaway CA and a certificate for localhost, a
krb5-wss-proxy in front of the realm's KDC and kpasswd server, and a client
krb5.conf that names no KDC address, only wss:// URLs. Then it runs kinit,
kvno and klist with the plugin installed for those commands only (a private
mount namespace: `unshare -Urm` plus a bind mount over libkrb5's plugin
directory), and prints what shows the exchanges went over wss://.

Everything it starts is stopped and the temp dir removed, also on failure
and on Ctrl-C; nothing on the machine changes.
"""

from __future__ import annotations

import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("KRB5_WSS_TARGET_DIR", ROOT / "target" / "release"))
PLUGIN_SO = TARGET / "libkrb5_wss.so"
PROXY_BIN = TARGET / "krb5-wss-proxy"
REALM = "KRBTEST.COM"

# Everything started here, stopped in cleanup() whatever happens.
PROCS: list[subprocess.Popen] = []


class Stop(Exception):
    """Raised from a signal handler (SIGTERM, SIGHUP) to unwind and clean up."""


def on_signal(signum, _frame):
    raise Stop(f"stopped by {signal.Signals(signum).name}")


def die_with_parent() -> None:
    """In a child: get SIGTERM if the demo dies without cleaning up."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def plugin_dir_path() -> str:
    libdir = subprocess.run(
        ["pkg-config", "--variable=libdir", "krb5"], check=True, capture_output=True, text=True
    ).stdout.strip()
    return os.path.join(libdir, "krb5", "plugins", "libkrb5")


def free_portbase(count: int = 6) -> int:
    """A base of `count` consecutive loopback ports free for TCP and UDP."""

    def free(port: int) -> bool:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    return False
        return True

    for _ in range(200):
        base = random.randrange(20000, 60000 - count)
        if all(free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free ports for the realm")


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for localhost: (ca, cert, key)."""
    d.mkdir()
    openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=krb5-wss demo CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )
    (d / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
    )
    openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=d,
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "server.ext",
        cwd=d,
    )
    return d / "ca.pem", d / "server.pem", d / "server.key"


def start_realm(work: Path):
    """A k5test realm whose files live under `work` and whose daemons are
    recorded in PROCS (so they are stopped even if k5test fails midway)."""
    from k5test import K5Realm
    from k5test import realm as k5realm

    original = k5realm.K5Realm._start_daemon

    def tracked(self, *args, **kwargs):
        proc = original(self, *args, **kwargs)
        PROCS.append(proc)
        return proc

    k5realm.K5Realm._start_daemon = tracked
    tempfile.tempdir = str(work)  # k5test's mkdtemp lands in our temp dir
    portbase = free_portbase()
    realm = K5Realm(realm=REALM, portbase=portbase, start_kadmind=True, get_creds=False)
    realm.run_kadminl(["modprinc", "+requires_preauth", realm.user_princ])
    return realm, portbase


def start_proxy(work: Path, cert: Path, key: Path, kdc: str, kpasswd: str):
    """Starts krb5-wss-proxy on a free port: (port, log file)."""
    log = work / "proxy.log"
    env = dict(os.environ, KRB5_WSS_PROXY_LOG="info")
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [
                str(PROXY_BIN), "--listen", "127.0.0.1:0",
                "--cert", str(cert), "--key", str(key),
                "--realm", f"{REALM}={kdc}", "--kpasswd", f"{REALM}={kpasswd}",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env,
            text=True, preexec_fn=die_with_parent,
        )
    PROCS.append(proc)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("listening on "):
        raise RuntimeError(f"the proxy did not start ({line.strip()!r}):\n{log.read_text()}")
    url = line.split()[2]  # wss://127.0.0.1:PORT
    return int(url.rsplit(":", 1)[1].strip("/")), log


def write_client_conf(path: Path, port: int, ca: Path) -> None:
    path.write_text(
        "[libdefaults]\n"
        f"    default_realm = {REALM}\n"
        "    dns_lookup_kdc = false\n"
        "    dns_lookup_realm = false\n"
        "    rdns = false\n"
        "[realms]\n"
        f"    {REALM} = {{\n"
        f"        kdc = wss://localhost:{port}/kdc\n"
        f"        kpasswd_server = wss://localhost:{port}/kpasswd\n"
        f"        http_anchors = FILE:{ca}\n"
        "    }\n"
    )


def client(cmd: list[str], env: dict[str, str], plugins: Path, stdin: str | None = None):
    """Runs an MIT client command with the plugin installed for it alone."""
    wrapped = [
        "unshare", "-Urm", "sh", "-c", 'mount --bind "$0" "$1" && shift && exec "$@"',
        str(plugins), plugin_dir_path(), *cmd,
    ]
    p = subprocess.run(wrapped, env=env, input=stdin, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed (exit {p.returncode}):\n{p.stdout}{p.stderr}"
        )
    return p


def show(title: str, lines: list[str]) -> None:
    print(title)
    for line in lines:
        print(f"    {line}")


def wss_lines(stderr: str) -> list[str]:
    """The plugin's per-exchange lines, without the `krb5-wss[PID]: DEBUG ` prefix."""
    out = []
    for line in stderr.splitlines():
        if "exchange over" in line:
            out.append(line.split(": DEBUG ", 1)[-1])
    return out


def demo(work: Path) -> None:
    for path in (PLUGIN_SO, PROXY_BIN):
        if not path.exists():
            raise RuntimeError(f"{path} is missing: build with `cargo build --release` first")

    realm, portbase = start_realm(work)
    kdc, kpasswd = f"127.0.0.1:{portbase}", f"127.0.0.1:{portbase + 2}"
    ca, cert, key = make_pki(work / "pki")
    port, proxy_log = start_proxy(work, cert, key, kdc, kpasswd)

    plugins = work / "plugins"
    plugins.mkdir()
    subprocess.run([str(ROOT / "scripts" / "plugin-dir"), str(plugins), str(PLUGIN_SO)], check=True)
    conf = work / "krb5.conf"
    write_client_conf(conf, port, ca)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "KRB5_CONFIG": str(conf),
        "KRB5CCNAME": f"FILE:{work / 'ccache'}",
        "KRB5RCACHEDIR": str(work),
        "KRB5_WSS_LOG": "debug",
    }

    print(f"realm {REALM}: MIT KDC on {kdc}, kpasswd on {kpasswd} (throwaway, k5test)")
    print(f"proxy: krb5-wss-proxy on wss://localhost:{port}, certificate from a throwaway CA")
    print(f"client krb5.conf: kdc = wss://localhost:{port}/kdc (no KDC address anywhere)")

    user = realm.user_princ
    kinit = client(["kinit", user], env, plugins, stdin=realm.password("user") + "\n")
    show(f"\n$ kinit {user}   (password on stdin; KRB5_WSS_LOG=debug)", wss_lines(kinit.stderr))
    kvno = client(["kvno", realm.host_princ], env, plugins)
    show(
        f"\n$ kvno {realm.host_princ}",
        kvno.stdout.strip().splitlines() + wss_lines(kvno.stderr),
    )
    klist = client(["klist"], env, plugins)
    show("\n$ klist", [line for line in klist.stdout.splitlines() if line.strip()])

    # Stop the proxy so its log is complete, then show its exchange lines.
    proxy = PROCS[-1]
    proxy.terminate()
    proxy.wait(timeout=10)
    exchanges = [
        line.split(" exchange ", 1)[-1]
        for line in proxy_log.read_text().splitlines()
        if " exchange " in line
    ]
    show("\nproxy log (one line per exchange):", ["exchange " + e for e in exchanges])

    if not wss_lines(kinit.stderr) or not exchanges:
        raise RuntimeError("no exchange over wss:// was seen")
    print("\nkinit and kvno reached the KDC only through wss:// and krb5-wss-proxy.")


def cleanup(work: Path) -> None:
    for proc in reversed(PROCS):
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + 10
    for proc in PROCS:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    work = Path(tempfile.mkdtemp(prefix="krb5-wss-demo-"))
    try:
        demo(work)
        return 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Stop as e:
        print(f"\n{e}", file=sys.stderr)
        return 143
    except Exception as e:  # noqa: BLE001 - report, clean up, fail
        print(f"\ndemo failed: {e}", file=sys.stderr)
        log = work / "proxy.log"
        if log.exists() and log.read_text().strip():
            tail = log.read_text().splitlines()[-10:]
            print("proxy log (last lines):", *tail, sep="\n    ", file=sys.stderr)
        return 1
    finally:
        # No second Ctrl-C in the middle of cleaning up.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        cleanup(work)


if __name__ == "__main__":
    sys.exit(main())
