"""Helpers of experiments/lipschitz_lr.py: the LipschitzLR forms, the selection policy, the
one-program configuration table and the convergence measure."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np

import optlab
from optlab import reproduce
from optlab.accumulators import ema
from optlab.combiners import select
from optlab.lipschitz import lipschitz_constant, scale_by_lipschitz

reproduce.load("lipschitz_lr")
lip = sys.modules["optlab_experiments.lipschitz_lr"]
VARIANT = {v: i for i, v in enumerate(lip.VARIANTS)}


def _steps(tx, n=5):
    params = {"w": jnp.ones((3, 4))}
    state = tx.init(params)
    rng = np.random.default_rng(0)
    outs = []
    for _ in range(n):
        g = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
        a = jnp.asarray(rng.normal(size=(8, 6)), jnp.float32)
        u, state = tx.update(g, state, params, activations=a)
        outs.append((u, a))
    return outs, state


def _find(state):
    is_log = lambda s: isinstance(s, lip.LoggedLipschitz)  # noqa: E731
    return next(s for s in jax.tree.leaves(state, is_leaf=is_log) if is_log(s))


def test_per_step_forms_match_the_library():
    """"optlab" is optlab.lipschitz_sgd step for step; "per_step" is the same chain with the
    authors' Frobenius K_z; both log the rate 1/K of every step per epoch."""
    for momentum, ref_momentum in ((0.0, None), (0.9, 0.9)):
        for variant, norm in (("optlab", "max_example"), ("per_step", "frobenius")):
            tx = lip.lipschitz_variant(10, momentum, VARIANT[variant], steps_per_epoch=2,
                                       epochs=3)
            logged, state = _steps(tx)
            ref_tx = (optlab.lipschitz_sgd(10, momentum=ref_momentum) if norm == "max_example"
                      else optlab.chain(*([] if ref_momentum is None else [
                          ema("mu", ref_momentum), select("mu")]),
                          scale_by_lipschitz(num_classes=10, activation_norm=norm)))
            ref, _ = _steps(ref_tx)
            for (u, _a), (r, _) in zip(logged, ref, strict=True):
                np.testing.assert_allclose(u["w"], r["w"], rtol=1e-5)
            rates = [1 / float(lipschitz_constant(a, num_classes=10, activation_norm=norm))
                     for _, a in logged]
            s = _find(state)
            # 5 steps, 2 per epoch: epochs 0, 0, 1, 1, 2
            np.testing.assert_allclose(s.lr_sum, [rates[0] + rates[1], rates[2] + rates[3],
                                                  rates[4]], rtol=1e-5)
            np.testing.assert_allclose(s.lr_max[0], max(rates[:2]), rtol=1e-5)
            np.testing.assert_allclose(s.lr_min[1], min(rates[2:4]), rtol=1e-5)


def test_per_epoch_form_uses_the_previous_epochs_largest_k():
    """The authors' form: u = −g/K with K = (k−1)/(k·m)·‖A‖_F, fixed in each epoch at the
    largest K of the previous epoch (in the first epoch, the largest so far)."""
    tx = lip.lipschitz_variant(10, 0.0, VARIANT["authors"], steps_per_epoch=2, epochs=3)
    outs, state = _steps(tx, n=6)
    K = [0.9 / 8 * float(jnp.linalg.norm(a)) for _, a in outs]
    used = [K[0], max(K[:2]), max(K[:2]), max(K[:2]), max(K[2:4]), max(K[2:4])]
    g = np.random.default_rng(0)
    for (u, _), k in zip(outs, used, strict=True):
        grad = g.normal(size=(3, 4)).astype(np.float32)
        g.normal(size=(8, 6))  # the activations drawn in between
        np.testing.assert_allclose(u["w"], -grad / k, rtol=1e-5)
    np.testing.assert_allclose(_find(state).lr_sum, [1 / used[0] + 1 / used[1],
                                                     2 / used[2], 2 / used[4]], rtol=1e-5)


def test_one_program_table():
    configs = lip.configurations((0.1, 0.3), (1e-3,))
    assert sum(c[0] == "sgd" for c in configs) == 4 and sum(c[0] == "adam" for c in configs) == 1
    assert [c[3] for c in configs if c[0] == "lipschitz"] == [v for v in lip.VARIANTS
                                                            for _ in range(2)]
    table = np.array([[lip.KINDS.index(k), lr, m, VARIANT[v] if v else 0]
                      for k, lr, m, v in configs], np.float32)
    params = {"w": jnp.ones((3, 4))}
    g = {"w": jnp.full((3, 4), 2.0)}
    a = jnp.ones((8, 6))
    for i, (kind, lr, _, _) in enumerate(configs[:5]):
        tx = lip.method(i, table=table, num_classes=10, steps_per_epoch=2, epochs=2)
        u, _ = tx.update(g, tx.init(params), params, activations=a)
        expected = -lr * 2.0 if kind == "sgd" else -lr  # Adam's first step is −lr·sign(g)
        np.testing.assert_allclose(u["w"], expected, rtol=1e-4)


def test_selection_policy():
    val = np.array([[0.9, 0.9, 0.9], [0.99, 0.99, 0.95], [0.9, 0.9, 0.9]])
    loss = np.array([[0.5] * 3, [0.1] * 3, [0.4] * 3])
    assert lip.select(val, loss) == 1
    # a learning rate at which a seed diverged cannot be selected, whatever its frozen run kept
    assert lip.select(lip.masked(val, [[0, 0, 0], [0, 0, 1], [0, 0, 0]]), loss) == 2
    # ties (within TIE) go to the lower validation loss
    assert lip.select(val[[0, 2]], loss[[0, 2]]) == 1


def test_epochs_to():
    assert lip.epochs_to(np.array([0.1, 0.5, 0.9, 0.95]), 0.9) == 3.0
    assert np.isnan(lip.epochs_to(np.array([0.1, np.nan]), 0.9))
    np.testing.assert_array_equal(lip.censored_epochs([2.0, float("nan")], 10), [2.0, 11.0])
