r"""K-FAC, Kronecker-factored approximate curvature (Martens & Grosse 2015; Grosse & Martens
2016 for convolutions), from optlab's primitives.

* :func:`statistics` (:mod:`optlab.fisher.capture`) — inside a training step, the layer
  inputs and output gradients of a Flax NNX model's ``nnx.Linear`` / ``nnx.Conv`` layers,
  and a diagonal Fisher estimate of its other parameters;
* :func:`kfac_factors`, :func:`kfac_inverses`, :func:`kfac_precondition`
  (:mod:`optlab.fisher.factors`) — the accumulators and the combiner;
* :func:`kfac` — the optimizer (``optlab.kfac``), and :func:`scale_by_kfac`, the same without
  the learning rate.

The statistics reach the optimizer as an extra argument of ``update``::

    stats = optlab.fisher.statistics(model, x, y, key=key)
    updates, state = tx.update(grads, state, params, kfac_stats=stats)

``optlab.train`` does this by itself for an optimizer that contains :func:`kfac_factors`.
"""

from __future__ import annotations

from collections.abc import Collection

from optax import ScalarOrSchedule

from optlab import _checks
from optlab.accumulators import trace
from optlab.combiners import select
from optlab.fisher.blas import limit_blas
from optlab.fisher.capture import (
    FISHERS,
    LOSSES,
    LayerStatistics,
    Statistics,
    layer_names,
    param_names,
    statistics,
)
from optlab.fisher.factors import (
    KFACFactorsState,
    KFACInversesState,
    damped_inverses,
    kfac_factors,
    kfac_inverses,
    kfac_precondition,
    requested_fisher,
)
from optlab.optimizers import chain
from optlab.regularizers import scale_by_learning_rate
from optlab.stream import Primitive

__all__ = [
    "FISHERS",
    "LOSSES",
    "KFACFactorsState",
    "KFACInversesState",
    "LayerStatistics",
    "Statistics",
    "damped_inverses",
    "kfac",
    "kfac_factors",
    "kfac_inverses",
    "kfac_precondition",
    "layer_names",
    "limit_blas",
    "param_names",
    "requested_fisher",
    "scale_by_kfac",
    "statistics",
]


def scale_by_kfac(
    damping: float = 1e-3,
    decay: float = 0.95,
    inverse_every: int = 10,
    fisher: str = "true",
    *,
    max_norm: float | None = None,
    trace_norm: bool = True,
    layers: Collection[str] | None = None,
) -> Primitive:
    r"""K-FAC's preconditioned direction :math:`\hat F^{-1} g` without a learning rate (the
    arguments of :func:`kfac`): ``chain(kfac_factors, kfac_inverses, kfac_precondition)``."""
    return chain(
        kfac_factors(decay, fisher=fisher, layers=layers),
        kfac_inverses(damping, every=inverse_every, trace_norm=trace_norm, layers=layers),
        kfac_precondition(damping, max_norm=max_norm),
    )


def kfac(
    learning_rate: ScalarOrSchedule,
    damping: float = 1e-3,
    momentum: float | None = None,
    decay: float = 0.95,
    inverse_every: int = 10,
    fisher: str = "true",
    *,
    max_norm: float | None = 1.0,
    nesterov: bool = False,
    trace_norm: bool = True,
    layers: Collection[str] | None = None,
) -> Primitive:
    r"""K-FAC (Martens & Grosse 2015), with KFC for convolutions (Grosse & Martens 2016).

    For each ``nnx.Linear`` / ``nnx.Conv`` layer, with kernel and bias stacked as
    :math:`\bar W = [W; b]` and the layer's Fisher block approximated by :math:`A ⊗ G`:

    .. math::
       A ← ρ_t A + (1-ρ_t)\,E[\bar a\bar a^\top],\quad
       G ← ρ_t G + (1-ρ_t)\,E[δδ^\top],\quad ρ_t = \min(ρ, 1 - 1/t),\\
       U = (A + π\sqrt λ I)^{-1}\,∇\bar W\,(G + \tfrac{\sqrt λ}{π} I)^{-1},\quad
       π = \sqrt{\frac{\mathrm{tr}A/d_a}{\mathrm{tr}G/d_g}}

    with :math:`\bar a` the layer's inputs with a 1 appended (patches of a convolution, its
    output locations as extra samples, KFC) and δ the gradients of the per-example losses
    w.r.t. the layer's outputs, for labels drawn from the model (``fisher="true"``) or the
    data's (``"empirical"``). The inverses are recomputed every ``inverse_every`` steps. Other
    parameters (norm scales and shifts, embeddings, ...) take :math:`u = g/(D + λ)`, D an EMA
    of their diagonal Fisher. The step is capped in the approximate Fisher norm,
    :math:`U ← U\min(1, c/\sqrt{⟨U, ∇⟩})` (``max_norm`` c; :func:`kfac_precondition`). Then
    heavy-ball ``momentum`` μ, :math:`m_t = U_t + μ m_{t-1}`, and :math:`θ ← θ − η m_t`.

    ``update`` needs ``kfac_stats=optlab.fisher.statistics(model, x, y, key=key,
    fisher=fisher)`` at every step (``optlab.train`` supplies them).

    Args:
      learning_rate: η (a constant or a schedule).
      damping: λ > 0, factored Tikhonov damping (fixed: no Levenberg–Marquardt adaptation).
      momentum: μ, or None for none.
      max_norm: c, the cap on :math:`\sqrt{g^\top\hat F^{-1}g}` (Ba et al. 2017's KL
        clipping without the learning rate); None: no cap. Without it, a fixed damping and
        learning rate diverge easily (on digits' MLP most of a 3 × 3 grid of η and λ did).
      decay: ρ, the EMA decay of the factors (the paper's 0.95).
      inverse_every: k, steps between recomputations of the inverses (the paper's T₃ = 20).
      fisher: ``"true"`` (default), ``"empirical"`` or ``"exact"``: which statistics a
        training step computes (stored in the state).
      nesterov: Nesterov momentum.
      trace_norm: π as above (the paper's §6.3); False: π = 1.
      layers: names of the layers to precondition (:func:`optlab.fisher.layer_names`);
        default every leaf named ``kernel`` of rank ≥ 2.

    References: Martens & Grosse, *Optimizing Neural Networks with Kronecker-factored
    Approximate Curvature*, ICML 2015 (arXiv:1503.05671); Grosse & Martens, *A
    Kronecker-factored approximate Fisher matrix for convolution layers*, ICML 2016
    (arXiv:1602.01407); Ba, Grosse & Martens, *Distributed second-order optimization using
    Kronecker-factored approximations*, ICLR 2017 (the norm cap).
    """
    _checks.check_learning_rate(learning_rate)
    if momentum is not None:
        _checks.check_decay("momentum", momentum, allow_schedule=False)
    return chain(
        scale_by_kfac(damping, decay, inverse_every, fisher, max_norm=max_norm,
                      trace_norm=trace_norm, layers=layers),
        trace("trace", momentum, nesterov=nesterov) if momentum is not None else None,
        select("trace") if momentum is not None else None,
        scale_by_learning_rate(learning_rate),
    )
