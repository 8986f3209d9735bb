"""``optlab compare``: optimizers at their best learning rate, on one data set (validation
accuracy, test accuracy over seeds) or on synthetic problems (final loss)."""

from __future__ import annotations

import itertools
import time

import numpy as np

from optlab import registry
from optlab.cli.flags import (
    DEFAULT_LRS,
    PROBLEM_LRS,
    _key_values,
    _lrs,
    _names,
    _resolve_flags,
    _tasks,
)
from optlab.cli.outputs import _claim, _writable, _write_table
from optlab.cli.results import _best_group, _fmt_hp, _mean_std, _resumed
from optlab.cli.spec import _factory, _schedule, _spec
from optlab.cli.task_setup import _setup, _train_one
from optlab.learned import cli as learned_cli


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
