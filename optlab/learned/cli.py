"""``optlab meta-train``: meta-train a learned optimizer (see :mod:`optlab.learned.meta`).

    optlab meta-train --task quadratic --optimizer lstm --steps 500 --out DIR
    optlab meta-train --task mnist1d --optimizer mlp --steps 300 --unroll 10 --out DIR

DIR receives ``optlab.json`` (the configuration), ``checkpoints/`` (the whole meta-training
state, orbax, after every ``--save-every`` meta-steps), ``learned.json`` + ``meta_params/``
(the meta-parameters, read by ``optlab train --optimizer learned:DIR``) and ``history.json``.
Re-running the same command resumes (a larger ``--steps`` continues); another configuration
is refused. Every flag is checked before any work.

``learned:PATH`` names a saved learned optimizer wherever ``--optimizer(s)`` takes a name; it
is used as meta-trained (its learning rate is fixed at 1: ``--lr`` does not apply to it).
"""

from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path
from typing import Any

PREFIX = "learned:"
TASKS = ("quadratic", "mnist1d")
MNIST1D_ONLY = {"--model-hidden": "model_hidden", "--activation": "activation",
                "--subset": "subset", "--batch-size": "batch_size"}
MNIST1D_DEFAULTS = {"model_hidden": "32", "activation": "relu", "subset": 1000,
                    "batch_size": 64}


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def add_parser(sub: Any, int_at_least) -> None:
    """Adds ``meta-train`` to the ``optlab`` command's subparsers."""
    from optlab.learned.meta import ESTIMATORS, MetaConfig
    from optlab.learned.store import OPTIMIZERS

    d = MetaConfig()
    p = sub.add_parser(
        "meta-train", help="meta-train a learned optimizer (LSTM or MLP) on a task family",
        description="Meta-trains a learned optimizer on a distribution of tasks by truncated "
        "backpropagation through unrolled training (or antithetic ES), vmapped over a batch of "
        "tasks; saves the meta-parameters (orbax) to --out after every --save-every "
        "meta-steps and resumes there. Use the result with `optlab train --optimizer "
        "learned:DIR`.")
    p.add_argument("--task", required=True, choices=TASKS,
                   help="task family: 10-D quadratics ||Wθ - y||² or MNIST-1D MLPs "
                   "(no default: required)")
    p.add_argument("--optimizer", default="lstm", choices=sorted(OPTIMIZERS),
                   help="learned optimizer: " + "; ".join(
                       f"{k}: {v.description}" for k, v in OPTIMIZERS.items())
                   + " (default: lstm)")
    p.add_argument("--steps", type=int_at_least(1), required=True, metavar="N",
                   help="meta-steps in all (a re-run with a larger N continues; no default)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (no default: required)")
    p.add_argument("--unroll", type=int_at_least(1), default=d.unroll, metavar="T",
                   help=f"inner steps per truncation (default: {d.unroll})")
    p.add_argument("--horizon", type=int_at_least(1), default=d.horizon, metavar="H",
                   help=f"inner steps before a task is replaced, a multiple of --unroll "
                   f"(default: {d.horizon})")
    p.add_argument("--tasks", type=int_at_least(1), default=d.tasks, metavar="B",
                   help=f"tasks per meta-step (default: {d.tasks})")
    p.add_argument("--estimator", default=d.estimator, choices=ESTIMATORS,
                   help=f"meta-gradient: truncated backprop or antithetic evolution strategies "
                   f"(default: {d.estimator})")
    p.add_argument("--es-sigma", type=_positive_float, default=d.es_sigma, metavar="S",
                   help=f"ES perturbation scale (--estimator es; default: {d.es_sigma})")
    p.add_argument("--es-pairs", type=int_at_least(1), default=d.es_pairs, metavar="K",
                   help=f"ES antithetic pairs per meta-step (default: {d.es_pairs})")
    p.add_argument("--meta-lr", type=_positive_float, default=d.meta_lr, metavar="LR",
                   help=f"Adam learning rate of the meta-optimizer (default: {d.meta_lr})")
    p.add_argument("--clip", type=_positive_float, default=d.clip, metavar="C",
                   help=f"global-norm clipping of the meta-gradient (default: {d.clip})")
    p.add_argument("--hidden", type=int_at_least(1), default=None, metavar="N",
                   help="hidden units of the learned optimizer (default: 20 for lstm, 32 for "
                   "mlp)")
    p.add_argument("--model-hidden", default=None, metavar="W[,W...]",
                   help="mnist1d: hidden widths of the trained MLPs (default: 32)")
    p.add_argument("--activation", default=None, choices=("relu", "sigmoid", "tanh"),
                   help="mnist1d: activation of the trained MLPs (default: relu)")
    p.add_argument("--subset", type=int_at_least(1), default=None, metavar="N",
                   help="mnist1d: training examples per task, a random subset (default: "
                   "1000)")
    p.add_argument("--batch-size", type=int_at_least(1), default=None, metavar="N",
                   help="mnist1d: mini-batch of an inner step (default: 64)")
    p.add_argument("--seed", type=int_at_least(0), default=0, metavar="N",
                   help="seed of the meta-training run (default: 0)")
    p.add_argument("--save-every", type=int_at_least(1), default=50, metavar="K",
                   help="save after every K meta-steps (default: 50)")
    p.set_defaults(func=cmd_meta_train)


def _widths(text: str) -> list[int]:
    from optlab.cli import CLIError

    try:
        widths = [int(w) for w in text.split(",") if w.strip()]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise CLIError(f"--model-hidden: expected comma-separated integers >= 1, got {text!r}")
    return widths


def _config(args) -> dict[str, Any]:
    """The run's configuration (``optlab.json``), every flag checked; ``--steps`` and
    ``--save-every`` are not part of it (a later run may go on for longer)."""
    from optlab.cli import CLIError
    from optlab.learned.meta import MetaConfig

    if args.horizon % args.unroll:
        raise CLIError(f"--horizon {args.horizon} must be a multiple of --unroll "
                       f"{args.unroll} (allowed: {args.unroll}, {2 * args.unroll}, ...)")
    if args.estimator != "es":
        given = [f for f, dest in (("--es-sigma", "es_sigma"), ("--es-pairs", "es_pairs"))
                 if getattr(args, dest) != getattr(MetaConfig(), dest)]
        if given:
            raise CLIError(f"{', '.join(given)}: only with --estimator es")
    task: dict[str, Any] = {"task": args.task}
    if args.task == "quadratic":
        given = [f for f, dest in MNIST1D_ONLY.items() if getattr(args, dest) is not None]
        if given:
            raise CLIError(f"{', '.join(given)}: only for --task mnist1d")
    else:
        for dest, default in MNIST1D_DEFAULTS.items():
            if getattr(args, dest) is None:
                setattr(args, dest, default)
        if args.batch_size > args.subset:
            raise CLIError(f"--batch-size {args.batch_size} exceeds --subset {args.subset}; "
                           f"allowed range 1..{args.subset}")
        task.update({"model_hidden": _widths(args.model_hidden),
                     "activation": args.activation, "subset": args.subset,
                     "batch_size": args.batch_size})
    meta = MetaConfig(unroll=args.unroll, horizon=args.horizon, tasks=args.tasks,
                      estimator=args.estimator, es_sigma=args.es_sigma,
                      es_pairs=args.es_pairs, meta_lr=args.meta_lr, clip=args.clip)
    options = {} if args.hidden is None else {"hidden": args.hidden}
    return {**task, "optimizer": args.optimizer, "options": options,
            "meta": meta.to_json(), "seed": args.seed}


def _family(config: dict[str, Any]):
    from optlab.cli import CLIError
    from optlab.learned.tasks import quadratic_family
    from optlab.tasks import load_dataset

    if config["task"] == "quadratic":
        return quadratic_family()
    examples = len(load_dataset("mnist1d").y_train)
    if config["subset"] > examples:
        raise CLIError(f"--subset {config['subset']} exceeds the {examples} MNIST-1D "
                       f"training examples; allowed range 1..{examples}")
    return _mnist1d(tuple(config["model_hidden"]), config["activation"], config["subset"],
                    config["batch_size"])


@functools.lru_cache(maxsize=4)  # one family per setting: its jitted code is reused
def _mnist1d(hidden: tuple[int, ...], activation: str, subset: int, batch: int):
    from optlab.learned.tasks import mnist1d_family
    from optlab.tasks import load_dataset

    data = load_dataset("mnist1d")
    return mnist1d_family(data.x_train, data.y_train, hidden=hidden, activation=activation,
                          subset=subset, batch=batch, num_classes=data.num_classes)


def cmd_meta_train(args) -> int:
    import jax
    import numpy as np

    from optlab.cli import CLIError, _claim, _writable
    from optlab.io import atomic_write_json
    from optlab.learned.meta import MetaConfig, meta_train
    from optlab.learned.store import Learned, save

    config = _config(args)
    out = _writable(args.out)
    family = _family(config)
    _claim(out, "meta-train", config)
    opt = Learned.create(config["optimizer"], jax.random.PRNGKey(config["seed"] + 1),
                         **config["options"])
    make = opt.factory()

    def on_chunk(step, state, metrics):
        save(out, Learned(opt.name, state.meta_params, opt.options, step))
        loss = float(np.mean(metrics["meta_loss"]))
        print(f"meta-step {step}/{args.steps}: meta-loss {loss:.4g} "
              f"(mean of the last {len(metrics['meta_loss'])}), meta-gradient norm "
              f"{float(np.mean(metrics['grad_norm'])):.3g}", flush=True)

    print(f"optlab meta-train: {opt.name} optimizer on {args.task} tasks, {args.steps} "
          f"meta-steps of {args.tasks} tasks x {args.unroll} inner steps ({args.estimator})",
          flush=True)
    try:
        result = meta_train(family, make, opt.meta_params, MetaConfig(**config["meta"]),
                            args.steps, seed=config["seed"], checkpoint_dir=out / "checkpoints",
                            save_every=args.save_every, fingerprint=config, on_chunk=on_chunk)
    except ValueError as e:
        raise CLIError(f"--out {out}: {e}") from None
    done = int(result.state.step)
    if result.resumed_from is not None:
        print(f"resumed from meta-step {result.resumed_from} (checkpoint in {out})")
    if done > args.steps:
        print(f"{out} already holds {done} meta-steps (more than --steps {args.steps})")
    if _saved_step(out) != done:  # interrupted between the checkpoint and this save
        save(out, Learned(opt.name, result.meta_params, opt.options, done))
    atomic_write_json(out / "history.json", {"meta_loss": result.meta_loss.tolist(),
                                             "grad_norm": result.grad_norm.tolist(),
                                             "meta_steps": done})
    print(f"meta-loss: first {result.meta_loss[:10].mean():.4g}, last "
          f"{result.meta_loss[-10:].mean():.4g} (means of up to 10 meta-steps); wall time "
          f"{result.wall_time:.1f} s")
    print(f"wrote {out}; use it with `optlab train --optimizer {PREFIX}{out}`")
    return 0


def _saved_step(out: Path) -> int | None:
    from optlab.learned.store import load

    try:
        return load(out).meta_step
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# learned:PATH in --optimizer / --optimizers


def is_learned(name: str) -> bool:
    return name.startswith(PREFIX)


@functools.lru_cache(maxsize=16)
def _load(path: str):
    from optlab.learned.store import load

    return load(path)


def learned_names(text: str, flag: str) -> list[str]:
    """The ``learned:PATH`` entries of a comma-separated ``--optimizer(s)`` value, each
    checked to hold a saved learned optimizer (CLIError naming ``flag`` otherwise)."""
    from optlab.cli import CLIError

    names = [n.strip() for n in text.split(",") if is_learned(n.strip())]
    for name in names:
        path = name[len(PREFIX):]
        if not path:
            raise CLIError(f"{flag} {name}: expected learned:PATH, a folder written by "
                           "`optlab meta-train --out PATH`")
        try:
            _load(str(Path(path).expanduser().absolute()))
        except ValueError as e:
            raise CLIError(f"{flag} {name}: {e}") from None
    return names


def optimizer_fn(name: str):
    """``learning_rate -> transform`` for ``learned:PATH``; ``learning_rate`` multiplies the
    learned update (1: as meta-trained)."""
    learned = _load(str(Path(name[len(PREFIX):]).expanduser().absolute()))

    def learned_optimizer(learning_rate: float = 1.0):
        """A learned optimizer loaded from disk (its update times learning_rate)."""
        return learned.optimizer(learning_rate)

    return learned_optimizer
