"""Accumulators: transforms that add one named statistic of the gradient to the stream.

Each accumulator owns exactly the state of its statistic, stored under the statistic's name
(``{"mu": tree}``, so ``optax.tree.get(state, "mu")`` finds it), and writes the statistic —
bias-corrected if asked — into the :class:`~optlab.stream.Stream` under ``name``. The step
count comes from the enclosing :func:`optlab.chain` (one counter per optimizer); an
accumulator used on its own keeps its own. A plain update tree that reaches an accumulator is
taken as the gradient ``g``.

Notation: t is the step, 1 at the first update; β a decay rate; x the source statistic
(the gradient g unless ``source`` names another statistic).
"""

from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.stream import (
    GRAD,
    Primitive,
    abs_sq,
    as_stream,
    cast_like,
    check_same_structure,
    empty_init,
    increment,
    per_dtype,
    primitive,
    scalar_as,
    tree_map,
    zeros_like,
)

__all__ = [
    "additive_ema_of_square",
    "debias",
    "difference",
    "ema",
    "ema_of_abs_max",
    "ema_of_cube",
    "ema_of_square",
    "ema_of_squared_deviation",
    "mix",
    "nadam_momentum",
    "normalized",
    "running_max",
    "sum_of_squares",
    "trace",
    "weighted_sum",
]


def _check_name(name: Any, arg: str = "name") -> None:
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise TypeError(f"{arg} must be a statistic name: a Python identifier not starting "
                        f"with '_' (it names the state entry), got {name!r}")


def _read_source(updates: Any, state_tree: Any, source: str, who: str):
    stream = as_stream(updates, who)
    x = stream[source]
    check_same_structure(x, state_tree, f"{who}: updates", "the optimizer state (from params)")
    return stream, x


def _power(order: int) -> Callable[[jax.Array], jax.Array]:
    if order == 1:
        return lambda x: x
    if order == 2:
        return abs_sq
    return lambda x: x**order


def _bias_correction(decay: Any, t: jax.Array) -> Callable[[jax.Array], Any]:
    """1 − βᵗ, computed once in the default float dtype and cast once per leaf dtype (a
    low-precision βᵗ would round to 1)."""
    correction = 1 - jnp.asarray(decay, jnp.result_type(float)) ** t
    return per_dtype(lambda dtype: correction)


# ------------------------------------------------------------------------------------------
# Exponential moving averages
# ------------------------------------------------------------------------------------------


def _ema(
    name: str,
    decay: ScalarOrSchedule,
    order: int,
    *,
    debias: bool,
    nesterov: bool = False,
    emit: str = "new",
    source: str = GRAD,
    center: str | None = None,
    shift: float = 0.0,
    dtype: Any = None,
    initial_value: float = 0.0,
    who: str,
) -> Primitive:
    """EMA of ``(x − c)^order`` (c the statistic ``center``, if any) plus ``shift`` per step.

    With ``emit="previous"`` and ``debias`` it emits :math:`s_{t-1}/(1-β^{t-1})`, and 1 at
    t = 1 where no estimate exists yet (only :func:`ema_of_squared_deviation` allows it).
    """
    _check_name(name)
    _check_name(source, "source")
    if center is not None:
        _check_name(center, "center")
    _checks.check_decay("decay", decay)
    _checks.check_choice("emit", emit, ["new", "previous"])
    if debias and callable(decay):
        raise ValueError("decay must be a constant when debias=True (bias correction 1 − βᵗ "
                         "assumes a fixed β); use debias=False with a decay schedule")
    if nesterov and emit != "new":
        raise ValueError("emit='previous' cannot be combined with nesterov=True")
    if debias and emit != "new" and center is None:
        raise ValueError("emit='previous' cannot be combined with debias=True "
                         "(m_{t-1} has no bias correction at t = 1)")
    power = _power(order)
    add_shift = _checks._concrete_scalar(shift) != 0.0

    def init_fn(params):
        return {name: zeros_like(params, dtype, initial_value)}

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream, x = _read_source(updates, state[name], source, who)
        if center is not None:
            x = tree_map(lambda g, c: g - c, x, stream[center])
        beta = _checks.resolve(decay, count)
        b, one_minus_b = per_dtype(lambda _: beta), per_dtype(lambda _: 1 - beta)
        mu = tree_map(lambda g, m: b(g, m) * m + one_minus_b(g, m) * power(g), x, state[name])
        if add_shift:
            mu = tree_map(lambda m: m + scalar_as(shift, m), mu)
        if emit == "previous" and debias:
            bc = _bias_correction(beta, count)
            first = count == 0
            out = tree_map(lambda s: jnp.where(first, jnp.ones_like(s), s / bc(s)), state[name])
        elif emit == "previous":
            out = state[name]
        elif nesterov:
            # Dozat (2016) look-ahead, optax convention: β m̂_{t+1} + (1 − β) x / (1 − βᵗ).
            if debias:
                t = increment(count)
                bc_next, bc = _bias_correction(beta, increment(t)), _bias_correction(beta, t)
                out = tree_map(lambda m, g: b(m, g) * m / bc_next(m) + one_minus_b(m, g) * g
                               / bc(m), mu, x)
            else:
                out = tree_map(lambda m, g: b(m, g) * m + one_minus_b(m, g) * g, mu, x)
        elif debias:
            bc = _bias_correction(beta, increment(count))
            out = tree_map(lambda m: m / bc(m), mu)
        else:
            out = mu
        return stream.add(name, out), {name: cast_like(mu, state[name])}

    return primitive(init_fn, update_fn, counted=debias or callable(decay))


def ema(
    name: str,
    decay: ScalarOrSchedule,
    *,
    debias: bool = False,
    nesterov: bool = False,
    emit: Literal["new", "previous"] = "new",
    source: str = GRAD,
    dtype: Any = None,
    initial_value: float = 0.0,
) -> Primitive:
    r"""Exponential moving average of a statistic (first moment).

    .. math:: m_t = β m_{t-1} + (1-β) x_t, \qquad \hat m_t = m_t / (1-β^t)\ \text{if debias}

    Args:
      name: statistic written to the stream (and the name of its state entry).
      decay: β ∈ [0, 1), a constant or a schedule of the step (schedules need ``debias=False``).
      debias: emit the bias-corrected :math:`\hat m_t` (Kingma & Ba 2015).
      nesterov: emit Dozat's (2016) look-ahead :math:`β \hat m_{t+1} + (1-β) x_t/(1-β^t)`
        (optax's NAdam convention).
      emit: ``"new"`` emits :math:`m_t`; ``"previous"`` emits :math:`m_{t-1}` (Lion reads the
        momentum before it is updated, Chen et al. 2023).
      source: statistic to average (default: the gradient ``"g"``).
      dtype: dtype of the stored average (default: that of the params).
      initial_value: :math:`m_0` (Yogi starts both moments at 1e-6).
    """
    return _ema(name, decay, 1, debias=debias, nesterov=nesterov, emit=emit, source=source,
                dtype=dtype, initial_value=initial_value, who="ema")


def ema_of_square(
    name: str,
    decay: ScalarOrSchedule,
    *,
    debias: bool = False,
    initial_value: float = 0.0,
    source: str = GRAD,
    emit: Literal["new", "previous"] = "new",
    dtype: Any = None,
) -> Primitive:
    r"""EMA of the squared statistic (second moment): :math:`v_t = β v_{t-1} + (1-β) x_t^2`.

    Emits :math:`\hat v_t = v_t/(1-β^t)` when ``debias``. ``initial_value`` is :math:`v_0`
    (RMSprop's ``initial_scale``). Used by Adam (Kingma & Ba 2015) and RMSprop (Tieleman &
    Hinton 2012). ``emit="previous"`` emits :math:`v_{t-1}`, the estimate before this step's
    gradient (ADOPT normalises :math:`g_t` by it, Taniguchi et al. 2024); ``dtype`` is the
    dtype of the stored average (default: that of the params).
    """
    _checks.check_nonnegative("initial_value", initial_value)
    return _ema(name, decay, 2, debias=debias, source=source, initial_value=initial_value,
                emit=emit, dtype=dtype, who="ema_of_square")


def ema_of_cube(
    name: str, decay: ScalarOrSchedule, *, debias: bool = False, source: str = GRAD
) -> Primitive:
    r"""EMA of the cubed statistic, Bello et al. (2017)'s :math:`\hat γ`:
    :math:`γ_t = β γ_{t-1} + (1-β) x_t^3`, debiased like Adam's moments when ``debias``."""
    return _ema(name, decay, 3, debias=debias, source=source, who="ema_of_cube")


def ema_of_squared_deviation(
    name: str,
    decay: float,
    center: str = "mu",
    *,
    eps_root: float = 0.0,
    debias: bool = False,
    emit: Literal["new", "previous"] = "new",
    source: str = GRAD,
) -> Primitive:
    r"""EMA of the squared deviation of a statistic from its prediction (AdaBelief's "belief").

    .. math:: s_t = β s_{t-1} + (1-β)(x_t - c_t)^2 + ε_{root}

    with c the statistic ``center``: the first moment :math:`m_t` for AdaBelief (Zhuang et al.
    2020), where :math:`s_t` measures how far the gradient strays from its prediction, or the
    previous one :math:`m_{t-1}` (from ``ema(..., emit="previous")``) for ACProp (Zhuang et
    al. 2021). :math:`ε_{root}` is added to the stored average each step, as optax does.
    Emits :math:`\hat s_t = s_t/(1-β^t)` when ``debias``; with ``emit="previous"`` it emits
    :math:`s_{t-1}` (ACProp's asynchronous denominator), debiased as
    :math:`s_{t-1}/(1-β^{t-1})` and 1 at t = 1, where no estimate exists yet (optax's ACProp).
    """
    _checks.check_decay("decay", decay, allow_schedule=False)
    _checks.check_nonnegative("eps_root", eps_root)
    return _ema(name, decay, 2, debias=debias, emit=emit, source=source, center=center,
                shift=eps_root, who="ema_of_squared_deviation")


def additive_ema_of_square(
    name: str,
    decay: float,
    *,
    debias: bool = False,
    initial_value: float = 0.0,
    source: str = GRAD,
) -> Primitive:
    r"""Yogi's additive second moment (Zaheer et al. 2018).

    .. math:: v_t = v_{t-1} - (1-β)\,\mathrm{sign}(v_{t-1} - x_t^2)\, x_t^2

    Adam's EMA moves v by :math:`(1-β)(x^2 - v)`, a step that grows with v; Yogi's step has
    the same sign but a size set by :math:`x^2` alone, so a large v shrinks slowly and the
    effective learning rate cannot jump up. Emits :math:`v_t/(1-β^t)` when ``debias``.
    ``initial_value`` is :math:`v_0` (optax's Yogi: 1e-6).
    """
    _check_name(name)
    _check_name(source, "source")
    _checks.check_decay("decay", decay, allow_schedule=False)
    _checks.check_nonnegative("initial_value", initial_value)

    def init_fn(params):
        return {name: zeros_like(params, fill=initial_value)}

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream, x = _read_source(updates, state[name], source, "additive_ema_of_square")
        one_minus_b = per_dtype(lambda _: 1 - decay)

        def one(g, v):
            g2 = abs_sq(g)
            return v - one_minus_b(g, v) * jnp.sign(v - g2) * g2

        v = tree_map(one, x, state[name])
        out = v
        if debias:
            bc = _bias_correction(decay, increment(count))
            out = tree_map(lambda v: v / bc(v), v)
        return stream.add(name, out), {name: cast_like(v, state[name])}

    return primitive(init_fn, update_fn, counted=debias)


# ------------------------------------------------------------------------------------------
# Gradient differences and mixtures of statistics (Adan, AdEMAMix)
# ------------------------------------------------------------------------------------------


def difference(name: str, source: str = GRAD) -> Primitive:
    r"""Change of a statistic between consecutive steps (Adan's gradient difference).

    .. math:: Δx_t = x_t - x_{t-1}\ (t > 1),\qquad Δx_1 = 0

    The state is :math:`x_{t-1}`, stored under the source's name (``{"g": ...}``, optax's
    Adan field), so the difference costs one tree of state.
    """
    _check_name(name)
    _check_name(source, "source")

    def init_fn(params):
        return {source: zeros_like(params)}

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream, x = _read_source(updates, state[source], source, "difference")
        first = count == 0
        diff = tree_map(lambda g, p: jnp.where(first, jnp.zeros_like(g), g - p), x,
                        state[source])
        return stream.add(name, diff), {source: cast_like(x, state[source])}

    return primitive(init_fn, update_fn, counted=True)


def mix(name: str, a: str, b: str, weight: ScalarOrSchedule) -> Primitive:
    r"""Adds the mixture :math:`a + w_t\, b` of two statistics to the stream (no state).

    AdEMAMix mixes a slow momentum into Adam's, :math:`\hat m_1 + α m_2` (Pagliardini et al.
    2024); Adan's Nesterov terms are :math:`g_t + c\,Δg_t` and :math:`\hat m_t + c\,\hat v_t`
    (Xie et al. 2022). ``weight`` is a number or a schedule of the step (0 first: AdEMAMix's
    α warm-up).
    """
    _check_name(name)
    _check_name(a, "a")
    _check_name(b, "b")
    _checks.check_number("weight", weight, allow_schedule=True)

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "mix")
        w = per_dtype(lambda _: _checks.resolve(weight, count))
        out = tree_map(lambda x, y: x + w(x, y) * y, stream[a], stream[b])
        return stream.add(name, out), state

    return primitive(empty_init, update_fn, counted=callable(weight))


def normalized(
    name: str,
    denominator: str,
    *,
    source: str = GRAD,
    eps: float = 1e-6,
    clip: ScalarOrSchedule | None = None,
) -> Primitive:
    r"""Adds a statistic normalised by the root of another, optionally clipped (ADOPT).

    .. math:: y_t = \mathrm{clip}\big(x_t / \max(\sqrt{d_t}, ε),\ -c_t,\ c_t\big)

    with :math:`c_t` = ``clip``, a number or a schedule of the step (0 first), or no clipping
    when ``clip`` is None. ADOPT
    (Taniguchi et al. 2024) normalises :math:`g_t` by the *previous* second moment
    :math:`v_{t-1}` (``ema_of_square(..., emit="previous")``), which decorrelates the two and
    lets the momentum average normalised gradients.
    """
    _check_name(name)
    _check_name(denominator, "denominator")
    _check_name(source, "source")
    _checks.check_nonnegative("eps", eps)
    if clip is not None:
        _checks.check_nonnegative("clip", clip, allow_schedule=True)

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "normalized")
        c = None if clip is None else per_dtype(lambda _: _checks.resolve(clip, count))

        def one(x, d):
            y = x / jnp.maximum(jnp.sqrt(d), scalar_as(eps, d))
            if c is not None:
                y = jnp.clip(y, -c(y), c(y))
            return y

        return stream.add(name, tree_map(one, stream[source], stream[denominator])), state

    return primitive(empty_init, update_fn, counted=callable(clip))


# ------------------------------------------------------------------------------------------
# Momentum trace, NAdam (PyTorch) momentum
# ------------------------------------------------------------------------------------------


def trace(
    name: str,
    decay: ScalarOrSchedule,
    *,
    nesterov: bool = False,
    source: str = GRAD,
    dtype: Any = None,
) -> Primitive:
    r"""Momentum trace (heavy ball, Polyak 1964): :math:`m_t = x_t + μ m_{t-1}`.

    Emits :math:`m_t`, or Nesterov's :math:`x_t + μ m_t` (Sutskever et al. 2013) when
    ``nesterov``. Equals ``torch.optim.SGD``'s momentum buffer with ``dampening=0``.
    """
    _check_name(name)
    _checks.check_decay("decay", decay)

    def init_fn(params):
        return {name: zeros_like(params, dtype)}

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream, x = _read_source(updates, state[name], source, "trace")
        mu = per_dtype(lambda _: _checks.resolve(decay, count))
        m = tree_map(lambda g, t: g + mu(g, t) * t, x, state[name])
        out = tree_map(lambda g, t: g + mu(g, t) * t, x, m) if nesterov else m
        return stream.add(name, out), {name: cast_like(m, state[name])}

    return primitive(init_fn, update_fn, counted=callable(decay))


def nadam_momentum(
    name: str,
    b1: float = 0.9,
    momentum_decay: float = 0.004,
    *,
    source: str = GRAD,
    dtype: Any = None,
) -> Primitive:
    r"""Nesterov momentum with PyTorch NAdam's momentum schedule (Dozat 2016).

    .. math::
       μ_t = β_1 (1 - ½\, 0.96^{tψ}),\quad m_t = β_1 m_{t-1} + (1-β_1) g_t,\\
       \hat m_t = \frac{μ_{t+1} m_t}{1 - \prod_{i\le t+1} μ_i}
                + \frac{(1-μ_t) g_t}{1 - \prod_{i \le t} μ_i}

    with ψ = ``momentum_decay`` (0.004 in Dozat's paper and ``torch.optim.NAdam``). The state
    is the average and the running product :math:`\prod_{i \le t} μ_i` (``mu_product``).
    """
    _check_name(name)
    _checks.check_decay("b1", b1, allow_schedule=False)
    _checks.check_nonnegative("momentum_decay", momentum_decay)

    def mu_at(t):
        return b1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))

    def init_fn(params):
        return {name: zeros_like(params, dtype), "mu_product": jnp.ones([], jnp.result_type(float))}

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream, g = _read_source(updates, state[name], source, "nadam_momentum")
        prod = state["mu_product"]
        t = increment(count).astype(prod.dtype)
        mu_t, mu_next = mu_at(t), mu_at(t + 1)
        prod = prod * mu_t
        a = per_dtype(lambda _: mu_next / (1 - prod * mu_next))
        c = per_dtype(lambda _: (1 - mu_t) / (1 - prod))
        m = tree_map(lambda x, m: b1 * m + (1 - b1) * x, g, state[name])
        out = tree_map(lambda m, x: a(m, x) * m + c(m, x) * x, m, g)
        return stream.add(name, out), {name: cast_like(m, state[name]), "mu_product": prod}

    return primitive(init_fn, update_fn, counted=True)


# ------------------------------------------------------------------------------------------
# Sums, maxima, bias correction
# ------------------------------------------------------------------------------------------


def _sum(name: str, order: int, initial_value: float, weight: ScalarOrSchedule | None,
         source: str, who: str) -> Primitive:
    _check_name(name)
    _check_name(source, "source")
    _checks.check_nonnegative("initial_value", initial_value)
    if weight is not None:
        _checks.check_nonnegative("weight", weight, allow_schedule=True)
    power = _power(order)

    def init_fn(params):
        return {name: zeros_like(params, fill=initial_value)}

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream, x = _read_source(updates, state[name], source, who)
        if weight is None:
            v = tree_map(lambda g, s: s + power(g), x, state[name])
        else:
            lam = per_dtype(lambda _: _checks.resolve(weight, count))
            v = tree_map(lambda g, s: s + lam(g) * power(g), x, state[name])
        return stream.add(name, v), {name: cast_like(v, state[name])}

    return primitive(init_fn, update_fn, counted=callable(weight))


def sum_of_squares(
    name: str,
    initial_value: float = 0.0,
    *,
    source: str = GRAD,
    weight: ScalarOrSchedule | None = None,
) -> Primitive:
    r"""Accumulated sum of squares (Adagrad, Duchi et al. 2011):
    :math:`v_t = v_0 + \sum_{i\le t} λ_i x_i^2`, with λ = 1 unless ``weight`` (a number or a
    schedule of the step, 0 first) is given (MADGRAD's :math:`λ_t = (η_t+ε)\sqrt t`)."""
    return _sum(name, 2, initial_value, weight, source, "sum_of_squares")


def weighted_sum(
    name: str, weight: ScalarOrSchedule = 1.0, *, source: str = GRAD
) -> Primitive:
    r"""Weighted running sum of a statistic, the dual-averaging sum of gradients (Nesterov
    2009; MADGRAD, Defazio & Jelassi 2021): :math:`s_t = \sum_{i \le t} λ_i x_i`, with
    :math:`λ_i` = ``weight`` (a number or a schedule of the step, 0 first)."""
    return _sum(name, 1, 0.0, weight, source, "weighted_sum")


def running_max(name: str) -> Primitive:
    r"""Replaces statistic ``name`` in the stream by its running maximum (AMSGrad, Reddi et al.
    2018): :math:`\hat v^{\max}_t = \max(\hat v^{\max}_{t-1}, \hat v_t)`, with
    :math:`\hat v^{\max}_0 = 0`. The state entry is ``{name}_max``.

    Whether the maximum is taken over the bias-corrected or the raw statistic is decided by the
    accumulator before it (optax: debiased; PyTorch: raw, followed by :func:`debias`).
    """
    _check_name(name)
    key = f"{name}_max"

    def init_fn(params):
        return {key: zeros_like(params)}

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream, v = _read_source(updates, state[key], name, "running_max")
        vmax = tree_map(jnp.maximum, state[key], v)
        return stream.replace(name, vmax), {key: cast_like(vmax, state[key])}

    return primitive(init_fn, update_fn, counted=False)


def debias(name: str, decay: float, *, nesterov: bool = False, source: str = GRAD) -> Primitive:
    r"""Replaces statistic ``name`` by its bias correction :math:`x / (1 - β^t)`.

    Lets a bias correction follow another primitive, e.g. PyTorch's AMSGrad, which takes the
    running max of the raw second moment and then divides by :math:`1-β_2^t`, or AdaBelief,
    whose belief reads the raw first moment. With ``nesterov`` it is Dozat's (2016)
    look-ahead :math:`β m_t/(1-β^{t+1}) + (1-β) x_t/(1-β^t)`, x the statistic ``source``.
    """
    _check_name(name)
    _check_name(source, "source")
    _checks.check_decay("decay", decay, allow_schedule=False)

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "debias")
        t = increment(count)
        bc = _bias_correction(decay, t)
        if nesterov:
            bc_next = _bias_correction(decay, increment(t))
            b, one_minus_b = per_dtype(lambda _: decay), per_dtype(lambda _: 1 - decay)
            out = tree_map(lambda m, g: b(m, g) * m / bc_next(m) + one_minus_b(m, g) * g / bc(m),
                           stream[name], stream[source])
        else:
            out = tree_map(lambda x: x / bc(x), stream[name])
        return stream.replace(name, out), state

    return primitive(empty_init, update_fn, counted=True)


def ema_of_abs_max(name: str, decay: float, *, eps: float = 0.0, source: str = GRAD) -> Primitive:
    r"""Infinity-norm EMA (AdaMax, Kingma & Ba 2015): :math:`u_t = \max(β u_{t-1}, |x_t| + ε)`.

    No bias correction is needed for u. ε sits inside the max, as in optax and PyTorch.
    """
    _check_name(name)
    _checks.check_decay("decay", decay, allow_schedule=False)
    _checks.check_nonnegative("eps", eps)

    def init_fn(params):
        return {name: zeros_like(params)}

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream, x = _read_source(updates, state[name], source, "ema_of_abs_max")
        u = tree_map(lambda g, u: jnp.maximum(jnp.abs(g) + eps, decay * u), x, state[name])
        return stream.add(name, u), {name: cast_like(u, state[name])}

    return primitive(init_fn, update_fn, counted=False)
