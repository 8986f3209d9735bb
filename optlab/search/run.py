"""A whole search: strategy × evaluator, with an append-only log that makes it resumable.

``<out>/search.json`` holds the settings; ``<out>/log.jsonl`` one line per evaluated candidate
(program groups, formula, hash, fingerprint, per-learning-rate scores, reward, diverged,
source, seconds), written and flushed (``fsync``) once per population. A search interrupted
at any point (Ctrl-C, ``kill -9``) resumes from the log: the strategy is told the logged
candidates again (same seed → the same future candidates), the evaluator's cache is refilled
from them (nothing logged is trained twice), and a population that was not completely logged
is evaluated again. The result equals an uninterrupted search's. At the end ``top.json`` lists
the best programs and ``progress.png`` plots best and median reward against candidates.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optlab.io import atomic_save_figure, atomic_write_json
from optlab.search.evaluator import Evaluation, Evaluator
from optlab.search.program import Program
from optlab.search.strategies import (
    RandomSearch,
    RegularizedEvolution,
    SearchResult,
    Strategy,
    run_search,
)

__all__ = ["SearchSettings", "load_log", "search", "top"]

STRATEGIES = ("evolution", "random", "controller")


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Everything that defines a search (its identity: resuming needs the same settings)."""

    task: str = "mnist1d"
    model: str = "mlp"
    strategy: str = "evolution"
    budget: int = 2000
    population: int = 64
    tournament: int | None = None
    groups: int = 2
    learning_rates: tuple[float, ...] = (1e-3, 1e-2, 1e-1)
    seeds: int = 1
    epochs: int = 2
    batch_size: int = 128
    seed: int = 0
    warm_start: str | None = None
    train_size: int | None = None  # children train on the first N training examples

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["learning_rates"] = list(self.learning_rates)
        return d


def with_train_size(data: Any, train_size: int | None) -> Any:
    """``data`` with only its first ``train_size`` training examples (a random subset: the
    training split is in permuted order); all of them for None."""
    if train_size is None:
        return data
    n = len(data.y_train)
    if isinstance(train_size, bool) or not isinstance(train_size, int) \
            or not 1 <= train_size <= n:
        raise ValueError(f"train_size must be an int in 1..{n} (the training examples of "
                         f"{data.name!r}), got {train_size!r}")
    return dataclasses.replace(data, x_train=data.x_train[:train_size],
                               y_train=data.y_train[:train_size])


def _strategy(s: SearchSettings) -> Strategy:
    if s.strategy == "random":
        return RandomSearch(s.groups, s.seed)
    if s.strategy == "controller":  # one policy update per population
        from optlab.search.controller import Controller

        return Controller(s.groups, s.seed, batch_size=s.population)
    if s.strategy == "evolution":
        kw = {} if s.tournament is None else {"tournament": s.tournament}
        return RegularizedEvolution(s.groups, s.seed, population=s.population,
                                    warm_start=s.warm_start, **kw)
    from optlab._checks import unknown_name

    raise unknown_name("strategy", s.strategy, STRATEGIES)


def load_log(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete populations of ``out/log.jsonl`` (a population cut short by an
    interruption, or a torn last line, is left out)."""
    path = Path(out) / "log.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line torn by kill -9: everything after it is incomplete
    complete, batch = [], []
    for row in rows:
        if batch and row["batch"] != batch[0]["batch"]:
            batch = []
        batch.append(row)
        if len(batch) == row["batch_size"]:
            complete.extend(batch)
            batch = []
    return complete


def _evaluation(row: dict[str, Any]) -> Evaluation:
    fields = {f.name for f in dataclasses.fields(Evaluation)}
    kw = {k: row[k] for k in fields}
    kw["reward"] = _reward(row)
    return Evaluation(**kw)


def _append(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, allow_nan=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def top(rows: Sequence[dict[str, Any]], k: int = 10) -> list[dict[str, Any]]:
    """The ``k`` best distinct programs (by canonical hash) of a log, best first."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["reward"] is not None and (r["hash"] not in best
                                        or r["reward"] > best[r["hash"]]["reward"]):
            best[r["hash"]] = r
    return sorted(best.values(), key=lambda r: (-r["reward"], r["index"]))[:k]


def search(out: str | os.PathLike, settings: SearchSettings = SearchSettings(), *,
           resume: bool = False, data: Any = None,
           report: Callable[[str], None] | None = print, progress: bool | None = None):
    """Runs (or resumes) the search of ``settings`` into folder ``out``; returns the
    :class:`~optlab.search.strategies.SearchResult` over the whole log."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    marker, log_path = out / "search.json", out / "log.jsonl"
    wanted = settings.to_json()
    if marker.exists():
        found = json.loads(marker.read_text())
        if found != wanted:
            diff = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise ValueError(f"{out} holds a search with other settings ({', '.join(diff)}); "
                             "choose another folder")
        if not resume:
            raise ValueError(f"{out} already holds this search; pass resume=True (--resume) "
                             "to continue it")
    elif any(out.iterdir()):
        raise ValueError(f"{out} is not empty and holds no search; choose another folder")
    else:
        atomic_write_json(marker, wanted)

    strategy = _strategy(settings)
    if data is None:
        from optlab.tasks import load_dataset

        data = load_dataset(settings.task)
    data = with_train_size(data, settings.train_size)
    evaluator = Evaluator(data, settings.model, learning_rates=settings.learning_rates,
                          seeds=settings.seeds, epochs=settings.epochs,
                          batch_size=settings.batch_size, num_groups=settings.groups)
    rows = load_log(out)
    if log_path.exists():  # drop an incomplete population before appending after it
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in rows)
        tmp = log_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, log_path)
    done = len(rows)
    for start in range(0, done, settings.population):
        batch = rows[start:start + settings.population]
        strategy.tell([Program.from_json(r["groups"]) for r in batch],
                      [_reward(r) for r in batch])
        for r in batch:
            evaluator.remember(_evaluation(r))
    if report and done:
        report(f"resumed: {done} candidates in the log")

    best = {"reward": max((r["reward"] for r in rows if r["reward"] is not None),
                          default=-math.inf)}
    bar = _progress(settings.budget, done, progress)

    def evaluate(programs: list[Program]) -> list[float]:
        evaluations = evaluator.evaluate(programs)
        batch = len(rows) // settings.population
        new = [{"index": len(rows) + i, "batch": batch, "batch_size": len(programs),
                "groups": p.to_json(), **e.to_json()}
               for i, (p, e) in enumerate(zip(programs, evaluations, strict=True))]
        _append(log_path, new)
        rows.extend(new)
        for r in new:
            if r["reward"] is not None and r["reward"] > best["reward"]:
                best["reward"] = r["reward"]
                if report:
                    report(f"[{r['index'] + 1}] best {r['reward']:.4f}: {r['formula']}")
        if bar is not None:
            bar.update(len(programs))
            bar.set_postfix(best=f"{best['reward']:.4f}", cache=f"{evaluator.hit_rate:.0%}")
        return [e.reward for e in evaluations]

    if done < settings.budget:
        run_search(strategy, evaluate, settings.budget - done, settings.population)
    if bar is not None:
        bar.close()
    atomic_write_json(out / "top.json", top(rows))
    _plot(rows, out / "progress.png")
    if report:
        report(f"cache hit rate {evaluator.hit_rate:.1%} this session; "
               f"{len({r['hash'] for r in rows})} distinct programs in {len(rows)} candidates")
    return _result(rows)


def _reward(row: dict[str, Any]) -> float:
    """A logged reward (diverged is stored as null)."""
    return -math.inf if row["reward"] is None else float(row["reward"])


def _result(rows: Sequence[dict[str, Any]]) -> SearchResult:
    return SearchResult.of([(Program.from_json(r["groups"]), _reward(r)) for r in rows])


def _progress(total: int, done: int, enabled: bool | None):
    import sys

    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="candidates", unit="prog")


def _plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rewards = np.array([np.nan if r["reward"] is None else r["reward"] for r in rows])
    batches = sorted({r["batch"] for r in rows})
    x, best, median = [], [], []
    for b in batches:
        idx = [i for i, r in enumerate(rows) if r["batch"] == b]
        x.append(idx[-1] + 1)
        best.append(np.nanmax(rewards[: idx[-1] + 1]) if np.any(
            np.isfinite(rewards[: idx[-1] + 1])) else np.nan)
        finite = rewards[idx][np.isfinite(rewards[idx])]
        median.append(np.median(finite) if finite.size else np.nan)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(x, best, marker="o", label="best so far")
    ax.plot(x, median, marker=".", label="median of the population")
    ax.set_xlabel("candidates evaluated")
    ax.set_ylabel("reward (validation accuracy)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save_figure(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
