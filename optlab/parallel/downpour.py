"""Downpour SGD (Dean et al. 2012): replicas on stale copies of the parameters, a server that
applies their accumulated gradients as they arrive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optlab.parallel.method import (
    Parallel,
    apply,
    broadcast,
    check_period,
    check_replicas,
)

__all__ = ["DownpourState", "downpour"]

PyTree = Any


class DownpourState(NamedTuple):
    """``params`` and ``server``: the parameter server's model and optimizer state;
    ``replicas``: each replica's copy (fetched, then moved by its local steps);
    ``accumulated``: each replica's gradient sum since its last push; ``local``: each
    replica's state of the local optimizer (None without local steps; replica axis first)."""

    params: PyTree
    server: PyTree
    replicas: PyTree
    accumulated: PyTree
    count: jax.Array
    local: PyTree = None


def downpour(server: optax.GradientTransformation, replicas: int, n_fetch: int = 1,
             n_push: int = 1, offsets: Sequence[int] | None = None,
             shuffle_arrivals: bool = True,
             local: optax.GradientTransformation | None = None) -> Parallel:
    r"""Downpour SGD (Dean et al. 2012, Section 4.1), arrivals simulated.

    Replica r computes its gradients at its own copy :math:`θ_r` of the parameters, fetched
    from the server every ``n_fetch`` steps, and sums them; every ``n_push`` steps it pushes
    the sum, which the server applies as one step of ``server`` (the paper's Adagrad:
    ``optlab.adagrad``, which it found makes Downpour far more robust). Replicas are out of
    phase: replica r fetches and pushes at the steps t with :math:`(t + o_r + 1) \bmod n = 0`,
    offsets :math:`o_r` = ``offsets`` (default spread evenly over the period), so the server
    sees a stream of stale gradients — staleness being the server updates since the fetch.
    Pushes of the same step arrive in a random order (``shuffle_arrivals``, from the step's
    key) or in replica order. One server step per push: with ``n_push = 1`` the server takes
    R steps per step of the replicas.

    ``local``: the replicas' own steps between fetches, each replica with its own state (the
    client of Dean et al.'s Algorithm 7.1 takes ``parameters ← parameters − α·gradient`` after
    every gradient, and Zhang et al. 2015's DOWNPOUR baseline ``x_i ← x_i − η g_i``: pass
    ``local=optlab.sgd(η)``, or the server's ``tx`` itself); None (default): the replicas
    compute every gradient at the fetched copy until the next fetch.
    """
    replicas = check_replicas(replicas)
    n_fetch, n_push = check_period("n_fetch", n_fetch), check_period("n_push", n_push)
    if offsets is None:
        offsets = [(r * max(n_fetch, n_push)) // replicas for r in range(replicas)]
    offsets = np.asarray(offsets)
    if offsets.shape != (replicas,) or not np.issubdtype(offsets.dtype, np.integer) or \
            np.any(offsets < 0):
        raise ValueError(f"offsets must be {replicas} ints >= 0 (one per replica), got "
                         f"{offsets.tolist()}")
    if not isinstance(shuffle_arrivals, bool):
        raise TypeError(f"shuffle_arrivals must be a bool, got {shuffle_arrivals!r}")
    phase = jnp.asarray(offsets, jnp.int32)

    def init(params):
        everywhere = broadcast(params, replicas)
        return DownpourState(params, server.init(params), everywhere,
                             jax.tree.map(jnp.zeros_like, everywhere), jnp.zeros([], jnp.int32),
                             None if local is None else jax.vmap(local.init)(everywhere))

    def update(state, grads, key):
        accumulated = jax.tree.map(jnp.add, state.accumulated, grads)
        pushes = (state.count + phase + 1) % n_push == 0
        order = (jax.random.permutation(key, replicas) if shuffle_arrivals
                 else jnp.arange(replicas))

        def arrive(carry, r):
            params, server_state = carry
            pushed = jax.tree.map(lambda a: a[r], accumulated)
            return jax.lax.cond(pushes[r], lambda: apply(server, pushed, server_state, params),
                                lambda: carry), None

        (params, server_state), _ = jax.lax.scan(arrive, (state.params, state.server), order)
        accumulated = jax.tree.map(lambda a: jnp.where(_lead(pushes, a), 0, a), accumulated)
        moved, local_state = state.replicas, state.local
        if local is not None:  # the replicas' own steps, at the copies the gradients were read
            steps, local_state = jax.vmap(local.update)(grads, state.local, state.replicas)
            moved = jax.tree.map(jnp.add, state.replicas, steps)
        fetches = (state.count + phase + 1) % n_fetch == 0
        copies = jax.tree.map(lambda c, p: jnp.where(_lead(fetches, c), p[None], c),
                              moved, params)
        return DownpourState(params, server_state, copies, accumulated, state.count + 1,
                             local_state)

    return Parallel("downpour", replicas, init, lambda s: s.replicas, update,
                    lambda s: s.params, 32.0 / n_push + 32.0 / n_fetch)


def _lead(flags: jax.Array, like: jax.Array) -> jax.Array:
    """Per-replica flags shaped to broadcast against a replica-stacked leaf."""
    return flags.reshape(-1, *([1] * (like.ndim - 1)))
