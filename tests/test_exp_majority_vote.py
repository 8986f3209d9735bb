"""Helpers of experiments/majority_vote.py against numpy references written from the
formulas: Signum with majority vote and blind adversaries (Bernstein et al. 2019,
Algorithm 1), averaging with adversaries sending −c·g, the expected mean, the checks."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optlab
from optlab import reproduce

reproduce.load("majority_vote")
mv = sys.modules["optlab_experiments.majority_vote"]

R, D, LR = 5, 6, 0.01
RNG = np.random.default_rng(1)
GRADS = RNG.normal(size=(4, R, D))  # 4 steps of every worker's gradient
THETA0 = RNG.normal(size=D)


def run_method(spec, tx) -> np.ndarray:
    """The experiment's method ``spec(tx)`` fed the fixed gradients; its params per step."""
    method = spec(tx)
    state = method.init(jnp.asarray(THETA0, jnp.float32))
    out = []
    for g in GRADS:
        state = method.update(state, jnp.asarray(g, jnp.float32), jax.random.key(0))
        out.append(np.asarray(method.params(state)))
    return np.asarray(out)


@pytest.mark.parametrize("key,adversaries", [("signum_vote", 0), ("signum_vote", 2),
                                             ("signsgd_vote", 1)])
def test_vote_with_blind_adversaries(key, adversaries):
    """m_r ← β m_r + (1−β) g_r; the first k workers send −sign(m_r);
    θ ← θ − η sign(Σ_r message_r)."""
    beta = mv.METHODS[key].beta
    theta, m, want = THETA0.copy(), np.zeros((R, D)), []
    flip = np.where(np.arange(R) < adversaries, -1.0, 1.0)[:, None]
    for g in GRADS:
        m = beta * m + (1 - beta) * g
        theta = theta - LR * np.sign(np.sum(flip * np.sign(m), axis=0))
        want.append(theta.copy())
    got = run_method(mv.build(key, adversaries, replicas=R), optlab.sgd(LR))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("adversaries,scale", [(0, 1.0), (2, 1.0), (1, 16.0)])
def test_averaging_with_adversaries_sending_minus_c_g(adversaries, scale):
    """Heavy-ball SGD on the mean of the messages, the first k being −c·g_r."""
    theta, buf, want = THETA0.copy(), np.zeros(D), []
    w = np.where(np.arange(R) < adversaries, -scale, 1.0)[:, None]
    for g in GRADS:
        buf = 0.9 * buf + np.mean(w * g, axis=0)
        theta = theta - LR * buf
        want.append(theta.copy())
    got = run_method(mv.build("sgdm", adversaries, scale, replicas=R),
                     mv.METHODS["sgdm"].optimizer(LR))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_scaled_mean_and_its_expectation():
    messages = {"w": jnp.asarray(GRADS[0], jnp.float32)}
    got = mv.scaled_mean(2, 3.0)(messages)["w"]
    np.testing.assert_allclose(got, (3 * GRADS[0][:2].sum(0) + GRADS[0][2:].sum(0)) / R,
                               rtol=1e-6)
    # identical gradients: the averaged message is (R − k − c·k)/R times the gradient
    g = np.ones((16, 3))
    for k, c in [(0, 1.0), (7, 1.0), (9, 1.0), (2, 16.0)]:
        method = mv.averaging(optlab.sgd(1.0), 16, k, c)
        state = method.init(jnp.zeros(3))
        step = np.asarray(method.params(method.update(state, jnp.asarray(g), None)))
        np.testing.assert_allclose(-step, mv.mean_scale(16, k, c) * np.ones(3), rtol=1e-6)
    assert mv.mean_scale(16, 7, 1.0) == pytest.approx(1 / 8)


def test_bits():
    assert mv.build("signum_vote")(optlab.sgd(0.1)).bits_per_step == 8.0
    assert mv.build("adam")(optlab.adam(0.1)).bits_per_step == 32.0
    assert mv.Condition("sgdm", 2, 16.0).name == "sgdm-k2x16"
    assert mv.Condition("sgdm", 0, 16.0).name == "sgdm-k0"


def test_graceful_threshold():
    np.testing.assert_allclose(mv.graceful_threshold([0.6, 0.7]), [0.35, 0.4])


def _decision(a, b, margin=0.0):
    """decide() from its definition: (mean a − mean b − margin) beyond 2 standard errors."""
    a, b = np.asarray(a), np.asarray(b)
    diff = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return True if diff - 2 * se > margin else False if diff + 2 * se < margin else None


def test_claim_checks():
    clean = np.array([0.60, 0.62, 0.61, 0.63, 0.59])
    acc = {"signum_vote-k0": clean, "sgdm-k0": clean - 0.01, "adam-k0": clean + 0.05,
           "signum_vote-k2": clean - 0.02, "signum_vote-k9": np.full(5, 0.1) + clean / 100,
           "sgdm-k2": clean - 0.01, "sgdm-k2x16": np.array([0.1, 0.1, 0.11, 0.09, 0.1])}
    sel = {k: {"test_accuracy": v} for k, v in acc.items()}
    cfg = mv.Config(epochs=1, grid=(), vote_ks=(2, 9), mean_ks=(2,), scaled_ks=(2,))
    checks = mv.claim_checks(sel, cfg)
    thr = 0.1 + 0.5 * (clean - 0.1)
    assert checks == {
        "vote_matches_sgdm": _decision(clean, clean - 0.01, -0.02),
        "vote_matches_adam": _decision(clean, clean + 0.05, -0.02),
        "vote_graceful_k2": _decision(clean - 0.02, thr),
        "vote_fails_above_half": _decision(thr, acc["signum_vote-k9"]),
        "averaging_fails_minus_g_k2": _decision(thr - 0.005, clean - 0.01),
        "averaging_fails_scaled_k2": _decision(thr - 0.005, acc["sgdm-k2x16"])}
    assert checks["vote_matches_sgdm"] is True and checks["vote_matches_adam"] is False
    assert checks["vote_graceful_k2"] is True and checks["averaging_fails_scaled_k2"] is True
    assert checks["averaging_fails_minus_g_k2"] is False


def test_diverged_runs_count_as_chance():
    np.testing.assert_array_equal(mv.diverged_as_chance([0.5, np.nan, None]),
                                  [0.5, mv.CHANCE, mv.CHANCE])
    assert mv.finite_pm([np.nan, np.nan]) == "— (all diverged)"
    assert mv.finite_pm([0.5, 0.7]) == reproduce.fmt_pm([0.5, 0.7], 100)
