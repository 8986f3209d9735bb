"""Task and model setup of ``optlab train`` / ``compare`` (data set, model, ``--model-arg``,
steps, schedule; all checked before the first training step), the run configuration, and
training one optimizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optlab import registry
from optlab._checks import unknown_name
from optlab.cli.flags import TASK_MODELS, CLIError, _cli_words, _key_values
from optlab.cli.spec import _factory, _schedule, _Spec

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
