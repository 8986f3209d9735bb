"""Resuming from the command line: a damaged checkpoint is reported as one warning line."""

from __future__ import annotations

from pathlib import Path

from optlab import cli

ARGV = ["train", "--task", "digits", "--epochs", "2", "--seeds", "1", "--batch-size", "64",
        "--optimizer", "adam", "--lr", "1e-2"]


def test_damaged_checkpoint_is_one_warning_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*ARGV, "--out", str(out)]) == 0
    capsys.readouterr()
    newest = max((p for p in (out / "checkpoints").iterdir() if p.name.isdigit()),
                 key=lambda p: int(p.name))
    meta = newest / "meta" / "metadata"
    data = bytearray(meta.read_bytes())
    data[len(data) // 2] ^= 0xFF
    meta.write_bytes(bytes(data))
    assert cli.main([*ARGV, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    warning = [line for line in err.splitlines() if line.startswith("optlab: warning:")]
    assert len(warning) == 1 and newest.name in warning[0], err
    assert "Traceback" not in err
    assert any(Path(out / "checkpoints" / "damaged").iterdir())
