"""``optlab search`` and ``optlab search show`` from the command line."""

from __future__ import annotations

import json

from optlab import cli

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
