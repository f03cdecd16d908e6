"""bench/cpu_budget.py and bench.py's steal share: the files a budget writes
(in a directory standing for the cgroup root; the real one is the bench's
alone) and the arithmetic on /proc/stat."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import bench  # noqa: E402
import cpu_budget  # noqa: E402


def test_a_v2_budget_writes_quota_and_period_and_is_removed(tmp_path):
    b = cpu_budget.CpuBudget("one", 0.1, root=(tmp_path, "v2"))
    assert (b.path / "cpu.max").read_text() == f"1000 {cpu_budget.PERIOD_US}\n"
    b.add(4242)
    assert (b.path / "cgroup.procs").read_text() == "4242\n"
    (b.path / "cpu.stat").write_text("usage_usec 9\nnr_periods 30\nnr_throttled 7\n")
    assert b.throttled_periods() == 7
    # A real group's files vanish with it; here they must be taken away first.
    for f in b.path.iterdir():
        f.unlink()
    b.close()
    assert not b.path.exists()


def test_a_v1_budget_writes_period_then_quota(tmp_path):
    b = cpu_budget.CpuBudget("two", 0.25, root=(tmp_path, "v1"))
    assert (b.path / "cpu.cfs_period_us").read_text() == f"{cpu_budget.PERIOD_US}\n"
    assert (b.path / "cpu.cfs_quota_us").read_text() == "2500\n"
    assert b.throttled_periods() == 0  # no cpu.stat yet


def test_a_budget_below_the_kernels_minimum_is_raised_to_it(tmp_path):
    b = cpu_budget.CpuBudget("tiny", 0.001, root=(tmp_path, "v2"))
    assert (b.path / "cpu.max").read_text().split()[0] == "1000"


def test_steal_share_is_steal_over_all_time():
    before = [100, 0, 50, 800, 0, 0, 10, 40, 30, 0]
    after = [200, 0, 100, 1500, 0, 0, 20, 140, 90, 0]
    # 100 + 50 + 700 + 10 + 100 = 960 ticks passed, 100 of them stolen;
    # guest time (field 9) is inside user and is not counted twice.
    assert bench.stolen_share(before, after) == 100 / 960
    assert bench.stolen_share(None, after) is None
    assert bench.stolen_share(before, before) is None
    assert bench.stolen_share([1, 2, 3], [4, 5, 6]) is None
