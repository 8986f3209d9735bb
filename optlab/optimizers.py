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
    debias,
    ema,
    ema_of_abs_max,
    ema_of_square,
    nadam_momentum,
    running_max,
    sum_of_squares,
    trace,
)
from optlab.combiners import (
    bounded_ratio,
    ratio,
    rectified_ratio,
    rms_ratio,
    select,
    sign_agreement,
    sign_of,
)
from optlab.factored import factored_ema_of_square
from optlab.regularizers import (
    decoupled_weight_decay,
    gradient_noise,
    l2_penalty,
    scale_by_learning_rate,
)
from optlab.stream import Mask, Primitive
from optlab.stream import chain as _chain


def chain(*transforms: optax.GradientTransformation | None) -> Primitive:
    """:func:`optlab.chain` of the given transforms, skipping ``None`` (an unused option)."""
    return _chain(*(t for t in transforms if t is not None))

__all__ = [
    "adabound",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamw",
    "addsign",
    "amsbound",
    "amsgrad",
    "lion",
    "nadam",
    "noisy_sgd",
    "powersign",
    "radam",
    "rmsprop",
    "sgd",
    "sgdw",
    "sign_sgd",
    "signum",
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


def _positive(eps: Any) -> bool:
    """Whether ``eps`` is a constant > 0 (then AdaMax's u ≥ ε needs no division guard)."""
    x = _checks._concrete_scalar(eps)
    return x is not None and x > 0


def adamax(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> Primitive:
    r"""AdaMax (Kingma & Ba 2015, §7.1): :math:`u_t = \max(β_2 u_{t-1}, |g_t| + ε)`,
    :math:`Δ_t = -η\,\hat m_t / u_t`; same as optax and ``torch.optim.Adamax``."""
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps)
    return chain(
        ema("mu", b1, debias=True),
        ema_of_abs_max("nu", b2, eps=eps),
        ratio("mu", "nu", eps=0.0, sqrt=False, positive=_positive(eps)),
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

    :math:`\hat V_t` the factored second moment (:func:`optlab.factored.factored_ema_of_square`,
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
        scale_by_learning_rate(1.0),
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
