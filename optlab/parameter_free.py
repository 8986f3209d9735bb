r"""Parameter-free step sizes from distance estimates, as primitives (coin betting, COCOB, is
in :mod:`optlab.coin_betting`).

These methods replace the learning rate by an estimate of the distance D = ‖θ₀ − θ*‖ from the
initial point to a solution, built on the fly from the iterates and the gradients (DoG, DoWG,
D-Adaptation, Prodigy), or bet on the gradient's sign like a gambler with a growing wealth
(COCOB). What they read beyond the gradient is the *initial point* θ₀, kept once by
:func:`initial_params` and read from the stream by every statistic measured from it.

Vocabulary added here (each one statistic or one combination, named by its concept):

* :func:`initial_params` — the anchor θ₀, emitted under its name (optax's state names:
  ``init_params`` for DoG / DoWG, ``params0`` for Prodigy, ``init_particles`` for COCOB);
* :func:`max_distance` — :math:`\bar r_t = \max(\bar r_{t-1}, ‖θ_t − θ_0‖)` (or squared);
* :func:`sum_of_squared_norms` — :math:`G_t = G_{t-1} + w_t‖g_t‖^2`, optionally weighted by
  a scalar statistic (DoWG weights by :math:`\bar r_t^2`);
* :func:`distance_over_gradients` — the combiner :math:`u = \bar r / (\sqrt{G + ε_{root}} + ε)
  \cdot g`;
* :func:`prodigy_estimate`, :func:`dadapt_estimate` — the D estimates of Prodigy and
  D-Adaptation (scalar state d, a weighted gradient sum and a weighted numerator); they emit
  the D-scaled gradient for the moment accumulators and the step scalars ``dlr`` / ``estim_lr``;
* :func:`scaled_ratio` — the Adam ratio scaled by step statistics, with decoupled decay.

Scalar statistics (distances, sums of norms, d) are kept in the lowest-precision dtype of the
params, as optax does. Notation: g gradient, θ params, θ₀ initial params, t step (1 first),
η the learning-rate schedule (a multiplier, 1 by default).
"""


from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.accumulators import ema, ema_of_square
from optlab.optimizers import _check_args
from optlab.regularizers import l2_penalty, scale_by_learning_rate
from optlab.stream import (
    GRAD,
    Mask,
    Primitive,
    as_stream,
    cast_like,
    chain,
    empty_init,
    increment,
    lowest_dtype,
    own_copy,
    primitive,
    require_params,
    scalar_as,
    tree_inner,
    tree_map,
    zeros_like,
)

__all__ = [
    "dadapt_adamw",
    "dadapt_estimate",
    "distance_over_gradients",
    "dog",
    "dowg",
    "initial_params",
    "max_distance",
    "prodigy",
    "prodigy_estimate",
    "scaled_ratio",
    "sum_of_squared_norms",
]


# ------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------


def _scalar_dtype(params: Any) -> Any:
    """optax's dtype for scalar statistics: the lowest-precision dtype of the params."""
    return lowest_dtype(params)


def _scale(scalar: Any, x: jax.Array) -> jax.Array:
    """``scalar * x`` in the dtype of ``x``."""
    return (scalar_as(scalar, x) * x).astype(x.dtype)


def _check_betas(betas: Any) -> tuple[Any, Any]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
    _checks.check_decay("betas[0]", betas[0], allow_schedule=False)
    _checks.check_decay("betas[1]", betas[1], allow_schedule=False)
    return betas[0], betas[1]


# ------------------------------------------------------------------------------------------
# The anchor and distances from it
# ------------------------------------------------------------------------------------------


def initial_params(name: str = "init_params") -> Primitive:
    r"""Keeps the initial point :math:`θ_0` (state ``{name: θ₀}``) and emits it as ``name``.

    The state is a copy of the params given to ``init``, so the params and the state can be
    donated together.
    """

    def init_fn(params):
        return {name: tree_map(own_copy, params)}

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        return as_stream(updates, "initial_params").add(name, state[name]), state

    return primitive(init_fn, update_fn, counted=False)


def max_distance(
    name: str,
    anchor: str = "init_params",
    *,
    squared: bool = False,
    initial_value: Any = 0.0,
) -> Primitive:
    r"""Running maximum of the distance travelled from the anchor :math:`θ_0`.

    .. math:: \bar r_t = \max(\bar r_{t-1}, ‖θ_t - θ_0‖),\qquad \bar r_0 = r_ε

    (with ``squared``, of :math:`‖θ_t - θ_0‖^2`). ``initial_value`` is :math:`r_ε`, a number
    or a function of the initial params (DoG's heuristic :math:`α(1 + ‖θ_0‖)`). The anchor is
    statistic ``anchor`` (:func:`initial_params`); the state is the scalar ``{name: r̄}``.
    """

    def init_fn(params):
        dtype = _scalar_dtype(params)
        if callable(initial_value) and any(isinstance(x, jax.ShapeDtypeStruct)
                                           for x in jax.tree.leaves(params)):
            return {name: jax.ShapeDtypeStruct((), dtype)}  # abstract init: r_ε reads values
        r0 = initial_value(params) if callable(initial_value) else initial_value
        return {name: jnp.asarray(r0, dtype)}

    def update_fn(updates, state, params, count, **extra):
        del count, extra
        require_params(params, "max_distance")
        stream = as_stream(updates, "max_distance")
        dist = optax.tree.norm(optax.tree.sub(stream[anchor], params), squared=squared)
        r = jnp.maximum(state[name], dist).astype(state[name].dtype)
        return stream.add(name, r), {name: r}

    return primitive(init_fn, update_fn, counted=False)


def sum_of_squared_norms(name: str, *, weight: str | None = None, source: str = GRAD) -> Primitive:
    r"""Running sum of squared gradient norms, optionally weighted by a scalar statistic.

    .. math:: G_t = G_{t-1} + w_t ‖x_t‖^2,\qquad G_0 = 0

    with :math:`w_t` the statistic ``weight`` (1 when None): DoG sums :math:`‖g‖^2`, DoWG
    weights each term by :math:`\bar r_t^2`. State: the scalar ``{name: G}``.
    """

    def init_fn(params):
        return {name: jnp.zeros([], _scalar_dtype(params))}

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream = as_stream(updates, "sum_of_squared_norms")
        sq = optax.tree.norm(stream[source], squared=True)
        if weight is not None:
            sq = stream[weight] * sq
        total = (sq + state[name]).astype(state[name].dtype)
        return stream.add(name, total), {name: total}

    return primitive(init_fn, update_fn, counted=False)


def distance_over_gradients(
    distance: str,
    gradients: str,
    *,
    eps: Any = 0.0,
    eps_root: Any = 0.0,
    initial_step: Any = None,
    source: str = GRAD,
) -> Primitive:
    r"""Combiner: the gradient scaled by a distance over a gradient-norm sum (Ivgi et al. 2023).

    .. math:: u_t = \frac{\bar r_t}{\sqrt{G_t + ε_{root}} + ε}\, g_t

    with :math:`\bar r_t` the statistic ``distance`` and :math:`G_t` the statistic
    ``gradients``. ``initial_step`` replaces the step size at t = 1 (DoG's
    ``init_step=("learning_rate", η₀)``).
    """

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "distance_over_gradients")
        step = stream[distance] / (jnp.sqrt(stream[gradients] + eps_root) + eps)
        if initial_step is not None:
            step = jnp.where(count == 0, initial_step, step)
        return tree_map(lambda g: _scale(step, g), stream[source]), state

    return primitive(empty_init, update_fn, counted=initial_step is not None)


# ------------------------------------------------------------------------------------------
# D-Adaptation and Prodigy: estimates of D that scale an Adam step
# ------------------------------------------------------------------------------------------


def _adam_correction(beta1: Any, beta2: Any, t: jax.Array) -> jax.Array:
    """√(1 − β₂ᵗ) / (1 − β₁ᵗ): Adam's bias correction folded into the step size."""
    return (1 - beta2**t) ** 0.5 / (1 - beta1**t)


def prodigy_estimate(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[Any, Any] = (0.9, 0.999),
    beta3: Any = None,
    estim_lr0: Any = 1e-6,
    estim_lr_coef: Any = 1.0,
    safeguard_warmup: bool = False,
    *,
    anchor: str = "params0",
) -> Primitive:
    r"""Prodigy's estimate of the distance to the solution (Mishchenko & Defazio 2024).

    With :math:`d_t` the current estimate, :math:`η_t` the schedule and
    :math:`λ_t = d_t η_t \sqrt{1-β_2^t}/(1-β_1^t)` (``dlr``):

    .. math::
       s_t = β_3 s_{t-1} + \tfrac{λ_t d_t}{d_0} g_t,\quad
       r_t = β_3 r_{t-1} + \tfrac{d_t}{d_0} λ_t ⟨g_t, θ_0 - θ_t⟩,\quad
       d_{t+1} = \max\Big(d_t,\ c\,\frac{r_t}{‖s_t‖_1}\Big)

    (``safeguard_warmup``: :math:`d_t^2/d_0` instead of :math:`λ_t d_t/d_0` in s). Emits
    ``"dg"`` = :math:`d_t g_t` (what Prodigy's Adam moments average), ``"dlr"`` =
    :math:`λ_t` and ``"estim_lr"`` = :math:`d_{t+1}`. State (optax's names): ``grad_sum`` s,
    ``estim_lr`` d, ``numerator_weighted`` r. The anchor θ₀ is statistic ``anchor``.
    """
    beta1, beta2 = betas
    if beta3 is None:
        beta3 = beta2**0.5

    def init_fn(params):
        dtype = _scalar_dtype(params)
        return {"grad_sum": zeros_like(params), "estim_lr": jnp.asarray(estim_lr0, dtype),
                "numerator_weighted": jnp.zeros([], dtype)}

    def update_fn(updates, state, params, count, **extra):
        del extra
        require_params(params, "prodigy_estimate")
        stream = as_stream(updates, "prodigy_estimate")
        g, d = stream.grad, state["estim_lr"]
        sched = _checks.resolve(learning_rate, count)
        dlr = jnp.asarray(d * sched * _adam_correction(beta1, beta2, increment(count)), d.dtype)
        dg = tree_map(lambda x: _scale(d, x), g)
        numerator = tree_inner(g, optax.tree.sub(stream[anchor], params))
        weight = d / estim_lr0 if safeguard_warmup else dlr / estim_lr0
        grad_sum = tree_map(lambda s, x: _scale(beta3, s) + _scale(weight, x),
                            state["grad_sum"], dg)
        r = beta3 * state["numerator_weighted"] + (d / estim_lr0) * dlr * numerator
        l1 = optax.tree.norm(grad_sum, ord=1)
        d_next = jnp.maximum(d, estim_lr_coef * r / l1).astype(d.dtype)
        new_state = {"grad_sum": cast_like(grad_sum, state["grad_sum"]), "estim_lr": d_next,
                     "numerator_weighted": r.astype(d.dtype)}
        return stream.add("dg", dg).add("dlr", dlr).add("estim_lr", d_next), new_state

    return primitive(init_fn, update_fn, counted=True)


def dadapt_estimate(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[Any, Any] = (0.9, 0.999),
    eps: Any = 1e-8,
    estim_lr0: Any = 1e-6,
) -> Primitive:
    r"""D-Adaptation's estimate of D in Adam's geometry (Defazio & Mishchenko 2023).

    With :math:`λ_t = d_t η_t \sqrt{1-β_2^t}/(1-β_1^t)` (``dlr``), :math:`b = \sqrt{β_2}`
    and :math:`v` Adam's second moment:

    .. math::
       r_t = b\,r_{t-1} + (1-b)λ_t\Big⟨g_t, \frac{s_{t-1}}{\sqrt{v_{t-1}} + ε}\Big⟩,\quad
       s_t = b\,s_{t-1} + (1-b)λ_t g_t,\quad
       d_{t+1} = \max\Big(d_t, \frac{r_t}{(1-b)‖s_t‖_1}\Big)

    The numerator weights the gradient sum by the *previous* Adam preconditioner, so the
    estimator owns v: it runs :func:`~optlab.accumulators.ema_of_square` ``"exp_avg_sq"``
    (β₂) itself, after reading :math:`v_{t-1}`, and emits it. Also emits ``"dlr_g"`` =
    :math:`λ_t g_t` (what the first moment averages) and ``"dlr"`` = :math:`λ_t`. State
    (optax's names): ``exp_avg_sq``, ``grad_sum``, ``estim_lr``, ``numerator_weighted``.
    """
    beta1, beta2 = betas
    second_moment = ema_of_square("exp_avg_sq", beta2)

    def init_fn(params):
        dtype = _scalar_dtype(params)
        return {**second_moment.step_init(params), "grad_sum": zeros_like(params),
                "estim_lr": jnp.asarray(estim_lr0, dtype),
                "numerator_weighted": jnp.zeros([], dtype)}

    def update_fn(updates, state, params, count, **extra):
        del extra
        stream = as_stream(updates, "dadapt_estimate")
        g, d, s, r = (stream.grad, state["estim_lr"], state["grad_sum"],
                      state["numerator_weighted"])
        b = beta2**0.5
        sched = _checks.resolve(learning_rate, count)
        dlr = (d * sched * _adam_correction(beta1, beta2, increment(count))).astype(r.dtype)
        weighted = tree_map(lambda s, v: s / (jnp.sqrt(v) + scalar_as(eps, v)), s,
                            state["exp_avg_sq"])
        numerator = tree_inner(g, weighted)
        stream, v = second_moment.step_update(stream, {"exp_avg_sq": state["exp_avg_sq"]},
                                              params, count)
        s = tree_map(lambda s, x: _scale(b, s) + _scale((1 - b) * dlr, x), s, g)
        r = b * r + (1 - b) * dlr * numerator
        d_next = jnp.maximum(d, r / ((1 - b) * optax.tree.norm(s, ord=1))).astype(d.dtype)
        new_state = {**v, "grad_sum": cast_like(s, state["grad_sum"]), "estim_lr": d_next,
                     "numerator_weighted": r.astype(d.dtype)}
        dlr_g = tree_map(lambda x: _scale(dlr, x), g)
        return stream.add("dlr_g", dlr_g).add("dlr", dlr), new_state

    return primitive(init_fn, update_fn, counted=True)


def scaled_ratio(
    numerator: str,
    denominator: str,
    *,
    eps: Any = 1e-8,
    step: str | None = None,
    eps_scale: str | None = None,
    weight_decay: Any = 0.0,
    decay_step: str | None = None,
) -> Primitive:
    r"""Combiner: Adam's ratio scaled by step statistics, plus decoupled weight decay.

    .. math:: u = a\,\frac{n}{\sqrt{v} + e\,ε} + λ\,c\,θ

    with n, v the statistics ``numerator``, ``denominator`` and a, e, c the scalar statistics
    named by ``step``, ``eps_scale``, ``decay_step`` (1 when None). Prodigy uses
    a = c = :math:`λ_t` and e = :math:`d_{t+1}`; D-Adaptation (whose first moment already
    carries :math:`λ_t`) a = e = 1 and c = :math:`λ_t`.
    """

    def update_fn(updates, state, params, count, **extra):
        del count, extra
        stream = as_stream(updates, "scaled_ratio")
        a = 1.0 if step is None else stream[step]
        e = eps if eps_scale is None else stream[eps_scale] * eps
        c = None if decay_step is None else stream[decay_step] * weight_decay

        def one(n, v, p=None):
            out = _scale(a, n) / (jnp.sqrt(v) + scalar_as(e, v))
            if p is not None:
                out = out + _scale(weight_decay if c is None else c, p)
            return out.astype(n.dtype)

        if decay_step is None and _checks._concrete_scalar(weight_decay) == 0.0:
            return tree_map(one, stream[numerator], stream[denominator]), state
        require_params(params, "scaled_ratio")
        return tree_map(one, stream[numerator], stream[denominator], params), state

    return primitive(empty_init, update_fn, counted=False)


# ------------------------------------------------------------------------------------------
# The optimizers
# ------------------------------------------------------------------------------------------


InitStep = tuple[Literal["distance", "learning_rate", "heuristic"], Any]
_INIT_STEPS = ["distance", "learning_rate", "heuristic"]


def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: InitStep = ("heuristic", 1e-6),
    eps: Any = 1e-8,
    weight_decay: Any = None,
    mask: Mask = None,
) -> Primitive:
    r"""DoG, Distance over Gradients (Ivgi, Hinder & Carmon 2023).

    .. math::
       \bar r_t = \max(\bar r_{t-1}, ‖θ_t - θ_0‖),\quad G_t = G_{t-1} + ‖g_t‖^2,\quad
       u_t = -η_t\, \frac{\bar r_t}{\sqrt{G_t + ε}}\, g_t

    ``init_step`` is ``(tag, value)``: ``"distance"`` sets :math:`\bar r_0` = value;
    ``"heuristic"`` sets :math:`\bar r_0 = \mathrm{value}\,(1 + ‖θ_0‖)` (1e-6; the authors
    suggest 1e-4 with batch norm); ``"learning_rate"`` sets :math:`\bar r_0 = 0` and the first
    step size to value. ``weight_decay`` is coupled L2 (added to g), as in optax; η is an
    optional schedule multiplier. State: θ₀ (``init_params``) and two scalars, as optax.
    ``init`` must receive the actual initial params (θ₀ is the anchor of every distance, and
    the heuristic reads its norm). The authors recommend averaging the iterates.
    """
    if not isinstance(init_step, (tuple, list)) or len(init_step) != 2:
        raise TypeError(f"init_step must be a pair (tag, value), got {init_step!r}")
    tag, value = init_step
    _checks.check_choice("init_step[0]", tag, _INIT_STEPS)
    _checks.check_nonnegative("init_step[1]", value)
    _check_args(learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    initial = {"distance": value, "learning_rate": 0.0,
               "heuristic": lambda params: value * (1 + optax.tree.norm(params))}[tag]
    return chain(
        *([l2_penalty(weight_decay, mask)] if weight_decay is not None else []),
        initial_params("init_params"),
        max_distance("max_dist", "init_params", initial_value=initial),
        sum_of_squared_norms("sum_sq_norm_grads"),
        distance_over_gradients("max_dist", "sum_sq_norm_grads", eps_root=eps,
                                initial_step=value if tag == "learning_rate" else None),
        scale_by_learning_rate(learning_rate),
    )


def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: Any = None,
    eps: Any = 1e-4,
    weight_decay: Any = None,
    mask: Mask = None,
) -> Primitive:
    r"""DoWG, Distance over Weighted Gradients (Khaled, Mishchenko & Jin 2023).

    .. math::
       \bar r_t^2 = \max(\bar r_{t-1}^2, ‖θ_t - θ_0‖^2),\quad
       v_t = v_{t-1} + \bar r_t^2 ‖g_t‖^2,\quad
       u_t = -η_t\, \frac{\bar r_t^2}{\sqrt{v_t} + ε}\, g_t

    :math:`\bar r_0^2` = ``init_estim_sq_dist`` (default ε). ``weight_decay`` is coupled L2,
    as in optax; η an optional schedule multiplier. State: θ₀ and two scalars, as optax.
    """
    _check_args(learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    if init_estim_sq_dist is not None:
        _checks.check_nonnegative("init_estim_sq_dist", init_estim_sq_dist)
    return chain(
        *([l2_penalty(weight_decay, mask)] if weight_decay is not None else []),
        initial_params("init_params"),
        max_distance("estim_sq_dist", "init_params", squared=True,
                     initial_value=eps if init_estim_sq_dist is None else init_estim_sq_dist),
        sum_of_squared_norms("weighted_sq_norm_grads", weight="estim_sq_dist"),
        distance_over_gradients("estim_sq_dist", "weighted_sq_norm_grads", eps=eps),
        scale_by_learning_rate(learning_rate),
    )


def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[Any, Any] = (0.9, 0.999),
    beta3: Any = None,
    eps: Any = 1e-8,
    estim_lr0: Any = 1e-6,
    estim_lr_coef: Any = 1.0,
    weight_decay: Any = 0.0,
    safeguard_warmup: bool = False,
) -> Primitive:
    r"""Prodigy (Mishchenko & Defazio 2024): AdamW whose step size is an estimate of D.

    With :math:`d_t` from :func:`prodigy_estimate` (:math:`d_0` = ``estim_lr0``,
    non-decreasing) and :math:`λ_t = d_t η_t \sqrt{1-β_2^t}/(1-β_1^t)`:

    .. math::
       m_t = β_1 m_{t-1} + (1-β_1) d_t g_t,\quad v_t = β_2 v_{t-1} + (1-β_2) d_t^2 g_t^2,\\
       u_t = -λ_t \Big(\frac{m_t}{\sqrt{v_t} + d_{t+1} ε} + λ θ_t\Big)

    η (``learning_rate``) is a schedule multiplier with base 1; β₃ defaults to √β₂. State
    (optax's names): ``exp_avg``, ``exp_avg_sq``, ``grad_sum``, ``params0`` and two scalars:
    4 × params, as optax.
    """
    beta1, beta2 = _check_betas(betas)
    _check_args(learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    _checks.check_nonnegative("weight_decay", weight_decay)  # a number, as in optax
    if beta3 is not None:
        _checks.check_decay("beta3", beta3, allow_schedule=False)
    _checks.check_positive("estim_lr0", estim_lr0)
    _checks.check_positive("estim_lr_coef", estim_lr_coef)
    return chain(
        initial_params("params0"),
        prodigy_estimate(learning_rate, (beta1, beta2), beta3, estim_lr0, estim_lr_coef,
                         safeguard_warmup, anchor="params0"),
        ema("exp_avg", beta1, source="dg"),
        ema_of_square("exp_avg_sq", beta2, source="dg"),
        scaled_ratio("exp_avg", "exp_avg_sq", eps=eps, step="dlr", eps_scale="estim_lr",
                     weight_decay=weight_decay, decay_step="dlr"),
        scale_by_learning_rate(1.0),
    )


def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple[Any, Any] = (0.9, 0.999),
    eps: Any = 1e-8,
    estim_lr0: Any = 1e-6,
    weight_decay: Any = 0.0,
) -> Primitive:
    r"""D-Adaptation AdamW (Defazio & Mishchenko 2023): AdamW whose step size estimates D.

    With :math:`d_t` from :func:`dadapt_estimate` (D in the ℓ∞ geometry of Adam's
    preconditioner) and :math:`λ_t = d_t η_t \sqrt{1-β_2^t}/(1-β_1^t)`:

    .. math::
       m_t = β_1 m_{t-1} + (1-β_1) λ_t g_t,\quad v_t = β_2 v_{t-1} + (1-β_2) g_t^2,\quad
       u_t = -\frac{m_t}{\sqrt{v_t} + ε} - λ λ_t θ_t

    η (``learning_rate``) is a schedule multiplier with base 1. State (optax's names):
    ``exp_avg``, ``exp_avg_sq``, ``grad_sum`` and two scalars: 3 × params, as optax.
    """
    beta1, beta2 = _check_betas(betas)
    _check_args(learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    _checks.check_nonnegative("weight_decay", weight_decay)  # a number, as in optax
    _checks.check_positive("estim_lr0", estim_lr0)
    return chain(
        dadapt_estimate(learning_rate, (beta1, beta2), eps, estim_lr0),
        ema("exp_avg", beta1, source="dlr_g"),
        scaled_ratio("exp_avg", "exp_avg_sq", eps=eps, weight_decay=weight_decay,
                     decay_step="dlr"),
        scale_by_learning_rate(1.0),
    )
