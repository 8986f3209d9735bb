"""``optlab train --program FORMULA``: a formula of the optimizer-search language as the
optimizer (issue 8), with resume, refusal of another formula, and errors naming the flag."""

from __future__ import annotations

import json

import pytest

from optlab import cli

POWERSIGN = "exp(sign(g) * sign(m)) * g"
ARGV = ["train", "--task", "digits", "--epochs", "2", "--seeds", "1", "--batch-size", "64",
        "--lr", "0.1"]


def test_trains_a_formula_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*ARGV, "--program", POWERSIGN, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "program g * exp(sign(g) * sign(m))" in text  # the canonical form
    results = json.loads((out / "results.json").read_text())
    accuracy = results["test_accuracy_per_seed"][0]["test_accuracy"][0]
    assert accuracy > 0.5, text
    marker = json.loads((out / cli.MARKER).read_text())["config"]
    assert marker["program"] == "g * exp(sign(g) * sign(m))"
    assert marker["optimizer"] == "program"
    # the same command resumes (an equivalent writing of the formula is the same run)
    assert cli.main([*ARGV, "--program", "g*exp(sign(m)*sign(g))", "--out", str(out)]) == 0
    again = capsys.readouterr().out
    assert "resumed from epoch 2 of 2" in again
    assert json.loads((out / "results.json").read_text())["test_accuracy_per_seed"][0][
        "test_accuracy"][0] == accuracy
    # a different formula into the same folder is refused before training
    assert cli.main([*ARGV, "--program", "sign(m) * g", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "program" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["--program", "exp(sign(g)*sign(m)*g"], "--program"),
    (["--program", "exp(sign(g)*sign(m)*g"], "column 22"),
    (["--program", "foo(g)"], "unknown name 'foo' at column 1"),
    (["--program", POWERSIGN, "--optimizer", "adam"], "--program and --optimizer"),
    (["--program", POWERSIGN, "--grid", "beta1=0.9,0.99"], "--grid: not available with "
                                                           "--program"),
    (["--program", POWERSIGN, "--opt-arg", "decay_step=9"], "did you mean 'decay_steps'"),
    (["--program", POWERSIGN, "--opt-arg", "decay_steps=1.5"], "expected int"),
    (["--program", POWERSIGN, "--opt-arg", "learning_rate=0.1"], "use --lr"),
])
def test_bad_program_arguments_fail_naming_the_flag(argv, message, capsys):
    assert cli.main(["train", "--task", "digits", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("optlab: error:") and message in err, err
    assert "Traceback" not in err


def test_search_config_options(tmp_path, capsys):
    """--opt-arg sets SearchConfig fields (here T of the decay operand ld)."""
    out = tmp_path / "run"
    argv = [*ARGV[:4], "1", *ARGV[5:], "--program", "ld * g", "--opt-arg", "decay_steps=50",
            "--out", str(out)]
    assert cli.main(argv) == 0
    marker = json.loads((out / cli.MARKER).read_text())["config"]
    assert marker["opt_args"] == {"decay_steps": "50"} and marker["program"] == "g * ld"
    capsys.readouterr()
    argv[argv.index("decay_steps=50")] = "decay_steps=60"
    assert cli.main(argv) == 2  # another setting is another run
    assert "differs in: opt_args" in capsys.readouterr().err
