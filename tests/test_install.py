"""`meson setup` + `meson install --destdir`: files land where they must.

Runs the real meson build (which builds through cargo, sharing the default
`target/` dir, so it is incremental after `cargo build --release`) and
installs into a temp dir; nothing outside the temp dir changes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p


def _pkg_config_libdir() -> str:
    return _run(["pkg-config", "--variable=libdir", "krb5"]).stdout.strip()


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(destdir, build dir) after `meson setup` and `meson install --destdir`."""
    tmp = tmp_path_factory.mktemp("meson")
    build, dest = tmp / "build", tmp / "dest"
    env = dict(os.environ)
    if "KRB5_WSS_TARGET_DIR" in env and "CARGO_TARGET_DIR" not in env:
        # Same artefacts the other tests use: <target>/release -> <target>.
        env["CARGO_TARGET_DIR"] = str(Path(env["KRB5_WSS_TARGET_DIR"]).parent)
    _run(["meson", "setup", str(build), str(ROOT)], env=env)
    _run(["meson", "install", "-C", str(build), "--destdir", str(dest)], env=env, timeout=1800)
    return dest, build


def _options(build: Path) -> dict[str, str]:
    opts = json.loads(_run(["meson", "introspect", "--buildoptions", str(build)]).stdout)
    return {o["name"]: o["value"] for o in opts}


def _under(dest: Path, path: str) -> Path:
    return dest / path.lstrip("/")


def test_files_land_at_the_expected_paths(installed):
    dest, build = installed
    opts = _options(build)
    prefix = opts["prefix"]
    plugin = _under(dest, f"{_pkg_config_libdir()}/krb5/plugins/libkrb5/krb5_wss.so")
    core = _under(dest, f"{_pkg_config_libdir()}/krb5/plugins/libkrb5/krb5-wss/krb5_wss_core.so")
    proxy = _under(dest, f"{prefix}/{opts['bindir']}/krb5-wss-proxy")
    relay = _under(dest, f"{prefix}/{opts['bindir']}/krb5-wss-relay")
    units = [_under(dest, f"{prefix}/lib/systemd/system/krb5-wss-relay.{kind}")
             for kind in ("socket", "service")]
    header = _under(dest, f"{prefix}/{opts['includedir']}/krb5_wss.h")

    files = sorted(p for p in dest.rglob("*") if p.is_file())
    assert files == sorted([plugin, core, proxy, relay, *units, header]), "installed files: " + ", ".join(
        str(p.relative_to(dest)) for p in files
    )

    # The plugin is where MIT libkrb5 looks for locate modules, exports the
    # module table, and is not executable.
    for lib in (plugin, core):
        assert lib.stat().st_mode & 0o777 == 0o644, lib
        symbols = _run(["nm", "-D", "--defined-only", str(lib)]).stdout.split()
        assert "service_locator" in symbols and "krb5_wss_install_hooks" in symbols, lib
    # The front module is small no_std Rust (libkrb5 and libc only): no Rust
    # runtime, no libgcc_s in processes that never use wss.
    needed = _run(["readelf", "-d", str(plugin)]).stdout
    assert "libgcc_s" not in needed and plugin.stat().st_size < 100_000, needed

    # The proxy runs.
    assert proxy.stat().st_mode & 0o111
    out = _run([str(proxy), "--help"], timeout=30).stdout
    assert "--listen" in out
    # So does the relay, and its units name the installed binary.
    assert relay.stat().st_mode & 0o111
    assert "--kpasswd-listen" in _run([str(relay), "--help"], timeout=30).stdout
    service = units[1].read_text()
    assert f"ExecStart={prefix}/{opts['bindir']}/krb5-wss-relay --config" in service, service

    # The header is the checked-in one.
    assert header.read_bytes() == (ROOT / "include" / "krb5_wss.h").read_bytes()


def test_meson_test_runs_the_suite(installed):
    _, build = installed
    tests = json.loads(_run(["meson", "introspect", "--tests", str(build)]).stdout)
    assert [t["name"] for t in tests] == ["scripts/test"]


def test_hooks_example_built_by_meson(installed, realm, start_proxy, pki, plugin_dir, tmp_path):
    """The C program meson builds from examples/hooks_client.c (header only:
    krb5_wss_install_hooks) gets a TGT and service tickets over wss."""
    from conftest import tls_proxy_args, wss_client

    _, build = installed
    exe = build / "krb5-wss-hooks-example"
    assert exe.exists()
    needed = _run(["readelf", "-d", str(exe)]).stdout
    assert "[krb5_wss.so]" in needed and "krb5/plugins/libkrb5" in needed, needed
    proxy = start_proxy(tls_proxy_args(pki, realm))
    client = wss_client(realm, proxy.port, pki, plugin_dir, tmp_path / "c")
    # Meson's build rpath comes first and points at its build dir; the
    # installed program would find krb5_wss.so in the plugin directory,
    # which the namespace's bind mount provides here.
    from conftest import LIBKRB5_PLUGIN_DIR, run
    env = dict(client.env, LD_LIBRARY_PATH=LIBKRB5_PLUGIN_DIR)
    r = run([str(exe), realm.user, realm.password, realm.host_princ, "3"], env, plugin_dir=plugin_dir)
    assert r.returncode == 0, r.output
    assert "hooks installed" in r.stdout and "TGT ok" in r.stdout and "service tickets ok: 3" in r.stdout
    assert "send hook carries the request over wss" in r.stderr, r.stderr
