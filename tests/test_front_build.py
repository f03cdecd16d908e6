"""The front module's build guarantees: it exports exactly the C ABI, and a
panic path that survives optimisation is a link error (the release panic
handler calls a symbol that exists nowhere; the module links with
--no-undefined). Proven here on a copy of front/ with a panicking index
added, built in a temp target dir."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import ROOT, TARGET

FRONT_SO = Path(os.environ.get("CARGO_TARGET_DIR", TARGET.parent)) / "release" / "libkrb5_wss_front.so"
EXPORTS = ["krb5_wss_install_hooks", "krb5_wss_recv_hook", "krb5_wss_send_hook", "krb5_wss_version",
           "service_locator"]


def test_front_exports_exactly_the_c_abi():
    out = subprocess.run(["nm", "-D", "--defined-only", str(FRONT_SO)], check=True, capture_output=True,
                         text=True).stdout
    assert sorted(line.split()[2] for line in out.splitlines()) == EXPORTS, out
    needed = subprocess.run(["readelf", "-d", str(FRONT_SO)], check=True, capture_output=True,
                            text=True).stdout
    assert "Library soname: [krb5_wss.so]" in needed and "NODELETE" in needed, needed
    libs = sorted(line.split("[")[1].rstrip("]") for line in needed.splitlines() if "(NEEDED)" in line)
    assert libs == ["libc.so.6", "libkrb5.so.3"], libs


def test_a_panic_path_fails_the_release_link(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "front", src / "front", ignore=shutil.ignore_patterns("target"))
    shutil.copytree(ROOT / "owner", src / "owner", ignore=shutil.ignore_patterns("target"))
    # The owner crate inherits its package fields from the root workspace.
    (src / "Cargo.toml").write_text(
        '[workspace]\nmembers = ["owner"]\nexclude = ["front"]\n\n[workspace.package]\n'
        'version = "0.1.0"\nedition = "2021"\nlicense = "MIT OR Apache-2.0"\nrust-version = "1.80"\n')
    locate = src / "front" / "src" / "locate.rs"
    text = locate.read_text()
    anchor = "    if own == Ownership::NotOurs {"
    assert anchor in text
    # An index the optimiser cannot prove in bounds: a panic path.
    locate.write_text(text.replace(anchor, "    if realm.to_bytes()[7] == 1 {\n        return 5;\n    }\n"
                                           + anchor, 1))
    env = dict(os.environ)
    env.pop("CARGO_TARGET_DIR", None)
    r = subprocess.run(["cargo", "build", "--release", "--offline", "--manifest-path",
                        str(src / "front" / "Cargo.toml"), "--target-dir", str(tmp_path / "target")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode != 0, r.stderr[-3000:]
    assert "undefined symbol: krb5_wss_front_has_a_panic_path_see_front_src_lib_rs" in r.stderr, \
        r.stderr[-3000:]
