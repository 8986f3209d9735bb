"""A whole search with its log: results, resume after an interruption, refusals."""

from __future__ import annotations

import json
import shutil

import pytest

from optlab.search.run import SearchSettings, load_log, search, top
from optlab.tasks import load_dataset

SETTINGS = SearchSettings(task="digits", strategy="evolution", budget=8, population=4,
                          tournament=2, learning_rates=(0.01, 0.1), epochs=1, seed=3)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("search") / "full"
    messages = []
    result = search(out, SETTINGS, data=data, report=messages.append, progress=False)
    return out, result, messages


def test_search_writes_log_top_and_figure(finished):
    out, result, messages = finished
    rows = load_log(out)
    assert len(rows) == SETTINGS.budget and [r["index"] for r in rows] == list(range(8))
    assert {"formula", "hash", "fingerprint", "scores", "reward", "diverged", "source",
            "seconds", "groups"} <= set(rows[0])
    assert result.best is not None and result.best_reward == max(
        r["reward"] for r in rows if r["reward"] is not None)
    best = json.loads((out / "top.json").read_text())
    assert best == top(rows) and best[0]["reward"] == result.best_reward
    assert (out / "progress.png").stat().st_size > 1000
    assert any(m.startswith("[") and "best" in m for m in messages)
    assert any("cache hit rate" in m for m in messages)


def test_resume_after_an_interruption_equals_the_full_search(finished, tmp_path, data):
    """A log cut mid-population (as by kill -9, torn last line included) resumes: the
    complete population is not trained again, the rest is, and the final log equals the
    uninterrupted search's."""
    out, result, _ = finished
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(out / "search.json", cut / "search.json")
    lines = (out / "log.jsonl").read_text().splitlines(keepends=True)
    (cut / "log.jsonl").write_text("".join(lines[:5]) + lines[5][:20])  # 1 population + torn
    with pytest.raises(ValueError, match="pass resume=True"):
        search(cut, SETTINGS, data=data, report=None, progress=False)
    messages = []
    resumed = search(cut, SETTINGS, data=data, resume=True, report=messages.append,
                     progress=False)
    assert "resumed: 4 candidates in the log" in messages
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in load_log(cut)]
    full = [{k: v for k, v in r.items() if k != "seconds"} for r in load_log(out)]
    assert strip == full
    assert resumed.best_reward == result.best_reward and resumed.best == result.best


def test_refusals(finished, tmp_path, data):
    out, _, _ = finished
    other = SearchSettings(**{**SETTINGS.to_json(), "learning_rates": (0.1,), "seed": 4})
    with pytest.raises(ValueError, match=r"other settings.*learning_rates, seed"):
        search(out, other, data=data, resume=True, report=None, progress=False)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty and holds no search"):
        search(tmp_path, SETTINGS, data=data, report=None, progress=False)
    with pytest.raises(ValueError, match="unknown strategy 'evolve'"):
        search(tmp_path / "new", SearchSettings(strategy="evolve"), data=data, report=None)
