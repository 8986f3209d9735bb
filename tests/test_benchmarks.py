"""The benchmark scripts keep running (smoke test of their quick mode; no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_step_time_quick_mode_runs():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "step_time.py"), "--quick",
         "--optimizers", "adam,lion"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adam" in proc.stdout and "lion" in proc.stdout


def test_train_throughput_quick_mode_runs():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--quick"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| mlp |" in proc.stdout and "grid of K = 2" in proc.stdout


def test_compile_time_quick_mode_runs():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compile_time.py"), "--quick",
         "--optimizers", "adam"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "adam" in proc.stdout and "per leaf" in proc.stdout
