r"""Shampoo (Gupta et al. 2018) and SOAP (Vyas et al. 2024), each a chain of the Kronecker
primitives in :mod:`optlab.kronecker`: the factors accumulated per matrix, their inverse roots
(Shampoo) or eigenbasis (SOAP) refreshed every few steps, one combiner.
"""

from typing import Literal

import jax.numpy as jnp
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.accumulators import ema, ema_of_square, sum_of_squares
from optlab.combiners import select
from optlab.kronecker import (
    _check_factor_args,
    eigenbasis,
    inverse_root,
    kronecker_factors,
    kronecker_graft,
    rotate,
    rotated_ratio,
    skip_first,
)
from optlab.optimizers import chain
from optlab.regularizers import decoupled_weight_decay, scale_by_learning_rate
from optlab.stream import Mask, Primitive

__all__ = ["shampoo", "soap"]


GRAFTS = ("adam", "adagrad", "sgd", None)


def shampoo(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-6,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    graft: Literal["adam", "adagrad", "sgd"] | None = "adam",
    graft_eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.0,
    mask: Mask = None,
    *,
    precondition_1d: bool = False,
    nesterov: bool = False,
) -> Primitive:
    r"""Shampoo (Gupta et al. 2018) with grafting and a preconditioner period (Anil et al.
    2020). Not in optax; argument names follow optlab/optax conventions.

    For a leaf G of rank k, each axis i of size ≤ ``max_precond_dim`` has a factor

    .. math::
       L_{i,t} = β_2 L_{i,t-1} + (1-β_2) G_{(i)}G_{(i)}^\top \quad
       (β_2 = 1:\ \text{the paper's sum}),\qquad
       P_i = (L_i + εI)^{-1/(2k)}

    (for a matrix: :math:`L = ΣGG^\top`, :math:`R = ΣG^\top G`, step :math:`L^{-1/4}GR^{-1/4}`),
    the roots being recomputed every ``precondition_frequency`` steps (first step included)
    and kept in the state. The preconditioned step :math:`S = G ×_i P_i` takes its per-layer
    norm from the graft :math:`A`: ``"adam"`` :math:`G/(\sqrt{\hat v}+ε_g)` with
    :math:`\hat v` the debiased EMA (β₂) of G², ``"adagrad"`` :math:`G/(\sqrt{ΣG^2}+ε_g)`,
    ``"sgd"`` G; ``None`` uses S as it is. :math:`D = \lVert A\rVert S/\lVert S\rVert`, then
    momentum on the grafted step and decoupled weight decay:

    .. math:: m_t = β_1 m_{t-1} + (1-β_1) D_t,\quad u_t = -η_t\big(m_t/(1-β_1^t) + λθ\big)

    (``b1=0``: no momentum; ``nesterov``: Dozat's look-ahead). Scalars and vectors (unless
    ``precondition_1d``, which gives a vector one factor, full-matrix AdaGrad's
    :math:`L^{-1/2}`) and leaves with no axis ≤ ``max_precond_dim`` take the graft's step
    (diagonal fallback; ``graft=None``: SGD). Tensors of rank > 2: one factor per axis, no
    reshape.

    Composition: ``chain(<graft statistic>, kronecker_factors, inverse_root, kronecker_graft,
    ema, select, decoupled_weight_decay, scale_by_learning_rate)``. State per matrix
    :math:`m × n`: L, R and :math:`P_L, P_R` (:math:`2(m^2+n^2)`), the graft's statistic and
    the momentum (2 × params with ``"adam"`` / ``"adagrad"``).

    References: Gupta, Koren & Singer, *Shampoo: Preconditioned Stochastic Tensor
    Optimization*, ICML 2018 (arXiv:1802.09568); Anil et al., *Scalable Second Order
    Optimization for Deep Learning* (arXiv:2002.09018).
    """
    _checks.check_learning_rate(learning_rate)
    _checks.check_decay("b1", b1, allow_schedule=False)
    _checks.check_number("b2", b2, low=0.0, high=1.0)
    _checks.check_positive("eps", eps)
    _check_factor_args(max_precond_dim, precondition_frequency)
    if graft is not None:
        _checks.check_choice("graft", graft, GRAFTS[:-1])
    _checks.check_nonnegative("graft_eps", graft_eps)
    _checks.check_nonnegative("weight_decay", weight_decay, allow_schedule=True)
    if graft == "adam" and _checks._concrete_scalar(b2) == 1.0:
        raise ValueError("b2 must be in [0, 1) with graft='adam' (its second moment is an "
                         "EMA with decay b2); use graft='adagrad' with b2=1 (sums)")
    axes = dict(max_precond_dim=max_precond_dim, precondition_1d=precondition_1d)
    momentum = _checks._concrete_scalar(b1) != 0.0
    graft_stat = {"adam": ema_of_square("nu", b2, debias=True) if graft == "adam" else None,
                  "adagrad": sum_of_squares("sum_of_squares"), "sgd": None, None: None}[graft]
    denominator = {"adam": "nu", "adagrad": "sum_of_squares"}.get(graft)
    return chain(
        graft_stat,
        kronecker_factors("GG", b2, **axes),
        inverse_root("GG", "P", every=precondition_frequency, eps=eps, **axes),
        kronecker_graft("P", graft_denominator=denominator, graft_eps=graft_eps,
                        graft=graft is not None),
        ema("mu", b1, debias=True, nesterov=nesterov) if momentum else None,
        select("mu") if momentum else None,
        decoupled_weight_decay(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def soap(
    learning_rate: ScalarOrSchedule = 3e-3,
    b1: float = 0.95,
    b2: float = 0.95,
    shampoo_beta: float = -1,
    eps: float = 1e-8,
    weight_decay: ScalarOrSchedule = 0.01,
    precondition_frequency: int = 10,
    max_precond_dim: int = 10000,
    precondition_1d: bool = False,
    mask: Mask = None,
    *,
    eigenbasis_method: Literal["qr", "eigh"] = "qr",
) -> Primitive:
    r"""SOAP, Adam in Shampoo's eigenbasis (Vyas et al. 2024). Not in optax; the defaults are
    those of the paper's reference code (lr 3e-3, betas (0.95, 0.95), ``shampoo_beta=-1``
    meaning b2, eps 1e-8, weight decay 0.01, ``precondition_frequency`` 10,
    ``max_precond_dim`` 10000, no 1-D preconditioning).

    Per leaf, with factors :math:`L_i` (:func:`kronecker_factors`, decay
    :math:`β_s` = ``shampoo_beta``) and their eigenbases :math:`Q_i` (Algorithm 3), at step t:

    .. math::
       L_i ← β_s L_i + (1-β_s) G_{(i)}G_{(i)}^\top;\quad
       M ← β_1 M + (1-β_1) G,\quad G' = G ×_i Q_i^\top,\quad V ← β_2 V + (1-β_2) G'^2,\\
       N = \Big(\frac{M ×_i Q_i^\top}{\sqrt{V}+ε}\Big) ×_i Q_i,\quad
       u = -η_t\Big(\frac{\sqrt{1-β_2^s}}{1-β_1^s} N + λθ\Big),\quad s = t - 1;\\
       Q_i ← \mathrm{QR}(L_i Q_i)\ \text{after steps with } s \bmod f = 0,\ s > 0

    (for a matrix, :math:`G' = Q_L^\top G Q_R`, :math:`N = Q_L N' Q_R^\top`). As in the
    reference code, the first step only initialises the factors and :math:`Q_i` = ``eigh``
    (columns by decreasing eigenvalue): its gradient reaches neither M, V nor the
    parameters (:func:`skip_first`), and the bias corrections count s from the second step.
    M is kept in the original space and rotated with the current basis each step — the
    paper's Algorithm 3, equivalent to the reference code's rotation of M on each refresh —
    and V is not rotated. The QR refresh orders the columns by their Rayleigh quotients, as
    the reference code (``eigenbasis_method="eigh"`` refreshes by ``eigh``). Axes larger than
    ``max_precond_dim`` keep the identity; scalars and (unless ``precondition_1d``) vectors
    get plain Adam (with the reference's ε on raw √V). Tensors of rank > 2: one factor per
    axis (no ``merge_dims``).

    One deliberate difference from the reference code: weight decay is decoupled from
    θ_{t-1}, u = −η(… + λθ_{t-1}); the code decays the already-updated parameters, a
    difference of order η²λ.

    Composition: ``chain(kronecker_factors, eigenbasis, skip_first, ema("mu"), rotate,
    ema_of_square("nu", source="g_rot"), rotated_ratio, decoupled_weight_decay,
    scale_by_learning_rate)``. State per matrix :math:`m × n`: L, R, :math:`Q_L, Q_R`
    (:math:`2(m^2+n^2)`), M and V (2 × params).

    Reference: Vyas et al., *SOAP: Improving and Stabilizing Shampoo using Adam*
    (arXiv:2409.11321); code github.com/nikhilvyas/SOAP.
    """
    _checks.check_learning_rate(learning_rate)
    _checks.check_decay("b1", b1, allow_schedule=False)
    _checks.check_decay("b2", b2, allow_schedule=False)
    beta = _checks._concrete_scalar(shampoo_beta)
    if beta is None:  # traced (optax.inject_hyperparams): -1 still means b2
        factor_decay = jnp.where(shampoo_beta < 0, b2, shampoo_beta)
    elif beta == -1:
        factor_decay = b2
    else:
        _checks.check_decay("shampoo_beta", shampoo_beta, allow_schedule=False)
        factor_decay = shampoo_beta
    _checks.check_nonnegative("eps", eps)
    _checks.check_nonnegative("weight_decay", weight_decay, allow_schedule=True)
    _check_factor_args(max_precond_dim, precondition_frequency)
    _checks.check_choice("eigenbasis_method", eigenbasis_method, ["qr", "eigh"])
    axes = dict(max_precond_dim=max_precond_dim, precondition_1d=precondition_1d)
    return chain(
        kronecker_factors("GG", factor_decay, **axes),
        eigenbasis("GG", "Q", every=precondition_frequency, method=eigenbasis_method, **axes),
        skip_first("g", "g_skip"),
        ema("mu", b1, source="g_skip"),
        rotate("g_skip", "Q", "g_rot"),
        ema_of_square("nu", b2, source="g_rot"),
        rotated_ratio("mu", "nu", "Q", eps=eps, b1=b1, b2=b2, skipped_steps=1),
        decoupled_weight_decay(_after_first_step(weight_decay), mask),
        scale_by_learning_rate(learning_rate),
    )


def _after_first_step(rate: ScalarOrSchedule) -> ScalarOrSchedule:
    """A weight decay that is 0 at the first step (SOAP's first step leaves θ unchanged)."""
    if not callable(rate) and _checks._concrete_scalar(rate) == 0.0:
        return rate
    return lambda count: jnp.where(count > 0, _checks.resolve(rate, count), 0.0)
