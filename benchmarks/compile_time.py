"""Trace and compile time of optlab vs optax on a many-leaf parameter tree, side by side.

For each optimizer the script builds the same update from optlab and from optax and measures,
interleaved in a freshly shuffled order every repetition (so drifts in machine load hit all
alike), the optlab build, the optax build, and the optax build again (an A/A comparison: the
noise floor of the ratio):

* ``trace``: ``jax.jit(tx.update).trace(grads, state, params)`` (Python tracing to a jaxpr);
* ``compile``: ``.lower().compile()`` of the traced step (StableHLO lowering + XLA);

each on a new ``jax.jit`` object so no cache is hit, with Python's garbage collector paused and
timed by the process's CPU clock (all of XLA's threads; ``--clock wall`` for wall time), which
other processes on the machine move far less than wall time. Reported per optimizer:

* the median optlab / optax ratio of trace + compile time with a 95 % bootstrap interval
  (target ≤ 1.05), and the A/A ratio optax / optax with its interval;
* a verdict: ``ok`` when the interval lies at or below 1.05, ``MISS`` when it lies above, and
  ``undecided`` otherwise;
* deterministic measures of the work: the equations of each jaxpr (total and per leaf, the
  slope between two tree sizes; target: no more per leaf than optax) and the instructions of
  the optimized HLO module XLA compiles (``compiled.as_text()``).

Usage::

    python benchmarks/compile_time.py                     # 500 leaves, adam adamw amsgrad nadam
    python benchmarks/compile_time.py --leaves 1000 --reps 15 --optimizers adam,lion
    python benchmarks/compile_time.py --quick             # smoke test, < 30 s
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from step_time import EXTRA_ARGS, OPTIMIZERS, REFERENCE, extra_args

import optlab

# XLA's persistent compilation cache (JAX_COMPILATION_CACHE_DIR, set by the test session)
# would turn the compiles measured here into cache loads.
jax.config.update("jax_enable_compilation_cache", False)

DEFAULT_OPTIMIZERS = ("adam", "adamw", "amsgrad", "nadam")
# CPU time of the process (all of XLA's threads) is what compiling costs; unlike wall time it
# barely moves when other processes share the cores. --clock wall measures wall time instead.
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
CLOCK = "cpu"


def make_tree(leaves: int) -> dict[str, jax.Array]:
    """``leaves`` small float32 arrays of varied shapes (a deep network's many parameters)."""
    shapes = [(8,), (4, 8), (16,), (8, 8), (2, 3, 4)]
    return {f"p{i:04d}": jnp.full(shapes[i % len(shapes)], 0.5 + i % 7, jnp.float32)
            for i in range(leaves)}


def build(lib, name: str) -> optax.GradientTransformation:
    """The optimizer from ``lib`` with step_time's settings (optax: the reference optimizer
    where optax has no counterpart, see step_time.REFERENCE)."""
    return OPTIMIZERS[name](lib)


def update_fn(tx: optax.GradientTransformation, name: str):
    """``tx.update`` with the extra arguments the optimizer reads (step_time.EXTRA_ARGS)."""
    names = EXTRA_ARGS.get(name, ())

    def update(grads, state, params):
        return tx.update(grads, state, params, **extra_args(names, params, grads))

    return update


def trace_and_compile(lib, name: str, params) -> tuple[float, float]:
    # A new transform (new update closure) and a new jit object: JAX's tracing and lowering
    # caches, keyed by the function, are never hit.
    tx = build(lib, name)
    state = tx.init(params)
    jitted = jax.jit(update_fn(tx, name))
    clock = CLOCKS[CLOCK]
    start = clock()
    traced = jitted.trace(params, state, params)
    mid = clock()
    traced.lower().compile()
    end = clock()
    return mid - start, end - mid


def hlo_instructions(tx: optax.GradientTransformation, name: str, params) -> int:
    """Instructions of the optimized HLO module (all computations, fusions included)."""
    text = jax.jit(update_fn(tx, name)).lower(params, tx.init(params), params).compile().as_text()
    return sum(1 for line in text.splitlines() if _INSTRUCTION.match(line))


_INSTRUCTION = re.compile(r"^\s*(ROOT\s+)?%?[\w.\-]+\s*=\s*\S")


def equations(tx: optax.GradientTransformation, name: str, params) -> int:
    return len(jax.make_jaxpr(update_fn(tx, name))(params, tx.init(params),
                                                    params).jaxpr.eqns)


def bootstrap_ratio(a: list[float], b: list[float], rounds: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    a_, b_ = np.asarray(a), np.asarray(b)
    ratios = [np.median(rng.choice(a_, a_.size)) / np.median(rng.choice(b_, b_.size))
              for _ in range(rounds)]
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def timed(lib, name: str, params) -> tuple[float, float]:
    """One trace-and-compile with the garbage collector paused (its pauses are not the
    optimizer's cost and land on whichever build happens to be running)."""
    gc.collect()
    gc.disable()
    try:
        return trace_and_compile(lib, name, params)
    finally:
        gc.enable()


def verdict(lo: float, hi: float, target: float = 1.05) -> str:
    return "ok" if hi <= target else "MISS" if lo > target else "undecided"


def measure(name: str, leaves: int, reps: int) -> dict[str, float]:
    params = make_tree(leaves)
    libs = {"optlab": optlab, "optax": optax, "optax A/A": optax}
    for lib in (optlab, optax):  # warm up JAX's own caches (primitive rules, lowering tables)
        trace_and_compile(lib, name, params)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in libs}
    for _ in range(reps):
        order = list(libs)
        random.shuffle(order)
        for k in order:
            times[k].append(timed(libs[k], name, params))
    total = {k: [t + c for t, c in v] for k, v in times.items()}
    small = make_tree(leaves // 2)
    eq = {k: (equations(build(lib, name), name, params),
              equations(build(lib, name), name, small))
          for k, lib in (("optlab", optlab), ("optax", optax))}
    lo, hi = bootstrap_ratio(total["optlab"], total["optax"])
    aa_lo, aa_hi = bootstrap_ratio(total["optax A/A"], total["optax"])
    return {
        "ratio": statistics.median(total["optlab"]) / statistics.median(total["optax"]),
        "lo": lo, "hi": hi, "verdict": verdict(lo, hi),
        "aa": statistics.median(total["optax A/A"]) / statistics.median(total["optax"]),
        "aa_lo": aa_lo, "aa_hi": aa_hi,
        "hlo_optlab": hlo_instructions(build(optlab, name), name, params),
        "hlo_optax": hlo_instructions(build(optax, name), name, params),
        "trace_ratio": statistics.median(t for t, _ in times["optlab"])
        / statistics.median(t for t, _ in times["optax"]),
        "compile_ratio": statistics.median(c for _, c in times["optlab"])
        / statistics.median(c for _, c in times["optax"]),
        "optax_s": statistics.median(total["optax"]),
        "eqns_optlab": eq["optlab"][0], "eqns_optax": eq["optax"][0],
        "per_leaf_optlab": (eq["optlab"][0] - eq["optlab"][1]) / (leaves - leaves // 2),
        "per_leaf_optax": (eq["optax"][0] - eq["optax"][1]) / (leaves - leaves // 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leaves", type=int, default=500, help="parameter leaves (default 500)")
    parser.add_argument("--reps", type=int, default=11, help="repetitions (default 11)")
    parser.add_argument("--optimizers", default=",".join(DEFAULT_OPTIMIZERS),
                        help=f"comma-separated names or 'all' (default "
                        f"{','.join(DEFAULT_OPTIMIZERS)}); without an optax counterpart the "
                        f"reference is step_time.REFERENCE's ({REFERENCE})")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="cpu: the process's CPU time (default); wall: wall time")
    parser.add_argument("--quick", action="store_true", help="20 leaves, 2 reps: smoke test")
    args = parser.parse_args(argv)
    if args.leaves < 2:
        parser.error(f"--leaves must be >= 2, got {args.leaves}")
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    names = list(OPTIMIZERS) if args.optimizers == "all" else \
        [n for n in args.optimizers.split(",") if n]
    for n in names:
        if n not in OPTIMIZERS:
            parser.error(f"--optimizers: {n!r} is not an optlab optimizer")
    leaves, reps = (20, 2) if args.quick else (args.leaves, args.reps)
    global CLOCK
    CLOCK = args.clock
    print(f"jax {jax.__version__}, optax {optax.__version__}, {jax.devices()[0].platform}, "
          f"{leaves} leaves, {reps} reps, {CLOCK} clock")
    print(f"{'optimizer':<28} {'trace+compile optlab/optax':>27} {'verdict':>9} "
          f"{'A/A optax/optax':>22} {'trace':>6} {'compile':>7} {'optax s':>7} "
          f"{'eqns optlab/optax':>18} {'per leaf':>10} {'HLO optlab/optax':>17}", flush=True)
    for n in names:
        r = measure(n, leaves, reps)
        print(f"{n:<28} {r['ratio']:>9.3f} [{r['lo']:.3f}, {r['hi']:.3f}]    {r['verdict']:>9} "
              f"{r['aa']:>7.3f} [{r['aa_lo']:.3f}, {r['aa_hi']:.3f}] "
              f"{r['trace_ratio']:>6.3f} {r['compile_ratio']:>7.3f} {r['optax_s']:>7.3f} "
              f"{r['eqns_optlab']:>8d} / {r['eqns_optax']:<8d} "
              f"{r['per_leaf_optlab']:>4.1f} / {r['per_leaf_optax']:<4.1f} "
              f"{r['hlo_optlab']:>7d} / {r['hlo_optax']:<7d}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
