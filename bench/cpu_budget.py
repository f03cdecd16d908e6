"""A fixed CPU budget for one process, from a cgroup of its own, so that one
proxy replica stands for a replica on its own small host (a container
with a CPU limit) while several share this machine's cores.

cgroup v2 (`cpu.max`) where the cpu controller is there, else cgroup v1
(`cpu.cfs_quota_us`). The group is made under the bench's own name and
removed when the budget is closed; nothing else on the machine changes.
"""

from __future__ import annotations

import os
from pathlib import Path

# Short periods: a throttled process waits at most one period.
PERIOD_US = 10_000


def _root() -> tuple[Path, str] | None:
    """The cgroup directory to make groups in, and the version."""
    unified = Path("/sys/fs/cgroup")
    if "cpu" in _read(unified / "cgroup.controllers").split() and \
            "cpu" in _read(unified / "cgroup.subtree_control").split():
        return unified, "v2"
    v1 = Path("/sys/fs/cgroup/cpu")
    if (v1 / "cpu.cfs_quota_us").exists():
        return v1, "v1"
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def unavailable() -> str | None:
    """Why budgets cannot be set here, or None when they can."""
    root = _root()
    if root is None:
        return "no cgroup cpu controller"
    if not os.access(root[0], os.W_OK):
        return f"{root[0]} is not writable"
    return None


class CpuBudget:
    """`cores` of CPU time (0.1 = a tenth of one core) for the processes
    added to it."""

    def __init__(self, name: str, cores: float, root: tuple[Path, str] | None = None):
        """`root`: the cgroup directory and its version ("v1", "v2"), found
        under /sys/fs/cgroup when not given."""
        root = root or _root()
        if root is None:
            raise OSError("no cgroup cpu controller")
        base, self.version = root
        self.path = base / f"krb5-wss-bench-{os.getpid()}-{name}"
        self.path.mkdir()
        quota = max(1000, int(cores * PERIOD_US))
        try:
            if self.version == "v2":
                (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}\n")
            else:
                (self.path / "cpu.cfs_period_us").write_text(f"{PERIOD_US}\n")
                (self.path / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        except OSError:
            self.path.rmdir()
            raise

    def add(self, pid: int) -> None:
        """Moves the process `pid`, all its threads, into the budget."""
        (self.path / "cgroup.procs").write_text(f"{pid}\n")

    def throttled_periods(self) -> int:
        """Periods in which the group used up its budget."""
        for line in _read(self.path / "cpu.stat").splitlines():
            key, _, value = line.partition(" ")
            if key in ("nr_throttled",):
                return int(value)
        return 0

    def close(self) -> None:
        """Removes the group; its processes must have ended (a v1 group with
        live tasks cannot be removed, so they are moved back first)."""
        parent = self.path.parent / "cgroup.procs"
        for pid in _read(self.path / "cgroup.procs").split():
            try:
                parent.write_text(f"{pid}\n")
            except OSError:
                pass
        try:
            self.path.rmdir()
        except OSError:
            pass
