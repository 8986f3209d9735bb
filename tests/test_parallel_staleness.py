"""stale_gradients: a depth-τ gradient queue, checked against per-step numpy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optlab
from optlab.parallel import async_worker_delays, stale_gradients

PARAMS = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(()), "empty": {}}


def _grads(steps: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"w": rng.normal(size=(2, 3)), "b": rng.normal(), "empty": {}}
            for _ in range(steps)]


def _released(tx, grads):
    state, out = tx.init(PARAMS), []
    update = jax.jit(tx.update)
    for g in grads:
        g = jax.tree.map(jnp.asarray, g)
        u, state = update(g, state)
        out.append(jax.tree.map(np.asarray, u))
    return out


def _reference(grads, delays):
    """g_{t - d_t}, zero while t < d_t."""
    zero = jax.tree.map(np.zeros_like, grads[0])
    return [grads[t - d] if t >= d else zero for t, d in enumerate(delays)]


def _assert_trees(got, want):
    for a, b in zip(got, want, strict=True):
        jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), a, b)


@pytest.mark.parametrize("tau", [1, 3])
def test_fixed_delay_releases_each_gradient_tau_steps_late(tau):
    grads = _grads(12)
    _assert_trees(_released(stale_gradients(tau), grads), _reference(grads, [tau] * 12))


def test_delay_zero_is_the_identity_without_state():
    tx = stale_gradients(0)
    grads = _grads(3)
    _assert_trees(_released(tx, grads), grads)
    assert jax.tree.leaves(tx.init(PARAMS)) == []


def test_schedule_is_read_cyclically():
    delays = [0, 2, 1, 3, 0]
    grads = _grads(13)
    want = _reference(grads, [delays[t % 5] for t in range(13)])
    _assert_trees(_released(stale_gradients(delays), grads), want)


def test_drawn_delay_follows_its_key():
    def draw(key):
        return jax.random.randint(key, (), 0, 6)  # 0..5, clipped to max_delay 4

    grads = _grads(15)
    key, delays = jax.random.PRNGKey(3), []
    for _ in range(15):
        key, sample = jax.random.split(key)
        delays.append(min(int(draw(sample)), 4))
    got = _released(stale_gradients(draw, max_delay=4, key=3), grads)
    _assert_trees(got, _reference(grads, delays))


def test_async_sgd_on_a_quadratic_matches_a_numpy_simulation():
    """θ ← θ − η ∇f(θ_{t−τ}) with f = ½‖Aθ − b‖²: the queue in front of SGD is async SGD."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 3)), rng.normal(size=4)
    tau, lr = 2, 0.05
    tx = optlab.chain(stale_gradients(tau), optlab.sgd(lr))
    theta, state = jnp.zeros(3), tx.init(jnp.zeros(3))
    ref, history = np.zeros(3), []
    for t in range(30):
        g = jax.grad(lambda th: 0.5 * jnp.sum((a @ th - b) ** 2))(theta)
        u, state = tx.update(g, state, theta)
        theta = optax.apply_updates(theta, u)
        history.append(a.T @ (a @ ref - b))
        if t >= tau:
            ref = ref - lr * history[t - tau]
        np.testing.assert_allclose(theta, ref, rtol=1e-5, atol=1e-6)


def test_state_type_is_stable_and_shares_the_chain_counter():
    tx = optlab.chain(stale_gradients(2), optlab.adam(0.1))
    s0 = tx.init(PARAMS)
    _, s1 = jax.jit(tx.update)(PARAMS, s0, PARAMS)
    assert jax.tree.map(jax.typeof, s0) == jax.tree.map(jax.typeof, s1)
    assert len(optax.tree.get_all_with_path(s0, "count")) == 1


def test_equal_workers_give_a_fixed_delay_after_the_warm_up():
    d = async_worker_delays([1.0, 1.0, 1.0, 1.0], 20)
    np.testing.assert_array_equal(d[:3], [1, 2, 3])  # t < d_t: nothing released yet
    np.testing.assert_array_equal(d[3:], 3)


def test_each_gradient_is_applied_once_with_unequal_workers():
    d = async_worker_delays([1.0, 2.5, 4.0], 200, jitter=0.3, seed=1)
    read = np.arange(200) - d
    applied = read[2:]  # after the warm-up
    assert len(set(applied.tolist())) == len(applied)
    assert np.all(applied >= 0) and np.all(d[2:] >= 0)
    # the fast worker's gradients are fresh (delay 0: it read after the previous step), the
    # slow worker's several steps old
    assert d[2:].min() == 0 and d[2:].max() >= 4


@pytest.mark.parametrize("kwargs,error,match", [
    ({"delay": -1}, ValueError, "delay must be >= 0"),
    ({"delay": [1, -2]}, ValueError, "delay must be >= 0"),
    ({"delay": []}, ValueError, "non-empty"),
    ({"delay": 1.5}, ValueError, "delay must be an int"),
    ({"delay": True}, TypeError, "got bool"),
    ({"delay": lambda k: 1}, ValueError, "needs max_delay"),
    ({"delay": lambda k: 1, "max_delay": -1}, ValueError, "max_delay must be an int >= 0"),
    ({"delay": 2, "max_delay": 3}, ValueError, "max_delay is only for a drawn delay"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        stale_gradients(**kwargs)


@pytest.mark.parametrize("args,kwargs,match", [
    (([], 5), {}, "durations must be"),
    (([1.0, 0.0], 5), {}, "durations must be"),
    (([1.0], 0), {}, "steps must be an int >= 1"),
    (([1.0], 5), {"jitter": 1.0}, r"jitter must be in \[0, 1\)"),
])
def test_async_worker_delays_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        async_worker_delays(*args, **kwargs)
