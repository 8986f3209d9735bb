"""Training with replicas: the parallel methods inside ``optlab.train``'s compiled program.

``optlab.train(..., parallel=Replicas(method, iid=True))`` trains every run of the grid as R
replicas of the model. Each step, replica r computes its gradient at
``method.replica_params(state)[r]`` on its own mini-batch (a ``vmap`` over the replica axis)
and ``method.update`` communicates. The replica axis is laid out on the mesh axis
``"replica"`` and each replica's batch on ``"data"``: with one device the replicas are simply
vmapped, with several (GPUs, a TPU slice, simulated CPU devices, or processes joined by
``jax.distributed``) XLA partitions the same program and turns the replica means into
all-reduces — no parameter server, no RPC.

An epoch is one pass over the training set: with iid data a shuffle of all examples split
into R·B-sized steps; with ``iid=False`` the examples sorted by label and cut into R
contiguous shards (replica r sees only its labels), each shuffled on its own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from optlab.parallel.method import Parallel, broadcast
from optlab.run_program import _Program, classification_loss

__all__ = ["ParallelProgram", "Replicas", "parallel_mesh"]


@dataclass(frozen=True)
class Replicas:
    """How ``optlab.train`` runs a parallel method.

    ``method``: the run's optimizer → a :class:`Parallel` (e.g.
    ``functools.partial(optlab.parallel.diloco, replicas=4, inner_steps=50)``); ``iid``:
    whether every replica samples from all the data (True) or from its own label shard.
    """

    method: Callable[[optax.GradientTransformation], Parallel]
    iid: bool = True

    def __post_init__(self):
        if not callable(self.method):
            raise TypeError(f"Replicas.method must be a callable optimizer -> Parallel, got "
                            f"{self.method!r}")
        if not isinstance(self.iid, bool):
            raise TypeError(f"Replicas.iid must be a bool, got {self.iid!r}")

    @property
    def __optlab_spec__(self) -> tuple[str, dict[str, Any]]:  # described in checkpoints
        return "Replicas", {"method": self.method, "iid": self.iid}

    def count(self) -> int:
        """The number of replicas (the method built around a probe optimizer)."""
        from optlab.optimizers import sgd

        return self.build(sgd(0.1)).replicas

    def build(self, tx: optax.GradientTransformation) -> Parallel:
        method = self.method(tx)
        if not isinstance(method, Parallel):
            raise TypeError(f"Replicas.method must return an optlab.parallel.Parallel, got "
                            f"{type(method).__name__}")
        return method


def parallel_mesh(replicas: int, batch_size: int, devices: list | None = None) -> Mesh | None:
    """The ``("replica", "data")`` mesh over all devices: the replica axis takes
    gcd(replicas, devices) of them, the batch the rest (None on one device)."""
    devices = jax.devices() if devices is None else devices
    if len(devices) == 1:
        return None
    r = math.gcd(replicas, len(devices))
    d = len(devices) // r
    if batch_size % d:
        raise ValueError(
            f"batch_size={batch_size} must be divisible by {d}: {len(devices)} devices hold "
            f"{replicas} replicas as a {r} × {d} (replica × data) mesh; change batch_size or "
            "replicas, or pass data_parallel=False (one device)")
    return Mesh(np.array(devices).reshape(r, d), ("replica", "data"))


def _rest_mean(rest: Any) -> Any:
    """The replicas' non-parameter state (BatchNorm statistics) for evaluation: the mean of
    float leaves, replica 0's others."""
    return jax.tree.map(lambda a: a.mean(0).astype(a.dtype)
                        if jnp.issubdtype(a.dtype, jnp.floating) else a[0], rest)


def steps_per_epoch(n_train: int, batch_size: int, replicas: int, iid: bool) -> int:
    """Steps of one pass over ``n_train`` examples by ``replicas`` replicas (non-iid: each
    over its shard of ``n_train // replicas``)."""
    steps = n_train // (replicas * batch_size) if iid else (n_train // replicas) // batch_size
    if steps < 1:
        raise ValueError(f"{replicas} replicas × batch_size {batch_size} need at least "
                         f"{replicas * batch_size} training examples, the data set has "
                         f"{n_train}")
    return steps


def program(base: _Program, replicas: Replicas, n_train: int, mesh: Mesh | None,
            hparams: dict[str, Any]) -> ParallelProgram:
    """``optlab.train``'s program ``base`` with replicas (``hparams``: one run's, to build
    the method once and read its replica count)."""
    R = replicas.build(base.optimizer_fn(**hparams)).replicas
    steps = steps_per_epoch(n_train, base.batch_size, R, replicas.iid)
    sharding = NamedSharding(mesh, P("replica", "data")) if mesh is not None else None
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    return ParallelProgram(**{**fields, "steps_per_epoch": steps, "batch_sharding": sharding},
                           replicas_spec=replicas, n_replicas=R)


@dataclass(frozen=True)
class ParallelProgram(_Program):
    """``run_program._Program`` with a replica axis: init / epoch / evaluate of one run."""

    replicas_spec: Replicas | None = None
    n_replicas: int = 1

    def method(self, hparams: dict[str, jax.Array]) -> Parallel:
        return self.replicas_spec.build(self.optimizer(hparams))

    def init(self, seed: jax.Array, hparams: dict[str, jax.Array]) -> dict[str, Any]:
        key = jax.random.key(seed)
        model = self.model_fn(nnx.Rngs(jax.random.fold_in(key, 0)))
        _, params, rest = nnx.split(model, nnx.Param, ...)
        return {
            "pstate": self.method(hparams).init(params),
            "rest": jax.tree.map(jnp.copy, broadcast(rest, self.n_replicas)),
            "hparams": hparams,
            "key": jax.random.key_data(jax.random.fold_in(key, 1)),
            "active": jnp.array(True), "diverged": jnp.array(False),
        }

    def _order(self, key: jax.Array, y: jax.Array) -> jax.Array:
        """Example indices ``(steps, R, B)`` of one epoch."""
        R, B, steps = self.n_replicas, self.batch_size, self.steps_per_epoch
        if self.replicas_spec.iid:
            order = jax.random.permutation(key, y.shape[0])[: steps * R * B]
            return order.reshape(steps, R, B)
        per = y.shape[0] // R
        shards = jnp.argsort(y, stable=True)[: R * per].reshape(R, per)
        keys = jax.random.split(key, R)
        order = jax.vmap(lambda k, s: s[jax.random.permutation(k, per)[: steps * B]])(
            keys, shards)
        return order.reshape(R, steps, B).transpose(1, 0, 2)

    def epoch(self, run: dict[str, Any], epoch: jax.Array, x: jax.Array, y: jax.Array):
        """One epoch of one run: every replica takes ``steps_per_epoch`` steps."""
        method = self.method(run["hparams"])
        key = jax.random.fold_in(jax.random.wrap_key_data(run["key"]), epoch)
        order = self._order(key, y)  # (iid: the single-model order, cut into R batches)
        step_keys = jax.random.split(jax.random.fold_in(key, 1), order.shape[0])

        def replica_loss(p, rest, xb, yb):
            model = nnx.merge(self.graph_train, p, rest, copy=True)
            loss, acc = classification_loss(model, xb, yb)
            return loss, (acc, nnx.split(model, nnx.Param, ...)[2])

        grad_fn = jax.vmap(jax.value_and_grad(replica_loss, has_aux=True))

        def step(carry, inputs):
            pstate, rest, ok = carry
            idx, k = inputs
            xb, yb = self._constrain(x[idx]), self._constrain(y[idx])
            (loss, (acc, new_rest)), grads = grad_fn(method.replica_params(pstate), rest,
                                                     xb, yb)
            new_pstate = method.update(pstate, grads, k)
            finite = jnp.all(jnp.isfinite(loss)) & jnp.isfinite(optax.tree.norm(grads))
            take = ok & finite
            pick = lambda new, old: jax.tree.map(  # noqa: E731
                lambda a, b: jnp.where(take, a, b), new, old)
            return ((pick(new_pstate, pstate), pick(new_rest, rest), take),
                    (loss.mean(), acc.mean(), take))

        carry0 = (run["pstate"], run["rest"], run["active"])
        (pstate, rest, ok), (loss, acc, took) = jax.lax.scan(step, carry0, (order, step_keys),
                                                             unroll=self.unroll)
        n = took.sum()
        mean = lambda v: jnp.where(n > 0, jnp.where(took, v, 0).sum() / n, jnp.nan)  # noqa: E731
        if self.batch_sharding is not None:  # at rest between epochs the state is replicated
            everywhere = NamedSharding(self.batch_sharding.mesh, P())
            pstate, rest = jax.lax.with_sharding_constraint((pstate, rest), everywhere)
        run = {**run, "pstate": pstate, "rest": rest,
               "diverged": run["diverged"] | (run["active"] & ~ok), "active": ok}
        return run, {"train_loss": mean(loss), "train_accuracy": mean(acc)}

    def evaluated(self, run: dict[str, Any]) -> dict[str, Any]:
        """The model a run evaluates: ``params`` (the method's: server, center, average) and
        ``rest`` (the replicas' mean BatchNorm statistics)."""
        return {"params": self.method(run["hparams"]).params(run["pstate"]),
                "rest": _rest_mean(run["rest"])}

    def evaluate(self, run: dict[str, Any], x: jax.Array, y: jax.Array, w: jax.Array):
        """Loss and accuracy of :meth:`evaluated`."""
        model = self.evaluated(run)
        unsharded = dataclasses.replace(self, batch_sharding=None)  # (R, B) is not an eval chunk
        return unsharded.evaluate_at(model["params"], model["rest"], x, y, w)
