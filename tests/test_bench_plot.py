"""bench/bench.py's plot of section L (B against round-trip time): drawn
from a results.json's numbers, as `bench.py --plot` does. Skipped where
matplotlib is not installed (bench/run installs it into the .venv)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytest.importorskip("matplotlib")

PATHS = ["udp", "tcp", "wss", "relay", "kkdcp", "kkdcp-wss"]


def results(paths: list[str]) -> dict:
    return {"L": {str(rtt): {p: {"A_s": 0.3 + rtt / 50, "B_s": 0.05 + rtt / 20 * (1 + i)}
                             for i, p in enumerate(paths)} for rtt in (0, 20, 80)}}


def plot(tmp_path, data: dict):
    src = tmp_path / "results.json"
    src.write_text(json.dumps(data))
    png = tmp_path / "out.png"
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--plot", str(src),
                        str(png)], capture_output=True, text=True, timeout=120)
    return p, png


def test_plot_of_every_path_is_a_png(tmp_path):
    p, png = plot(tmp_path, results(PATHS))
    assert p.returncode == 0, p.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000, "an empty figure"


def test_a_path_missing_at_some_round_trip_time_is_left_out(tmp_path):
    data = results(PATHS)
    del data["L"]["80"]["kkdcp"]
    p, png = plot(tmp_path, data)
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_results_without_section_l_fail_with_a_message(tmp_path):
    p, png = plot(tmp_path, {"A": {}})
    assert p.returncode == 1
    assert "has no section L" in p.stderr and "results.json" in p.stderr
    assert "Traceback" not in p.stderr
    assert not png.exists()


def test_unreadable_results_fail_with_a_message(tmp_path):
    src = tmp_path / "results.json"
    src.write_text("{not json")
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "bench.py"), "--plot", str(src),
                        str(tmp_path / "out.png")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert str(src) in p.stderr and "Traceback" not in p.stderr
