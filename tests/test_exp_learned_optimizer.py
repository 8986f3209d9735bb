"""Helpers of experiments/learned_optimizer.py: metrics, learning-rate selection, decisions."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optlab import learned, reproduce

reproduce.load("learned_optimizer")
exp = sys.modules["optlab_experiments.learned_optimizer"]


def test_metrics():
    curves = np.full((2, exp.HORIZON + 51), 10.0)
    curves[1, 3] = np.nan  # a diverged step makes that task's score +inf
    curves[:, -1] = [100.0, 1000.0]
    np.testing.assert_allclose(exp.in_distribution(curves), [1.0, np.inf])
    np.testing.assert_allclose(exp.at_end(curves), [2.0, 3.0])
    assert exp.select([np.array([1.0, np.inf]), np.array([0.5, 0.7]),
                       np.array([0.1, 0.2])]) == 2
    assert exp.select([np.array([np.inf]), np.array([3.0])]) == 1


def test_grid_curves_match_one_optimizer_at_a_time():
    """The vmapped learning-rate grid gives each learning rate's own curves."""
    family = learned.quadratic_family(dim=4)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    grid = np.asarray(exp._grid_curves(family, "Adam", jnp.asarray([1e-2, 1e-1]), keys, 20))
    for i, lr in enumerate([1e-2, 1e-1]):
        one, _ = learned.evaluate(family, optax.adam(lr), keys, 20)
        np.testing.assert_allclose(grid[i], one, rtol=1e-5)


def _record(values: dict[str, float], parts=("in_distribution",)) -> dict:
    return {part: {"metric": {k: [v, v] for k, v in values.items()},
                   "lr": {k: 0.1 for k in exp.BASELINES}} for part in parts}


def test_decisions_over_seeds():
    per_seed = [_record({"LSTM": -1.0 - 0.01 * i, "Adam": 0.0 + 0.01 * i, "RMSprop": -1.0,
                         "SGD": "inf"}) for i in range(3)]
    assert exp.beats(per_seed, "in_distribution", "Adam") is True
    assert exp.beats(per_seed, "in_distribution", "RMSprop") is None  # within noise
    assert exp.beats(per_seed, "in_distribution", "SGD") is True  # SGD diverged
    np.testing.assert_allclose(exp.seed_means(per_seed, "in_distribution", "Adam"),
                               [0.0, 0.01, 0.02])


def test_relu_check_is_adam_beating_the_lstm():
    rows = [{**_record({"LSTM": 0.5 + 0.01 * i, "Adam": 0.1 - 0.01 * i, "RMSprop": 0.1,
                        "SGD": 0.1}, ("in_distribution", "relu"))} for i in range(3)]
    checks, table = exp.decide_all({"mnist1d": {"per_seed": rows}})
    assert checks["mnist1d relu: the LSTM fails (Adam better)"] is True
    assert checks["mnist1d: beats Adam"] is False
    assert len(table) == 2


def test_full_grid_has_the_first_runs_sgd_edge_inside():
    """SGD's tuned learning rate was the old grid's upper edge (1.0) on MNIST-1D: the full
    grid now extends beyond it; the quick mode keeps its 2 points."""
    lrs = exp.settings(quick=False)["lrs"]
    assert lrs[0] < 1.0 < lrs[-1] and list(lrs) == sorted(lrs)
    assert exp.settings(quick=True)["lrs"] == (1e-2, 1e-1)


def test_late_slopes():
    """Meta-loss slope over the second half, per 100 meta-steps."""
    falling = (2.0 - 0.001 * np.arange(200)).tolist()
    flat = (np.ones(200)).tolist()
    results = {"mnist1d": {"per_seed": [{"meta_loss": falling}, {"meta_loss": flat}]}}
    np.testing.assert_allclose(exp._late_slopes(results, "mnist1d"), [-0.1, 0.0], atol=1e-9)
