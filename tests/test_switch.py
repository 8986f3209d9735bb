"""optlab.one_of: several optimizers in one compiled program, chosen by a traced index."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optlab
from tests.conftest import make_params


def _trajectory(tx, params, steps=5):
    state = tx.init(params)
    for i in range(steps):
        grads = jax.tree.map(lambda p, i=i: jnp.sin(p + i), params)
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
    return params


def test_each_index_follows_its_optimizer_also_vmapped():
    params = make_params(2)
    options = [optlab.sgd(0.1, momentum=0.9), optlab.adam(0.01), optlab.lion(1e-3)]
    expected = [_trajectory(t, params) for t in options]
    for i, want in enumerate(expected):
        got = jax.jit(lambda i: _trajectory(optlab.one_of(i, options), params))(i)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), got, want)
    batched = jax.vmap(lambda i: _trajectory(optlab.one_of(i, options), params))(
        jnp.arange(3))
    for i, want in enumerate(expected):
        jax.tree.map(lambda a, b, i=i: np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6),
                     batched, want)


def test_extra_arguments_reach_the_optimizers_that_read_them():
    params = {"w": jnp.array([1.0, -2.0])}
    tx = optlab.one_of(1, [optlab.sgd(0.1), optlab.polyak_sgd(max_learning_rate=1.0)])
    state = tx.init(params)
    updates, _ = tx.update(params, state, params, value=2.5)
    want, _ = optlab.polyak_sgd(max_learning_rate=1.0).update(
        params, optlab.polyak_sgd(max_learning_rate=1.0).init(params), params, value=2.5)
    np.testing.assert_allclose(updates["w"], want["w"], rtol=1e-6)


def test_needs_a_transform():
    with pytest.raises(ValueError, match="at least one"):
        optlab.one_of(0, [])


def test_train_evaluates_each_member_where_that_member_is_evaluated():
    """In a train grid over one_of([sgd, schedule_free_sgd, adam]), validation metrics of each
    member are those of the member trained alone: Schedule-Free's at its averaged iterate x,
    the others at their params (not at another member's x)."""
    from optlab.schedule_free import schedule_free_sgd
    from optlab.train import train
    from tests.train_script import MLP, blobs

    members = [lambda: optlab.sgd(0.1), lambda: schedule_free_sgd(0.5), lambda: optlab.adam(0.01)]
    data = blobs(n=200)

    def switched(member):
        return optlab.one_of(jnp.asarray(member, jnp.int32), [m() for m in members])

    grid = train(data, MLP, switched, hyperparams={"member": [0, 1, 2]}, epochs=2,
                 batch_size=40, progress=False)
    for i, make in enumerate(members):
        alone = train(data, MLP, make(), epochs=2, batch_size=40, progress=False)
        for key in ("train_loss", "val_loss", "val_accuracy"):
            np.testing.assert_allclose(grid.history[key][i], alone.history[key][0],
                                       rtol=1e-5, err_msg=f"member {i}, {key}")
