"""Combiners: read named statistics from the stream and return a plain update tree.

After a combiner the chain carries an ordinary update tree again (the *ascent* direction;
:func:`optlab.scale_by_learning_rate` flips the sign), so optax's own transforms can follow.
Combiners that read the step (sign decays, bias-corrected bounds, RAdam's rectification) read
the count of the enclosing :func:`optlab.chain`.
"""

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from optlab import _checks
from optlab.stream import (
    GRAD,
    Primitive,
    abs_sq,
    as_stream,
    cast_like,
    empty_init,
    increment,
    own_copy,
    per_dtype,
    primitive,
    require_params,
    scalar_as,
    tree_map,
    zeros_like,
)

__all__ = [
    "RmsRatioState",
    "bounded_ratio",
    "dual_averaging",
    "ratio",
    "rectified_ratio",
    "rms_ratio",
    "select",
    "sign_agreement",
    "sign_of",
]


def _combiner(combine, *, counted: bool = False, who: str) -> Primitive:
    """A stateless combiner: ``combine(stream, count) -> update tree``."""

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        return combine(as_stream(updates, who), count), state

    return primitive(empty_init, update_fn, counted=counted)


def _is_positive_constant(x: Any) -> bool:
    value = _checks._concrete_scalar(x)
    return value is not None and value > 0


def _is_zero_constant(x: Any) -> bool:
    return _checks._concrete_scalar(x) == 0.0


def select(name: str) -> Primitive:
    """Returns statistic ``name`` as the update (e.g. the momentum of SGD)."""

    return _combiner(lambda stream, count: stream[name], who="select")


def ratio(
    numerator: str = "m",
    denominator: str = "v",
    *,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    center: str | None = None,
    sqrt: bool = True,
    positive: bool = False,
) -> Primitive:
    r"""Adaptive ratio :math:`u = n / (\sqrt{d - c^2 + ε_{root}} + ε)`.

    The Adam family (Kingma & Ba 2015) reads its first and second moments (the zoo names
    them ``"mu"``, ``"nu"``, as optax does); RMSprop and Adagrad read ``"g"`` and a second
    moment. ε may sit outside the square root (``eps``, Adam's and PyTorch's
    convention) or inside it (``eps_root``, optax's RMSprop/Adagrad default). ``center`` names a
    first moment c subtracted from d (centered RMSprop, Graves 2013). With ``sqrt=False`` the
    denominator is used as it is, :math:`n/(d+ε)` (AdaMax's infinity norm). Where both ε are 0
    and the denominator is 0, the update is 0 rather than NaN — unless ``positive`` says the
    denominator cannot be 0 (AdaMax's :math:`u_t \ge ε > 0`), which saves that select.
    """
    _checks.check_nonnegative("eps", eps)
    _checks.check_nonnegative("eps_root", eps_root)
    guard = not (positive or _is_positive_constant(eps)
                 or (sqrt and _is_positive_constant(eps_root)))
    # Constant zeros are left out of the jaxpr: no per-leaf ``+ 0``.
    add_eps, add_eps_root = not _is_zero_constant(eps), not _is_zero_constant(eps_root)

    def one(n, d, c=None):
        if c is not None:
            d = d - abs_sq(c)
        if add_eps_root:
            d = d + scalar_as(eps_root, d)
        if sqrt and not add_eps and not guard:
            out = n * jax.lax.rsqrt(d)  # ε inside the root only (optax's RMSprop / Adagrad)
        else:
            den = jnp.sqrt(d) if sqrt else d
            if add_eps:
                den = den + scalar_as(eps, den)
            out = n / den
            if guard:
                out = jnp.where(den > 0, out, jnp.zeros_like(out))
        return out if out.dtype == n.dtype else out.astype(n.dtype)

    def combine(stream, count):
        args = [stream[numerator], stream[denominator]]
        if center is not None:
            args.append(stream[center])
        return tree_map(one, *args)

    return _combiner(combine, who="ratio")


def sign_agreement(
    a: str = GRAD,
    b: str = "m",
    *,
    mode: Literal["power", "add"] = "power",
    base: float = math.e,
    alpha: float = 1.0,
    sign_decay: Callable[[jax.Array], jax.Array] | None = None,
    magnitude: str = GRAD,
) -> Primitive:
    r"""Sign-agreement scaling of Bello et al. (2017), TF-contrib semantics.

    With :math:`s_t` = ``sign_decay(step)`` (step 0 at the first update; 1 without decay) and
    :math:`σ = \mathrm{sign}(a)\,\mathrm{sign}(b)`:

    * ``mode="power"`` (PowerSign): :math:`u = \mathrm{base}^{s_t σ} \cdot g`
    * ``mode="add"`` (AddSign):     :math:`u = (α + s_t σ) \cdot g`

    where g is statistic ``magnitude``. When a or b is 0 the multiplier is exactly 1 (power)
    or α (add).
    """
    _checks.check_choice("mode", mode, ["power", "add"])
    _checks.check_positive("base", base)
    _checks.check_nonnegative("alpha", alpha)
    _checks.check_callable_or_none("sign_decay", sign_decay)
    log_base = math.log(base) if isinstance(base, (int, float)) else jnp.log(base)

    def combine(stream, count):
        s = 1.0 if sign_decay is None else sign_decay(count)
        scale = per_dtype(lambda _: log_base * s if mode == "power" else s)
        a0 = per_dtype(lambda _: alpha)

        def one(x, y, g):
            agree = jnp.sign(x) * jnp.sign(y)
            mult = jnp.exp(scale(g) * agree) if mode == "power" else a0(g) + scale(g) * agree
            return (mult * g).astype(g.dtype)

        return tree_map(one, stream[a], stream[b], stream[magnitude])

    return _combiner(combine, counted=sign_decay is not None, who="sign_agreement")


def sign_of(
    a: str = GRAD, b: str | None = None, *, weight: float = 1.0
) -> Primitive:
    r"""Sign of a statistic or of an interpolation of two: :math:`u = \mathrm{sign}(w a + (1-w) b)`.

    ``sign_of("g")`` is signSGD (Bernstein et al. 2018), ``sign_of("m")`` signum, and
    ``sign_of("m", "g", weight=β₁)`` with m the *previous* momentum is Lion (Chen et al. 2023).
    """
    _checks.check_number("weight", weight, low=0.0, high=1.0)

    def one(x, y=None):
        z = x if y is None else scalar_as(weight, x) * x + scalar_as(1 - weight, y) * y
        return jnp.sign(z).astype(x.dtype)

    def combine(stream, count):
        args = [stream[a]] if b is None else [stream[a], stream[b]]
        return tree_map(one, *args)

    return _combiner(combine, who="sign_of")


def bounded_ratio(
    numerator: str = "m",
    denominator: str = "v",
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    final_lr: float = 0.1,
    gamma: float = 1e-3,
) -> Primitive:
    r"""AdaBound / AMSBound's clipped per-coordinate step (Luo et al. 2019, authors' code).

    Reads the *raw* moments m and v; with t the step (1 first) and bounds relative to the
    learning rate η (the chain multiplies by η afterwards):

    .. math::
       u = \mathrm{clip}\Big(\frac{\sqrt{1-β_2^t}/(1-β_1^t)}{\sqrt{v}+ε},\;
           \frac{f}{η_0}\big(1-\tfrac{1}{γt+1}\big),\;
           \frac{f}{η_0}\big(1+\tfrac{1}{γt}\big)\Big)\, m

    Here ``final_lr`` is f/η₀, the final step size in units of the initial learning rate η₀, as
    the authors' code rescales ``final_lr`` by ``lr / base_lr``.
    """
    _checks.check_decay("b1", b1, allow_schedule=False)
    _checks.check_decay("b2", b2, allow_schedule=False)
    _checks.check_nonnegative("eps", eps)
    _checks.check_nonnegative("final_lr", final_lr)
    _checks.check_positive("gamma", gamma)

    def combine(stream, count):
        t = increment(count).astype(jnp.result_type(float))
        step = per_dtype(lambda _: jnp.sqrt(1 - b2**t) / (1 - b1**t))
        lower = per_dtype(lambda _: final_lr * (1 - 1 / (gamma * t + 1)))
        upper = per_dtype(lambda _: final_lr * (1 + 1 / (gamma * t)))

        def one(m, v):
            size = step(v) / (jnp.sqrt(v) + eps)
            return (jnp.clip(size, lower(v), upper(v)) * m).astype(m.dtype)

        return tree_map(one, stream[numerator], stream[denominator])

    return _combiner(combine, counted=True, who="bounded_ratio")


class RmsRatioState(NamedTuple):
    """Adadelta's running average of squared updates, E[Δx²] (optax's name: ``e_x``)."""

    e_x: Any


def rms_ratio(
    numerator: str = GRAD, denominator: str = "v", *, rho: float = 0.9, eps: float = 1e-6
) -> Primitive:
    r"""Adadelta's ratio of update RMS to gradient RMS (Zeiler 2012).

    .. math::
       Δx_t = \frac{\sqrt{E[Δx^2]_{t-1} + ε}}{\sqrt{E[g^2]_t + ε}}\, g_t,\qquad
       E[Δx^2]_t = ρ E[Δx^2]_{t-1} + (1-ρ) Δx_t^2

    with :math:`E[g^2]_t` the statistic ``denominator`` (an :func:`ema_of_square` with the
    same ρ).
    """
    _checks.check_decay("rho", rho, allow_schedule=False)
    _checks.check_nonnegative("eps", eps)

    def init_fn(params):
        return RmsRatioState(zeros_like(params))

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream = as_stream(updates, "rms_ratio")

        def one(g, v, ex):
            return (jnp.sqrt(ex + scalar_as(eps, ex)) / jnp.sqrt(v + scalar_as(eps, v))) * g

        dx = tree_map(one, stream[numerator], stream[denominator], state.e_x)
        ex = tree_map(lambda d, e: scalar_as(rho, e) * e + scalar_as(1 - rho, e) * abs_sq(d),
                      dx, state.e_x)
        return dx, RmsRatioState(cast_like(ex, state.e_x))

    return primitive(init_fn, update_fn, counted=False)


def rectified_ratio(
    numerator: str = "m",
    denominator: str = "v",
    *,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    threshold: float = 5.0,
    eps_on_raw_v: bool = False,
) -> Primitive:
    r"""RAdam's rectified adaptive ratio (Liu et al. 2020), reading debiased m̂ and v̂.

    .. math::
       ρ_∞ = \frac{2}{1-β_2} - 1,\quad ρ_t = ρ_∞ - \frac{2tβ_2^t}{1-β_2^t},\quad
       r_t = \sqrt{\frac{(ρ_t-4)(ρ_t-2)ρ_∞}{(ρ_∞-4)(ρ_∞-2)ρ_t}}

    :math:`u = r_t \hat m/(\sqrt{\hat v + ε_{root}} + ε)` when :math:`ρ_t ≥` ``threshold``,
    else :math:`u = \hat m`. ``eps_on_raw_v=True`` adds ε to :math:`\sqrt{v}` before the bias
    correction, i.e. uses :math:`ε/\sqrt{1-β_2^t}`, as ``torch.optim.RAdam`` does.
    """
    _checks.check_decay("b2", b2, allow_schedule=False)
    _checks.check_nonnegative("eps", eps)
    _checks.check_nonnegative("eps_root", eps_root)
    _checks.check_number("threshold", threshold, low=4.0)  # r_t is NaN for 2 < ρ_t < 4
    rho_inf = 2.0 / (1.0 - b2) - 1.0

    def combine(stream, count):
        t = increment(count).astype(jnp.result_type(float))
        b2t = b2**t
        rho = rho_inf - 2 * t * b2t / (1 - b2t)
        r = jnp.sqrt((rho - 4.0) * (rho - 2.0) * rho_inf
                     / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho))
        eps_t = eps / jnp.sqrt(1 - b2t) if eps_on_raw_v else eps

        def one(m, v):
            adapted = scalar_as(r, m) * m / (jnp.sqrt(v + scalar_as(eps_root, v))
                                             + scalar_as(eps_t, v))
            return jnp.where(rho >= threshold, adapted, m).astype(m.dtype)

        return tree_map(one, stream[numerator], stream[denominator])

    return _combiner(combine, counted=True, who="rectified_ratio")


def dual_averaging(
    sum_name: str = "s",
    scale_name: str = "grad_sum_sq",
    *,
    momentum: float = 0.9,
    eps: float = 1e-6,
) -> Primitive:
    r"""MADGRAD's momentumised dual-averaging step (Defazio & Jelassi 2021).

    Reads the weighted gradient sum :math:`s_t` and the weighted sum of squares
    :math:`ν_t` and moves the params towards the dual-averaging iterate:

    .. math::
       z_t = θ_0 - \frac{s_t}{ν_t^{1/3} + ε},\qquad
       u_t = \big((1-c)\, z_t + c\, θ_t\big) - θ_t

    with c = ``momentum``. Unlike other combiners its output is the *step itself* (no
    learning-rate scaling follows: the learning rate enters through the sums' weights), and
    it needs the params: dual averaging is anchored at the initial point θ₀, which it keeps
    as its state (``x0``, optax's name).
    """
    _checks.check_decay("momentum", momentum, allow_schedule=False)
    _checks.check_nonnegative("eps", eps)

    def init_fn(params):
        return {"x0": tree_map(own_copy, params)}

    def update_fn(updates, state, params, count, **extra):
        del count, extra
        require_params(params, "dual_averaging")
        stream = as_stream(updates, "dual_averaging")

        def one(s, v, x0, p):
            z = x0 - s / (jnp.cbrt(v) + scalar_as(eps, v))
            x_new = scalar_as(1 - momentum, z) * z + scalar_as(momentum, p) * p
            return (x_new - p).astype(p.dtype)

        out = tree_map(one, stream[sum_name], stream[scale_name], state["x0"], params)
        return out, state

    return primitive(init_fn, update_fn, counted=False)
