"""Step time of optlab vs optax: the jitted, buffer-donating update step, side by side.

For each optimizer and parameter count the script compiles, in one process,

    step = jax.jit(lambda p, s, g: (apply_updates(p, u), s'), donate_argnums=(0, 1))
    with u, s' = tx.update(g, s, p)

for ``tx`` from optlab and from optax with the same hyperparameters. Five kernels are then
timed, interleaved (a freshly shuffled order in every repetition, so drifts in machine load
hit all alike): the optlab step, the optax step, the optax step again on buffers of its own
(an A/A comparison: the noise floor of the ratio), and two "copy" references, ``x ↦ -x`` on
every leaf of a donated tree, (a) shaped like the params and (b) sized to move as many bytes
as the optax step must. (``x * 1.0`` or ``x + 0`` would not do: XLA simplifies them away
and, with donation, the "copy" becomes a no-op.) The repetitions are split into rounds, each
on freshly allocated buffers, so that no kernel keeps a lucky memory placement.

Reported per optimizer and size, from the median times:

* ``ratio``: optlab / optax, with a 95 % bootstrap interval (target ≤ 1.05);
* ``roofline``: (bytes the step must move / time) / copy bandwidth, where the step must move
  params + grads + state read once and params + state written once (state bytes counted
  from the actual state trees) and the copy bandwidth is bytes read and written / copy time
  (target ≥ 85 % on CPU);
* ``state B/param``: sum of the ``nbytes`` of the state leaves / number of params.

Also printed: the fusion kernels, scalar state leaves and XLA's "bytes accessed" estimate of
each compiled step (does optlab compile to the same work as optax?), and optlab's state bytes
per parameter for powersign, addsign, adam and amsgrad against what their formulas need.

Usage::

    python benchmarks/step_time.py                       # 1e6 and 1e7 params, all optimizers
    python benchmarks/step_time.py --sizes 1e6 --reps 1000 --optimizers adam,lion
    python benchmarks/step_time.py --quick               # smoke test, < 30 s

    # XLA:CPU multi-output fusion (not on by default; see README "Roofline on CPU"):
    XLA_FLAGS="--xla_backend_extra_options=xla_cpu_use_multi_output_fusion \\
      --xla_cpu_copy_insertion_use_region_analysis=true" python benchmarks/step_time.py
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import inspect
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optlab

PyTree = Any
Step = Callable[..., Any]

LEARNING_RATE = 1e-3
RATIO_TARGET = 1.05
ROOFLINE_TARGET = 0.85

# Optimizers without an optax counterpart, timed against the optax optimizer of the same
# state (the ratio is then their cost relative to it, not a parity target).
REFERENCE = {"sgdw": "sgd", "powersign": "signum", "addsign": "signum", "adabound": "adam",
             "amsbound": "amsgrad", "shampoo": "adam", "soap": "adam"}
# Optimizers that read optax's extra arguments: the timed step passes them (a loss 0.5‖θ‖²,
# computed in the step for both libraries alike).
EXTRA_ARGS = {"polyak_sgd": ("value",), "momo": ("value",), "momo_adam": ("value",),
              "sophia": ("obj_fn",), "lbfgs": ("value", "grad", "value_fn")}
DEFAULT_SET = ("adam", "amsgrad", "adamw", "nadam", "lion", "rmsprop", "sgd")


def _optax_fn(name: str) -> Callable[..., optax.GradientTransformation]:
    name = REFERENCE.get(name, name)
    return getattr(optax, name, None) or getattr(optax.contrib, name)


def _builder(name: str) -> Callable[[Any], optax.GradientTransformation]:
    """``lib -> transform`` for the library module (optlab or optax): each library's
    defaults (which coincide, see the parity tests), learning rate LEARNING_RATE where the
    optimizer takes one, SGD with momentum 0.9."""

    def build(lib: Any) -> optax.GradientTransformation:
        fn = getattr(optlab, name) if lib is optlab else _optax_fn(name)
        kwargs = {"momentum": 0.9} if REFERENCE.get(name, name) == "sgd" else {}
        if "learning_rate" in inspect.signature(fn).parameters:
            kwargs["learning_rate"] = LEARNING_RATE
        if name == "noisy_sgd" and lib is not optlab:
            kwargs["key"] = jax.random.key(0)
        return fn(**kwargs)

    return build


# name -> function of the library module (optlab or optax) returning the transformation.
OPTIMIZERS: dict[str, Callable[[Any], optax.GradientTransformation]] = {
    name: _builder(name) for name in optlab.OPTIMIZERS}

# optlab-only state check: optimizer -> number of param-sized trees its formula needs.
STATE_TARGETS: dict[str, tuple[Callable[[], optax.GradientTransformation], int]] = {
    "powersign": (lambda: optlab.powersign(LEARNING_RATE), 1),
    "addsign": (lambda: optlab.addsign(LEARNING_RATE), 1),
    "adam": (lambda: optlab.adam(LEARNING_RATE), 2),
    "amsgrad": (lambda: optlab.amsgrad(LEARNING_RATE), 3),
}


# ------------------------------------------------------------------------------------------
# Problem setup
# ------------------------------------------------------------------------------------------


def make_params(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A dict of four float32 matrices (1024 columns) holding ≈ n parameters in total.

    Host (numpy) arrays: :func:`to_device` makes fresh device buffers from them without
    compiling anything.
    """
    cols = 1024 if n >= 4 * 1024 else 16
    fractions = {"w0": 0.4, "w1": 0.3, "w2": 0.2, "w3": 0.1}
    rng = np.random.default_rng(seed)
    return {
        name: (0.02 * rng.standard_normal((max(1, round(n * frac / cols)), cols))).astype(
            np.float32
        )
        for name, frac in fractions.items()
    }


def to_device(tree: PyTree) -> PyTree:
    """Fresh device buffers holding ``tree`` (each donating kernel gets its own)."""
    return jax.tree.map(lambda x: jax.device_put(np.asarray(x)), tree)


def tree_nbytes(tree: PyTree) -> int:
    """Sum of the byte sizes of the array leaves (works on arrays and ShapeDtypeStructs)."""
    return sum(
        int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in jax.tree.leaves(tree)
    )


def tree_size(tree: PyTree) -> int:
    """Number of elements over all leaves."""
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def _loss(params: PyTree) -> jax.Array:
    return 0.5 * sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(params))


def extra_args(names: Sequence[str], params: PyTree, grads: PyTree) -> dict[str, Any]:
    """optax's extra arguments ``names`` (EXTRA_ARGS) for one update: the loss 0.5‖θ‖², its
    gradient, and the loss as ``value_fn`` / ``obj_fn``."""
    makers = {"value": lambda: _loss(params), "grad": lambda: grads,
              "value_fn": lambda: _loss, "obj_fn": lambda: _loss}
    return {k: makers[k]() for k in names}


def make_step(tx: optax.GradientTransformation, extra: Sequence[str] = ()) -> Step:
    def step(params: PyTree, state: PyTree, grads: PyTree) -> tuple[PyTree, PyTree]:
        updates, state = tx.update(grads, state, params, **extra_args(extra, params, grads))
        return optax.apply_updates(params, updates), state

    return step


def own_buffers(tree: PyTree) -> PyTree:
    """A copy of a state in buffers of its own: optax's dog, dowg, prodigy, cocob, madgrad and
    lbfgs keep the params (or one zeros buffer twice) in their state, which a step donating
    both params and state refuses."""
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def negate_tree(tree: PyTree) -> PyTree:
    """The copy reference: reads and writes every byte once; x ↦ -x is not simplified away."""
    return jax.tree.map(jnp.negative, tree)


@dataclasses.dataclass
class Compiled:
    """A compiled executable with its fusion-kernel and copy counts and XLA's bytes-accessed
    estimate. A ``copy`` of a param-sized buffer is a full extra pass (XLA inserts one when a
    donated input is overwritten in place while another kernel still reads it: Lion's m)."""

    fn: Step
    fusions: int
    xla_bytes: float
    copies: int = 0


def compile_donated(fn: Step, *args: PyTree, donate: tuple[int, ...]) -> Compiled:
    """Compiles ``fn`` ahead of time for ``args`` (arrays or numpy), donating ``donate``."""
    compiled = jax.jit(fn, donate_argnums=donate).lower(*args).compile()
    hlo = compiled.as_text()
    cost = compiled.cost_analysis()
    if isinstance(cost, list):  # older jax returns one dict per computation
        cost = cost[0] if cost else {}
    return Compiled(
        compiled,
        len(re.findall(r"\sfusion\(", hlo)),
        float((cost or {}).get("bytes accessed", float("nan"))),
        len(re.findall(r"\scopy\(", hlo)),
    )


# ------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Runner:
    """One timed kernel, called as ``args = fn(*args, *fixed)`` on buffers of its own.

    ``setup`` makes fresh (donatable) ``args``; it is called again at every round, so that
    each kernel sees several different buffer placements.
    """

    fn: Step
    setup: Callable[[], tuple[PyTree, ...]]
    fixed: tuple[PyTree, ...] = ()
    args: tuple[PyTree, ...] | None = None
    times: list[float] = dataclasses.field(default_factory=list)

    def call(self) -> float:
        assert self.args is not None, "call setup first"
        start = time.perf_counter()
        out = self.fn(*self.args, *self.fixed)
        jax.block_until_ready(out)
        elapsed = time.perf_counter() - start
        self.args = out if isinstance(out, tuple) else (out,)
        return elapsed


def time_interleaved(
    runners: Sequence[Runner], reps: int, warmup: int, rounds: int = 1, seed: int = 0
) -> None:
    """Times every runner ``reps`` times, interleaved: in a freshly shuffled order each rep.

    The reps are split into ``rounds``; each round frees all buffers, allocates new ones in a
    shuffled order (so no kernel keeps a lucky or unlucky memory placement throughout) and
    makes ``warmup`` untimed calls per runner first.
    """
    rng = random.Random(seed)
    order = list(runners)
    per_round = [reps // rounds + (i < reps % rounds) for i in range(rounds)]
    gc_was_enabled = gc.isenabled()
    try:
        for count in per_round:
            if count == 0:
                continue
            for runner in order:
                runner.args = None
            rng.shuffle(order)
            for runner in order:
                runner.args = runner.setup()
            for _ in range(warmup):
                for runner in order:
                    runner.call()
            gc.collect()
            gc.disable()
            for _ in range(count):
                rng.shuffle(order)
                for runner in order:
                    runner.times.append(runner.call())
            if gc_was_enabled:
                gc.enable()
    finally:
        for runner in order:
            runner.args = None
        if gc_was_enabled:
            gc.enable()


def bootstrap_ratio_ci(
    a: Sequence[float], b: Sequence[float], seed: int = 0, resamples: int = 2000
) -> tuple[float, float]:
    """95 % bootstrap interval of median(a) / median(b), resampling repetitions in pairs."""
    x, y = np.asarray(a), np.asarray(b)
    idx = np.random.default_rng(seed).integers(0, len(x), size=(resamples, len(x)))
    ratios = np.median(x[idx], axis=1) / np.median(y[idx], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


@dataclasses.dataclass
class Result:
    """Medians (seconds) and byte counts of one optimizer at one size."""

    optimizer: str
    n_params: int
    t_optlab: float
    t_optax: float
    t_optax_aa: float
    ratio_ci: tuple[float, float]
    t_copy: float
    t_copy_matched: float
    bytes_optlab: int
    bytes_optax: int
    state_optlab: int
    state_optax: int
    copy_bytes: int
    copy_matched_bytes: int
    fusions_optlab: int
    fusions_optax: int
    scalars_optlab: int
    scalars_optax: int
    xla_bytes_optlab: float
    xla_bytes_optax: float
    copies_optlab: int = 0
    copies_optax: int = 0

    @property
    def ratio(self) -> float:
        return self.t_optlab / self.t_optax

    @property
    def null_ratio(self) -> float:
        """optax / optax (two instances of the same step): the noise floor of ``ratio``."""
        return self.t_optax_aa / self.t_optax

    def bandwidth(self, matched: bool = False) -> float:
        if matched:
            return self.copy_matched_bytes / self.t_copy_matched
        return self.copy_bytes / self.t_copy

    def roofline(self, lib: str, matched: bool = False) -> float:
        if lib == "optlab":
            return self.bytes_optlab / self.t_optlab / self.bandwidth(matched)
        return self.bytes_optax / self.t_optax / self.bandwidth(matched)


_COPY_CACHE: dict[Any, Step] = {}


def copy_kernel(tree: PyTree) -> Step:
    """The compiled, donating copy reference for trees shaped like ``tree`` (cached)."""
    key = jax.tree.structure(tree), tuple(leaf.shape for leaf in jax.tree.leaves(tree))
    if key not in _COPY_CACHE:
        _COPY_CACHE[key] = compile_donated(negate_tree, tree, donate=(0,)).fn
    return _COPY_CACHE[key]


def unused_counter() -> optax.GradientTransformation:
    """An identity transform whose state is a step counter nobody reads: one scalar kernel.

    ``--scalar-kernel`` chains it in front of optlab's optimizer. XLA:CPU runs a program with
    such a kernel measurably faster (up to ~10 % at 1M parameters) although the per-element
    kernels are identical, so this separates a runtime effect from a difference in the work.
    """
    return optax.GradientTransformation(
        lambda params: jnp.zeros([], jnp.int32), lambda updates, count, params=None: (
            updates, count + 1))


def bench_one(
    name: str, n: int, reps: int, warmup: int, rounds: int, seed: int,
    scalar_kernel: bool = False,
) -> Result:
    params = make_params(n, seed)
    grads = to_device({k: 0.1 * g + np.float32(1e-3) for k, g in make_params(n, seed + 1).items()})
    n_params = tree_size(params)
    param_bytes = tree_nbytes(params)
    grad_bytes = tree_nbytes(grads)

    runners: dict[str, Runner] = {}
    compiled: dict[str, Compiled] = {}
    state_bytes: dict[str, int] = {}
    scalars: dict[str, int] = {}
    for label, lib in (("optlab", optlab), ("optax", optax)):
        tx = OPTIMIZERS[name](lib)
        if scalar_kernel and lib is optlab:
            tx = optax.chain(unused_counter(), tx)

        def setup(tx: optax.GradientTransformation = tx) -> tuple[PyTree, PyTree]:
            p = to_device(params)
            return p, own_buffers(tx.init(p))

        p, state = setup()
        state_bytes[label] = tree_nbytes(state)
        scalars[label] = sum(1 for leaf in jax.tree.leaves(state) if leaf.shape == ())
        compiled[label] = compile_donated(make_step(tx, EXTRA_ARGS.get(name, ())), p, state,
                                          grads, donate=(0, 1))
        runners[label] = Runner(compiled[label].fn, setup, (grads,))
    # The A/A (null) comparison: the same optax executable again, on buffers of its own.
    runners["optax_aa"] = Runner(compiled["optax"].fn, runners["optax"].setup, (grads,))

    must_move = {lib: 2 * param_bytes + grad_bytes + 2 * state_bytes[lib] for lib in state_bytes}
    # A copy that moves as many bytes as the optax step must (read + write), same leaf layout.
    matched = make_params(must_move["optax"] // 8, seed + 2)
    for label, tree in (("copy", params), ("copy_matched", matched)):
        runners[label] = Runner(copy_kernel(tree), lambda tree=tree: (to_device(tree),))

    time_interleaved(list(runners.values()), reps, warmup, rounds, seed)
    med = {k: statistics.median(r.times) for k, r in runners.items()}
    ratio_ci = bootstrap_ratio_ci(runners["optlab"].times, runners["optax"].times, seed)

    return Result(
        optimizer=name,
        n_params=n_params,
        t_optlab=med["optlab"],
        t_optax=med["optax"],
        t_optax_aa=med["optax_aa"],
        ratio_ci=ratio_ci,
        t_copy=med["copy"],
        t_copy_matched=med["copy_matched"],
        bytes_optlab=must_move["optlab"],
        bytes_optax=must_move["optax"],
        state_optlab=state_bytes["optlab"],
        state_optax=state_bytes["optax"],
        copy_bytes=2 * param_bytes,
        copy_matched_bytes=2 * tree_nbytes(matched),
        fusions_optlab=compiled["optlab"].fusions,
        fusions_optax=compiled["optax"].fusions,
        scalars_optlab=scalars["optlab"],
        scalars_optax=scalars["optax"],
        xla_bytes_optlab=compiled["optlab"].xla_bytes,
        xla_bytes_optax=compiled["optax"].xla_bytes,
        copies_optlab=compiled["optlab"].copies,
        copies_optax=compiled["optax"].copies,
    )


# ------------------------------------------------------------------------------------------
# Reporting
# ------------------------------------------------------------------------------------------


def _mark(ok: bool) -> str:
    return "" if ok else " ✗"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def results_table(results: Sequence[Result]) -> str:
    lines = [
        "| optimizer | params | ratio optlab/optax [95% CI] | A/A optax/optax "
        "| roofline optlab / optax | roofline (matched copy) optlab / optax "
        "| state B/param optlab / optax | t optax (ms) | copy GB/s (params / matched) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lab, tax = r.roofline("optlab"), r.roofline("optax")
        lab_m, tax_m = r.roofline("optlab", True), r.roofline("optax", True)
        lines.append(
            f"| {r.optimizer} | {_size(r.n_params)} "
            f"| {r.ratio:.3f}{_mark(r.ratio <= RATIO_TARGET)} "
            f"[{r.ratio_ci[0]:.2f}, {r.ratio_ci[1]:.2f}] | {r.null_ratio:.3f} "
            f"| {lab:.0%}{_mark(lab >= ROOFLINE_TARGET)} / {tax:.0%} "
            f"| {lab_m:.0%}{_mark(lab_m >= ROOFLINE_TARGET)} / {tax_m:.0%} "
            f"| {r.state_optlab / r.n_params:.2f} / {r.state_optax / r.n_params:.2f} "
            f"| {r.t_optax * 1e3:.3f} "
            f"| {r.bandwidth() / 1e9:.1f} / {r.bandwidth(True) / 1e9:.1f} |"
        )
    return "\n".join(lines)


def hlo_table(results: Sequence[Result]) -> str:
    lines = [
        "| optimizer | params | fusions optlab / optax | scalar state leaves optlab / optax "
        "| XLA bytes accessed / must-move, optlab / optax | copies optlab / optax |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.optimizer} | {_size(r.n_params)} | {r.fusions_optlab} / {r.fusions_optax} "
            f"| {r.scalars_optlab} / {r.scalars_optax} "
            f"| {r.xla_bytes_optlab / r.bytes_optlab:.2f} "
            f"/ {r.xla_bytes_optax / r.bytes_optax:.2f} "
            f"| {r.copies_optlab} / {r.copies_optax} |"
        )
    return "\n".join(lines)


def zoo_state_bytes(name: str, n: int = 1_000_000) -> tuple[float, float | None]:
    """State bytes per parameter of optlab's and optax's ``name`` (None where optax has no
    counterpart), from ``eval_shape`` (no allocation)."""
    params = jax.eval_shape(lambda: make_params(n))
    n_params = tree_size(params)
    ours = tree_nbytes(jax.eval_shape(OPTIMIZERS[name](optlab).init, params)) / n_params
    if name in REFERENCE:
        return ours, None
    theirs = tree_nbytes(jax.eval_shape(OPTIMIZERS[name](optax).init, params)) / n_params
    return ours, theirs


def zoo_state_table(n: int = 1_000_000, names: Sequence[str] | None = None) -> str:
    """State bytes per parameter of every optimizer (or of ``names``), optlab vs optax."""
    lines = ["| optimizer | state B/param optlab | optax | optlab ≤ optax |", "|---|---|---|---|"]
    for name in OPTIMIZERS if names is None else names:
        ours, theirs = zoo_state_bytes(name, n)
        if theirs is None:
            lines.append(f"| {name} | {ours:.4f} | (none; {REFERENCE[name]}: "
                         f"{zoo_state_bytes(REFERENCE[name], n)[1]:.4f}) | – |")
        else:
            lines.append(f"| {name} | {ours:.4f} | {theirs:.4f} "
                         f"| {'yes' if ours <= theirs + 1e-9 else 'no ✗'} |")
    return "\n".join(lines)


def state_table(n: int = 1_000_000) -> str:
    """optlab's state against what each formula needs, from ``eval_shape`` (no allocation)."""
    params = jax.eval_shape(lambda: make_params(n))
    n_params, param_bytes = tree_size(params), tree_nbytes(params)
    lines = [
        "| optlab optimizer | state B/param | target B/param | param-sized trees "
        "| scalar leaves optlab / optax |",
        "|---|---|---|---|---|",
    ]
    for name, (build, trees) in STATE_TARGETS.items():
        state = jax.eval_shape(build().init, params)
        scalars = [leaf for leaf in jax.tree.leaves(state) if leaf.shape == ()]
        got = tree_nbytes(state) / n_params
        target = trees * param_bytes / n_params
        ok = abs(got - target) < 0.01
        optax_scalars = "–"
        if hasattr(optax, name):
            optax_state = jax.eval_shape(getattr(optax, name)(LEARNING_RATE).init, params)
            optax_scalars = str(sum(1 for x in jax.tree.leaves(optax_state) if x.shape == ()))
        lines.append(
            f"| {name} | {got:.4f}{_mark(ok)} | {target:g} ({trees} × params) "
            f"| {(tree_nbytes(state) - tree_nbytes(scalars)) / param_bytes:g} "
            f"| {len(scalars)} / {optax_scalars} |"
        )
    return "\n".join(lines)


def environment() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            models = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = f"{models[0]} × {len(models)} logical cores" if models else cpu
    except OSError:
        pass
    devices = ", ".join(str(d) for d in jax.devices())
    # XLA flags change the compiled kernels (e.g. multi-output fusion on CPU, see README), so
    # every result is labelled with them.
    xla_flags = os.environ.get("XLA_FLAGS", "").strip() or "(none)"
    return (
        f"CPU: {cpu}; devices: {devices}; python {platform.python_version()}, "
        f"jax {jax.__version__}, optax {optax.__version__}, optlab {optlab.__version__}; "
        f"XLA_FLAGS: {xla_flags}"
    )


# ------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes", default="1e6,1e7", help="comma-separated parameter counts (default: 1e6,1e7)"
    )
    parser.add_argument(
        "--reps", type=int, default=400, help="timed repetitions per kernel (default: 400)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="untimed calls per kernel at the start of each round (default: 5)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="the reps are split into rounds, each on freshly allocated buffers (default: 5)",
    )
    parser.add_argument(
        "--optimizers",
        default=",".join(DEFAULT_SET),
        help=f"comma-separated names, or 'all' (default: {','.join(DEFAULT_SET)}); "
        f"any of {', '.join(OPTIMIZERS)}; shampoo and soap are timed against "
        "optax's adam",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: size 1e4, 10 reps in 2 rounds, 1 warmup call; the state table "
        "of the chosen optimizers only",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write the raw results (medians in seconds, bytes) as JSON",
    )
    parser.add_argument(
        "--scalar-kernel",
        action="store_true",
        help="chain an unused step counter (one scalar kernel, 4 bytes of state) in front of "
        "optlab's optimizer: isolates XLA:CPU's faster running of programs that have one",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.reps, args.warmup, args.rounds = "1e4", 10, 1, 2
    args.size_list = [int(float(s)) for s in args.sizes.split(",") if s.strip()]
    args.optimizer_list = [s.strip() for s in args.optimizers.split(",") if s.strip()]
    if args.optimizers == "all":
        args.optimizer_list = list(OPTIMIZERS)
    unknown = sorted(set(args.optimizer_list) - set(OPTIMIZERS))
    if unknown:
        parser.error(f"unknown optimizers {unknown}; choose from {list(OPTIMIZERS)}")
    if args.reps < 1 or args.rounds < 1 or not args.size_list:
        parser.error("need --reps >= 1, --rounds >= 1 and at least one size")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    print(environment())
    print(f"command: {' '.join(['python', *sys.argv])}")
    print(
        f"reps={args.reps} rounds={args.rounds} warmup={args.warmup}; times are medians; "
        f"✗ marks a missed target (ratio ≤ {RATIO_TARGET}, roofline ≥ {ROOFLINE_TARGET:.0%}, "
        "state = formula)\n"
    )
    results = []
    for n in args.size_list:
        for name in args.optimizer_list:
            results.append(bench_one(name, n, args.reps, args.warmup, args.rounds, args.seed,
                                     args.scalar_kernel))
            r = results[-1]
            print(
                f"  {name:8s} {_size(r.n_params):>7s}: ratio {r.ratio:.3f} (A/A "
                f"{r.null_ratio:.3f}), roofline {r.roofline('optlab'):.0%} / "
                f"{r.roofline('optax'):.0%}",
                file=sys.stderr,
                flush=True,
            )
    print("\n## Step time, optlab vs optax\n")
    print(results_table(results))
    print("\n## Compiled HLO (informational)\n")
    print(hlo_table(results))
    print("\n## optlab state vs formula\n")
    print(state_table())
    print("\n## State bytes per parameter, every optimizer (1M params, eval_shape)\n")
    print(zoo_state_table(names=args.optimizer_list if args.quick else None))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "environment": environment(),
                    "argv": sys.argv,
                    "results": [dataclasses.asdict(r) for r in results],
                },
                f,
                indent=1,
            )
    print(f"\n(total {time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
