"""Helpers of experiments/lipschitz_lr.py: the learning-rate log around LipschitzLR."""

from __future__ import annotations

import sys

import jax.numpy as jnp
import numpy as np

import optlab
from optlab import reproduce
from optlab.lipschitz import lipschitz_constant

reproduce.load("lipschitz_lr")
lip = sys.modules["optlab_experiments.lipschitz_lr"]


def _steps(tx, n=5):
    params = {"w": jnp.ones((3, 4))}
    state = tx.init(params)
    rng = np.random.default_rng(0)
    outs = []
    for _ in range(n):
        g = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
        a = jnp.asarray(rng.normal(size=(8, 6)), jnp.float32)
        u, state = tx.update(g, state, params, activations=a)
        outs.append((u, a))
    return outs, state


def test_logged_matches_optlab_lipschitz_sgd_and_records_the_rates():
    for momentum, ref_momentum in ((0.0, None), (0.9, 0.9)):
        logged, state = _steps(lip.lipschitz_logged(10, momentum, activation_norm="max_example",
                                                    steps_per_epoch=2, epochs=3))
        ref, _ = _steps(optlab.lipschitz_sgd(10, momentum=ref_momentum))
        for (u, _a), (r, _) in zip(logged, ref, strict=True):
            np.testing.assert_allclose(u["w"], r["w"], rtol=1e-6)
        rates = [1.0 / float(lipschitz_constant(a, num_classes=10)) for _, a in logged]
        # 5 steps, 2 per epoch: epochs 0, 0, 1, 1, 2 (the last epoch also takes overflow)
        np.testing.assert_allclose(state.lr_sum, [rates[0] + rates[1], rates[2] + rates[3],
                                                  rates[4]], rtol=1e-5)
        np.testing.assert_allclose(state.lr_max[0], max(rates[:2]), rtol=1e-5)
        np.testing.assert_allclose(state.lr_min[1], min(rates[2:4]), rtol=1e-5)


def test_frobenius_form():
    """One step of plain LipschitzLR with the authors' K_z: u = −g/K, K = (k−1)/(k·m)·‖A‖_F."""
    [(u, a)], state = _steps(lip.lipschitz_logged(10, 0.0, activation_norm="frobenius",
                                                  steps_per_epoch=1, epochs=1), n=1)
    g = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    K = 0.9 / 8 * float(jnp.linalg.norm(a))
    np.testing.assert_allclose(u["w"], -g / K, rtol=1e-5)
    np.testing.assert_allclose(state.lr_sum, [1 / K], rtol=1e-5)


def test_epochs_to():
    assert lip.epochs_to(np.array([0.1, 0.5, 0.9, 0.95]), 0.9) == 3.0
    assert np.isnan(lip.epochs_to(np.array([0.1, np.nan]), 0.9))
    assert lip.mean_epochs([2.0, float("nan")], 10) == 6.5
