"""A run's result does not depend on the other runs of its grid (issue 7, section 2.3).

XLA chooses fusions and reduction orders by array shape; with the runs vmapped over the whole
grid, Adam seed 0 at lr 1e-2 on MNIST-1D gave one set of float32 bits in grids of 1–3 runs and
another in grids of ≥ 4, and after 20 epochs test accuracy 0.6080 vs 0.5980.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

import optlab
from optlab.train import train


@pytest.fixture(scope="module")
def mnist1d():
    from optlab.tasks import load_dataset

    return load_dataset("mnist1d")


def _run(result, index: int):
    params = np.concatenate([np.asarray(a)[index].ravel()
                             for a in jax.tree.leaves(result.state["params"])])
    return params, {k: v[index] for k, v in result.history.items()}


def _assert_same_run(a, b, what):
    np.testing.assert_array_equal(a[0], b[0], err_msg=f"parameters differ: {what}")
    for k in a[1]:
        np.testing.assert_array_equal(a[1][k], b[1][k], err_msg=f"{k} differs: {what}")


@pytest.mark.parametrize("run_batch", [1, 3])
def test_a_run_does_not_depend_on_its_grid(mnist1d, run_batch):
    kw = dict(epochs=1, batch_size=128, progress=False, run_batch=run_batch)
    alone = _run(train(mnist1d, "mlp", optlab.adam, seeds=[0],
                       hyperparams={"learning_rate": 1e-2}, **kw), 0)
    seed2 = None
    for lrs, seeds in (([1e-2], 3), ([1e-2], 5), ([1e-3, 1e-2], 4)):
        grid = train(mnist1d, "mlp", optlab.adam, seeds=seeds,
                     hyperparams={"learning_rate": lrs}, **kw)
        size = len(grid.grid)
        i = grid.grid.runs.index(({"learning_rate": 1e-2}, 0))
        _assert_same_run(_run(grid, i), alone, f"seed 0 alone vs in a grid of {size}")
        j = grid.grid.runs.index(({"learning_rate": 1e-2}, 2))
        seed2 = seed2 or (_run(grid, j), size)
        _assert_same_run(_run(grid, j), seed2[0], f"seed 2 in grids of {seed2[1]} and {size}")


def test_run_batch_is_checked(mnist1d):
    with pytest.raises(ValueError, match="run_batch"):
        train(mnist1d, "mlp", optlab.adam, epochs=1, run_batch=0)


def test_unrolled_epochs_do_not_depend_on_the_grid(mnist1d):
    """With ``unroll=True`` each group of runs is inlined, not looped: a fully unrolled epoch
    gives other bits inside a loop than outside one (and XLA:CPU runs convolution gradients
    slower inside loops, which would undo the unrolling)."""
    kw = dict(epochs=1, batch_size=512, progress=False, unroll=True)
    alone = _run(train(mnist1d, "mlp", optlab.adam, seeds=[0],
                       hyperparams={"learning_rate": 1e-2}, **kw), 0)
    grid = train(mnist1d, "mlp", optlab.adam, seeds=2, hyperparams={"learning_rate": 1e-2}, **kw)
    _assert_same_run(_run(grid, 0), alone, "seed 0 alone vs in a grid of 2, unrolled")
