"""Jit-compiled training of Flax NNX classifiers with any optax/optlab optimizer.

One call trains a whole grid — every combination of the hyperparameter values × seeds — in
one compiled program:

* the model is kept functional (``nnx.split`` → pure ``(params, rest)`` states → ``nnx.merge``
  inside the step; measured faster than a per-step ``nnx.Optimizer`` loop, see
  ``benchmarks/train_throughput.py``);
* an epoch is one ``lax.scan`` over mini-batches gathered on device from device-resident
  data (a fresh shuffle per epoch and run), ``lax.map``-ed over the runs of the grid (so a
  run's result does not depend on the rest of the grid; ``run_batch`` vmaps groups of runs)
  and jit-compiled with the training state donated, so there is no per-step Python overhead;
* the optimizer is rebuilt inside the traced step from the run's hyperparameters, so
  learning rates, β's, weight decays, ... are per-run scalars of the stacked state;
* validation and test metrics of a Schedule-Free optimizer are those of its averaged iterate
  x (``schedule_free_eval_params``), the point the method is meant to be evaluated at (its
  params, and BatchNorm statistics, are those of the gradient point y);
* a run whose loss or gradient turns non-finite is frozen and marked diverged (its history up
  to that point is kept) while the other runs go on; early stopping freezes a run whose
  validation accuracy has not improved for ``patience`` epochs;
* with ``checkpoint_dir`` the state is saved with orbax after every epoch (atomically: a
  crash never leaves a half-written checkpoint) and a later call with the same arguments
  resumes from the latest intact checkpoint, bit-exactly (only the same configuration:
  see ``train``'s ``checkpoint_dir``);
* with more than one visible device the batch is sharded over all devices (data parallel),
  parameters are replicated and the optimizer state follows the parameters; or, with
  ``run_parallel``, the runs of the grid are spread over the devices (each device trains
  whole runs on replicated data: ``shard_map`` over the run axis, no collectives), which
  suits many small models such as an optimizer-search population.

>>> from optlab.tasks import load_dataset
>>> data = load_dataset("mnist1d")
>>> result = train(data, "mlp", optlab.adam, hyperparams={"learning_rate": [1e-3, 1e-2]},
...                seeds=[0, 1, 2], epochs=20)
>>> result.summary()
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import math
import os
import time
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optlab import fisher, lipschitz
from optlab._checks import check_int, unknown_name

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
           "test_accuracy")

ModelFactory = Callable[[nnx.Rngs], nnx.Module]
OptimizerFactory = Callable[..., optax.GradientTransformation]


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class Grid:
    """The runs of one training call: every combination of hyperparameter values × seeds.

    Runs are ordered as ``itertools.product(*values, seeds)`` (seeds vary fastest). A value is
    a number (float32 in the compiled program) or a numpy array, e.g. an optimizer-search
    program encoded as integers (:mod:`optlab.search.population`); arrays of one name must
    share shape and dtype, and become per-run inputs of the same compiled program.
    """

    names: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    seeds: tuple[int, ...]

    @classmethod
    def make(cls, hyperparams: Mapping[str, float | Sequence[float]] | None,
             seeds: int | Sequence[int]) -> Grid:
        hyperparams = dict(hyperparams or {})
        names, values = [], []
        for name, v in hyperparams.items():
            vs = tuple(v) if isinstance(v, Sequence | np.ndarray) and not isinstance(v, str) \
                else (v,)
            if not vs:
                raise ValueError(f"hyperparams[{name!r}] is empty; give at least one value")
            if any(isinstance(x, np.ndarray | jax.Array) and np.ndim(x) for x in vs):
                values.append(_array_values(name, vs))
                names.append(name)
                continue
            for x in vs:
                if isinstance(x, bool) or not isinstance(x, int | float | np.number):
                    raise TypeError(f"hyperparams[{name!r}] values must be numbers or arrays, "
                                    f"got {x!r}")
                if not math.isfinite(float(x)):
                    raise ValueError(f"hyperparams[{name!r}] values must be finite, got {x!r}")
            names.append(name)
            values.append(tuple(float(x) for x in vs))
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            check_int("seeds", seeds, low=1)
            seeds = tuple(range(seeds))
        seeds = tuple(seeds)
        if not seeds:
            raise ValueError("seeds must be a positive count or a non-empty list of seeds")
        for s in seeds:
            check_int("seeds", s, low=0)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {list(seeds)}")
        return cls(tuple(names), tuple(values), seeds)

    @property
    def runs(self) -> list[tuple[dict[str, float], int]]:
        out = []
        for combo in itertools.product(*self.values, self.seeds):
            out.append((dict(zip(self.names, combo[:-1], strict=True)), combo[-1]))
        return out

    def __len__(self) -> int:
        return math.prod(len(v) for v in self.values) * len(self.seeds)

    def column(self, name: str) -> np.ndarray:
        """The values of hyperparameter ``name`` for every run, stacked (numbers as float32,
        arrays in their own dtype)."""
        values = [hp[name] for hp, _ in self.runs]
        if isinstance(values[0], np.ndarray):
            return np.stack(values)
        return np.asarray(values, np.float32)


def _array_values(name: str, vs: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """Array-valued hyperparameters (read-only numpy copies), checked for one shape, one
    dtype and finite values."""
    arrays = []
    for x in vs:
        if isinstance(x, bool) or not isinstance(x, np.ndarray | jax.Array | Sequence):
            raise TypeError(f"hyperparams[{name!r}]: every value must be an array when one "
                            f"is, got {x!r}")
        a = np.array(x)
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise TypeError(f"hyperparams[{name!r}]: arrays must be integer or float, got "
                            f"{a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"hyperparams[{name!r}] values must be finite")
        a.setflags(write=False)
        arrays.append(a)
    kinds = {(a.shape, a.dtype.str) for a in arrays}
    if len(kinds) != 1:
        raise ValueError(f"hyperparams[{name!r}]: arrays must share one shape and dtype, got "
                         f"{sorted(kinds)}")
    return tuple(arrays)


# --------------------------------------------------------------------------------------------
# results


@dataclass
class TrainResult:
    """Everything a training call produced, one row per run of the grid.

    ``history[metric]`` has shape ``(runs, epochs)``; epochs a run did not train (stopped
    early or diverged) are NaN. ``test_accuracy`` is taken at the epoch of best validation
    accuracy (``best_epoch``; the last trained epoch when there is no validation set);
    ``final_test_accuracy`` at the last trained epoch. ``resumed_from`` is the number of
    epochs restored from a checkpoint (None when training started fresh).
    """

    grid: Grid
    history: dict[str, np.ndarray]
    diverged: np.ndarray
    epochs_trained: np.ndarray
    best_epoch: np.ndarray
    wall_time: float
    compile_time: float
    epoch_seconds: list[float]
    device: str
    config: dict[str, Any]
    resumed_from: int | None = None
    state: Any = field(repr=False, default=None)
    graphdef: Any = field(repr=False, default=None)

    @property
    def test_accuracy(self) -> np.ndarray:
        return _at(self.history["test_accuracy"], self.best_epoch)

    @property
    def val_accuracy(self) -> np.ndarray:
        return _at(self.history["val_accuracy"], self.best_epoch)

    @property
    def final_test_accuracy(self) -> np.ndarray:
        return _at(self.history["test_accuracy"], self.epochs_trained - 1)

    def runs(self) -> list[dict[str, Any]]:
        """One dict per run: hyperparameters, seed, outcome."""
        out = []
        for i, (hp, seed) in enumerate(self.grid.runs):
            out.append({
                "hyperparams": hp, "seed": seed, "diverged": bool(self.diverged[i]),
                "epochs_trained": int(self.epochs_trained[i]),
                "best_epoch": int(self.best_epoch[i]) + 1 if self.best_epoch[i] >= 0 else None,
                "val_accuracy": float(self.val_accuracy[i]),
                "test_accuracy": float(self.test_accuracy[i]),
                "final_test_accuracy": float(self.final_test_accuracy[i]),
                "history": {k: v[i].tolist() for k, v in self.history.items()},
            })
        return out

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "device": self.device, "wall_time_s": self.wall_time,
                "compile_time_s": self.compile_time, "epoch_seconds": self.epoch_seconds,
                "resumed_from": self.resumed_from, "runs": self.runs()}

    def model(self, run: int = 0) -> nnx.Module:
        """The trained model of run ``run`` (evaluation mode)."""
        params, rest = jax.tree.map(lambda a: a[run], (self.state["params"],
                                                      self.state["rest"]))
        return nnx.merge(self.graphdef, params, rest)

    def summary(self) -> str:
        lines = [f"{len(self.grid)} runs on {self.device}, wall time {self.wall_time:.1f} s "
                 f"(compile {self.compile_time:.1f} s)"]
        for r in self.runs():
            hp = ", ".join(f"{k}={_fmt(v)}" for k, v in r["hyperparams"].items())
            status = "DIVERGED" if r["diverged"] else f"test acc {r['test_accuracy']:.4f}"
            lines.append(f"  seed {r['seed']}{', ' + hp if hp else ''}: {status} "
                         f"(epochs {r['epochs_trained']}, best {r['best_epoch']})")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"<{value.dtype} array {value.shape}>"
    return f"{value:g}"


def _at(history: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    rows = np.arange(history.shape[0])
    return np.where(epoch >= 0, history[rows, np.maximum(epoch, 0)], np.nan)


# --------------------------------------------------------------------------------------------
# the functional model and step


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
        params = _evaluation_params(run["opt_state"], run["params"])
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


def _evaluation_params(opt_state, params):
    """The point to evaluate at: Schedule-Free's averaged iterate x (optlab's or optax's
    ``schedule_free_eval_params``) when the optimizer is Schedule-Free, else the params."""
    from optlab.schedule_free import schedule_free_eval_params

    try:
        return schedule_free_eval_params(opt_state, params)
    except ValueError:  # not a Schedule-Free optimizer
        return params


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


# --------------------------------------------------------------------------------------------
# run identity


class _UndescribableError(Exception):
    """An object whose behaviour cannot be told from a canonical description."""


def describe(obj: Any) -> Any:
    """A canonical, JSON-able description of a configuration value, equal for equal settings.

    Numbers, strings, ``None``, lists, dicts, numpy / JAX arrays (by content hash), module-level
    functions and classes (by module and qualified name), ``functools.partial`` (recursively)
    and objects with an ``__optlab_spec__ = (name, kwargs)`` attribute (optlab's schedules) are
    described. Lambdas, closures, built ``optax`` transforms and other objects raise
    :class:`_UndescribableError`: their settings cannot be inspected.
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"float": repr(obj)}
    if isinstance(obj, np.generic):
        return {"numpy": str(obj.dtype), "value": describe(obj.item())}
    if isinstance(obj, np.ndarray | jax.Array):
        a = np.ascontiguousarray(np.asarray(obj))
        return {"array": str(a.dtype), "shape": list(a.shape),
                "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    spec = getattr(obj, "__optlab_spec__", None)
    if spec is not None:
        name, kwargs = spec
        return {"spec": name, "kwargs": describe(dict(kwargs))}
    if isinstance(obj, functools.partial):
        return {"partial": describe(obj.func), "args": describe(list(obj.args)),
                "keywords": describe(dict(obj.keywords))}
    if isinstance(obj, Mapping):
        if not all(isinstance(k, str) for k in obj):
            raise _UndescribableError(f"a dict with non-string keys {list(obj)!r}")
        return {k: describe(obj[k]) for k in sorted(obj)}
    if isinstance(obj, optax.GradientTransformation):
        raise _UndescribableError("a built GradientTransformation (its hyperparameters are hidden "
                             "in closures)")
    if isinstance(obj, list | tuple):
        return [describe(v) for v in obj]
    if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
        qualname = getattr(obj, "__qualname__", "")
        if "<lambda>" in qualname:
            raise _UndescribableError(f"a lambda ({qualname})")
        if "<locals>" in qualname:
            raise _UndescribableError(f"a closure ({qualname}), whose captured values are hidden")
        return {"function": f"{obj.__module__}:{qualname}"}
    raise _UndescribableError(f"a {type(obj).__name__} object")


def _label(obj: Any) -> Any:
    """``describe(obj)`` where possible, else a short text for results.json."""
    if obj is None or isinstance(obj, str):
        return obj
    try:
        return describe(obj)
    except _UndescribableError as e:
        return f"<{e}>"


def _dataset_digest(dataset) -> str:
    h = hashlib.sha256(f"{dataset.name}/{dataset.num_classes}".encode())
    for split in ("train", "val", "test"):
        for part in ("x", "y"):
            a = np.ascontiguousarray(np.asarray(getattr(dataset, f"{part}_{split}")))
            h.update(f"{part}_{split}{a.dtype}{a.shape}".encode())
            if a.size:  # (an empty split, val_fraction=0, has no bytes to view)
                h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _identity(dataset, model, optimizer, schedule, grid: Grid, settings: dict[str, Any],
              config: Mapping[str, Any] | None, run_name: str | None, parallel: Any = None
              ) -> tuple[dict[str, Any], list[str]]:
    """The fingerprint stored with checkpoints, and the arguments it could not describe."""
    unknown = []
    ident: dict[str, Any] = {}
    described = [("model", model), ("optimizer", optimizer), ("schedule", schedule)]
    for name, obj in described + ([("parallel", parallel)] if parallel is not None else []):
        try:
            ident[name] = describe(obj)
        except _UndescribableError as e:
            unknown.append(f"{name} is {e}")
            ident[name] = "<not described>"
    ident.update({
        "dataset": _dataset_digest(dataset),
        "hyperparams": {k: describe(list(v)) for k, v in zip(grid.names, grid.values,
                                                             strict=True)},
        "seeds": list(grid.seeds), **settings,
        "config": json.loads(json.dumps(dict(config))) if config is not None else None,
        "run_name": run_name})
    return ident, unknown


# --------------------------------------------------------------------------------------------
# checkpoints


_MANIFEST = "optlab_files.json"


class _DamagedError(Exception):
    """A checkpoint failed optlab's own checks."""


class _ConfigMismatchError(ValueError):
    """The checkpoints belong to another configuration."""


class _Checkpoints:
    """Orbax checkpoints of the training state + the host-side history, one per epoch.

    Each checkpoint stores the run's fingerprint (``_identity``) and, in ``_MANIFEST``, the
    sha256 of each of its files, checked before orbax reads them (orbax/TensorStore report
    damaged data with pages of tracebacks, or not at all); a checkpoint that fails the check or
    cannot be read is moved to ``<directory>/damaged/`` and the previous one is used instead.

    In a multi-process run (``jax.distributed``) every process saves and restores its shards
    of the state in the same folder (orbax coordinates them); process 0 alone writes the
    manifest and moves damaged checkpoints, and the others wait for it.
    """

    def __init__(self, directory: str | os.PathLike, fingerprint: dict[str, Any],
                 unknown: Sequence[str] = ()):
        import orbax.checkpoint as ocp

        self.ocp = ocp
        self.directory = Path(directory).absolute()
        self.fingerprint = json.loads(json.dumps(fingerprint))
        self.unknown = list(unknown)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=2, create=True, cleanup_tmp_directories=True,
            enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def _refuse_unknown(self) -> None:
        raise ValueError(
            f"checkpoint_dir {self.directory} holds checkpoints, but this run cannot be matched "
            f"to them: {'; '.join(self.unknown)}. Resuming could silently reuse the results of "
            "another configuration, so it is refused. Name the run explicitly with "
            "run_name='...' (a name that changes whenever the configuration changes), or pass "
            "the optimizer as a module-level function with functools.partial keywords (e.g. "
            "functools.partial(optlab.adamw, weight_decay=1e-4)), schedules from "
            "optlab.schedules and the model by name; or use another checkpoint_dir")

    def _check_fingerprint(self, step: int, stored: dict[str, Any]) -> None:
        if stored == self.fingerprint:
            return
        diff = sorted(k for k in set(stored) | set(self.fingerprint)
                      if stored.get(k) != self.fingerprint.get(k))
        raise _ConfigMismatchError(
            f"checkpoint_dir {self.directory} holds a run with a different configuration "
            f"(checkpoint {step} differs in: {', '.join(diff)}); use another directory or "
            "delete it to start afresh")

    def _verify_files(self, step: int) -> None:
        step_dir = self.directory / str(step)
        manifest = step_dir / _MANIFEST
        if not manifest.exists():  # saved, then interrupted before the manifest was written
            return
        try:
            expected = json.loads(manifest.read_text())
        except (OSError, ValueError) as e:
            raise _DamagedError(f"its file list {_MANIFEST} is unreadable ({e})") from None
        actual = _file_digests(step_dir)
        bad = sorted(f for f in set(expected) | set(actual) if expected.get(f) != actual.get(f))
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise _DamagedError(f"files changed or missing since it was saved: {shown}")

    def _restore_step(self, step: int, abstract_state):
        ocp = self.ocp
        self._verify_files(step)
        meta = self.manager.restore(
            step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if not isinstance(meta, dict) or "fingerprint" not in meta:
            raise _DamagedError("its metadata holds no run fingerprint")
        self._check_fingerprint(step, meta["fingerprint"])
        state = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state)))["state"]
        return state, meta

    def restore(self, abstract_state):
        """The newest intact checkpoint ``(state, meta)``, or None when there is none."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        if self.unknown and self.fingerprint.get("run_name") is None \
                and self.fingerprint.get("config") is None:
            self._refuse_unknown()
        damaged: list[tuple[int, str]] = []
        restored = None
        for step in steps:
            try:
                restored = self._restore_step(step, abstract_state)
                break
            except _ConfigMismatchError:
                raise
            except Exception as e:  # any failure to read means damaged
                damaged.append((step, _one_line(e)))
        if restored is None:
            listing = "; ".join(f"checkpoint {s} ({why})" for s, why in damaged)
            raise ValueError(
                f"checkpoint_dir {self.directory} holds no intact checkpoint: {listing}. "
                "They were left in place; delete or move them (or use another checkpoint_dir) "
                "to start afresh")
        if damaged:
            aside = self.directory / "damaged"
            moved = []
            for s, why in damaged if jax.process_index() == 0 else ():
                aside.mkdir(exist_ok=True)
                stamp = time.strftime("%Y%m%d-%H%M%S")
                target = aside / f"{s}-{stamp}"
                for k in itertools.count(1):
                    if not target.exists():
                        break
                    target = aside / f"{s}-{stamp}-{k}"
                os.replace(self.directory / str(s), target)
                moved.append(f"checkpoint {s} ({why}) moved to {target}")
            _sync_processes("optlab-checkpoints-moved")
            moved = moved or [f"checkpoint {s} ({why}) moved to {aside}" for s, why in damaged]
            self.manager.reload()
            warnings.warn(
                f"checkpoint_dir {self.directory}: damaged checkpoint(s) skipped: "
                f"{'; '.join(moved)}. Resuming from checkpoint {restored[1]['epoch']}.",
                RuntimeWarning, stacklevel=3)
        return restored

    def save(self, epoch: int, state, meta: dict[str, Any]) -> None:
        ocp = self.ocp
        meta = {**meta, "fingerprint": self.fingerprint}
        self.manager.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
        self.manager.wait_until_finished()
        if jax.process_index() == 0:  # after orbax's own barrier: every shard is written
            step_dir = self.directory / str(epoch)
            tmp = step_dir / f".{_MANIFEST}.tmp"
            tmp.write_text(json.dumps(_file_digests(step_dir), indent=0))
            os.replace(tmp, step_dir / _MANIFEST)
        _sync_processes(f"optlab-checkpoint-{epoch}")

    def close(self) -> None:
        self.manager.close()


def _sync_processes(name: str) -> None:
    """A barrier across the processes of a multi-process run; a no-op in one process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    text = text[0] if text else ""
    if isinstance(e, _DamagedError):
        return text
    return f"{type(e).__name__}: {text[:200]}{'...' if len(text) > 200 else ''}".rstrip(": ")


def _file_digests(step_dir: Path) -> dict[str, str]:
    """sha256 of every file of a checkpoint, but orbax's optional save-time record and the
    manifest itself."""
    out = {}
    for path in sorted(step_dir.rglob("*")):
        rel = path.relative_to(step_dir).as_posix()
        if path.is_file() and rel not in (_MANIFEST, "_CHECKPOINT_METADATA"):
            h = hashlib.sha256()
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[rel] = h.hexdigest()
    return out


# --------------------------------------------------------------------------------------------
# the public entry point


@dataclass(frozen=True)
class _NamedModel:
    """``rngs -> make_model(name, input_shape, num_classes)``: equal (and hashable) for equal
    settings, so repeated calls reuse the compiled program."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int

    def __call__(self, rngs: nnx.Rngs) -> nnx.Module:
        from optlab.tasks.models import make_model

        return make_model(self.name, self.input_shape, self.num_classes, rngs=rngs)


def _resolve_model(model, dataset) -> ModelFactory:
    if isinstance(model, str):
        return _NamedModel(model, tuple(dataset.input_shape), int(dataset.num_classes))
    if not callable(model):
        raise TypeError(f"model must be a model name or a callable rngs -> nnx.Module, "
                        f"got {type(model).__name__}")
    return model


def _mesh(data_parallel: bool | None, batch_size: int, run_parallel: bool) -> Mesh | None:
    devices = jax.devices()
    if run_parallel:
        if data_parallel:
            raise ValueError("data_parallel=True and run_parallel=True exclude each other: "
                             "the devices split either the batch or the runs")
        return Mesh(np.array(devices), ("runs",)) if len(devices) > 1 else None
    if data_parallel is False or (data_parallel is None and len(devices) == 1):
        return None
    if batch_size % len(devices):
        raise ValueError(
            f"batch_size={batch_size} must be divisible by the {len(devices)} visible devices "
            "for data-parallel training; change batch_size or pass data_parallel=False")
    return Mesh(np.array(devices), ("data",))


def train(
    dataset,
    model: str | ModelFactory,
    optimizer: str | OptimizerFactory | optax.GradientTransformation,
    *,
    hyperparams: Mapping[str, float | Sequence[float]] | None = None,
    seeds: int | Sequence[int] = 1,
    epochs: int = 20,
    batch_size: int = 128,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
    patience: int | None = None,
    eval_batch_size: int = 1000,
    checkpoint_dir: str | os.PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    run_name: str | None = None,
    data_parallel: bool | None = None,
    run_parallel: bool = False,
    unroll: int | bool = 1,
    run_batch: int = 1,
    parallel: Any = None,
    progress: bool | None = None,
) -> TrainResult:
    """Trains ``model`` on ``dataset`` for every run of the grid ``hyperparams × seeds``.

    Args:
      dataset: an :class:`optlab.tasks.Dataset` (``x_train``, ``y_train``, ``x_val``, ...).
      model: a model name from :data:`optlab.tasks.MODELS` or ``rngs -> nnx.Module``.
      optimizer: ``(**hyperparams) -> optax.GradientTransformation``, e.g. ``optlab.adam`` or
        ``functools.partial(optlab.adamw, weight_decay=1e-4)``, or a name such as ``"adam"``
        (``optlab list``); it is called with each run's hyperparameters (traced scalars inside
        the compiled step). A built transform (e.g.
        ``optax.chain(optax.clip(1.0), optlab.lion(1e-4))``) is accepted without a grid. An
        optimizer containing ``optlab.lipschitz.scale_by_lipschitz`` (``optlab.lipschitz_sgd``)
        gets ``activations=`` :func:`optlab.lipschitz.penultimate_activations` of the batch
        at every update (an extra forward pass), and a factory whose ``num_classes`` is
        required and not given gets the data set's. K-FAC (``optlab.kfac``, recognised by
        its factors' state) gets ``kfac_stats=`` :func:`optlab.fisher.statistics` of the
        batch (an extra forward and backward pass; labels drawn with the run's key).
      hyperparams: name → value or list of values (e.g. ``{"learning_rate": [1e-3, 1e-2]}``).
      seeds: number of seeds (0..n−1) or the seeds themselves; each seed sets the model's
        initialisation and the data order.
      epochs: passes over the training set.
      batch_size: mini-batch size; the last partial batch of an epoch is dropped.
      schedule: optional multiplier ``step -> factor`` of the learning rate (e.g.
        ``optlab.schedules.cosine_decay(1.0, total_steps)``).
      patience: stop a run after this many epochs without a better validation accuracy.
      eval_batch_size: chunk size of evaluation.
      checkpoint_dir: save after every epoch and resume from here (orbax). A checkpoint is
        reused only by the same configuration: dataset contents, model, optimizer (function
        and its ``functools.partial`` arguments, recursively), schedule, grid, seeds,
        ``epochs``, ``batch_size``, ``patience``, ``eval_batch_size``, ``config`` and
        ``run_name``; another configuration is refused with a ``ValueError``. A lambda, a
        closure or a built ``GradientTransformation`` cannot be described; resuming with one
        is refused unless ``run_name`` (or ``config``) names the run. A damaged checkpoint is
        moved to ``checkpoint_dir/damaged/`` with a warning and the previous one is used.
      config: JSON-able description stored with checkpoints and results; it is part of the
        run's identity (see ``checkpoint_dir``). Defaults to the call's arguments.
      run_name: a name for the run's configuration, part of its identity; needed to resume
        when the optimizer, schedule or model cannot be described (see ``checkpoint_dir``).
      data_parallel: shard batches over all devices (default: when more than one and not
        ``run_parallel``).
      run_parallel: spread the runs of the grid over all visible devices instead: each
        device trains its share of the runs, whole, on a replicated copy of the data. The
        run axis is padded to a multiple of devices × ``run_batch`` with inactive copies of
        the first run (discarded). With ``run_batch=1`` every run computes bit for bit what
        it computes on one device; with more, float32 rounding can differ where a device's
        share is a single group (XLA compiles a lone group outside a loop, see
        ``run_batch``). A checkpoint records the number of devices and resumes only with the
        same.
      unroll: ``lax.scan`` unrolling of the epoch loop. XLA:CPU runs convolution gradients
        3–4× slower inside a loop than outside (``benchmarks/RESULTS.md``); on CPU,
        ``unroll=True`` for conv models with short epochs trades compile time for speed.
      run_batch: how many runs of the grid one step of the compiled program trains together
        (vmapped); the runs go through in groups of this size. With 1 (default) every run of
        a grid gives bit for bit the result it gives alone. A larger value can be faster
        (on accelerators, for small models) and gives results that do not depend on the
        grid either, but on ``run_batch``: they differ from ``run_batch=1`` by float32
        rounding, which training amplifies (about ±1 % test accuracy on MNIST-1D after 20
        epochs).
      parallel: an :class:`optlab.parallel.Replicas` (a parallel method built from each
        run's optimizer, and whether the replicas' data is iid): every run trains as R
        replicas, each on its own ``batch_size`` mini-batch per step; an epoch is one pass
        over the data (R × ``batch_size`` examples per step). The replica axis is spread over
        the devices (mesh axes ``replica`` × ``data``; ``data_parallel=False``: one device).
        The optimizer sees only the gradient (no ``value`` / ``activations`` arguments).
    """
    t_start = time.perf_counter()
    _check_arguments(dataset, epochs, batch_size, eval_batch_size, patience, unroll)
    check_int("run_batch", run_batch, low=1)
    if not isinstance(run_parallel, bool):
        raise TypeError(f"run_parallel must be a bool, got {run_parallel!r}")
    if run_name is not None and (not isinstance(run_name, str) or not run_name.strip()):
        raise TypeError(f"run_name must be a non-empty string, got {run_name!r}")
    optimizer_arg = optimizer = _resolve_optimizer(optimizer)
    optimizer = _as_factory(optimizer, hyperparams)
    grid = Grid.make(hyperparams, seeds)
    optimizer = _with_num_classes(optimizer, dataset.num_classes, grid)
    if schedule is not None and "learning_rate" not in grid.names:
        raise ValueError("schedule multiplies the learning rate, so it needs "
                         "hyperparams={'learning_rate': ...} (the optimizer's learning_rate "
                         "argument, given through the grid)")
    for hp, _ in grid.runs[:: len(grid.seeds)]:
        optimizer(**hp)  # fail on bad hyperparameters now, with the optimizer's own message
    model_fn = _resolve_model(model, dataset)
    n_train, G = len(dataset.y_train), len(grid)

    if parallel is not None:
        from optlab.parallel import training as replicated_training

        if not isinstance(parallel, replicated_training.Replicas):
            raise TypeError(f"parallel must be an optlab.parallel.Replicas, got {parallel!r}")
        if run_parallel:
            raise ValueError("parallel and run_parallel=True exclude each other: the devices "
                             "hold either the replicas or the runs")
        n_replicas = parallel.build(optimizer(**grid.runs[0][0])).replicas
        mesh = (None if data_parallel is False else
                replicated_training.parallel_mesh(n_replicas, batch_size))
    else:
        mesh = _mesh(data_parallel, batch_size, run_parallel)
    by_run = mesh is not None and mesh.axis_names == ("runs",)
    replicated = NamedSharding(mesh, P()) if mesh else None
    graph_train, graph_eval = _graphdefs(model_fn)
    program = _Program(graph_train, graph_eval, model_fn, optimizer, schedule,
                       batch_size, n_train // batch_size,
                       NamedSharding(mesh, P("data")) if mesh and not by_run else None, unroll)
    if parallel is not None:
        program = replicated_training.program(program, parallel, n_train, mesh,
                                              grid.runs[0][0])
    else:
        program = dataclasses.replace(program, extra_args=_extra_args(program,
                                                                      grid.runs[0][0]))
    # Run-parallel: whole groups of run_batch runs per device, padded with inactive runs.
    shards = mesh.size if by_run else 1
    G_all = -(-G // (shards * run_batch)) * shards * run_batch if by_run else G

    put = (lambda a: jax.device_put(a, replicated)) if mesh else jnp.asarray
    x_train, y_train = put(dataset.x_train), put(dataset.y_train)
    evals = {split: tuple(put(a) for a in _chunks(getattr(dataset, f"x_{split}"),
                                                   getattr(dataset, f"y_{split}"),
                                                   eval_batch_size))
             for split in ("val", "test")}

    def build() -> dict[str, Any]:
        epoch_fn = _over_runs(program.epoch, G_all // shards, (0, None, None, None),
                              run_batch, unrolled=unroll is True)
        eval_fn = _over_runs(program.evaluate, G_all // shards, (0, None, None, None),
                             run_batch)
        if by_run:
            specs = (P("runs"), P(), P(), P())
            epoch_fn = jax.shard_map(epoch_fn, mesh=mesh, in_specs=specs, out_specs=P("runs"))
            eval_fn = jax.shard_map(eval_fn, mesh=mesh, in_specs=specs, out_specs=P("runs"))
        return {"init": jax.jit(program.init), "epoch": jax.jit(epoch_fn, donate_argnums=0),
                "eval": jax.jit(eval_fn), "compiled": {}}

    fns = _PROGRAMS.get(_program_key(program, G_all // shards, run_batch, by_run, mesh,
                                     _setting_key(parallel)), build)
    eval_fn = fns["eval"]

    user_config = config
    config = dict(config) if config is not None else {
        "dataset": dataset.name, "model": _label(model), "optimizer": _label(optimizer_arg),
        "schedule": _label(schedule),
        "hyperparams": {k: list(v) for k, v in zip(grid.names, grid.values, strict=True)},
        "seeds": list(grid.seeds), "epochs": epochs, "batch_size": batch_size,
        "patience": patience, **({"parallel": _label(parallel)} if parallel else {})}
    if run_name is not None:
        config.setdefault("run_name", run_name)

    t_compile = time.perf_counter()
    state = _init_runs(program, grid, NamedSharding(mesh, P("runs")) if by_run else replicated,
                       G_all, fns["init"])
    signature = _aval_key((state, x_train, y_train))
    epoch_fn = fns["compiled"].get(signature)
    if epoch_fn is None:
        epoch_fn = fns["epoch"].lower(state, jnp.int32(0), x_train, y_train).compile()
        fns["compiled"][signature] = epoch_fn
    compile_time = time.perf_counter() - t_compile
    log = _Log(G, epochs, patience)
    ckpt, resumed_from = None, None
    if checkpoint_dir is not None:
        fingerprint, unknown = _identity(
            dataset, model, optimizer_arg, schedule, grid,
            {"epochs": epochs, "batch_size": batch_size, "patience": patience,
             "eval_batch_size": eval_batch_size, "run_batch": run_batch,
             **({"run_shards": shards} if by_run else {})}, user_config,
            run_name, parallel)
        ckpt = _Checkpoints(checkpoint_dir, fingerprint, unknown)
        try:
            restored = ckpt.restore(jax.tree.map(
                lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), state))
        except BaseException:
            ckpt.close()
            raise
        if restored is not None:
            state, meta = restored
            log.load(meta)
            resumed_from = log.epoch

    bar = _progress(range(log.epoch, epochs), progress, f"training {G} run(s)")
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            state, metrics = epoch_fn(state, jnp.int32(epoch), x_train, y_train)
            metrics = {k: np.asarray(v)[:G] for k, v in metrics.items()}
            for split in ("val", "test"):
                loss, acc = eval_fn(state, *evals[split])
                metrics[f"{split}_loss"], metrics[f"{split}_accuracy"] = (np.asarray(loss)[:G],
                                                                         np.asarray(acc)[:G])
            was_active = np.asarray(state["active"])[:G]
            active = log.record(epoch, metrics, np.asarray(state["diverged"])[:G], was_active)
            if (active != was_active).any():  # early stopping froze a run
                padded = np.concatenate([active, np.zeros(G_all - G, bool)])
                state["active"] = jax.device_put(jnp.asarray(padded), state["active"].sharding)
            if ckpt is not None:
                ckpt.save(epoch + 1, state, log.meta())
            log.epoch_seconds.append(time.perf_counter() - t0)
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(best_val_acc=f"{log.best_val():.3f}", active=int(active.sum()),
                                s_per_epoch=f"{log.epoch_seconds[-1]:.2f}")
            if not active.any():
                break
    finally:
        if ckpt is not None:
            ckpt.close()
        if hasattr(bar, "close"):
            bar.close()

    if parallel is not None:  # each run's evaluated model, as a single-model run keeps it
        state = {**state, **jax.jit(jax.vmap(program.evaluated))(state)}
    jax.block_until_ready(state)
    if G_all > G:  # drop the padding runs of run_parallel
        state = jax.tree.map(lambda a: a[:G], state)
    trained = ~np.isnan(log.history["train_loss"])
    return TrainResult(
        grid=grid, history=log.history, diverged=np.asarray(state["diverged"]),
        epochs_trained=trained.sum(1), best_epoch=_best_epoch(log.history, trained),
        wall_time=time.perf_counter() - t_start, compile_time=compile_time,
        epoch_seconds=log.epoch_seconds,
        device=f"{len(jax.devices())} x {jax.devices()[0].device_kind}",
        config=config, resumed_from=resumed_from, state=state, graphdef=graph_eval)


def _check_arguments(dataset, epochs, batch_size, eval_batch_size, patience, unroll) -> None:
    check_int("epochs", epochs, low=1)
    check_int("batch_size", batch_size, low=1)
    check_int("eval_batch_size", eval_batch_size, low=1)
    if patience is not None:
        check_int("patience", patience, low=1)
    if not isinstance(unroll, bool):
        check_int("unroll", unroll, low=1)
    n_train = len(dataset.y_train)
    if batch_size > n_train:
        raise ValueError(f"batch_size={batch_size} exceeds the {n_train} training examples "
                         f"of {dataset.name!r}; allowed range 1..{n_train}")
    if patience is not None and len(dataset.y_val) == 0:
        raise ValueError("patience needs a validation set (dataset has no x_val/y_val)")


def _resolve_optimizer(optimizer):
    """An optimizer name (``optlab.registry``'s, or ``"lipschitz_sgd"``) → its function."""
    if not isinstance(optimizer, str):
        return optimizer
    from optlab import registry

    names = {**registry.OPTIMIZERS, "lipschitz_sgd": lipschitz.lipschitz_sgd}
    if optimizer not in names:
        raise unknown_name("optimizer", optimizer, names)
    return names[optimizer]


def _with_num_classes(factory: OptimizerFactory, num_classes: int,
                      hyperparams: Grid) -> OptimizerFactory:
    """Gives a factory that requires ``num_classes`` (``optlab.lipschitz_sgd``) the data
    set's number of classes, unless the caller set it."""
    try:
        parameter = inspect.signature(factory).parameters.get("num_classes")
    except (TypeError, ValueError):
        return factory
    if (parameter is None or parameter.default is not inspect.Parameter.empty
            or parameter.kind not in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                      inspect.Parameter.KEYWORD_ONLY)
            or "num_classes" in hyperparams.names):
        return factory
    return functools.partial(factory, num_classes=num_classes)


def _needs_activations(opt_state) -> bool:
    """Whether the optimizer contains ``optlab.lipschitz.scale_by_lipschitz`` (recognised by
    its state), which needs the penultimate activations at every update."""
    state_type = lipschitz.LipschitzState
    nodes = jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, state_type))
    return any(isinstance(n, state_type) for n in nodes)


def _as_factory(optimizer, hyperparams) -> OptimizerFactory:
    if isinstance(optimizer, optax.GradientTransformation):
        if hyperparams:
            raise ValueError("hyperparams needs an optimizer factory such as optlab.adam, "
                             "not a built GradientTransformation")
        return functools.partial(_built, optimizer)
    if not callable(optimizer):
        raise TypeError("optimizer must be a GradientTransformation or a callable "
                        "(**hyperparams) -> GradientTransformation")
    return optimizer


def _built(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """The factory of a built transform (no hyperparameters)."""
    return tx


def _init_runs(program: _Program, grid: Grid, sharding: NamedSharding | None,
               padded: int | None = None, init_one: Callable | None = None):
    """Initial state of every run, stacked. Runs are initialised one by one with one compiled
    init (a vmapped init with threefry keys compiles ~2× slower). With ``padded`` runs in all,
    the extra ones are inactive copies of the first (they never train)."""
    init_one = jax.jit(program.init) if init_one is None else init_one
    seeds = jnp.asarray([s for _, s in grid.runs], jnp.uint32)
    hps = {k: jnp.asarray(grid.column(k)) for k in grid.names}
    runs = [init_one(seeds[i], {k: v[i] for k, v in hps.items()}) for i in range(len(grid))]
    runs += [{**runs[0], "active": jnp.array(False)}] * ((padded or len(runs)) - len(runs))
    return _stack(runs, sharding)


class _Log:
    """Host-side bookkeeping of a training call: the metric history of every run, the epoch
    each diverged, early stopping; saved with each checkpoint and restored from it."""

    def __init__(self, runs: int, epochs: int, patience: int | None):
        self.history = {m: np.full((runs, epochs), np.nan) for m in METRICS}
        self.diverged_epoch = np.full(runs, -1)
        self.patience = patience
        self.epoch = 0  # epochs done
        self.epoch_seconds: list[float] = []

    def record(self, epoch: int, metrics: dict[str, np.ndarray], diverged: np.ndarray,
               active: np.ndarray) -> np.ndarray:
        """Stores one epoch's metrics (NaN for runs that did not train); returns which runs
        stay active after divergence and early stopping."""
        trained = ~np.isnan(metrics["train_loss"])
        for m in METRICS:
            self.history[m][:, epoch] = np.where(trained, metrics[m], np.nan)
        self.diverged_epoch = np.where(diverged & (self.diverged_epoch < 0), epoch,
                                       self.diverged_epoch)
        self.epoch = epoch + 1
        if self.patience is not None:
            stop = _patience_exhausted(self.history["val_accuracy"][:, : epoch + 1],
                                       self.patience)
            active = active & ~stop
        return active

    def best_val(self) -> float:
        val = self.history["val_accuracy"][:, : self.epoch]
        return float(np.nanmax(val)) if np.any(~np.isnan(val)) else float("nan")

    def meta(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "diverged_epoch": self.diverged_epoch.tolist(),
                "history": {m: self.history[m][:, : self.epoch].tolist() for m in METRICS}}

    def load(self, meta: dict[str, Any]) -> None:
        self.epoch = meta["epoch"]
        for m in METRICS:
            self.history[m][:, : self.epoch] = np.array(meta["history"][m], float)
        self.diverged_epoch = np.array(meta["diverged_epoch"])


def _patience_exhausted(val_acc: np.ndarray, patience: int) -> np.ndarray:
    """True for runs whose best validation accuracy is more than ``patience`` epochs old."""
    filled = np.where(np.isnan(val_acc), -np.inf, val_acc)
    best = filled.argmax(1)  # first epoch reaching the best value
    return (val_acc.shape[1] - 1 - best) >= patience


def _best_epoch(history: dict[str, np.ndarray], trained: np.ndarray) -> np.ndarray:
    """Epoch of the best validation accuracy per run (the last trained epoch without a
    validation set; −1 for a run that never trained)."""
    val = history["val_accuracy"]
    has_val = ~np.isnan(val) & trained
    last = trained.sum(1) - 1
    best = np.where(has_val.any(1), np.where(has_val, val, -np.inf).argmax(1), last)
    return np.where(last >= 0, best, -1)


def _progress(iterable, progress: bool | None, desc: str):
    """A tqdm bar; ``progress=None`` shows it only when stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="epoch", disable=None if progress is None
                else not progress, leave=False)
