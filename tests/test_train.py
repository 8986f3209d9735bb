"""The training loop: grids, divergence, early stopping, checkpoints, data parallelism."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optlab
from optlab.train import Grid, train
from tests.train_script import MLP, blobs, flat_params, run

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "tests" / "train_script.py")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return {**env, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", **extra}


@pytest.fixture(scope="module")
def reference():
    return run(epochs=8)


def test_grid_learns_and_orders_runs(reference):
    assert len(reference.grid) == 4
    assert [(hp["learning_rate"], s) for hp, s in reference.grid.runs] == [
        (1e-2, 0), (1e-2, 1), (1e-1, 0), (1e-1, 1)]
    assert np.all(reference.test_accuracy > 0.8)
    assert not reference.diverged.any()
    assert np.all(reference.epochs_trained == 8)
    # loss goes down, different seeds give different runs
    h = reference.history["train_loss"]
    assert np.all(h[:, -1] < 0.5 * h[:, 0])
    assert not np.allclose(h[0], h[1])


def test_grid_equals_runs_one_by_one(reference):
    params = flat_params(reference)
    for i, (hp, seed) in enumerate(reference.grid.runs):
        single = run(epochs=8, hyperparams={"learning_rate": hp["learning_rate"]},
                     seeds=[seed])
        np.testing.assert_array_equal(flat_params(single)[0], params[i])
        for k, v in reference.history.items():
            np.testing.assert_array_equal(single.history[k][0], v[i])


def test_deterministic(reference):
    again = run(epochs=8)
    np.testing.assert_array_equal(flat_params(again), flat_params(reference))


def test_divergence_ends_only_that_run():
    result = train(blobs(), MLP, optlab.sgd, epochs=6, batch_size=40,
                   hyperparams={"learning_rate": [0.05, 1e30]})
    assert result.diverged.tolist() == [False, True]
    assert result.epochs_trained[0] == 6
    assert result.epochs_trained[1] < 6
    # the diverged run keeps its (finite or partial) history up to the divergence
    assert np.isnan(result.history["train_loss"][1, result.epochs_trained[1]:]).all()
    assert result.test_accuracy[0] > 0.8
    assert result.runs()[1]["diverged"] is True


def test_early_stopping_freezes_run():
    result = train(blobs(), MLP, optlab.adam, epochs=30, batch_size=40, patience=2,
                   hyperparams={"learning_rate": [1e-1]})
    n = int(result.epochs_trained[0])
    assert n < 30
    val = result.history["val_accuracy"][0, :n]
    best = int(np.argmax(val))
    assert n - 1 - best == 2 and result.best_epoch[0] == best
    assert result.test_accuracy[0] == result.history["test_accuracy"][0, best]


def test_schedule_multiplies_learning_rate():
    # lr x 1 for the first epoch's 9 steps, then 0: epochs 2.. change nothing
    def first_epoch_only(step):
        return jnp.where(step < 9, 1.0, 0.0)

    result = train(blobs(), MLP, optlab.sgd, epochs=3, batch_size=40, seeds=1,
                   hyperparams={"learning_rate": [0.1]}, schedule=first_epoch_only)
    frozen = train(blobs(), MLP, optlab.sgd, epochs=1, batch_size=40, seeds=1,
                   hyperparams={"learning_rate": [0.1]})
    np.testing.assert_array_equal(flat_params(result), flat_params(frozen))


def test_other_hyperparameters_are_vmapped():
    result = train(blobs(), MLP, functools.partial(optlab.adamw, learning_rate=1e-2),
                   epochs=2, batch_size=40, hyperparams={"weight_decay": [0.0, 10.0]})
    p = flat_params(result)
    assert np.linalg.norm(p[1]) < 0.5 * np.linalg.norm(p[0])


def test_checkpoint_resume_is_bit_exact(tmp_path, reference, monkeypatch):
    import optlab.train as train_module

    calls = {"n": 0}
    original = train_module._Checkpoints.save

    def save_then_crash(self, epoch, state, meta):
        original(self, epoch, state, meta)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")

    monkeypatch.setattr(train_module._Checkpoints, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "ckpt", epochs=8)
    monkeypatch.setattr(train_module._Checkpoints, "save", original)
    resumed = run(tmp_path / "ckpt", epochs=8)
    np.testing.assert_array_equal(flat_params(resumed), flat_params(reference))
    for k, v in reference.history.items():
        np.testing.assert_array_equal(resumed.history[k], v)


def test_resume_with_another_config_is_refused(tmp_path):
    run(tmp_path / "ckpt", epochs=1)
    with pytest.raises(ValueError, match="different configuration"):
        run(tmp_path / "ckpt", epochs=1, hyperparams={"learning_rate": [0.5]})


@pytest.mark.slow
def test_resume_after_kill_is_bit_exact(tmp_path):
    full, part = tmp_path / "full.npz", tmp_path / "part.npz"
    ckpt = tmp_path / "ckpt"
    epochs = "20"
    subprocess.run([sys.executable, SCRIPT, str(full), "-", epochs], check=True, env=_env(),
                   timeout=300)
    proc = subprocess.Popen([sys.executable, SCRIPT, str(part), str(ckpt), epochs], env=_env())
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        steps = [int(p.name) for p in ckpt.glob("*") if p.name.isdigit()] if ckpt.exists() else []
        if steps and max(steps) >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not part.exists()
    subprocess.run([sys.executable, SCRIPT, str(part), str(ckpt), epochs], check=True,
                   env=_env(), timeout=300)
    a, b = np.load(full), np.load(part)
    np.testing.assert_array_equal(a["params"], b["params"])
    np.testing.assert_array_equal(a["test_accuracy"], b["test_accuracy"])


@pytest.mark.slow
def test_data_parallel_on_8_devices_matches_one_device(tmp_path):
    code = (
        "import sys, jax, numpy as np; sys.path.insert(0, sys.argv[2]);"
        "from tests.train_script import run, flat_params;"
        "assert jax.device_count() == 8, jax.devices();"
        "a = run(epochs=3, data_parallel=True); b = run(epochs=3, data_parallel=False);"
        "s = a.state['params'];"
        "leaf = jax.tree.leaves(s)[0];"
        "assert len(leaf.sharding.device_set) == 8 and leaf.sharding.is_fully_replicated;"
        "np.savez(sys.argv[1], a=flat_params(a), b=flat_params(b),"
        " ha=a.history['test_loss'], hb=b.history['test_loss'])")
    out = tmp_path / "dp.npz"
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    subprocess.run([sys.executable, "-c", code, str(out), str(ROOT)], check=True, env=env,
                   timeout=300)
    r = np.load(out)
    np.testing.assert_allclose(r["a"], r["b"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r["ha"], r["hb"], rtol=1e-4)


@pytest.mark.slow
def test_run_parallel_on_8_devices_equals_one_device(tmp_path):
    """Runs spread over 8 devices (a 5-run grid: padded with inactive runs) give bit for bit
    the single-device results, with early stopping and a resume; with run_batch=2 (a lone
    group per device compiles outside a loop) equal up to float32 rounding."""
    code = textwrap.dedent("""
        import sys, jax, numpy as np
        sys.path.insert(0, sys.argv[2])
        from tests.train_script import run, flat_params
        assert jax.device_count() == 8, jax.devices()
        kw = dict(epochs=4, patience=1, seeds=1,
                  hyperparams={"learning_rate": [3e-3, 1e-2, 3e-2, 0.1, 1.0]})
        out = {}
        for rb in (1, 2):
            a = run(run_parallel=True, run_batch=rb, **kw)
            b = run(data_parallel=False, run_batch=rb, **kw)
            assert a.state["active"].shape == (5,), a.state["active"].shape
            out[f"pa{rb}"], out[f"pb{rb}"] = flat_params(a), flat_params(b)
            out[f"ha{rb}"], out[f"hb{rb}"] = a.history["val_accuracy"], b.history["val_accuracy"]
            out[f"da{rb}"], out[f"db{rb}"] = a.diverged, b.diverged
        c1 = run(sys.argv[3], run_parallel=True, **kw)
        c2 = run(sys.argv[3], run_parallel=True, **kw)
        assert c2.resumed_from == c1.epochs_trained.max(), c2.resumed_from
        out["c1"], out["c2"] = flat_params(c1), flat_params(c2)
        np.savez(sys.argv[1], **out)
        """)
    out = tmp_path / "rp.npz"
    env = _env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
    subprocess.run([sys.executable, "-c", code, str(out), str(ROOT), str(tmp_path / "ck")],
                   check=True, env=env, timeout=400)
    r = np.load(out)
    np.testing.assert_array_equal(r["pa1"], r["pb1"])
    np.testing.assert_array_equal(r["ha1"], r["hb1"])
    np.testing.assert_allclose(r["pa2"], r["pb2"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(r["ha2"], r["hb2"], atol=0.02)
    for rb in (1, 2):
        np.testing.assert_array_equal(r[f"da{rb}"], r[f"db{rb}"])
    assert np.isnan(r["ha1"]).any(), "early stopping (patience=1) should stop some run"
    np.testing.assert_array_equal(r["c1"], r["c2"])
    np.testing.assert_array_equal(r["c1"], r["pa1"])


def test_run_parallel_excludes_data_parallel():
    with pytest.raises(ValueError, match="exclude each other"):
        run(epochs=1, data_parallel=True, run_parallel=True)
    with pytest.raises(TypeError, match="run_parallel must be a bool"):
        run(epochs=1, run_parallel=1)


def test_batch_size_must_divide_devices_for_data_parallel(monkeypatch):
    monkeypatch.setattr(jax, "devices", lambda *a: [object()] * 3)
    with pytest.raises(ValueError, match="batch_size=40 must be divisible by the 3"):
        run(epochs=1, data_parallel=True)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"epochs": 0}, "epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 10_000}, "batch_size=10000 exceeds"),
    ({"patience": 0}, "patience"),
    ({"seeds": 0}, "seeds"),
    ({"seeds": [1, 1]}, "distinct"),
    ({"hyperparams": {"learning_rate": []}}, "empty"),
    ({"hyperparams": {"learning_rate": [-1.0]}}, "learning_rate"),
    ({"hyperparams": {"learning_rate": [float("nan")]}}, "finite"),
    ({"hyperparams": {"learnig_rate": [0.1]}}, "learnig_rate"),
])
def test_bad_arguments(kwargs, match):
    kwargs = {"hyperparams": {"learning_rate": [0.1]}, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        train(blobs(), MLP, optlab.adam, **{"epochs": 1, "batch_size": 40, **kwargs})


def test_grid_product_order():
    g = Grid.make({"learning_rate": [1.0, 2.0], "b1": 0.5}, [3, 4])
    assert len(g) == 4
    assert g.runs[1] == ({"learning_rate": 1.0, "b1": 0.5}, 4)


def test_mnist1d_mlp_with_adam_reaches_60_percent():
    """The MNIST-1D paper reports 68 % for its MLP (long training on all 4000 examples); a
    CI-sized run (40 epochs, 3600 training examples) must reach 60 %."""
    from optlab.tasks import load_dataset

    data = load_dataset("mnist1d")
    result = train(data, "mlp", optlab.adam, hyperparams={"learning_rate": [1e-2]}, seeds=2,
                   epochs=40, batch_size=100)
    assert result.test_accuracy.mean() >= 0.60, result.test_accuracy


def test_resume_keeps_diverged_and_stopped_runs(tmp_path, monkeypatch):
    import optlab.train as train_module

    kwargs = dict(epochs=5, batch_size=40, hyperparams={"learning_rate": [0.05, 1e30]})
    full = train(blobs(), MLP, optlab.sgd, **kwargs)
    original = train_module._Checkpoints.save

    def crash_after_two(self, epoch, state, meta):
        original(self, epoch, state, meta)
        if epoch == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module._Checkpoints, "save", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        train(blobs(), MLP, optlab.sgd, checkpoint_dir=tmp_path, **kwargs)
    monkeypatch.setattr(train_module._Checkpoints, "save", original)
    resumed = train(blobs(), MLP, optlab.sgd, checkpoint_dir=tmp_path, **kwargs)
    assert resumed.diverged.tolist() == [False, True]
    np.testing.assert_array_equal(resumed.history["train_loss"], full.history["train_loss"])
    np.testing.assert_array_equal(flat_params(resumed), flat_params(full))


def test_accepts_a_built_optax_transform():
    import optax

    tx = optax.chain(optax.clip_by_global_norm(1.0), optlab.lion(1e-3))
    result = train(blobs(), MLP, tx, epochs=2, batch_size=40, seeds=2)
    assert len(result.grid) == 2 and result.test_accuracy.min() > 0.5
    with pytest.raises(ValueError, match="factory"):
        train(blobs(), MLP, tx, epochs=1, batch_size=40, hyperparams={"learning_rate": [1.0]})


@pytest.mark.parametrize("make", [
    lambda: optax.polyak_sgd(max_learning_rate=0.5),  # reads value
    lambda: optax.contrib.sophia(0.01),  # reads obj_fn
    lambda: optax.lbfgs(),  # reads value, grad and value_fn (zoom line search)
], ids=["polyak_sgd", "sophia", "lbfgs"])
def test_optimizers_reading_the_loss_train(make):
    """train passes optax's extra arguments (value, grad, value_fn, obj_fn of the batch)."""
    from tests.train_script import MLP, blobs

    result = train(blobs(), MLP, make(), epochs=3, batch_size=40, progress=False)
    loss = result.history["train_loss"][0]
    assert not result.diverged[0] and loss[-1] < loss[0], loss


def test_schedule_free_is_evaluated_at_its_averaged_iterate():
    """Validation metrics of a Schedule-Free run are those of x = schedule_free_eval_params,
    not of the gradient point y held as params."""
    from flax import nnx

    from optlab.schedule_free import schedule_free_eval_params, schedule_free_sgd
    from optlab.train import classification_loss
    from tests.train_script import MLP, blobs

    data = blobs()
    result = train(data, MLP, schedule_free_sgd(0.5), epochs=2, batch_size=40, progress=False)
    state = jax.tree.map(lambda a: a[0], result.state)
    x = schedule_free_eval_params(state["opt_state"], state["params"])
    model = nnx.merge(result.graphdef, x, state["rest"])
    loss, _ = classification_loss(model, jnp.asarray(data.x_val), jnp.asarray(data.y_val))
    np.testing.assert_allclose(result.history["val_loss"][0, -1], loss, rtol=1e-5)
    y_model = nnx.merge(result.graphdef, state["params"], state["rest"])
    y_loss, _ = classification_loss(y_model, jnp.asarray(data.x_val), jnp.asarray(data.y_val))
    assert abs(float(y_loss) - float(loss)) > 1e-6


# The zoo members that read optax's extra arguments (value, grad, value_fn, obj_fn) train one
# program each; the others train in groups, one program per group (an optlab.one_of switch over
# the group, the member an index in the grid): one compile per group instead of per optimizer.
_READ_EXTRA = ("lbfgs", "momo", "momo_adam", "polyak_sgd", "sophia")
_PLAIN = sorted(set(optlab.OPTIMIZERS) - set(_READ_EXTRA))
_GROUPS = [tuple(_PLAIN[i::4]) for i in range(4)] + [(name,) for name in _READ_EXTRA]


@pytest.mark.parametrize("names", _GROUPS, ids=lambda names: ",".join(names))
def test_every_optimizer_trains_by_name(names):
    """Every zoo member trains in optlab.train by its registry name, the learning rate a
    grid value (a traced scalar), with the extra arguments it reads passed by train."""
    from optlab import registry
    from tests.train_script import MLP, blobs

    assert set(_READ_EXTRA) <= set(optlab.OPTIMIZERS)
    fns = [registry.optimizer(name) for name in names]
    takes_lr = ["learning_rate" in registry.parameters(fn) for fn in fns]

    def make(member, learning_rate):
        txs = [fn(learning_rate) if lr else fn() for fn, lr in zip(fns, takes_lr, strict=True)]
        return txs[0] if len(txs) == 1 else optlab.one_of(jnp.asarray(member, jnp.int32), txs)

    grid = {"member": list(range(len(names))), "learning_rate": [1e-2]}
    result = train(blobs(n=200), MLP, make, hyperparams=grid, epochs=2, batch_size=40,
                   progress=False)
    for i, name in enumerate(names):
        loss = result.history["train_loss"][i]
        assert not result.diverged[i] and np.isfinite(loss).all(), (name, loss)


_TRACED: list[float] = []


def _adam_counting_traces(learning_rate):
    _TRACED.append(1.0)
    return optlab.adam(learning_rate)


def test_a_repeated_call_reuses_the_compiled_program():
    """The same model, optimizer factory and settings (the search's populations, a notebook
    re-run) compile once; another optimizer factory, even an equal-looking closure, compiles
    anew and gives its own results."""
    data = blobs()
    kw = dict(hyperparams={"learning_rate": [0.01, 0.1]}, seeds=2, epochs=2, batch_size=32)
    _TRACED.clear()
    first = train(data, "mlp", _adam_counting_traces, **kw)
    calls_first = len(_TRACED)  # argument checks, the extra-args probe, init and epoch traces
    again = train(data, "mlp", _adam_counting_traces, **kw)
    calls_again = len(_TRACED) - calls_first
    assert calls_again <= calls_first - 2, "the second call traced init and epoch again"
    assert again.compile_time < 0.5 * first.compile_time
    for k, v in first.history.items():
        np.testing.assert_array_equal(again.history[k], v)
    other = train(data, "mlp", lambda learning_rate: optlab.sgd(learning_rate), **kw)
    assert not np.array_equal(other.history["train_loss"], first.history["train_loss"])
