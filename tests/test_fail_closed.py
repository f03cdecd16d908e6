"""Fail closed: a realm krb5.conf gives to krb5-wss never reaches libkrb5's
own (direct, port 88 style) transport, whatever is wrong with the core.

Each test gives the realm a MIXED kdc list, a wss URL (the real proxy) and
the real KDC's own address, then breaks the plugin's core in one way: the
file is missing, cut to half its size, or a stand-in whose locate init
fails. kinit must fail (not crash) with an error naming the realm, the
core's path and the cause, and the real KDC must see no request from it:
had the front module answered "not mine", libkrb5 would have used the
`kdc = 127.0.0.1:PORT` line (MIT's own parser then refuses the wss line,
see the controls, but no request may leave in any case). The controls run
without the plugin and show that the KDC log check sees a request that
reaches the KDC.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import LIBKRB5_PLUGIN_DIR, ROOT, client_env, free_ports, run, write_krb5_conf

CORE_IN_NAMESPACE = f"{LIBKRB5_PLUGIN_DIR}/krb5-wss/krb5_wss_core.so"

# A stand-in core: every symbol the front module looks for, but its locate
# init fails.
STUB_CORE_C = r"""
#include <sys/socket.h>
#include <krb5/krb5.h>
#include <krb5/locate_plugin.h>
#include <errno.h>
#include <stddef.h>

static krb5_error_code stub_init(krb5_context ctx, void **blob)
{
    (void)ctx;
    *blob = NULL;
    return EIO;
}

static void stub_fini(void *blob) { (void)blob; }

static krb5_error_code stub_lookup(void *blob, enum locate_service_type svc, const char *realm,
                                   int socktype, int family,
                                   int (*cb)(void *, int, struct sockaddr *), void *data)
{
    (void)blob; (void)svc; (void)realm; (void)socktype; (void)family; (void)cb; (void)data;
    return 0;
}

const krb5plugin_service_locate_ftable service_locator = {0, stub_init, stub_fini, stub_lookup};

const char *krb5_wss_version(void) { return "stub"; }

krb5_error_code krb5_wss_send_hook(krb5_context c, void *d, const krb5_data *r, const krb5_data *m,
                                   krb5_data **nm, krb5_data **nr)
{
    (void)c; (void)d; (void)r; (void)m; (void)nm; (void)nr;
    return 0;
}

krb5_error_code krb5_wss_recv_hook(krb5_context c, void *d, krb5_error_code code,
                                   const krb5_data *r, const krb5_data *m, const krb5_data *rep,
                                   krb5_data **nr)
{
    (void)c; (void)d; (void)r; (void)m; (void)rep; (void)nr;
    return code;
}

krb5_error_code krb5_wss_install_hooks(krb5_context c) { (void)c; return 0; }
"""


def broken_plugin_dir(plugin_dir: Path, where: Path, kind: str) -> Path:
    """A copy of the plugin directory whose core is broken in one way."""
    d = where / f"plugins-{kind}"
    (d / "krb5-wss").mkdir(parents=True)
    shutil.copy2(plugin_dir / "krb5_wss.so", d / "krb5_wss.so")
    core = d / "krb5-wss" / "krb5_wss_core.so"
    if kind == "missing":
        pass
    elif kind == "truncated":
        data = (plugin_dir / "krb5-wss" / "krb5_wss_core.so").read_bytes()
        core.write_bytes(data[: len(data) // 2])
    elif kind == "init-fails":
        src = where / "stub_core.c"
        src.write_text(STUB_CORE_C)
        flags = subprocess.run(["pkg-config", "--cflags", "krb5"], check=True, capture_output=True,
                               text=True).stdout.split()
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-Wall", "-Werror", *flags, "-o", str(core),
                        str(src)], check=True, capture_output=True, text=True)
    else:
        raise ValueError(kind)
    return d


def mixed_realm_conf(realm, proxy, pki, d: Path) -> Path:
    """The realm's kdc lines: a wss URL, then the real KDC's own address."""
    d.mkdir(parents=True, exist_ok=True)
    return write_krb5_conf(d / "krb5.conf", realm.name, {realm.name: {
        "kdc": [proxy.url("/kdc"), realm.kdc_addr],
        "http_anchors": f"FILE:{pki.ca_cert}",
    }})


def kdc_log(realm) -> str:
    return (Path(realm.k5.tmpdir) / "kdc.log").read_text()


def new_principal(realm, name: str) -> tuple[str, str]:
    princ, password = f"{name}@{realm.name}", f"{name}-pw-1"
    realm.addprinc(princ, password)
    return princ, password


@pytest.mark.parametrize("kind, cause", [
    ("missing", "cannot load the core " + CORE_IN_NAMESPACE + ": " + CORE_IN_NAMESPACE
     + ": cannot open shared object file: No such file or directory"),
    ("truncated", "the core " + CORE_IN_NAMESPACE + " is truncated ("),
    ("init-fails", "the core " + CORE_IN_NAMESPACE + " failed to initialise (its locate init returned 5)"),
])
def test_broken_core_fails_closed(kind, cause, realm, proxy, pki, plugin_dir, tmp_path):
    broken = broken_plugin_dir(plugin_dir, tmp_path, kind)
    env = client_env(tmp_path, mixed_realm_conf(realm, proxy, pki, tmp_path / "client"))
    princ, password = new_principal(realm, f"failclosed-{kind}")
    r = run(["kinit", princ], env, input=password + "\n", plugin_dir=broken)
    # kinit failed (exit 1: it did not crash)...
    assert r.returncode == 1, r.output
    # ...with the front module's message, naming the realm and the cause...
    assert f"krb5-wss: realm {realm.name}: {cause}" in r.output, r.output
    # ...and nothing went to the KDC, directly or through the proxy.
    assert princ not in kdc_log(realm), kdc_log(realm)[-2000:]
    assert princ not in proxy.log()


def test_controls_without_the_plugin(realm, proxy, pki, tmp_path):
    """Without krb5-wss: libkrb5 refuses the mixed list itself (it cannot
    parse a wss URL as a KDC address: "Invalid argument", not the front
    module's message), and a direct-only realm shows up in the KDC log (so
    the log check above does see a request that reaches the KDC)."""
    empty = tmp_path / "no-plugins"
    empty.mkdir()
    env = client_env(tmp_path, mixed_realm_conf(realm, proxy, pki, tmp_path / "client"))
    princ, password = new_principal(realm, "failclosed-control")
    r = run(["kinit", princ], env, input=password + "\n", plugin_dir=empty)
    assert r.returncode == 1 and "Invalid argument" in r.output and "krb5-wss" not in r.output, r.output
    assert princ not in kdc_log(realm)
    conf = write_krb5_conf(tmp_path / "direct.conf", realm.name, {realm.name: {"kdc": realm.kdc_addr}})
    r = run(["kinit", princ], client_env(tmp_path, conf), input=password + "\n", plugin_dir=empty)
    assert r.returncode == 0, r.output
    assert princ in kdc_log(realm)


def test_core_is_loaded_only_by_absolute_path(realm, plugin_dir, c_programs, tmp_path):
    """A front module loaded by a relative path (here dlopen("./krb5_wss.so"))
    does not load a core relative to the current directory."""
    d = tmp_path / "cwd"
    shutil.copytree(plugin_dir, d)
    dead = free_ports(1)
    conf = write_krb5_conf(tmp_path / "krb5.conf", realm.name, {realm.name: {
        "kdc": f"wss://localhost:{dead}/kdc"}})
    p = subprocess.run([str(c_programs["locate_driver"]), "./krb5_wss.so", "loop", realm.name, "1"],
                       cwd=d, env=client_env(tmp_path, conf), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1, p.stdout + p.stderr
    assert (f"krb5-wss: realm {realm.name}: krb5_wss.so was loaded as \"./krb5_wss.so\", not by an "
            "absolute path: not loading the core relative to it") in p.stderr, p.stderr


def test_install_hooks_without_a_core_names_the_cause(realm, proxy, pki, plugin_dir, tmp_path):
    """examples/hooks_client.c, linked against the front module: with the
    core missing, krb5_wss_install_hooks fails and says why."""
    broken = broken_plugin_dir(plugin_dir, tmp_path, "missing")
    exe = tmp_path / "hooks_client"
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "krb5"], check=True, capture_output=True,
                           text=True).stdout.split()
    subprocess.run(["cc", "-O1", "-Wall", "-Werror", f"-I{ROOT / 'include'}", "-o", str(exe),
                    str(ROOT / "examples" / "hooks_client.c"), *flags, str(broken / "krb5_wss.so"),
                    f"-Wl,-rpath,{LIBKRB5_PLUGIN_DIR}"], check=True, capture_output=True, text=True)
    env = client_env(tmp_path, mixed_realm_conf(realm, proxy, pki, tmp_path / "client"))
    r = run([str(exe), realm.user, realm.password, realm.host_princ, "1"], env, plugin_dir=broken)
    assert r.returncode != 0, r.output
    assert ("hooks_client: krb5_wss_install_hooks: krb5-wss: cannot load the core "
            f"{CORE_IN_NAMESPACE}") in r.output, r.output
