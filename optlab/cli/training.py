"""``optlab train``: one optimizer (or ``--program``) on a data set over learning rates x
seeds, with results, curves and checkpoints in ``--out``."""

from __future__ import annotations

from pathlib import Path

from optlab import registry
from optlab.cli.flags import CLIError, _names, _resolve_flags, _tasks
from optlab.cli.outputs import _claim, _writable
from optlab.cli.results import _by_hyperparams, _fmt_hp, _group_diverged, _mean_std, _resumed
from optlab.cli.spec import _optimizer_fn, _program_spec, _reads_layers, _spec
from optlab.cli.task_setup import _run_config, _setup, _train_one
from optlab.learned import cli as learned_cli


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
