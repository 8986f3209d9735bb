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
    update_flat, update = jax.jit(tx_flat.update), jax.jit(tx.update)  # eager: 5× slower
    for k in range(3):
        g = jax.tree.map(lambda p, k=k: jnp.sin(p * (k + 1) + 0.3), params)
        u_flat, s_flat = update_flat(g, s_flat, params)
        u, s = update(g, s, params)
        for a, b in zip(jax.tree.leaves(u_flat), jax.tree.leaves(u), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("name", bello.METHODS)
def test_every_method_updates(name):
    params = {"w": jnp.ones(3)}
    tx = bello.method(name, 10)(0.1, None)
    state = tx.init(params)
    u, _ = tx.update({"w": jnp.array([1.0, -2.0, 0.5])}, state, params)
    assert np.all(np.isfinite(u["w"])) and np.any(u["w"] != 0)


def test_cifar10_task_needs_a_local_copy(tmp_path, monkeypatch):
    """Without OPTLAB_CIFAR10_DIR the CIFAR-10 task is skipped with a note; with a (here
    fake) local copy it is the ConvNet task on a subset of CIFAR-10."""
    import pickle

    cfg = bello.config(quick=True)
    monkeypatch.delenv("OPTLAB_CIFAR10_DIR", raising=False)
    task, note = bello.cifar10_task(cfg)
    assert task is None and "OPTLAB_CIFAR10_DIR" in note
    with pytest.raises(RuntimeError, match="OPTLAB_CIFAR10_DIR"):  # the accelerator needs it
        bello.cifar10_task(bello.config(accelerator=True))
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (300, 3072), dtype=np.uint8),
                 b"labels": rng.integers(0, 10, 300).tolist()}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    monkeypatch.setenv("OPTLAB_CIFAR10_DIR", str(tmp_path))
    task, note = bello.cifar10_task(cfg)
    assert task["dataset"] == "cifar10" and task["model"] == "convnet"
    data = bello.task_data(task)
    assert data.x_train.shape == (256, 32, 32, 3)
    assert (len(data.y_val), len(data.y_test)) == (150, 200)  # val: 10 % of 1,500
    task, note = bello.cifar10_task(bello.config(accelerator=True))
    assert "full size" in note and len(bello.task_data(task).y_train) == 1350
    assert (task["epochs"], task["batch"], task["tune_seeds"], task["per_step"]) == (
        5, 100, 0, False)


def test_accelerator_configuration():
    """``--accelerator``: the ConvNet on the whole of CIFAR-10 at ENOS's child settings (5
    epochs, batch 100, tuned on every seed, compiled loop) and a search of 30,000 candidates;
    the CPU full mode keeps its sizes (and so its cached pieces)."""
    acc, full = bello.config(accelerator=True), bello.config()
    assert acc["cifar"] == {"train_size": None, "eval_size": None, "required": True,
                            "epochs": 5, "batch": 100, "per_step": False, "tune_seeds": 0}
    assert acc["search"]["budget"] == 30_000 and full["search"]["budget"] == 384
    assert all(not t["per_step"] and t["tune_seeds"] == 0 for t in acc["tasks"])
    assert {k: v for k, v in acc["search"].items() if k != "budget"} == {
        k: v for k, v in full["search"].items() if k != "budget"}
    assert [t["grid"] for t in full["tasks"]] == [7, 7]


def test_runner_per_step_equals_per_epoch():
    """The ConvNet's loop (one compiled step per mini-batch) trains exactly as the MNIST-1D
    loop (a whole epoch per call), here on a small MLP problem; divergence is caught."""
    data = bello.task_data({"dataset": "mnist1d", "train_size": 256, "eval_size": 200})
    methods = [bello.method(n, 8) for n in ("Adam", "PowerSign-cd")]
    runner = bello.Runner(data, "mlp", methods, batch=64, per_step=False)
    runs = {}
    for chunk in (runner.spe, 1):  # per epoch, then per step (as per_step=True sets it)
        runner.chunk = chunk
        runs[chunk == 1] = [runner.run(m, 1e-2, 1000, 2) for m in (0, 1)]
        assert runner.run(0, 1e9, 1000, 2)["diverged"]
    for a, b in zip(runs[False], runs[True], strict=True):
        np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(a["test"], b["test"], atol=1e-3)
        assert not a["diverged"] and len(a["test"]) == 2
