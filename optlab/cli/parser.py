"""The ``optlab`` argument parser (every command and its flags) and :func:`main`, which runs
a command and reports user errors as ``optlab: error: ...`` with exit status 2."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from optlab.cli.comparison import cmd_compare
from optlab.cli.flags import (
    DEFAULT_LRS,
    DEFAULT_OPTIMIZERS,
    DEFAULTS,
    PROBLEM_LRS,
    SEEDS,
    TASK_MODELS,
    CLIError,
    _fraction,
    _int_at_least,
    _join_negative_values,
    _lrs,
)
from optlab.cli.listing import cmd_list
from optlab.cli.training import cmd_train
from optlab.learned import cli as learned_cli


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
    # optlab's own modules: the folder above this package (optlab/)
    if filename.startswith(os.path.dirname(os.path.dirname(__file__))):
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
