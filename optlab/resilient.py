"""Resilient propagation: per-coordinate step sizes driven by sign agreement (Rprop).

Rprop (Riedmiller & Braun 1993) ignores the gradient's magnitude. Each coordinate keeps its
own step size, which grows by η₊ while the gradient keeps its sign and shrinks by η₋ when the
sign flips (the last step jumped over a minimum); the coordinate then moves by its step size
against the sign of the gradient. This module has the variant without weight backtracking,
iRprop⁻ (Igel & Hüsken 2003), which ``torch.optim.Rprop`` and ``optax.rprop`` implement.
"""


from typing import Any

import jax.numpy as jnp

from optlab import _checks
from optlab.optimizers import chain
from optlab.regularizers import scale_by_learning_rate
from optlab.stream import (
    Primitive,
    as_stream,
    cast_like,
    check_same_structure,
    primitive,
    tree_map_n,
)
from optlab.stream import zeros_like as _zeros_like

__all__ = ["rprop", "sign_adapted_step"]


def _check_rprop_args(learning_rate: Any, eta_minus: Any, eta_plus: Any, min_step_size: Any,
                      max_step_size: Any) -> None:
    _checks.check_nonnegative("learning_rate", learning_rate)
    _checks.check_number("eta_minus", eta_minus, low=0.0, high=1.0)
    _checks.check_number("eta_plus", eta_plus, low=1.0)
    _checks.check_nonnegative("min_step_size", min_step_size)
    _checks.check_nonnegative("max_step_size", max_step_size)
    lo, hi = _checks._concrete_scalar(min_step_size), _checks._concrete_scalar(max_step_size)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min_step_size must be <= max_step_size, got {lo!r} > {hi!r}")


def sign_adapted_step(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    one_step_late: bool = False,
) -> Primitive:
    r"""Rprop's signed per-coordinate step (iRprop⁻, Igel & Hüsken 2003).

    With :math:`p_{t-1}` the previous step (:math:`p_0 = 0`), :math:`s_t = g_t\, p_{t-1}` and
    step sizes :math:`Δ_0 = ` ``learning_rate``:

    .. math::
       Δ_t = \begin{cases} \mathrm{clip}(η_+ Δ_{t-1}) & s_t > 0 \\
                            \mathrm{clip}(η_- Δ_{t-1}) & s_t < 0 \\
                            Δ_{t-1} & s_t = 0 \end{cases},\qquad
       p_t = \begin{cases} 0 & s_t < 0 \\ Δ_t\, \mathrm{sign}(g_t) & \text{else}\end{cases}

    clipped to [``min_step_size``, ``max_step_size``]; emits :math:`p_t` (an ascent direction:
    follow it with a sign flip). A sign flip therefore costs one step of rest, after which the
    coordinate moves by the reduced step.

    The step size, the previous step and the zeroing after a flip form one recurrence, so this
    is one primitive (a stateful combiner, like :func:`optlab.rms_ratio`); its state is optax's,
    ``{"step_sizes": tree, "prev_updates": tree}``.

    ``one_step_late=True`` emits :math:`p_{t-1}` (zeroed where :math:`s_t < 0`) instead of
    :math:`p_t`, reproducing ``optax.scale_by_rprop`` up to optax 0.2.8, whose update lags one
    step behind (its first update is 0; google-deepmind/optax#1725).
    """
    _check_rprop_args(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size)

    def init_fn(params):
        return {"step_sizes": _zeros_like(params, fill=learning_rate),
                "prev_updates": _zeros_like(params)}

    def one(g, step, prev):
        s = g * prev.astype(g.dtype)
        factor = jnp.where(s > 0, jnp.asarray(eta_plus, step.dtype),
                           jnp.asarray(eta_minus, step.dtype))
        adapted = jnp.clip(step * factor, min_step_size, max_step_size).astype(step.dtype)
        step = jnp.where(s == 0, step, adapted)
        flipped = s < 0
        new = jnp.where(flipped, jnp.zeros_like(g), step.astype(g.dtype) * jnp.sign(g))
        out = jnp.where(flipped, jnp.zeros_like(g), prev.astype(g.dtype)) if one_step_late else new
        return out, step, new

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        grads = as_stream(updates, "sign_adapted_step")["g"]
        check_same_structure(grads, state["step_sizes"], "sign_adapted_step: updates",
                             "the optimizer state (from params)")
        out, steps, prev = tree_map_n(one, 3, grads, state["step_sizes"],
                                      state["prev_updates"])
        return out, {"step_sizes": cast_like(steps, state["step_sizes"]),
                     "prev_updates": cast_like(prev, state["prev_updates"])}

    return primitive(init_fn, update_fn, counted=False)


def rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
    *,
    one_step_late: bool = False,
) -> Primitive:
    r"""Rprop, resilient backpropagation (Riedmiller & Braun 1993), as iRprop⁻ (Igel & Hüsken
    2003, "Empirical evaluation of the improved Rprop learning algorithms").

    .. math::
       Δ_t = \mathrm{clip}\big(Δ_{t-1} \cdot \{η_+,\ η_-,\ 1\}\big)
       \text{ as } g_t\, p_{t-1} \{>, <, =\}\ 0,\qquad
       u_t = -p_t,\quad p_t = \begin{cases} 0 & g_t\, p_{t-1} < 0 \\ Δ_t\, \mathrm{sign}(g_t)
       & \text{else} \end{cases}

    with :math:`Δ_0` = ``learning_rate`` (the initial step size, not a scale: it must be a
    constant) and :math:`p_t` the ascent step (the step taken is :math:`-p_t`). State: step
    sizes and the previous step (2 × params). The same trajectory as ``torch.optim.Rprop``
    when ``learning_rate`` lies in [``min_step_size``, ``max_step_size``]. ``optax.rprop``
    (≤ 0.2.8) applies each step one update late; ``one_step_late=True`` reproduces it
    (:func:`sign_adapted_step`).
    """
    if callable(learning_rate):
        raise TypeError("learning_rate must be a number (rprop's initial step size), got a "
                        "callable; schedules do not apply to Rprop's adapted steps")
    return chain(
        sign_adapted_step(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size,
                          one_step_late=one_step_late),
        scale_by_learning_rate(1.0),
    )
