"""The ``optlab`` command line: list, train and compare optimizers.

* ``optlab list`` — optimizers, schedules, tasks and models with one-line descriptions.
* ``optlab train --task mnist1d --model mlp --optimizer adam --lr 1e-2 --epochs 20 --seeds 3
  --out runs/x`` — trains (a grid over learning rates × seeds in one compiled program), prints
  a summary, writes ``results.json`` and ``curves.png``; re-running resumes from checkpoints.
* ``optlab compare --task mnist1d --optimizers sgd,momentum,adam --lrs 1e-3,1e-2 --seeds 3
  --out runs/cmp`` — per optimizer, the best learning rate on validation and its test accuracy
  (mean ± std over seeds): a table printed and written as ``summary.csv`` / ``summary.json``,
  and one figure of the learning curves. ``--task`` may also name synthetic problems
  (``rosenbrock,beale``), compared by final loss.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optlab import registry
from optlab._checks import unknown_name

DEFAULT_OPTIMIZERS = "sgd,momentum,adam,amsgrad,adamw,powersign,addsign,lion"
DEFAULT_LRS = "1e-3,3e-3,1e-2,3e-2,1e-1"
PROBLEM_LRS = "1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1"
TASK_MODELS = {"mnist1d": "mlp", "digits": "mlp", "mnist5k": "convnet", "cifar10": "wrn"}


class CLIError(Exception):
    """A user error: printed as ``optlab: error: ...`` with exit status 2."""


# --------------------------------------------------------------------------------------------
# argument types (argparse reports their errors with the flag name and exits with status 2)


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}"
                                             ) from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _lrs(text: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}"
                                         ) from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise argparse.ArgumentTypeError(f"values must be finite and > 0, got {text!r}")
    return values


def _names(text: str, valid: Sequence[str], flag: str, kind: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError(f"{flag} is empty")
    for n in names:
        if n not in valid:
            raise CLIError(f"{flag}: {unknown_name(kind, n, valid)}")
    return names


def _key_values(items: Sequence[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise CLIError(f"{flag} expects NAME=VALUE, got {item!r}")
        if key.strip() in out:
            raise CLIError(f"{flag}: {key.strip()!r} given twice")
        out[key.strip()] = value.strip()
    return out


# --------------------------------------------------------------------------------------------
# building runs


def _optimizer_kwargs(name: str, opt_args: dict[str, str], grid: dict[str, str],
                      total_steps: int) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Parses ``--opt-arg`` and ``--grid`` for optimizer ``name`` and checks they build."""
    fn = registry.optimizer(name)
    for flag, names in (("--opt-arg", opt_args), ("--grid", grid)):
        try:
            registry.check_arguments(f"optimizer {name}", fn, names)
        except ValueError as e:
            raise CLIError(f"{flag}: {e}") from None
    static = {}
    for key, text in opt_args.items():
        try:
            static[key] = registry.parse_value(text, total_steps=total_steps)
        except ValueError as e:
            raise CLIError(f"--opt-arg {key}={text}: {e}") from None
    swept = {}
    for key, text in grid.items():
        if key == "learning_rate":
            raise CLIError("--grid learning_rate: use --lr/--lrs for learning rates")
        try:
            swept[key] = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise CLIError(f"--grid {key}={text}: expected comma-separated numbers") from None
        if not swept[key]:
            raise CLIError(f"--grid {key} is empty")
    return static, swept


def _check_builds(name: str, static: dict, hyperparams: dict[str, list[float]]) -> None:
    fn = registry.optimizer(name)
    for i in range(max(len(v) for v in hyperparams.values())):
        point = {k: v[min(i, len(v) - 1)] for k, v in hyperparams.items()}
        try:
            fn(**static, **point)
        except (ValueError, TypeError) as e:
            flag = "--lr" if "learning_rate" in str(e) else "--opt-arg/--grid"
            raise CLIError(f"{flag} ({name}): {e}") from None


def _load_task(args) -> Any:
    from optlab.tasks import load_dataset

    try:
        return load_dataset(args.task, seed=args.data_seed, val_fraction=args.val_fraction,
                            data_dir=args.data_dir)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(f"--task {args.task}: {e}") from None


def _model_name(args, data) -> str:
    from optlab.tasks.models import MODELS

    name = args.model or TASK_MODELS.get(data.name, "mlp")
    if name not in MODELS:
        raise CLIError(f"--model: {unknown_name('model', name, MODELS)}")
    return name


def _train_one(args, data, model: str, opt_name: str, out: Path | None) -> Any:
    import functools

    from optlab.train import train

    steps_per_epoch = len(data.y_train) // args.batch_size
    if steps_per_epoch < 1:
        raise CLIError(f"--batch-size {args.batch_size} exceeds the {len(data.y_train)} "
                       f"training examples of {data.name}; allowed range "
                       f"1..{len(data.y_train)}")
    total = steps_per_epoch * args.epochs
    static, swept = _optimizer_kwargs(opt_name, _key_values(args.opt_arg, "--opt-arg"),
                                      _key_values(args.grid, "--grid"), total)
    hyperparams = {"learning_rate": args.lr, **swept}
    _check_builds(opt_name, static, hyperparams)
    schedule = None
    if args.schedule:
        try:
            name, kwargs = registry.parse_call(args.schedule)
            schedule = registry.schedule(name, kwargs, total_steps=total, unit=True)
        except ValueError as e:
            raise CLIError(f"--schedule: {e}") from None
    config = {"task": data.name, "model": model,
              "model_args": _key_values(args.model_arg, "--model-arg"), "optimizer": opt_name,
              "opt_args": dict(_key_values(args.opt_arg, "--opt-arg")),
              "hyperparams": hyperparams, "schedule": args.schedule,
              "seeds": args.seeds, "epochs": args.epochs, "batch_size": args.batch_size,
              "patience": args.patience, "val_fraction": args.val_fraction,
              "data_seed": args.data_seed, "dataset": data.summary()}
    model_fn = _model_factory(model, _key_values(args.model_arg, "--model-arg"), data)
    optimizer = functools.partial(registry.optimizer(opt_name), **static)
    optimizer.__name__ = opt_name  # type: ignore[attr-defined]
    try:
        return train(data, model_fn, optimizer, hyperparams=hyperparams, seeds=args.seeds,
                     epochs=args.epochs, batch_size=args.batch_size, schedule=schedule,
                     patience=args.patience, config=config, progress=args.progress,
                     unroll=True if args.unroll else 1,
                     checkpoint_dir=None if out is None else out / "checkpoints")
    except ValueError as e:
        raise CLIError(str(e)) from None


def _model_factory(name: str, options: dict[str, str], data):
    """``rngs -> model`` with ``--model-arg`` options parsed as literals; checked now."""
    from flax import nnx

    from optlab.tasks.models import make_model

    parsed = {}
    for key, text in options.items():
        try:
            parsed[key] = registry.parse_value(text)
        except ValueError as e:
            raise CLIError(f"--model-arg {key}={text}: {e}") from None
    if isinstance(parsed.get("hidden"), list):
        parsed["hidden"] = tuple(parsed["hidden"])
    try:
        nnx.eval_shape(lambda: make_model(name, data.input_shape, data.num_classes, rngs=0,
                                          **parsed))
    except (ValueError, TypeError) as e:
        raise CLIError(f"--model-arg: {e}") from None
    return lambda rngs: make_model(name, data.input_shape, data.num_classes, rngs=rngs,
                                   **parsed)


def _by_hyperparams(result) -> list[tuple[dict[str, float], list[int]]]:
    """Groups run indices by hyperparameter combination (seeds vary fastest)."""
    n_seeds = len(result.grid.seeds)
    runs = result.grid.runs
    return [(runs[i][0], list(range(i, i + n_seeds))) for i in range(0, len(runs), n_seeds)]


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def _best_group(result):
    """The hyperparameters with the best mean validation accuracy over seeds; a combination
    with a diverged seed ranks last."""
    best, best_score = None, -math.inf
    for hp, idx in _by_hyperparams(result):
        val = result.val_accuracy[idx]
        score = -math.inf if result.diverged[idx].any() or np.isnan(val).any() else val.mean()
        if best is None or score > best_score:
            best, best_score = (hp, idx), score
    return best


def _fmt_hp(hp: dict[str, float]) -> str:
    return ", ".join(f"{'lr' if k == 'learning_rate' else k}={v:g}" for k, v in hp.items())


# --------------------------------------------------------------------------------------------
# commands


def cmd_list(args) -> int:
    del args
    from optlab.tasks import DATASETS, MODELS, PROBLEMS

    sections = {
        "optimizers": {n: registry.describe(f) for n, f in registry.OPTIMIZERS.items()},
        "schedules": {n: registry.describe(f) for n, f in registry.SCHEDULES.items()},
        "tasks (data sets)": dict(DATASETS),
        "tasks (synthetic problems, compare only)": {
            n: make().description for n, make in PROBLEMS.items()},
        "models": {n: d for n, (_, d) in MODELS.items()},
    }
    for title, entries in sections.items():
        print(f"{title}:")
        width = max(map(len, entries)) + 2
        for name in sorted(entries):
            print(f"  {name:{width}s}{entries[name]}")
    return 0


def cmd_train(args) -> int:
    from optlab.io import atomic_write_json
    from optlab.plots import plot_curves

    data = _load_task(args)
    model = _model_name(args, data)
    opt = _names(args.optimizer, list(registry.OPTIMIZERS), "--optimizer", "optimizer")
    if len(opt) != 1:
        raise CLIError("--optimizer takes one name; use `optlab compare` for several")
    out = Path(args.out) if args.out else None
    print(f"optlab train: {model} on {data.summary()}, {opt[0]}, "
          f"{len(args.lr)} lr x {args.seeds} seeds, {args.epochs} epochs", flush=True)
    result = _train_one(args, data, model, opt[0], out)
    print(result.summary())
    for hp, idx in _by_hyperparams(result):
        m, s = _mean_std(result.test_accuracy[idx])
        print(f"{_fmt_hp(hp)}: test accuracy {m:.4f} ± {s:.4f} over {len(idx)} seeds")
    if out is not None:
        record = result.to_json()
        record["test_accuracy_per_seed"] = [
            {"hyperparams": hp, "seeds": [result.grid.runs[i][1] for i in idx],
             "test_accuracy": result.test_accuracy[idx].tolist()}
            for hp, idx in _by_hyperparams(result)]
        atomic_write_json(out / "results.json", record)
        curves = {_fmt_hp(hp): {k: v[idx] for k, v in result.history.items()}
                  for hp, idx in _by_hyperparams(result)}
        plot_curves(curves, out / "curves.png", f"{model} / {data.name} / {opt[0]}")
        print(f"wrote {out / 'results.json'} and {out / 'curves.png'}")
    return 0


def _compare_problems(args, names: list[str]) -> int:
    from optlab.tasks import PROBLEMS
    from optlab.tasks.minimize import final_losses

    problems = _names(args.task, list(PROBLEMS), "--task", "task")
    lrs = args.lr or _lrs(PROBLEM_LRS)
    built = {p: PROBLEMS[p]() for p in problems}
    print(f"optlab compare: {len(names)} optimizers x {len(problems)} problems x {len(lrs)} "
          f"learning rates, {args.steps} steps each")
    rows = []
    print("| optimizer | " + " | ".join(f"{p}: best loss (lr)" for p in problems) + " |")
    print("|" + "---|" * (len(problems) + 1))
    for name in names:
        cells, row = [], {"optimizer": name}
        for p in problems:
            losses = np.asarray(final_losses(registry.optimizer(name), built[p], lrs,
                                             args.steps))
            finite = np.where(np.isfinite(losses), losses, np.inf)
            i = int(np.argmin(finite))
            ok = math.isfinite(finite[i])
            cells.append(f"{finite[i]:.2e} ({lrs[i]:g})" if ok else "diverged")
            row[f"{p}_loss"], row[f"{p}_lr"] = (float(finite[i]) if ok else None,
                                                lrs[i] if ok else None)
        rows.append(row)
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    if args.out:
        _write_table(Path(args.out), rows, {"task": problems, "steps": args.steps,
                                            "learning_rates": lrs})
    return 0


def _write_table(out: Path, rows: list[dict], meta: dict) -> None:
    from optlab.io import atomic_write_json, atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "summary.csv", buffer.getvalue())
    atomic_write_json(out / "summary.json", {**meta, "results": rows})
    print(f"wrote {out / 'summary.csv'} and {out / 'summary.json'}")


def cmd_compare(args) -> int:
    from optlab.tasks import DATASETS

    names = _names(args.optimizers, list(registry.OPTIMIZERS), "--optimizers", "optimizer")
    if any(t.strip() not in DATASETS for t in args.task.split(",")):
        return _compare_problems(args, names)
    if args.lr is None:
        args.lr = _lrs(DEFAULT_LRS)
    data = _load_task(args)
    model = _model_name(args, data)
    out = Path(args.out) if args.out else None
    start = time.perf_counter()
    print(f"optlab compare: {model} on {data.summary()}; {len(names)} optimizers x "
          f"{len(args.lr)} learning rates x {args.seeds} seeds, {args.epochs} epochs",
          flush=True)
    print("| optimizer | best lr | val accuracy | test accuracy (mean ± std) | diverged |")
    print("|---|---|---|---|---|", flush=True)
    rows, curves, device = [], {}, ""
    for name in names:
        result = _train_one(args, data, model, name, out / name if out else None)
        device = result.device
        if out is not None:
            from optlab.io import atomic_write_json

            atomic_write_json(out / name / "results.json", result.to_json())
        hp, idx = _best_group(result)
        val, _ = _mean_std(result.val_accuracy[idx])
        test, std = _mean_std(result.test_accuracy[idx])
        n_div = int(result.diverged.sum())
        print(f"| {name} | {_fmt_hp(hp)} | {val:.4f} | {test:.4f} ± {std:.4f} | "
              f"{n_div}/{len(result.grid)} |", flush=True)
        rows.append({"optimizer": name, **{("lr" if k == "learning_rate" else k): v
                                           for k, v in hp.items()},
                     "val_accuracy": val, "test_accuracy_mean": test,
                     "test_accuracy_std": std, "seeds": len(idx),
                     "diverged_runs": n_div, "runs": len(result.grid),
                     "wall_time_s": round(result.wall_time, 2)})
        curves[f"{name} ({_fmt_hp(hp)})"] = {k: v[idx] for k, v in result.history.items()}
    wall = time.perf_counter() - start
    print(f"wall time {wall:.1f} s on {device}")
    if out is not None:
        from optlab.plots import plot_curves

        _write_table(out, rows, {"task": data.name, "model": model, "device": device,
                                 "learning_rates": args.lr, "seeds": args.seeds,
                                 "epochs": args.epochs, "batch_size": args.batch_size,
                                 "wall_time_s": wall})
        plot_curves(curves, out / "curves.png", f"{model} on {data.name}: best lr per optimizer")
        print(f"wrote {out / 'curves.png'}")
    return 0


# --------------------------------------------------------------------------------------------
# parser


def _add_training_flags(p: argparse.ArgumentParser, lrs: str | None) -> None:
    p.add_argument("--task", default="mnist1d", help="data set (see `optlab list`)")
    p.add_argument("--model", default=None,
                   help="model (default per task: " +
                   ", ".join(f"{k}: {v}" for k, v in TASK_MODELS.items()) + ")")
    p.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="model option, e.g. depth=10 or hidden=(256,256); repeatable")
    p.add_argument("--lr", "--lrs", dest="lr", type=_lrs, default=_lrs(lrs) if lrs else None,
                   help="learning rate(s), comma-separated; all run in one compiled grid")
    p.add_argument("--epochs", type=_int_at_least(1), default=20)
    p.add_argument("--seeds", type=_int_at_least(1), default=3, help="number of seeds")
    p.add_argument("--batch-size", type=_int_at_least(1), default=128)
    p.add_argument("--val-fraction", type=_fraction, default=0.1)
    p.add_argument("--data-seed", type=_int_at_least(0), default=0,
                   help="seed of the train/validation split")
    p.add_argument("--data-dir", default=None, help="local data (CIFAR-10)")
    p.add_argument("--patience", type=_int_at_least(1), default=None,
                   help="early stopping after this many epochs without a better val accuracy")
    p.add_argument("--schedule", default=None,
                   help="learning-rate multiplier by name, e.g. 'cosine_decay' or "
                   "'sgdr(t_0=500, t_mult=2)' (decay_steps/total_steps default to the run)")
    p.add_argument("--opt-arg", action="append", default=[], metavar="NAME=VALUE",
                   help="optimizer option, e.g. b2=0.99 or "
                   "'sign_decay=linear_sign_decay(decay_steps=1000)'; repeatable")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2",
                   help="also sweep a scalar optimizer option in the compiled grid")
    p.add_argument("--out", default=None, help="output directory (results, plot, checkpoints;"
                   " re-running the same command resumes)")
    p.add_argument("--unroll", action="store_true",
                   help="unroll each epoch's scan (faster conv models on CPU, longer compile)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar (default: when stderr is a terminal)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optlab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="optimizers, schedules, tasks and models")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("train", help="train one optimizer over learning rates x seeds")
    p.add_argument("--optimizer", default="adam")
    _add_training_flags(p, "1e-3")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("compare", help="compare optimizers at their best learning rate")
    p.add_argument("--optimizers", default=DEFAULT_OPTIMIZERS)
    _add_training_flags(p, None)
    p.add_argument("--steps", type=_int_at_least(1), default=2000,
                   help="steps per run on synthetic problems")
    p.set_defaults(func=cmd_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CLIError as e:
        print(f"optlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("optlab: interrupted; re-run the same command to resume from the last "
              "checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
