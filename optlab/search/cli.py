"""``optlab search``: run, resume and show an optimizer search (see :mod:`optlab.search.run`).

    optlab search --task mnist1d --strategy evolution --budget 2000 --population 64 --out DIR
    optlab search --out DIR --resume ...          (the same flags: continues from DIR's log)
    optlab search show DIR [--top 10]             (the best programs found so far)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from optlab.search.run import STRATEGIES, SearchSettings, load_log, search, top


def add_parser(sub: Any, int_at_least, lrs) -> None:
    """Adds ``search`` to the ``optlab`` command's subparsers (``int_at_least`` and ``lrs``
    are the CLI's argument types)."""
    defaults = SearchSettings()
    p = sub.add_parser(
        "search", help="search Bello et al.'s space of update rules (one compiled program per "
        "population); `optlab search show DIR` prints the best found",
        description="Searches Bello et al. (2017)'s space of update rules: each population of "
        "candidate programs trains as one compiled program (programs x learning rates x "
        "seeds); duplicates (canonical hash, functional fingerprint) are trained once. Writes "
        "DIR/log.jsonl (append-only, one line per candidate), DIR/top.json and "
        "DIR/progress.png; an interrupted search resumes with --resume. "
        "`optlab search show DIR` prints the best programs.")
    p.add_argument("--task", default=defaults.task,
                   help=f"data set of the child networks (default: {defaults.task})")
    p.add_argument("--model", default=defaults.model,
                   help=f"child network, see `optlab list` (default: {defaults.model})")
    p.add_argument("--strategy", default=defaults.strategy, choices=STRATEGIES,
                   help=f"search strategy (default: {defaults.strategy})")
    p.add_argument("--budget", type=int_at_least(1), default=defaults.budget, metavar="N",
                   help=f"candidates to evaluate (default: {defaults.budget})")
    p.add_argument("--population", type=int_at_least(1), default=defaults.population,
                   metavar="N", help="candidates per population (trained together) and "
                   f"evolution's population size (default: {defaults.population})")
    p.add_argument("--tournament", type=int_at_least(1), default=None, metavar="N",
                   help="evolution's tournament size (default: population // 4)")
    p.add_argument("--groups", type=int_at_least(1), default=defaults.groups, metavar="N",
                   help=f"5-token groups per program (default: {defaults.groups})")
    p.add_argument("--lr", "--lrs", dest="lr", type=lrs,
                   default=list(defaults.learning_rates), metavar="LR[,LR...]",
                   help="learning rates each program is tried at; the reward is the best "
                   "(default: 1e-3,1e-2,1e-1)")
    p.add_argument("--seeds", type=int_at_least(1), default=defaults.seeds, metavar="N",
                   help=f"seeds per learning rate (default: {defaults.seeds})")
    p.add_argument("--epochs", type=int_at_least(1), default=defaults.epochs, metavar="N",
                   help=f"training budget of a child, in epochs (default: {defaults.epochs})")
    p.add_argument("--batch-size", type=int_at_least(1), default=defaults.batch_size,
                   metavar="N", help=f"child mini-batch size (default: {defaults.batch_size})")
    p.add_argument("--seed", type=int_at_least(0), default=defaults.seed, metavar="N",
                   help=f"the search's seed (default: {defaults.seed})")
    p.add_argument("--warm-start", default=None, metavar="FORMULA",
                   help="evolution starts from this program and its mutants, e.g. "
                   "'m / (sqrt(v) + eps)' (Adam) (default: random programs)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="the search's folder (no default: required)")
    p.add_argument("--resume", action="store_true",
                   help="continue the search in --out from its log (default: start anew)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")
    p.set_defaults(func=cmd_search)
    show = sub.add_parser("search-show", help="the best programs of a search (also spelt "
                          "`optlab search show DIR`)",
                          description="Prints the best programs of a search folder.")
    show.add_argument("dir", metavar="DIR",
                      help="a folder written by `optlab search` (no default: required)")
    show.add_argument("--top", type=int_at_least(1), default=10, metavar="K",
                      help="how many programs (default: 10)")
    show.set_defaults(func=cmd_show)


def cmd_search(args) -> int:
    from optlab.cli import CLIError

    if args.strategy == "evolution" and args.tournament is not None \
            and args.tournament > args.population:
        raise CLIError(f"--tournament {args.tournament} must be <= --population "
                       f"{args.population}")
    warm = None
    if args.warm_start is not None:
        if args.strategy != "evolution":
            raise CLIError("--warm-start needs --strategy evolution")
        from optlab.search.program import parse

        try:
            warm = parse(args.warm_start)
        except ValueError as e:
            raise CLIError(f"--warm-start {args.warm_start!r}: {e}") from None
        if len(warm) > args.groups:
            raise CLIError(f"--warm-start has {len(warm)} groups; --groups is {args.groups}")
    settings = SearchSettings(
        task=args.task, model=args.model, strategy=args.strategy, budget=args.budget,
        population=args.population, tournament=args.tournament, groups=args.groups,
        learning_rates=tuple(args.lr), seeds=args.seeds, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, warm_start=args.warm_start)
    data = _load(args.task)
    try:
        result = search(Path(args.out), settings, resume=args.resume, data=data,
                        progress=args.progress)
    except ValueError as e:
        raise CLIError(f"--out {args.out}: {e}") from None
    if result.best is None:
        print("every candidate diverged")
    else:
        print(f"best reward {result.best_reward:.4f}: {result.best}")
    _print_top(load_log(args.out), 10)
    return 0


def _load(task: str):
    from optlab.cli import CLIError
    from optlab.tasks import DATASETS, load_dataset

    if task not in DATASETS:
        from optlab._checks import unknown_name

        raise CLIError(f"--task: {unknown_name('data set', task, DATASETS)}")
    try:
        return load_dataset(task)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(f"--task {task}: {e}") from None


def cmd_show(args) -> int:
    from optlab.cli import CLIError

    folder = Path(args.dir)
    if not (folder / "search.json").exists():
        raise CLIError(f"{folder} holds no search (no search.json)")
    rows = load_log(folder)
    print(f"{len(rows)} candidates, {len({r['hash'] for r in rows})} distinct programs")
    _print_top(rows, args.top)
    return 0


def _print_top(rows, k: int) -> None:
    best = top(rows, k)
    if not best:
        return
    print("| rank | reward | scores by learning rate | formula |")
    print("|---|---|---|---|")
    for i, r in enumerate(best, 1):
        scores = ", ".join(f"{lr}: {'diverged' if v is None else f'{v:.4f}'}"
                           for lr, v in r["scores"].items())
        reward = "diverged" if r["reward"] is None or math.isinf(r["reward"]) \
            else f"{r['reward']:.4f}"
        print(f"| {i} | {reward} | {scores} | {r['formula']} |")
