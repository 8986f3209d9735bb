r"""Polyak-type step sizes: the loss value sets the step.

Polyak (1987)'s step size :math:`(f(θ) - f^*)/‖∇f(θ)‖^2` needs the loss, which optax passes to
``update`` as the keyword argument ``value`` (``update(grads, state, params, value=loss)``).
Every primitive here that reads it takes it exactly so, and raises a clear error when it is
missing; inside :func:`optlab.chain` (or ``optax.chain``) the keyword reaches every primitive.

Vocabulary added here:

* :func:`polyak_step_size` — scales a plain update tree by the (clipped) Polyak step;
* :func:`ema_of_loss` — a scalar EMA of the loss value, :math:`\bar f_t` (MoMo's ``barf``);
* :func:`ema_of_inner_product` — a scalar EMA of :math:`⟨g_t, θ_t⟩` (MoMo's ``gamma``);
* :func:`momentum_model_step` — MoMo's combiner: the Polyak step of the momentum model,
  optionally preconditioned by Adam's second moment, which owns the lower bound estimate.

Notation: f the loss value passed as ``value``, g gradient, θ params, t step (1 first).
"""


from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.accumulators import ema, ema_of_square
from optlab.optimizers import _check_args
from optlab.regularizers import scale_by_learning_rate
from optlab.stream import (
    GRAD,
    Primitive,
    as_stream,
    chain,
    empty_init,
    expect_plain,
    increment,
    lowest_dtype,
    primitive,
    require_params,
    scalar_as,
    tree_inner,
    tree_map,
)

__all__ = [
    "ema_of_inner_product",
    "ema_of_loss",
    "momentum_model_step",
    "momo",
    "momo_adam",
    "polyak_sgd",
    "polyak_step_size",
]

_TINY = float(jnp.finfo(float).eps)
"""optax's threshold below which a squared norm counts as zero (float64 machine epsilon)."""


def _loss_value(extra: dict[str, Any], who: str) -> Any:
    value = extra.get("value")
    if value is None:
        raise ValueError(f"{who} needs the loss: call update(grads, state, params, value=loss) "
                         "with loss, grads = jax.value_and_grad(loss_fn)(params)")
    return value


def _scalar_dtype(params: Any) -> Any:
    return lowest_dtype(params)


# ------------------------------------------------------------------------------------------
# Polyak's step size
# ------------------------------------------------------------------------------------------


def polyak_step_size(
    max_learning_rate: Any = 1.0,
    f_min: Any = 0.0,
    eps: Any = 0.0,
    variant: str = "sps",
) -> Primitive:
    r"""Scales a plain update tree u by the stochastic Polyak step (Loizou et al. 2021).

    .. math:: u \leftarrow \min\Big(\frac{f - f^*}{‖u‖^2 + ε},\ γ_{\max}\Big)\, u

    and u ← 0 where :math:`‖u‖^2 + ε` is below float64's machine epsilon. ``variant="sps+"``
    (Garrigos et al. 2023) uses :math:`(f - f^*)_+`. Reads ``value`` (the loss f).
    """
    _checks.check_choice("variant", variant, ["sps", "sps+"])

    def update_fn(updates, state, params, count, **extra):
        del params, count
        expect_plain(updates, "polyak_step_size")
        value = _loss_value(extra, "polyak_step_size")
        if not jax.tree.leaves(updates):
            return updates, state
        sq = optax.tree.norm(updates, squared=True)
        gap = jnp.asarray(value - f_min).astype(sq.dtype)
        if variant == "sps+":
            gap = jnp.maximum(gap, 0)
        step = jnp.where(sq + eps <= _TINY, 0.0, jnp.minimum(gap / (sq + eps), max_learning_rate))
        return tree_map(lambda u: (scalar_as(step, u) * u).astype(u.dtype), updates), state

    return primitive(empty_init, update_fn, counted=False)


def polyak_sgd(
    max_learning_rate: Any = 1.0,
    scaling: ScalarOrSchedule = 1.0,
    f_min: Any = 0.0,
    eps: Any = 0.0,
    variant: str = "sps",
) -> Primitive:
    r"""SGD with the stochastic Polyak step size, SPS_max (Loizou et al. 2021).

    .. math:: u_t = -\min\Big(\frac{f(θ_t) - f^*}{s_t^2‖g_t‖^2 + ε},\ γ_{\max}\Big)\, s_t\, g_t

    with :math:`s_t` = ``scaling`` (a constant or schedule), :math:`γ_{\max}` =
    ``max_learning_rate`` and :math:`f^*` = ``f_min``; for s = 1 this is Loizou et al.'s
    :math:`\min\{(f - f^*)/(‖g‖^2 + ε), γ_{\max}\}`. (As optax, the scaling is applied before
    the norm is taken, hence :math:`s_t^2`.) ``variant="sps+"`` clips the gap at 0 (Garrigos
    et al. 2023). Reads the loss: ``update(grads, state, params, value=loss)``. No state.
    """
    _checks.check_learning_rate(scaling, "scaling")
    _checks.check_nonnegative("max_learning_rate", max_learning_rate)
    _checks.check_nonnegative("eps", eps)
    _checks.check_number("f_min", f_min)
    return chain(
        scale_by_learning_rate(scaling),
        polyak_step_size(max_learning_rate, f_min, eps, variant),
    )


# ------------------------------------------------------------------------------------------
# MoMo: Polyak steps of a momentum model
# ------------------------------------------------------------------------------------------


def _scalar_ema(name: str, decay: Any, read, who: str) -> Primitive:
    """A scalar EMA :math:`a_t = β a_{t-1} + (1-β) x_t` of ``x_t = read(stream, params,
    extra)``, state ``{name: a}`` in the params' lowest dtype."""
    _checks.check_decay("decay", decay)

    def init_fn(params):
        return {name: jnp.zeros([], _scalar_dtype(params))}

    def update_fn(updates, state, params, count, **extra):
        stream = as_stream(updates, who)
        beta = _checks.resolve(decay, count)
        a = state[name]
        new = (beta * a + (1 - beta) * jnp.asarray(read(stream, params, extra), a.dtype))
        new = new.astype(a.dtype)
        return stream.add(name, new), {name: new}

    return primitive(init_fn, update_fn, counted=callable(decay))


def ema_of_loss(name: str, decay: ScalarOrSchedule) -> Primitive:
    r"""EMA of the loss value: :math:`\bar f_t = β\bar f_{t-1} + (1-β) f_t`, :math:`\bar f_0 = 0`.

    Reads ``value``; ``decay`` may be a schedule (MoMo starts with β = 0)."""
    return _scalar_ema(name, decay, lambda stream, params, extra: _loss_value(extra, "ema_of_loss"),
                       "ema_of_loss")


def ema_of_inner_product(name: str, decay: ScalarOrSchedule, *, source: str = GRAD) -> Primitive:
    r"""EMA of the inner product of a statistic with the params:
    :math:`γ_t = βγ_{t-1} + (1-β)⟨x_t, θ_t⟩` (MoMo's ``gamma``, with x = g)."""

    def read(stream, params, extra):
        require_params(params, "ema_of_inner_product")
        return tree_inner(stream[source], params)

    return _scalar_ema(name, decay, read, "ema_of_inner_product")


def momentum_model_step(
    momentum: str = "exp_avg",
    second_moment: str | None = None,
    *,
    learning_rate: ScalarOrSchedule = 1.0,
    weight_decay: Any = 0.0,
    lower_bound: Any = 0.0,
    adapt_lower_bound: bool = False,
    b1: Any = None,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    loss: str = "barf",
    inner: str = "gamma",
) -> Primitive:
    r"""MoMo's combiner (Schaipp et al. 2023): the Polyak step of the momentum model.

    With d the statistic ``momentum``, :math:`\bar f` and :math:`γ` the statistics ``loss``
    and ``inner``, α = ``learning_rate`` (at this step), λ = ``weight_decay``, c = 1 + αλ and
    :math:`h` the lower bound:

    .. math::
       τ_t = \min\Big(\frac{α}{b_t},\ \frac{\big(c(\bar f_t - b_t h - γ_t) + ⟨d_t, θ_t⟩\big)_+}
             {‖d_t‖^2_{D}}\Big),\qquad
       u_t = -\frac{αλ}{c}θ_t - τ_t D^{-1} d_t

    (the step itself: the optimizer ends here). Without ``second_moment``,
    D = 1 and :math:`b_t = 1` (MoMo); with it, :math:`D = ε + \sqrt{v_t/(1-β_2^t)}` and
    :math:`b_t = 1 - β_1^t` (MoMo-Adam, ``b1`` required). τ = 0 when :math:`‖d‖_D^2` is 0.
    With ``adapt_lower_bound`` the state's h is lowered online (the paper's MoMo*):
    :math:`h_{t+1} = \max\big((\bar f_t + ⟨d_t, θ_t⟩ - γ_t - ½τ_t‖d_t‖_D^2)/b_t,\ h_0\big)`.
    State: ``{"lb": h}``.
    """
    if second_moment is not None and b1 is None:
        raise ValueError("momentum_model_step: b1 is required with second_moment (the bias "
                         "correction 1 - b1^t)")

    def init_fn(params):
        return {"lb": jnp.asarray(lower_bound, _scalar_dtype(params))}

    def update_fn(updates, state, params, count, **extra):
        del extra
        require_params(params, "momentum_model_step")
        stream = as_stream(updates, "momentum_model_step")
        d, barf, gamma, lb = stream[momentum], stream[loss], stream[inner], state["lb"]
        t = increment(count)
        alpha = _checks.resolve(learning_rate, count)
        c = 1 + alpha * weight_decay
        if second_moment is None:
            direction, bc1 = d, 1.0
        else:
            bc2 = jnp.asarray(1 - b2**t, lb.dtype)
            bc1 = jnp.asarray(1 - b1**t, lb.dtype)
            direction = tree_map(
                lambda m, v: m / (jnp.sqrt(v / scalar_as(bc2, v)) + scalar_as(eps, v)),
                d, stream[second_moment])
        sq_norm = tree_inner(d, direction)
        iprod = tree_inner(d, params)
        if adapt_lower_bound:
            cap = c * (barf - gamma) + iprod
            lb = jnp.where(cap < c * bc1 * lb, jnp.maximum(cap / (2 * bc1 * c), lower_bound), lb)
        polyak = jnp.maximum(c * (barf - bc1 * lb - gamma) + iprod, 0.0) / sq_norm
        polyak = jnp.where(sq_norm <= _TINY, 0.0, polyak)
        tau = jnp.minimum(alpha / bc1, polyak)
        shrink = alpha * weight_decay / c

        def one(x, p):  # the signs folded in, so XLA fuses θ + u into one subtract
            return (scalar_as(-shrink, p) * p - scalar_as(tau, x) * x).astype(p.dtype)

        out = tree_map(one, direction, params)
        if adapt_lower_bound:
            lb = jnp.maximum(((barf + iprod - gamma) - 0.5 * tau * sq_norm) / bc1, lower_bound)
        return out, {"lb": jnp.asarray(lb, state["lb"].dtype)}

    return primitive(init_fn, update_fn, counted=True)


def _warm_start(beta: Any):
    """β_t = 0 at the first step, then β: an EMA that starts at its first value."""
    return lambda count: jnp.where(count == 0, 0.0, _checks.resolve(beta, count))


def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta: Any = 0.9,
    lower_bound: Any = 0.0,
    weight_decay: Any = 0.0,
    adapt_lower_bound: bool = False,
) -> Primitive:
    r"""MoMo, SGD with momentum and a Polyak step of the momentum model (Schaipp et al. 2023).

    With :math:`β_t` = 0 at t = 1 and β after (the averages start at their first value),
    :math:`c = 1 + α_tλ` and a lower bound h of the loss:

    .. math::
       d_t = β_t d_{t-1} + (1-β_t) g_t,\quad \bar f_t = β_t\bar f_{t-1} + (1-β_t) f_t,\quad
       γ_t = β_tγ_{t-1} + (1-β_t)⟨g_t, θ_t⟩,\\
       τ_t = \min\Big(α_t,\ \frac{(c(\bar f_t - h - γ_t) + ⟨d_t, θ_t⟩)_+}{‖d_t‖^2}\Big),\qquad
       u_t = -\frac{α_tλ}{c}θ_t - τ_t d_t

    α = ``learning_rate`` (large, 1 by default: it only caps the step). Reads the loss:
    ``update(grads, state, params, value=loss)``. State (optax's names): ``exp_avg`` and the
    scalars ``barf``, ``gamma``, ``lb``: 1 × params, as optax.
    """
    _check_args(learning_rate=learning_rate, beta=beta, weight_decay=weight_decay)
    _checks.check_nonnegative("weight_decay", weight_decay)  # a number, as in optax
    _checks.check_number("lower_bound", lower_bound)
    bt = _warm_start(beta)
    return chain(
        ema("exp_avg", bt),
        ema_of_loss("barf", bt),
        ema_of_inner_product("gamma", bt),
        momentum_model_step("exp_avg", learning_rate=learning_rate, weight_decay=weight_decay,
                            lower_bound=lower_bound, adapt_lower_bound=adapt_lower_bound),
    )


def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1: Any = 0.9,
    b2: Any = 0.999,
    eps: Any = 1e-8,
    lower_bound: Any = 0.0,
    weight_decay: Any = 0.0,
    adapt_lower_bound: bool = False,
) -> Primitive:
    r"""MoMo-Adam: Adam(W) with a Polyak step of the momentum model (Schaipp et al. 2023).

    With :math:`b_t = 1-β_1^t`, :math:`D_t = ε + \sqrt{v_t/(1-β_2^t)}` and :math:`c = 1 + α_tλ`:

    .. math::
       m_t = β_1 m_{t-1} + (1-β_1) g_t,\quad v_t = β_2 v_{t-1} + (1-β_2) g_t^2,\quad
       \bar f_t = β_1\bar f_{t-1} + (1-β_1) f_t,\quad γ_t = β_1γ_{t-1} + (1-β_1)⟨g_t, θ_t⟩,\\
       τ_t = \min\Big(\frac{α_t}{b_t},\
             \frac{(c(\bar f_t - b_t h - γ_t) + ⟨m_t, θ_t⟩)_+}{⟨m_t, D_t^{-1} m_t⟩}\Big),\qquad
       u_t = -\frac{α_tλ}{c}θ_t - τ_t D_t^{-1} m_t

    Reads the loss: ``update(grads, state, params, value=loss)``. State (optax's names):
    ``exp_avg``, ``exp_avg_sq`` and the scalars ``barf``, ``gamma``, ``lb``: 2 × params.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    _checks.check_nonnegative("weight_decay", weight_decay)  # a number, as in optax
    _checks.check_number("lower_bound", lower_bound)
    return chain(
        ema("exp_avg", b1),
        ema_of_square("exp_avg_sq", b2),
        ema_of_loss("barf", b1),
        ema_of_inner_product("gamma", b1),
        momentum_model_step("exp_avg", "exp_avg_sq", learning_rate=learning_rate,
                            weight_decay=weight_decay, lower_bound=lower_bound,
                            adapt_lower_bound=adapt_lower_bound, b1=b1, b2=b2, eps=eps),
    )
