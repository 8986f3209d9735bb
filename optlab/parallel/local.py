"""Methods whose replicas keep their own parameters and communicate every few steps.

* :func:`local_sgd` — H inner steps of any optimizer per replica, then an outer optimizer on
  the averaged pseudo-gradient; :func:`diloco` (Douillard et al. 2023: Nesterov outer) and
  :func:`fedavg` (McMahan et al. 2017: outer SGD with learning rate 1, plain averaging).
* :func:`easgd` — Elastic Averaging SGD and its momentum variant EAMSGD (Zhang, Choromanska
  & LeCun 2015): replicas pulled towards a center variable every τ steps.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optlab import _checks
from optlab.optimizers import sgd
from optlab.parallel.method import (
    Parallel,
    apply,
    broadcast,
    check_period,
    check_replicas,
    every,
)

__all__ = ["ElasticState", "LocalState", "diloco", "easgd", "fedavg", "local_sgd"]

PyTree = Any


class LocalState(NamedTuple):
    """``params``: the global model; ``outer``: the outer optimizer's state; ``replicas`` and
    ``inner``: each replica's params and inner optimizer state (replica axis first)."""

    params: PyTree
    outer: PyTree
    replicas: PyTree
    inner: PyTree
    count: jax.Array


def local_sgd(inner: optax.GradientTransformation, outer: optax.GradientTransformation,
              replicas: int, inner_steps: int, name: str = "local_sgd") -> Parallel:
    r"""Local SGD with an outer optimizer (DiLoCo's form, Douillard et al. 2023, Algorithm 1).

    Each replica takes ``inner_steps`` = H steps of ``inner`` from the global params θ on its
    own data; then the pseudo-gradient :math:`Δ = θ - \tfrac1R\sum_r θ_r` (pointing uphill,
    like a gradient) is one step of ``outer``: :math:`θ ← θ + \mathrm{outer}(Δ)`, and every
    replica restarts from the new θ, keeping its inner optimizer state. Outer SGD with
    learning rate 1 is plain parameter averaging (FedAvg). One all-reduce every H steps.
    """
    replicas, period = check_replicas(replicas), check_period("inner_steps", inner_steps)

    def init(params):
        everywhere = broadcast(params, replicas)
        return LocalState(params, outer.init(params), everywhere,
                          jax.vmap(inner.init)(everywhere), jnp.zeros([], jnp.int32))

    def update(state, grads, key):
        del key
        local, inner_state = jax.vmap(lambda g, s, p: apply(inner, g, s, p))(
            grads, state.inner, state.replicas)

        def sync(local):
            delta = jax.tree.map(lambda p, r: p - jnp.mean(r, axis=0).astype(p.dtype),
                                 state.params, local)
            params, outer_state = apply(outer, delta, state.outer, state.params)
            return params, outer_state, broadcast(params, replicas)

        params, outer_state, local = jax.lax.cond(
            every(state.count, period), sync,
            lambda local: (state.params, state.outer, local), local)
        return LocalState(params, outer_state, local, inner_state, state.count + 1)

    return Parallel(name, replicas, init, lambda s: s.replicas, update, lambda s: s.params,
                    32.0 / period)


def diloco(inner: optax.GradientTransformation, replicas: int, inner_steps: int = 50,
           outer_learning_rate: float = 0.7, outer_momentum: float = 0.9) -> Parallel:
    """DiLoCo (Douillard et al. 2023): :func:`local_sgd` with Nesterov SGD as the outer
    optimizer (OpenDiLoCo's lr 0.7, momentum 0.9); the paper's inner optimizer is AdamW."""
    return local_sgd(inner, sgd(outer_learning_rate, momentum=outer_momentum, nesterov=True),
                     replicas, inner_steps, name="diloco")


def fedavg(inner: optax.GradientTransformation, replicas: int, inner_steps: int) -> Parallel:
    """FedAvg / local SGD with plain averaging (McMahan et al. 2017): :func:`local_sgd`
    with outer SGD of learning rate 1, so θ becomes the replicas' mean every H steps."""
    return local_sgd(inner, sgd(1.0), replicas, inner_steps, name="fedavg")


class ElasticState(NamedTuple):
    """``center``: x̃; ``replicas``: the x_i; ``velocity``: EAMSGD's v_i (None for EASGD);
    ``local``: each replica's state of the local optimizer (replica axis first)."""

    center: PyTree
    replicas: PyTree
    velocity: PyTree | None
    local: PyTree
    count: jax.Array


def easgd(tx: optax.GradientTransformation, replicas: int, period: int = 1, beta: float = 0.9,
          momentum: float = 0.0) -> Parallel:
    r"""Elastic Averaging SGD (Zhang, Choromanska & LeCun 2015), EAMSGD with ``momentum``.

    Moving rate :math:`α = β/R` (the paper's β = pα = 0.9). Each replica steps with its own
    state of ``tx`` (the paper: ``optlab.sgd(η)``, :math:`u_i = -η g_i`), and every
    ``period`` = τ steps the replicas and the center x̃ pull towards each other
    (Algorithm 1, synchronous form):

    .. math:: x_i ← x_i + u_i(x_i) - α(x_i - x̃),\qquad x̃ ← x̃ + α\textstyle\sum_i (x_i - x̃)

    (between communications only the local step). EAMSGD (Algorithm 2) takes Nesterov steps
    :math:`v_i ← δ v_i + u_i(x_i + δ v_i)`, :math:`x_i ← x_i + v_i` with δ = ``momentum``, its
    elastic step coming before the gradient's evaluation. The center is the model evaluated.
    One exchange of parameters every τ steps.
    """
    replicas, period = check_replicas(replicas), check_period("period", period)
    _checks.check_number("beta", beta, low=0.0, high=1.0)
    _checks.check_number("momentum", momentum, low=0.0, high=1.0, high_inclusive=False)
    alpha = beta / replicas
    nesterov = _checks._concrete_scalar(momentum) != 0.0

    def init(params):
        everywhere = broadcast(params, replicas)
        velocity = jax.tree.map(jnp.zeros_like, everywhere) if nesterov else None
        return ElasticState(params, everywhere, velocity, jax.vmap(tx.init)(everywhere),
                            jnp.zeros([], jnp.int32))

    def pull(center, local):
        diff = jax.tree.map(lambda x, c: (alpha * (x - c)).astype(x.dtype), local, center)
        local = jax.tree.map(jnp.subtract, local, diff)
        center = jax.tree.map(lambda c, d: c + jnp.sum(d, axis=0), center, diff)
        return center, local

    def elastic(center, local, now):
        return jax.lax.cond(now, pull, lambda c, x: (c, x), center, local)

    def update(state, grads, key):
        del key
        steps, local_state = jax.vmap(tx.update)(grads, state.local, replica_params(state))
        if not nesterov:  # Algorithm 1: the local and elastic terms both at the x_i read
            center, local = elastic(state.center, state.replicas, state.count % period == 0)
            local = jax.tree.map(jnp.add, local, steps)
            return ElasticState(center, local, None, local_state, state.count + 1)
        velocity = jax.tree.map(lambda v, u: momentum * v + u, state.velocity, steps)
        local = jax.tree.map(jnp.add, state.replicas, velocity)
        # Algorithm 2 pulls before the next gradient: at the end of the step before it
        center, local = elastic(state.center, local, every(state.count, period))
        return ElasticState(center, local, velocity, local_state, state.count + 1)

    def replica_params(state):
        if not nesterov:
            return state.replicas
        return jax.tree.map(lambda x, v: x + momentum * v, state.replicas, state.velocity)

    return Parallel("eamsgd" if nesterov else "easgd", replicas, init, replica_params, update,
                    lambda s: s.center, 32.0 / period)
