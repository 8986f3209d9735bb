"""The command line refuses what it cannot do, before any work: output folders that hold
something else, flags that mean nothing for the task, bad options of any optimizer, unusable
--out; it reports diverged runs as diverged and speaks in flags."""

from __future__ import annotations

import argparse
import json
import os
import stat

import numpy as np
import pytest

from optlab import cli

PROBLEM = ["compare", "--task", "rosenbrock", "--optimizers", "adam,sgd", "--lrs", "1e-3,1e-2",
           "--steps", "20"]
DIGITS = ["--task", "digits", "--epochs", "1", "--seeds", "1", "--batch-size", "256",
          "--no-progress"]


def _fails(argv, capsys, *messages) -> str:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    for m in messages:
        assert m in captured.err
    assert "Traceback" not in captured.err
    return captured.out


# -------------------------------------------------------------------------- output folders


def test_a_comparison_folder_is_never_overwritten(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert cli.main([*PROBLEM, "--out", str(out)]) == 0
    capsys.readouterr()
    files = {p.name: p.read_bytes() for p in out.iterdir()}
    assert json.loads((out / "optlab.json").read_text())["kind"] == "compare"
    # another comparison into the same folder
    printed = _fails([*PROBLEM[:-1], "30", "--out", str(out)], capsys,
                     "different configuration", "steps")
    assert "| adam |" not in printed
    # a training run into it
    _fails(["train", *DIGITS, "--out", str(out)], capsys, "one folder holds one run, one "
           "comparison or one experiment")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == files
    # the same command again reuses its own folder
    assert cli.main([*PROBLEM, "--out", str(out)]) == 0


def test_a_folder_of_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    _fails([*PROBLEM, "--out", str(tmp_path)], capsys, "is not empty", "optlab.json")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_a_training_folder_refuses_a_comparison(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "optlab.json").write_text(json.dumps({"kind": "train", "config": {}}))
    _fails([*PROBLEM, "--out", str(out)], capsys, "holds a training run")


@pytest.mark.parametrize("where", ["/proc/optlab-x", "FILE/x", "FILE"])
def test_unusable_out_fails_before_any_work(where, tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("")
    out = where.replace("FILE", str(a_file))
    printed = _fails([*PROBLEM, "--out", out], capsys, f"--out {out}")
    assert "| adam |" not in printed  # nothing computed, nothing lost


def test_out_is_checked_by_creating_it(tmp_path, capsys):
    os.chmod(tmp_path, 0o500)
    try:
        if os.access(tmp_path, os.W_OK):  # root ignores permissions
            pytest.skip("running as root")
        _fails([*PROBLEM, "--out", str(tmp_path / "new")], capsys, "cannot write")
    finally:
        os.chmod(tmp_path, 0o700)


# ------------------------------------------------------------- flags on synthetic problems


@pytest.mark.parametrize("flags,flag", [
    (["--epochs", "3"], "--epochs"), (["--patience", "2"], "--patience"),
    (["--model", "mlp"], "--model"), (["--batch-size", "8"], "--batch-size"),
    (["--model-arg", "depth=4"], "--model-arg"), (["--data-seed", "1"], "--data-seed"),
])
def test_dataset_flags_are_refused_on_synthetic_problems(flags, flag, capsys):
    _fails([*PROBLEM, *flags], capsys, f"{flag}", "only for data sets")


def test_steps_is_refused_on_a_dataset(capsys):
    _fails(["compare", *DIGITS, "--steps", "5"], capsys, "--steps: only for synthetic")


def test_opt_arg_grid_schedule_and_seeds_apply_to_synthetic_problems(tmp_path, capsys):
    # an invalid option is no longer ignored
    _fails([*PROBLEM, "--opt-arg", "adam.b1=1.5"], capsys, "b1", "[0, 1)")
    _fails([*PROBLEM, "--schedule", "cosin_decay"], capsys, "did you mean 'cosine_decay'")
    assert cli.main(["compare", "--task", "rosenbrock,reddi_stochastic", "--optimizers",
                     "adam,sgd", "--lrs", "1e-2", "--steps", "30", "--seeds", "2",
                     "--opt-arg", "adam.b1=0.5", "--grid", "adam.b2=0.9,0.99",
                     "--schedule", "cosine_decay", "--out", str(tmp_path)]) == 0
    assert "mean over 2 seeds" in capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["opt_args"] == {"adam": {"b1": "0.5"}, "sgd": {}}
    assert summary["grid"] == {"adam": {"b2": "0.9,0.99"}, "sgd": {}}
    assert summary["schedule"] == "cosine_decay" and summary["seeds"] == 2
    adam, sgd = summary["results"]
    assert adam["rosenbrock_b2"] in (0.9, 0.99) and "rosenbrock_b2" not in sgd


def test_final_losses_takes_hyperparams_schedule_and_seeds():
    import optlab
    from optlab.schedules import cosine_decay
    from optlab.tasks import PROBLEMS, final_losses, rosenbrock

    plain = np.asarray(final_losses(optlab.adam, rosenbrock(), [0.01, 0.01], 30))
    varied = np.asarray(final_losses(optlab.adam, rosenbrock(), [0.01, 0.01], 30,
                                     hyperparams={"b1": [0.9, 0.5]}))
    assert varied[0] == pytest.approx(plain[0]) and varied[1] != pytest.approx(plain[1])
    decayed = final_losses(optlab.adam, rosenbrock(), [0.01], 30,
                           schedule=cosine_decay(1.0, 30))
    assert float(decayed[0]) != pytest.approx(float(plain[0]))
    seeds = np.asarray(final_losses(optlab.adam, PROBLEMS["rosenbrock_noisy"](), [0.01], 30,
                                    seeds=[0, 1]))
    assert seeds.shape == (1, 2) and seeds[0, 0] != seeds[0, 1]
    with pytest.raises(ValueError, match="one per learning rate"):
        final_losses(optlab.adam, rosenbrock(), [0.1], 3, hyperparams={"b1": [0.9, 0.5]})


# ----------------------------------------------------- every optimizer checked up front


def test_every_optimizers_options_are_checked_before_training(capsys):
    printed = _fails(["compare", *DIGITS, "--optimizers", "adam,sgd", "--opt-arg", "b2=0.99"],
                     capsys, "optimizer sgd 'b2'", "--opt-arg adam.b2=0.99")
    assert "| adam |" not in printed
    _fails(["compare", *DIGITS, "--optimizers", "adam,sgd", "--opt-arg", "lion.b2=0.9"],
           capsys, "'lion' is not among --optimizers")
    _fails(["compare", *DIGITS, "--optimizers", "adam,sgd", "--grid", "sgd.momentum=0.5,2"],
           capsys, "--grid (sgd)", "momentum")


def test_an_option_for_one_optimizer(tmp_path):
    assert cli.main([*PROBLEM, "--opt-arg", "adam.b2=0.99", "--opt-arg", "sgd.momentum=0.9",
                     "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["opt_args"] == {"adam": {"b2": "0.99"}, "sgd": {"momentum": "0.9"}}


def test_a_grid_over_a_non_scalar_option_is_refused(capsys):
    _fails([*PROBLEM, "--opt-arg", "sgd.momentum=0.9", "--grid", "sgd.nesterov=0,1"], capsys,
           "--grid nesterov", "--opt-arg")


def test_duplicate_optimizers_are_refused(capsys):
    _fails([*PROBLEM[:3], "--optimizers", "adam,sgd,adam"], capsys,
           "--optimizers: adam given more than once")


# ----------------------------------------------------------------------------- diverged


def test_an_optimizer_whose_every_lr_diverged_is_reported_as_diverged(tmp_path, capsys):
    out2 = tmp_path / "cmp2"
    assert cli.main(["compare", *DIGITS, "--optimizers", "sgd", "--lrs", "1e6,1e7",
                     "--out", str(out2)]) == 0
    text = capsys.readouterr().out
    assert "| sgd | none: diverged at every lr |" in text
    (row,) = json.loads((out2 / "summary.json").read_text())["results"]
    assert row["status"] == "diverged" and row["lr"] is None
    assert row["test_accuracy_mean"] is None and row["diverged_runs"] == 2


def test_the_plot_marks_diverged_runs_and_keeps_its_axes():
    from optlab import plots

    good = {"train_loss": np.array([[2.0, 1.0, 0.5]]), "val_accuracy": np.array([[.5, .6, .7]]),
            "test_accuracy": np.array([[.5, .6, .7]])}
    bad = {"train_loss": np.array([[3.0, 1e21, np.nan]]),
           "val_accuracy": np.array([[.1, .1, np.nan]]),
           "test_accuracy": np.array([[.1, .1, np.nan]])}
    plt, fig = plots.draw_curves({"adam": good, "sgd": bad}, diverged=["sgd"])
    try:
        loss_axis = fig.axes[0]
        assert loss_axis.get_ylim()[1] < 10
        labels = [line.get_label() for line in loss_axis.get_lines()]
        assert labels == ["adam", "sgd (diverged)"]
    finally:
        plt.close(fig)
    # a single epoch is drawn (as a marker), not an invisible zero-length line
    one = {k: v[:, :1] for k, v in good.items()}
    plt, fig = plots.draw_curves({"adam": one})
    try:
        assert fig.axes[0].get_lines()[0].get_marker() == "o"
    finally:
        plt.close(fig)


# -------------------------------------------------------------------------------- messages


@pytest.mark.parametrize("argv,message,absent", [
    (["train", "--task", "digits", "--opt-arg", "b1=abc"], "expected a number",
     "unknown schedule"),
    (["train", "--task", "cifar10"], "--data-dir <folder>", "data_dir="),
    (["compare", "--task", "digits,mnist1d"], "one data set at a time", "unknown"),
    (["compare", "--task", "digits,rosenbrock"], "cannot mix data sets", "unknown"),
    (["compare", "--task", "mnist-1d"], "did you mean 'mnist1d'?", "Traceback"),
    (["train", "--task", "rosenbrock"], "use `optlab compare --task rosenbrock`", "unknown"),
    (["train", "--task", "digits", "--opt-arg", "learning_rate=0.1"], "use --lr/--lrs",
     "multiple values"),
    (["train", "--task", "digits", "--opt-arg", "b2=cosine_decy"],
     "did you mean the schedule 'cosine_decay'", "Traceback"),
])
def test_messages_speak_the_command_line(argv, message, absent, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and absent not in err


def test_negative_learning_rate_names_the_flag_and_range(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--task", "digits", "--lr", "-1e-2"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "argument --lr/--lrs: values must be finite and > 0, got '-1e-2'" in err


def test_library_messages_use_flag_names():
    assert cli._cli_words("checkpoint_dir /x holds a run") == "--out /x holds a run"
    assert cli._cli_words("batch_size=9 exceeds") == "--batch-size 9 exceeds"


# ---------------------------------------------------------------------- help and discovery


def test_every_flag_has_help_with_its_default():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in commands.choices.items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and "default" in action.help, (name, action.option_strings)
    assert "1e-3,3e-3,1e-2,3e-2,1e-1" in commands.choices["compare"].format_help()


def test_version(capsys):
    import optlab

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"optlab {optlab.__version__}"


def test_list_reads_as_text(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for fragment in (":math:", "\\", "{sign}", "``", "data_dir"):
        assert fragment not in out
    line = next(x for x in out.splitlines() if x.startswith("  sign_sgd "))
    assert line.endswith("u_t = -η sign(g_t).")
    line = next(x for x in out.splitlines() if x.startswith("  radam "))
    assert line.endswith("before (optlab.combiners.rectified_ratio).")


def test_list_one_optimizer(capsys):
    assert cli.main(["list", "adam"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("optimizer adam: Adam (Kingma & Ba 2015).")
    assert "m̂_t = m_t/(1-β_1^t)" in out  # the formula, as text
    assert "  b2 = 0.999" in out and "  learning_rate = required" in out
    chain = out[out.index("chain of primitives:"):].splitlines()[1:]
    assert [c.strip().split("(")[0] for c in chain] == [
        "ema", "ema_of_square", "ratio", "scale_by_learning_rate"]
    assert cli.main(["list", "momentum"]) == 0
    assert "optlab.sgd(learning_rate, momentum=momentum" in capsys.readouterr().out
    assert cli.main(["list", "wrn"]) == 0
    assert "depth = 16" in capsys.readouterr().out
    assert cli.main(["list", "adamm"]) == 2
    assert "did you mean 'adam'?" in capsys.readouterr().err


def test_a_resumed_run_says_so(tmp_path, capsys, monkeypatch):
    import optlab.train

    real = optlab.train.train

    def resumed(*args, **kwargs):
        result = real(*args, **kwargs)
        result.resumed_from = 1
        return result

    monkeypatch.setattr(optlab.train, "train", resumed)
    assert cli.main(["train", *DIGITS, "--out", str(tmp_path)]) == 0
    assert "resumed from epoch 1" in capsys.readouterr().out


def test_output_files_honour_the_umask(tmp_path):
    from optlab.io import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600
