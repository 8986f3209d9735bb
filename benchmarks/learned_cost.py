"""Cost of the learned optimizers relative to Adam, and meta-training throughput, side by side.

1. **Update cost.** For each parameter count the script compiles the jitted, buffer-donating
   update step ``(p, s, g) -> (p + u, s')`` of ``optlab.adam``, of the LSTM optimizer
   (Andrychowicz et al. 2016; 2 layers of 20 units per coordinate) and of the per-parameter
   MLP optimizer (hidden 32), on step_time's parameter trees (four matrices), and times them
   interleaved with an A/A copy of Adam's step (the noise floor of a ratio). Reported:
   learned / Adam from the medians, the optimizer state in bytes per parameter, and each
   step's compile time (the learned optimizers run their network once per parameter leaf).
2. **Training step.** The same three optimizers inside a whole training step (loss, gradient,
   update, apply) of the MNIST-1D MLP that meta-training trains (40-32-10, batch 64, the
   ``mnist1d`` task family's loss): what a user of ``optlab train --optimizer learned:PATH``
   pays per step.
3. **Meta-training throughput.** One meta-step (``optlab.learned.meta.run_meta_steps``: a
   truncation of ``unroll`` inner steps on each of ``tasks`` vmapped tasks, its meta-gradient
   by BPTT or ES, the Adam update of φ) against the forward inner training of the same tasks
   with Adam and with the learned optimizer (no meta-gradient), for the quadratic and MNIST-1D
   families. Reported: inner steps per second of meta-training, its cost relative to training
   the same tasks with Adam, and the compile time of the meta-step.

Usage::

    python benchmarks/learned_cost.py                    # sizes 1e5, 1e6; all parts
    python benchmarks/learned_cost.py --sizes 1e6,1e7    # e.g. on a GPU
    python benchmarks/learned_cost.py --quick            # smoke test (< 1 min)

Ratios are what to quote; absolute times depend on the (shared, noisy) machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import step_time
from step_time import Runner, bootstrap_ratio_ci, compile_donated, time_interleaved

import optlab
from optlab import learned
from optlab.learned import meta

LEARNING_RATE = 1e-3


def optimizers(seed: int = 0) -> dict[str, optax.GradientTransformation]:
    """Adam and the two learned optimizers at their default sizes (φ at initialisation: the
    cost does not depend on its values)."""
    return {"adam": optlab.adam(LEARNING_RATE),
            **{name: make(phi) for name, (make, phi) in _factories(seed).items()}}


@dataclass
class Row:
    """Median seconds per kernel (``times``), with ``base`` the reference kernel's name."""

    label: str
    times: dict[str, list[float]]
    base: str
    extra: dict[str, str]

    def median(self, name: str) -> float:
        return statistics.median(self.times[name])

    def ratio(self, name: str) -> str:
        low, high = bootstrap_ratio_ci(self.times[name], self.times[self.base])
        return f"{self.median(name) / self.median(self.base):.1f} [{low:.1f}, {high:.1f}]"


def _time(runners: dict[str, Runner], reps: int, warmup: int, rounds: int, seed: int
          ) -> dict[str, list[float]]:
    time_interleaved(list(runners.values()), reps, warmup, rounds, seed)
    return {name: r.times for name, r in runners.items()}


# ------------------------------------------------------------------------------------------
# 1. The update step alone
# ------------------------------------------------------------------------------------------


def update_cost(n: int, reps: int, warmup: int, rounds: int, seed: int) -> Row:
    params = step_time.make_params(n, seed)
    grads = step_time.to_device({k: 0.1 * g for k, g in step_time.make_params(n, seed + 1)
                                 .items()})
    runners, state_bytes, compile_s = {}, {}, {}
    for name, tx in optimizers(seed).items():
        def setup(tx: optax.GradientTransformation = tx) -> tuple[Any, Any]:
            p = step_time.to_device(params)
            return p, step_time.own_buffers(tx.init(p))

        p, state = setup()
        state_bytes[name] = step_time.tree_nbytes(state) / step_time.tree_size(params)
        begin = time.perf_counter()
        fn = compile_donated(step_time.make_step(tx), p, state, grads, donate=(0, 1)).fn
        compile_s[name] = time.perf_counter() - begin
        runners[name] = Runner(fn, setup, (grads,))
    runners["adam_aa"] = Runner(runners["adam"].fn, runners["adam"].setup, (grads,))
    times = _time(runners, reps, warmup, rounds, seed)
    extra = {f"state B/param {k}": f"{v:.0f}" for k, v in state_bytes.items()}
    extra.update({f"compile s {k}": f"{v:.2f}" for k, v in compile_s.items()})
    return Row(f"{step_time.tree_size(params):,} params", times, "adam", extra)


# ------------------------------------------------------------------------------------------
# 2. A whole training step of the MNIST-1D MLP
# ------------------------------------------------------------------------------------------


def mnist1d_family(hidden: tuple[int, ...] = (32,), batch: int = 64) -> learned.TaskFamily:
    """The meta-training family on random MNIST-1D-shaped data (40 inputs, 10 classes; the
    cost does not depend on the values)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 40)).astype(np.float32)
    y = rng.integers(0, 10, 1000)
    return learned.mnist1d_family(x, y, hidden=hidden, subset=1000, batch=batch)


def train_step_cost(reps: int, warmup: int, rounds: int, seed: int, steps: int) -> Row:
    """``steps`` training steps per call (one ``lax.scan``) of one MNIST-1D MLP task."""
    family = mnist1d_family()
    task = family.sample(jax.random.key(seed))
    params0 = family.init(jax.random.key(seed + 1), task)
    runners = {}
    for name, tx in optimizers(seed).items():
        def run(params, state, t, tx=tx):
            def body(carry, _):
                params, state, t = carry
                grads = jax.grad(family.loss)(params, task, jax.random.fold_in(
                    jax.random.key(seed), t))
                updates, state = tx.update(grads, state, params)
                return (optax.apply_updates(params, updates), state, t + 1), None

            return jax.lax.scan(body, (params, state, t), None, length=steps)[0]

        def setup(tx=tx):
            p = jax.tree.map(jnp.array, params0)
            return p, step_time.own_buffers(tx.init(p)), jnp.zeros([], jnp.int32)

        fn = jax.jit(run, donate_argnums=(0, 1)).lower(*setup()).compile()
        runners[name] = Runner(fn, setup)
    runners["adam_aa"] = Runner(runners["adam"].fn, runners["adam"].setup)
    times = _time(runners, reps, warmup, rounds, seed)
    times = {k: [t / steps for t in v] for k, v in times.items()}
    return Row("MNIST-1D MLP 40-32-10, batch 64", times, "adam",
               {"Adam µs/step": f"{1e6 * statistics.median(times['adam']):.1f}"})


# ------------------------------------------------------------------------------------------
# 3. Meta-training throughput
# ------------------------------------------------------------------------------------------


def _factories(seed: int) -> dict[str, tuple[Callable[[Any], optax.GradientTransformation], Any]]:
    """Each learned optimizer's factory ``φ -> transform`` and its φ at initialisation."""
    key = jax.random.key(seed)
    return {"lstm": (learned.lstm_optimizer, learned.init_lstm(key)),
            "mlp": (learned.mlp_optimizer, learned.init_mlp(key))}


def _adam(_: Any) -> optax.GradientTransformation:
    return optlab.adam(LEARNING_RATE)


def meta_cost(family_name: str, opt_name: str, estimator: str, config: meta.MetaConfig,
              reps: int, warmup: int, seed: int) -> Row:
    """One meta-step vs the forward inner training of the same tasks (Adam; the learned
    optimizer without its meta-gradient)."""
    family = meta_families()[family_name]
    make_tx, phi = _factories(seed)[opt_name]
    config = meta.MetaConfig(**{**config.to_json(), "estimator": estimator})
    state = meta.init_meta_state(family, make_tx, config, phi, jax.random.key(seed))
    start = time.perf_counter()
    meta_fn = jax.jit(lambda s: meta.run_meta_steps(family, make_tx, config, s, 1)[0]
                      ).lower(state).compile()
    compile_s = time.perf_counter() - start

    def forward(factory: Callable[[Any], optax.GradientTransformation], mp: Any) -> Callable:
        inner0 = meta.init_meta_state(family, factory, config, mp, jax.random.key(seed)).inner

        def run(inner):
            return meta._batch_loss(family, factory, config, mp, inner)[1]

        fn = jax.jit(run).lower(inner0).compile()
        return lambda inner: (fn(inner),), lambda: (inner0,)

    runners = {"meta": Runner(lambda s: (meta_fn(s),), lambda: (state,))}
    for name, (factory, mp) in (("adam", (_adam, None)), ("learned", (make_tx, phi))):
        fn, setup = forward(factory, mp)
        runners[name] = Runner(fn, setup)
    runners["adam_aa"] = Runner(runners["adam"].fn, runners["adam"].setup)
    times = _time(runners, reps, warmup, 1, seed)
    inner_steps = config.tasks * config.unroll
    return Row(f"{family_name}, {opt_name}, {estimator}", times, "adam",
               {"inner steps/s (meta)": f"{inner_steps / statistics.median(times['meta']):,.0f}",
                "compile s": f"{compile_s:.1f}"})


def meta_families() -> dict[str, learned.TaskFamily]:
    return {"quadratic": learned.quadratic_family(), "mnist1d": mnist1d_family()}


# ------------------------------------------------------------------------------------------
# Tables and command line
# ------------------------------------------------------------------------------------------


def table(rows: Sequence[Row], first: str, columns: Sequence[tuple[str, str]]) -> str:
    """``columns``: (heading, kernel name) pairs shown as that kernel / the row's base, with
    the 95 % bootstrap interval, then the rows' extra columns."""
    extra = list(rows[0].extra)
    head = [first, *(h for h, _ in columns), "A/A", *extra]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.label, *(r.ratio(k) for _, k in columns),
                 f"{r.median(r.base + '_aa') / r.median(r.base):.2f}",
                 *(r.extra[k] for k in extra)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1e5,1e6",
                        help="comma-separated parameter counts of the update-cost part "
                        "(default: 1e5,1e6)")
    parser.add_argument("--reps", type=int, default=100,
                        help="timed repetitions per kernel (default: 100; the meta part "
                        "uses a fifth)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="rounds of fresh buffers in the update-cost part (default: 4)")
    parser.add_argument("--tasks", type=int, default=8,
                        help="tasks per meta-step (default: 8)")
    parser.add_argument("--unroll", type=int, default=20,
                        help="inner steps per truncation (default: 20)")
    parser.add_argument("--parts", default="update,train,meta",
                        help="comma-separated, of update, train, meta (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test: size 1e4, 6 reps, 2 tasks × 4 steps, the meta part "
                        "only for the LSTM with BPTT on the quadratic family")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.reps, args.warmup, args.rounds = "1e4", 6, 1, 2
        args.tasks, args.unroll = 2, 4
    try:
        args.size_list = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: expected comma-separated numbers, got {args.sizes!r}")
    args.part_list = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(args.part_list) - {"update", "train", "meta"})
    if unknown:
        parser.error(f"--parts: unknown {unknown}; choose from update, train, meta")
    for flag in ("reps", "warmup", "rounds", "tasks", "unroll"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if any(n < 16 for n in args.size_list):
        parser.error("--sizes: each must be >= 16")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    print(step_time.environment())
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(f"reps={args.reps} warmup={args.warmup}; medians, learned / Adam with a 95 % "
          "bootstrap interval\n")
    if "update" in args.part_list:
        rows = [update_cost(n, args.reps, args.warmup, args.rounds, args.seed)
                for n in args.size_list]
        print("## Update step (jitted, donated): learned optimizer / Adam\n")
        print(table(rows, "size", [("LSTM / Adam", "lstm"), ("MLP / Adam", "mlp")]))
        print()
    if "train" in args.part_list:
        steps = 10 if args.quick else 50
        row = train_step_cost(args.reps, args.warmup, args.rounds, args.seed, steps)
        print(f"## Training step (loss, gradient, update; {steps} per call): learned / Adam\n")
        print(table([row], "model", [("LSTM / Adam", "lstm"), ("MLP / Adam", "mlp")]))
        print()
    if "meta" in args.part_list:
        config = meta.MetaConfig(unroll=args.unroll, horizon=5 * args.unroll,
                                 tasks=args.tasks, es_pairs=8)
        combos = ([("quadratic", "lstm", "bptt")] if args.quick
                  else [(f, o, e) for f in ("quadratic", "mnist1d") for o in ("lstm", "mlp")
                        for e in ("bptt", "es")])
        reps = max(3, args.reps // 5)
        rows = []
        for f, o, e in combos:  # a line per row as it is done (a cut-off run keeps them)
            rows.append(meta_cost(f, o, e, config, reps, args.warmup, args.seed))
            print(f"  {rows[-1].label}: meta-step {rows[-1].ratio('meta')} × Adam training",
                  file=sys.stderr, flush=True)
        print(f"## Meta-step ({args.tasks} tasks × {args.unroll} inner steps; ES with "
              f"{config.es_pairs} antithetic pairs) relative to training the same tasks "
              "with Adam\n")
        print(table(rows, "family, optimizer, estimator",
                    [("meta-step / Adam training", "meta"),
                     ("learned training / Adam training", "learned")]))
        print()
    print(f"(total {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
