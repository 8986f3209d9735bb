"""Helpers of experiments/kfac.py: the grid, the optimizer switch, the autoencoder, the
selection, iterations to target and the checks."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optlab
from optlab import reproduce

reproduce.load("kfac")
kf = sys.modules["optlab_experiments.kfac"]


def test_settings_cover_every_grid_point():
    task = kf.tasks(quick=False)[0]
    table = task.settings()
    assert [o for o, _ in table] == ["Adam"] * 4 + ["SGD momentum"] * 3 + ["K-FAC"] * 12
    kfac = [hp for o, hp in table if o == "K-FAC"]
    assert {(hp["learning_rate"], hp["damping"]) for hp in kfac} == {
        (lr, d) for lr in kf.MNIST1D_GRIDS["K-FAC"]["learning_rate"]
        for d in kf.MNIST1D_GRIDS["K-FAC"]["damping"]}


def test_widened_grids_keep_the_first_runs_points():
    """The grids widened after the first full run contain every point of the first run's."""
    first = {"classifier": {"Adam": {"learning_rate": (1e-3, 3e-3, 1e-2)},
                            "SGD momentum": {"learning_rate": (0.03, 0.1, 0.3)},
                            "K-FAC": {"learning_rate": (0.01, 0.03, 0.1),
                                      "damping": (1e-3, 1e-2)}},
             "ae": {"Adam": {"learning_rate": (3e-3, 1e-2, 3e-2)},
                    "SGD momentum": {"learning_rate": (1e-2, 3e-2, 1e-1)},
                    "K-FAC": {"learning_rate": (0.01, 0.03, 0.1), "damping": (1e-2, 1e-1)}}}
    for grids, old in ((kf.MNIST1D_GRIDS, first["classifier"]),
                       (kf.DIGITS_GRIDS, first["classifier"]), (kf.AE_GRIDS, first["ae"])):
        for opt, hps in old.items():
            for name, values in hps.items():
                assert set(values) <= set(grids[opt][name]), (opt, name)
                assert len(grids[opt][name]) <= len(values) + 1  # one point more at most


def test_big_autoencoder_takes_the_196_choices():
    task = kf.tasks(quick=False)[-1]
    table = task.settings()
    chosen = {"Adam": 1, "SGD momentum": 5,
              "K-FAC": next(i for i, (o, _) in enumerate(table) if o == "K-FAC")}
    r = kf.TaskResult(task, 14, table, np.ones((len(table), 3, task.epochs)), chosen, 1.0,
                      {o: 1e-3 for o in kf.OPTIMIZERS})
    big = kf.big_autoencoder(r)
    assert big.autoencoder == kf.BIG_AE_SIZES and not big.downsampled
    assert (big.epochs, big.batch, big.dataset) == (task.epochs, task.batch, task.dataset)
    assert big.settings() == [table[chosen[o]] for o in kf.OPTIMIZERS]


def test_switch_runs_the_chosen_optimizer():
    """Grid point i of the switch makes the same update as its optimizer built directly
    (K-FAC: optlab.kfac with the point's learning rate and damping, given the same
    statistics; every branch is traced, so every update gets them)."""
    model = kf.Autoencoder((6, 3, 6), rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(1), (8, 6))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    grads = jax.grad(lambda p: kf.reconstruction_loss(nnx.merge(graphdef, p, rest), x, x))(
        params)
    stats = optlab.fisher.statistics(model, x, x, key=jax.random.key(2), loss="squared_error")
    table = (("Adam", {"learning_rate": 1e-2}), ("SGD momentum", {"learning_rate": 0.1}),
             ("K-FAC", {"learning_rate": 0.3, "damping": 0.1}))
    for i, (opt, hp) in enumerate(table):
        tx = optax.with_extra_args_support(kf.switched(i, table=table))
        u, _ = tx.update(grads, tx.init(params), params, kfac_stats=stats)
        ref = optax.with_extra_args_support(kf.build(opt, **hp))
        v, _ = ref.update(grads, ref.init(params), params, kfac_stats=stats)
        for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_autoencoder_and_downsampling():
    model = kf.Autoencoder((196, 32, 8, 32, 196), rngs=nnx.Rngs(0))
    assert model.code == 1  # the 8-unit layer's output stays linear
    out = model(jnp.zeros((2, 14, 14, 1)))
    assert out.shape == (2, 196) and bool(jnp.all((out > 0) & (out < 1)))
    x = np.arange(2 * 28 * 28, dtype=np.float32).reshape(2, 28, 28, 1)
    small = kf.downsample(x)
    assert small.shape == (2, 14, 14, 1)
    np.testing.assert_allclose(small[0, 0, 0, 0], np.mean([0, 1, 28, 29]))


def test_choose_lowest_mean_final_loss_and_skips_diverged():
    table = [("Adam", {}), ("Adam", {}), ("SGD momentum", {}), ("SGD momentum", {}),
             ("K-FAC", {})]
    losses = np.ones((5, 3, 4))
    losses[0, :, -1] = [0.5, 0.6, 0.7]
    losses[1, :, -1] = [0.4, 0.5, 0.6]
    losses[2, :, -1] = [0.1, np.nan, 0.1]  # a diverged seed: not eligible
    losses[3, :, -1] = [0.9, 0.9, 0.9]
    assert kf.choose(losses, table) == {"Adam": 1, "SGD momentum": 3, "K-FAC": 4}


def test_iterations_to_target_with_censoring():
    curves = np.array([[3.0, 2.0, 1.0, 0.5],
                       [3.0, 0.9, 2.0, 2.0],   # first epoch at or below target counts
                       [3.0, 3.0, 3.0, 3.0],   # never: censored at the budget
                       [3.0, np.nan, np.nan, np.nan]])  # diverged: never
    it, reached = kf.iterations_to_target(curves, 1.0, per_epoch=10)
    np.testing.assert_array_equal(it, [30, 20, 40, 40])
    np.testing.assert_array_equal(reached, [True, True, False, False])


def test_faster_margins_in_log2():
    other = np.array([400.0, 420.0, 410.0])
    assert kf.faster(other, np.array([100.0, 110.0, 105.0]), kf.ITER_MARGIN) is True
    assert kf.faster(other, np.array([300.0, 310.0, 305.0]), kf.ITER_MARGIN) is False
    assert kf.faster(other, np.array([300.0, 310.0, 305.0]), kf.WALL_MARGIN) is True


def test_checks_fail_when_kfac_misses_the_target():
    task = kf.tasks(quick=True)[0]
    table = task.settings()
    losses = np.ones((len(table), 3, task.epochs))
    r = kf.TaskResult(task, 5, table, losses, {"Adam": 0, "SGD momentum": 1, "K-FAC": 2},
                      0.5, {o: 1e-3 for o in kf.OPTIMIZERS})
    for opt in kf.OPTIMIZERS:
        r.iterations[opt] = np.array([15, 15, 15])
        r.reached[opt] = np.array([True, True, opt != "K-FAC"])
    checks = kf.checks_of(r)
    assert len(checks) == 4 and all(v is False for v in checks.values())
