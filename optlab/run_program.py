"""The compiled program of a training call: the pure functions of one run (:class:`_Program`:
init, an epoch as one ``lax.scan`` over mini-batches, evaluation), their mapping over the
runs of the grid (:func:`_over_runs`), and the cache of compiled programs reused by later
calls with the same settings (:data:`_PROGRAMS`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding

from optlab import fisher, lipschitz
from optlab.run_identity import describe

ModelFactory = Callable[[nnx.Rngs], nnx.Module]
OptimizerFactory = Callable[..., optax.GradientTransformation]


def classification_loss(model: nnx.Module, x: jax.Array, y: jax.Array):
    """Mean softmax cross-entropy and accuracy of ``model`` on a batch."""
    logits = model(x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss, (jnp.argmax(logits, -1) == y).mean()


@dataclass(frozen=True)
class _Program:
    """The pure functions of one training call (closed over static structure only)."""

    graph_train: Any
    graph_eval: Any
    model_fn: ModelFactory
    optimizer_fn: OptimizerFactory
    schedule: Callable | None
    batch_size: int
    steps_per_epoch: int
    batch_sharding: NamedSharding | None
    unroll: int | bool = 1
    extra_args: tuple[str, ...] = ()  # optax extra arguments the optimizer accepts

    def optimizer(self, hparams: dict[str, jax.Array]) -> optax.GradientTransformation:
        kwargs = dict(hparams)
        if self.schedule is not None and "learning_rate" in kwargs:
            lr, schedule = kwargs["learning_rate"], self.schedule
            kwargs["learning_rate"] = lambda step: lr * schedule(step)
        return optax.with_extra_args_support(self.optimizer_fn(**kwargs))

    def init(self, seed: jax.Array, hparams: dict[str, jax.Array]) -> dict[str, Any]:
        key = jax.random.key(seed)
        model = self.model_fn(nnx.Rngs(jax.random.fold_in(key, 0)))
        _, params, rest = nnx.split(model, nnx.Param, ...)
        return {
            "params": params, "rest": rest,
            "opt_state": self.optimizer(hparams).init(params),
            "hparams": hparams,
            "key": jax.random.key_data(jax.random.fold_in(key, 1)),
            "active": jnp.array(True), "diverged": jnp.array(False),
        }

    def _constrain(self, x: jax.Array) -> jax.Array:
        if self.batch_sharding is None:
            return x
        return jax.lax.with_sharding_constraint(x, self.batch_sharding)

    def epoch(self, run: dict[str, Any], epoch: jax.Array, x: jax.Array, y: jax.Array):
        """One epoch of one run: shuffle, then ``lax.scan`` over the mini-batches."""
        tx = self.optimizer(run["hparams"])
        key = jax.random.fold_in(jax.random.wrap_key_data(run["key"]), epoch)
        order = jax.random.permutation(key, x.shape[0])
        order = order[: self.steps_per_epoch * self.batch_size]
        order = order.reshape(self.steps_per_epoch, self.batch_size)

        def step(carry, idx):
            params, rest, opt_state, ok = carry
            xb, yb = self._constrain(x[idx]), self._constrain(y[idx])

            def loss_fn(p):
                model = nnx.merge(self.graph_train, p, rest, copy=True)
                loss, acc = classification_loss(model, xb, yb)
                return loss, (acc, nnx.split(model, nnx.Param, ...)[2])

            (loss, (acc, new_rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            batch_loss = lambda p: loss_fn(p)[0]  # noqa: E731
            extra = {k: v for k, v in {"value": loss, "grad": grads, "value_fn": batch_loss,
                                       "obj_fn": batch_loss}.items() if k in self.extra_args}
            if needs_activations:  # LipschitzLR: the input of the last dense layer
                model = nnx.merge(self.graph_train, params, rest, copy=True)
                extra["activations"] = jax.lax.stop_gradient(
                    lipschitz.penultimate_activations(model, xb))
            if kfac_fisher is not None:  # K-FAC: layer inputs and output gradients
                model = nnx.merge(self.graph_train, params, rest, copy=True)
                extra["kfac_stats"] = fisher.statistics(  # idx[0]: distinct at every step
                    model, xb, yb, key=jax.random.fold_in(kfac_key, idx[0]), fisher=kfac_fisher)
            updates, new_opt = tx.update(grads, opt_state, params, **extra)
            new_params = optax.apply_updates(params, updates)
            finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
            take = ok & finite
            pick = lambda new, old: jax.tree.map(  # noqa: E731
                lambda a, b: jnp.where(take, a, b), new, old)
            carry = (pick(new_params, params), pick(new_rest, rest),
                     pick(new_opt, opt_state), ok & finite)
            return carry, (loss, acc, take)

        needs_activations = _needs_activations(run["opt_state"])
        kfac_fisher = fisher.requested_fisher(run["opt_state"])
        kfac_key = jax.random.fold_in(key, 0x4B464143)  # label draws of the true Fisher
        carry0 = (run["params"], run["rest"], run["opt_state"], run["active"])
        (params, rest, opt_state, ok), (loss, acc, took) = jax.lax.scan(step, carry0, order,
                                                                   unroll=self.unroll)
        n = took.sum()
        mean = lambda v: jnp.where(n > 0, jnp.where(took, v, 0).sum() / n, jnp.nan)  # noqa: E731
        run = {**run, "params": params, "rest": rest, "opt_state": opt_state,
               "diverged": run["diverged"] | (run["active"] & ~ok), "active": ok}
        return run, {"train_loss": mean(loss), "train_accuracy": mean(acc)}

    def evaluate(self, run: dict[str, Any], x: jax.Array, y: jax.Array, w: jax.Array):
        """Weighted mean loss and accuracy over pre-chunked data ``(chunks, B, ...)``."""
        params = _evaluation_params(self.optimizer(run["hparams"]), run["opt_state"],
                                    run["params"])
        return self.evaluate_at(params, run["rest"], x, y, w)

    def evaluate_at(self, params: Any, rest: Any, x: jax.Array, y: jax.Array, w: jax.Array):
        """:meth:`evaluate` of the model ``(params, rest)``."""

        def chunk(args):
            xc, yc, wc = args
            model = nnx.merge(self.graph_eval, params, rest)
            logits = model(self._constrain(xc))
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, yc)
            return (loss * wc).sum(), ((jnp.argmax(logits, -1) == yc) * wc).sum()

        losses, hits = jax.lax.map(chunk, (x, y, w))
        total = w.sum()
        nan = jnp.full((), jnp.nan)
        return (jnp.where(total > 0, losses.sum() / total, nan),
                jnp.where(total > 0, hits.sum() / total, nan))


def _evaluation_params(tx: optax.GradientTransformation, opt_state, params):
    """The point to evaluate at: Schedule-Free's averaged iterate x (optlab's or optax's
    ``schedule_free_eval_params``) when the optimizer is Schedule-Free, else the params; for
    an :func:`optlab.one_of` switch, its chosen member's (``tx.evaluation_params``)."""
    from optlab.schedule_free import evaluation_point

    if hasattr(tx, "evaluation_params"):
        return tx.evaluation_params(opt_state, params)
    return evaluation_point(opt_state, params)


def _needs_activations(opt_state) -> bool:
    """Whether the optimizer contains ``optlab.lipschitz.scale_by_lipschitz`` (recognised by
    its state), which needs the penultimate activations at every update."""
    state_type = lipschitz.LipschitzState
    nodes = jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, state_type))
    return any(isinstance(n, state_type) for n in nodes)


_EXTRA_ARGS = (("value", "grad", "value_fn", "obj_fn"), ("value", "grad", "value_fn"),
               ("obj_fn",), ("value",), ())


def _extra_args(program: _Program, hparams: dict[str, Any]) -> tuple[str, ...]:
    """The richest set of optax's extra arguments (``value``, ``grad``, ``value_fn``,
    ``obj_fn`` of the batch) that the optimizer's update accepts, found by tracing it
    abstractly: polyak_sgd and momo read the loss, lbfgs's line search ``value``, ``grad``
    and ``value_fn`` (and refuses others), sophia ``obj_fn``. Arguments an optimizer does
    not read cost nothing (XLA drops them)."""
    model = nnx.eval_shape(lambda: program.model_fn(nnx.Rngs(0)))
    _, params, _ = nnx.split(model, nnx.Param, ...)
    tx = program.optimizer({k: jnp.asarray(v) for k, v in hparams.items()})
    def update(p, names):
        fn = lambda q: jax.tree.reduce(lambda a, b: a + b.sum(), q, 0.0)  # noqa: E731
        values = {"value": fn(p), "grad": p, "value_fn": fn, "obj_fn": fn}
        return tx.update(p, tx.init(p), p, **{k: values[k] for k in names})

    for names in _EXTRA_ARGS:
        try:
            jax.eval_shape(functools.partial(update, names=names), params)
            return names
        except (TypeError, ValueError):  # an argument refused (or one missing: activations)
            continue
    return ()


def _graphdefs(model_fn: ModelFactory):
    abstract = nnx.eval_shape(lambda: model_fn(nnx.Rngs(0)))
    abstract.train()
    graph_train = nnx.split(abstract, nnx.Param, ...)[0]
    abstract.eval()
    graph_eval = nnx.split(abstract, nnx.Param, ...)[0]
    return graph_train, graph_eval


def _stack(trees: list, sharding: NamedSharding | None):
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *trees)
    return jax.device_put(stacked, sharding) if sharding is not None else stacked


def _over_runs(fn: Callable, runs: int, in_axes: tuple, run_batch: int = 1,
               unrolled: bool = False) -> Callable:
    """``fn`` over the runs of the grid (the arguments with ``in_axes`` 0 carry a leading run
    axis): one group of ``run_batch`` runs after another (vmapped within a group), as a
    ``lax.map`` — or, with ``unrolled``, as a Python loop, each group inline.

    The computation of a run then does not depend on how many runs the grid has: XLA picks
    fusions and reduction orders by array shape, so ``jax.vmap`` over the whole grid made a
    run's floating-point rounding (and, amplified over epochs, its accuracy) depend on the
    grid's size. With ``run_batch`` > 1 the run axis is padded to a multiple of it (copies of
    the first run, discarded), so results depend on ``run_batch`` but not on the grid. A single
    group, and every group when ``unrolled``, runs outside any loop: XLA:CPU runs convolution
    gradients several times slower inside a loop body, which would undo ``unroll=True``, and a
    fully unrolled epoch gives other bits inside a loop than outside one.
    """
    n = -(-runs // run_batch)

    def mapped(*args):
        per_run = [a for a, axis in zip(args, in_axes, strict=True) if axis == 0]
        shared = [a for a, axis in zip(args, in_axes, strict=True) if axis != 0]

        def call(xs):
            it, rest = iter(xs), iter(shared)
            return fn(*[next(it) if axis == 0 else next(rest) for axis in in_axes])

        group = call if run_batch == 1 else jax.vmap(call)

        def pad(a):  # (runs, ...) -> (n, run_batch, ...), or (n, ...) when run_batch == 1
            if run_batch == 1:
                return a
            a = jnp.concatenate([a, jnp.repeat(a[:1], n * run_batch - runs, 0)]) \
                if n * run_batch > runs else a
            return a.reshape(n, run_batch, *a.shape[1:])

        groups = jax.tree.map(pad, per_run)
        if n == 1 or unrolled:
            outs = [group(jax.tree.map(lambda a, i=i: a[i], groups)) for i in range(n)]
            out = jax.tree.map(lambda *o: jnp.stack(o), *outs)
        else:
            out = jax.lax.map(group, groups)
        if run_batch == 1:
            return out
        return jax.tree.map(lambda a: a.reshape(n * run_batch, *a.shape[2:])[:runs], out)

    return mapped


def _setting_key(obj: Any) -> Any:
    """A hashable key, equal only for settings that behave the same: functions, closures and
    built transforms by identity (a redefined function is another key), ``functools.partial``
    and containers recursively, arrays by content, numbers with their type."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return (type(obj).__name__, obj)
    if isinstance(obj, np.ndarray | jax.Array | np.generic):
        return describe(obj)["sha256"] if isinstance(obj, np.ndarray | jax.Array) else (
            str(obj.dtype), obj.item())
    if isinstance(obj, functools.partial):
        return ("partial", _setting_key(obj.func), _setting_key(list(obj.args)),
                _setting_key(dict(obj.keywords)))
    spec = getattr(obj, "__optlab_spec__", None)
    if spec is not None:  # optlab's schedules, optlab.parallel.Replicas
        return ("spec", spec[0], _setting_key(dict(spec[1])))
    if isinstance(obj, Mapping):
        return ("dict", tuple((_setting_key(k), _setting_key(v)) for k, v in obj.items()))
    if isinstance(obj, list | tuple):
        return ("seq", tuple(_setting_key(v) for v in obj))
    hash(obj)  # functions, dataclasses, graph defs; TypeError when unhashable
    return obj


class _ProgramCache:
    """Compiled training programs of recent ``train`` calls, reused by calls with the same
    model, optimizer, schedule and settings (the search trains one population after another
    with one program; tests and notebooks call ``train`` repeatedly). Least recently used
    entries are dropped beyond ``size``."""

    def __init__(self, size: int = 16):
        self.size = size
        self.entries: dict[Any, dict[str, Any]] = {}

    def get(self, key: Any, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if key is None:
            return build()
        entry = self.entries.pop(key, None)
        if entry is None:
            entry = build()
        self.entries[key] = entry  # most recent last
        while len(self.entries) > self.size:
            self.entries.pop(next(iter(self.entries)))
        return entry


_PROGRAMS = _ProgramCache()


def _program_key(program: _Program, *settings: Any) -> Any:
    """The cache key of a program with ``settings`` (run count, sharding, ...), or None when
    a setting cannot be keyed (then nothing is cached)."""
    try:
        return (_setting_key(program.model_fn), _setting_key(program.optimizer_fn),
                _setting_key(program.schedule), program.graph_train, program.graph_eval,
                program.batch_size, program.steps_per_epoch, program.batch_sharding,
                _setting_key(program.unroll), program.extra_args, *settings)
    except TypeError:
        return None


def _aval_key(tree: Any) -> Any:
    """Shapes, dtypes and shardings of a tree of arrays (what a compilation depends on)."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple((a.shape, str(a.dtype), getattr(a, "sharding", None)) for a in leaves)


def _chunks(x: np.ndarray, y: np.ndarray, size: int):
    """Pads (x, y) to whole chunks of ``size`` and adds a 0/1 weight per example."""
    n = len(y)
    size = max(1, min(size, n)) if n else 1
    chunks = max(1, -(-n // size))
    pad = chunks * size - n
    xs = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
    ys = np.concatenate([y, np.zeros((pad,), y.dtype)])
    w = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    return (xs.reshape(chunks, size, *x.shape[1:]), ys.reshape(chunks, size),
            w.reshape(chunks, size))

