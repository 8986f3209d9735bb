"""Two processes joined by jax.distributed (gloo CPU collectives on localhost) train
data-parallel and DiLoCo replicas and get the single-process result; each saves its part of
the checkpoints, and re-running the command restores them in both processes.

Processes started with ``jax.distributed.initialize`` ignore SIGTERM: on a timeout they are
killed with SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

COMMON = ["train", "--task", "mnist1d", "--optimizer", "adamw", "--lr", "3e-3", "--seeds", "1",
          "--epochs", "1", "--batch-size", "64", "--replicas", "2", "--no-progress"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_processes(argvs: list[list[str]], timeout: float = 300
                   ) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, "-m", "optlab", *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for argv in argvs]
    done = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)  # SIGTERM is ignored after initialize
                p.wait()
    return done


@pytest.mark.parametrize("method", [["--parallel", "data_parallel"],
                                    ["--parallel", "diloco", "--inner-steps", "5"]])
def test_two_processes_give_the_single_process_result(method, tmp_path):
    port = _free_port()
    multi = [[*COMMON, *method, "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
              "--process-id", str(i), "--out", str(tmp_path / "multi")] for i in range(2)]
    single = [[*COMMON, *method, "--out", str(tmp_path / "single")]]
    results = _run_processes(multi) + _run_processes(single)
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    assert "results are written by process 0" in results[0].stdout
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == [
        "checkpoints", "curves.png", "optlab.json", "results.json"]
    a = json.loads((tmp_path / "multi" / "results.json").read_text())
    b = json.loads((tmp_path / "single" / "results.json").read_text())
    if method[1] == "data_parallel":  # the same command again: both processes restore
        again = _run_processes(multi)
        for r in again:
            assert r.returncode == 0 and "resumed from epoch 1 of 1" in r.stdout, r.stderr[-3000:]
        assert json.loads((tmp_path / "multi" / "results.json").read_text())["runs"] == a["runs"]
    assert "2 x" in a["device"] and "1 x" in b["device"]
    for key in ("train_loss", "test_loss", "test_accuracy"):
        np.testing.assert_allclose(a["runs"][0]["history"][key],
                                   b["runs"][0]["history"][key], rtol=1e-4,
                                   atol=1e-3, err_msg=key)


@pytest.mark.parametrize("argv,expected", [
    (["--coordinator", "127.0.0.1:1234"], "go together"),
    (["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
     "expected HOST:PORT"),
    (["--coordinator", "127.0.0.1:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in [0, 1]"),
])
def test_bad_distributed_flags(argv, expected, capsys):
    from optlab import cli

    assert cli.main([*COMMON, *argv]) == 2
    assert expected in capsys.readouterr().err


def test_a_refusal_of_process_0_ends_every_process(tmp_path):
    """--out holding someone else's files is refused by process 0 (the only one that checks
    it); process 1 learns it instead of waiting in a collective, and nothing is written."""
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    port = _free_port()
    argvs = [[*COMMON, "--parallel", "data_parallel", "--coordinator", f"127.0.0.1:{port}",
              "--num-processes", "2", "--process-id", str(i), "--out", str(out)]
             for i in range(2)]
    first, second = _run_processes(argvs, timeout=120)
    assert first.returncode == 2 and "not empty" in first.stderr, first.stderr[-2000:]
    assert second.returncode == 2 and "process 0 refused" in second.stderr, second.stderr[-2000:]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
