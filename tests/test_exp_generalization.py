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


def test_select_on_validation(ge):
    """Best mean validation accuracy; a diverged seed excludes the setting; ties by loss."""
    acc = np.asarray([[0.8, 0.9], [0.9, np.nan], [0.85, 0.85], [0.7, 0.7]])
    loss = np.asarray([[0.5, 0.4], [0.1, 0.1], [0.3, 0.3], [0.1, 0.1]])
    assert ge.select(acc, loss) == 2  # 0 and 2 tie at 0.85; 2 has the lower loss
    assert ge.select(acc[[0, 1, 3]], loss[[0, 1, 3]]) == 0
    assert ge.select(np.full((2, 2), np.nan), loss[:2]) == 0


def test_checks_are_decided_over_seeds(ge):
    """A 2-point gap with a 0.5-point spread is decided; a gap within the spread is not."""
    def method(test, loss, train=1.0):
        test = np.asarray(test)
        return {"test_accuracy": test, "train_loss": np.asarray(loss),
                "gap": train - test}

    per_task = {"best_adaptive": "Adam", "best_non_adaptive": "SGD", "methods": {
        "Adam": method([0.60, 0.605, 0.595], [0.01, 0.012, 0.011]),
        "SGD": method([0.62, 0.625, 0.615], [0.05, 0.052, 0.051])}}
    assert set(ge.task_checks("t", per_task).values()) == {True}
    per_task["methods"]["Adam"] = method([0.62, 0.60, 0.64], [0.2, 0.3, 0.25])
    checks = ge.task_checks("t", per_task)
    assert list(checks.values()) == [None, False, None]


def test_configurations(ge):
    """Quick mode is small; the accelerator configuration is the paper's task and length."""
    quick, full, acc = ge.config(quick=True), ge.config(), ge.config(accelerator=True)
    assert quick.train_size and len(quick.lr_index) < 9
    assert dict(full.tasks) == {"mnist1d": 60, "digits": 100} and len(full.lr_index) == 9
    assert dict(acc.tasks) == {"cifar10": 250} and acc.model == "wrn"
    assert acc.train_size is None and len(acc.lr_index) == 9
    assert ge.EXPERIMENT.accelerator and "CIFAR-10" in ge.EXPERIMENT.accelerator
