r"""Curvature: optimizers that precondition by an estimate of the Hessian diagonal.

Sophia (Liu et al. 2024) divides the momentum by an EMA of the Hessian diagonal and clips the
result per coordinate. The Hessian diagonal is not a function of the gradient: an estimator
(by default Hutchinson's, :math:`\mathrm{diag}(H) ≈ E[u ⊙ Hu]` with Rademacher u, computed by a
Hessian-vector product of the objective) is run every ``update_interval`` steps. It is an
ordinary optax transform whose ``update`` receives the extra keyword arguments of the step
(``obj_fn``, a function of the params returning the loss), so any optax estimator plugs in;
:func:`hessian_diagonal_ema` runs it inside the chain under a ``lax.cond`` and keeps its state.

Vocabulary added here:

* :func:`hessian_diagonal_ema` — :math:`h_t`, an EMA of the estimated Hessian diagonal,
  refreshed every k steps; emits the estimate *from before* the refresh (Sophia's step uses it);
* :func:`clipped_ratio` — :math:`\mathrm{clip}(m / \max(γh, ε), ±ρ)`.
"""


from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax import ScalarOrSchedule
from optax.contrib import hutchinson_estimator_diag_hessian

from optlab import _checks
from optlab.accumulators import ema
from optlab.optimizers import _check_args
from optlab.regularizers import decoupled_weight_decay, scale_by_learning_rate
from optlab.stream import (
    GRAD,
    Mask,
    Primitive,
    as_stream,
    cast_like,
    chain,
    increment,
    primitive,
    require_params,
    scalar_as,
    tree_map,
    zeros_like,
)

__all__ = ["clipped_ratio", "hessian_diagonal_ema", "sophia"]


def hessian_diagonal_ema(
    name: str = "nu",
    decay: Any = 0.99,
    update_interval: Any = 10,
    hessian_diagonal_fn: optax.GradientTransformation | None = None,
) -> Primitive:
    r"""EMA of an estimate of the Hessian diagonal, refreshed every ``update_interval`` steps.

    .. math::
       h_t = \begin{cases} β h_{t-1} + (1-β)\,\hat H_t & t ≡ 1 \pmod k\\
                           h_{t-1} & \text{otherwise}\end{cases}

    with :math:`\hat H_t` = ``hessian_diagonal_fn.update(g_t, ·, params, **extra)`` (default:
    optax's Hutchinson estimator, which reads ``obj_fn``). Emits :math:`h_{t-1}`, the estimate
    before this step's refresh, as ``name``. State: ``{name: h, "hessian_fn_state": ...}``.
    """
    _checks.check_decay("decay", decay, allow_schedule=False)
    if hessian_diagonal_fn is None:
        hessian_diagonal_fn = hutchinson_estimator_diag_hessian()
    estimator = optax.with_extra_args_support(hessian_diagonal_fn)

    def init_fn(params):
        return {name: zeros_like(params), "hessian_fn_state": estimator.init(params)}

    def update_fn(updates, state, params, count, **extra):
        require_params(params, "hessian_diagonal_ema", extra=", obj_fn=...")
        stream = as_stream(updates, "hessian_diagonal_ema")
        grads = stream[GRAD]

        def refresh(fn_state, h):
            diag, fn_state = estimator.update(grads, fn_state, params=params, **extra)
            new = tree_map(lambda x, d: scalar_as(decay, x) * x + scalar_as(1 - decay, x) * d,
                           h, diag)
            return fn_state, cast_like(new, h)

        fn_state, h = jax.lax.cond(count % update_interval == 0, refresh, lambda s, h: (s, h),
                                   state["hessian_fn_state"], state[name])
        return stream.add(name, state[name]), {name: h, "hessian_fn_state": fn_state}

    return primitive(init_fn, update_fn, counted=True)


def clipped_ratio(
    numerator: str = "mu",
    denominator: str = "nu",
    *,
    gamma: Any = 0.01,
    eps: Any = 1e-8,
    clip_threshold: Any = 1.0,
    verbose: bool = False,
    print_win_rate_every_n_steps: Any = 0,
) -> Primitive:
    r"""Combiner: Sophia's clipped curvature-normalised step.

    .. math:: u = \mathrm{clip}\Big(\frac{m}{\max(γ h, ε)},\ -ρ,\ ρ\Big)

    with m, h the statistics ``numerator`` and ``denominator`` and ρ = ``clip_threshold``
    (None: no clipping). ``verbose`` prints the fraction of unclipped coordinates (the
    "win rate", which the authors keep in 0.1–0.5) every ``print_win_rate_every_n_steps``.
    """

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "clipped_ratio")
        ratio = tree_map(
            lambda m, h: m / jnp.maximum(scalar_as(gamma, h) * h, scalar_as(eps, h)),
            stream[numerator], stream[denominator])
        if clip_threshold is None:
            return ratio, state
        if verbose:
            kept = sum(jnp.sum(jnp.abs(u) < clip_threshold) for u in jax.tree.leaves(ratio))
            rate = kept / optax.tree.size(ratio)
            jax.lax.cond(increment(count) % print_win_rate_every_n_steps == 0,
                         lambda: jax.debug.print("Sophia optimizer win rate: {}", rate),
                         lambda: None)
        return tree_map(lambda u: jnp.clip(u, -clip_threshold, clip_threshold).astype(u.dtype),
                        ratio), state

    return primitive(lambda params: optax.EmptyState(), update_fn, counted=verbose)


def sophia(
    learning_rate: ScalarOrSchedule,
    b1: Any = 0.965,
    b2: Any = 0.99,
    eps: Any = 1e-8,
    weight_decay: ScalarOrSchedule = 1e-4,
    weight_decay_mask: Mask = None,
    gamma: Any = 0.01,
    clip_threshold: Any = 1.0,
    update_interval: Any = 10,
    hessian_diagonal_fn: optax.GradientTransformation | None = None,
    mu_dtype: Any = None,
    verbose: bool = False,
    print_win_rate_every_n_steps: Any = 0,
) -> Primitive:
    r"""Sophia (Liu et al. 2024), optax.contrib's variant (Sophia-H, Rademacher probes).

    .. math::
       m_t = β_1 m_{t-1} + (1-β_1) g_t,\quad \hat m_t = m_t/(1-β_1^t),\\
       u_t = -η_t\Big(\mathrm{clip}\Big(\frac{\hat m_t}{\max(γ h_{t-1}, ε)}, ±ρ\Big)
             + λθ_t\Big),\quad
       h_t = β_2 h_{t-1} + (1-β_2)\hat H_t \text{ every } k \text{ steps}

    with :math:`\hat H_t` the Hessian-diagonal estimate of ``hessian_diagonal_fn`` (default:
    optax's Hutchinson estimator with key 0; it reads ``obj_fn``, a function of the params
    returning the loss: ``update(grads, state, params, obj_fn=lambda p: loss_fn(p, batch))``).
    Every keyword argument given to ``update`` reaches the estimator. The refresh runs under
    ``lax.cond``, so the estimator's cost is paid on one step in ``update_interval``; the step
    reads :math:`h_{t-1}`, so the first step (h = 0) is the clipped sign ±ρ of m̂. Effective
    β₂ is about :math:`1 - (1-β_2)/k`. State (optax's names): ``mu`` (in ``mu_dtype``),
    ``nu``, ``hessian_fn_state``: 2 × params, as optax.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)
    _checks.check_positive("gamma", gamma)
    if clip_threshold is not None:
        _checks.check_positive("clip_threshold", clip_threshold)
    if isinstance(update_interval, (int, float)) and not isinstance(update_interval, bool):
        _checks.check_int("update_interval", update_interval, low=1)
    return chain(
        ema("mu", b1, debias=True, dtype=mu_dtype),
        hessian_diagonal_ema("nu", b2, update_interval, hessian_diagonal_fn),
        clipped_ratio("mu", "nu", gamma=gamma, eps=eps, clip_threshold=clip_threshold,
                      verbose=verbose, print_win_rate_every_n_steps=print_win_rate_every_n_steps),
        decoupled_weight_decay(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
