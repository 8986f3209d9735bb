"""`optlab meta-train` (save, resume, refusals, flag checks) and learned:PATH in `optlab train`
and `optlab compare`."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from optlab import cli, learned

SMALL = ["--task", "quadratic", "--tasks", "2", "--unroll", "5", "--horizon", "10",
         "--hidden", "4", "--save-every", "5"]


def _meta_train(out, steps: int, *extra: str) -> int:
    return cli.main(["meta-train", *SMALL, *extra, "--steps", str(steps), "--out", str(out)])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 20-step run, uninterrupted; and one stopped after 10 and resumed to 20."""
    root = tmp_path_factory.mktemp("meta")
    assert _meta_train(root / "whole", 20) == 0
    assert _meta_train(root / "parts", 10) == 0
    assert learned.load(root / "parts").meta_step == 10
    assert _meta_train(root / "parts", 20) == 0
    return root


def test_meta_train_resumes_to_the_uninterrupted_result(trained, capsys):
    whole, parts = learned.load(trained / "whole"), learned.load(trained / "parts")
    assert whole.meta_step == parts.meta_step == 20
    assert whole.name == "lstm" and whole.options["hidden"] == 4
    for a, b in zip(jax.tree.leaves(whole.meta_params), jax.tree.leaves(parts.meta_params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    h_whole = json.loads((trained / "whole" / "history.json").read_text())
    h_parts = json.loads((trained / "parts" / "history.json").read_text())
    assert h_whole == h_parts and len(h_whole["meta_loss"]) == 20
    # the same command again: nothing left to do, nothing changes
    assert _meta_train(trained / "parts", 20) == 0
    assert "resumed from meta-step 20" in capsys.readouterr().out
    assert json.loads((trained / "parts" / "history.json").read_text()) == h_parts


def test_meta_train_refuses_another_configuration(trained, capsys):
    before = (trained / "whole" / "learned.json").read_bytes()
    assert cli.main(["meta-train", *SMALL[:2], "--tasks", "3", *SMALL[4:], "--steps", "20",
                     "--out", str(trained / "whole")]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "meta" in err
    assert (trained / "whole" / "learned.json").read_bytes() == before
    other = trained / "foreign"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert _meta_train(other, 5) == 2
    assert "not empty" in capsys.readouterr().err


@pytest.mark.parametrize("argv, expected", [
    (["--steps", "0"], "--steps: must be an integer >= 1"),
    (["--steps", "5", "--unroll", "0"], "--unroll: must be an integer >= 1"),
    (["--steps", "5", "--meta-lr", "-1"], "--meta-lr: must be a finite number > 0"),
    (["--steps", "5", "--meta-lr", "abc"], "--meta-lr: expected a number > 0"),
    (["--steps", "5", "--estimator", "pes"], "--estimator: invalid choice"),
    (["--steps", "5", "--optimizer", "rnn"], "--optimizer: invalid choice"),
])
def test_meta_train_bad_flag_values(argv, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["meta-train", "--task", "quadratic", *argv, "--out", str(tmp_path / "x")])
    assert e.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv, expected", [
    (["--unroll", "5", "--horizon", "12"], "--horizon 12 must be a multiple of --unroll 5"),
    (["--subset", "10"], "--subset: only for --task mnist1d"),
    (["--es-pairs", "3"], "--es-pairs: only with --estimator es"),
])
def test_meta_train_inconsistent_flags(argv, expected, tmp_path, capsys):
    assert cli.main(["meta-train", "--task", "quadratic", "--steps", "5", *argv, "--out",
                     str(tmp_path / "x")]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_meta_train_mnist1d_flag_ranges(tmp_path, capsys):
    out = str(tmp_path / "x")
    assert cli.main(["meta-train", "--task", "mnist1d", "--steps", "5", "--subset", "100",
                     "--batch-size", "200", "--out", out]) == 2
    assert "--batch-size 200 exceeds --subset 100; allowed range 1..100" in \
        capsys.readouterr().err
    assert cli.main(["meta-train", "--task", "mnist1d", "--steps", "5", "--subset",
                     "999999", "--out", out]) == 2
    assert "--subset 999999 exceeds" in capsys.readouterr().err
    assert cli.main(["meta-train", "--task", "mnist1d", "--steps", "5", "--model-hidden",
                     "8,x", "--out", out]) == 2
    assert "--model-hidden" in capsys.readouterr().err


def test_train_with_learned_optimizer(trained, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--optimizer", f"learned:{trained / 'whole'}", "--epochs", "1",
                     "--seeds", "1", "--batch-size", "256", "--model-arg", "hidden=(16,)",
                     "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "lr=1: test accuracy" in printed
    record = json.loads((out / "results.json").read_text())
    assert np.isfinite(record["runs"][0]["test_accuracy"])


def test_compare_with_learned_optimizer(trained, capsys):
    path = f"learned:{trained / 'whole'}"
    assert cli.main(["compare", "--task", "rosenbrock", "--optimizers", f"{path},adam",
                     "--steps", "30", "--lr", "1e-2"]) == 0
    printed = capsys.readouterr().out
    assert f"| {path} |" in printed and "(1)" in printed  # learned: lr 1 only


def test_learned_path_errors(tmp_path, capsys):
    assert cli.main(["train", "--optimizer", f"learned:{tmp_path / 'none'}", "--epochs",
                     "1"]) == 2
    err = capsys.readouterr().err
    assert "--optimizer learned:" in err and "no learned optimizer" in err
    assert cli.main(["compare", "--optimizers", "adam,learned:", "--epochs", "1"]) == 2
    assert "--optimizers learned:: expected learned:PATH" in capsys.readouterr().err
