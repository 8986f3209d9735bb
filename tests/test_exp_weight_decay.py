"""Helpers of experiments/weight_decay.py: the paper's decoupled step, the separability
measures."""

from __future__ import annotations

import dataclasses
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
    best, interior = wd.best_log_wd(err, log_wd)
    np.testing.assert_allclose(best[0], -2.7, atol=1e-9)   # exact for a parabola
    assert best[1] == -1.0 and best[2] == -4.0             # minimum at the grid's edge
    assert interior.tolist() == [True, False, False]


def test_valley_slope_uses_interior_columns_only(wd):
    """A diagonal valley running off the grid: the censored columns are left out, and with
    fewer than three interior columns there is no slope."""
    log_lr = np.arange(5.0)
    log_wd = np.arange(-6.0, 1.0)  # 7 values
    centre = -0.2 - log_lr  # the valley: log λ* = -0.2 - log α, above the grid at α = 0
    err = (log_wd[:, None] - centre[None, :]) ** 2
    slope, r, k = wd.valley_slope(err, log_lr, log_wd)
    assert k == 4 and slope == pytest.approx(-1.0) and r == pytest.approx(-1.0)
    flat = (log_wd[:, None] - np.asarray([0.0, 0.0, -3.0, -6.0, -6.0])[None, :]) ** 2
    assert wd.valley_slope(flat, log_lr, log_wd) == (None, None, 1)


def test_checks_compare_per_seed_slopes(wd):
    def method(slopes, err):
        return {"slope_per_seed": slopes, "selected_test_error": err}

    s = {"Adam + L2": method([-1.0, -0.9, -1.1], [0.35, 0.36, 0.34]),
         "AdamW": method([0.05, -0.1, 0.0], [0.30, 0.31, 0.29]),
         "SGD + L2": method([-0.3, 0.2, None], [0.3, 0.3, 0.31]),
         "SGDW": method([0.1, -0.2, 0.3], [0.3, 0.32, 0.3])}
    checks = wd.arch_checks("a", s)
    assert list(checks.values()) == [True, None, True]
    s["SGD + L2"]["slope_per_seed"] = [None, None, -1.0]  # one seed with a slope: undecided
    assert wd.arch_checks("a", s)["a: SGDW more separable than SGD + L2"] is None


def test_configurations(wd):
    quick, full, acc = wd.config(quick=True), wd.config(), wd.config(accelerator=True)
    assert quick.train_size and quick.archs == ("mlp",)
    assert full.archs == ("mlp_bn", "mlp") and full.epochs == 30
    assert (len(full.lr_index), len(full.wd_index)) == (5, 7)
    assert acc.dataset == "cifar10" and acc.archs == ("wrn",) and acc.epochs == 100
    assert acc.grids()[0] == full.grids()[0]
    # the same normalized weight decay: λ / √(b / (B T)) equal in both configurations
    ratio = wd.normalization(wd.CIFAR_TRAIN, 100) / wd.normalization(wd.MNIST1D_TRAIN, 30)
    for f in (0, 1):
        np.testing.assert_allclose(10 ** np.asarray(acc.grids()[1][f]),
                                   10 ** np.asarray(full.grids()[1][f]) * ratio, rtol=1e-2)
    assert "CIFAR-10" in wd.EXPERIMENT.accelerator


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


def test_analyse_selects_the_validation_best_cell(wd):
    """The val-selected cell is found in the (λ, α, seed) maps, ties broken by the loss."""
    cfg = wd.config()
    log_lr, log_wd = cfg.grids()
    rng = np.random.default_rng(0)
    shape = (len(cfg.wd_index), len(cfg.lr_index), 3)
    maps = {}
    for m in wd.METHODS:
        val = np.full(shape, 0.5)
        val[2, 3], val[4, 1] = 0.2, 0.2  # a tie ...
        loss = np.ones(shape)
        loss[4, 1] = 0.5                 # ... won by (λ index 4, α index 1)
        maps[m] = {"test_error": rng.uniform(0.3, 0.4, shape), "val_error": val,
                   "val_loss": loss, "train_error": np.zeros(shape)}
    stats = wd.analyse(dataclasses.replace(cfg, archs=("mlp",)), {"mlp": maps}, 3)
    for m in wd.METHODS:
        f = wd.FAMILY[m]
        assert stats["mlp"][m]["selected"] == {"log_lr": log_lr[f][1], "log_wd": log_wd[f][4]}
        np.testing.assert_array_equal(stats["mlp"][m]["selected_test_error"],
                                      maps[m]["test_error"][4, 1])
