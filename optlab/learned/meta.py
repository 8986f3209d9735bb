"""Meta-training a learned optimizer: truncated unrolls over a batch of tasks.

The optimizer ``make_tx(φ)`` (e.g. :func:`~optlab.learned.lstm_optimizer`) trains a batch of
tasks drawn from a :class:`~optlab.learned.tasks.TaskFamily`. Each meta-step continues every
task's inner training for ``unroll`` = T steps (a *truncation*) and scores φ by the

    meta-loss L(φ) = mean over tasks and over the T steps of the inner training loss f_t(θ_t)

(Andrychowicz et al. 2016, eq. 1 with w_t = 1/T; the released code sums f over the unroll).
A task whose inner run reaches ``horizon`` steps (or turns non-finite) is replaced by a fresh
task and initialisation, so one inner run spans ``horizon / unroll`` truncations.

∇L(φ) is estimated by

* ``"bptt"`` — truncated backpropagation through the T-step unroll (``jax.grad`` of the
  ``lax.scan``); like the paper, the optimizee's gradients are not differentiated through
  (``second_order=False`` stops them; True gives the exact gradient of L);
* ``"es"`` — antithetic evolution strategies (Salimans et al. 2017): with ε_k ~ N(0, I),
  ĝ = 1/(2σK) Σ_k [L(φ + σε_k) − L(φ − σε_k)] ε_k, an unbiased estimate of the gradient of
  the Gaussian-smoothed meta-loss E_ε L(φ + σε); both members of a pair unroll from the same
  inner states with the same mini-batches, and the unperturbed φ advances them.

The meta-optimizer is Adam after clipping ĝ to a global norm. A whole chunk of meta-steps is
one jitted ``lax.scan``; :func:`meta_train` saves the state with orbax after every chunk and
resumes from it.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optlab.learned.tasks import TaskFamily

TxFactory = Callable[[Any], optax.GradientTransformation]
ESTIMATORS = ("bptt", "es")


@dataclass(frozen=True)
class MetaConfig:
    """Settings of meta-training.

    Attributes:
      unroll: inner steps per truncation (T; the paper's 20).
      horizon: inner steps before a task is replaced (the paper's 100).
      tasks: tasks per meta-step (vmapped).
      estimator: "bptt" (truncated backprop) or "es" (antithetic evolution strategies).
      second_order: differentiate through the optimizee's gradients (BPTT only).
      es_sigma: ES perturbation scale σ.
      es_pairs: ES antithetic pairs per meta-step.
      meta_lr: Adam learning rate of the meta-optimizer.
      clip: global-norm clipping of the meta-gradient.
    """

    unroll: int = 20
    horizon: int = 100
    tasks: int = 8
    estimator: str = "bptt"
    second_order: bool = False
    es_sigma: float = 0.01
    es_pairs: int = 8
    meta_lr: float = 1e-3
    clip: float = 1.0

    def __post_init__(self) -> None:
        for name in ("unroll", "horizon", "tasks", "es_pairs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {getattr(self, name)}")
        if self.horizon % self.unroll:
            raise ValueError(f"horizon ({self.horizon}) must be a multiple of unroll "
                             f"({self.unroll})")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        for name in ("es_sigma", "meta_lr", "clip"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class InnerState(NamedTuple):
    """One task's inner training: the task, its params and optimizer state, the inner step
    and the key its mini-batches are drawn from."""

    task: Any
    params: Any
    opt_state: Any
    step: jax.Array
    key: jax.Array


class MetaState(NamedTuple):
    """Everything meta-training carries: φ, Adam's state, the batch of inner states, the
    key and the number of meta-steps done."""

    meta_params: Any
    opt_state: Any
    inner: InnerState
    key: jax.Array
    step: jax.Array


def init_inner(family: TaskFamily, make_tx: TxFactory, meta_params: Any,
               key: jax.Array) -> InnerState:
    """A fresh task, its initial params and optimizer state."""
    k_task, k_init, k_data = jax.random.split(key, 3)
    task = family.sample(k_task)
    params = family.init(k_init, task)
    return InnerState(task, params, make_tx(meta_params).init(params),
                      jnp.zeros([], jnp.int32), k_data)


def unroll(family: TaskFamily, make_tx: TxFactory, meta_params: Any, inner: InnerState,
           steps: int, second_order: bool = False) -> tuple[jax.Array, InnerState]:
    """``steps`` inner steps of one task: the mean training loss f_t(θ_t) over them (θ_t
    before the t-th update) and the inner state after them."""
    tx = make_tx(meta_params)

    def step(carry, _):
        params, opt_state, t = carry
        loss, grads = jax.value_and_grad(family.loss)(params, inner.task,
                                                      jax.random.fold_in(inner.key, t))
        if not second_order:
            grads = jax.lax.stop_gradient(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, t + 1), loss

    (params, opt_state, t), losses = jax.lax.scan(
        step, (inner.params, inner.opt_state, inner.step), None, length=steps)
    return jnp.mean(losses), inner._replace(params=params, opt_state=opt_state, step=t)


def es_gradient(loss_fn: Callable[[Any], jax.Array], params: Any, key: jax.Array,
                sigma: float, pairs: int) -> Any:
    """Antithetic ES estimate of ∇ E_ε[loss(params + σε)]:
    1/(2σK) Σ_k [loss(params + σε_k) − loss(params − σε_k)] ε_k, ε_k ~ N(0, I)."""
    leaves, treedef = jax.tree.flatten(params)
    sizes = [x.size for x in leaves]
    offsets = np.cumsum([0, *sizes])
    dtype = jnp.result_type(*leaves)

    def noise(k):  # one draw for all leaves (one random op to compile, not one per leaf)
        flat = jax.random.normal(jax.random.fold_in(key, k), (int(offsets[-1]),), dtype)
        return [flat[a:b].reshape(x.shape).astype(x.dtype)
                for a, b, x in zip(offsets[:-1], offsets[1:], leaves, strict=True)]

    def one(k):
        eps = noise(k)
        plus = treedef.unflatten([x + sigma * e for x, e in zip(leaves, eps, strict=True)])
        minus = treedef.unflatten([x - sigma * e for x, e in zip(leaves, eps, strict=True)])
        diff = (loss_fn(plus) - loss_fn(minus)) / (2 * sigma)
        return [diff * e for e in eps]

    grads = jax.vmap(one)(jnp.arange(pairs))
    return treedef.unflatten([g.mean(0) for g in grads])


def _batch_loss(family, make_tx, config: MetaConfig, meta_params, inner):
    """Mean meta-loss over the batch of tasks, and their new inner states."""
    losses, new = jax.vmap(
        lambda s: unroll(family, make_tx, meta_params, s, config.unroll, config.second_order)
    )(inner)
    return jnp.mean(losses), new


def meta_gradient(family: TaskFamily, make_tx: TxFactory, config: MetaConfig,
                  meta_params: Any, inner: InnerState, key: jax.Array
                  ) -> tuple[jax.Array, Any, InnerState]:
    """(meta-loss, its estimated gradient, the advanced inner states) for one truncation."""
    if config.estimator == "bptt":
        (loss, new), grads = jax.value_and_grad(
            lambda mp: _batch_loss(family, make_tx, config, mp, inner), has_aux=True
        )(meta_params)
        return loss, grads, new
    loss, new = _batch_loss(family, make_tx, config, meta_params, inner)
    grads = es_gradient(lambda mp: _batch_loss(family, make_tx, config, mp, inner)[0],
                        meta_params, key, config.es_sigma, config.es_pairs)
    return loss, grads, new


def meta_optimizer(config: MetaConfig) -> optax.GradientTransformation:
    """Adam on the meta-parameters after global-norm clipping of the meta-gradient."""
    return optax.chain(optax.clip_by_global_norm(config.clip), optax.adam(config.meta_lr))


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def init_meta_state(family: TaskFamily, make_tx: TxFactory, config: MetaConfig,
                    meta_params: Any, key: jax.Array) -> MetaState:
    """The state before the first meta-step (``key``: a ``jax.random.PRNGKey``)."""
    k_tasks, k_next = jax.random.split(key)
    inner = jax.vmap(lambda k: init_inner(family, make_tx, meta_params, k))(
        jax.random.split(k_tasks, config.tasks))
    return MetaState(meta_params, meta_optimizer(config).init(meta_params), inner, k_next,
                     jnp.zeros([], jnp.int32))


def _tree_where(mask: jax.Array, a: Any, b: Any) -> Any:
    def pick(x, y):
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 1)), x, y)

    return jax.tree.map(pick, a, b)


def meta_step(family: TaskFamily, make_tx: TxFactory, config: MetaConfig,
              state: MetaState) -> tuple[MetaState, dict[str, jax.Array]]:
    """One meta-step: estimate ∇L on a truncation, update φ (a non-finite gradient skips
    the update), replace finished or diverged tasks."""
    k_grad, k_reset, k_next = jax.random.split(state.key, 3)
    loss, grads, inner = meta_gradient(family, make_tx, config, state.meta_params,
                                       state.inner, k_grad)
    norm = optax.tree.norm(grads)
    ok = jnp.isfinite(norm) & jnp.isfinite(loss)
    updates, opt_state = meta_optimizer(config).update(grads, state.opt_state,
                                                       state.meta_params)
    meta_params = _tree_where(ok, optax.apply_updates(state.meta_params, updates),
                              state.meta_params)
    opt_state = _tree_where(ok, opt_state, state.opt_state)
    finite = jax.vmap(lambda p: jnp.all(jnp.asarray(
        [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(p)])))(inner.params)
    done = (inner.step >= config.horizon) | ~finite
    fresh = jax.vmap(lambda k: init_inner(family, make_tx, meta_params, k))(
        jax.random.split(k_reset, config.tasks))
    inner = _tree_where(done, fresh, inner)
    return (MetaState(meta_params, opt_state, inner, k_next, state.step + 1),
            {"meta_loss": loss, "grad_norm": norm})


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 4))
def run_meta_steps(family: TaskFamily, make_tx: TxFactory, config: MetaConfig,
                   state: MetaState, steps: int) -> tuple[MetaState, dict[str, jax.Array]]:
    """``steps`` meta-steps as one ``lax.scan``; per-step metrics stacked."""
    return jax.lax.scan(lambda s, _: meta_step(family, make_tx, config, s), state, None,
                        length=steps)


@dataclass
class MetaResult:
    """What :func:`meta_train` returns: the final φ, the per-step meta-losses and gradient
    norms (all steps, also those loaded from a checkpoint), the step it resumed from (None:
    started afresh) and the wall time of this call."""

    meta_params: Any
    meta_loss: np.ndarray
    grad_norm: np.ndarray
    resumed_from: int | None
    wall_time: float
    state: MetaState | None = None


def meta_train(family: TaskFamily, make_tx: TxFactory, meta_params: Any,
               config: MetaConfig, steps: int, seed: int = 0, *,
               checkpoint_dir: str | Path | None = None, save_every: int = 50,
               fingerprint: dict[str, Any] | None = None,
               on_chunk: Callable[[int, MetaState, dict[str, np.ndarray]], None] | None = None
               ) -> MetaResult:
    """Meta-trains φ (from ``meta_params``) for ``steps`` meta-steps.

    Runs in chunks of ``save_every`` meta-steps (one compiled scan each); with
    ``checkpoint_dir`` the whole state is saved with orbax after every chunk (atomically, the
    last two kept) and a later call resumes from the newest one — bit-exactly, so an
    interrupted run ends where an uninterrupted one would. ``fingerprint`` (JSON-able, e.g.
    the command line's configuration) must match the checkpoint's, else ValueError.
    ``on_chunk(step, state, metrics)`` is called after every chunk (after saving).
    """
    from optlab.checkpoints import _Checkpoints

    if steps < 0 or save_every < 1:
        raise ValueError(f"steps must be >= 0 and save_every >= 1, got {steps}, {save_every}")
    start = time.perf_counter()
    state = init_meta_state(family, make_tx, config, meta_params, jax.random.PRNGKey(seed))
    history: dict[str, list[float]] = {"meta_loss": [], "grad_norm": []}
    ckpt, resumed = None, None
    if checkpoint_dir is not None:
        ident = fingerprint if fingerprint is not None else {
            "family": family.config, "meta": config.to_json(), "seed": seed}
        ckpt = _Checkpoints(checkpoint_dir, {"config": ident})
        restored = ckpt.restore(jax.tree.map(np.asarray, state))
        if restored is not None:
            state = jax.tree.map(jnp.asarray, restored[0])
            history = {k: list(v) for k, v in restored[1]["history"].items()}
            resumed = int(state.step)
    try:
        while int(state.step) < steps:
            n = min(save_every, steps - int(state.step))
            state, metrics = run_meta_steps(family, make_tx, config, state, n)
            metrics = {k: np.asarray(v) for k, v in metrics.items()}
            for k, v in metrics.items():
                history[k].extend(float(x) for x in v)
            if ckpt is not None:
                ckpt.save(int(state.step), jax.tree.map(np.asarray, state),
                          {"history": history, "epoch": int(state.step)})
            if on_chunk is not None:
                on_chunk(int(state.step), state, metrics)
    finally:
        if ckpt is not None:
            ckpt.close()
    return MetaResult(state.meta_params, np.asarray(history["meta_loss"]),
                      np.asarray(history["grad_norm"]), resumed,
                      time.perf_counter() - start, state)


def curves(family: TaskFamily, tx: optax.GradientTransformation, keys: jax.Array,
           steps: int) -> tuple[jax.Array, Any]:
    """Unjitted :func:`evaluate` (to vmap or jit it with other arguments traced)."""
    def one(key):
        k_task, k_init, k_data = jax.random.split(key, 3)
        task = family.sample(k_task)
        params = family.init(k_init, task)

        def step(carry, t):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(family.loss)(params, task,
                                                          jax.random.fold_in(k_data, t))
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), jnp.arange(steps))
        final = family.eval_loss(params, task)
        return jnp.concatenate([losses, final[None]]), params

    return jax.vmap(one)(keys)


_curves = jax.jit(curves, static_argnums=(0, 1, 3))


def evaluate(family: TaskFamily, tx: optax.GradientTransformation, keys: jax.Array,
             steps: int) -> tuple[np.ndarray, Any]:
    """Trains one task per key (``jax.random.PRNGKey`` array, one row each) with ``tx`` for
    ``steps`` steps: the training loss each step saw (its mini-batch's) and, last, the full
    training loss after the last step, ``(tasks, steps + 1)``; and the final params
    (stacked). Tasks and mini-batches for the same key are the same whatever ``tx`` is, so
    optimizers are compared on identical tasks."""
    losses, params = _curves(family, tx, jnp.asarray(keys), steps)
    return np.asarray(losses), params


@functools.partial(jax.jit, static_argnums=(0, 1, 4))
def _learned_curves(family: TaskFamily, make_tx: TxFactory, meta_params: Any, keys: jax.Array,
                    steps: int) -> tuple[jax.Array, Any]:
    return curves(family, make_tx(meta_params), keys, steps)


def evaluate_learned(family: TaskFamily, make_tx: TxFactory, meta_params: Any,
                     keys: jax.Array, steps: int) -> tuple[np.ndarray, Any]:
    """:func:`evaluate` for the optimizer ``make_tx(meta_params)`` with φ traced: one compile
    for every φ (e.g. before and after meta-training) of a hashable ``make_tx``."""
    losses, params = _learned_curves(family, make_tx, meta_params, jnp.asarray(keys), steps)
    return np.asarray(losses), params
