"""Helpers of experiments/generalization.py: each run gets exactly its own optimizer and the
common decay scheme."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optlab
from optlab import reproduce


@pytest.fixture(scope="module")
def ge():
    reproduce.load("generalization")
    return sys.modules["optlab_experiments.generalization"]


def _trajectory(tx, params, grads):
    state = tx.init(params)
    out = []
    for g in grads:
        u, state = jax.jit(tx.update)(g, state, params)
        params = jax.tree.map(lambda p, d: p + d, params, u)
        out.append(params["w"])
    return np.stack(out)


@pytest.mark.parametrize("k", range(4))
def test_each_method_is_its_optimizer(ge, k):
    """The switch runs exactly SGD / momentum / Adam / RMSprop (bit for bit)."""
    log2 = tuple((-3, -2) for _ in ge.METHODS)
    tx = ge.optimizers(k, 1, total_steps=1000, log2_lr=log2)
    lr = 2.0 ** -2
    ref = (optlab.sgd(lr), optlab.sgd(lr, momentum=0.9), optlab.adam(lr),
           optlab.rmsprop(lr))[k]
    rng = np.random.default_rng(0)
    p = {"w": jnp.asarray(rng.normal(size=5), jnp.float32)}
    grads = [{"w": jnp.asarray(rng.normal(size=5), jnp.float32)} for _ in range(4)]
    np.testing.assert_allclose(_trajectory(tx, p, grads), _trajectory(ref, p, grads),
                               rtol=1e-6, atol=1e-7)


def test_decay_scheme(ge):
    """× 0.1 from 50 % and × 0.01 from 75 % of the steps, for every method."""
    log2 = tuple((0,) for _ in ge.METHODS)
    tx = ge.optimizers(0, 0, total_steps=8, log2_lr=log2)  # plain SGD, lr 1
    p = {"w": jnp.zeros(1)}
    state = tx.init(p)
    steps = []
    for _ in range(8):
        u, state = tx.update({"w": jnp.ones(1)}, state, p)
        steps.append(float(-u["w"][0]))
    np.testing.assert_allclose(steps, [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)
