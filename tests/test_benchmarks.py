"""The benchmark scripts keep running (smoke test of their quick mode; no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run_quick(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_step_time_quick_mode_runs():
    out = _run_quick("step_time.py", "--optimizers", "adam,lion")
    assert "adam" in out and "lion" in out


def test_train_throughput_quick_mode_runs():
    out = _run_quick("train_throughput.py")
    assert "| mlp |" in out and "grid of K = 2" in out


def test_compile_time_quick_mode_runs():
    out = _run_quick("compile_time.py", "--optimizers", "adam")
    assert "adam" in out and "per leaf" in out


def test_search_throughput_quick_mode_runs():
    out = _run_quick("search_throughput.py")
    assert "one jit per candidate" in out and "vectorized, mapped" in out
    assert "candidates/hour" in out
