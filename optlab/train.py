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
  params, and BatchNorm statistics, are those of the gradient point y); in a grid over
  :func:`optlab.one_of`, each run at its own member's point;
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
import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optlab import lipschitz
from optlab._checks import check_int, unknown_name
from optlab.checkpoints import _Checkpoints
from optlab.grid import Grid
from optlab.run_identity import _identity, _label, describe  # noqa: F401 (re-exported)
from optlab.run_program import (  # noqa: F401 (classification_loss: re-exported)
    _PROGRAMS,
    ModelFactory,
    OptimizerFactory,
    _aval_key,
    _chunks,
    _extra_args,
    _graphdefs,
    _over_runs,
    _Program,
    _program_key,
    _setting_key,
    _stack,
    classification_loss,
)
from optlab.train_result import TrainResult

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss",
           "test_accuracy")


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
