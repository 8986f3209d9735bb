"""Argument parsing and checks of the ``optlab`` command line: :class:`CLIError`, flag
defaults, argument types, name lists, ``--task`` resolution, flags that apply to data sets or
to synthetic problems only, and library argument names turned into flag names."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence

from optlab._checks import unknown_name

DEFAULT_OPTIMIZERS = "sgd,momentum,adam,amsgrad,adamw,powersign,addsign,lion"
DEFAULT_LRS = "1e-3,3e-3,1e-2,3e-2,1e-1"
PROBLEM_LRS = "1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,1e-1,3e-1,1"
TASK_MODELS = {"mnist1d": "mlp", "digits": "mlp", "mnist5k": "convnet", "cifar10": "wrn"}
# Defaults of flags whose presence matters (they apply to data sets or to synthetic problems
# only, so a flag given where it has no meaning is refused rather than ignored).
DEFAULTS = {"epochs": 20, "batch_size": 128, "val_fraction": 0.1, "data_seed": 0,
            "steps": 2000}
SEEDS = {"dataset": 3, "problems": 1}


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
