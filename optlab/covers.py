"""Cover-set second moments (SM3, Anil et al. 2019): Adagrad's accumulator in sub-linear memory.

SM3 covers the coordinates of a tensor with sets :math:`S_r` — here, as in the paper's
experiments and in optax, the slices along each axis: the rows and the columns of a matrix,
the three families of fibres of a 3-d tensor — and keeps one accumulator :math:`μ(r)` per set
instead of one per coordinate. A coordinate's second moment is the smallest bound its sets
give. For a d₁ × d₂ matrix that is d₁ + d₂ numbers instead of d₁·d₂.

A vector is covered by its coordinates (the accumulator is Adagrad's) and so is a scalar.
"""


import functools
from typing import Any

import jax
import jax.numpy as jnp
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.accumulators import _check_name, ema
from optlab.combiners import ratio, select
from optlab.optimizers import chain
from optlab.regularizers import scale_by_learning_rate
from optlab.stream import (
    Primitive,
    abs_sq,
    as_stream,
    cast_like,
    check_same_structure,
    primitive,
    tree_map,
    tree_map_n,
)

__all__ = ["cover_sum_of_squares", "sm3"]


def _axis_zeros(p: Any, axis: int) -> jax.Array:
    """Zeros shaped like axis ``axis`` of ``p``, with the sharding such a reduction has."""
    others = tuple(i for i in range(p.ndim) if i != axis)
    return jnp.zeros_like(jax.eval_shape(functools.partial(jnp.sum, axis=others), p))


def _covers_init(p: Any) -> list[jax.Array]:
    """One accumulator per slice along each axis; a vector or scalar keeps one per entry."""
    if p.ndim < 2:
        return [jnp.zeros_like(p)]
    return [_axis_zeros(p, i) for i in range(p.ndim)]


def _as_axis(mu: jax.Array, ndim: int, axis: int) -> jax.Array:
    """Reshapes the accumulator of axis ``axis`` to broadcast against the leaf."""
    shape = [1] * ndim
    shape[axis] = mu.shape[0]
    return mu.reshape(shape)


def cover_sum_of_squares(name: str = "mu") -> Primitive:
    r"""SM3-II's cover-set second moment (Anil et al. 2019, Algorithm SM3-II).

    .. math::
       ν_t(i) = \min_{r:\, S_r \ni i} μ_{t-1}(r) + g_t^2(i),\qquad
       μ_t(r) = \max_{i \in S_r} ν_t(i)

    with the covers :math:`S_r` the slices along each axis of a leaf (module docstring); for a
    vector or a scalar, :math:`ν_t = μ_t = \sum_{s \le t} g_s^2` (Adagrad). Emits ν (full
    size, never stored); the state is ``{name: tree of per-leaf lists of per-axis vectors}``
    (optax's ``ScaleBySM3State.mu``).
    """
    _check_name(name)

    def init_fn(params):
        return {name: tree_map(_covers_init, params)}

    def one(g, mus):
        g2 = abs_sq(g)
        if g.ndim < 2:
            nu = mus[0].astype(g2.dtype) + g2
            return nu, [nu]
        bound = functools.reduce(jnp.minimum, [_as_axis(m, g.ndim, i) for i, m in enumerate(mus)])
        nu = g2 + bound.astype(g2.dtype)
        new = [jnp.max(nu, axis=tuple(j for j in range(g.ndim) if j != i))
               for i in range(g.ndim)]
        return nu, new

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        mus = state[name]
        stream = as_stream(updates, "cover_sum_of_squares")
        grads = stream["g"]
        expected = tree_map(lambda g: [0] * (g.ndim if g.ndim >= 2 else 1), grads)
        check_same_structure(mus, expected, "cover_sum_of_squares: the optimizer state",
                             "the updates (one accumulator per axis of each leaf)")
        nu, new = tree_map_n(one, 2, grads, mus)
        return stream.add(name, nu), {name: cast_like(new, mus)}

    return primitive(init_fn, update_fn, counted=False)


def sm3(learning_rate: ScalarOrSchedule, momentum: float | None = 0.9) -> Primitive:
    r"""SM3 (Anil et al. 2019, "Memory-Efficient Adaptive Optimization"), SM3-II with momentum.

    .. math::
       ν_t = \text{cover-set second moment of } g_t\ (\text{see } \texttt{cover\_sum\_of\_squares}),
       \qquad d_t = g_t / \sqrt{ν_t + 10^{-8}},\\
       b_t = β b_{t-1} + (1-β) d_t,\qquad u_t = -η_t b_t

    with β = ``momentum`` (``None``: no momentum, :math:`u_t = -η_t d_t`). The state is the
    per-axis accumulators (Σᵢ dᵢ numbers per leaf, optax's ``mu``) and the momentum (optax's
    ``nu``). Unlike ``optax.sm3`` (0.2.8), scalar leaves are accepted (covered by themselves).
    """
    _checks.check_learning_rate(learning_rate)
    if momentum is not None:
        _checks.check_decay("momentum", momentum, allow_schedule=False)
    return chain(
        cover_sum_of_squares("mu"),
        ratio("g", "mu", eps=0.0, eps_root=1e-8),
        ema("nu", momentum) if momentum is not None else None,
        select("nu") if momentum is not None else None,
        scale_by_learning_rate(learning_rate),
    )
