"""The benchmark scripts keep running (smoke test of their quick mode; no timing asserted)."""

from __future__ import annotations

import importlib
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


def _benchmark(name: str):
    """The module benchmarks/NAME.py (the scripts import each other by plain name)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.pop(0)


def test_step_time_quick_mode_runs():
    # with an optimizer that reads extra arguments and one without an optax counterpart
    # (timed against a reference); the matrix optimizers' and lbfgs's slow compiles are left
    # to the full runs
    out = _run_quick("step_time.py", "--optimizers", "adam,polyak_sgd,powersign")
    for name in ("adam", "polyak_sgd", "powersign"):
        assert f"| {name} |" in out, name


def test_state_bytes_at_most_optax_for_every_optimizer():
    """The zoo's state bytes per parameter (eval_shape at 1M params) are at most optax's for
    every optimizer optax also has."""
    step_time = _benchmark("step_time")
    compared = 0
    for name in step_time.OPTIMIZERS:
        ours, theirs = step_time.zoo_state_bytes(name)
        if theirs is not None:
            assert ours <= theirs, (name, ours, theirs)
            compared += 1
    assert compared >= 45


def test_train_throughput_quick_mode_runs():
    out = _run_quick("train_throughput.py")
    assert "| mlp |" in out and "grid of K = 2" in out


def test_compile_time_quick_mode_runs():
    """Rows for each optimizer with the A/A noise floor and a verdict; optlab's Adam compiles
    to no more optimized HLO than optax's."""
    out = _run_quick("compile_time.py", "--optimizers", "adam,momo")
    assert "per leaf" in out and "A/A optax/optax" in out
    rows = {line.split()[0]: line for line in out.splitlines()
            if line.split() and line.split()[0] in ("adam", "momo")}
    assert set(rows) == {"adam", "momo"}, out
    assert all(rows[k].split()[4] in ("ok", "MISS", "undecided") for k in rows), rows
    hlo_optlab, hlo_optax = (int(x) for x in rows["adam"].split()[-3::2])
    assert hlo_optlab <= hlo_optax, rows["adam"]


def test_compile_time_verdict_reads_the_interval():
    """ok when the whole 95 % interval is at or below the target, MISS when it is above,
    undecided when it straddles it."""
    compile_time = _benchmark("compile_time")
    assert compile_time.verdict(0.90, 1.05) == "ok"
    assert compile_time.verdict(1.06, 1.30) == "MISS"
    assert compile_time.verdict(0.98, 1.10) == "undecided"
    assert compile_time.verdict(1.00, 1.20, target=1.25) == "ok"


def test_search_throughput_quick_mode_runs():
    out = _run_quick("search_throughput.py")
    assert "one jit per candidate" in out and "vectorized, mapped" in out
    assert "candidates/hour" in out


def test_parallel_comm_quick_mode_runs():
    """On 2 simulated devices the replica means are all-reduces; the vote's is int8."""
    out = _run_quick("parallel_comm.py", "--devices", "2")
    rows = {line.split("|")[1].strip(): line for line in out.splitlines()
            if line.startswith("| ") and "all-reduce" in line}
    assert set(rows) == {"data_parallel", "majority_vote"}, out
    size = lambda name: int(rows[name].split("all-reduce")[1].split("|")[0].replace(",", ""))  # noqa: E731
    assert size("data_parallel") == 4 * size("majority_vote")
