"""The ``optlab`` command line: every command, its outputs and its error paths."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from optlab import cli
from optlab.tasks import PROBLEMS, final_losses, reddi_online, rosenbrock

FAST = ["--task", "digits", "--epochs", "2", "--seeds", "2", "--batch-size", "64",
        "--no-progress"]


def test_list(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for section in ("optimizers:", "schedules:", "tasks (data sets):", "models:"):
        assert section in out
    for name in ("powersign", "momentum", "sgdr", "mnist1d", "quadratic_deep", "wrn", "cnn1d"):
        assert f"  {name} " in out


def test_train_writes_results_plot_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", *FAST, "--model", "mlp", "--optimizer", "adam", "--lr", "1e-3,1e-2",
            "--opt-arg", "b2=0.99", "--out", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "lr=0.01: test accuracy" in text
    record = json.loads((out / "results.json").read_text())
    assert record["config"]["opt_args"] == {"b2": "0.99"}
    assert record["device"] and record["wall_time_s"] > 0
    assert len(record["runs"]) == 4
    run = record["runs"][3]
    assert run["hyperparams"] == {"learning_rate": 0.01} and run["seed"] == 1
    assert len(run["history"]["val_accuracy"]) == 2
    assert run["test_accuracy"] > 0.5
    per_seed = record["test_accuracy_per_seed"]
    assert [len(g["test_accuracy"]) for g in per_seed] == [2, 2]
    assert (out / "curves.png").stat().st_size > 1000
    assert not list(out.glob(".*.tmp"))
    # same command again: resumes from the last checkpoint, same results
    assert cli.main(argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert [r["history"] for r in again["runs"]] == [r["history"] for r in record["runs"]]
    # a different configuration in the same directory is refused, not overwritten
    assert cli.main([*argv[:-2], "--lr", "0.5", "--out", str(out)]) == 2
    assert "different configuration" in capsys.readouterr().err


def test_compare_on_a_dataset(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main(["compare", *FAST, "--optimizers", "sgd,adam", "--lrs", "1e-2,1e-1",
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| optimizer | best lr | val accuracy | test accuracy (mean ± std) | diverged |" in text
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [r["optimizer"] for r in rows] == ["sgd", "adam"]
    assert all(float(r["lr"]) in (1e-2, 1e-1) for r in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"][1]["seeds"] == 2
    assert 0 <= summary["results"][1]["test_accuracy_std"] < 0.2
    # the best lr is the one with the best mean validation accuracy over seeds
    adam = json.loads((out / "adam" / "results.json").read_text())["runs"]
    val = {lr: np.mean([r["val_accuracy"] for r in adam
                        if r["hyperparams"]["learning_rate"] == lr]) for lr in (1e-2, 1e-1)}
    assert float(rows[1]["lr"]) == max(val, key=val.get)
    assert (out / "curves.png").stat().st_size > 1000


def test_compare_the_new_zoo_members(tmp_path, capsys):
    """The issue's command: matrix preconditioners, schedule-free, a loss-reading optimizer."""
    names = "muon,soap,shampoo,adamw,lion,schedule_free_adamw,polyak_sgd"
    argv = ["compare", "--task", "mnist1d", "--optimizers", names, "--epochs", "1",
            "--seeds", "1", "--lrs", "0.01", "--out", str(tmp_path / "cmp")]
    assert cli.main(argv) == 0
    rows = list(csv.DictReader((tmp_path / "cmp" / "summary.csv").open()))
    assert [r["optimizer"] for r in rows] == names.split(",")
    assert all(r["status"] == "ok" and float(r["test_accuracy_mean"]) > 0.15 for r in rows), rows


def test_compare_on_synthetic_problems(tmp_path, capsys):
    assert cli.main(["compare", "--optimizers", "adam,momentum,powersign", "--task",
                     "rosenbrock,quadratic_deep", "--lrs", "1e-3,1e-2", "--steps", "50",
                     "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| optimizer | rosenbrock: best loss (lr) | quadratic_deep: best loss (lr) |" in out
    rows = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert [r["optimizer"] for r in rows] == ["adam", "momentum", "powersign"]
    assert float(rows[0]["rosenbrock_lr"]) in (1e-3, 1e-2)


def test_final_losses_improve_with_steps_and_respect_projection():
    import optlab

    short = final_losses(optlab.adam, rosenbrock(), [0.1], 10)
    long = final_losses(optlab.adam, rosenbrock(), [0.1], 500)
    assert float(long[0]) < float(short[0])
    # every problem runs under the vmapped scan
    for make in PROBLEMS.values():
        assert np.isfinite(np.asarray(final_losses(optlab.sgd, make(), [1e-7], 3))).all()
    # Reddi's online problem: the iterate stays in [-1, 1]
    p = reddi_online()
    assert np.isfinite(float(final_losses(optlab.sgd, p, [10.0], 50)[0]))


@pytest.mark.parametrize("argv,message", [
    (["compare", "--optimizers", "lino"], "unknown optimizer 'lino' (did you mean 'lion'?)"),
    (["train", "--optimizer", "adamm"], "did you mean 'adam'?"),
    (["compare", "--task", "bael"], "did you mean 'beale'?"),
    (["train", "--task", "mnist-1d"], "did you mean 'mnist1d'?"),
    (["train", "--task", "digits", "--model", "mpl"], "did you mean 'mlp'?"),
    (["train", "--task", "digits", "--opt-arg", "b3=0.9"], "did you mean 'b"),
    (["train", "--task", "digits", "--opt-arg", "b2=1.5"], "b2"),
    (["train", "--task", "digits", "--opt-arg", "b2"], "--opt-arg expects NAME=VALUE"),
    (["train", "--task", "digits", "--opt-arg", "b2=import os"], "cannot parse"),
    (["train", "--task", "digits", "--schedule", "cosin_decay"], "did you mean 'cosine_decay'"),
    (["train", "--task", "digits", "--schedule", "cosine_decay(init_value=2)"],
     "set by the learning rate"),
    (["train", "--task", "digits", "--grid", "learning_rate=1,2"], "use --lr"),
    (["train", "--task", "digits", "--batch-size", "100000"], "exceeds"),
    (["train", "--task", "cifar10"], "OPTLAB_CIFAR10_DIR"),
    (["train", "--optimizer", "adam,sgd", "--task", "digits"], "one name"),
])
def test_bad_values_fail_naming_the_flag(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["compare", "--lrs", "0.1,-1"], "values must be finite and > 0"),
    (["compare", "--lrs", "fast"], "expected comma-separated numbers"),
    (["compare", "--steps", "0"], "--steps: must be an integer >= 1"),
    (["train", "--epochs", "0"], "--epochs: must be an integer >= 1"),
    (["train", "--seeds", "x"], "--seeds: expected an integer"),
    (["train", "--val-fraction", "1.5"], "--val-fraction: must be in [0, 1)"),
    (["frobnicate"], "invalid choice"),
])
def test_argparse_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_schedule_and_sign_decay_by_name(tmp_path):
    assert cli.main(["train", *FAST, "--optimizer", "powersign", "--lr", "1e-2",
                     "--schedule", "sgdr(t_0=10, t_mult=2)", "--opt-arg",
                     "sign_decay=linear_sign_decay()", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "results.json").read_text())
    assert record["config"]["schedule"] == "sgdr(t_0=10, t_mult=2)"


def test_console_entry_point_exit_code():
    proc = subprocess.run([sys.executable, "-m", "optlab", "compare", "--optimizers", "nope"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown optimizer 'nope'" in proc.stderr


def test_progress_bar_only_when_asked_or_on_a_terminal(capsys):
    base = ["train", "--task", "digits", "--epochs", "2", "--seeds", "1", "--batch-size", "256"]
    assert cli.main(base) == 0
    assert "epoch" not in capsys.readouterr().err  # stderr is not a terminal here
    assert cli.main([*base, "--progress"]) == 0
    assert "epoch" in capsys.readouterr().err
