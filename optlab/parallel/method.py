"""What a parallel method is: replicas of one model, each computing gradients on its own data,
and the communication that turns them into training.

A :class:`Parallel` is four pure functions over a state whose per-replica parts carry a leading
replica axis. The training loop evaluates each replica's gradient at
``replica_params(state)[r]`` on replica r's batch (a ``vmap`` over the replica axis), then calls
``update``. Averages over the replica axis are the collectives: with the replica axis sharded
over a mesh axis, XLA turns ``mean(axis=0)`` into an all-reduce, and on one device the same
code runs vmapped — so a study on 2 CPU cores runs unchanged on a GPU host or a TPU slice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optlab import _checks

__all__ = ["Parallel", "broadcast", "replica_mean"]

PyTree = Any


class Parallel(NamedTuple):
    """A parallel method of ``replicas`` replicas.

    * ``init(params) -> state``;
    * ``replica_params(state)``: the params (leading replica axis) at which each replica
      computes its next gradient;
    * ``update(state, grads, key) -> state``: one step, ``grads`` with the replica axis;
      ``key`` a PRNG key for the methods that draw (arrival orders);
    * ``params(state)``: the model to evaluate (the server's / the average);
    * ``bits_per_step``: bits per parameter that each replica puts into collectives per step,
      on average (32 for a float32 all-reduce every step) — as implemented here (the majority
      vote's signs travel as int8: 8 bits, the paper's 1 bit needs bit packing).
    """

    name: str
    replicas: int
    init: Callable[[PyTree], PyTree]
    replica_params: Callable[[PyTree], PyTree]
    update: Callable[[PyTree, PyTree, jax.Array], PyTree]
    params: Callable[[PyTree], PyTree]
    bits_per_step: float


def broadcast(tree: PyTree, replicas: int) -> PyTree:
    """``tree`` repeated along a new leading replica axis."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (replicas, *jnp.shape(x))), tree)


def replica_mean(tree: PyTree) -> PyTree:
    """The mean over the replica axis (an all-reduce when that axis is sharded)."""
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), tree)


def apply(tx: optax.GradientTransformation, grads: PyTree, state: PyTree,
          params: PyTree) -> tuple[PyTree, PyTree]:
    """One step of ``tx``: the new params and state."""
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state


def check_replicas(replicas: Any) -> int:
    _checks.check_int("replicas", replicas, low=1)
    return int(replicas)


def check_period(name: str, value: Any) -> int:
    _checks.check_int(name, value, low=1)
    return int(value)


def every(count: jax.Array, period: int) -> jax.Array:
    """True at the last step of each period of ``period`` steps (count: completed steps)."""
    return (count + 1) % period == 0
