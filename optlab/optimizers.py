"""The optimizer zoo: each optimizer is a short chain of optlab primitives.

Where optax has an optimizer of the same name, the argument names and defaults are optax's, so
``optlab.X(**kw)`` is a drop-in for ``optax.X(**kw)``; extra keyword arguments select the
PyTorch convention where the two libraries differ. Notation: g gradient, t step (1 first),
η learning rate (constant or schedule), λ weight decay; every update is applied as θ ← θ + u.
"""

import math
from collections.abc import Callable
from typing import Any

import jax
import optax
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
    factored_ema_of_square,
    mix,
    nadam_momentum,
    normalized,
    running_max,
    sum_of_squares,
    trace,
    weighted_sum,
)
from optlab.combiners import (
    bounded_ratio,
    dual_averaging,
    ratio,
    rectified_ratio,
    rms_ratio,
    select,
    sign_agreement,
    sign_of,
)
from optlab.regularizers import (
    decoupled_weight_decay,
    gradient_noise,
    l2_penalty,
    scale_by_learning_rate,
)
from optlab.stream import Primitive
from optlab.stream import chain as _chain

Mask = Any | Callable[[Any], Any] | None


def chain(*transforms: optax.GradientTransformation | None) -> Primitive:
    """:func:`optlab.chain` of the given transforms, skipping ``None`` (an unused option)."""
    return _chain(*(t for t in transforms if t is not None))

__all__ = [
    "acprop",
    "adabelief",
    "adabound",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "adan",
    "addsign",
    "ademamix",
    "ademamix_alpha_warmup",
    "ademamix_b3_warmup",
    "adopt",
    "amsbound",
    "amsgrad",
    "lion",
    "madgrad",
    "nadam",
    "nadamw",
    "noisy_sgd",
    "powersign",
    "radam",
    "rmsprop",
    "sgd",
    "sgdw",
    "sign_sgd",
    "signum",
    "simplified_ademamix",
    "yogi",
]


_DECAYS = {"b1", "b2", "b3", "beta", "rho", "decay", "momentum"}
_NONNEGATIVE = {"eps", "eps_root", "weight_decay", "initial_accumulator_value", "initial_scale",
                "eta", "gamma", "final_lr", "alpha", "momentum_decay", "weight_decay_rate"}


def _check_args(**args: Any) -> None:
    """Validates an optimizer's own arguments, so errors name them (b1, rho, ...) rather than
    the primitive's argument they are passed to."""
    for name, value in args.items():
        if value is None:
            continue
        if name == "learning_rate":
            _checks.check_learning_rate(value)
        elif name in _DECAYS:
            # b1, b2, rho feed bias corrections or interpolations that need constants.
            _checks.check_decay(name, value, allow_schedule=name not in {"b1", "b2", "rho"})
        elif name in _NONNEGATIVE:
            _checks.check_nonnegative(name, value, allow_schedule=name.startswith("weight"))


# ------------------------------------------------------------------------------------------
# SGD family
# ------------------------------------------------------------------------------------------


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: float | None = None,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
) -> Primitive:
    r"""SGD, with optional heavy-ball or Nesterov momentum μ (Polyak 1964; Sutskever et al. 2013).

    :math:`m_t = g_t + μ m_{t-1}`; :math:`u_t = -η m_t` (Nesterov: :math:`-η(g_t + μ m_t)`).
    Same trajectory as ``torch.optim.SGD(momentum, nesterov)`` with ``dampening=0``.
    """
    _check_args(learning_rate=learning_rate, momentum=momentum)
    if momentum is None:
        return chain(scale_by_learning_rate(learning_rate))
    return chain(
        trace("trace", momentum, nesterov=nesterov, dtype=accumulator_dtype),
        select("trace"),
        scale_by_learning_rate(learning_rate),
    )


def sgdw(
    learning_rate: ScalarOrSchedule,
    momentum: float | None = 0.9,
    weight_decay: ScalarOrSchedule = 5e-4,
    nesterov: bool = False,
    mask: Mask = None,
) -> Primitive:
    r"""SGD with decoupled weight decay, SGDW (Loshchilov & Hutter 2019).

    :math:`m_t = g_t + μ m_{t-1}`, :math:`u_t = -η_t (m_t + λ θ_{t-1})`: the decay is not
    fed through the momentum, and the learning-rate schedule scales both terms. (The paper
    writes the decay as :math:`η_t λ'` with :math:`λ' = α λ` for base learning rate α.)
    """
    _check_args(learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)
    return chain(
        trace("trace", momentum, nesterov=nesterov) if momentum is not None else None,
        select("trace") if momentum is not None else None,
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: float = 0.01,
    gamma: float = 0.55,
    key: jax.Array | int = 0,
) -> Primitive:
    r"""SGD on gradients with annealed Gaussian noise (Neelakantan et al. 2015).

    :math:`u_t = -η(g_t + ε_t)`, :math:`ε_t \sim \mathcal N(0, \mathrm{eta}/(1+t)^γ)`.
    """
    _check_args(learning_rate=learning_rate, eta=eta, gamma=gamma)
    return chain(gradient_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))


def sign_sgd(learning_rate: ScalarOrSchedule) -> Primitive:
    r"""signSGD (Bernstein et al. 2018): :math:`u_t = -η\,\mathrm{sign}(g_t)`."""
    return chain(sign_of("g"), scale_by_learning_rate(learning_rate))


def signum(
    learning_rate: ScalarOrSchedule, beta: float = 0.9, accumulator_dtype: Any = None
) -> Primitive:
    r"""Signum (Bernstein et al. 2018): :math:`m_t = βm_{t-1} + (1-β)g_t`,
    :math:`u_t = -η\,\mathrm{sign}(m_t)`."""
    _check_args(learning_rate=learning_rate)
    return chain(ema("mu", beta, dtype=accumulator_dtype), sign_of("mu"),
                 scale_by_learning_rate(learning_rate))


# ------------------------------------------------------------------------------------------
# Adaptive per-coordinate methods
# ------------------------------------------------------------------------------------------


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    *,
    eps_in_sqrt: bool = True,
) -> Primitive:
    r"""Adagrad (Duchi et al. 2011).

    :math:`v_t = v_0 + \sum_{i \le t} g_i^2`; :math:`u_t = -η g_t/\sqrt{v_t + ε}` (optax), or
    with ``eps_in_sqrt=False`` :math:`-η g_t/(\sqrt{v_t} + ε)` (PyTorch; use
    ``initial_accumulator_value=0, eps=1e-10`` for ``torch.optim.Adagrad``'s defaults).
    """
    _check_args(learning_rate=learning_rate, initial_accumulator_value=initial_accumulator_value,
        eps=eps)
    return chain(
        sum_of_squares("sum_of_squares", initial_accumulator_value),
        ratio("g", "sum_of_squares", eps=0.0, eps_root=eps) if eps_in_sqrt
        else ratio("g", "sum_of_squares", eps=eps),
        scale_by_learning_rate(learning_rate),
    )


def adadelta(
    learning_rate: ScalarOrSchedule = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: ScalarOrSchedule = 0.0,
    weight_decay_mask: Mask = None,
) -> Primitive:
    r"""Adadelta (Zeiler 2012).

    .. math::
       E[g^2]_t = ρE[g^2]_{t-1} + (1-ρ)g_t^2,\quad
       Δ_t = \frac{\sqrt{E[Δ^2]_{t-1}+ε}}{\sqrt{E[g^2]_t+ε}} g_t,\quad
       E[Δ^2]_t = ρE[Δ^2]_{t-1} + (1-ρ)Δ_t^2,\quad u_t = -ηΔ_t

    ``weight_decay`` is coupled L2 (added to g), as in optax and PyTorch. Unlike
    ``optax.adadelta()``, whose default ``learning_rate=None`` steps *up* the gradient, the
    default here is η = 1 (Zeiler's method; ``torch.optim.Adadelta``'s default).
    """
    _check_args(learning_rate=learning_rate, rho=rho, eps=eps, weight_decay=weight_decay)
    if learning_rate is None:
        raise ValueError("learning_rate must be a non-negative number or a schedule, got None "
                         "(optax's None steps uphill); Zeiler's Adadelta uses 1.0")
    return chain(
        l2_penalty(weight_decay, weight_decay_mask),
        ema_of_square("e_g", rho),
        rms_ratio("g", "e_g", rho=rho, eps=eps),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> Primitive:
    r"""RMSprop (Tieleman & Hinton 2012), optionally centered (Graves 2013) and with momentum.

    :math:`v_t = ρv_{t-1} + (1-ρ)g_t^2` (centered: also :math:`\bar g_t = ρ\bar g_{t-1} +
    (1-ρ)g_t`, and v is replaced by :math:`v - \bar g^2`); :math:`d_t = g_t/\sqrt{v_t + ε}`, or
    :math:`g_t/(\sqrt{v_t}+ε)` with ``eps_in_sqrt=False`` (PyTorch); with momentum μ,
    :math:`b_t = μ b_{t-1} + η d_t`, :math:`u_t = -b_t`, else :math:`u_t = -η d_t`.
    ``torch.optim.RMSprop`` is ``decay=0.99, eps_in_sqrt=False``.
    """
    _check_args(learning_rate=learning_rate, decay=decay, eps=eps, initial_scale=initial_scale,
        momentum=momentum)
    eps_kw = {"eps": 0.0, "eps_root": eps} if eps_in_sqrt else {"eps": eps}
    return chain(
        ema("mu", decay, debias=bias_correction) if centered else None,
        ema_of_square("nu", decay, debias=bias_correction, initial_value=initial_scale),
        ratio("g", "nu", center="mu" if centered else None, **eps_kw),
        scale_by_learning_rate(learning_rate),
        trace("trace", momentum, nesterov=nesterov) if momentum is not None else None,
        select("trace") if momentum is not None else None,
    )


# ------------------------------------------------------------------------------------------
# Adam family
# ------------------------------------------------------------------------------------------


def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = False,
) -> Primitive:
    r"""Adam (Kingma & Ba 2015).

    .. math::
       m_t = β_1 m_{t-1} + (1-β_1) g_t,\quad v_t = β_2 v_{t-1} + (1-β_2) g_t^2,\\
       \hat m_t = m_t/(1-β_1^t),\quad \hat v_t = v_t/(1-β_2^t),\quad
       u_t = -η\,\hat m_t / (\sqrt{\hat v_t + ε_{root}} + ε)

    ``nesterov=True`` is NAdam in optax's form (Dozat 2016). Identical to
    ``torch.optim.Adam`` for the same arguments.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return chain(
        ema("mu", b1, debias=True, nesterov=nesterov, dtype=mu_dtype),
        ema_of_square("nu", b2, debias=True),
        ratio("mu", "nu", eps=eps, eps_root=eps_root),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Mask = None,
    *,
    nesterov: bool = False,
) -> Primitive:
    r"""AdamW, Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    :math:`u_t = -η_t\big(\hat m_t/(\sqrt{\hat v_t + ε_{root}} + ε) + λθ_{t-1}\big)`, the
    learning-rate schedule scaling both terms, as in ``torch.optim.AdamW`` (whose default λ
    is 1e-2; optax's, used here, is 1e-4).
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
        weight_decay=weight_decay)
    return chain(
        ema("mu", b1, debias=True, nesterov=nesterov, dtype=mu_dtype),
        ema_of_square("nu", b2, debias=True),
        ratio("mu", "nu", eps=eps, eps_root=eps_root),
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def nadam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    momentum_decay: float | None = None,
) -> Primitive:
    r"""NAdam, Adam with Nesterov momentum (Dozat 2016).

    Default (optax): :math:`\hat m_t = β_1 m_t/(1-β_1^{t+1}) + (1-β_1)g_t/(1-β_1^t)`.
    With ``momentum_decay=ψ`` (PyTorch, ψ = 0.004 in ``torch.optim.NAdam``) the momentum
    coefficient follows :math:`μ_t = β_1(1 - ½\,0.96^{tψ})` with running products of μ, see
    :func:`optlab.accumulators.nadam_momentum`. Then :math:`u_t = -η\hat m_t/(\sqrt{\hat v_t
    + ε_{root}} + ε)`.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root,
        momentum_decay=momentum_decay)
    first = (ema("mu", b1, debias=True, nesterov=True, dtype=mu_dtype) if momentum_decay is None
             else nadam_momentum("mu", b1, momentum_decay, dtype=mu_dtype))
    return chain(
        first,
        ema_of_square("nu", b2, debias=True),
        ratio("mu", "nu", eps=eps, eps_root=eps_root),
        scale_by_learning_rate(learning_rate),
    )


def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    debias_before_max: bool = True,
) -> Primitive:
    r"""AMSGrad (Reddi et al. 2018): Adam with the running maximum of the second moment.

    Default (optax): :math:`\hat v^{\max}_t = \max(\hat v^{\max}_{t-1}, v_t/(1-β_2^t))`.
    ``debias_before_max=False`` (``torch.optim.Adam(amsgrad=True)``): the max is over raw v,
    then divided by :math:`1-β_2^t`. :math:`u_t = -η\hat m_t/(\sqrt{\hat v^{\max}_t +
    ε_{root}} + ε)`. The state is m, v and the max: 3 × params.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    if debias_before_max:
        second = (ema_of_square("nu", b2, debias=True), running_max("nu"))
    else:
        second = (ema_of_square("nu", b2), running_max("nu"), debias("nu", b2))
    return chain(
        ema("mu", b1, debias=True, dtype=mu_dtype),
        *second,
        ratio("mu", "nu", eps=eps, eps_root=eps_root),
        scale_by_learning_rate(learning_rate),
    )


def adamax(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> Primitive:
    r"""AdaMax (Kingma & Ba 2015, §7.1): :math:`u_t = \max(β_2 u_{t-1}, |g_t| + ε)`,
    :math:`Δ_t = -η\,\hat m_t / u_t`; same as optax and ``torch.optim.Adamax``."""
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)
    return chain(
        ema("mu", b1, debias=True),
        ema_of_abs_max("nu", b2, eps=eps),
        ratio("mu", "nu", eps=0.0, sqrt=False),
        scale_by_learning_rate(learning_rate),
    )


def radam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    *,
    nesterov: bool = False,
    eps_on_raw_v: bool = False,
) -> Primitive:
    r"""Rectified Adam (Liu et al. 2020): Adam's ratio scaled by the variance rectification
    :math:`r_t` once :math:`ρ_t ≥` ``threshold``, plain momentum SGD before
    (:func:`optlab.combiners.rectified_ratio`). ``eps_on_raw_v=True`` places ε as
    ``torch.optim.RAdam`` does."""
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    return chain(
        ema("mu", b1, debias=True, nesterov=nesterov),
        ema_of_square("nu", b2, debias=True),
        rectified_ratio("mu", "nu", b2=b2, eps=eps, eps_root=eps_root, threshold=threshold,
                        eps_on_raw_v=eps_on_raw_v),
        scale_by_learning_rate(learning_rate),
    )


def adabound(
    learning_rate: ScalarOrSchedule = 1e-3,
    final_lr: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.999,
    gamma: float = 1e-3,
    eps: float = 1e-8,
    amsbound: bool = False,
    weight_decay: float = 0.0,
    base_lr: float | None = None,
) -> Primitive:
    r"""AdaBound / AMSBound (Luo et al. 2019), with the semantics of the authors' code.

    .. math::
       \mathrm{step}_t = \mathrm{clip}\Big(\frac{η_t\sqrt{1-β_2^t}/(1-β_1^t)}{\sqrt{v_t} + ε},\;
         f_t\big(1 - \tfrac{1}{γt+1}\big),\; f_t\big(1 + \tfrac{1}{γt}\big)\Big),\qquad
       u_t = -\mathrm{step}_t\, m_t

    with raw moments m, v (AMSBound: v replaced by its running max), and
    :math:`f_t = \mathrm{final\_lr}\cdot η_t/η_0` — a learning-rate schedule scales the
    bounds too, as the authors' code does. η₀ = ``base_lr``, the learning rate the optimizer
    was built with in the authors' code; it defaults to a constant ``learning_rate`` and must
    be given with a schedule (and with ``optax.inject_hyperparams``, where the injected value
    changes). ``weight_decay`` is coupled L2 as in their code.
    """
    _check_args(learning_rate=learning_rate, final_lr=final_lr, b1=b1, b2=b2, gamma=gamma, eps=eps,
        weight_decay=weight_decay)
    _checks.check_learning_rate(learning_rate)
    if base_lr is None:
        if callable(learning_rate):
            raise ValueError("base_lr is required when learning_rate is a schedule: the bounds "
                             "are final_lr * lr_t / base_lr (authors' code)")
        base_lr = learning_rate
    _checks.check_positive("base_lr", base_lr)
    return chain(
        l2_penalty(weight_decay) if weight_decay != 0.0 else None,
        ema("mu", b1),
        ema_of_square("nu", b2),
        running_max("nu") if amsbound else None,
        bounded_ratio("mu", "nu", b1=b1, b2=b2, eps=eps, final_lr=final_lr / base_lr, gamma=gamma),
        scale_by_learning_rate(learning_rate),
    )


def amsbound(
    learning_rate: ScalarOrSchedule = 1e-3,
    final_lr: float = 0.1,
    b1: float = 0.9,
    b2: float = 0.999,
    gamma: float = 1e-3,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    base_lr: float | None = None,
) -> Primitive:
    """AMSBound (Luo et al. 2019): :func:`adabound` with v replaced by its running max."""
    return adabound(learning_rate, final_lr, b1, b2, gamma, eps, amsbound=True,
                    weight_decay=weight_decay, base_lr=base_lr)


def adafactor(
    learning_rate: ScalarOrSchedule | None = None,
    min_dim_size_to_factor: int = 128,
    decay_rate: float = 0.8,
    decay_offset: int = 0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold: float | None = 1.0,
    momentum: float | None = None,
    dtype_momentum: Any = None,
    weight_decay_rate: ScalarOrSchedule | None = None,
    eps: float = 1e-30,
    factored: bool = True,
    weight_decay_mask: Mask = None,
) -> Primitive:
    r"""Adafactor (Shazeer & Stern 2018), with optax's arguments.

    :math:`\hat V_t` the factored second moment (:func:`optlab.accumulators.factored_ema_of_square`,
    :math:`\hat β_{2,t} = 1 - t^{-0.8}`); :math:`U_t = G_t/\sqrt{\hat V_t}`;
    :math:`\hat U_t = U_t / \max(1, \mathrm{RMS}(U_t)/d)`; step
    :math:`-ρ_t\,\max(ε_2, \mathrm{RMS}(θ))\,\hat U_t`.

    ``learning_rate`` is ρ_t. Its default ``None`` is the paper's relative step
    :math:`ρ_t = \min(10^{-2}, 1/\sqrt t)` (optax's ``None`` means ρ = 1).
    """
    _check_args(learning_rate=learning_rate, momentum=momentum,
                weight_decay_rate=weight_decay_rate, eps=eps)
    if clipping_threshold is not None:
        _checks.check_positive("clipping_threshold", clipping_threshold)
    if learning_rate is None:
        learning_rate = _adafactor_relative_step
    if dtype_momentum is None:
        dtype_momentum = jax.numpy.float32
    return chain(
        factored_ema_of_square("v", decay_rate, step_offset=decay_offset,
                               min_dim_size_to_factor=min_dim_size_to_factor, eps=eps,
                               factored=factored),
        ratio("g", "v", eps=0.0),
        optax.clip_by_block_rms(clipping_threshold) if clipping_threshold is not None
        else None,
        scale_by_learning_rate(learning_rate, flip_sign=False),
        optax.scale_by_param_block_rms() if multiply_by_parameter_scale else None,
        ema("mu", momentum, dtype=dtype_momentum) if momentum is not None else None,
        select("mu") if momentum is not None else None,
        decoupled_weight_decay(weight_decay_rate, weight_decay_mask)
        if weight_decay_rate is not None else None,
        optax.scale(-1.0),
    )


def _adafactor_relative_step(count: jax.Array) -> jax.Array:
    """Shazeer & Stern (2018)'s ρ_t = min(1e-2, 1/√t), t = count + 1."""
    t = count.astype(jax.numpy.result_type(float)) + 1.0
    return jax.numpy.minimum(1e-2, jax.lax.rsqrt(t))


# ------------------------------------------------------------------------------------------
# Sign-based rules
# ------------------------------------------------------------------------------------------


def lion(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any = None,
    weight_decay: ScalarOrSchedule = 1e-3,
    mask: Mask = None,
) -> Primitive:
    r"""Lion (Chen et al. 2023).

    :math:`c_t = β_1 m_{t-1} + (1-β_1)g_t`, :math:`u_t = -η(\mathrm{sign}(c_t) + λθ)`,
    :math:`m_t = β_2 m_{t-1} + (1-β_2) g_t`. One state tree (m): 1 × params.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, weight_decay=weight_decay)
    return chain(
        ema("mu", b2, emit="previous", dtype=mu_dtype),
        sign_of("mu", "g", weight=b1),
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def powersign(
    learning_rate: ScalarOrSchedule,
    base: float = math.e,
    beta: float = 0.9,
    sign_decay: Callable[[jax.Array], jax.Array] | None = None,
) -> Primitive:
    r"""PowerSign (Bello et al. 2017), TF-contrib semantics.

    :math:`m_t = βm_{t-1} + (1-β)g_t`,
    :math:`u_t = -η\, \mathrm{base}^{s_t\,\mathrm{sign}(g_t)\mathrm{sign}(m_t)}\, g_t`, with
    :math:`s_t` = ``sign_decay(t-1)`` (e.g. :func:`optlab.schedules.linear_sign_decay`) or 1.
    """
    _check_args(learning_rate=learning_rate, beta=beta)
    return chain(
        ema("mu", beta),
        sign_agreement("g", "mu", mode="power", base=base, sign_decay=sign_decay),
        scale_by_learning_rate(learning_rate),
    )


def addsign(
    learning_rate: ScalarOrSchedule,
    alpha: float = 1.0,
    beta: float = 0.9,
    sign_decay: Callable[[jax.Array], jax.Array] | None = None,
) -> Primitive:
    r"""AddSign (Bello et al. 2017), TF-contrib semantics.

    :math:`m_t = βm_{t-1} + (1-β)g_t`,
    :math:`u_t = -η\,(α + s_t\,\mathrm{sign}(g_t)\mathrm{sign}(m_t))\, g_t`.
    """
    _check_args(learning_rate=learning_rate, alpha=alpha, beta=beta)
    return chain(
        ema("mu", beta),
        sign_agreement("g", "mu", mode="add", alpha=alpha, sign_decay=sign_decay),
        scale_by_learning_rate(learning_rate),
    )


# ------------------------------------------------------------------------------------------
# More of the Adam family: AdaBelief, AdaMaxW, NAdamW, Yogi, Adan, ADOPT, AdEMAMix, ACProp,
# and MADGRAD (dual averaging)
# ------------------------------------------------------------------------------------------


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
        ratio("mu", "nu", eps=0.0, sqrt=False),
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
    at t is scaled by the belief up to t − 1 only, as in ``optax.contrib.acprop``.

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
