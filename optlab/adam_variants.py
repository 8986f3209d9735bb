"""Adam's later variants, each a short chain: AdaBelief, AdaMaxW, NAdamW, Yogi, Adan, ADOPT,
AdEMAMix (and its simplified form), ACProp, and MADGRAD (dual averaging).

Argument names and defaults are optax's (``optax.X`` or ``optax.contrib.X``); notation as in
:mod:`optlab.optimizers`: g gradient, t step (1 first), η learning rate, λ weight decay, every
update applied as θ ← θ + u.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.accumulators import (
    additive_ema_of_square,
    debias,
    difference,
    ema,
    ema_of_abs_max,
    ema_of_square,
    ema_of_squared_deviation,
    mix,
    normalized,
    sum_of_squares,
    trace,
    weighted_sum,
)
from optlab.combiners import dual_averaging, ratio, select
from optlab.optimizers import Mask, _check_args, _positive, adamw, chain
from optlab.regularizers import decoupled_weight_decay, l2_penalty, scale_by_learning_rate
from optlab.stream import Primitive

__all__ = [
    "acprop",
    "adabelief",
    "adamaxw",
    "adan",
    "ademamix",
    "ademamix_alpha_warmup",
    "ademamix_b3_warmup",
    "adopt",
    "madgrad",
    "nadamw",
    "simplified_ademamix",
    "yogi",
]


def adabelief(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> Primitive:
    r"""AdaBelief (Zhuang et al. 2020): Adam whose second moment is the "belief", the EMA of
    the squared deviation of the gradient from its prediction m.

    .. math::
       m_t = β_1 m_{t-1} + (1-β_1) g_t,\quad
       s_t = β_2 s_{t-1} + (1-β_2)(g_t - m_t)^2 + ε_{root},\\
       u_t = -η\,\hat m_t / (\sqrt{\hat s_t} + ε)

    with :math:`\hat m_t = m_t/(1-β_1^t)`, :math:`\hat s_t = s_t/(1-β_2^t)`; ``nesterov``
    replaces :math:`\hat m_t` by Dozat's look-ahead, as in :func:`adam`. Defaults are optax's
    (the paper uses ε = 1e-8 and no :math:`ε_{root}`).
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return chain(
        ema("mu", b1),
        ema_of_squared_deviation("nu", b2, center="mu", eps_root=eps_root, debias=True),
        debias("mu", b1, nesterov=nesterov),
        ratio("mu", "nu", eps=eps),
        scale_by_learning_rate(learning_rate),
    )


def adamaxw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask = None,
) -> Primitive:
    r"""AdaMax with decoupled weight decay (Kingma & Ba 2015, §7.1; Loshchilov & Hutter 2019).

    :math:`u_t = \max(β_2 u_{t-1}, |g_t| + ε)`,
    :math:`Δ_t = -η_t\,(\hat m_t / u_t + λθ_{t-1})`.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    return chain(
        ema("mu", b1, debias=True),
        ema_of_abs_max("nu", b2, eps=eps),
        ratio("mu", "nu", eps=0.0, sqrt=False, positive=_positive(eps)),
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def nadamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask = None,
    *,
    nesterov: bool = True,
) -> Primitive:
    r"""NAdamW: NAdam (Dozat 2016) with decoupled weight decay (Loshchilov & Hutter 2019).

    :math:`\hat m_t = β_1 m_t/(1-β_1^{t+1}) + (1-β_1)g_t/(1-β_1^t)`,
    :math:`u_t = -η_t\big(\hat m_t/(\sqrt{\hat v_t + ε_{root}} + ε) + λθ_{t-1}\big)`:
    :func:`adamw` with ``nesterov=True``, as optax defines it.
    """
    return adamw(learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask,
                 nesterov=nesterov)


def yogi(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
) -> Primitive:
    r"""Yogi (Zaheer et al. 2018): Adam with an additive second moment.

    .. math::
       m_t = β_1 m_{t-1} + (1-β_1) g_t,\quad
       v_t = v_{t-1} - (1-β_2)\,\mathrm{sign}(v_{t-1} - g_t^2)\, g_t^2,\quad
       u_t = -η\,\hat m_t / (\sqrt{\hat v_t} + ε)

    with bias-corrected :math:`\hat m, \hat v` and :math:`m_0 = v_0 = 10^{-6}`, as in optax.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)
    return chain(
        ema("mu", b1, debias=True, initial_value=1e-6),
        additive_ema_of_square("nu", b2, debias=True, initial_value=1e-6),
        ratio("mu", "nu", eps=eps),
        scale_by_learning_rate(learning_rate),
    )


def adan(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.98,
    b2: float = 0.92,
    b3: float = 0.99,
    eps: float = 1e-8,
    eps_root: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    diff_coef: float | None = None,
) -> Primitive:
    r"""Adan, adaptive Nesterov momentum (Xie et al. 2022).

    .. math::
       Δg_t = g_t - g_{t-1}\ (Δg_1 = 0),\quad m_t = β_1 m_{t-1} + (1-β_1) g_t,\quad
       v_t = β_2 v_{t-1} + (1-β_2) Δg_t,\\
       n_t = β_3 n_{t-1} + (1-β_3)(g_t + c\,Δg_t)^2,\quad
       u_t = -η_t\Big(\frac{\hat m_t + c\,\hat v_t}{\sqrt{\hat n_t + ε_{root}} + ε}
             + λθ_{t-1}\Big)

    with bias-corrected :math:`\hat m, \hat v, \hat n` and c = ``diff_coef``. The default
    c = 1 − β₂ is optax's; the paper's Algorithm 1 and the authors' code (sail-sg/Adan) use
    c = β₂ in this β convention (0.92, not 0.08) — pass ``diff_coef=b2`` for it. The weight
    decay is optax's decoupled one, not the paper's proximal :math:`θ/(1+λη)`. The state is
    m, v, n and the previous gradient: 4 × params.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                weight_decay=weight_decay)
    _checks.check_decay("b3", b3, allow_schedule=False)
    if diff_coef is not None:
        _checks.check_nonnegative("diff_coef", diff_coef)
    c = 1 - b2 if diff_coef is None else diff_coef
    return chain(
        difference("diff"),
        ema("m", b1, debias=True),
        ema("v", b2, source="diff", debias=True),
        mix("g_nesterov", "g", "diff", c),
        ema_of_square("n", b3, source="g_nesterov", debias=True),
        mix("m_nesterov", "m", "v", c),
        ratio("m_nesterov", "n", eps=eps, eps_root=eps_root),
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def _after_first_step(value: Any, first: float) -> Callable[[jax.Array], jax.Array]:
    """A decay that is ``first`` at the first update (step 0) and ``value`` afterwards."""
    return lambda count: jax.numpy.where(count > 0, value, first)


def adopt(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.9999,
    eps: float = 1e-6,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: ScalarOrSchedule = lambda x: x**0.25,
) -> Primitive:
    r"""ADOPT (Taniguchi et al. 2024): momentum of gradients normalised by the *previous*
    second moment, which makes Adam-type updates converge for any β₂.

    .. math::
       v_1 = g_1^2,\ m_1 = 0 \text{ (the first step only initialises)};\qquad
       x_t = \mathrm{clip}\big(g_t / \max(\sqrt{v_{t-1}}, ε),\ ±c_t\big),\\
       m_t = β_1 m_{t-1} + (1-β_1)x_t,\quad u_t = -η\, m_t,\quad
       v_t = β_2 v_{t-1} + (1-β_2) g_t^2

    with :math:`c_t` = ``clip_value_fn(t-1)`` (:math:`(t-1)^{1/4}`) when ``use_clipping``;
    ``nesterov`` uses :math:`β_1 m_t + (1-β_1) x_t`. The first step is expressed as
    decays β₂ = 0 and β₁ = 1 at t = 1. ``clip_value_fn`` may also be a number (a constant
    clip), so that ``optax.inject_hyperparams``, which evaluates callables at the step and
    passes the value, works (optax's own ``adopt`` fails there).
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)
    if use_clipping:
        _checks.check_nonnegative("clip_value_fn", clip_value_fn, allow_schedule=True)
    return chain(
        ema_of_square("nu", _after_first_step(b2, 0.0), emit="previous"),
        normalized("x", "nu", eps=eps, clip=clip_value_fn if use_clipping else None),
        ema("mu", _after_first_step(b1, 1.0), source="x", nesterov=nesterov, dtype=mu_dtype),
        select("mu"),
        scale_by_learning_rate(learning_rate),
    )


def ademamix(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> Primitive:
    r"""AdEMAMix (Pagliardini et al. 2024): Adam with a slow momentum mixed in.

    .. math::
       m_{1,t} = β_1 m_{1,t-1} + (1-β_1) g_t,\quad
       m_{2,t} = β_{3,t} m_{2,t-1} + (1-β_{3,t}) g_t,\quad
       ν_t = β_2 ν_{t-1} + (1-β_2) g_t^2,\\
       u_t = -η_t\Big(\frac{\hat m_{1,t} + α_t m_{2,t}}{\sqrt{\hat ν_t + ε_{root}} + ε}
             + λθ_{t-1}\Big)

    with :math:`\hat m_1, \hat ν` bias-corrected and the slow :math:`m_2` not. ``b3`` and
    ``alpha`` may be schedules of the step (0 first), e.g. the paper's warm-ups
    :func:`ademamix_alpha_warmup` and :func:`ademamix_b3_warmup`. ``mu_dtype`` is the dtype
    of all three averages, as in optax.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                weight_decay=weight_decay)
    _checks.check_decay("b3", b3)
    _checks.check_nonnegative("alpha", alpha, allow_schedule=True)
    return chain(
        ema("m1", b1, debias=True, dtype=mu_dtype),
        ema("m2", b3, dtype=mu_dtype),
        ema_of_square("nu", b2, debias=True, dtype=mu_dtype),
        mix("m", "m1", "m2", alpha),
        ratio("m", "nu", eps=eps, eps_root=eps_root),
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def _as_float(count: jax.Array) -> jax.Array:
    """The step count in the default float dtype (float64 under x64)."""
    return jax.numpy.asarray(count, jax.numpy.result_type(float))


def ademamix_alpha_warmup(alpha: float, warmup: int) -> Callable[[jax.Array], jax.Array]:
    r"""AdEMAMix's α schedule (Pagliardini et al. 2024, Alg. 1): :math:`α_t = \min(tα/T_α, α)`,
    t the step (0 first), :math:`T_α` = ``warmup``."""
    _checks.check_nonnegative("alpha", alpha)
    _checks.check_int("warmup", warmup, low=1)
    return lambda count: jax.numpy.minimum(_as_float(count) * alpha / warmup, alpha)


def ademamix_b3_warmup(b1: float, b3: float, warmup: int) -> Callable[[jax.Array], jax.Array]:
    r"""AdEMAMix's β₃ schedule (Pagliardini et al. 2024, Alg. 1): the half-life grows
    linearly from that of β₁ to that of β₃ over :math:`T` = ``warmup`` steps,

    .. math:: β_{3,t} = \min\Big(\exp\Big(\frac{\ln β_1 \ln β_3}
              {(1 - t/T)\ln β_3 + (t/T)\ln β_1}\Big),\ β_3\Big)

    t the step (0 first)."""
    for name, value in (("b1", b1), ("b3", b3)):
        _checks.check_number(name, value, low=0.0, high=1.0, low_inclusive=False,
                             high_inclusive=False)
    _checks.check_int("warmup", warmup, low=1)
    log_b1, log_b3 = math.log(b1), math.log(b3)

    def schedule(count: jax.Array) -> jax.Array:
        frac = jax.numpy.minimum(_as_float(count) / warmup, 1.0)
        return jax.numpy.minimum(
            jax.numpy.exp(log_b1 * log_b3 / ((1 - frac) * log_b3 + frac * log_b1)), b3)

    return schedule


def simplified_ademamix(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.99,
    b2: float = 0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> Primitive:
    r"""Simplified AdEMAMix (Morwani et al. 2025): one undamped momentum plus α·g.

    .. math::
       m_t = β_1 m_{t-1} + g_t,\quad n_t = β_2 n_{t-1} + (1-β_2) g_t^2,\quad
       u_t = -η_t\Big(\frac{m_t + α_t g_t}{\sqrt{\hat n_t + ε_{root}} + ε} + λθ_{t-1}\Big)

    with :math:`\hat n_t = n_t/(1-β_2^t)`; ``alpha`` may be a schedule of the step.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                weight_decay=weight_decay)
    _checks.check_nonnegative("alpha", alpha, allow_schedule=True)
    return chain(
        trace("m", b1),
        ema_of_square("n", b2, debias=True),
        mix("m_g", "m", "g", alpha),
        ratio("m_g", "n", eps=eps, eps_root=eps_root),
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def acprop(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
) -> Primitive:
    r"""ACProp (Zhuang et al. 2021): centred second moment and asynchronous update — the step
    at t is scaled by the belief up to t − 1 only. This is ``optax.contrib.acprop``'s variant
    (numerator :math:`g_t`, centred on :math:`m_{t-1}`), which may differ from the paper's
    Algorithm 2 (momentum numerator, centred on :math:`m_t`); it is what optax users run.

    .. math::
       s_t = β_2 s_{t-1} + (1-β_2)(g_t - m_{t-1})^2 + ε_{root},\quad
       m_t = β_1 m_{t-1} + (1-β_1) g_t,\\
       u_t = -η_t\Big(\frac{g_t}{\sqrt{\hat s_{t-1}} + ε} + λθ_{t-1}\Big),\quad
       \hat s_{t-1} = s_{t-1}/(1-β_2^{t-1}),\ \hat s_0 = 1
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
                weight_decay=weight_decay)
    return chain(
        ema("mu", b1, emit="previous"),
        ema_of_squared_deviation("nu", b2, center="mu", eps_root=eps_root, debias=True,
                                 emit="previous"),
        ratio("g", "nu", eps=eps),
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def madgrad(
    learning_rate: ScalarOrSchedule,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    eps: float = 1e-6,
) -> Primitive:
    r"""MADGRAD (Defazio & Jelassi 2021): momentumised, adaptive dual averaging.

    .. math::
       λ_t = (η_t + ε)\sqrt t,\quad s_t = s_{t-1} + λ_t g_t,\quad
       ν_t = ν_{t-1} + λ_t g_t^2,\\
       z_t = θ_0 - \frac{s_t}{ν_t^{1/3} + ε},\quad
       θ_{t+1} = (1-c)\, z_t + c\, θ_t

    with c = ``momentum`` and coupled L2 ``weight_decay`` added to g first (as optax). Dual
    averaging is not a function of the current gradient alone: the iterate is rebuilt each
    step from the weighted sums and the initial point θ₀. So the chain accumulates the sums
    (the learning rate enters through their weight λ_t, not as a final scaling) and
    :func:`optlab.combiners.dual_averaging` returns the step :math:`θ_{t+1} - θ_t`; it keeps
    θ₀ and needs ``params`` in ``update``. The state is s, ν and θ₀: 3 × params, as optax.
    """
    _check_args(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay,
                eps=eps)

    def weight(count: jax.Array) -> jax.Array:
        lr = _checks.resolve(learning_rate, count)
        return (lr + eps) * jax.numpy.sqrt(count + 1)

    return chain(
        l2_penalty(weight_decay),
        weighted_sum("s", weight),
        sum_of_squares("grad_sum_sq", weight=weight),
        dual_averaging("s", "grad_sum_sq", momentum=momentum, eps=eps),
    )
