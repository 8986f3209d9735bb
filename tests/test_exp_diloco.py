"""Helpers of experiments/diloco.py against numpy references written from the formulas:
DiLoCo's Algorithm 1 (inner AdamW, Nesterov outer on Δ = θ − mean θ_r), FedAvg, data-parallel
AdamW, the bits per step, and the selection and checks."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optlab
from optlab import reproduce

reproduce.load("diloco")
dl = sys.modules["optlab_experiments.diloco"]

R, D, LR, WD = 3, 4, 0.05, 1e-4
RNG = np.random.default_rng(0)
A = RNG.normal(size=(R, D, D))
B = RNG.normal(size=(R, D))
THETA0 = RNG.normal(size=D)


def grad(r: int, theta: np.ndarray) -> np.ndarray:
    """∇ of replica r's loss ½‖A_r θ − b_r‖²."""
    return A[r].T @ (A[r] @ theta - B[r])


class AdamW:
    """numpy AdamW: m̂/(√v̂ + ε) + λθ, bias-corrected, step −η(...)."""

    def __init__(self, lr=LR, b1=0.9, b2=0.999, eps=1e-8, wd=WD):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, b1, b2, eps, wd
        self.m = self.v = 0.0
        self.t = 0

    def step(self, theta, g):
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * g
        self.v = self.b2 * self.v + (1 - self.b2) * g * g
        mh, vh = self.m / (1 - self.b1 ** self.t), self.v / (1 - self.b2 ** self.t)
        return theta - self.lr * (mh / (np.sqrt(vh) + self.eps) + self.wd * theta)


def local_reference(h: int, rounds: int, outer_lr: float, momentum: float,
                    nesterov: bool) -> np.ndarray:
    """Douillard et al. 2023, Algorithm 1: H inner AdamW steps per replica from θ (the inner
    state kept across rounds), Δ = θ − mean_r θ_r, outer SGD (Nesterov: m ← μm + Δ,
    θ ← θ − η(Δ + μm))."""
    theta, buf = THETA0.copy(), np.zeros(D)
    inner = [AdamW() for _ in range(R)]
    for _ in range(rounds):
        local = []
        for r in range(R):
            x = theta.copy()
            for _ in range(h):
                x = inner[r].step(x, grad(r, x))
            local.append(x)
        delta = theta - np.mean(local, axis=0)
        buf = momentum * buf + delta
        theta = theta - outer_lr * ((delta + momentum * buf) if nesterov else buf)
    return theta


def run_method(spec, steps: int) -> np.ndarray:
    """The experiment's method from ``spec(optlab.adamw(LR))``: each step every replica's
    gradient at its own params."""
    method = spec(optlab.adamw(LR, weight_decay=WD))
    state = method.init(jnp.asarray(THETA0, jnp.float32))
    a, b = jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32)
    for _ in range(steps):
        p = method.replica_params(state)
        g = jnp.einsum("rji,rj->ri", a, jnp.einsum("rij,rj->ri", a, p) - b)
        state = method.update(state, g, jax.random.key(0))
    return np.asarray(method.params(state))


@pytest.mark.parametrize("h", [1, 4])
def test_diloco_is_algorithm_1_with_nesterov_outer(h):
    """Sign convention pinned: Δ = θ − mean θ_r points uphill and the outer step subtracts
    it (lr 0.7, Nesterov momentum 0.9)."""
    got = run_method(dl.build(dl.Method("diloco", h), replicas=R), 3 * h)
    want = local_reference(h, 3, dl.OUTER_LR, dl.OUTER_MOMENTUM, nesterov=True)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_fedavg_is_the_replicas_mean():
    got = run_method(dl.build(dl.Method("fedavg", 3), replicas=R), 6)
    want = local_reference(3, 2, 1.0, 0.0, nesterov=False)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_data_parallel_is_adamw_on_the_mean_gradient():
    theta, opt = THETA0.copy(), AdamW()
    for _ in range(5):
        theta = opt.step(theta, np.mean([grad(r, theta) for r in range(R)], axis=0))
    got = run_method(dl.build(dl.Method("dp"), replicas=R), 5)
    np.testing.assert_allclose(got, theta, rtol=2e-4, atol=2e-5)


def test_bits_per_step_are_32_over_h():
    assert dl.bits_per_step(dl.Method("dp")) == 32.0
    assert dl.bits_per_step(dl.Method("diloco", 10)) == pytest.approx(3.2)
    assert dl.bits_per_step(dl.Method("fedavg", 50)) == pytest.approx(0.64)
    assert dl.Method("diloco", 50).key == "diloco_h50" and dl.Method("dp").key == "dp"


def test_at_epoch_picks_each_runs_epoch():
    h = RNG.normal(size=(5, 7))
    epoch = np.array([0, 6, 3, -1, 2])
    want = [h[i, e] if e >= 0 else np.nan for i, e in enumerate(epoch)]
    np.testing.assert_array_equal(dl.at_epoch(h, epoch), want)


def test_selected_takes_the_best_mean_validation_accuracy():
    run = {"val_accuracy": [[0.5, 0.6], [0.7, np.nan], [0.62, 0.64]],  # lr 1: a seed diverged
           "val_loss": [[1.0, 1.0], [0.5, 0.5], [0.9, 0.9]],
           "test_accuracy": [[0.1, 0.2], [0.3, 0.4], [0.55, 0.65]],
           "test_loss": [[2.0, 2.0], [1.0, 1.0], [1.5, 1.7]],
           "test_loss_curve": np.arange(12.0).reshape(3, 2, 2).tolist(),
           "diverged": [[False, False], [False, True], [False, False]]}
    s = dl.selected(run, (1e-3, 3e-3, 1e-2))
    assert s["lr"] == 1e-2 and s["test_accuracy"] == [0.55, 0.65] and s["diverged"] == 0
    np.testing.assert_allclose(s["curve"], [(8 + 10) / 2, (9 + 11) / 2])


def _decision(a, b, margin):
    """decide() from its definition: (mean a − mean b − margin) beyond 2 standard errors."""
    a, b = np.asarray(a), np.asarray(b)
    diff = a.mean() - b.mean()
    se = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return True if diff - 2 * se > margin else False if diff + 2 * se < margin else None


def test_claim_checks():
    base = np.array([0.60, 0.62, 0.61, 0.63, 0.59])
    sel = {"iid": {"dp": {"test_accuracy": base},
                   "diloco_h10": {"test_accuracy": base + 0.02},
                   "fedavg_h10": {"test_accuracy": base - 0.05}},
           "non-iid": {"diloco_h10": {"test_accuracy": base - 0.10}}}
    checks = dl.claim_checks(sel, (10,))
    assert checks == {
        "diloco_h10_matches_dp": _decision(base + 0.02, base, -0.01),
        "nesterov_beats_fedavg_h10": _decision(base + 0.02, base - 0.05, 0.0),
        "robust_to_non_iid_h10": _decision(base - 0.10, base + 0.02, -0.02)}
    assert checks == {"diloco_h10_matches_dp": True, "nesterov_beats_fedavg_h10": True,
                      "robust_to_non_iid_h10": False}
