"""`optlab train --parallel METHOD --replicas R ...` and `--delay TAU`."""

from __future__ import annotations

import json

import pytest

from optlab import cli


@pytest.mark.parametrize("argv,expected", [
    (["--inner-steps", "3"], "--inner-steps needs --parallel METHOD"),
    (["--replicas", "2", "--non-iid"], "--replicas, --non-iid need --parallel METHOD"),
    (["--parallel", "vote"], "choose from data_parallel, diloco"),
    (["--parallel", "fedavg", "--period", "3"], "--period applies to --parallel easgd or eamsgd"),
    (["--parallel", "diloco", "--parallel-arg", "bogus=1"], "diloco takes no option bogus"),
    (["--parallel", "diloco", "--parallel-arg", "inner_steps=3"], "use --inner-steps"),
    (["--parallel", "easgd", "--parallel-arg", "beta=2"], "beta must be in [0, 1]"),
    (["--parallel", "diloco", "--delay", "2"], "--delay and --parallel are alternatives"),
    (["--parallel", "diloco", "--replicas", "8", "--batch-size", "1024"],
     "--replicas 8 x --batch-size 1024"),
    (["--parallel", "majority_vote", "--replicas", "4", "--adversaries", "4"],
     "adversaries must be in [0, replicas - 1 = 3]"),
    (["--parallel", "data_parallel", "--optimizer", "kfac"],
     "kfac is not supported with replicas"),
])
def test_bad_flags_are_refused_before_any_work(argv, expected, capsys, tmp_path):
    out = tmp_path / "run"
    assert cli.main(["train", *argv, "--out", str(out), "--no-progress"]) == 2
    assert expected in capsys.readouterr().err
    assert not (out / "results.json").exists()


def test_diloco_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "diloco"
    argv = ["train", "--optimizer", "adamw", "--lr", "3e-3", "--seeds", "1", "--epochs", "1",
            "--parallel", "diloco", "--replicas", "2", "--inner-steps", "5", "--non-iid",
            "--parallel-arg", "outer_momentum=0.5", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["config"]["parallel"] == "diloco" and record["config"]["non_iid"] is True
    assert record["config"]["replicas"] == 2 and record["config"]["inner_steps"] == 5
    capsys.readouterr()
    # the same run resumes from its checkpoint; another method is refused in that folder
    assert cli.main(argv) == 0
    other = [a if a != "5" else "6" for a in argv]
    assert cli.main(other) == 2
    assert "different configuration" in capsys.readouterr().err


def test_delay_trains_asynchronous_sgd(tmp_path):
    out = tmp_path / "async"
    assert cli.main(["train", "--optimizer", "sgd", "--lr", "0.1", "--seeds", "1",
                     "--epochs", "1", "--delay", "4", "--out", str(out),
                     "--no-progress"]) == 0
    assert json.loads((out / "results.json").read_text())["config"]["delay"] == 4


def test_kfac_on_a_synthetic_problem_is_refused(capsys):
    """K-FAC reads the model's layer statistics: a synthetic problem has none."""
    argv = ["compare", "--task", "rosenbrock", "--optimizers", "kfac,adam", "--steps", "5"]
    assert cli.main(argv) == 2
    assert "kfac needs a data set and its model" in capsys.readouterr().err
