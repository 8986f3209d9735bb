"""The ``optlab`` command line: list, train and compare optimizers.

* ``optlab list [NAME]`` — optimizers, schedules, tasks and models with one-line
  descriptions; with a name, one of them in detail (an optimizer's formula, arguments with
  defaults and chain of primitives).
* ``optlab train --task mnist1d --model mlp --optimizer adam --lr 1e-2 --epochs 20 --seeds 3
  --out runs/x`` — trains (a grid over learning rates × seeds in one compiled program), prints
  a summary, writes ``results.json`` and ``curves.png``; re-running resumes from checkpoints.
  ``--program "exp(sign(g) * sign(m)) * g"`` instead of ``--optimizer`` trains a formula of
  the optimizer-search language (:func:`optlab.search.parse`), compiled with
  :func:`optlab.search.compile_program`.
* ``optlab compare --task mnist1d --optimizers sgd,momentum,adam --lrs 1e-3,1e-2 --seeds 3
  --out runs/cmp`` — per optimizer, the best learning rate on validation and its test accuracy
  (mean ± std over seeds): a table printed and written as ``summary.csv`` / ``summary.json``,
  and one figure of the learning curves. ``--task`` may instead list synthetic problems
  (``rosenbrock,beale``), compared by final loss after ``--steps`` updates.

Every check of the input happens before the first training step; a bad value is reported as
``optlab: error: ...`` naming the flag, with exit status 2. An ``--out`` folder holds one run
or one comparison, marked by ``optlab.json`` (kind and configuration): the same command
resumes there, anything else is refused.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import itertools
import json
import math
import os
import re
import sys
import tempfile
import textwrap
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optlab import registry
from optlab._checks import unknown_name
from optlab.learned import cli as learned_cli

DEFAULT_OPTIMIZERS = "sgd,momentum,adam,amsgrad,adamw,powersign,addsign,lion"
DEFAULT_LRS = "1e-3,3e-3,1e-2,3e-2,1e-1"
PROBLEM_LRS = "1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1"
TASK_MODELS = {"mnist1d": "mlp", "digits": "mlp", "mnist5k": "convnet", "cifar10": "wrn"}
# Defaults of flags whose presence matters (they apply to data sets or to synthetic problems
# only, so a flag given where it has no meaning is refused rather than ignored).
DEFAULTS = {"epochs": 20, "batch_size": 128, "val_fraction": 0.1, "data_seed": 0,
            "steps": 2000}
SEEDS = {"dataset": 3, "problems": 1}
MARKER = "optlab.json"  # in every --out folder: what it holds (kind + configuration)


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
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"a learning rate is given twice in {text!r}")
    return values


# A value that starts like a negative number ("-1e-2", "-.5", "-1,2"): argparse takes it for
# an option, so "--lr -1e-2" is joined into "--lr=-1e-2" and checked like any other value.
_NEGATIVE = re.compile(r"-\.?\d")


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        token = argv[i]
        if (token.startswith("--") and len(token) > 2 and "=" not in token
                and i + 1 < len(argv) and _NEGATIVE.match(argv[i + 1])):
            out.append(f"{token}={argv[i + 1]}")
            i += 2
        else:
            out.append(token)
            i += 1
    return out


def _names(text: str, valid: Sequence[str], flag: str, kind: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError(f"{flag} is empty")
    for n in names:
        if n not in valid:
            raise CLIError(f"{flag}: {unknown_name(kind, n, valid)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CLIError(f"{flag}: {', '.join(twice)} given more than once")
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


# Python argument names in messages from the library → the flags that set them.
_FLAG_WORDS = ((r"\bdata_dir=<folder>", "--data-dir <folder>"), (r"\bdata_dir\b", "--data-dir"),
               (r"\bcheckpoint_dir\b", "--out"), (r"\bbatch_size=", "--batch-size "),
               (r"\bbatch_size\b", "--batch-size"), (r"\bval_fraction=", "--val-fraction "),
               (r"\bval_fraction\b", "--val-fraction"), (r"(?<!-)\bpatience\b", "--patience"))


def _cli_words(message: str) -> str:
    for pattern, flag in _FLAG_WORDS:
        message = re.sub(pattern, flag, message)
    return message


# --------------------------------------------------------------------------------------------
# tasks, flags that apply to data sets or to synthetic problems only


def _tasks(text: str) -> tuple[str, list[str]]:
    """``("dataset", [name])`` or ``("problems", [names])`` for ``--task``."""
    from optlab.tasks import DATASETS, PROBLEMS

    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError("--task is empty")
    valid = [*DATASETS, *PROBLEMS]
    for n in names:
        if n not in valid:
            raise CLIError(f"--task: {unknown_name('task', n, valid)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise CLIError(f"--task: {', '.join(twice)} given more than once")
    datasets = [n for n in names if n in DATASETS]
    if datasets and len(names) > 1:
        if len(datasets) == len(names):
            raise CLIError(f"--task {text}: compare takes one data set at a time; run one "
                           "`optlab compare` per data set, each with its own --out (several "
                           "synthetic problems may be listed together)")
        problems = [n for n in names if n not in DATASETS]
        raise CLIError(f"--task {text}: cannot mix data sets ({', '.join(datasets)}) with "
                       f"synthetic problems ({', '.join(problems)}); run them separately")
    return ("dataset", datasets) if datasets else ("problems", names)


# flag → how to tell it was given (argparse default None / [] / False means "not given")
_DATASET_ONLY = {"--model": "model", "--model-arg": "model_arg", "--epochs": "epochs",
                 "--batch-size": "batch_size", "--val-fraction": "val_fraction",
                 "--data-seed": "data_seed", "--data-dir": "data_dir",
                 "--patience": "patience", "--unroll": "unroll", "--progress": "progress"}


def _given(args, dest: str) -> bool:
    value = getattr(args, dest, None)
    return value not in (None, [], False)


def _resolve_flags(args, kind: str) -> None:
    """Refuses flags that mean nothing for ``kind`` and fills in the defaults of the rest."""
    if kind == "problems":
        given = [flag for flag, dest in _DATASET_ONLY.items() if _given(args, dest)]
        if given:
            hint = " (use --steps for the length of a run)" if "--epochs" in given else ""
            raise CLIError(f"{', '.join(given)}: only for data sets; synthetic problems take "
                           f"--optimizers, --lr, --steps, --seeds, --opt-arg, --grid, "
                           f"--schedule and --out{hint}")
    elif _given(args, "steps"):
        raise CLIError("--steps: only for synthetic problems; on a data set the length of a "
                       "run is --epochs")
    for dest, default in DEFAULTS.items():
        if getattr(args, dest, "absent") is None:
            setattr(args, dest, default)
    if args.seeds is None:
        args.seeds = SEEDS[kind]


# --------------------------------------------------------------------------------------------
# the output folder: writable, and holding one run or one comparison


def _writable(text: str | None) -> Path | None:
    """Checks that ``--out`` can be created and written (a probe file), before any work;
    folders created for the probe are removed again."""
    if text is None:
        return None
    out = Path(text).expanduser()
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out}: exists and is not a folder")
    created = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".optlab-probe.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CLIError(f"--out {out}: cannot write there ({e.strerror or e}); choose "
                       "another folder") from None
    finally:
        for p in created:  # deepest first
            try:
                p.rmdir()
            except OSError:
                break
    return out


_KINDS = {"train": "a training run", "compare": "a comparison", "reproduce": "an experiment",
          "meta-train": "a meta-training run"}


def _claim(out: Path | None, kind: str, config: dict[str, Any]) -> None:
    """Marks ``out`` as holding this run (``optlab.json``), or refuses a folder that holds
    something else: another kind of output, another configuration, or files not written by
    optlab. Re-running the same command into its own folder is allowed (it resumes)."""
    from optlab import __version__
    from optlab.io import atomic_write_json, to_jsonable

    if out is None:
        return
    config = json.loads(json.dumps(to_jsonable(config)))
    marker = out / MARKER
    if marker.is_file():
        try:
            there = json.loads(marker.read_text())
            there_kind, there_config = there["kind"], there["config"]
        except (OSError, ValueError, KeyError, TypeError):
            raise CLIError(f"--out {out}: {MARKER} is unreadable; choose another folder"
                           ) from None
        if there_kind != kind:
            raise CLIError(f"--out {out} holds {_KINDS.get(there_kind, there_kind)} "
                           f"(optlab {there_kind}); one folder holds one run, one "
                           "comparison or one experiment: choose another folder")
        if there_config != config:
            diff = sorted(k for k in set(there_config) | set(config)
                          if there_config.get(k) != config.get(k))
            raise CLIError(f"--out {out} holds {_KINDS[kind]} with a different configuration "
                           f"(differs in: {', '.join(diff)}); re-run the same command to "
                           "resume it, or choose another folder")
        return
    if out.is_dir() and any(out.iterdir()):
        raise CLIError(f"--out {out} is not empty and has no {MARKER}, so it was not written "
                       f"by optlab {kind}; choose a new or empty folder")
    atomic_write_json(marker, {"kind": kind, "optlab_version": __version__, "config": config})


# --------------------------------------------------------------------------------------------
# optimizer options: --opt-arg / --grid, plain (every optimizer) or OPTIMIZER.NAME (one)


@dataclass
class _Spec:
    """One optimizer of a run: its options as given, parsed, and its hyperparameter grid."""

    name: str
    opt_args: dict[str, str]
    grid: dict[str, str]
    static: dict[str, Any]
    hyperparams: dict[str, list[float]]
    program: str | None = None  # --program: the canonical formula (then name is "program")


def _scoped(options: dict[str, str], name: str, names: Sequence[str], flag: str,
            names_flag: str) -> dict[str, str]:
    """The options of ``options`` that apply to optimizer ``name``: plain ``key`` (every
    optimizer) and ``name.key`` (this one; it wins over a plain ``key``)."""
    plain, own = {}, {}
    for key, value in options.items():
        prefix, dot, rest = key.partition(".")
        if not dot:
            plain[key] = value
            continue
        if not prefix or not rest:
            raise CLIError(f"{flag} {key}={value}: expected NAME=VALUE or "
                           "OPTIMIZER.NAME=VALUE")
        if prefix not in names:
            raise CLIError(f"{flag} {key}={value}: {prefix!r} is not among {names_flag} "
                           f"({', '.join(names)})")
        if prefix == name:
            own[rest] = value
    return {**plain, **own}


def _reads_layers(fn: Any) -> bool:
    """Whether the optimizer is K-FAC, which needs the model's layer statistics."""
    from optlab.fisher import kfac

    return getattr(fn, "func", fn) is kfac


def _spec(name: str, names: Sequence[str], args, lrs: list[float], total_steps: int,
          names_flag: str, num_classes: int | None = None) -> _Spec:
    """Parses and checks ``--opt-arg`` / ``--grid`` for optimizer ``name``; builds it at every
    grid point, so a bad value fails here, before any training. An optimizer that reads the
    number of classes (``lipschitz_sgd``) gets the data set's ``num_classes``."""
    fn = _optimizer_fn(name)
    if learned_cli.is_learned(name):  # used as meta-trained: its learning rate is 1
        lrs = [1.0]
    if num_classes is None and _reads_layers(fn):
        raise CLIError(f"{names_flag}: {name} needs a data set and its model (K-FAC reads the "
                       "layers' inputs and output gradients), not a synthetic problem")
    if "num_classes" in registry.parameters(fn):
        if num_classes is None:
            raise CLIError(f"{names_flag}: {name} needs a classification data set (it reads the "
                           "model's penultimate activations), not a synthetic problem")
        fn = functools.partial(fn, num_classes=num_classes)
    opt_args = _scoped(_key_values(args.opt_arg, "--opt-arg"), name, names, "--opt-arg",
                       names_flag)
    grid = _scoped(_key_values(args.grid, "--grid"), name, names, "--grid", names_flag)
    for flag, options in (("--opt-arg", opt_args), ("--grid", grid)):
        try:
            registry.check_arguments(f"optimizer {name}", fn, options)
        except ValueError as e:
            hint = ""
            if len(names) > 1:
                key = next(k for k in options if k not in registry.parameters(fn))
                takes = [n for n in names if key in registry.parameters(_optimizer_fn(n))]
                hint = (f"; to pass an option to one optimizer only, write {flag} "
                        f"OPTIMIZER.{key}=..., e.g. {flag} {(takes or names)[0]}.{key}="
                        f"{options[key]}")
            raise CLIError(f"{flag}: {e}{hint}") from None
    for key in ("learning_rate", *grid):
        if key in opt_args:
            raise CLIError(f"--opt-arg {key}: use --lr/--lrs for learning rates"
                           if key == "learning_rate" else
                           f"--grid {key} and --opt-arg {key} both set {key} of {name}")
    static = {}
    for key, text in opt_args.items():
        try:
            static[key] = registry.parse_value(text, total_steps=total_steps)
        except ValueError as e:
            raise CLIError(f"--opt-arg {key}={text} ({name}): {e}") from None
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
    hyperparams = {"learning_rate": list(lrs), **swept}
    for values in itertools.product(*hyperparams.values()):
        point = dict(zip(hyperparams, values, strict=True))
        try:
            fn(**static, **point)
        except (ValueError, TypeError) as e:
            text = str(e)
            flag = ("--lr" if "learning_rate" in text else
                    "--grid" if any(k in text for k in swept) else "--opt-arg")
            raise CLIError(f"{flag} ({name}): {text}") from None
    if swept:
        _check_traceable(name, fn, static, swept)
    return _Spec(name, opt_args, grid, static, hyperparams)


def _check_traceable(name: str, fn, static: dict[str, Any],
                     swept: dict[str, list[float]]) -> None:
    """A ``--grid`` option is a traced scalar in the compiled program: one the optimizer
    needs as a Python value (a flag such as ``nesterov``) is refused here."""
    import jax
    import jax.numpy as jnp

    def step(point):
        tx = fn(learning_rate=1e-3, **static, **point)
        x = jnp.ones(2)
        return tx.update(x, tx.init(x), x)[0]

    for key, values in swept.items():
        try:
            jax.eval_shape(step, {key: jnp.float32(values[0])})
        except (jax.errors.ConcretizationTypeError, TypeError):
            raise CLIError(f"--grid {key}: {name} needs {key} as a fixed value, which a "
                           f"compiled grid cannot sweep; give one value with --opt-arg "
                           f"{key}=...") from None


def _schedule(text: str | None, total_steps: int):
    if not text:
        return None
    try:
        name, kwargs = registry.parse_call(text)
        return registry.schedule(name, kwargs, total_steps=total_steps, unit=True)
    except ValueError as e:
        raise CLIError(f"--schedule: {e}") from None


def _program_spec(args, lrs: list[float]) -> _Spec:
    """``--program``: the formula parsed (errors name the flag and the column) and put in
    canonical form (:func:`optlab.search.canonical`, exact rewrites only: equivalent writings
    are one run); ``--opt-arg`` sets fields of its :class:`~optlab.search.SearchConfig`
    (moment decays, ``decay_steps`` of ld/cd/rd, ...); ``--grid`` is refused (those fields are
    fixed Python values of the compiled program, not traced grid values)."""
    import dataclasses

    from optlab.search import SearchConfig, canonical, compile_program, formula, parse

    try:
        program = parse(args.program)
    except (ValueError, TypeError) as e:
        raise CLIError(f"--program {args.program!r}: {e}") from None
    text = formula(canonical(program))
    if args.grid:
        raise CLIError("--grid: not available with --program (the program's settings are "
                       "fixed values of its SearchConfig, set with --opt-arg NAME=VALUE; "
                       "sweep learning rates with --lr)")
    fields = {f.name: f for f in dataclasses.fields(SearchConfig)}
    opt_args = _key_values(args.opt_arg, "--opt-arg")
    static: dict[str, Any] = {}
    for key, value in opt_args.items():
        if key == "learning_rate":
            raise CLIError("--opt-arg learning_rate: use --lr/--lrs for learning rates")
        if key not in fields:
            raise CLIError(f"--opt-arg {key}={value}: with --program, options are fields of "
                           f"SearchConfig: {unknown_name('option', key, fields)}")
        try:
            parsed = registry.parse_value(value)
        except ValueError as e:
            raise CLIError(f"--opt-arg {key}={value}: {e}") from None
        default = fields[key].default
        kind = type(default)
        ok = (isinstance(parsed, bool) if kind is bool else
              isinstance(parsed, int) and not isinstance(parsed, bool) if kind is int else
              isinstance(parsed, int | float) and not isinstance(parsed, bool))
        if not ok:
            raise CLIError(f"--opt-arg {key}={value}: expected {kind.__name__} (default "
                           f"{default!r})")
        static[key] = float(parsed) if kind is float else parsed
    try:
        for lr in lrs:
            compile_program(text, lr, config=SearchConfig(**static))
    except (ValueError, TypeError) as e:
        raise CLIError(f"--program / --opt-arg: {e}") from None
    return _Spec("program", opt_args, {}, static, {"learning_rate": list(lrs)}, program=text)


def _optimizer_fn(name: str):
    """A registered optimizer, or a saved learned one (``learned:PATH``)."""
    if learned_cli.is_learned(name):
        return learned_cli.optimizer_fn(name)
    return registry.optimizer(name)


def _factory(spec: _Spec):
    import functools

    if spec.program is not None:
        from optlab.search import SearchConfig, compile_program

        kwargs = {"config": SearchConfig(**spec.static)} if spec.static else {}
        optimizer = functools.partial(compile_program, spec.program, **kwargs)
        optimizer.__name__ = "program"  # type: ignore[attr-defined]
        return optimizer
    optimizer = functools.partial(_optimizer_fn(spec.name), **spec.static)
    optimizer.__name__ = spec.name  # type: ignore[attr-defined]
    return optimizer


# --------------------------------------------------------------------------------------------
# data sets and models


def _load_task(args, name: str) -> Any:
    from optlab.tasks import load_dataset

    try:
        return load_dataset(name, seed=args.data_seed, val_fraction=args.val_fraction,
                            data_dir=args.data_dir)
    except (ValueError, FileNotFoundError) as e:
        raise CLIError(f"--task {name}: {_cli_words(str(e))}") from None


def _model_name(args, data) -> str:
    from optlab.tasks.models import MODELS

    name = args.model or TASK_MODELS.get(data.name, "mlp")
    if name not in MODELS:
        raise CLIError(f"--model: {unknown_name('model', name, MODELS)}")
    return name


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


@dataclass
class _Setup:
    """Everything checked before the first training step of ``train`` / ``compare``."""

    data: Any
    model: str
    model_fn: Any
    total_steps: int
    schedule: Any


def _setup(args, task: str) -> _Setup:
    data = _load_task(args, task)
    model = _model_name(args, data)
    steps_per_epoch = len(data.y_train) // args.batch_size
    replicated = getattr(args, "replicated", None)
    if replicated is not None and steps_per_epoch >= 1:
        from optlab.parallel.training import steps_per_epoch as replicated_steps

        r = replicated.count()
        try:
            steps_per_epoch = replicated_steps(len(data.y_train), args.batch_size, r,
                                               replicated.iid)
        except ValueError as e:
            raise CLIError(f"--replicas {r} x --batch-size {args.batch_size}: {e}") from None
    if steps_per_epoch < 1:
        raise CLIError(f"--batch-size {args.batch_size} exceeds the {len(data.y_train)} "
                       f"training examples of {data.name}; allowed range "
                       f"1..{len(data.y_train)}")
    if args.patience is not None and len(data.y_val) == 0:
        raise CLIError("--patience needs a validation set: set --val-fraction > 0")
    total = steps_per_epoch * args.epochs
    model_fn = _model_factory(model, _key_values(args.model_arg, "--model-arg"), data)
    return _Setup(data, model, model_fn, total, _schedule(args.schedule, total))


def _run_config(args, setup: _Setup, spec: _Spec) -> dict[str, Any]:
    program = {} if spec.program is None else {"program": spec.program}
    parallel = {k: getattr(args, k) for k in ("parallel", "replicas", "non_iid", "inner_steps",
                                               "period", "n_fetch", "n_push", "adversaries",
                                               "parallel_arg", "delay")
                if getattr(args, k, None) not in (None, False, [])}
    return {**program, **parallel, "task": setup.data.name, "model": setup.model,
            "model_args": _key_values(args.model_arg, "--model-arg"), "optimizer": spec.name,
            "opt_args": spec.opt_args, "hyperparams": spec.hyperparams,
            "schedule": args.schedule, "seeds": args.seeds, "epochs": args.epochs,
            "batch_size": args.batch_size, "patience": args.patience,
            "val_fraction": args.val_fraction, "data_seed": args.data_seed,
            "dataset": setup.data.summary()}


def _train_one(args, setup: _Setup, spec: _Spec, checkpoints: Path | None) -> Any:
    from optlab.train import train

    try:
        from optlab.parallel.cli import with_delay

        return train(setup.data, setup.model_fn,
                     with_delay(_factory(spec), getattr(args, "delay", None)),
                     hyperparams=spec.hyperparams,
                     seeds=args.seeds, epochs=args.epochs, batch_size=args.batch_size,
                     schedule=setup.schedule, patience=args.patience,
                     config=_run_config(args, setup, spec), progress=args.progress,
                     unroll=True if args.unroll else 1,
                     parallel=getattr(args, "replicated", None),
                     checkpoint_dir=checkpoints)
    except ValueError as e:
        raise CLIError(_cli_words(str(e))) from None


def _resumed(result, epochs: int, out: Path | None, prefix: str = "") -> None:
    epoch = getattr(result, "resumed_from", None)  # epochs loaded from the checkpoint
    if epoch is not None:
        print(f"{prefix}resumed from epoch {epoch} of {epochs} (checkpoint in {out})",
              flush=True)


def _by_hyperparams(result) -> list[tuple[dict[str, float], list[int]]]:
    """Groups run indices by hyperparameter combination (seeds vary fastest)."""
    n_seeds = len(result.grid.seeds)
    runs = result.grid.runs
    return [(runs[i][0], list(range(i, i + n_seeds))) for i in range(0, len(runs), n_seeds)]


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def _group_diverged(result, idx: list[int]) -> bool:
    return bool(result.diverged[idx].any() or np.isnan(result.val_accuracy[idx]).any())


def _best_group(result) -> tuple[dict[str, float], list[int], bool]:
    """The hyperparameters with the best mean validation accuracy over seeds, and whether
    they trained without diverging. A combination with a diverged seed ranks last; when
    every combination diverged, the one that trained longest is returned with False."""
    groups = _by_hyperparams(result)
    ok = [(hp, idx) for hp, idx in groups if not _group_diverged(result, idx)]
    if ok:
        hp, idx = max(ok, key=lambda g: result.val_accuracy[g[1]].mean())
        return hp, idx, True
    hp, idx = max(groups, key=lambda g: result.epochs_trained[g[1]].mean())
    return hp, idx, False


def _fmt_hp(hp: dict[str, float]) -> str:
    return ", ".join(f"{'lr' if k == 'learning_rate' else k}={v:g}" for k, v in hp.items())


# --------------------------------------------------------------------------------------------
# commands


def cmd_list(args) -> int:
    from optlab.tasks import DATASETS, MODELS, PROBLEMS

    if args.name:
        return _list_one(args.name)
    sections = {
        "optimizers": {n: registry.describe(f) for n, f in registry.OPTIMIZERS.items()},
        "schedules": {n: registry.describe(f) for n, f in registry.SCHEDULES.items()},
        "tasks (data sets)": {n: _cli_words(d) for n, d in DATASETS.items()},
        "tasks (synthetic problems, compare only)": {
            n: make().description for n, make in PROBLEMS.items()},
        "models": {n: d for n, (_, d) in MODELS.items()},
    }
    for title, entries in sections.items():
        print(f"{title}:")
        width = max(map(len, entries)) + 2
        for name in sorted(entries):
            print(f"  {name:{width}s}{entries[name]}")
    print("\n`optlab list NAME` shows one entry in detail (formula, arguments, primitives).")
    return 0


def _wrap(text: str, indent: str = "  ") -> str:
    return "\n".join(textwrap.fill(line, 92, initial_indent=indent, subsequent_indent=indent)
                     for line in text.splitlines())


def _print_doc_and_arguments(kind: str, name: str, fn, heading: str,
                             notes: dict[str, str]) -> None:
    """Docstring as text, then each argument with its default (``notes[arg]`` formats it)."""
    paragraphs = registry.paragraphs(fn)
    print(f"{kind} {name}: {paragraphs[0] if paragraphs else ''}")
    for p in paragraphs[1:]:
        print(_wrap(p))
    print(heading)
    for arg, default in registry.arguments(fn):
        print(f"  {arg} = {notes.get(arg, '{}').format(default)}")


def _list_one(name: str) -> int:
    from optlab.tasks import DATASETS, MODELS, PROBLEMS
    from optlab.tasks.models import model_options

    if name in registry.OPTIMIZERS:
        fn = registry.OPTIMIZERS[name]
        _print_doc_and_arguments(
            "optimizer", name, fn, "arguments (--opt-arg NAME=VALUE; scalars also --grid "
            "NAME=V1,V2):", {"learning_rate": "{} (--lr)",
                             "num_classes": "the data set's number of classes"})
        chains = registry.primitives(fn)
        if chains:
            print("chain of primitives:")
            for condition, parts in chains:
                if condition:
                    print(f"  if {condition}:")
                pad = "    " if condition else "  "
                print("\n".join(f"{pad}{part}" for part in parts))
        return 0
    if name in registry.SCHEDULES:
        _print_doc_and_arguments("schedule", name, registry.SCHEDULES[name], "arguments:", {})
        return 0
    if name in DATASETS:
        print(f"task {name} (data set): {_cli_words(DATASETS[name])}")
        print(f"  default model: {TASK_MODELS.get(name, 'mlp')}")
        return 0
    if name in PROBLEMS:
        print(f"task {name} (synthetic problem, `optlab compare` only): "
              f"{PROBLEMS[name]().description}")
        return 0
    if name in MODELS:
        print(f"model {name}: {MODELS[name][1]}")
        print("options (--model-arg NAME=VALUE):")
        for arg, default in model_options(name).items():
            print(f"  {arg} = {default!r}")
        return 0
    valid = [*registry.OPTIMIZERS, *registry.SCHEDULES, *DATASETS, *PROBLEMS, *MODELS]
    raise CLIError(f"list: {unknown_name('name', name, valid)}")


def cmd_train(args) -> int:
    from optlab.io import atomic_write_json
    from optlab.plots import plot_curves
    from optlab.tasks import PROBLEMS

    if args.program is not None and args.optimizer is not None:
        raise CLIError("--program and --optimizer are alternatives: give --optimizer NAME for "
                       "a named optimizer or --program FORMULA for a search-space formula, "
                       "not both")
    if args.program is not None:
        opt = ["program"]
    else:
        opt = _names(args.optimizer or "adam", [*registry.OPTIMIZERS, *learned_cli.learned_names(
            args.optimizer or "", "--optimizer")], "--optimizer", "optimizer")
        if len(opt) != 1:
            raise CLIError("--optimizer takes one name; use `optlab compare` for several")
    task = args.task.strip().lower()
    if task in PROBLEMS:
        raise CLIError(f"--task {task} is a synthetic problem; `optlab train` trains on a "
                       f"data set (see `optlab list`); use `optlab compare --task {task}`")
    kind, tasks = _tasks(args.task)
    if len(tasks) != 1:
        raise CLIError("--task: `optlab train` takes one data set")
    _resolve_flags(args, kind)
    from optlab.parallel import cli as parallel_cli

    def refuse(message: str):
        raise CLIError(message)

    rank = parallel_cli.distributed(args, refuse)
    args.replicated = parallel_cli.replicas(args, refuse)
    if args.replicated is not None and args.program is None and \
            _reads_layers(_optimizer_fn(opt[0])):
        raise CLIError(f"--parallel: {opt[0]} is not supported with replicas (replica training "
                       "does not compute K-FAC's layer statistics); train it without --parallel")
    # Every process saves its part of the checkpoints (orbax; one folder all of them reach);
    # process 0 alone checks --out and writes the results of a multi-process run.
    checkpoints = None if args.out is None else Path(args.out).expanduser() / "checkpoints"
    program_spec = None if args.program is None else _program_spec(args, args.lr)
    setup = _setup(args, tasks[0])
    if program_spec is not None:
        spec = program_spec
    else:
        spec = _spec(opt[0], opt, args, args.lr, setup.total_steps, "--optimizer",
                     setup.data.num_classes)
    try:
        out = None if rank > 0 else _writable(args.out)
        _claim(out, "train", _run_config(args, setup, spec))
    except CLIError:
        parallel_cli.agree(False, refuse)
        raise
    parallel_cli.agree(True, refuse)
    if out is not None and args.num_processes and args.num_processes > 1:
        print(f"optlab train: {args.num_processes} processes: results are written by process "
              "0; every process saves its part of the checkpoints", flush=True)
    name = opt[0] if spec.program is None else f"program {spec.program}"
    print(f"optlab train: {setup.model} on {setup.data.summary()}, {name}, "
          f"{len(args.lr)} lr x {args.seeds} seeds, {args.epochs} epochs", flush=True)
    result = _train_one(args, setup, spec, checkpoints)
    _resumed(result, args.epochs, None if checkpoints is None else checkpoints.parent)
    print(result.summary())
    diverged = []
    for hp, idx in _by_hyperparams(result):
        m, s = _mean_std(result.test_accuracy[idx])
        if _group_diverged(result, idx):
            diverged.append(_fmt_hp(hp))
            n = int(result.diverged[idx].sum())
            print(f"{_fmt_hp(hp)}: diverged ({n} of {len(idx)} seeds)")
        else:
            print(f"{_fmt_hp(hp)}: test accuracy {m:.4f} ± {s:.4f} over {len(idx)} seeds")
    if out is not None:
        record = result.to_json()
        record["test_accuracy_per_seed"] = [
            {"hyperparams": hp, "seeds": [result.grid.runs[i][1] for i in idx],
             "test_accuracy": result.test_accuracy[idx].tolist(),
             "diverged": result.diverged[idx].tolist()}
            for hp, idx in _by_hyperparams(result)]
        atomic_write_json(out / "results.json", record)
        curves = {_fmt_hp(hp): {k: v[idx] for k, v in result.history.items()}
                  for hp, idx in _by_hyperparams(result)}
        plot_curves(curves, out / "curves.png", f"{setup.model} / {setup.data.name} / {name}",
                    diverged=diverged)
        print(f"wrote {out / 'results.json'} and {out / 'curves.png'}")
    return 0


def _compare_problems(args, names: list[str], problems: list[str]) -> int:
    from optlab.tasks import PROBLEMS
    from optlab.tasks.minimize import final_losses

    lrs = args.lr or _lrs(PROBLEM_LRS)
    specs = [_spec(n, names, args, lrs, args.steps, "--optimizers") for n in names]
    schedule = _schedule(args.schedule, args.steps)
    out = _writable(args.out)
    _claim(out, "compare", {
        "task": problems, "optimizers": names, "learning_rates": lrs, "steps": args.steps,
        "seeds": args.seeds, "opt_args": _key_values(args.opt_arg, "--opt-arg"),
        "grid": _key_values(args.grid, "--grid"), "schedule": args.schedule})
    built = {p: PROBLEMS[p]() for p in problems}
    seeds = f", mean over {args.seeds} seeds on stochastic problems" if args.seeds > 1 else ""
    print(f"optlab compare: {len(names)} optimizers x {len(problems)} problems x {len(lrs)} "
          f"learning rates, {args.steps} steps each{seeds}")
    rows = []
    print("| optimizer | " + " | ".join(f"{p}: best loss (lr)" for p in problems) + " |")
    print("|" + "---|" * (len(problems) + 1))
    for spec in specs:
        points = [dict(zip(spec.hyperparams, v, strict=True))
                  for v in itertools.product(*spec.hyperparams.values())]
        columns = {k: [p[k] for p in points] for k in spec.hyperparams}
        others = {k: v for k, v in columns.items() if k != "learning_rate"}
        cells, row = [], {"optimizer": spec.name}
        for p in problems:
            stochastic = built[p].stochastic and args.seeds > 1
            losses = np.asarray(final_losses(
                _factory(spec), built[p], columns["learning_rate"], args.steps,
                hyperparams=others, schedule=schedule,
                seeds=range(args.seeds) if stochastic else None), float)
            if losses.ndim == 2:  # mean over seeds; a diverged seed makes the point diverged
                losses = np.where(np.isfinite(losses).all(1), losses.mean(1), np.inf)
            finite = np.where(np.isfinite(losses), losses, np.inf)
            i = int(np.argmin(finite))
            ok = bool(np.isfinite(finite[i]))
            best = points[i]
            label = (f"{best['learning_rate']:g}" if not others
                     else _fmt_hp(best))
            cells.append(f"{finite[i]:.2e} ({label})" if ok else "diverged at every lr")
            row[f"{p}_loss"] = float(finite[i]) if ok else None
            row[f"{p}_lr"] = best["learning_rate"] if ok else None
            for k in others:
                row[f"{p}_{k}"] = best[k] if ok else None
            row[f"{p}_diverged"] = not ok
        rows.append(row)
        print(f"| {spec.name} | " + " | ".join(cells) + " |", flush=True)
    if out is not None:
        _write_table(out, rows, {"task": problems, "steps": args.steps, "seeds": args.seeds,
                                 "learning_rates": lrs, "schedule": args.schedule,
                                 "opt_args": {s.name: s.opt_args for s in specs},
                                 "grid": {s.name: s.grid for s in specs}})
    return 0


def _write_table(out: Path, rows: list[dict], meta: dict) -> None:
    from optlab.io import atomic_write_json, atomic_write_text

    fields = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "summary.csv", buffer.getvalue())
    atomic_write_json(out / "summary.json", {**meta, "results": rows})
    print(f"wrote {out / 'summary.csv'} and {out / 'summary.json'}")


def cmd_compare(args) -> int:
    names = _names(args.optimizers, [*registry.OPTIMIZERS, *learned_cli.learned_names(
        args.optimizers, "--optimizers")], "--optimizers", "optimizer")
    kind, tasks = _tasks(args.task)
    _resolve_flags(args, kind)
    if kind == "problems":
        return _compare_problems(args, names, tasks)
    if args.lr is None:
        args.lr = _lrs(DEFAULT_LRS)
    out = _writable(args.out)
    setup = _setup(args, tasks[0])
    specs = [_spec(n, names, args, args.lr, setup.total_steps, "--optimizers",
                   setup.data.num_classes) for n in names]
    data, model = setup.data, setup.model
    _claim(out, "compare", {
        "task": data.name, "model": model, "model_args": _key_values(args.model_arg,
                                                                     "--model-arg"),
        "optimizers": names, "learning_rates": args.lr, "seeds": args.seeds,
        "epochs": args.epochs, "batch_size": args.batch_size, "patience": args.patience,
        "val_fraction": args.val_fraction, "data_seed": args.data_seed,
        "opt_args": _key_values(args.opt_arg, "--opt-arg"),
        "grid": _key_values(args.grid, "--grid"), "schedule": args.schedule,
        "dataset": data.summary()})
    start = time.perf_counter()
    print(f"optlab compare: {model} on {data.summary()}; {len(names)} optimizers x "
          f"{len(args.lr)} learning rates x {args.seeds} seeds, {args.epochs} epochs",
          flush=True)
    print("| optimizer | best lr | val accuracy | test accuracy (mean ± std) | diverged |")
    print("|---|---|---|---|---|", flush=True)
    rows, curves, diverged, device = [], {}, [], ""
    for spec in specs:
        name = spec.name
        result = _train_one(args, setup, spec, out / name / "checkpoints" if out else None)
        _resumed(result, args.epochs, out / name if out else None, f"{name}: ")
        device = result.device
        if out is not None:
            from optlab.io import atomic_write_json

            atomic_write_json(out / name / "results.json", result.to_json())
        hp, idx, ok = _best_group(result)
        n_div = int(result.diverged.sum())
        row = {"optimizer": name, "status": "ok" if ok else "diverged"}
        if ok:
            val, _ = _mean_std(result.val_accuracy[idx])
            test, std = _mean_std(result.test_accuracy[idx])
            print(f"| {name} | {_fmt_hp(hp)} | {val:.4f} | {test:.4f} ± {std:.4f} | "
                  f"{n_div}/{len(result.grid)} |", flush=True)
            row.update({("lr" if k == "learning_rate" else k): v for k, v in hp.items()})
            row.update({"val_accuracy": val, "test_accuracy_mean": test,
                        "test_accuracy_std": std})
            label = f"{name} ({_fmt_hp(hp)})"
        else:
            print(f"| {name} | none: diverged at every lr | - | - | "
                  f"{n_div}/{len(result.grid)} |", flush=True)
            row.update({("lr" if k == "learning_rate" else k): None for k in hp})
            row.update({"val_accuracy": None, "test_accuracy_mean": None,
                        "test_accuracy_std": None})
            label = f"{name} ({_fmt_hp(hp)})"
            diverged.append(label)
        row.update({"seeds": len(idx), "diverged_runs": n_div, "runs": len(result.grid),
                    "wall_time_s": round(result.wall_time, 2)})
        rows.append(row)
        curves[label] = {k: v[idx] for k, v in result.history.items()}
    wall = time.perf_counter() - start
    print(f"wall time {wall:.1f} s on {device}")
    if out is not None:
        from optlab.plots import plot_curves

        _write_table(out, rows, {"task": data.name, "model": model, "device": device,
                                 "learning_rates": args.lr, "seeds": args.seeds,
                                 "epochs": args.epochs, "batch_size": args.batch_size,
                                 "opt_args": {s.name: s.opt_args for s in specs},
                                 "grid": {s.name: s.grid for s in specs},
                                 "schedule": args.schedule, "wall_time_s": wall})
        plot_curves(curves, out / "curves.png",
                    f"{model} on {data.name}: best lr per optimizer", diverged=diverged)
        print(f"wrote {out / 'curves.png'}")
    return 0


# --------------------------------------------------------------------------------------------
# parser


def _add_training_flags(p: argparse.ArgumentParser, lrs: str | None, compare: bool) -> None:
    data = "; data sets only" if compare else ""
    p.add_argument("--lr", "--lrs", dest="lr", type=_lrs, default=_lrs(lrs) if lrs else None,
                   metavar="LR[,LR...]",
                   help="learning rate(s) > 0, comma-separated; all run in one compiled grid "
                   + (f"(default: {lrs})" if lrs else
                      f"(default: {DEFAULT_LRS} on a data set, {PROBLEM_LRS} on synthetic "
                      "problems)"))
    p.add_argument("--seeds", type=_int_at_least(1), default=None, metavar="N",
                   help="number of seeds, 0..N-1 " + (
                       "(default: 3 on a data set; 1 on synthetic problems, where seeds only "
                       "matter for the stochastic ones: their final loss is the mean over "
                       "seeds)" if compare else f"(default: {SEEDS['dataset']})"))
    p.add_argument("--opt-arg", action="append", default=[], metavar="[OPT.]NAME=VALUE",
                   help="optimizer option: a number, true/false/none, or a schedule such as "
                   "'sign_decay=linear_sign_decay(decay_steps=1000)'; OPT.NAME=VALUE passes it "
                   "to optimizer OPT only (e.g. adam.b2=0.99); repeatable (default: none)")
    p.add_argument("--grid", action="append", default=[], metavar="[OPT.]NAME=V1,V2",
                   help="also sweep a scalar optimizer option in the compiled grid; "
                   "repeatable (default: none)")
    p.add_argument("--schedule", default=None, metavar="NAME[(K=V,...)]",
                   help="learning-rate multiplier by name, e.g. 'cosine_decay' or "
                   "'sgdr(t_0=500, t_mult=2)'; decay_steps/total_steps default to the run's "
                   "length (default: constant)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder for one run or one comparison (results, plot, "
                   "checkpoints); re-running the same command resumes, anything else is "
                   "refused (default: write nothing)")
    p.add_argument("--model", default=None,
                   help=f"model{data} (default per task: " +
                   ", ".join(f"{k}: {v}" for k, v in TASK_MODELS.items()) + ")")
    p.add_argument("--model-arg", action="append", default=[], metavar="NAME=VALUE",
                   help=f"model option, e.g. depth=10 or hidden=(256,256); repeatable{data} "
                   "(default: none)")
    p.add_argument("--epochs", type=_int_at_least(1), default=None, metavar="N",
                   help=f"passes over the training set{data} (default: "
                   f"{DEFAULTS['epochs']})")
    p.add_argument("--batch-size", type=_int_at_least(1), default=None, metavar="N",
                   help=f"mini-batch size{data} (default: {DEFAULTS['batch_size']})")
    p.add_argument("--val-fraction", type=_fraction, default=None, metavar="F",
                   help=f"share of the training set held out for validation, in [0, 1)"
                   f"{data} (default: {DEFAULTS['val_fraction']})")
    p.add_argument("--data-seed", type=_int_at_least(0), default=None, metavar="N",
                   help=f"seed of the train/validation split{data} (default: "
                   f"{DEFAULTS['data_seed']})")
    p.add_argument("--data-dir", default=None, metavar="DIR",
                   help="local copy of CIFAR-10 (default: $OPTLAB_CIFAR10_DIR)")
    p.add_argument("--patience", type=_int_at_least(1), default=None, metavar="N",
                   help=f"stop a run after N epochs without a better validation accuracy"
                   f"{data} (default: off)")
    p.add_argument("--unroll", action="store_true",
                   help=f"unroll each epoch's scan (faster conv models on CPU, longer "
                   f"compile){data} (default: off)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help=f"progress bar{data} (default: when stderr is a terminal)")


def build_parser() -> argparse.ArgumentParser:
    from optlab import __version__

    parser = argparse.ArgumentParser(
        prog="optlab", description="optlab: list, train and compare optimizers built from "
        "optax primitives.",
        epilog="`optlab COMMAND --help` lists a command's flags and their defaults.")
    parser.add_argument("--version", action="version", version=f"optlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("list", help="optimizers, schedules, tasks and models; "
                       "`optlab list NAME` shows one in detail",
                       description="Lists optimizers, schedules, tasks and models; with NAME, "
                       "shows one: an optimizer's formula, arguments with their defaults "
                       "and chain of primitives.")
    p.add_argument("name", nargs="?", default=None, metavar="NAME",
                   help="an optimizer, schedule, task or model (default: list them all)")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("train", help="train one optimizer over learning rates x seeds",
                       description="Trains one optimizer on a data set over learning rates x "
                       "seeds (one compiled program).")
    p.add_argument("--task", default="mnist1d",
                   help="data set, see `optlab list` (default: mnist1d)")
    p.add_argument("--optimizer", default=None, help="optimizer, or learned:DIR for one "
                   "saved by `optlab meta-train` (default: adam)")
    p.add_argument("--program", default=None, metavar="FORMULA",
                   help="instead of --optimizer: a formula of the optimizer-search language, "
                   "e.g. \"exp(sign(g) * sign(m)) * g\" (PowerSign); --opt-arg then sets "
                   "SearchConfig fields (beta1, decay_steps, ...); no --grid (default: none, "
                   "train --optimizer)")
    _add_training_flags(p, "1e-3", compare=False)
    from optlab.parallel.cli import add_flags as add_parallel_flags

    add_parallel_flags(p, _int_at_least)
    p.set_defaults(func=cmd_train)
    from optlab.search.cli import add_parser as add_search_parser

    add_search_parser(sub, _int_at_least, _lrs)
    learned_cli.add_parser(sub, _int_at_least)
    p = sub.add_parser("compare", help="compare optimizers at their best learning rate",
                       description="Compares optimizers at their best learning rate, on one "
                       "data set or on one or more synthetic problems.")
    p.add_argument("--task", default="mnist1d",
                   help="one data set, or comma-separated synthetic problems such as "
                   "rosenbrock,beale; see `optlab list` (default: mnist1d)")
    p.add_argument("--optimizers", default=DEFAULT_OPTIMIZERS,
                   help="comma-separated optimizers, each once; learned:DIR names one "
                   "saved by `optlab meta-train` (default: "
                   f"{', '.join(DEFAULT_OPTIMIZERS.split(','))})")
    _add_training_flags(p, None, compare=True)
    p.add_argument("--steps", type=_int_at_least(1), default=None, metavar="N",
                   help=f"updates per run, synthetic problems only (default: "
                   f"{DEFAULTS['steps']})")
    p.set_defaults(func=cmd_compare)
    from optlab.reproduce import add_parser as add_reproduce_parser

    add_reproduce_parser(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if filename.startswith(os.path.dirname(__file__)):
        print(f"optlab: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["search", "show"]:  # `optlab search show DIR` = `optlab search-show DIR`
        argv = ["search-show", *argv[2:]]
    args = parser.parse_args(_join_negative_values(argv))
    try:
        with warnings.catch_warnings():
            # optlab's own warnings (a damaged checkpoint moved aside, ...) as one line each
            warnings.showwarning = _show_warning
            return args.func(args)
    except CLIError as e:
        print(f"optlab: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `optlab list | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:  # e.g. the disk filled up while writing results
        print(f"optlab: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("optlab: interrupted; re-run the same command to resume from the last "
              "checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
