"""Coin betting: COCOB-Backprop (Orabona & Tommasi 2017), learning-rate free.

Per coordinate a bettor wagers a fraction of its wealth (the reward so far) on the sign of the
negative gradient; the statistics are the running max of |g|, the sum of |g|, the sum of −g
and the reward, each an accumulator, and :func:`coin_bet` is the combiner that places the
next point. Argument names and defaults are ``optax.contrib.cocob``'s.
"""

from typing import Any

import jax.numpy as jnp
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.optimizers import Mask, _check_args
from optlab.parameter_free import initial_params
from optlab.regularizers import l2_penalty, scale_by_learning_rate
from optlab.stream import (
    GRAD,
    Primitive,
    as_stream,
    cast_like,
    chain,
    empty_init,
    primitive,
    require_params,
    scalar_as,
    tree_map,
    zeros_like,
)

__all__ = [
    "betting_reward",
    "cocob",
    "coin_bet",
    "cumulative_sum",
    "running_max_abs",
    "sum_of_abs",
]


# ------------------------------------------------------------------------------------------
# COCOB-Backprop statistics
# ------------------------------------------------------------------------------------------


def _elementwise_accumulator(name: str, fn, init_fill: Any, who: str, source: str) -> Primitive:
    """An accumulator :math:`a_t = fn(a_{t-1}, x_t)` with state ``{name: a}``, a₀ = init_fill."""

    def init_fn(params):
        return {name: zeros_like(params, fill=init_fill)}

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream = as_stream(updates, who)
        new = tree_map(fn, state[name], stream[source])
        return stream.add(name, new), {name: cast_like(new, state[name])}

    return primitive(init_fn, update_fn, counted=False)


def running_max_abs(name: str, initial_value: Any = 0.0, *, source: str = GRAD) -> Primitive:
    r"""Running maximum of the absolute value: :math:`L_t = \max(L_{t-1}, |x_t|)`,
    :math:`L_0` = ``initial_value`` (COCOB's per-coordinate gradient scale)."""
    _checks.check_nonnegative("initial_value", initial_value)
    return _elementwise_accumulator(name, lambda a, x: jnp.maximum(a, jnp.abs(x)),
                                    initial_value, "running_max_abs", source)


def sum_of_abs(name: str, *, source: str = GRAD) -> Primitive:
    r"""Running sum of absolute values: :math:`G_t = G_{t-1} + |x_t|` (COCOB's ``subgradients``)."""
    return _elementwise_accumulator(name, lambda a, x: a + jnp.abs(x), 0.0, "sum_of_abs",
                                    source)


def cumulative_sum(name: str, *, negate: bool = False, source: str = GRAD) -> Primitive:
    r"""Running sum :math:`C_t = C_{t-1} + x_t` (``negate``: :math:`C_{t-1} - x_t`, COCOB's sum
    of negative gradients ``cumulative_gradients``)."""
    fn = (lambda a, x: a - x) if negate else (lambda a, x: a + x)
    return _elementwise_accumulator(name, fn, 0.0, "cumulative_sum", source)


def betting_reward(name: str = "reward", anchor: str = "init_particles") -> Primitive:
    r"""A coin bettor's per-coordinate reward (Orabona & Tommasi 2017, Algorithm 2):

    .. math:: R_t = \max\big(R_{t-1} - g_t(θ_t - θ_0),\ 0\big),\qquad R_0 = 0

    with θ₀ the statistic ``anchor`` (:func:`initial_params`). State ``{name: R}``.
    """

    def init_fn(params):
        return {name: zeros_like(params)}

    def update_fn(updates, state, params, count, **extra):
        del count, extra
        require_params(params, "betting_reward")
        stream = as_stream(updates, "betting_reward")
        reward = tree_map(lambda r, g, p, p0: jnp.maximum(r - g * (p - p0), 0),
                          state[name], stream.grad, params, stream[anchor])
        return stream.add(name, reward), {name: cast_like(reward, state[name])}

    return primitive(init_fn, update_fn, counted=False)


def coin_bet(
    alpha: Any = 100.0,
    *,
    anchor: str = "init_particles",
    sum_of_negative_gradients: str = "cumulative_gradients",
    scale: str = "scale",
    sum_of_abs_gradients: str = "subgradients",
    reward: str = "reward",
) -> Primitive:
    r"""Combiner: COCOB-Backprop's bet (Orabona & Tommasi 2017, Algorithm 2).

    .. math:: θ_{t+1} = θ_0 + \frac{C_t}{L_t \max(G_t + L_t,\ α L_t)}\,(L_t + R_t)

    with C the sum of negative gradients, L the running max of |g|, G the sum of |g| and R the
    reward. Returns the displacement :math:`θ_{t+1} - θ_t` itself (a new point, not a
    direction), so it closes the chain.
    """

    def update_fn(updates, state, params, count, **extra):
        del count, extra
        require_params(params, "coin_bet")
        stream = as_stream(updates, "coin_bet")

        def one(p, p0, c, lmax, gsum, r):
            bet = c / (lmax * jnp.maximum(gsum + lmax, scalar_as(alpha, lmax) * lmax))
            return (p0 + bet * (lmax + r) - p).astype(p.dtype)

        return tree_map(one, params, stream[anchor], stream[sum_of_negative_gradients],
                        stream[scale], stream[sum_of_abs_gradients], stream[reward]), state

    return primitive(empty_init, update_fn, counted=False)


def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha: Any = 100.0,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    mask: Mask = None,
) -> Primitive:
    r"""COCOB-Backprop, continuous coin betting (Orabona & Tommasi 2017, Algorithm 2).

    Per coordinate, on :math:`\tilde g_t = η_t(g_t + λθ_t)`:

    .. math::
       L_t = \max(L_{t-1}, |\tilde g_t|),\quad G_t = G_{t-1} + |\tilde g_t|,\quad
       C_t = C_{t-1} - \tilde g_t,\quad R_t = \max(R_{t-1} - \tilde g_t(θ_t - θ_0), 0),\\
       θ_{t+1} = θ_0 + \frac{C_t}{L_t \max(G_t + L_t, αL_t)}(L_t + R_t)

    with :math:`L_0 = ε`. η (``learning_rate``) only rescales the gradients (optax's
    semantics); ``weight_decay`` is coupled L2 on the leaves ``mask`` selects. State (optax's
    names): ``init_particles``, ``cumulative_gradients``, ``scale``, ``subgradients``,
    ``reward``: 5 × params, as optax.

    Coin betting chooses the next *point*, not a direction: the last primitive,
    :func:`coin_bet`, returns :math:`θ_{t+1} - θ_t`, so the chain ends there (a transform
    after it would move the iterate off the bettor's point, and the reward, which reads
    :math:`θ_t - θ_0`, would no longer be the bettor's).
    """
    _check_args(learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    _checks.check_positive("alpha", alpha)
    return chain(
        l2_penalty(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        initial_params("init_particles"),
        cumulative_sum("cumulative_gradients", negate=True),
        running_max_abs("scale", initial_value=eps),
        sum_of_abs("subgradients"),
        betting_reward("reward", anchor="init_particles"),
        coin_bet(alpha, anchor="init_particles"),
    )
