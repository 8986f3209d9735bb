r"""Adafactor's factored second moment (Shazeer & Stern 2018): an accumulator that stores a
matrix's second moment as its row and column means (optax's ``v_row`` / ``v_col`` / ``v``
state) and emits their rank-1 reconstruction.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optlab import _checks
from optlab.accumulators import _check_name, _read_source
from optlab.stream import GRAD, Primitive, abs_sq, primitive, tree_map

__all__ = ["FactoredState", "factored_ema_of_square"]


class FactoredState(NamedTuple):
    """Row / column statistics for factored leaves, full statistic ``v`` for the others.

    Unused entries are shape-(1,) placeholders (as in optax), so the three trees keep the
    structure of the params.
    """

    v_row: Any
    v_col: Any
    v: Any


class _Factored:
    """Per-leaf result of the factored update; not a pytree, so tree maps treat it as a leaf."""

    def __init__(self, v_hat, row, col, v):
        self.v_hat, self.row, self.col, self.v = v_hat, row, col, v


def _factored_dims(shape: tuple[int, ...], factored: bool, min_dim: int):
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim:
        return None
    return int(order[-2]), int(order[-1])


def _zeros_without_axis(p: Any, axis: int) -> jax.Array:
    """Zeros shaped like ``p`` without ``axis``, with the sharding such a reduction has."""
    return jnp.zeros_like(jax.eval_shape(lambda x: jnp.sum(x, axis=axis), p))


def factored_ema_of_square(
    name: str,
    decay_rate: float = 0.8,
    *,
    step_offset: int = 0,
    min_dim_size_to_factor: int = 128,
    eps: float = 1e-30,
    factored: bool = True,
) -> Primitive:
    r"""Factored second moment of Adafactor (Shazeer & Stern 2018).

    With :math:`\hat β_t = 1 - t^{-c}` (c = ``decay_rate``) and :math:`G^2_ε = G^2 + ε_1`:

    .. math::
       R_t = \hat β_t R_{t-1} + (1-\hat β_t)\,\mathrm{mean}_{cols}(G^2_ε),\quad
       C_t = \hat β_t C_{t-1} + (1-\hat β_t)\,\mathrm{mean}_{rows}(G^2_ε),\quad
       \hat V_t = R_t C_t / \mathrm{mean}(R_t)

    over the two largest axes of leaves whose second-largest axis has at least
    ``min_dim_size_to_factor`` entries; other leaves keep a full EMA of :math:`G^2_ε`. Emits
    :math:`\hat V_t` (memory: only R and C are stored).
    """
    _check_name(name)
    _checks.check_number("decay_rate", decay_rate, low=0.0)
    _checks.check_int("min_dim_size_to_factor", min_dim_size_to_factor, low=1)
    _checks.check_nonnegative("eps", eps)

    def dims_of(p):
        return _factored_dims(np.shape(p), factored, min_dim_size_to_factor)

    def init_fn(params):
        def placeholder(p):
            return jnp.zeros((1,), p.dtype)

        def rows(p):
            dims = dims_of(p)
            return placeholder(p) if dims is None else _zeros_without_axis(p, dims[1])

        def cols(p):
            dims = dims_of(p)
            return placeholder(p) if dims is None else _zeros_without_axis(p, dims[0])

        def full(p):
            return jnp.zeros_like(p) if dims_of(p) is None else placeholder(p)

        return FactoredState(tree_map(rows, params), tree_map(cols, params),
                             tree_map(full, params))

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream, grads = _read_source(updates, state.v, GRAD, "factored_ema_of_square")
        # β̂ is evaluated in float32, as optax does, so trajectories match optax's exactly.
        t = jnp.asarray(count - step_offset + 1, jnp.float32)
        beta = 1.0 - t ** (-decay_rate)

        def one(g, r, c, v) -> _Factored:
            dims = dims_of(g)
            g2 = abs_sq(g) + eps
            if dims is None:
                v = (beta * v + (1.0 - beta) * g2).astype(v.dtype)
                return _Factored(v, r, c, v)
            d1, d0 = dims
            r = (beta * r + (1.0 - beta) * jnp.mean(g2, axis=d0)).astype(r.dtype)
            c = (beta * c + (1.0 - beta) * jnp.mean(g2, axis=d1)).astype(c.dtype)
            reduced_d1 = d1 - 1 if d1 > d0 else d1
            row = r / jnp.mean(r, axis=reduced_d1, keepdims=True)
            v_hat = jnp.expand_dims(row, d0) * jnp.expand_dims(c, d1)
            return _Factored(v_hat, r, c, v)

        out = tree_map(one, grads, state.v_row, state.v_col, state.v)
        pick = lambda field: tree_map(lambda o: getattr(o, field), out)  # noqa: E731
        new_state = FactoredState(pick("row"), pick("col"), pick("v"))
        return stream.add(name, pick("v_hat")), new_state

    return primitive(init_fn, update_fn, counted=True)
