"""Layer-wise statistics: per-leaf norms, trust ratios, and the optimizers built on them.

A *layer* is one leaf of the parameter tree (one weight matrix, one bias vector, one scalar),
as in the papers and in optax. Three primitives read a whole leaf at once:

* :func:`trust_ratio` rescales each leaf's update by c‖θ‖/‖u‖ (LARS, LAMB, Fromage);
* :func:`ema_of_sq_norm` keeps one second moment per leaf, an EMA of ‖g‖² (NovoGrad);
* :func:`norm_preserving_step` takes the step θ ← (θ − η u)/√(1 + η²) (Fromage).

and the optimizers LAMB, LARS, Fromage and NovoGrad are chains of them with the element-wise
vocabulary (Adam's moments, weight decay, momentum, learning-rate scaling).
"""


from typing import Any

import jax
import jax.numpy as jnp
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.accumulators import _check_name, _read_source, ema, ema_of_square, trace
from optlab.combiners import ratio, select
from optlab.optimizers import Mask, _check_args, chain
from optlab.regularizers import decoupled_weight_decay, l2_penalty, scale_by_learning_rate
from optlab.stream import (
    GRAD,
    Primitive,
    abs_sq,
    cast_like,
    empty_init,
    expect_plain,
    per_dtype,
    primitive,
    require_params,
    scalar_as,
    tree_map,
)

__all__ = [
    "ema_of_sq_norm",
    "fromage",
    "lamb",
    "lars",
    "norm_preserving_step",
    "novograd",
    "trust_ratio",
]


def _apply_mask(mask: Mask, fn, updates: Any, params: Any) -> Any:
    """``fn(updates, params)`` on the leaves ``mask`` selects, as ``optax.masked`` does: a tree
    of bools (a prefix of the params) or a function of the updates."""
    if mask is None:
        return fn(updates, params)
    keep = mask(updates) if callable(mask) else mask
    return jax.tree.map(lambda k, u, p: fn(u, p) if k else u, keep, updates, params)


def _layer_norm(x: jax.Array, min_norm: Any) -> jax.Array:
    """max(‖x‖, min_norm) over the whole leaf, with a finite derivative where ‖x‖ ≤ min_norm."""
    sq = jnp.sum(abs_sq(x))
    m = scalar_as(min_norm, sq)
    clipped = sq <= m * m
    return jnp.where(clipped, m, jnp.sqrt(jnp.where(clipped, jnp.ones_like(sq), sq)))


# ------------------------------------------------------------------------------------------
# Primitives
# ------------------------------------------------------------------------------------------


def trust_ratio(
    min_norm: float = 0.0,
    trust_coefficient: float = 1.0,
    eps: float = 0.0,
    mask: Mask = None,
) -> Primitive:
    r"""Layer-wise trust ratio (You et al. 2017, LARS; 2020, LAMB).

    .. math::
       u \leftarrow φ\, u,\qquad
       φ = c\, \frac{\max(\lVert θ\rVert, n_{\min})}{\max(\lVert u\rVert, n_{\min}) + ε}

    per leaf (c = ``trust_coefficient``, :math:`n_{\min}` = ``min_norm``), and φ = 1 where
    either norm is 0 (a leaf that is zero, or receives no update, is left as it is). Acts on a
    plain update tree and reads the params; ``mask`` (a tree of bools or a function of the
    updates, as in ``optax.masked``) selects the leaves it scales, the others pass unchanged.
    """
    _checks.check_nonnegative("min_norm", min_norm)
    _checks.check_nonnegative("trust_coefficient", trust_coefficient)
    _checks.check_nonnegative("eps", eps)

    def one(u, p):
        p_norm, u_norm = _layer_norm(p, min_norm), _layer_norm(u, min_norm)
        phi = scalar_as(trust_coefficient, p_norm) * p_norm / (u_norm + scalar_as(eps, u_norm))
        phi = jnp.where((p_norm == 0) | (u_norm == 0), jnp.ones_like(phi), phi)
        return (u * phi).astype(u.dtype)

    def update_fn(updates, state, params, count, **extra):
        del count, extra
        expect_plain(updates, "trust_ratio")
        require_params(params, "trust_ratio", like=updates)
        return _apply_mask(mask, lambda u, p: tree_map(one, u, p), updates, params), state

    return primitive(empty_init, update_fn, counted=False)


def norm_preserving_step(learning_rate: ScalarOrSchedule) -> Primitive:
    r"""Fromage's step (Bernstein et al. 2020): :math:`θ \leftarrow (θ - η_t u)/\sqrt{1+η_t^2}`.

    Emits the update :math:`-\frac{η_t}{\sqrt{1+η_t^2}} u + \big(\frac{1}{\sqrt{1+η_t^2}} -
    1\big) θ`. After a :func:`trust_ratio` step, ‖ηu‖ = η‖θ‖, and for u ⟂ θ the step would
    grow ‖θ‖ by √(1 + η²): the prefactor keeps layer norms from drifting upwards. It closes the
    chain in place of :func:`optlab.scale_by_learning_rate`.
    """
    _checks.check_learning_rate(learning_rate)

    def update_fn(updates, state, params, count, **extra):
        del extra
        expect_plain(updates, "norm_preserving_step")
        require_params(params, "norm_preserving_step", like=updates)
        lr = _checks.resolve(learning_rate, count)
        shrink = 1 / (1 + lr**2) ** 0.5
        a, b = per_dtype(lambda _: -(lr * shrink)), per_dtype(lambda _: shrink - 1)
        out = tree_map(lambda u, p: (a(u) * u + b(u) * p).astype(u.dtype), updates, params)
        return out, state

    return primitive(empty_init, update_fn, counted=callable(learning_rate))


def ema_of_sq_norm(name: str, decay: float, *, source: str = GRAD) -> Primitive:
    r"""Layer-wise second moment (NovoGrad, Ginsburg et al. 2019): one scalar per leaf.

    .. math:: ν_1 = \lVert x_1\rVert^2,\qquad ν_t = β ν_{t-1} + (1-β) \lVert x_t\rVert^2

    started at the first value rather than at 0, so no bias correction is needed. Emits
    ``name`` (a tree of 0-d arrays, which broadcast against their leaf in a combiner such as
    :func:`optlab.ratio`); the state is ``{name: tree of 0-d arrays}``.
    """
    _check_name(name)
    _check_name(source, "source")
    _checks.check_decay("decay", decay, allow_schedule=False)

    def init_fn(params):
        return {name: tree_map(lambda p: jnp.zeros([], p.dtype), params)}

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream, x = _read_source(updates, state[name], source, "ema_of_sq_norm")
        first = count == 0

        def one(g, nu):
            sq = jnp.sum(abs_sq(g)).astype(nu.dtype)
            return jnp.where(first, sq, scalar_as(decay, nu) * nu
                             + scalar_as(1 - decay, nu) * sq)

        nu = tree_map(one, x, state[name])
        return stream.add(name, nu), {name: cast_like(nu, state[name])}

    return primitive(init_fn, update_fn, counted=True)


# ------------------------------------------------------------------------------------------
# Optimizers
# ------------------------------------------------------------------------------------------


def lamb(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> Primitive:
    r"""LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning: Training BERT in
    76 minutes"): Adam's direction plus decoupled decay, rescaled per layer by a trust ratio.

    .. math::
       r_t = \frac{\hat m_t}{\sqrt{\hat v_t + ε_{root}} + ε} + λ_t θ_{t-1},\qquad
       u_t = -η_t \frac{\lVert θ_{t-1}\rVert}{\lVert r_t\rVert}\, r_t

    per leaf (ratio 1 where either norm is 0), with Adam's debiased moments m̂, v̂.
    ``mask`` selects the leaves that are decayed (all by default), as in optax.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                weight_decay=weight_decay)
    return chain(
        ema("mu", b1, debias=True),
        ema_of_square("nu", b2, debias=True),
        ratio("mu", "nu", eps=eps, eps_root=eps_root),
        decoupled_weight_decay(weight_decay, mask),
        trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: Mask = True,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> Primitive:
    r"""LARS (You et al. 2017, "Large Batch Training of Convolutional Networks").

    .. math::
       d_t = g_t + λ θ_{t-1},\qquad
       b_t = μ b_{t-1} - η_t\, c\, \frac{\lVert θ_{t-1}\rVert}{\lVert d_t\rVert + ε}\, d_t,
       \qquad u_t = b_t

    per leaf (c = ``trust_coefficient``, ratio 1 where either norm is 0); Nesterov:
    :math:`u_t = -η_t φ_t d_t + μ b_t`. As in optax, the decay is coupled (added to g) on the
    leaves ``weight_decay_mask`` selects, the trust ratio applies where ``trust_ratio_mask``
    says (exclude biases and norms this way), and the momentum accumulates learning-rate-scaled
    steps (a schedule's η_t enters each step once).
    """
    _check_args(learning_rate=learning_rate, weight_decay=weight_decay, eps=eps,
                momentum=momentum)
    return chain(
        l2_penalty(weight_decay, weight_decay_mask),
        trust_ratio(trust_coefficient=trust_coefficient, eps=eps, mask=trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
        trace("trace", momentum, nesterov=nesterov),
        select("trace"),
    )


def fromage(learning_rate: ScalarOrSchedule, min_norm: float = 1e-6) -> Primitive:
    r"""Fromage, Frobenius matched gradient descent (Bernstein et al. 2020, "On the distance
    between two neural networks and the stability of learning").

    .. math::
       θ_{t} = \frac{1}{\sqrt{1+η_t^2}}\Big(θ_{t-1} - η_t
               \frac{\lVert θ_{t-1}\rVert}{\lVert g_t\rVert}\, g_t\Big)

    per leaf, both norms clipped below at ``min_norm`` (:func:`trust_ratio` then
    :func:`norm_preserving_step`). Stateless.
    """
    _check_args(learning_rate=learning_rate)
    return chain(trust_ratio(min_norm=min_norm), norm_preserving_step(learning_rate))


def novograd(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.25,
    eps: float = 1e-6,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
) -> Primitive:
    r"""NovoGrad (Ginsburg et al. 2019, "Stochastic Gradient Methods with Layer-wise Adaptive
    Moments for Training of Deep Networks"; Li et al. 2019, Jasper).

    .. math::
       ν_t = β_2 ν_{t-1} + (1-β_2)\lVert g_t\rVert^2\ (ν_1 = \lVert g_1\rVert^2),\qquad
       m_t = β_1 m_{t-1} + \frac{g_t}{\sqrt{ν_t + ε_{root}} + ε} + λθ_{t-1},\qquad
       u_t = -η_t m_t

    with one second moment ν per leaf (layer), so the state is m plus one scalar per leaf.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                weight_decay=weight_decay)
    return chain(
        ema_of_sq_norm("nu", b2),
        ratio("g", "nu", eps=eps, eps_root=eps_root),
        decoupled_weight_decay(weight_decay),
        trace("mu", b1),
        select("mu"),
        scale_by_learning_rate(learning_rate),
    )
