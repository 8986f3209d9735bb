"""Regularizers and the learning-rate scaling that closes every optlab chain.

All act on plain update trees: coupled L2 and gradient noise go before the first accumulator
(they change the gradient the statistics see); decoupled weight decay and learning-rate
scaling go after the combiner.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.stream import (
    Mask,
    Primitive,
    empty_init,
    expect_plain,
    increment,
    per_dtype,
    primitive,
    require_params,
    tree_map,
)

__all__ = [
    "decoupled_weight_decay",
    "gradient_noise",
    "l2_penalty",
    "scale_by_learning_rate",
]


def _add_scaled_params(rate: ScalarOrSchedule, mask: Mask, who: str) -> Primitive:
    """u ← u + λ_t θ on the leaves ``mask`` selects: the body of coupled and decoupled weight
    decay. ``mask`` is a tree of bools (a prefix of the params) or a function of the params,
    as in ``optax.masked``; it is applied here so the decay shares the chain's step counter."""

    def update_fn(updates, state, params, count, **extra):
        del extra
        expect_plain(updates, who)
        if not callable(rate) and _checks._concrete_scalar(rate) == 0.0:
            return updates, state
        require_params(params, who, like=updates)
        lam = per_dtype(lambda _: _checks.resolve(rate, count))

        def decay(u, p):
            return tree_map(lambda u, p: u + lam(u) * p, u, p)

        if mask is None:
            return decay(updates, params), state
        keep = mask(updates) if callable(mask) else mask  # as optax.masked
        out = jax.tree.map(lambda k, u, p: decay(u, p) if k else u, keep, updates, params)
        return out, state

    return primitive(empty_init, update_fn, counted=callable(rate))


def decoupled_weight_decay(
    weight_decay: ScalarOrSchedule = 1e-4, mask: Mask = None
) -> Primitive:
    r"""Decoupled weight decay (Loshchilov & Hutter 2019): :math:`u \leftarrow u + λ_t θ`.

    Place it after the combiner and before :func:`scale_by_learning_rate`, so the step is
    :math:`θ \leftarrow θ - η_t(u + λ_t θ)`: the learning-rate schedule scales the decay too,
    as in ``torch.optim.AdamW`` and ``optax.adamw``. ``weight_decay`` may be a schedule;
    ``mask`` (a tree of bools or a function of the params) selects the leaves to decay.
    """
    _checks.check_nonnegative("weight_decay", weight_decay, allow_schedule=True)
    return _add_scaled_params(weight_decay, mask, "decoupled_weight_decay")


def l2_penalty(
    weight_decay: ScalarOrSchedule = 1e-4, mask: Mask = None
) -> Primitive:
    r"""Coupled L2 regularisation: :math:`g \leftarrow g + λ θ`, the gradient of
    :math:`\tfrac{λ}{2}\lVert θ\rVert^2`.

    Place it first in the chain, so every statistic sees the regularised gradient
    (``weight_decay`` of ``torch.optim.Adam`` / ``SGD`` / ``RMSprop``).
    """
    _checks.check_nonnegative("weight_decay", weight_decay, allow_schedule=True)
    return _add_scaled_params(weight_decay, mask, "l2_penalty")


class NoiseState(NamedTuple):
    key: jax.Array


def gradient_noise(
    eta: float = 0.01, gamma: float = 0.55, key: jax.Array | int = 0
) -> Primitive:
    r"""Annealed Gaussian gradient noise (Neelakantan et al. 2015).

    .. math:: g_t \leftarrow g_t + \mathcal N(0, σ_t^2),\qquad σ_t^2 = η / (1 + t)^γ

    with t = 0 at the first update; the paper uses η ∈ {0.01, 0.3, 1.0}, γ = 0.55. ``key`` is
    a JAX PRNG key (or an int seed); it is split once per step and kept in the state, so runs
    are reproducible and the noise identical to ``optax.add_noise`` with the same key.
    """
    _checks.check_nonnegative("eta", eta)
    _checks.check_nonnegative("gamma", gamma)
    _check_key(key)

    def init_fn(params):
        del params
        return NoiseState(_canonical_key(key))

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        expect_plain(updates, "gradient_noise")
        t = increment(count).astype(jnp.result_type(float))
        std = per_dtype(lambda _: jnp.sqrt(eta / t**gamma))
        key, sample_key = jax.random.split(state.key)
        noise = optax.tree.random_like(sample_key, updates, jax.random.normal)
        out = tree_map(lambda g, n: g + std(g) * n.astype(g.dtype), updates, noise)
        return out, NoiseState(key)

    return primitive(init_fn, update_fn, counted=True)


def _is_typed_key(key: Any) -> bool:
    return isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)


def _check_key(key: Any) -> None:
    """A key is a typed PRNG key, a raw uint32[2] key, or an integer seed (0-d)."""
    if _is_typed_key(key):
        return
    if isinstance(key, bool):
        raise TypeError("key must be a jax PRNG key or an int seed, got bool")
    arr = key if isinstance(key, (jax.Array, np.ndarray)) else None
    if isinstance(key, (int, np.integer)):
        return
    if arr is not None and jnp.issubdtype(arr.dtype, jnp.integer) and arr.shape in ((), (2,)):
        return
    raise TypeError(f"key must be a jax PRNG key, a raw uint32[2] key or an int seed, got "
                    f"{type(key).__name__} {key!r}")


def _canonical_key(key: Any) -> jax.Array:
    if _is_typed_key(key) or np.shape(key) == (2,):
        return key
    return jax.random.PRNGKey(key)


def scale_by_learning_rate(
    learning_rate: ScalarOrSchedule, *, flip_sign: bool = True
) -> Primitive:
    r"""Multiplies the update by :math:`-η_t` (or :math:`+η_t` with ``flip_sign=False``).

    ``learning_rate`` is a non-negative constant or a schedule of the step (0 at the first
    update). The update keeps its dtype (bfloat16 stays bfloat16). With η = 1 this is a
    negation (optimizers whose combiner already holds the step size end with it).
    """
    _checks.check_learning_rate(learning_rate)
    sign = -1.0 if flip_sign else 1.0
    unit = _checks._concrete_scalar(learning_rate) == 1.0

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        expect_plain(updates, "scale_by_learning_rate")
        if unit:  # −u as a negation, which XLA folds into θ − u (a multiply by −1 it keeps)
            return (tree_map(jnp.negative, updates) if flip_sign else updates), state
        lr = per_dtype(lambda _: sign * _checks.resolve(learning_rate, count))

        def one(u):
            out = lr(u) * u
            return out if out.dtype == u.dtype else out.astype(u.dtype)

        return tree_map(one, updates), state

    return primitive(empty_init, update_fn, counted=callable(learning_rate))
