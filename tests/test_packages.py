"""The Debian packages (scripts/package), as an administrator uses them.

The packages are built from the release build and installed with the real
apt and dpkg into a throwaway Debian 12 root: a minbase root made by
mmdebstrap (`--mode=unshare`, from Debian's mirror, once, cached as a
tarball under <target>/debian-root/) and unpacked into the test's temp dir.
Every command in it runs under `chroot` in a private mount namespace
(`unshare --mount`, with the root's own /proc mounted there only), sharing
the host's network namespace, so its kinit reaches the proxy and the k5test
KDC on loopback. Nothing outside the temp dir changes; the root is deleted
at the end.

Needs root (dpkg in a chroot creates device nodes and files of several
owners); skipped otherwise. CI runs as root. Measured on the 2-core build
machine, after the release build: about 45 s (two scripts/package runs with
lintian, about 25 s; unpacking, apt and the rest, about 20 s), plus 20 to
80 s once per clone for mmdebstrap's base root (then cached), so it stays
in the pytest stage of scripts/test.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, TARGET, Daemon, free_ports, write_krb5_conf

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="installs packages into a chroot: needs root")

PACKAGES = ["krb5-wss", "krb5-wss-relay", "krb5-wss-proxy"]
USER = "_krb5-wss-proxy"
# The base root: what the packages depend on (so apt installs them without
# the network), kinit, and a localhost line for the client's wss URL.
MMDEBSTRAP = [
    "mmdebstrap", "--mode=unshare", "--format=tar", "--variant=minbase", "--include=adduser,krb5-user,libgcc-s1",
    "--customize-hook=echo '127.0.0.1 localhost' > \"$1/etc/hosts\"",
    "bookworm",
]
# Paths whose contents dpkg and apt change by design (their databases,
# caches and logs), /run (a tmpfs on a booted system; adduser keeps its
# lock there), the temp dirs the test itself writes to, and the backups
# (passwd- ...) that the shadow tools write on every change to an account
# file: left out of the "nothing of ours remains" comparison.
ACCOUNTS = ("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")
VOLATILE = ("proc/", "tmp/", "run/", "var/lib/dpkg/", "var/lib/apt/", "var/cache/", "var/log/",
            "etc/ld.so.cache", *(f + "-" for f in ACCOUNTS))
# The account files themselves are compared by content.
CHROOT_ENV = {
    "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
    "HOME": "/root",
}


def _run(cmd: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode == 0, f"{shlex.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


def _target() -> Path:
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"])
    return TARGET.parent


def _base_tarball() -> Path:
    """The cached Debian 12 minbase tarball (built on the first run)."""
    key = hashlib.sha256("\0".join(MMDEBSTRAP).encode()).hexdigest()[:12]
    cache = _target() / "debian-root"
    tar = cache / f"bookworm-{key}.tar"
    if tar.exists():
        return tar
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / f".{os.getpid()}.{tar.name}"
    try:
        _run([*MMDEBSTRAP, str(partial)], timeout=1200)
        partial.rename(tar)
    finally:
        partial.unlink(missing_ok=True)
    return tar


def _package(out: Path, *args: str) -> list[Path]:
    env = dict(os.environ)
    if "KRB5_WSS_TARGET_DIR" in os.environ:
        env.setdefault("CARGO_TARGET_DIR", str(_target()))
    p = _run([str(ROOT / "scripts" / "package"), "--out", str(out), *args], timeout=1800, env=env)
    debs = [Path(line) for line in p.stdout.split()]
    assert sorted(d.name.split("_")[0] for d in debs) == sorted(PACKAGES), p.stdout
    return debs


class Chroot:
    """A Debian root in a temp dir; commands run in it through chroot in a
    private mount namespace."""

    def __init__(self, path: Path):
        self.path = path

    def command(self, cmd: list[str], user: str | None = None) -> list[str]:
        """`cmd` in the root, as `user` ("USER:GROUP") when given."""
        spec = f"--userspec={user} " if user else ""
        script = f'mount -t proc proc "$1/proc" && exec chroot {spec}"$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                str(self.path), *cmd]

    def run(self, cmd: list[str], *, check: bool = True, input: str | None = None,
            timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run(self.command(cmd), capture_output=True, text=True, input=input,
                           timeout=timeout, env={**CHROOT_ENV, **(env or {})})
        if check:
            assert p.returncode == 0, f"in the root: {shlex.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
        return p

    def apt(self, *args: str) -> subprocess.CompletedProcess:
        # The base root has no package lists (mmdebstrap cleans them), so
        # apt can only use what is installed: a dependency missing from the
        # base root fails here instead of being downloaded.
        return self.run(["apt-get", "-y", "-q", *args], timeout=600)

    def status(self, pkg: str) -> str:
        p = self.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", pkg], check=False)
        return p.stdout.strip() if p.returncode == 0 else "not known"

    def file(self, path: str) -> Path:
        return self.path / path.lstrip("/")

    def tree(self) -> dict[str, str]:
        """Every path in the root (but VOLATILE ones) -> its type, with
        ACCOUNTS by content."""
        out: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            for name in dirnames + filenames:
                full = Path(dirpath) / name
                rel = str(full.relative_to(self.path))
                if any(rel == v.rstrip("/") or rel.startswith(v) for v in VOLATILE):
                    continue
                if rel in ACCOUNTS:
                    out[rel] = full.read_text()
                elif full.is_symlink():
                    out[rel] = "-> " + os.readlink(full)
                else:
                    out[rel] = "dir" if full.is_dir() else "file"
        return out


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """(the workspace version's .debs, a newer build's .debs, its version)."""
    if shutil.which("mmdebstrap") is None or shutil.which("dh_builddeb") is None:
        pytest.fail("mmdebstrap or debhelper is missing: run scripts/setup")
    out = tmp_path_factory.mktemp("debs")
    first = _package(out / "1")  # with lintian: any error or unexplained warning fails
    version = first[0].name.split("_")[1].removesuffix("-1")
    newer = f"{version}+test1"
    return first, _package(out / "2", "--version", newer, "--no-lintian"), newer


@pytest.fixture
def chroot(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    _run(["tar", "-C", str(root), "--xattrs", "--xattrs-include=*", "-xf", str(_base_tarball())])
    yield Chroot(root)
    shutil.rmtree(root)


def test_package_metadata(debs):
    """Depends are computed from the binaries (libkrb5-3 and libc with the
    lowest versions their symbols need), the configuration files are
    conffiles, and the units sit where Debian 12's systemd reads them."""
    first, _, _ = debs
    by_name = {d.name.split("_")[0]: d for d in first}

    def field(pkg: str, name: str) -> str:
        return _run(["dpkg-deb", "-f", str(by_name[pkg]), name]).stdout.strip()

    def control(pkg: str, member: str) -> str:
        p = subprocess.run(["dpkg-deb", "--info", str(by_name[pkg]), member], capture_output=True,
                           text=True, timeout=60)
        return p.stdout if p.returncode == 0 else ""

    def files(pkg: str) -> list[str]:
        return [line.split()[-1].lstrip(".") for line in _run(["dpkg-deb", "-c", str(by_name[pkg])]).stdout.splitlines()]

    plugin_depends = field("krb5-wss", "Depends")
    assert "libkrb5-3 (>= " in plugin_depends and "libc6 (>= " in plugin_depends, plugin_depends
    for pkg in ("krb5-wss-relay", "krb5-wss-proxy"):
        depends = field(pkg, "Depends")
        assert "libc6 (>= " in depends and "libkrb5" not in depends, (pkg, depends)
    assert field("krb5-wss-proxy", "Depends").startswith("adduser, ")
    assert field("krb5-wss", "Multi-Arch") == "same"

    assert control("krb5-wss-proxy", "conffiles").split() == ["/etc/krb5-wss-proxy.toml"]
    assert control("krb5-wss-relay", "conffiles").split() == ["/etc/krb5-wss-relay.toml"]
    assert control("krb5-wss", "conffiles") == ""
    assert f"adduser --system --group" in control("krb5-wss-proxy", "postinst")
    assert "deluser --system" in control("krb5-wss-proxy", "postrm")

    plugin = [f for f in files("krb5-wss") if f.endswith(".so")]
    assert len(plugin) == 2 and all("/krb5/plugins/libkrb5/" in f for f in plugin), plugin
    assert "/usr/include/krb5_wss.h" in files("krb5-wss")
    assert {"/lib/systemd/system/krb5-wss-relay.socket",
            "/lib/systemd/system/krb5-wss-relay.service"} <= set(files("krb5-wss-relay"))
    assert "/lib/systemd/system/krb5-wss-proxy.service" in files("krb5-wss-proxy")
    for pkg in PACKAGES:
        doc = {f for f in files(pkg) if f.startswith(f"/usr/share/doc/{pkg}/")}
        assert {f"/usr/share/doc/{pkg}/copyright", f"/usr/share/doc/{pkg}/changelog.Debian.gz"} <= doc, doc


@pytest.mark.parametrize("version", ["1.0-2", "1:1.0", "v1.0", ""])
def test_package_refuses_a_version_dpkg_would_misread(version, tmp_path):
    """A revision, an epoch or a leading letter would make dpkg parse
    another version than the one asked for: refused before any build."""
    p = subprocess.run([str(ROOT / "scripts" / "package"), "--version", version, "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and f"version '{version}' is not a Debian upstream version" in p.stderr, p.stderr
    assert list(tmp_path.iterdir()) == []


def _unit_exec(chroot: Chroot, key: str, unit_name: str = "krb5-wss-proxy.service") -> list[str]:
    """The unit's command line for `key` (ExecStart, ExecStartPre), as
    installed."""
    unit = chroot.file(f"/lib/systemd/system/{unit_name}").read_text()
    lines = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "=")]
    assert len(lines) == 1, f"{key} in the installed unit: {lines}"
    return shlex.split(lines[0])


def _unit_env(chroot: Chroot, unit_name: str = "krb5-wss-proxy.service") -> dict[str, str]:
    unit = chroot.file(f"/lib/systemd/system/{unit_name}").read_text()
    pairs = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("Environment=")]
    return dict(p.split("=", 1) for p in pairs)


def _configure_proxy(chroot: Chroot, pki, realm) -> str:
    """The administrator's edit of the conffile, and the key readable by
    the proxy's group only; returns the new configuration."""
    tls = chroot.file("/etc/krb5-wss")
    tls.mkdir()
    shutil.copy(pki.server_cert, tls / "fullchain.pem")
    shutil.copy(pki.server_key, tls / "privkey.pem")
    chroot.run(["chgrp", USER, "/etc/krb5-wss/privkey.pem"])
    chroot.run(["chmod", "640", "/etc/krb5-wss/privkey.pem"])
    conf = (
        "# edited by the administrator\n"
        "[server]\n"
        'listen = ["127.0.0.1:0"]\n'
        'cert = "/etc/krb5-wss/fullchain.pem"\n'
        'key = "/etc/krb5-wss/privkey.pem"\n'
        f'[realms."{realm.name}"]\n'
        f'kdc = ["{realm.kdc_addr}"]\n'
        f'kpasswd = ["{realm.kpasswd_addr}"]\n'
    )
    chroot.file("/etc/krb5-wss-proxy.toml").write_text(conf)
    return conf


def _start_proxy(chroot: Chroot, workdir: Path) -> tuple[Daemon, int]:
    """The proxy as systemd would run it: ExecStartPre, then ExecStart of
    the installed unit, as the unit's user, with its Environment=."""
    env = {**CHROOT_ENV, **_unit_env(chroot)}
    p = subprocess.run(chroot.command(_unit_exec(chroot, "ExecStartPre"), user=f"{USER}:{USER}"),
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and "configuration ok" in p.stdout, p.stdout + p.stderr
    daemon = Daemon(chroot.command(_unit_exec(chroot, "ExecStart"), user=f"{USER}:{USER}"), workdir, env)
    port = int(daemon.listen_line.split()[2].rsplit(":", 1)[1])
    return daemon, port


def _kinit(chroot: Chroot, realm, pki, port: int, kdc: str | None = None) -> subprocess.CompletedProcess:
    """kinit inside the root, with a krb5.conf naming only the wss URL (or
    the plain `kdc` address)."""
    client = chroot.file("/tmp/client")
    client.mkdir(exist_ok=True)
    shutil.copy(pki.ca_cert, client / "ca.pem")
    opts = {"kdc": kdc} if kdc else {"kdc": f"wss://localhost:{port}/kdc",
                                      "http_anchors": "FILE:/tmp/client/ca.pem"}
    write_krb5_conf(client / "krb5.conf", realm.name, {realm.name: opts})
    env = {"KRB5_CONFIG": "/tmp/client/krb5.conf", "KRB5CCNAME": "FILE:/tmp/client/ccache",
           "KRB5_WSS_LOG": "debug"}
    return chroot.run(["kinit", realm.user], input=realm.password + "\n", check=False, env=env,
                      timeout=60)


def _kinit_over_wss(chroot: Chroot, realm, pki, tmp_path: Path, relay: bool = False) -> None:
    """kinit over wss through the installed proxy: with the plugin, or
    (`relay`) through the installed relay, started from its unit's command
    line with the administrator's configuration, and no plugin involved."""
    proxy, port = _start_proxy(chroot, tmp_path)
    daemons = [proxy]
    try:
        if relay:
            kdc_port = free_ports(1)
            chroot.file("/etc/krb5-wss/ca.pem").write_bytes(pki.ca_cert.read_bytes())
            chroot.file("/etc/krb5-wss-relay.toml").write_text(
                f'listen = ["127.0.0.1:{kdc_port}"]\n'
                "kpasswd_listen = []\n"
                f'realm = ["{realm.name}=wss://localhost:{port}/kdc"]\n'
                'anchors = ["FILE:/etc/krb5-wss/ca.pem"]\n')
            unit = "krb5-wss-relay.service"
            env = {**CHROOT_ENV, **_unit_env(chroot, unit)}
            chroot.run(_unit_exec(chroot, "ExecStartPre", unit), env=env)
            daemons.append(Daemon(chroot.command(_unit_exec(chroot, "ExecStart", unit), user="nobody:nogroup"),
                                  tmp_path, env))
            r = _kinit(chroot, realm, pki, port, kdc=f"127.0.0.1:{kdc_port}")
        else:
            r = _kinit(chroot, realm, pki, port)
        assert r.returncode == 0, r.stdout + r.stderr
        if not relay:
            assert "wss://localhost" in r.stderr, r.stderr  # the plugin's debug log: it went over wss
        time.sleep(0.2)
        assert "result=ok" in proxy.log(), proxy.log()
    finally:
        for d in daemons:
            d.stop()


def test_install_kinit_upgrade_remove_purge(debs, chroot, realm, pki, tmp_path):
    """apt install of the three .debs; kinit over wss with the installed
    plugin, through the proxy its unit starts (as _krb5-wss-proxy, reading
    the key through its group); apt install of a newer build keeps the
    edited conffile and still works, also through the relay its unit
    starts; apt remove keeps conffiles and the user, and kinit without the
    plugin fails; apt purge leaves the root as it was."""
    first, newer_debs, newer = debs
    before = chroot.tree()
    passwd_before = chroot.file("/etc/passwd").read_text()

    # Install, as an administrator does: apt with the .deb files.
    incoming = chroot.file("/tmp/debs")
    incoming.mkdir()
    for d in first:
        shutil.copy(d, incoming / d.name)
    chroot.apt("install", *(f"/tmp/debs/{d.name}" for d in first))
    for pkg in PACKAGES:
        assert chroot.status(pkg).startswith("ii "), (pkg, chroot.status(pkg))
    entry = chroot.run(["getent", "passwd", USER]).stdout.strip().split(":")
    assert 0 < int(entry[2]) < 1000 and entry[6] in ("/usr/sbin/nologin", "/bin/false"), entry
    assert chroot.run(["getent", "group", USER]).returncode == 0

    # Nothing was asked of the plugin but installing it: the installed
    # libkrb5 loads it, and kinit gets a ticket over wss through the proxy
    # the installed unit starts.
    conf = _configure_proxy(chroot, pki, realm)
    _kinit_over_wss(chroot, realm, pki, tmp_path)
    assert "Default principal: " + realm.user in chroot.run(
        ["klist"], env={"KRB5CCNAME": "FILE:/tmp/client/ccache"}).stdout

    # Upgrade to a newer build: the edited conffile is kept, and it works.
    for d in newer_debs:
        shutil.copy(d, incoming / d.name)
    chroot.apt("install", *(f"/tmp/debs/{d.name}" for d in newer_debs))
    for pkg in PACKAGES:
        assert chroot.status(pkg) == f"ii {newer}-1", (pkg, chroot.status(pkg))
    assert chroot.file("/etc/krb5-wss-proxy.toml").read_text() == conf
    assert chroot.file("/etc/krb5-wss-relay.toml").read_bytes() == (
        ROOT / "relay" / "krb5-wss-relay.example.toml").read_bytes()
    chroot.file("/tmp/client/ccache").unlink()
    _kinit_over_wss(chroot, realm, pki, tmp_path)
    # The relay, for clients without the plugin, from its unit (as the
    # unprivileged user nobody: its unit has no capability).
    chroot.file("/tmp/client/ccache").unlink()
    _kinit_over_wss(chroot, realm, pki, tmp_path, relay=True)

    # Remove: the programs go, the conffiles and the user stay (Debian's
    # remove), and without the plugin the same kinit finds no KDC.
    chroot.apt("remove", *PACKAGES)
    # (krb5-wss has no conffile nor postrm: removing it leaves dpkg nothing
    # to remember.)
    assert chroot.status("krb5-wss") == "not known", chroot.status("krb5-wss")
    for pkg in ("krb5-wss-relay", "krb5-wss-proxy"):
        assert chroot.status(pkg).startswith("rc "), (pkg, chroot.status(pkg))
    assert not chroot.file("/usr/bin/krb5-wss-proxy").exists()
    assert chroot.file("/etc/krb5-wss-proxy.toml").read_text() == conf
    assert chroot.run(["getent", "passwd", USER], check=False).returncode == 0
    r = _kinit(chroot, realm, pki, 1)
    assert r.returncode != 0, r.stdout + r.stderr

    # Purge: nothing of ours remains, not even the user.
    chroot.apt("purge", "krb5-wss-relay", "krb5-wss-proxy")
    for pkg in PACKAGES:
        assert chroot.status(pkg) in ("not known", "un "), (pkg, chroot.status(pkg))
    # The test's own additions (the key dir it made) are the administrator's:
    # dpkg leaves them, as it must; take them out before comparing.
    shutil.rmtree(chroot.file("/etc/krb5-wss"))
    after = chroot.tree()
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not added and not removed and not changed, f"added {added}, removed {removed}, changed {changed}"
    assert chroot.file("/etc/passwd").read_text() == passwd_before
