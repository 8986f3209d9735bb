"""The schedules of experiments/lr_decay.py agree with optlab.schedules (TF semantics)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from optlab import reproduce, schedules


@pytest.fixture(scope="module")
def ld():
    reproduce.load("lr_decay")
    return sys.modules["optlab_experiments.lr_decay"]


@pytest.mark.parametrize("factor", [0.1, 0.01])
def test_multipliers_match_optlab_schedules(ld, factor):
    total, per_epoch = 1120, 28
    steps = np.arange(total + 1)
    kind = ld.SCHEDULES.index

    def mult(name):
        return np.asarray(ld.multiplier(kind(name), factor, steps, total, per_epoch))

    decay_steps = round(total / ld.STAIRS)
    rate = factor ** (decay_steps / total)
    np.testing.assert_allclose(mult("constant"), 1.0)
    np.testing.assert_allclose(
        mult("exp_smooth"), schedules.exponential_decay(1.0, decay_steps, rate)(steps), rtol=2e-5)
    np.testing.assert_allclose(
        mult("exp_staircase"),
        schedules.exponential_decay(1.0, decay_steps, rate, staircase=True)(steps), rtol=2e-5)
    k = (1 / factor - 1) * per_epoch / total
    np.testing.assert_allclose(
        mult("inverse_time"), schedules.inverse_time_decay(1.0, k, per_epoch)(steps), rtol=2e-5)
    # every decay ends at the final factor f after T updates; the staircase 4 drops short
    for name in ("exp_smooth", "inverse_time", "inverse_sqrt"):
        assert mult(name)[-1] == pytest.approx(factor, rel=1e-4), name
    assert mult("exp_staircase")[-2] == pytest.approx(factor ** (1 - 1 / ld.STAIRS), rel=1e-4)
    assert np.all(np.diff(mult("inverse_sqrt")) < 0)


def test_same_budget_for_every_schedule(ld):
    for quick in (True, False):
        configs = ld.configurations(quick)
        counts = {k: sum(c[0] == k for c in configs) for k in ld.SCHEDULES}
        assert len(set(counts.values())) == 1, counts
        lrs = {k: [c[1] for c in configs if c[0] == k] for k in ld.SCHEDULES}
        # the same range of initial learning rates for all
        assert len({(min(v), max(v)) for v in lrs.values()}) == 1


def test_last_multiplier_of_the_staircase(ld):
    """The last update is t = T − 1: the staircase has dropped STAIRS − 1 times (f^(4/5)),
    the smooth forms are within a step of f (the table's s(T−1) column)."""
    total, per_epoch, f = 1120, 28, 0.1
    last = {k: float(ld.multiplier(ld.SCHEDULES.index(k), f, total - 1, total, per_epoch))
            for k in ld.SCHEDULES}
    assert last["exp_staircase"] == pytest.approx(f ** (4 / 5), rel=1e-5)
    assert last["exp_smooth"] == pytest.approx(f ** ((total - 1) / total), rel=1e-5)
    assert last["constant"] == 1.0


def test_selection_policy(ld):
    val = np.array([[0.9, 0.9, 0.9], [0.99, 0.99, 0.95]])
    loss = np.ones((2, 3))
    assert ld.select(val, loss) == 1
    assert ld.select(ld.masked(val, [[0, 0, 0], [0, 0, 1]]), loss) == 0  # diverged: excluded
    assert ld.select([[0.5] * 3, [0.5] * 3], [[1.0] * 3, [0.9] * 3]) == 1  # tie: lower loss
