"""Every experiment in experiments/ runs end to end in its quick mode; `optlab reproduce`."""

from __future__ import annotations

import json

import pytest

from optlab import cli, reproduce

NAMES = reproduce.names()


def test_experiments_are_found():
    assert "amsgrad" in NAMES
    for name in NAMES:
        e = reproduce.load(name)
        assert e.name == name and e.claim and e.source and e.title


@pytest.mark.parametrize("name", NAMES)
def test_quick_mode(name, tmp_path, capsys):
    """The quick mode writes results.json, REPORT.md and its figures; the parts of the claim
    the experiment declares decidable at that size hold."""
    out = tmp_path / name
    assert cli.main(["reproduce", name, "--quick", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    record = json.loads((out / reproduce.RESULTS).read_text())
    experiment = reproduce.load(name)
    assert record["experiment"] == name and record["quick"] is True
    assert record["reproduced"] in (True, False, None)
    assert record["summary"].strip() and record["summary"].strip() in printed
    assert record["figures"], "every experiment draws at least one figure"
    for figure in record["figures"]:
        assert (out / figure).stat().st_size > 1000, figure
    assert (out / reproduce.REPORT).read_text().startswith(f"## {experiment.title}")
    for check in experiment.quick_asserts:
        assert record["checks"][check] is True, (check, record["summary"])


def test_reproduce_cli_errors(tmp_path, capsys):
    assert cli.main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in NAMES)
    for argv, expected in [
        (["reproduce", "amsgrd"], "no experiment 'amsgrd'"),
        (["reproduce"], "name an experiment"),
        (["reproduce", "amsgrad", "--list"], "--list takes no NAME"),
        (["reproduce", "amsgrad", "--seeds", "0", "--out", str(tmp_path / "a")], "--seeds"),
    ]:
        assert cli.main(argv) == 2, argv
        assert expected in capsys.readouterr().err, argv


def test_out_folder_is_not_overwritten(tmp_path, capsys):
    """A folder holding something else is refused before any work; the same experiment with
    other settings too."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert cli.main(["reproduce", "amsgrad", "--quick", "--out", str(other)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"
    out = tmp_path / "a"
    assert cli.main(["reproduce", "amsgrad", "--quick", "--seeds", "2", "--out", str(out)]) == 0
    before = (out / reproduce.RESULTS).read_bytes()
    capsys.readouterr()
    assert cli.main(["reproduce", "amsgrad", "--quick", "--seeds", "3", "--out", str(out)]) == 2
    assert "different configuration" in capsys.readouterr().err
    assert (out / reproduce.RESULTS).read_bytes() == before


def test_script_form(tmp_path):
    """`python experiments/NAME.py --quick --out DIR` is the same command."""
    import subprocess
    import sys

    out = tmp_path / "s"
    done = subprocess.run([sys.executable, str(reproduce.experiments_dir() / "amsgrad.py"),
                           "--quick", "--seeds", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / reproduce.RESULTS).read_text())["seeds"] == 1
