"""Helpers of experiments/bello.py: the sign-agreement detector, the learning-rate grids, the
raveled interpreter and the method zoo."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab import reproduce

reproduce.load("bello")
bello = sys.modules["optlab_experiments.bello"]


@pytest.mark.parametrize("formula", [
    "exp(sign(g) * sign(m)) * g",  # PowerSign
    "(1 + sign(g) * sign(m)) * g",  # AddSign
    "exp(ld * sign(g) * sign(m)) * g",  # PowerSign-ld: the product is split by ld
    "(1 + cd * sign(m) * sign(g)) * g",
    "sign(g * m) * g",
    "sign(g) / (sign(m) + 1e-8)",
    "-(sign(g) * sign(m / (sqrt(v) + eps)))",
    "abs(2) ^ (sign(g) * sign(m)) * g",
])
def test_agreement_found(formula):
    assert bello.agreement(formula)


@pytest.mark.parametrize("formula", [
    "g", "sign(g) * g", "m / (sqrt(v) + eps)", "sign(m) * sqrt(abs(g))",
    "sign(g) + sign(m)", "exp(sign(g)) * sign(v)", "sign(g * v) * m",
])
def test_agreement_absent(formula):
    assert not bello.agreement(formula)


def test_lr_grid_half_decades_around_the_centre():
    assert bello.lr_grid(0.1, 5) == [0.01, 0.0316, 0.1, 0.316, 1.0]
    assert bello.lr_grid(1e-3, 3) == [0.000316, 0.001, 0.00316]
    assert bello.lr_grid(0.01, 1) == [0.01]


def test_flat_interpreter_equals_the_compiled_program():
    """Raveling the parameters does not change a deterministic program's update."""
    from optlab.search import compile_program, parse
    from optlab.search.population import encode, interpreted

    program = parse("exp(sign(g) * sign(m)) * g")
    params = {"a": jnp.arange(6.0).reshape(2, 3) / 7, "b": jnp.array([0.5, -1.0])}
    tx_flat = bello.flat(interpreted(jnp.asarray(encode(program, 2)), 0.1))
    tx = compile_program(program, 0.1)
    s_flat, s = tx_flat.init(params), tx.init(params)
    for k in range(3):
        g = jax.tree.map(lambda p, k=k: jnp.sin(p * (k + 1) + 0.3), params)
        u_flat, s_flat = tx_flat.update(g, s_flat, params)
        u, s = tx.update(g, s, params)
        for a, b in zip(jax.tree.leaves(u_flat), jax.tree.leaves(u), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("name", bello.METHODS)
def test_every_method_updates(name):
    params = {"w": jnp.ones(3)}
    tx = bello.make_optimizer(name, 0.1, total_steps=10)
    state = tx.init(params)
    u, _ = tx.update({"w": jnp.array([1.0, -2.0, 0.5])}, state, params)
    assert np.all(np.isfinite(u["w"])) and np.any(u["w"] != 0)


def test_cifar10_task_needs_a_local_copy(tmp_path, monkeypatch):
    """Without OPTLAB_CIFAR10_DIR the CIFAR-10 task is skipped with a note; with a (here
    fake) local copy it is the ConvNet task on a subset of CIFAR-10."""
    import pickle

    from optlab.tasks import load_dataset

    cfg = bello.config(quick=True)
    monkeypatch.delenv("OPTLAB_CIFAR10_DIR", raising=False)
    task, note = bello.cifar10_task(cfg)
    assert task is None and "OPTLAB_CIFAR10_DIR" in note
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (300, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 300).tolist()}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    monkeypatch.setenv("OPTLAB_CIFAR10_DIR", str(tmp_path))
    task, note = bello.cifar10_task(cfg)
    assert task["dataset"] == "cifar10" and task["model"] == "convnet"
    data = bello.subset(load_dataset("cifar10"), task["train_size"], task["eval_size"])
    assert data.x_train.shape == (256, 32, 32, 3)
    assert (len(data.y_val), len(data.y_test)) == (150, 200)  # val: 10 % of 1,500


def test_runner_per_step_equals_per_epoch():
    """The ConvNet's loop (one compiled step per mini-batch) trains exactly as the MNIST-1D
    loop (a whole epoch per call), here on a small MLP problem; divergence is caught."""
    import functools

    from optlab.tasks import load_dataset

    data = bello.subset(load_dataset("mnist1d"), 256, 200)
    methods = [functools.partial(bello.named, name=n) for n in ("Adam", "PowerSign-cd")]
    runs = {}
    for per_step in (False, True):
        runner = bello.Runner(data, "mlp", methods, batch=64, epochs=2, per_step=per_step)
        runs[per_step] = [runner.run(m, 1e-2, 1000) for m in (0, 1)]
        assert runner.run(0, 1e9, 1000)["diverged"]
    for a, b in zip(runs[False], runs[True], strict=True):
        np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(a["test"], b["test"], atol=1e-3)
        assert not a["diverged"] and len(a["test"]) == 2
