"""benchmarks/kfac_cost.py keeps running (smoke test of its quick mode; no timing asserted)."""

from __future__ import annotations

from tests.test_benchmarks import _run_quick


def test_kfac_cost_quick_mode_runs():
    """A row for the MLP with the A/A column and the amortised costs for k = 1, 10, 100;
    K-FAC amortised over k = 1 is its refresh step."""
    out = _run_quick("kfac_cost.py")
    assert "A/A" in out and "amortised k=100" in out
    rows = [line for line in out.splitlines() if line.startswith("| MNIST-1D MLP")]
    assert len(rows) == 1, out
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert len(cells) == 9
    refresh, k1 = float(cells[5]), float(cells[6])
    assert abs(refresh - k1) < 0.051, cells
    assert all(float(c) > 0 for c in cells[3:]), cells
