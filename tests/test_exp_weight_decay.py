"""Helpers of experiments/weight_decay.py: the paper's decoupled step, the separability
measures."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab import reproduce


@pytest.fixture(scope="module")
def wd():
    reproduce.load("weight_decay")
    return sys.modules["optlab_experiments.weight_decay"]


def _steps(tx, params, grads):
    state = tx.init(params)
    out = []
    for g in grads:
        u, state = tx.update(g, state, params)
        params = jax.tree.map(lambda p, d: p + d, params, u)
        out.append(params)
    return out


@pytest.mark.parametrize("method", [1, 3])  # AdamW, SGDW
def test_decoupled_step_is_the_papers(wd, method):
    """θ ← θ − η_t(α d_t + λ θ): the decay is multiplied by the schedule only, not by α."""
    log_lr = ((-2.0,),) * 4
    log_wd = ((-1.0,),) * 4
    tx = wd.decay_methods(method, 0, 0, total_steps=10, log_lr=log_lr, log_wd=log_wd)
    no_decay = wd.decay_methods(method, 0, 0, total_steps=10, log_lr=log_lr,
                                log_wd=((-30.0,),) * 4)
    p = {"w": jnp.asarray([1.0, -2.0, 3.0])}
    g = {"w": jnp.asarray([0.5, 0.5, -0.5])}
    (with_decay,) = _steps(tx, p, [g])
    (plain,) = _steps(no_decay, p, [g])
    # first step, cosine factor 1: the difference is exactly λ θ₀ with λ = 0.1
    np.testing.assert_allclose(plain["w"] - with_decay["w"], 0.1 * p["w"], rtol=1e-5)


def test_coupled_l2_goes_through_the_optimizer(wd):
    """Adam + L2: λθ is added to the gradient, so Adam normalises it (first step: sign)."""
    log_lr = ((-2.0,),) * 4
    tx = wd.decay_methods(0, 0, 0, total_steps=10, log_lr=log_lr, log_wd=((0.0,),) * 4)
    p = {"w": jnp.asarray([1.0, -2.0])}
    g = {"w": jnp.asarray([0.0, 0.0])}
    (after,) = _steps(tx, p, [g])
    np.testing.assert_allclose(after["w"], p["w"] - 0.01 * np.sign(p["w"]), rtol=1e-5)


def test_best_log_wd_parabola(wd):
    log_wd = (-4.0, -3.0, -2.0, -1.0)
    x = np.asarray(log_wd)
    err = np.stack([(x - (-2.7)) ** 2, (x - (-1.0)) ** 2 + 1, (x + 4.5) ** 2], axis=1)
    best = wd.best_log_wd(err, log_wd)
    np.testing.assert_allclose(best[0], -2.7, atol=1e-9)   # exact for a parabola
    assert best[1] == -1.0 and best[2] == -4.0             # minimum at the grid's edge


def test_separability_measures(wd):
    lr = np.arange(5.0)
    assert wd.slope_and_r(lr, np.full(5, -3.0)) == (pytest.approx(0.0, abs=1e-9), 0.0)
    slope, r = wd.slope_and_r(lr, -lr)
    assert slope == pytest.approx(-1.0) and r == pytest.approx(-1.0)
    rows, cols = np.meshgrid(np.arange(5.0), np.arange(5.0), indexing="ij")
    additive = np.exp(0.1 * (rows - 2) ** 2 + 0.2 * (cols - 1) ** 2)
    assert wd.interaction_share(additive) == pytest.approx(0.0, abs=1e-12)
    diagonal = np.exp(0.3 * (rows - cols) ** 2)
    assert wd.interaction_share(diagonal) > 0.3
