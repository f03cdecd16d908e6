"""bench/vm.py without a guest: the initramfs it writes, read back by the
kernel's rules for the "newc" cpio format; the figures it takes from the
guest's lines (through bench.py's idle_figures, as the host's); and what
it does when a guest never speaks (a host whose /dev/kvm cannot boot the
kernel: the run must stop at the boot deadline, not at the whole run's)."""

import gzip
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench  # noqa: E402
import vm  # noqa: E402


def read_newc(data: bytes) -> list[tuple[str, int, bytes]]:
    """(name, mode, contents) of each entry up to the trailer, checking the
    header magic and the 4-byte alignment of names and contents."""
    out, pos = [], 0
    while True:
        head = data[pos:pos + 110]
        assert head[:6] == b"070701", f"bad magic at {pos}"
        fields = [int(head[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name = data[pos + 110:pos + 110 + namesize]
        assert name.endswith(b"\0")
        pos += 110 + namesize
        pos += -pos % 4
        body = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name[:-1] == b"TRAILER!!!":
            assert pos == len(data)
            return out
        out.append((name[:-1].decode(), mode, body))


def test_the_initramfs_holds_parents_before_children_and_is_aligned(tmp_path):
    c = vm.Cpio()
    c.dir("proc")
    c.file("usr/lib/x86_64-linux-gnu/libz.so.1", b"abcde", 0o755)
    c.symlink("bin/sh", "busybox")
    c.file("init", b"#!/bin/sh\n", 0o755)
    c.write(tmp_path / "initrd.gz")
    entries = read_newc(gzip.decompress((tmp_path / "initrd.gz").read_bytes()))
    names = [n for n, _, _ in entries]
    assert names == ["proc", "usr", "usr/lib", "usr/lib/x86_64-linux-gnu",
                     "usr/lib/x86_64-linux-gnu/libz.so.1", "bin", "bin/sh", "init"]
    by_name = {n: (m, b) for n, m, b in entries}
    assert by_name["usr/lib/x86_64-linux-gnu/libz.so.1"] == (0o100755, b"abcde")
    assert by_name["bin/sh"] == (0o120777, b"busybox")
    assert by_name["usr"][0] == 0o040755


def test_the_guest_script_has_every_placeholder_filled(tmp_path):
    pki = {}
    for k in ("ca", "cert", "key"):
        pki[k] = tmp_path / f"{k}.pem"
        pki[k].write_text(k)
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF")
    vm._initrd([10000, 100000], "BENCH.TEST", pki, [], busybox, tmp_path / "i.gz")
    entries = dict((n, b) for n, _, b in read_newc(gzip.decompress(
        (tmp_path / "i.gz").read_bytes())))
    init = entries["init"].decode()
    assert "@" not in init.replace("$@", "")
    assert "for n in 10000 100000; do" in init
    assert "--realm BENCH.TEST=127.0.0.1:8800" in init
    assert entries["pki/key.pem"] == b"key"
    for d in ("proc", "sys", "dev", "tmp"):
        assert d in entries


def test_the_figures_are_the_guests_lines_summed_over_its_generators():
    said = [
        "nofile 1048576 cpus 2 mem_kib 8143656",
        'idle 100000 {"open":50000,"failed":0,"seconds":900.5,"first_error":null}',
        'idle 100000 {"open":49990,"failed":10,"seconds":901.0,"first_error":"refused"}',
        "mem 100000 gens=2 t0=8.0 t1=910.0 base=4000 loaded=1604000 after=1600000 "
        "fds=100010 client=1700000",
        "done",
    ]
    f = vm._parse(said)[100000]
    assert f["seconds"] == 902.0 and f["generators"] == 2 and f["fds"] == 100010
    r = bench.idle_figures(100000, **f)
    assert r["connections"] == 99990 and r["failed"] == 10
    assert r["per_connection_kib"] == (1604000 - 4000) / 99990
    assert r["rss_after_close_kib"] == 1600000 and r["client_rss_kib"] == 1700000
    assert r["first_error"] == "refused"
    assert r["proxy_fds"] == 100010 and r["loadgen_processes"] == 2


def test_a_guest_that_never_speaks_is_stopped_at_the_boot_deadline(tmp_path):
    # Stands for qemu on a host whose /dev/kvm hangs the guest's kernel:
    # alive, silent, and never ending by itself.
    console = tmp_path / "console.log"
    t = time.monotonic()
    why = vm._run(["sleep", "600"], console, boot_deadline=1.0, deadline=600)
    assert time.monotonic() - t < 5
    assert why == "no line from the guest within 1 s"


def test_a_guest_that_stops_speaking_is_stopped_at_the_runs_deadline(tmp_path):
    console = tmp_path / "console.log"
    script = f"echo 'D-GUEST nofile 1' > {console}; exec sleep 600"
    t = time.monotonic()
    why = vm._run(["sh", "-c", script], console, boot_deadline=1.0, deadline=2.0)
    assert 2 <= time.monotonic() - t < 6
    assert why == "the guest did not finish within 2 s"


def test_a_kernel_and_busybox_already_unpacked_are_not_fetched_again(tmp_path, monkeypatch):
    (tmp_path / "root" / "boot").mkdir(parents=True)
    (tmp_path / "root" / "bin").mkdir()
    (tmp_path / "root" / "boot" / "vmlinuz-6.1.0-1-cloud-amd64").write_bytes(b"k")
    (tmp_path / "root" / "bin" / "busybox").write_bytes(b"b")

    def no_apt(*a, **kw):
        raise AssertionError(f"ran {a[0]!r}")

    monkeypatch.setattr(vm.subprocess, "run", no_apt)
    kernel, busybox = vm._fetch(tmp_path)
    assert kernel.name == "vmlinuz-6.1.0-1-cloud-amd64" and busybox.read_bytes() == b"b"
