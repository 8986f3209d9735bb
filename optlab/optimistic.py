r"""Optimism: extrapolating with the previous gradient (or the previous Adam direction).

Optimistic gradient descent (Popov 1980; Daskalakis et al. 2018; Mokhtari et al. 2020)
approximates the extra-gradient step — which needs a second gradient evaluation — by reusing
the previous gradient as the prediction of the next one:

.. math:: u_t = -η_t\big((α + β) x_t - β x_{t-1}\big) = -η_t\big(α x_t + β (x_t - x_{t-1})\big)

Two primitives express it: :func:`previous`, an accumulator that remembers last step's value
of a statistic, and :func:`extrapolation`, the combiner above. With x = g it is optimistic
gradient descent; with x the Adam direction m̂/(√v̂ + ε) it is Optimistic Adam.
"""


import warnings
from typing import Any

import jax.numpy as jnp
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.accumulators import _check_name, _read_source, ema, ema_of_square
from optlab.combiners import ratio
from optlab.optimizers import _check_args, chain
from optlab.regularizers import scale_by_learning_rate
from optlab.stream import (
    GRAD,
    Primitive,
    as_stream,
    cast_like,
    empty_init,
    per_dtype,
    primitive,
    tree_map,
)
from optlab.stream import zeros_like as _zeros_like

__all__ = [
    "extrapolation",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "previous",
]

PREVIOUS = "previous_gradient"
"""optax's name for the remembered statistic (``ScaleByOptimisticGradientState``)."""


def _check_optimism(name: str, value: Any) -> None:
    _checks.check_nonnegative(name, value, allow_schedule=True)


def previous(name: str = PREVIOUS, *, source: str = GRAD) -> Primitive:
    r"""The previous value of a statistic: emits :math:`x_{t-1}` as ``name`` and stores
    :math:`x_t`.

    At the first step there is no :math:`x_0`; the current value is emitted instead
    (:math:`x_0 := x_1`, optax's convention since google-deepmind/optax#1082), so the first
    optimistic step is a plain one. The state is ``{name: tree, "is_initial_step": bool}``,
    as optax's: a one-byte flag rather than the chain's step counter, so an optimizer whose
    only step-dependent part is this one keeps no int32 count.
    """
    _check_name(name)
    _check_name(source, "source")

    def init_fn(params):
        return {name: _zeros_like(params), "is_initial_step": jnp.array(True)}

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream, x = _read_source(updates, state[name], source, "previous")
        first = state["is_initial_step"]
        prev = tree_map(lambda g, p: jnp.where(first, g, p.astype(g.dtype)), x, state[name])
        return stream.add(name, prev), {name: cast_like(x, state[name]),
                                        "is_initial_step": jnp.zeros_like(first)}

    return primitive(init_fn, update_fn, counted=False)


def extrapolation(
    current: str = GRAD,
    last: str = PREVIOUS,
    *,
    alpha: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 1.0,
) -> Primitive:
    r"""Optimistic extrapolation :math:`u = (α + β)\, x_t - β\, x_{t-1}` of statistic
    ``current`` and its previous value ``last`` (see :func:`previous`).

    α scales the current value and β the change :math:`x_t - x_{t-1}`; α = 1, β = 0 is the
    plain method. Either may be a schedule of the step.
    """
    _check_optimism("alpha", alpha)
    _check_optimism("beta", beta)

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "extrapolation")
        a = _checks.resolve(alpha, count)
        b = _checks.resolve(beta, count)
        ab, bb = per_dtype(lambda _: a + b), per_dtype(lambda _: b)
        out = tree_map(lambda x, p: (ab(x) * x - bb(x) * p).astype(x.dtype),
                       stream[current], stream[last])
        return out, state

    return primitive(empty_init, update_fn, counted=callable(alpha) or callable(beta))


# ------------------------------------------------------------------------------------------
# Optimizers
# ------------------------------------------------------------------------------------------


def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule,
    alpha: ScalarOrSchedule = 1.0,
    beta: ScalarOrSchedule = 1.0,
) -> Primitive:
    r"""Optimistic gradient descent (Popov 1980; Mokhtari et al. 2020, "A Unified Analysis of
    Extra-gradient and Optimistic Gradient Methods for Saddle Point Problems").

    .. math:: u_t = -η_t\big((α + β) g_t - β g_{t-1}\big),\qquad g_0 := g_1

    The state is the previous gradient (1 × params). α and β may be schedules (optax accepts
    only constants here).
    """
    _check_args(learning_rate=learning_rate)
    _check_optimism("alpha", alpha)
    _check_optimism("beta", beta)
    return chain(
        previous(PREVIOUS),
        extrapolation("g", PREVIOUS, alpha=alpha, beta=beta),
        scale_by_learning_rate(learning_rate),
    )


def _adam_direction(b1: float, b2: float, eps: float, eps_root: float, mu_dtype: Any,
                    nesterov: bool) -> tuple[Primitive, ...]:
    """Adam's direction r = m̂/(√(v̂ + ε_root) + ε) (Nesterov's m̂ when ``nesterov``)."""
    return (ema("mu", b1, debias=True, nesterov=nesterov, dtype=mu_dtype),
            ema_of_square("nu", b2, debias=True),
            ratio("mu", "nu", eps=eps, eps_root=eps_root))


def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha: float = 1.0,
    beta: float = 1.0,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    nesterov: bool = True,
) -> Primitive:
    r"""Optimistic Adam (Daskalakis et al. 2018, "Training GANs with Optimism").

    .. math::
       r_t = \frac{\hat m_t}{\sqrt{\hat v_t + ε_{root}} + ε},\qquad
       u_t = -η_t\big((α + β) r_t - β r_{t-1}\big),\qquad r_0 := r_1

    with Adam's debiased moments (m̂ in Nesterov's form when ``nesterov``, optax's default).
    The state is m, v and the previous direction r (optax's ``previous_gradient``): 3 × params.
    """
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    _check_optimism("alpha", alpha)
    _check_optimism("beta", beta)
    return chain(
        *_adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov),
        previous(PREVIOUS),
        extrapolation("g", PREVIOUS, alpha=alpha, beta=beta),
        scale_by_learning_rate(learning_rate),
    )


def optimistic_adam(
    learning_rate: float,
    optimism: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-08,
    eps_root: float = 0.0,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
) -> Primitive:
    r"""Optimistic Adam with optax's first interface (Daskalakis et al. 2018).

    .. math:: u_t = -\big((η + o) r_t - o\, r_{t-1}\big),\qquad o = \text{optimism}
              \ (\text{default } η)

    with r the Adam direction of :func:`optimistic_adam_v2`; i.e. ``optimistic_adam_v2`` with
    learning rate 1, α = η and β = o. ``learning_rate`` must be a constant (optax's
    restriction: it enters the extrapolation, not a final scaling); optax deprecates this
    interface in favour of :func:`optimistic_adam_v2`, and so does this one (the same
    ``DeprecationWarning``, so code that filters optax's warning filters ours).
    """
    warnings.warn("`optimistic_adam` is deprecated, please use `optimistic_adam_v2` instead.",
                  category=DeprecationWarning, stacklevel=2)
    if callable(learning_rate):
        raise ValueError("learning_rate must be a constant in optimistic_adam (it is the α of "
                         "the extrapolation); use optimistic_adam_v2 for a schedule")
    _check_args(learning_rate=learning_rate, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    if optimism is None:
        optimism = learning_rate
    _check_optimism("optimism", optimism)
    return chain(
        *_adam_direction(b1, b2, eps, eps_root, mu_dtype, nesterov),
        previous(PREVIOUS),
        extrapolation("g", PREVIOUS, alpha=learning_rate, beta=optimism),
        scale_by_learning_rate(1.0),
    )
