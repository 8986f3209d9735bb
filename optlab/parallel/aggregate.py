"""Methods with one set of parameters: every replica sends a message about its gradient each
step, the messages are aggregated, and one server optimizer applies the aggregate.

* :func:`data_parallel` — synchronous SGD: the message is the gradient, the aggregate its
  mean (an all-reduce), the server any optimizer.
* :func:`majority_vote` — signSGD / Signum with majority vote (Bernstein et al. 2019): the
  message is the sign of the replica's own momentum (1 bit), the aggregate the sign of their
  sum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optlab import _checks
from optlab.accumulators import ema
from optlab.combiners import sign_of
from optlab.parallel.method import Parallel, apply, broadcast, check_replicas, replica_mean
from optlab.stream import chain

__all__ = ["AggregateState", "aggregated", "data_parallel", "majority_vote"]

PyTree = Any


class AggregateState(NamedTuple):
    """``params`` (one copy), ``workers`` (each replica's message state, replica axis first),
    ``server`` (the server optimizer's state)."""

    params: PyTree
    workers: PyTree
    server: PyTree


def aggregated(name: str, replicas: int, worker: optax.GradientTransformation,
               aggregate: Callable[[PyTree], PyTree], server: optax.GradientTransformation,
               bits_per_step: float, adversaries: int = 0) -> Parallel:
    """Each replica turns its gradient into a message with its own ``worker`` transform state;
    ``aggregate`` reduces the messages over the replica axis; ``server`` applies the result.
    The first ``adversaries`` replicas send the negated message (a Byzantine worker)."""
    replicas = check_replicas(replicas)
    _checks.check_int("adversaries", adversaries, low=0)
    if adversaries >= replicas:
        raise ValueError(f"adversaries must be in [0, replicas - 1 = {replicas - 1}], got "
                         f"{adversaries}")
    flip = jnp.where(jnp.arange(replicas) < adversaries, -1.0, 1.0)

    def init(params):
        workers = jax.vmap(worker.init)(broadcast(params, replicas))
        return AggregateState(params, workers, server.init(params))

    def update(state, grads, key):
        del key
        everywhere = broadcast(state.params, replicas)
        messages, workers = jax.vmap(worker.update)(grads, state.workers, everywhere)
        if adversaries:
            messages = jax.tree.map(
                lambda m: m * flip.astype(m.dtype).reshape(-1, *([1] * (m.ndim - 1))), messages)
        params, server_state = apply(server, aggregate(messages), state.server, state.params)
        return AggregateState(params, workers, server_state)

    return Parallel(name, replicas, init, lambda s: broadcast(s.params, replicas), update,
                    lambda s: s.params, bits_per_step)


def data_parallel(tx: optax.GradientTransformation, replicas: int) -> Parallel:
    r"""Synchronous data-parallel SGD: :math:`θ ← θ + \mathrm{tx}(\tfrac1R \sum_r g_r)`.

    The baseline every other method is compared with: one float32 all-reduce of the gradient
    per step (32 bits per parameter).
    """
    return aggregated("data_parallel", replicas, optax.identity(), replica_mean, tx, 32.0)


def _vote(messages: PyTree) -> PyTree:
    """sign(Σ_r m_r) of sign messages, summed as int8 (the all-reduce moves 8 bits per
    parameter, not 32; exact for up to 127 replicas, int32 beyond)."""
    def one(m):
        small = jnp.int8 if m.shape[0] < 128 else jnp.int32
        return jnp.sign(jnp.sum(m.astype(small), axis=0, dtype=small)).astype(m.dtype)

    return jax.tree.map(one, messages)


def majority_vote(tx: optax.GradientTransformation, replicas: int, beta: float = 0.9,
                  adversaries: int = 0) -> Parallel:
    r"""signSGD / Signum with majority vote (Bernstein et al. 2019, Algorithm 1).

    Replica r keeps its own momentum :math:`m_r ← β m_r + (1-β) g_r` (β = 0: signSGD) and
    sends :math:`\mathrm{sign}(m_r)`; the server applies ``tx`` to the vote
    :math:`\mathrm{sign}(\sum_r \mathrm{sign}(m_r))` and sends the new parameters' change
    back — with ``tx = optlab.sgd(η)`` the paper's :math:`θ ← θ - η\,\mathrm{vote}`
    (``optlab.sgdw(η, momentum=None, weight_decay=λ)`` adds its decoupled weight decay). The
    paper sends 1 bit per parameter each way, 32× less than float32; here the signs are summed
    by an int8 all-reduce (4× less; 1-bit packing is not implemented). The first ``adversaries``
    replicas send :math:`-\mathrm{sign}(m_r)`; the vote tolerates fewer than half (the
    paper's robustness claim). A tie gives 0.
    """
    _checks.check_number("beta", beta, low=0.0, high=1.0, high_inclusive=False)
    sign_sgd = _checks._concrete_scalar(beta) == 0.0
    worker = chain(sign_of()) if sign_sgd else chain(ema("mu", beta), sign_of("mu"))
    return aggregated("majority_vote", replicas, worker, _vote, tx, 8.0, adversaries)
