"""optlab.reproduce's statistics and bookkeeping: decide, verdict_of, significant, mean_std,
Context.cached, load by path, --accelerator."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from optlab import cli, reproduce


def test_significant_is_the_welch_ratio():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.5, 1.0, 1.5])
    diff, z = reproduce.significant(a, b)
    se = math.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 4)
    assert diff == pytest.approx(1.25) and z == pytest.approx(1.25 / se)


def test_significant_without_an_error_estimate_is_nan():
    assert math.isnan(reproduce.significant([1.0], [0.0, 0.1])[1])
    assert math.isnan(reproduce.significant([1.0, 2.0], [0.0])[1])
    assert reproduce.significant([1.0, 1.0], [0.0, 0.0])[1] == math.inf


@pytest.mark.parametrize("a,b,kwargs,expected", [
    ([10.0, 10.1, 9.9], [5.0, 5.1, 4.9], {}, True),  # far better
    ([5.0, 5.1, 4.9], [10.0, 10.1, 9.9], {}, False),  # far worse
    ([5.0, 6.0, 4.0], [5.2, 4.2, 6.2], {}, None),  # within noise
    ([5.0, 5.1, 4.9], [10.0, 10.1, 9.9], {"higher_is_better": False}, True),
    # "matches within 1": ruled in when a ≥ b − 1 by 2 SE, out when a < b − 1 by 2 SE
    ([9.5, 9.6, 9.4], [10.0, 10.1, 9.9], {"margin": -1.0}, True),
    ([8.0, 8.1, 7.9], [10.0, 10.1, 9.9], {"margin": -1.0}, False),
    # no advantage of 1 or more: an equal pair is decided "not better by 1"
    ([10.0, 10.1, 9.9], [10.0, 10.1, 9.9], {"margin": 1.0}, False),
    ([10.0], [5.0, 5.1], {}, None),  # one seed: undecided
])
def test_decide(a, b, kwargs, expected):
    assert reproduce.decide(a, b, **kwargs) is expected


def test_verdict_of_parts():
    assert reproduce.verdict_of({"a": True, "b": True}) is True
    assert reproduce.verdict_of({"a": True, "b": None}) is None
    assert reproduce.verdict_of({"a": None, "b": False}) is False
    assert reproduce.verdict_of({"a": True, "b": False}, parts=["a"]) is True
    assert reproduce.verdict_of({}) is None


def test_mean_std_is_the_sample_std_and_fmt_pm_says_one_run():
    m, s = reproduce.mean_std([1.0, 2.0, 3.0])
    assert m == 2.0 and s == pytest.approx(1.0)
    assert reproduce.fmt_pm([0.5, 0.7], scale=100) == "60.0 ± 14.1"
    assert reproduce.fmt_pm([0.5], scale=100) == "50.0 (1 run)"
    # diverged (not finite) runs are counted, never passed off as fewer runs
    nan = float("nan")
    assert reproduce.fmt_pm([0.5, nan, nan]) == "0.5 (1 of 3 runs finite)"
    assert reproduce.fmt_pm([0.5, 0.7, nan], 100) == "60.0 ± 14.1 (2 of 3 runs finite)"
    assert reproduce.fmt_pm([nan] * 5) == "nan (5 runs, none finite)"


def test_cached_computes_once_per_configuration(tmp_path):
    experiment = reproduce.load("amsgrad")
    ctx = reproduce.Context(experiment, tmp_path, quick=True, seeds=[0])
    calls = []

    def compute(value):
        calls.append(value)
        return {"value": value}

    assert ctx.cached("k", {"lr": 0.1}, lambda: compute(1)) == {"value": 1}
    assert ctx.cached("k", {"lr": 0.1}, lambda: compute(2)) == {"value": 1}
    assert ctx.cached("k", {"lr": 0.2}, lambda: compute(3)) == {"value": 3}
    assert calls == [1, 3]
    files = list((tmp_path / "checkpoints" / "pieces").glob("k-*.json"))
    assert len(files) == 2 and json.loads(files[0].read_text())["value"] in (1, 3)


def test_load_tells_experiments_of_two_folders_apart(tmp_path):
    source = reproduce.experiments_dir() / "amsgrad.py"
    (tmp_path / "amsgrad.py").write_text(
        source.read_text().replace('title="AMSGrad counterexample"', 'title="copy"'))
    ours = reproduce.load("amsgrad")
    theirs = reproduce.load("amsgrad", tmp_path)
    assert theirs.title == "copy" and ours.title != "copy"
    assert reproduce.load("amsgrad") is ours


def test_accelerator_flag_is_refused_where_there_is_no_accelerator_part(tmp_path, capsys):
    plain = [n for n in reproduce.names() if not reproduce.load(n).accelerator]
    assert plain, "some experiment runs whole on a CPU"
    out = tmp_path / "x"
    assert cli.main(["reproduce", plain[0], "--accelerator", "--out", str(out)]) == 2
    assert "--accelerator" in capsys.readouterr().err and not out.exists()
    with_part = [n for n in reproduce.names() if reproduce.load(n).accelerator]
    if with_part:
        assert cli.main(["reproduce", with_part[0], "--accelerator", "--quick", "--out",
                         str(out)]) == 2
        assert "exclude each other" in capsys.readouterr().err


def test_select_prefers_accuracy_then_loss_and_skips_diverged():
    acc = np.array([[0.8, 0.8], [0.9, np.nan], [0.85, 0.85], [0.85, 0.85]])
    loss = np.array([[0.5, 0.5], [0.1, 0.1], [0.4, 0.4], [0.3, 0.3]])
    assert reproduce.select(acc, loss) == 3  # 1 diverged; 2 and 3 tie, 3 has the lower loss
    assert reproduce.select(np.full((2, 2), np.nan), loss[:2]) == 0
    np.testing.assert_array_equal(reproduce.masked([1.0, 2.0], [False, True]), [1.0, np.nan])
