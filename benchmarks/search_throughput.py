"""Optimizer-search throughput: candidate evaluations per second, in one process.

A population of random programs (``optlab.search.random_program``, fixed seed) is evaluated by
training an MLP child on MNIST-1D for ``--epochs`` epochs per candidate (× ``--lrs`` × seeds),
two ways, on the same programs:

* **vectorized** — one ``optlab.train`` call, the population's int codes
  (``optlab.search.population.stack``) a grid hyperparameter of the interpreted optimizer
  (``population.interpreted``): one trace, one compilation for the whole population. Timed
  twice: with the runs *mapped* (``run_batch=1``, train's default: the runs one after another
  inside the compiled program; a run's code is then a plain scalar, so each ``lax.switch``
  executes one branch) and *vmapped* (``run_batch`` = all runs: under ``vmap`` a switch
  computes every branch and selects).
* **one jit per candidate** — a ``train`` call per program with
  ``functools.partial(compile_program, program)``: one trace and compilation per candidate.

Wall-clock times include compilation (a search pays it). With ``--per-candidate N`` only the
first N candidates are trained one by one and that time is extrapolated to the population
(said so in the output). A warm-up ``train`` call (not timed) runs first, so neither side
pays JAX's one-off start-up.

Usage: python benchmarks/search_throughput.py [--quick] [--population 64] [--groups 2]
       [--epochs 2] [--lrs 1e-2] [--seeds 1] [--per-candidate N] [--train-subset N]
``--quick`` (CI smoke test, ~25 s on 2 CPU cores): population 2, 1 epoch, the first 512
training examples, every candidate trained one by one, no vmapped variant (its compilation
alone takes 20-40 s on CPU).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from typing import Any

import jax
import numpy as np

from optlab.search import compile_program, formula, random_program
from optlab.search.population import interpreted, stack
from optlab.search.run import with_train_size
from optlab.tasks import load_dataset
from optlab.train import TrainResult, train


def _lrs(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _steady_epoch(result: TrainResult) -> float:
    """Seconds of an epoch after the first (the first also compiles the evaluation)."""
    return statistics.median(result.epoch_seconds[1:] or result.epoch_seconds)


def _final_loss(result: TrainResult) -> np.ndarray:
    return np.asarray(result.history["train_loss"])[:, -1]


def vectorized(data: Any, codes: np.ndarray, lrs: list[float], seeds: int, epochs: int,
               batch_size: int, run_batch: int) -> tuple[float, TrainResult]:
    t0 = time.perf_counter()
    result = train(data, "mlp", interpreted,
                   hyperparams={"code": codes, "learning_rate": lrs}, seeds=seeds,
                   epochs=epochs, batch_size=batch_size, progress=False, run_batch=run_batch)
    return time.perf_counter() - t0, result


def one_by_one(data: Any, programs: list[Any], lrs: list[float], seeds: int, epochs: int,
               batch_size: int) -> tuple[list[float], list[TrainResult]]:
    walls, results = [], []
    for program in programs:
        t0 = time.perf_counter()
        results.append(train(data, "mlp", functools.partial(compile_program, program),
                             hyperparams={"learning_rate": lrs}, seeds=seeds, epochs=epochs,
                             batch_size=batch_size, progress=False))
        walls.append(time.perf_counter() - t0)
    return walls, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI smoke run: tiny sizes")
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--groups", type=int, default=2, help="groups per program")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lrs", type=_lrs, default=[1e-2], help="comma-separated")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random programs")
    parser.add_argument("--per-candidate", type=int, default=0, metavar="N",
                        help="train only the first N candidates one by one and extrapolate "
                        "(default: all)")
    parser.add_argument("--train-subset", type=int, default=0, metavar="N",
                        help="use the first N training examples (default: all)")
    parser.add_argument("--no-vmapped", action="store_true",
                        help="skip the vmapped (run_batch = all runs) variant")
    args = parser.parse_args()
    if args.quick:
        args.population, args.epochs, args.train_subset = 2, 1, args.train_subset or 512
        args.per_candidate, args.no_vmapped = 0, True
    data = load_dataset("mnist1d")
    data = with_train_size(data, args.train_subset or None)
    rng = np.random.default_rng(args.seed)
    programs = [random_program(rng, args.groups) for _ in range(args.population)]
    codes = stack(programs, args.groups)
    n_alone = min(args.per_candidate or args.population, args.population)
    runs = args.population * len(args.lrs) * args.seeds
    steps = len(data.y_train) // args.batch_size
    device = f"{jax.device_count()} x {jax.devices()[0].device_kind} ({jax.default_backend()})"
    print(f"# search_throughput: {data.summary()}, mlp, population {args.population} random "
          f"programs of {args.groups} groups (seed {args.seed}), {len(args.lrs)} lr x "
          f"{args.seeds} seeds = {runs} runs, {args.epochs} epochs x {steps} steps, batch "
          f"{args.batch_size}, device {device}")
    print("# e.g. " + "; ".join(formula(p) for p in programs[:3]))

    # warm-up (not timed): JAX start-up, data transfer, flax tracing caches
    train(data, "mlp", functools.partial(compile_program, "g"), hyperparams={
        "learning_rate": args.lrs[:1]}, seeds=1, epochs=1, batch_size=args.batch_size,
        progress=False)

    walls, alone = one_by_one(data, programs[:n_alone], args.lrs, args.seeds, args.epochs,
                              args.batch_size)
    per_cand = sum(walls) / n_alone
    seq_wall = per_cand * args.population
    compile_alone = statistics.median(r.compile_time for r in alone)
    epoch_alone = statistics.median(_steady_epoch(r) for r in alone)
    extrapolated = n_alone < args.population

    variants = [("mapped (run_batch=1)", 1)]
    if not args.no_vmapped:
        variants.append((f"vmapped (run_batch={runs})", runs))
    rows = []
    for label, run_batch in variants:
        wall, result = vectorized(data, codes, args.lrs, args.seeds, args.epochs,
                                  args.batch_size, run_batch)
        epoch = _steady_epoch(result)
        # same programs: final train loss of the first candidates, interpreted vs compiled
        # (dropout draws other masks in the interpreter, noise the same samples)
        ours = _final_loss(result)[:n_alone * len(args.lrs) * args.seeds]
        ref = np.concatenate([_final_loss(r) for r in alone])
        both = np.isfinite(ours) & np.isfinite(ref)
        same = np.isclose(ours, ref, rtol=1e-3) | ~(np.isfinite(ours) | np.isfinite(ref))
        per_candidate = len(args.lrs) * args.seeds
        differ = sorted({i // per_candidate for i in np.flatnonzero(~same)})
        rows.append((label, wall, result.compile_time, epoch, float(np.mean(same)),
                     int(both.sum()), [formula(programs[i]) for i in differ]))

    print("\n| evaluation | wall s (incl. compile) | compile s | s per epoch after the first | "
          "candidates/s | candidates/hour | speed-up vs one jit per candidate |")
    print("|---|---|---|---|---|---|---|")
    note = f" (extrapolated from {n_alone})" if extrapolated else ""
    print(f"| one jit per candidate{note} | {seq_wall:.1f} | {compile_alone:.2f} per candidate"
          f" | {epoch_alone:.3f} per candidate | {args.population / seq_wall:.2f} | "
          f"{3600 * args.population / seq_wall:.0f} | 1.00 |")
    for label, wall, compile_s, epoch, *_ in rows:
        print(f"| vectorized, {label} | {wall:.1f} | {compile_s:.2f} | {epoch:.3f} | "
              f"{args.population / wall:.2f} | {3600 * args.population / wall:.0f} | "
              f"**{seq_wall / wall:.1f}** |")
    if extrapolated:
        print(f"\nOne jit per candidate: {n_alone} of {args.population} candidates trained "
              f"({sum(walls):.1f} s, {per_cand:.2f} s each, min {min(walls):.2f}, max "
              f"{max(walls):.2f}); the population's time is EXTRAPOLATED as "
              f"{args.population} x {per_cand:.2f} s.")
    best = max(seq_wall / wall for _, wall, *_ in rows)
    print(f"\nspeed-up (best vectorized vs one jit per candidate): {best:.1f}x "
          f"(target >= 10x: {'met' if best >= 10 else 'MISSED'})")
    mapped_epoch, per_run_epoch = rows[0][3], epoch_alone * args.population
    print(f"interpreter, steady state: an epoch of all {args.population} candidates mapped "
          f"takes {mapped_epoch:.3f} s vs {per_run_epoch:.3f} s for {args.population} compiled "
          f"epochs ({mapped_epoch / per_run_epoch:.2f}x)")
    if len(rows) > 1:
        print(f"all switch branches under vmap: vmapped epoch {rows[1][3]:.3f} s vs mapped "
              f"{mapped_epoch:.3f} s ({rows[1][3] / mapped_epoch:.2f}x)")
    for label, _, _, _, agree, finite, differ in rows:
        print(f"{label}: final train loss equal to the compiled program's (rtol 1e-3, or both "
              f"non-finite) for {agree:.0%} of the first {n_alone} candidates' runs "
              f"({finite} finite in both)" + (f"; differ: {'; '.join(differ)}" if differ
                                              else ""))


if __name__ == "__main__":
    main()
