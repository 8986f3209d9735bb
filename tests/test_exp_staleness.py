"""Helpers of experiments/staleness.py against numpy references written from the formulas."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab import reproduce

reproduce.load("staleness")
st = sys.modules["optlab_experiments.staleness"]

RNG = np.random.default_rng(0)


def _grad(theta: np.ndarray) -> np.ndarray:
    """∇ of ½‖A θ − b‖², the reference problem."""
    return A.T @ (A @ theta - B)


A, B = RNG.normal(size=(6, 3)), RNG.normal(size=6)


def _stale_reference(kind: int, lr: float, tau: int, steps: int) -> list[np.ndarray]:
    """SGD / heavy-ball momentum 0.9 / Adagrad (v₀ = 0.1, ε = 1e-7 under the root) applying
    at step t the gradient computed at step t − τ (nothing before)."""
    theta, m, v, grads, out = np.ones(3), np.zeros(3), np.full(3, 0.1), [], []
    for t in range(steps):
        grads.append(_grad(theta))
        g = grads[t - tau] if t >= tau else np.zeros(3)
        if kind == 0:
            u = -lr * g
        elif kind == 1:
            m = 0.9 * m + g
            u = -lr * m
        else:
            v = v + g * g
            u = -lr * g / np.sqrt(v + 1e-7)
        theta = theta + u
        out.append(theta.copy())
    return out


@pytest.mark.parametrize("kind", [0, 1, 2])
@pytest.mark.parametrize("tau", [0, 3])
def test_async_optimizer_is_the_stale_optimizer(kind, tau):
    log_lr = -1.5
    tx = st.async_optimizer(jnp.asarray([kind, log_lr, tau], jnp.float32), max_delay=4)
    theta, update = jnp.ones(3), jax.jit(tx.update)
    state, got = tx.init(theta), []
    for _ in range(9):
        u, state = update(jnp.asarray(_grad(np.asarray(theta)), jnp.float32), state, theta)
        theta = theta + u
        got.append(np.asarray(theta))
    want = _stale_reference(kind, 10 ** log_lr, tau, 9)
    np.testing.assert_allclose(np.stack(got), np.stack(want), rtol=2e-5, atol=1e-6)


def test_capped_relative_degradation_and_score():
    loss = np.array([[0.5, 0.6, np.nan, 20.0, 1.0],
                     [0.4, 0.4, 0.8, 0.2, np.inf]])
    taus = (0, 1, 4, 8, 32)
    capped = np.array([[0.5, 0.6, 10.0, 10.0, 1.0], [0.4, 0.4, 0.8, 0.2, 10.0]])
    np.testing.assert_array_equal(st.capped(loss), capped)
    d = st.relative_degradation(capped)
    np.testing.assert_allclose(d[0], [0.0, 0.2, 19.0, 19.0, 1.0])
    np.testing.assert_allclose(d[1], [0.0, 0.0, 1.0, -0.5, 24.0])
    np.testing.assert_allclose(st.robustness_score(loss, taus), [(19 + 19 + 1) / 3,
                                                                (1.0 - 0.5 + 24.0) / 3])


def test_sparse_data_structure_and_determinism():
    idx, y, w = st.sparse_logistic_data(3, 500, d=50, k=5)
    idx2, y2, _ = st.sparse_logistic_data(3, 500, d=50, k=5)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_array_equal(y, y2)
    assert idx.shape == (500, 5) and np.all(idx[:, 0] == 0)
    assert idx[:, 1:].min() >= 1 and idx.max() < 50
    counts = np.bincount(idx[:, 1:].ravel(), minlength=50)
    assert counts[1] > counts[25] > 0  # Zipf: p_1 / p_25 = 25
    s = st.splits(4, 100, 50)
    assert s["val_idx"].shape == (50, st.ACTIVE) and s["w_star"].shape == (st.FEATURES,)
    # the held-out sets share w*: with a large w*, labels follow the sign of the logit
    vi, vy, _ = st.sparse_logistic_data(9, 2000, d=50, k=5, w_star=w * 50)
    logit = (w * 50)[vi].sum(1)
    assert np.mean((logit > 0) == (vy > 0.5)) > 0.95


def _dense(idx: np.ndarray, d: int) -> np.ndarray:
    x = np.zeros((len(idx), d))
    for i, row in enumerate(idx):
        np.add.at(x[i], row, 1.0)
    return x


def test_log_loss_and_gradient():
    idx = np.array([[0, 2, 2], [0, 1, 4]], np.int32)
    y = np.array([1.0, 0.0], np.float32)
    w = RNG.normal(size=5)
    x = _dense(idx, 5)
    z = x @ w
    want = np.mean(np.log1p(np.exp(z)) - y * z)
    np.testing.assert_allclose(float(st.log_loss(jnp.asarray(w), idx, y)), want, rtol=1e-5)
    g = st.logistic_grad(jnp.asarray(w, jnp.float32), jnp.asarray(idx[0]), jnp.asarray(y[0]))
    np.testing.assert_allclose(np.asarray(g), (1 / (1 + np.exp(-z[0])) - y[0]) * x[0],
                               rtol=1e-5)


def _async_adagrad_reference(alpha, tau, grads):
    """η = α/(β + √Σ g²) over the gradients applied so far, each applied τ steps late."""
    v, out = np.zeros_like(grads[0]), []
    for t in range(len(grads)):
        g = grads[t - tau] if t >= tau else np.zeros_like(grads[0])
        v = v + g * g
        out.append(-alpha * g / (st.BETA + np.sqrt(v)))
    return out


@pytest.mark.parametrize("tau", [0, 2])
def test_revision_baseline_and_equality_without_delay(tau):
    grads = [RNG.normal(size=4) * (RNG.random(4) < 0.5) for _ in range(8)]
    outs = {}
    for name in st.REVISION:
        tx = st.revision_optimizer(name, 0.3, tau)
        state, got = tx.init(jnp.zeros(4)), []
        for g in grads:
            u, state = tx.update(jnp.asarray(g, jnp.float32), state, jnp.zeros(4))
            got.append(np.asarray(u))
        outs[name] = np.stack(got)
    np.testing.assert_allclose(outs["async Adagrad"],
                               np.stack(_async_adagrad_reference(0.3, tau, grads)),
                               rtol=1e-5, atol=1e-7)
    if tau == 0:
        np.testing.assert_allclose(outs["AdaptiveRevision"], outs["async Adagrad"], rtol=1e-5,
                                   atol=1e-7)
    else:  # the revision acts once gradients are late
        assert not np.allclose(outs["AdaptiveRevision"], outs["async Adagrad"])


def test_online_losses_is_one_pass_of_async_adagrad():
    """The jitted pass (vmapped over α and seeds) against a numpy loop, dense features."""
    d, tau, log_alpha = 12, 2, 0.0
    idx, y, w_star = st.sparse_logistic_data(0, 40, d=d, k=3)
    vi, vy, _ = st.sparse_logistic_data(1, 30, d=d, k=3, w_star=w_star)
    data = {"idx": idx, "y": y, "val_idx": vi, "val_y": vy, "test_idx": vi, "test_y": vy,
            "w_star": w_star.astype(np.float32)}
    stacked = {k: jnp.asarray(v)[None] for k, v in data.items()}
    val, test = st.online_losses("async Adagrad", tau, jnp.asarray([log_alpha]), stacked)
    x, w, grads = _dense(idx, d), np.zeros(d), []
    v = np.zeros(d)
    for t in range(len(y)):
        z = x[t] @ w
        grads.append((1 / (1 + np.exp(-z)) - y[t]) * x[t])
        g = grads[t - tau] if t >= tau else np.zeros(d)
        v = v + g * g
        w = w - g / (st.BETA + np.sqrt(v))
    zv = _dense(vi, d) @ w
    want = np.mean(np.log1p(np.exp(zv)) - vy * zv)
    np.testing.assert_allclose(float(val[0, 0]), want, rtol=1e-4)
    np.testing.assert_allclose(float(test[0, 0]), want, rtol=1e-4)
