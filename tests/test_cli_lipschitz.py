"""``lipschitz_sgd`` from the command line: --lr scales the LipschitzLR step 1/K."""

from __future__ import annotations

import json

from optlab import cli, registry

FAST = ["--task", "digits", "--epochs", "2", "--seeds", "1", "--batch-size", "64"]


def test_train_lipschitz_sgd(tmp_path, capsys):
    out = tmp_path / "lip"
    argv = ["train", *FAST, "--optimizer", "lipschitz_sgd", "--lr", "0.3",
            "--opt-arg", "momentum=0.9", "--out", str(out)]
    assert cli.main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["runs"][0]["test_accuracy"] > 0.8  # chance is 0.1


def test_lipschitz_sgd_needs_a_data_set(capsys):
    assert cli.main(["compare", "--task", "rosenbrock", "--optimizers", "lipschitz_sgd"]) == 2
    assert "needs a classification data set" in capsys.readouterr().err


def test_list_lipschitz_sgd(capsys):
    assert cli.main(["list", "lipschitz_sgd"]) == 0
    out = capsys.readouterr().out
    assert "LipschitzLR" in out and "num_classes = the data set's number of classes" in out
    assert "lipschitz_sgd" in registry.OPTIMIZERS
