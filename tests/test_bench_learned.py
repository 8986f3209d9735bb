"""benchmarks/learned_cost.py keeps running (smoke test of its quick mode; no timing asserted)."""

from __future__ import annotations

from tests.test_benchmarks import _run_quick


def _rows(out: str, prefix: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in out.splitlines() if line.startswith(f"| {prefix}")]


def test_learned_cost_quick_mode_runs():
    """All three parts print their rows; the state bytes per parameter are the formulas':
    Adam 2 × 4, the LSTM 2 layers × (h, c) × 20 units × 4, the MLP (3 momenta + v) × 4."""
    out = _run_quick("learned_cost.py")
    (update,) = _rows(out, "10,240 params")
    assert update[4:7] == ["8", "320", "16"], update
    assert all(float(c.split()[0]) > 0 for c in update[1:4]), update
    (train,) = _rows(out, "MNIST-1D MLP")
    assert float(train[4]) > 0, train
    meta = _rows(out, "quadratic")
    assert [r[0] for r in meta] == ["quadratic, lstm, bptt"], meta
    assert float(meta[0][1].split()[0]) > 0 and float(meta[0][4].replace(",", "")) > 0, meta
