"""Helpers of experiments/easgd.py against numpy references written from the update rules."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optlab
from optlab import parallel, reproduce

reproduce.load("easgd")
ea = sys.modules["optlab_experiments.easgd"]

RNG = np.random.default_rng(0)


def _easgd_step(x: np.ndarray, center: float, a: float, beta: float) -> tuple[np.ndarray, float]:
    """Algorithm 1 of Zhang et al. on h x²/2 (ηh = a, α = β/p), all from the old values."""
    alpha = beta / len(x)
    return x - a * x - alpha * (x - center), center + alpha * np.sum(x - center)


@pytest.mark.parametrize("p", [1, 3])
def test_matrix_is_one_step_of_the_update(p):
    a, beta = 0.7, 0.9
    s = RNG.normal(size=p + 1)
    x, c = _easgd_step(s[:p], s[p], a, beta)
    np.testing.assert_allclose(ea.easgd_matrix(a, beta, p) @ s, np.append(x, c))


def test_spectral_radius_of_the_difference_mode():
    """p ≥ 2: the modes x_i − x_j have eigenvalue 1 − a − α, so ρ ≥ |1 − a − α|."""
    a, beta, p = 1.95, 0.8, 2
    assert ea.spectral_radius(a, beta, p) >= abs(1 - a - beta / p) - 1e-12
    np.testing.assert_allclose(ea.spectral_radius(0.0, 0.0, 4), 1.0)  # no step: identity


@pytest.mark.parametrize("p", [1, 2, 8])
def test_closed_form_matches_eigenvalues_at_random_points(p):
    a, beta = RNG.uniform(0, 4.5, 3000), RNG.uniform(0, 1, 3000)
    rho = np.array([ea.spectral_radius(x, b, p) for x, b in zip(a, beta, strict=True)])
    keep = np.abs(rho - 1) > 1e-6
    np.testing.assert_array_equal(ea.stable_closed_form(a, beta, p)[keep], (rho < 1)[keep])


def test_simulated_growth_is_the_matrix_power():
    """optlab's easgd run N steps from s0 grows by ‖M^N s0‖ / ‖s0‖."""
    p, steps = 3, 40
    s0 = RNG.normal(size=p + 1)
    a, beta = np.array([0.3, 1.9, 2.2]), np.array([0.9, 0.5, 0.1])
    got = ea.simulated_growth(jnp.asarray(a, jnp.float32), jnp.asarray(beta, jnp.float32),
                              jnp.asarray(s0, jnp.float32), p, steps)
    want = [np.log(np.linalg.norm(np.linalg.matrix_power(ea.easgd_matrix(x, b, p), steps) @ s0)
                   / np.linalg.norm(s0)) for x, b in zip(a, beta, strict=True)]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-3, atol=1e-3)


def test_agreement_counts_outside_the_band():
    rho = np.array([0.5, 0.995, 1.2, 1.5])
    stable = np.array([True, False, True, False])
    assert ea.agreement(rho, stable, band=0.01) == (3, 1)


def test_downpour_with_local_steps_is_zhangs_algorithm():
    """DOWNPOUR (Zhang et al. 2015, after Dean et al.): local SGD steps x ← x − η g, v ← v − η g;
    every τ steps (replica r at steps t with (t + o_r + 1) mod τ = 0, after its step) the
    master adds v and the replica fetches the master's x̃. Replicas minimise their own
    quadratics ½‖A_r x − b_r‖²."""
    R, D, tau, lr, steps, offsets = 3, 4, 3, 0.05, 14, [0, 1, 2]
    A, B = RNG.normal(size=(R, 5, D)), RNG.normal(size=(R, 5))
    theta0 = RNG.normal(size=D)
    center, x, v = theta0.copy(), np.tile(theta0, (R, 1)), np.zeros((R, D))
    want = []
    for t in range(steps):
        for r in range(R):
            g = A[r].T @ (A[r] @ x[r] - B[r])
            x[r], v[r] = x[r] - lr * g, v[r] - lr * g
        for r in range(R):
            if (t + offsets[r] + 1) % tau == 0:
                center = center + v[r]
                v[r] = 0
        for r in range(R):
            if (t + offsets[r] + 1) % tau == 0:
                x[r] = center
        want.append(center.copy())
    tx = optlab.sgd(lr)
    method = parallel.downpour(tx, R, n_fetch=tau, n_push=tau, offsets=offsets,
                               shuffle_arrivals=False, local=tx)
    state = method.init(jnp.asarray(theta0, jnp.float32))
    grads_of = jax.vmap(lambda a, b, th: a.T @ (a @ th - b))
    update = jax.jit(method.update)
    for t in range(steps):
        g = grads_of(jnp.asarray(A, jnp.float32), jnp.asarray(B, jnp.float32),
                     method.replica_params(state))
        state = update(state, g, jax.random.key(t))
        np.testing.assert_allclose(np.asarray(method.params(state)), want[t], rtol=2e-4,
                                   atol=2e-5, err_msg=f"step {t}")


def test_methods_communicate_equally_often():
    """Both exchange parameters every τ steps (EASGD's bits count one direction)."""
    e = ea.easgd_method(optlab.sgd(0.1), period=4)
    d = ea.downpour_method(optlab.sgd(0.1), period=4)
    assert e.replicas == d.replicas == ea.REPLICAS
    assert e.bits_per_step == 32 / 4 and d.bits_per_step == 2 * 32 / 4
