"""``optlab search``: run, resume and show an optimizer search (see :mod:`optlab.search.run`).

    optlab search --task mnist1d --strategy evolution --budget 2000 --population 64 --out DIR
    optlab search --out DIR --resume ...          (the same flags: continues from DIR's log)
    optlab search show DIR [--top 10]             (the best programs found so far)

Child tasks (``--task`` / ``--model``; the model defaults to the task's child of
:data:`CHILDREN`): the MNIST-1D MLP (default), the MNIST-1D CNN (``--model cnn1d``), Bello et
al.'s small ConvNet on MNIST-5k (``--task mnist5k``) and on CIFAR-10 from a local copy
(``--task cifar10 --data-dir DIR``).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from optlab.search.run import STRATEGIES, SearchSettings, load_log, search, top

CHILDREN = {"mnist1d": "mlp", "digits": "mlp", "mnist5k": "convnet", "cifar10": "convnet"}
"""Each data set's default child network (``--model``): Bello et al.'s small ConvNet for the
image data sets, the MNIST-1D MLP otherwise."""


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
    p.add_argument("--model", default=None,
                   help="child network, see `optlab list`: mlp, cnn1d (MNIST-1D), convnet "
                   "(Bello et al.'s small ConvNet), ... (default: the task's: "
                   + ", ".join(f"{t} {m}" for t, m in CHILDREN.items()) + ")")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="local copy of CIFAR-10, for --task cifar10 (default: "
                   "$OPTLAB_CIFAR10_DIR)")
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
    p.add_argument("--train-size", type=int_at_least(1), default=None, metavar="N",
                   help="children train on the first N training examples, a random subset "
                   "(a cheaper proxy; default: all)")
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
    model = _check_child(args)
    settings = SearchSettings(
        task=args.task, model=model, strategy=args.strategy, budget=args.budget,
        population=args.population, tournament=args.tournament, groups=args.groups,
        learning_rates=tuple(args.lr), seeds=args.seeds, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, warm_start=args.warm_start,
        train_size=args.train_size)
    data = _load(args.task, args.data_dir)
    _check_model(model, data)
    if args.train_size is not None and args.train_size > len(data.y_train):
        raise CLIError(f"--train-size {args.train_size} exceeds the {len(data.y_train)} "
                       f"training examples of --task {args.task}; allowed range "
                       f"1..{len(data.y_train)}")
    if args.batch_size > (args.train_size or len(data.y_train)):
        raise CLIError(f"--batch-size {args.batch_size} exceeds the "
                       f"{args.train_size or len(data.y_train)} training examples; allowed "
                       f"range 1..{args.train_size or len(data.y_train)}")
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


def _check_child(args) -> str:
    """Checks --task, --model and --data-dir by name (before any data is read); returns the
    child's model name."""
    from optlab._checks import unknown_name
    from optlab.cli import CLIError
    from optlab.tasks import DATASETS, MODELS

    if args.task not in DATASETS:
        raise CLIError(f"--task: {unknown_name('data set', args.task, DATASETS)}")
    model = args.model or CHILDREN[args.task]
    if model not in MODELS:
        raise CLIError(f"--model: {unknown_name('model', model, MODELS)}")
    if args.data_dir is not None and args.task != "cifar10":
        raise CLIError(f"--data-dir is read by --task cifar10 only, not --task {args.task}")
    return model


def _load(task: str, data_dir: str | None = None):
    from optlab.cli import CLIError, _cli_words
    from optlab.tasks import load_dataset

    try:
        return load_dataset(task, data_dir=data_dir)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(f"--task {task}: {_cli_words(str(e))}") from None


def _check_model(model: str, data) -> None:
    """Builds the child abstractly: a model that does not fit the data fails now."""
    from flax import nnx

    from optlab.cli import CLIError
    from optlab.tasks import make_model

    try:
        nnx.eval_shape(lambda: make_model(model, data.input_shape, data.num_classes, rngs=0))
    except (ValueError, TypeError) as e:
        raise CLIError(f"--model {model} does not fit --task {data.name}: {e}") from None


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
