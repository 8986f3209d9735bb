"""Resuming from checkpoints: run identity, damaged checkpoints, ``resumed_from``."""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from pathlib import Path

import numpy as np
import optax
import pytest

import optlab
from optlab.train import train
from tests.train_script import MLP, blobs, flat_params

KW = dict(epochs=2, batch_size=40, seeds=1)


def _train(ckpt, optimizer=optlab.adam, **kw):
    kw = {**KW, **kw}
    if not isinstance(optimizer, optax.GradientTransformation):
        kw.setdefault("hyperparams", {"learning_rate": [1e-2]})
    return train(kw.pop("data", None) or blobs(), kw.pop("model", MLP), optimizer,
                 checkpoint_dir=ckpt, **kw)


def _resumed(result) -> bool:
    """All epochs came from the checkpoint: nothing was trained in this call."""
    return result.epoch_seconds == []


# --------------------------------------------------------------------------------------------
# identity


def test_identical_rerun_of_a_partial_resumes(tmp_path):
    # the README's own example: a fresh functools.partial object on every call
    first = _train(tmp_path, functools.partial(optlab.adamw, weight_decay=1e-4))
    again = _train(tmp_path, functools.partial(optlab.adamw, weight_decay=1e-4))
    assert _resumed(again)
    np.testing.assert_array_equal(flat_params(again), flat_params(first))


def test_identical_rerun_in_another_process_resumes(tmp_path):
    """The text description of a partial held a memory address that changes between
    processes, so re-running the README's example refused its own checkpoints."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = ("import functools, sys, optlab; from tests.test_train_resume import _train;"
            "r = _train(sys.argv[1], functools.partial(optlab.adamw, weight_decay=1e-4));"
            "print('resumed' if r.epoch_seconds == [] else 'trained')")
    env = {**{k: v for k, v in os.environ.items() if k != "XLA_FLAGS"},
           "PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu"}
    outputs = [subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env,
                              capture_output=True, text=True, timeout=300, cwd=root)
               for _ in range(2)]
    assert [o.stdout.split()[-1:] for o in outputs] == [["trained"], ["resumed"]], \
        outputs[1].stderr[-2000:]


def test_other_partial_keywords_are_refused(tmp_path):
    _train(tmp_path, functools.partial(optlab.adamw, weight_decay=1e-4))
    with pytest.raises(ValueError, match=r"different configuration.*optimizer"):
        _train(tmp_path, functools.partial(optlab.adamw, weight_decay=1e-3))


def test_built_transform_is_refused_without_a_run_name(tmp_path):
    _train(tmp_path, optlab.adam(1e-3))
    # adam(1.0) must not silently reuse adam(1e-3)'s results; neither may adam(1e-3) itself,
    # since a built transform's hyperparameters cannot be inspected
    for tx in (optlab.adam(1.0), optlab.adam(1e-3), optax.chain(optlab.adam(1e-3))):
        with pytest.raises(ValueError, match="run_name=") as e:
            _train(tmp_path, tx)
        assert "built GradientTransformation" in str(e.value)


def test_lambda_optimizer_is_refused_without_a_run_name(tmp_path):
    _train(tmp_path, lambda learning_rate: optlab.adam(learning_rate))
    with pytest.raises(ValueError, match=r"optimizer is a lambda.*run_name="):
        _train(tmp_path, lambda learning_rate: optlab.adam(learning_rate))


def test_run_name_names_an_undescribable_run(tmp_path):
    first = _train(tmp_path, optlab.adam(1e-2), run_name="adam-1e-2")
    again = _train(tmp_path, optlab.adam(1e-2), run_name="adam-1e-2")
    assert _resumed(again)
    np.testing.assert_array_equal(flat_params(again), flat_params(first))
    with pytest.raises(ValueError, match=r"different configuration.*run_name"):
        _train(tmp_path, optlab.adam(1.0), run_name="adam-1")
    with pytest.raises(TypeError, match="run_name"):
        _train(tmp_path, optlab.adam(1e-2), run_name="")


def test_schedule_is_part_of_the_identity(tmp_path):
    cosine = optlab.schedules.cosine_decay
    _train(tmp_path, schedule=cosine(1.0, 18))
    assert _resumed(_train(tmp_path, schedule=cosine(1.0, 18)))
    with pytest.raises(ValueError, match=r"different configuration.*schedule"):
        _train(tmp_path, schedule=cosine(1.0, 9))
    with pytest.raises(ValueError, match=r"different configuration.*schedule"):
        _train(tmp_path)
    with pytest.raises(ValueError, match=r"schedule is a lambda.*run_name="):
        _train(tmp_path, schedule=lambda step: 1.0)


def test_dataset_contents_are_part_of_the_identity(tmp_path):
    _train(tmp_path)
    with pytest.raises(ValueError, match=r"different configuration.*dataset"):
        _train(tmp_path, data=blobs(seed=1))


def test_describe_is_canonical():
    from optlab.train import describe

    s = optlab.schedules
    assert describe(s.linear_warmup(s.cosine_decay(1.0, 100), 10)) == describe(
        s.linear_warmup(s.cosine_decay(1.0, decay_steps=100, alpha=0.0), warmup_steps=10))
    assert describe(s.cosine_decay(1.0, 100)) != describe(s.cosine_decay(1.0, 101))
    a = describe(functools.partial(optlab.powersign, sign_decay=s.linear_sign_decay(10)))
    b = describe(functools.partial(optlab.powersign, sign_decay=s.linear_sign_decay(11)))
    assert a != b
    assert describe(optlab.adam) == {"function": "optlab.optimizers:adam"}
    json.dumps(a)  # JSON-able


# --------------------------------------------------------------------------------------------
# damaged checkpoints


def _flip_bytes(path: Path, count: int = 16) -> None:
    data = bytearray(path.read_bytes())
    for i in np.linspace(len(data) // 4, len(data) - 1, count).astype(int):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _array_files(step_dir: Path) -> list[Path]:
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()
             and p.parent.name == "d"]
    assert files, f"no array data files under {step_dir}"
    return files


def _corrupt(step_dir: Path, how: str) -> None:
    if how == "array data":
        for p in _array_files(step_dir):
            _flip_bytes(p)
    elif how == "array metadata":  # orbax's JSON description of the state's arrays
        _flip_bytes(step_dir / "state" / "_METADATA")
    elif how == "checkpoint metadata":  # orbax's JSON with the save time
        _flip_bytes(step_dir / "_CHECKPOINT_METADATA")
    else:  # optlab's own metadata JSON (history, fingerprint)
        _flip_bytes(step_dir / "meta" / "metadata")


@pytest.fixture(scope="module")
def three_epochs(tmp_path_factory):
    """A finished 3-epoch run's checkpoints (steps 2 and 3 kept) and its 2-epoch prefix."""
    root = tmp_path_factory.mktemp("ckpt")
    full = _train(root / "run", epochs=3)
    return root / "run", full


@pytest.mark.parametrize("how", ["array data", "array metadata", "optlab metadata"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, three_epochs, how):
    import shutil

    source, full = three_epochs
    ckpt = tmp_path / "run"
    shutil.copytree(source, ckpt)
    assert sorted(p.name for p in ckpt.iterdir()) == ["2", "3"]
    _corrupt(ckpt / "3", how)
    with pytest.warns(RuntimeWarning, match=r"damaged checkpoint.*checkpoint 3 .*moved to "
                      r".*damaged.*Resuming from checkpoint 2"):
        resumed = _train(ckpt, epochs=3)
    assert resumed.resumed_from == 2
    assert len(resumed.epoch_seconds) == 1  # epoch 3 trained again
    np.testing.assert_array_equal(flat_params(resumed), flat_params(full))
    for k, v in full.history.items():
        np.testing.assert_array_equal(resumed.history[k], v)
    # the damaged data was kept, not deleted
    kept = list((ckpt / "damaged").iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("3-")
    assert (kept[0] / "state").is_dir()
    # and the run goes on normally afterwards
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _train(ckpt, epochs=3).resumed_from == 3


@pytest.mark.parametrize("how", ["array data", "array metadata"])
def test_no_intact_checkpoint_is_a_clear_error(tmp_path, three_epochs, how):
    import shutil

    source, _ = three_epochs
    ckpt = tmp_path / "run"
    shutil.copytree(source, ckpt)
    for step in ("2", "3"):
        _corrupt(ckpt / step, how)
    with pytest.raises(ValueError, match="no intact checkpoint") as e:
        _train(ckpt, epochs=3)
    text = str(e.value)
    assert str(ckpt) in text and "checkpoint 3 (" in text and "checkpoint 2 (" in text
    assert "left in place" in text and "\n" not in text
    assert sorted(p.name for p in ckpt.iterdir()) == ["2", "3"]


def test_damaged_save_time_metadata_is_harmless(tmp_path, three_epochs):
    """orbax only logs an unreadable _CHECKPOINT_METADATA (it holds the save time); the
    state's checksums show the checkpoint itself is intact, so it is used."""
    import shutil

    source, full = three_epochs
    ckpt = tmp_path / "run"
    shutil.copytree(source, ckpt)
    _corrupt(ckpt / "3", "checkpoint metadata")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        resumed = _train(ckpt, epochs=3)
    assert resumed.resumed_from == 3
    np.testing.assert_array_equal(flat_params(resumed), flat_params(full))


def test_fresh_run_has_no_resumed_from(tmp_path):
    result = _train(tmp_path)
    assert result.resumed_from is None
    assert result.to_json()["resumed_from"] is None
    again = _train(tmp_path)
    assert again.resumed_from == 2 and again.to_json()["resumed_from"] == 2


def test_array_valued_hyperparameters_checkpoint_and_resume(tmp_path):
    """A grid over array-valued hyperparameters (the search's program codes) is described by
    content in the checkpoint's identity: it saves, resumes, and another array is refused."""
    def factory(learning_rate, scale):
        return optlab.sgd(learning_rate * scale[0])

    data = blobs()
    kw = dict(epochs=1, batch_size=40, checkpoint_dir=tmp_path / "c", run_name="arrays")
    scales = [np.array([1.0, 0.0]), np.array([0.5, 0.0])]
    first = train(data, MLP, factory, hyperparams={"learning_rate": [0.1], "scale": scales},
                  **kw)
    again = train(data, MLP, factory, hyperparams={"learning_rate": [0.1], "scale": scales},
                  **{**kw, "epochs": 1})
    assert again.resumed_from == 1
    np.testing.assert_array_equal(again.history["train_loss"], first.history["train_loss"])
    with pytest.raises(ValueError, match=r"different configuration.*hyperparams"):
        train(data, MLP, factory, hyperparams={"learning_rate": [0.1],
                                               "scale": [np.array([2.0, 0.0])] * 2}, **kw)


def test_checkpoints_with_an_empty_validation_split(tmp_path):
    """val_fraction=0 (all training examples, as the MNIST-1D paper's protocol) checkpoints."""
    data = blobs()
    data = dataclasses.replace(data, x_val=data.x_val[:0], y_val=data.y_val[:0])
    result = train(data, MLP, optlab.sgd, hyperparams={"learning_rate": [0.1]}, epochs=1,
                   batch_size=40, checkpoint_dir=tmp_path / "c")
    assert result.epochs_trained[0] == 1
