"""Section D's counts that this machine's descriptor limit cannot hold, in a
virtual machine that can: one proxy with 100,000 idle wss connections needs
as many descriptors, and where the hard RLIMIT_NOFILE is lower and the
bench lacks CAP_SYS_RESOURCE, no process here can have them. Inside a
guest the bench's script is root with every capability, and raises them.

The guest is Debian 12's cloud kernel and busybox (fetched with
`apt-get download` into a cache directory and unpacked there, not
installed), booted by qemu (KVM, else its emulation: ACCELERATORS) from an
initramfs holding the release binaries, the libraries they link, the
bench's test CA and server certificate, and a shell script (/init) that
measures what bench.py's _idle_memory does on the host: a fresh proxy per
count, one real exchange, VmRSS before, the connections opened by
`krb5-wss-loadgen idle` processes from their own ranges of loopback source
addresses, VmRSS 2 s after, and again 2 s after they close. The guest's
upstream is the canned responder (`krb5-wss-loadgen responder`), not a KDC.
It prints one line per figure on its serial console; the host reads them.
Loopback only: the guest has no network device.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

QEMU = "qemu-system-x86_64"
# Enough for 100,000 connections on both sides with room: the proxy's
# ≈ 1.3 GiB, the load generators' ≈ 1.6 GiB, the kernel's sockets.
GUEST_MIB = 8192
GUEST_CPUS = 2
# Connections per load generator process in the guest (one thread each).
PER_GENERATOR = 25_000


def unavailable() -> str | None:
    """Why no guest can run here, or None."""
    if not shutil.which(QEMU):
        return f"{QEMU} is not installed (Debian package qemu-system-x86)"
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        return "apt-get and dpkg-deb are needed to fetch the guest's kernel and busybox"
    return None


def _unpacked(cache: Path) -> tuple[Path | None, Path]:
    """The kernel (None if absent) and busybox paths under `cache`."""
    kernel = next(iter(sorted((cache / "root" / "boot").glob("vmlinuz-*"))), None)
    return kernel, cache / "root" / "bin" / "busybox"


def _fetch(cache: Path) -> tuple[Path, Path]:
    """The guest kernel and busybox, from Debian's packages, unpacked into
    `cache` once."""
    kernel, busybox = _unpacked(cache)
    if kernel and busybox.exists():
        return kernel, busybox
    cache.mkdir(parents=True, exist_ok=True)
    deps = subprocess.run(["apt-cache", "depends", "linux-image-cloud-amd64"],
                          capture_output=True, text=True, check=True).stdout
    image = next((w.split()[1] for w in deps.splitlines()
                  if w.strip().startswith("Depends: linux-image-")), None)
    if image is None:
        raise RuntimeError("apt-cache names no linux-image-*-cloud-amd64 for "
                           "linux-image-cloud-amd64")
    subprocess.run(["apt-get", "download", "-q", image, "busybox-static"], cwd=cache,
                   check=True, capture_output=True)
    for deb in cache.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / "root")], check=True)
        deb.unlink()
    kernel, busybox = _unpacked(cache)
    if kernel is None or not busybox.exists():
        raise RuntimeError(f"no kernel or busybox unpacked under {cache / 'root'}")
    return kernel, busybox


class Cpio:
    """An initramfs: the kernel's "newc" cpio format, gzipped."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes) -> None:
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0]
        self.ino += 1
        head = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.buf.write(head + name.encode() + b"\0")
        self.buf.write(b"\0" * (-(len(head) + len(name) + 1) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        name = name.strip("/")
        if not name or name in self.dirs:
            return
        self.dir(os.path.dirname(name))
        self.dirs.add(name)
        self._entry(name, 0o040755, b"")

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        name = name.strip("/")
        self.dir(os.path.dirname(name))
        self._entry(name, 0o120777, target.encode())

    def write(self, path: Path) -> None:
        self._entry("TRAILER!!!", 0, b"")
        path.write_bytes(gzip.compress(self.buf.getvalue(), compresslevel=1))


def _libraries(binary: Path) -> list[Path]:
    """The shared libraries `binary` loads, the dynamic loader among them."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                         check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
        if path.startswith("/"):
            libs.append(Path(path))
    return libs


GUEST_INIT = r"""#!/bin/sh
# Runs as the guest's /init (written by bench/vm.py): section D's idle
# connections, counts given by the host.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
ip link set lo up
echo 4194304 > /proc/sys/fs/nr_open
ulimit -n 1048576
echo "1024 65535" > /proc/sys/net/ipv4/ip_local_port_range
echo 4096 > /proc/sys/net/core/somaxconn
say() { echo "D-GUEST $*"; }
rss() { awk '/^VmRSS/ {print $2}' /proc/$1/status; }
now() { cut -d' ' -f1 /proc/uptime; }
# Waits up to $2 s for file $1 to hold a line matching $3.
await() {
    i=0
    while ! grep -q "$3" "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt $(($2 * 10)) ] && return 1; sleep 0.1
    done
}
say "nofile $(ulimit -n) cpus $(nproc) mem_kib $(awk '/MemTotal/ {print $2}' /proc/meminfo)"
/bin/krb5-wss-loadgen responder --listen 127.0.0.1:8800 --realm @REALM@ \
    --max-seconds 3600 > /tmp/responder.out 2>&1 &
await /tmp/responder.out 20 listening || say "error responder did not start"
port=8443
for n in @COUNTS@; do
    port=$((port + 1))
    /bin/krb5-wss-proxy --listen 127.0.0.1:$port --cert /pki/cert.pem --key /pki/key.pem \
        --realm @REALM@=127.0.0.1:8800 --max-connections $((n + 100)) \
        --max-connections-per-address $n --max-upstream-exchanges 64 \
        --idle-timeout 14400s > /tmp/proxy.$n.out 2> /tmp/proxy.$n.err &
    proxy=$!
    if ! await /tmp/proxy.$n.out 20 listening; then
        say "error proxy for $n did not start: $(tail -c 300 /tmp/proxy.$n.err)"; continue
    fi
    url=wss://localhost:$port/kdc
    /bin/krb5-wss-loadgen run --mode wss --target $url --clients 1 --seconds 0.3 \
        --warmup 0 --realm @REALM@ --principal loadgen --ca /pki/ca.pem > /dev/null 2>&1
    sleep 0.5
    base=$(rss $proxy)
    gens=$(( (n + @PER@ - 1) / @PER@ ))
    parallel=$((64 / gens)); [ $parallel -lt 16 ] && parallel=16
    t0=$(now)
    k=0; pids=""
    while [ $k -lt $gens ]; do
        share=$((n / gens)); [ $k -lt $((n % gens)) ] && share=$((share + 1))
        mkfifo /tmp/go.$k
        /bin/krb5-wss-loadgen idle --target $url --ca /pki/ca.pem --connections $share \
            --parallel $parallel --hold-seconds 3600 --sources 250 --source-first 127.100.$k.1 \
            < /tmp/go.$k > /tmp/idle.$n.$k 2> /tmp/idle.$n.$k.err &
        pids="$pids $!"
        eval "exec $((k + 4))> /tmp/go.$k"
        k=$((k + 1))
    done
    k=0
    while [ $k -lt $gens ]; do
        await /tmp/idle.$n.$k 10800 open || say "error generator $k for $n gave no line: \
$(tail -c 300 /tmp/idle.$n.$k.err)"
        k=$((k + 1))
    done
    t1=$(now)
    sleep 2
    loaded=$(rss $proxy)
    fds=$(ls /proc/$proxy/fd | wc -l)
    client=0
    for p in $pids; do client=$((client + $(rss $p))); done
    k=0
    while [ $k -lt $gens ]; do
        say "idle $n $(head -n1 /tmp/idle.$n.$k)"
        eval "echo >&$((k + 4)); exec $((k + 4))>&-"
        k=$((k + 1))
    done
    for p in $pids; do wait $p; done
    sleep 2
    after=$(rss $proxy)
    kill $proxy; wait $proxy
    rm -f /tmp/go.*
    say "mem $n gens=$gens t0=$t0 t1=$t1 base=$base loaded=$loaded after=$after fds=$fds client=$client"
done
say "done"
poweroff -f
"""


# Accelerators in the order tried: KVM where /dev/kvm boots a stock kernel
# (it need not: a host whose /dev/kvm is a paravirtual PVM boots only PVM
# guests, and this kernel then hangs before its first line), else qemu's own
# emulation (TCG), some 50 times slower but with the same programs, so the
# same memory. Each gets a deadline for the guest's first line.
ACCELERATORS = [("KVM", ["-enable-kvm", "-cpu", "host"], 60.0),
                ("TCG", ["-accel", "tcg,thread=multi", "-cpu", "max"], 300.0)]
# The whole run's deadline: boot, and at least this many connections opened
# a second (TCG opened 46 to 51 a second on a 2-core Xeon VM).
SLOWEST_RATE = 20


def _initrd(counts: list[int], realm: str, pki: dict, binaries: list[Path],
            busybox: Path, path: Path) -> None:
    cpio = Cpio()
    for mount_point in ("proc", "sys", "dev", "tmp"):
        cpio.dir(mount_point)
    cpio.file("bin/busybox", busybox.read_bytes(), 0o755)
    for applet in ("sh", "mount", "ip", "awk", "cut", "grep", "sleep", "mkfifo", "ls", "wc",
                   "head", "tail", "rm", "cat", "nproc", "poweroff", "kill"):
        cpio.symlink(f"bin/{applet}", "busybox")
    seen: set[Path] = set()
    for b in binaries:
        cpio.file(f"bin/{b.name}", b.read_bytes(), 0o755)
        for lib in _libraries(b):
            if lib not in seen:
                seen.add(lib)
                cpio.file(str(lib), lib.resolve().read_bytes(), 0o755)
    cpio.file("pki/ca.pem", Path(pki["ca"]).read_bytes())
    cpio.file("pki/cert.pem", Path(pki["cert"]).read_bytes())
    cpio.file("pki/key.pem", Path(pki["key"]).read_bytes(), 0o600)
    cpio.file("etc/hosts", b"127.0.0.1 localhost\n")
    cpio.file("etc/nsswitch.conf", b"hosts: files\n")
    script = (GUEST_INIT.replace("@REALM@", realm).replace("@PER@", str(PER_GENERATOR))
              .replace("@COUNTS@", " ".join(str(n) for n in counts)))
    cpio.file("init", script.encode(), 0o755)
    cpio.write(path)


def _run(cmd: list[str], console: Path, boot_deadline: float, deadline: float) -> str | None:
    """Runs qemu until it exits; None, or why it was stopped: no first line
    from the guest by `boot_deadline` s, or no end by `deadline` s."""
    console.unlink(missing_ok=True)
    start = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        booted = False
        while p.poll() is None:
            elapsed = time.monotonic() - start
            if not booted:
                booted = console.exists() and "D-GUEST nofile" in console.read_text(
                    errors="replace")
                if not booted and elapsed > boot_deadline:
                    return f"no line from the guest within {boot_deadline:.0f} s"
            if elapsed > deadline:
                return f"the guest did not finish within {deadline:.0f} s"
            time.sleep(0.5)
        if p.returncode != 0:
            err = p.stderr.read().decode(errors="replace").strip() if p.stderr else ""
            return f"qemu exited with {p.returncode}: {err[-300:]}"
        return None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        if p.stderr:
            p.stderr.close()


def _parse(said: list[str]) -> dict[int, dict]:
    """Per count, the arguments of bench.py's idle_figures that the guest's
    "idle" lines (one per load generator) and "mem" line give."""
    idle: dict[int, list[dict]] = {}
    res: dict[int, dict] = {}
    for s in said:
        word, _, rest = s.partition(" ")
        n_text, _, tail = rest.partition(" ")
        if word == "idle":
            idle.setdefault(int(n_text), []).append(json.loads(tail))
        elif word == "mem":
            n = int(n_text)
            f = dict(x.split("=", 1) for x in tail.split())
            res[n] = {"opened": idle.get(n, []), "seconds": float(f["t1"]) - float(f["t0"]),
                      "generators": int(f["gens"]), "fds": int(f["fds"]),
                      "base": int(f["base"]), "loaded": int(f["loaded"]),
                      "after": int(f["after"]), "client": int(f["client"])}
    return res


def idle_memory(counts: list[int], realm: str, pki: dict, binaries: list[Path], cache: Path,
                work: Path, log=print) -> tuple[dict[int, dict], str, str]:
    """Runs the guest for `counts`; returns {count: the arguments of
    bench.py's idle_figures}, the accelerator's name and what the guest
    said of itself."""
    kernel, busybox = _fetch(cache)
    work.mkdir(parents=True, exist_ok=True)
    initrd = work / "initrd.gz"
    _initrd(counts, realm, pki, binaries, busybox, initrd)
    console = work / "console.log"
    kvm_ok = os.access("/dev/kvm", os.R_OK | os.W_OK)
    why = []
    for name, accel, boot_deadline in ACCELERATORS:
        if name == "KVM" and not kvm_ok:
            why.append("KVM: /dev/kvm cannot be opened")
            continue
        cmd = [QEMU, *accel, "-smp", str(GUEST_CPUS), "-m", str(GUEST_MIB),
               "-kernel", str(kernel), "-initrd", str(initrd),
               "-append", "console=ttyS0 quiet panic=-1 random.trust_cpu=on",
               "-nodefaults", "-no-reboot", "-display", "none", "-serial", f"file:{console}"]
        deadline = boot_deadline + 60 + sum(counts) / SLOWEST_RATE
        log(f"D. in a guest ({name}, {GUEST_CPUS} vCPUs, {GUEST_MIB} MiB): "
            f"{', '.join(map(str, counts))} idle connections (deadline {deadline:.0f} s)")
        stopped = _run(cmd, console, boot_deadline, deadline)
        lines = console.read_text(errors="replace").splitlines() if console.exists() else []
        said = [ln.split(" ", 1)[1] for ln in lines if ln.startswith("D-GUEST ")]
        if stopped and not said:
            why.append(f"{name}: {stopped}")
            log(f"D. the guest under {name}: {stopped}")
            continue
        if stopped or not said or said[-1] != "done":
            raise RuntimeError(f"the guest ({name}) did not finish its run: "
                               f"{stopped or 'no last line'}; last console lines: {lines[-5:]!r}")
        errors = [s for s in said if s.startswith("error ")]
        if errors:
            raise RuntimeError(f"in the guest ({name}): {errors[0]}")
        guest = next((s for s in said if s.startswith("nofile ")), "")
        return _parse(said), name, guest
    raise RuntimeError("no guest booted: " + "; ".join(why))
