"""Cost of a K-FAC step relative to an Adam step: the same model and batch, jitted, timed
interleaved.

For each model the script compiles two training steps (donated buffers, one batch fixed):

* **Adam**: loss and gradient, ``optlab.adam`` update, apply;
* **K-FAC**: loss and gradient, :func:`optlab.fisher.statistics` (one extra forward and
  backward pass, true Fisher with a sampled label), ``optlab.kfac`` update (factor EMAs, the
  damped inverses refreshed inside ``lax.cond``, the preconditioned step), apply. The refresh
  interval is an argument of the compiled step, so the same executable runs both kinds of
  step: with ``inverse_every = 1`` every step refreshes the inverses (Cholesky of every
  factor), with ``inverse_every = 2³⁰`` none does (after the first).

Four kernels are then timed, interleaved (a fresh random order in every repetition, so drifts
in machine load hit all alike), each call being ``CALLS`` steps: Adam, Adam again on buffers
of its own (A/A: the noise floor of a ratio), K-FAC without a refresh, K-FAC with one.
Reported per model, from the medians: K-FAC / Adam for the plain step and for the refresh
step, and the amortised cost of K-FAC with the inverses refreshed every k steps,
``(t_refresh + (k − 1) t_plain) / k``, relative to Adam, for k = 1, 10, 100.

Models: the MNIST-1D MLP (``mlp``, 40-100-100-10), the autoencoder of
``experiments/kfac.py`` on 14 × 14 MNIST-5k images (196-128-64-16-64-128-196) and one on the
full 28 × 28 images (784-256-32-256-784), and a conv net (optlab's ``convnet``: 2 × [conv3×3(32)
→ BatchNorm → ReLU → max-pool] → Linear, on digits' 8 × 8 images; BatchNorm's scale and shift
take K-FAC's diagonal fallback).

BLAS threads: the inverse refresh calls LAPACK (Cholesky, triangular solves) through jaxlib,
which runs them in SciPy's OpenBLAS. On a machine whose cores are busy with other jobs,
OpenBLAS's own thread pool made a 101 × 101 triangular solve against the identity take about
8 ms instead of 0.1 ms (its threads wait for descheduled peers), and made the refresh cost
vary 15-fold between processes. By default the script therefore limits OpenBLAS to one
thread (``threadpoolctl``, after a first LAPACK call has loaded it); ``--blas-threads 0``
leaves the library's default.

Usage::

    python benchmarks/kfac_cost.py                 # all models, 15 reps of 5 steps
    python benchmarks/kfac_cost.py --models mlp,convnet --reps 50
    python benchmarks/kfac_cost.py --quick         # smoke test (< 20 s): mlp, 5 reps
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
import step_time
from flax import nnx

import optlab
from optlab.tasks.models import Autoencoder, make_model, param_count

NEVER = 2**30  # an inverse_every no run reaches: no refresh after the first step
EVERY = (1, 10, 100)
LEARNING_RATE, DAMPING = 1e-3, 1e-2


# ------------------------------------------------------------------------------------------
# Models
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A model, its batch and its loss (``"softmax_cross_entropy"`` on integer labels, or
    ``"squared_error"`` ½‖f − y‖² summed over outputs)."""

    name: str
    description: str
    model: Callable[[], nnx.Module]
    x_shape: tuple[int, ...]
    loss: str

    def batch(self, seed: int = 0) -> tuple[jax.Array, jax.Array]:
        """A random batch (the cost does not depend on the values)."""
        kx, ky = jax.random.split(jax.random.key(seed))
        x = jax.random.uniform(kx, self.x_shape)
        if self.loss == "squared_error":
            return x, x.reshape(len(x), -1)
        return x, jax.random.randint(ky, (self.x_shape[0],), 0, 10)


def problems() -> dict[str, Problem]:
    return {
        "mlp": Problem("mlp", "MNIST-1D MLP 40-100-100-10, batch 128",
                       lambda: make_model("mlp", (40,), 10, rngs=0), (128, 40),
                       "softmax_cross_entropy"),
        "ae196": Problem("ae196", "autoencoder 196-128-64-16-64-128-196, batch 250",
                         lambda: Autoencoder((196, 128, 64, 16, 64, 128, 196),
                                             rngs=nnx.Rngs(0)),
                         (250, 196), "squared_error"),
        "ae784": Problem("ae784", "autoencoder 784-256-32-256-784, batch 250",
                         lambda: Autoencoder((784, 256, 32, 256, 784), rngs=nnx.Rngs(0)),
                         (250, 784), "squared_error"),
        "convnet": Problem("convnet", "convnet 2×[conv3×3(32)-BN-ReLU-pool] → 10, 8×8×1, "
                           "batch 128", lambda: make_model("convnet", (8, 8, 1), 10, rngs=0),
                           (128, 8, 8, 1), "softmax_cross_entropy"),
    }


def loss_fn(problem: Problem, model: nnx.Module, x: jax.Array, y: jax.Array) -> jax.Array:
    out = model(x)
    if problem.loss == "squared_error":
        return 0.5 * jnp.mean(jnp.sum(jnp.square(out - y), axis=-1))
    return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()


# ------------------------------------------------------------------------------------------
# The two steps
# ------------------------------------------------------------------------------------------


def make_step(problem: Problem, kfac: bool, calls: int) -> tuple[Callable, Any]:
    """A function running ``calls`` training steps (``lax.scan``), ``(carry, every) ->
    carry`` (the carry donated; ``every`` is K-FAC's refresh interval), and a function making
    a fresh carry. Each step reads its own batch, scanned over as an argument of the compiled
    program: a constant batch lets XLA fold the statistics that depend on it alone (the first
    layer's input factor) into the executable at compile time, and one batch for all steps
    lets it hoist them out of the loop; either way they would not be timed."""
    graphdef, params, rest = nnx.split(problem.model(), nnx.Param, ...)
    batches = [problem.batch(seed) for seed in range(calls)]
    xs, ys = (jnp.stack(parts) for parts in zip(*batches, strict=True))

    def tx_of(every: Any) -> optax.GradientTransformation:
        if kfac:
            return optlab.kfac(LEARNING_RATE, damping=DAMPING, momentum=0.9,
                               inverse_every=every)
        return optlab.adam(LEARNING_RATE)

    def step(carry, batch, every):
        t, x, y = batch
        params, rest, state = carry
        tx = tx_of(every)

        def loss(p):
            model = nnx.merge(graphdef, p, rest, copy=True)
            value = loss_fn(problem, model, x, y)
            return value, nnx.split(model, nnx.Param, ...)[2]

        grads, new_rest = jax.grad(loss, has_aux=True)(params)
        extra = {}
        if kfac:
            model = nnx.merge(graphdef, params, rest, copy=True)
            extra["kfac_stats"] = optlab.fisher.statistics(
                model, x, y, key=jax.random.fold_in(jax.random.key(0), t), loss=problem.loss)
        updates, state = tx.update(grads, state, params, **extra)
        return (optax.apply_updates(params, updates), new_rest, state), None

    def run(carry, every, xs, ys):
        body = functools.partial(step, every=every)
        return jax.lax.scan(body, carry, (jnp.arange(calls), xs, ys))[0]

    def fresh() -> Any:
        copy = jax.tree.map(lambda a: jnp.array(a, copy=True), (params, rest))
        return (*copy, tx_of(NEVER).init(params))

    every = jnp.int32(NEVER)
    compiled = jax.jit(run, donate_argnums=0).lower(fresh(), every, xs, ys).compile()
    return (lambda carry, every: compiled(carry, every, xs, ys)), fresh


@dataclass
class Result:
    """Median seconds per step of the four kernels of one model."""

    problem: Problem
    params: int
    adam: float
    adam_aa: float
    plain: float
    refresh: float
    calls: int

    def amortised(self, every: int) -> float:
        """K-FAC with a refresh every ``every`` steps, per step, relative to Adam."""
        return (self.refresh + (every - 1) * self.plain) / every / self.adam


def bench(problem: Problem, reps: int, warmup: int, calls: int, seed: int) -> Result:
    adam, adam_fresh = make_step(problem, kfac=False, calls=calls)
    kfac, kfac_fresh = make_step(problem, kfac=True, calls=calls)
    def kernel(fn: Callable, fresh: Callable[[], Any], every: int) -> step_time.Runner:
        """``carry = fn(carry, every)`` on a carry of its own (the first K-FAC call refreshes
        the inverses: it is a warmup)."""
        return step_time.Runner(lambda carry, e: (fn(carry, e),), lambda: (fresh(),),
                                (jnp.int32(every),))

    kernels = {"adam": kernel(adam, adam_fresh, NEVER),
               "adam_aa": kernel(adam, adam_fresh, NEVER),
               "plain": kernel(kfac, kfac_fresh, NEVER),
               "refresh": kernel(kfac, kfac_fresh, 1)}
    step_time.time_interleaved(list(kernels.values()), reps, warmup, rounds=1, seed=seed)
    med = {name: statistics.median(k.times) / calls for name, k in kernels.items()}
    n = param_count(problem.model())
    return Result(problem, n, med["adam"], med["adam_aa"], med["plain"], med["refresh"],
                  calls)


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def table(results: Sequence[Result]) -> str:
    head = ["model", "params", "Adam ms/step", "A/A", "K-FAC plain / Adam",
            "K-FAC refresh / Adam", *[f"amortised k={k}" for k in EVERY]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        row = [r.problem.description, f"{r.params:,}", f"{1e3 * r.adam:.3f}",
               f"{r.adam_aa / r.adam:.2f}", f"{r.plain / r.adam:.1f}",
               f"{r.refresh / r.adam:.1f}", *[f"{r.amortised(k):.1f}" for k in EVERY]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def environment() -> str:
    """step_time's description of the machine and versions, with the load average."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"{step_time.environment()}; load average {load}"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(problems()),
                        help=f"comma-separated, of {', '.join(problems())} (default: all)")
    parser.add_argument("--reps", type=int, default=15,
                        help="timed repetitions per kernel (default: 15)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed calls per kernel first (default: 2)")
    parser.add_argument("--calls", type=int, default=5,
                        help="steps per timed call, inside one lax.scan (default: 5)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: mlp only, 5 reps, 1 warmup call, 5 steps per call")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="threads of the BLAS/LAPACK library (0: its default; default: 1, "
                        "see the module docstring)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.reps, args.warmup, args.calls = "mlp", 5, 1, 5
    args.model_list = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = sorted(set(args.model_list) - set(problems()))
    if unknown:
        parser.error(f"unknown models {unknown}; choose from {list(problems())}")
    if args.reps < 1 or args.calls < 1 or args.warmup < 1 or args.blas_threads < 0:
        parser.error("need --reps, --calls and --warmup >= 1, --blas-threads >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    limit = optlab.fisher.limit_blas(args.blas_threads)
    print(environment())
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(f"BLAS threads: {args.blas_threads or 'library default'}; "
          f"reps={args.reps} warmup={args.warmup} steps per call={args.calls}; medians; "
          f"lr {LEARNING_RATE:g}, damping {DAMPING:g}, momentum 0.9\n")
    results = []
    for name in args.model_list:
        results.append(bench(problems()[name], args.reps, args.warmup, args.calls, args.seed))
        r = results[-1]
        print(f"  {name}: plain {r.plain / r.adam:.1f}×, refresh {r.refresh / r.adam:.1f}× "
              f"Adam (A/A {r.adam_aa / r.adam:.2f})", file=sys.stderr, flush=True)
    print("## K-FAC cost per step relative to Adam\n")
    print(table(results))
    print(f"\n(total {time.perf_counter() - start:.1f} s)")
    del limit
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
