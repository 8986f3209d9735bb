"""The parallel methods against per-replica numpy simulations written from the papers' rules.

Replica r minimises its own quadratic f_r(θ) = ½‖A_r θ − b_r‖² (non-iid data), so every rule
that mixes replicas is visible in the trajectory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optlab
from optlab import parallel

R, D, STEPS = 3, 4, 13
RNG = np.random.default_rng(0)
A = RNG.normal(size=(R, 5, D))
B = RNG.normal(size=(R, 5))
THETA0 = RNG.normal(size=D)


def grad(r: int, theta: np.ndarray) -> np.ndarray:
    return A[r].T @ (A[r] @ theta - B[r])


def run(method: parallel.Parallel, steps: int = STEPS, seed: int = 0):
    """Trains with ``method``; returns the evaluated params after each step."""
    state = method.init(jnp.asarray(THETA0))
    grads_of = jax.vmap(lambda a, b, th: a.T @ (a @ th - b))
    update = jax.jit(method.update)
    out, key = [], jax.random.key(seed)
    for _ in range(steps):
        key, sub = jax.random.split(key)
        g = grads_of(jnp.asarray(A), jnp.asarray(B), method.replica_params(state))
        state = update(state, g, sub)
        out.append(np.asarray(method.params(state)))
    return out


def assert_path(got, want, rtol=1e-5):
    for t, (a, b) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6, err_msg=f"step {t}")


def test_data_parallel_is_sgd_on_the_mean_gradient():
    lr, theta, want = 0.02, THETA0.copy(), []
    for _ in range(STEPS):
        theta = theta - lr * np.mean([grad(r, theta) for r in range(R)], axis=0)
        want.append(theta)
    assert_path(run(parallel.data_parallel(optlab.sgd(lr), R)), want)


@pytest.mark.parametrize("beta,adversaries", [(0.0, 0), (0.9, 0), (0.9, 1)])
def test_majority_vote(beta, adversaries):
    lr, wd = 0.01, 0.1
    theta, m, want = THETA0.copy(), np.zeros((R, D)), []
    for _ in range(STEPS):
        g = np.stack([grad(r, theta) for r in range(R)])
        m = beta * m + (1 - beta) * g
        votes = np.sign(m)
        votes[:adversaries] *= -1
        theta = theta - lr * (np.sign(votes.sum(0)) + wd * theta)
        want.append(theta)
    got = run(parallel.majority_vote(optlab.sgdw(lr, momentum=None, weight_decay=wd), R,
                                     beta=beta, adversaries=adversaries))
    assert_path(got, want)


def _local_sgd_reference(lr, period, outer_lr, outer_momentum, nesterov):
    theta, local, mom, want = THETA0.copy(), np.tile(THETA0, (R, 1)), np.zeros(D), []
    for t in range(STEPS):
        local = np.stack([local[r] - lr * grad(r, local[r]) for r in range(R)])
        if (t + 1) % period == 0:
            delta = theta - local.mean(0)  # the pseudo-gradient points uphill
            mom = delta + outer_momentum * mom
            step = delta + outer_momentum * mom if nesterov else mom
            theta = theta - outer_lr * step
            local = np.tile(theta, (R, 1))
        want.append(theta)
    return want


def test_fedavg_averages_the_replicas_every_h_steps():
    want = _local_sgd_reference(0.02, 4, 1.0, 0.0, False)
    assert_path(run(parallel.fedavg(optlab.sgd(0.02), R, inner_steps=4)), want)


def test_diloco_outer_nesterov_on_the_pseudo_gradient():
    want = _local_sgd_reference(0.02, 3, 0.7, 0.9, True)
    assert_path(run(parallel.diloco(optlab.sgd(0.02), R, inner_steps=3)), want)


def test_pseudo_gradient_sign_outer_lr_one_lands_on_the_mean():
    """Pinned: Δ = θ − mean θ_r, so outer SGD with lr 1 moves θ *to* the replicas' mean (a
    flipped sign would move it away)."""
    m = parallel.local_sgd(optlab.sgd(0.05), optlab.sgd(1.0), R, inner_steps=2)
    state = m.init(jnp.asarray(THETA0))
    for _ in range(2):
        g = jnp.stack([grad(r, np.asarray(m.replica_params(state)[r])) for r in range(R)])
        before = np.asarray(state.replicas)
        state = m.update(state, g, jax.random.key(0))
    expected = np.mean(before - 0.05 * np.asarray(g), axis=0)
    np.testing.assert_allclose(np.asarray(m.params(state)), expected, rtol=1e-5)


@pytest.mark.parametrize("period", [1, 3])
def test_easgd_algorithm_1(period):
    lr, alpha = 0.02, 0.9 / R
    center, x, want = THETA0.copy(), np.tile(THETA0, (R, 1)), []
    for t in range(STEPS):
        g = np.stack([grad(r, x[r]) for r in range(R)])
        diff = alpha * (x - center) if t % period == 0 else np.zeros_like(x)
        x = x - lr * g - diff
        center = center + diff.sum(0)
        want.append(center)
    assert_path(run(parallel.easgd(optlab.sgd(lr), R, period=period)), want)


def test_eamsgd_algorithm_2():
    lr, alpha, delta, period = 0.02, 0.9 / R, 0.5, 2
    center, x, v, want = THETA0.copy(), np.tile(THETA0, (R, 1)), np.zeros((R, D)), []
    for t in range(STEPS):
        g = np.stack([grad(r, x[r] + delta * v[r]) for r in range(R)])
        v = delta * v - lr * g
        x = x + v
        if (t + 1) % period == 0:  # the elastic step comes before the next gradient's
            diff = alpha * (x - center)
            x, center = x - diff, center + diff.sum(0)
        want.append(center)
    assert_path(run(parallel.easgd(optlab.sgd(lr), R, period=period, momentum=delta)), want)


@pytest.mark.parametrize("server,local_lr", [("sgd", None), ("adagrad", None),
                                             ("adagrad", 0.01)])
def test_downpour_applies_pushes_as_they_arrive(server, local_lr):
    """With ``local`` the replicas also step on their own copies between fetches (Dean et
    al.'s Algorithm 7.1 client: parameters ← parameters − α·gradient)."""
    lr, n_fetch, n_push, offsets = 0.02, 2, 3, [0, 1, 2]
    tx = optlab.sgd(lr) if server == "sgd" else optlab.adagrad(lr)
    theta, copies, acc, v, want = THETA0.copy(), np.tile(THETA0, (R, 1)), np.zeros((R, D)), \
        np.full(D, 0.1), []
    for t in range(STEPS):
        g = np.stack([grad(r, copies[r]) for r in range(R)])
        acc = acc + g
        if local_lr is not None:
            copies = copies - local_lr * g
        for r in range(R):  # replica order (shuffle_arrivals=False)
            if (t + offsets[r] + 1) % n_push == 0:
                if server == "sgd":
                    theta = theta - lr * acc[r]
                else:
                    v = v + acc[r] ** 2
                    theta = theta - lr * acc[r] / np.sqrt(v + 1e-7)
                acc[r] = 0
        for r in range(R):
            if (t + offsets[r] + 1) % n_fetch == 0:
                copies[r] = theta
        want.append(theta)
    local = None if local_lr is None else optlab.sgd(local_lr)
    got = run(parallel.downpour(tx, R, n_fetch=n_fetch, n_push=n_push, offsets=offsets,
                                shuffle_arrivals=False, local=local))
    assert_path(got, want)


def test_downpour_random_arrivals_are_a_permutation_of_the_pushes():
    """With n_push = 1 every replica pushes every step: SGD on the server does not depend on
    the order (sums commute); Adagrad does, and follows the step's key."""
    sgd_a = run(parallel.downpour(optlab.sgd(0.02), R), seed=0)
    sgd_b = run(parallel.downpour(optlab.sgd(0.02), R, shuffle_arrivals=False), seed=0)
    assert_path(sgd_a, sgd_b)
    ada = [run(parallel.downpour(optlab.adagrad(0.1), R), seed=s)[-1] for s in (0, 1)]
    assert not np.allclose(ada[0], ada[1])


def _revision_reference(alpha, beta, delays, grads):
    gbar, z, zp = np.zeros(D), np.zeros(D), np.zeros(D)
    snapshots, updates = [], []
    for t, d in enumerate(delays):
        snapshots.append(gbar.copy())  # ḡ when the gradient of step t was read
        if t < d:
            updates.append(np.zeros(D))
            continue
        g, back = grads[t - d], gbar - snapshots[t - d]
        z = z + g * g + 2 * g * back
        eta_old = alpha / (beta + np.sqrt(zp))
        zp = np.maximum(zp, z)
        eta = alpha / (beta + np.sqrt(zp))
        updates.append(-eta * g + (eta_old - eta) * back)
        gbar = gbar + g
    return updates


@pytest.mark.parametrize("delay", [0, 2, [0, 3, 1, 2]])
def test_adaptive_revision(delay):
    grads = [RNG.normal(size=D) for _ in range(STEPS)]
    delays = [delay] * STEPS if isinstance(delay, int) else \
        [delay[t % len(delay)] for t in range(STEPS)]
    tx = parallel.adaptive_revision(0.3, delay, beta=0.5)
    state, got = tx.init(jnp.zeros(D)), []
    for g in grads:
        u, state = tx.update(jnp.asarray(g), state)
        got.append(np.asarray(u))
    assert_path(got, _revision_reference(0.3, 0.5, delays, grads))


def test_adaptive_revision_without_delay_is_adagrad():
    grads = [RNG.normal(size=D) for _ in range(5)]
    tx = parallel.adaptive_revision(0.3, 0, beta=0.5)
    state, acc = tx.init(jnp.zeros(D)), np.zeros(D)
    for g in grads:
        u, state = tx.update(jnp.asarray(g), state)
        acc += g * g
        np.testing.assert_allclose(np.asarray(u), -0.3 * g / (0.5 + np.sqrt(acc)), rtol=1e-5)


def test_bits_per_step():
    assert parallel.data_parallel(optlab.sgd(0.1), 4).bits_per_step == 32
    assert parallel.majority_vote(optlab.sgd(0.1), 4).bits_per_step == 8
    assert parallel.diloco(optlab.adamw(1e-3), 4, inner_steps=50).bits_per_step == 32 / 50
    assert parallel.easgd(optlab.sgd(0.1), 4, period=8).bits_per_step == 4
    assert parallel.downpour(optlab.adagrad(0.1), 4, n_fetch=4, n_push=2).bits_per_step == 24


@pytest.mark.parametrize("build,error,match", [
    (lambda: parallel.data_parallel(optlab.sgd(0.1), 0), ValueError,
     "replicas must be an int >= 1"),
    (lambda: parallel.majority_vote(optlab.sgd(0.1), 4, adversaries=4), ValueError,
     r"adversaries must be in \[0, replicas - 1 = 3\]"),
    (lambda: parallel.majority_vote(optlab.sgd(0.1), 4, beta=1.0), ValueError,
     r"beta must be in \[0, 1\)"),
    (lambda: parallel.diloco(optlab.sgd(0.1), 4, inner_steps=0), ValueError,
     "inner_steps must be an int >= 1"),
    (lambda: parallel.easgd(optlab.sgd(0.1), 4, period=0), ValueError,
     "period must be an int >= 1"),
    (lambda: parallel.easgd(optlab.sgd(0.1), 4, momentum=1.0), ValueError, "momentum"),
    (lambda: parallel.downpour(optlab.sgd(0.1), 2, offsets=[0]), ValueError,
     "offsets must be 2 ints"),
    (lambda: parallel.downpour(optlab.sgd(0.1), 2, n_push=0), ValueError, "n_push must be"),
    (lambda: parallel.adaptive_revision(0.0), ValueError, "learning_rate"),
])
def test_bad_arguments(build, error, match):
    with pytest.raises(error, match=match):
        build()
