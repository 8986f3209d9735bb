"""``optlab search`` and ``optlab search show`` from the command line."""

from __future__ import annotations

import json

import pytest

from optlab import cli
from tests.test_datasets import _write_cifar

ARGS = ["search", "--task", "digits", "--budget", "4", "--population", "4", "--epochs", "1",
        "--lrs", "0.01,0.1", "--groups", "2", "--seed", "1", "--no-progress"]


def test_search_show_and_resume(tmp_path, capsys):
    out = tmp_path / "s"
    assert cli.main([*ARGS, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "best reward" in text and "| rank | reward |" in text
    assert len((out / "log.jsonl").read_text().splitlines()) == 4
    assert json.loads((out / "top.json").read_text())
    assert cli.main(["search", "show", str(out), "--top", "2"]) == 0
    shown = capsys.readouterr().out
    assert "4 candidates" in shown and shown.count("\n| ") == 3  # header + 2 rows
    # The same command again needs --resume; with it, the finished search just reports.
    assert cli.main([*ARGS, "--out", str(out)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert cli.main([*ARGS, "--out", str(out), "--resume"]) == 0
    assert len((out / "log.jsonl").read_text().splitlines()) == 4


def test_bad_search_flags(tmp_path, capsys):
    for argv, expected in [
        ([*ARGS, "--out", str(tmp_path / "a"), "--warm-start", "sgn(g)"], "--warm-start"),
        ([*ARGS, "--out", str(tmp_path / "b"), "--tournament", "9"], "--tournament 9"),
        ([*ARGS, "--out", str(tmp_path / "c"), "--strategy", "random", "--warm-start", "g"],
         "--warm-start needs"),
        (["search", "--task", "digitz", "--out", str(tmp_path / "d")], "did you mean"),
        (["search", "show", str(tmp_path)], "holds no search"),
        ([*ARGS, "--out", str(tmp_path / "e"), "--model", "convnett"], "did you mean"),
        ([*ARGS, "--out", str(tmp_path / "f"), "--data-dir", str(tmp_path)],
         "--data-dir is read by --task cifar10 only"),
        (["search", "--task", "mnist5k", "--model", "cnn1d", "--out", str(tmp_path / "g")],
         "--model cnn1d does not fit --task mnist5k"),
        ([*ARGS, "--out", str(tmp_path / "i"), "--train-size", "100000"],
         "--train-size 100000 exceeds"),
        ([*ARGS, "--out", str(tmp_path / "j"), "--train-size", "10", "--batch-size", "32"],
         "--batch-size 32 exceeds the 10"),
        (["search", "--task", "cifar10", "--data-dir", str(tmp_path / "none"),
          "--out", str(tmp_path / "h")], "--task cifar10"),
    ]:
        assert cli.main(argv) == 2, argv
        assert expected in capsys.readouterr().err, argv


def test_search_with_the_controller(tmp_path, capsys):
    out = tmp_path / "c"
    argv = [*ARGS, "--strategy", "controller", "--out", str(out)]
    assert cli.main(argv) == 0
    assert len((out / "log.jsonl").read_text().splitlines()) == 4


def test_resume_after_sigkill_equals_an_uninterrupted_search(tmp_path):
    """kill -9 during the second population; --resume ends with the uninterrupted log."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = [*ARGS[:4], "8", *ARGS[5:]]  # budget 8: two populations of 4
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "optlab", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    log = killed / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert log.exists() and len(log.read_text().splitlines()) >= 4
    assert cli.main([*args, "--out", str(killed), "--resume"]) == 0
    full = tmp_path / "full"
    assert cli.main([*args, "--out", str(full)]) == 0

    def rows(folder):
        return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
                for line in (folder / "log.jsonl").read_text().splitlines()]

    assert rows(killed) == rows(full)


CHILD_ARGS = ["--budget", "2", "--population", "2", "--epochs", "1", "--lrs", "0.01",
              "--groups", "1", "--train-size", "256", "--batch-size", "32", "--no-progress"]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "model", "child"), [
    ("mnist1d", "cnn1d", "cnn1d"),
    ("mnist5k", None, "convnet"),
    ("cifar10", None, "convnet"),
])
def test_each_child_task_runs(task, model, child, tmp_path, capsys):
    """The MNIST-1D CNN, the MNIST-5k ConvNet and Bello's ConvNet on a local CIFAR-10 copy
    (a small one in the real format here) each train a population end to end."""
    argv = ["search", "--task", task, *CHILD_ARGS, "--out", str(tmp_path / "s")]
    if model:
        argv += ["--model", model]
    if task == "cifar10":
        _write_cifar(tmp_path / "cifar", n=64)  # 320 images: 288 train
        argv += ["--data-dir", str(tmp_path / "cifar")]
    assert cli.main(argv) == 0
    assert "best reward" in capsys.readouterr().out
    settings = json.loads((tmp_path / "s" / "search.json").read_text())
    assert (settings["task"], settings["model"], settings["train_size"]) == (task, child, 256)
    rows = [json.loads(line) for line in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and any(r["reward"] is not None for r in rows)
