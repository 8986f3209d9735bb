"""Helpers of experiments/gradient_noise.py: the seeded noisy SGD and the random-walk estimate."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optlab
from optlab import reproduce

reproduce.load("gradient_noise")
gn = sys.modules["optlab_experiments.gradient_noise"]


def _params(init: str, seed: int):
    model = gn.DeepMLP(6, 3, rngs=nnx.Rngs(seed), depth=3, width=4, init=init)
    return nnx.split(model, nnx.Param, ...)[1]


def _updates(tx, params, steps=3):
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    out = []
    for _ in range(steps):
        u, state = tx.update(grads, state, params)
        out.append(u)
    return out


def test_zero_noise_is_plain_sgd():
    params = _params("simple", 0)
    noisy = _updates(gn.noisy_sgd(0.1, 0.0, clip=None), params)
    plain = _updates(optlab.sgd(0.1), params)
    for a, b in zip(noisy, plain, strict=True):
        assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))


def test_noise_key_differs_per_seed_even_from_zero_init():
    p0, p1 = _params("zero", 0), _params("zero", 1)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(p0["layers"]))
    u0 = _updates(gn.noisy_sgd(0.1, 0.01, clip=10.0), p0)[0]
    u1 = _updates(gn.noisy_sgd(0.1, 0.01, clip=10.0), p1)[0]
    u0b = _updates(gn.noisy_sgd(0.1, 0.01, clip=10.0), _params("zero", 0))[0]
    k = lambda u: np.asarray(u["layers"][0]["kernel"])  # noqa: E731
    assert not np.allclose(k(u0), k(u1))
    np.testing.assert_array_equal(k(u0), k(u0b))  # same seed, same noise


def test_noise_variance_and_clipping():
    """σ_0 = √η at the first step; clipping comes before the noise."""
    params = {"w": jnp.zeros((200_000,)), "noise_tag": jnp.float32(0.5)}
    tx = gn.noisy_sgd(1.0, 0.01, clip=None)
    u, _ = tx.update({"w": jnp.zeros((200_000,)), "noise_tag": jnp.float32(0)},
                     tx.init(params), params)
    assert abs(float(jnp.std(u["w"])) - 0.1) < 0.002
    clipped = gn.noisy_sgd(1.0, 0.0, clip=1.0)
    g = {"w": jnp.full((4,), 10.0), "noise_tag": jnp.float32(0)}
    u, _ = clipped.update(g, clipped.init(params | {"w": jnp.zeros(4)}), params)
    assert abs(float(optax.tree.norm(u)) - 1.0) < 1e-5


def test_steps_to_unit_gain():
    # Σ_{t<T} (1+t)^−γ ≥ 2/(width·lr²·η), checked against the exact sums
    for lr in (0.1, 0.3):
        T = gn.steps_to_unit_gain(lr, horizon=10**6)
        target = 2.0 / 50 / (lr**2 * 0.01)
        s = np.cumsum((1.0 + np.arange(T)) ** -0.55)
        assert s[-1] >= target > s[-2]
    assert gn.steps_to_unit_gain(0.01, horizon=10**5) is None
