"""Learning-rate and hyperparameter schedules.

Every public constructor validates its arguments eagerly (``ValueError`` / ``TypeError`` naming
the argument) and returns a function ``schedule(step) -> jax.Array``:

* ``step`` counts updates from 0 (the first update uses ``step = 0``), as in optax; it may be a
  Python int, a numpy/JAX integer scalar, a traced value under ``jax.jit`` / ``jax.vmap``, or an
  array of steps (schedules act element-wise). Steps below 0 are treated as 0. Float steps are
  accepted; schedules defined on whole steps (staircases, restarts, cycles) floor them.
* The result has the default floating dtype (float32, or float64 with ``jax_enable_x64``).
* No Python control flow depends on the step, so schedules are jit- and vmap-safe.

Sign decays (``*_sign_decay``) follow TF contrib ``sign_decay.py`` (Bello et al., ICML 2017,
"Neural Optimizer Search with Reinforcement Learning") and return a multiplier in [0, 1].
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from optlab._checks import check_int, check_nonnegative, check_number, check_positive

__all__ = [
    "Schedule",
    "constant",
    "cosine_decay",
    "cosine_sign_decay",
    "exponential_decay",
    "inverse_time_decay",
    "linear_cosine_decay",
    "linear_sign_decay",
    "linear_warmup",
    "noam",
    "piecewise_constant",
    "restart_sign_decay",
    "sgdr",
    "sgdr_restart_steps",
    "snapshot_ensemble",
    "snapshot_steps",
]

Schedule = Callable[[ArrayLike], jax.Array]
"""A function ``step -> value`` (``step`` = 0 at the first update)."""


# --------------------------------------------------------------------------------------------
# helpers



def _described(constructor: Callable[..., Schedule]) -> Callable[..., Schedule]:
    """Attaches ``__optlab_spec__ = (name, arguments)`` to the schedules ``constructor`` builds,
    so that a schedule (a closure) can be told apart from one built with other arguments
    (``optlab.train`` compares it when resuming from checkpoints)."""
    signature = inspect.signature(constructor)
    name = f"optlab.schedules.{constructor.__name__}"

    @functools.wraps(constructor)
    def build(*args, **kwargs):
        schedule = constructor(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        schedule.__optlab_spec__ = (name, dict(bound.arguments))
        return schedule

    return build


def _float_dtype() -> np.dtype:
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _int_dtype() -> np.dtype:
    return jax.dtypes.canonicalize_dtype(jnp.int64)


def _float_step(step: ArrayLike) -> jax.Array:
    """The step as a float array of the default dtype, clamped at 0."""
    return jnp.maximum(jnp.asarray(step).astype(_float_dtype()), 0.0)


def _int_step(step: ArrayLike) -> jax.Array:
    """The step as an integer array (floats are floored), clamped at 0."""
    t = jnp.asarray(step)
    if not jnp.issubdtype(t.dtype, jnp.integer):
        t = jnp.floor(t).astype(_int_dtype())
    return jnp.maximum(t, 0)


def _floordiv(t: jax.Array, n: int) -> jax.Array:
    """⌊t/n⌋ for an integer array t and a Python int n ≥ 1 (which may exceed t's dtype)."""
    return jnp.zeros_like(t) if n > np.iinfo(t.dtype).max else t // n


def _sub_clamped(t: jax.Array, n: int) -> jax.Array:
    """max(t − n, 0) for an integer array t and a Python int n ≥ 0 (which may exceed t's dtype)."""
    return jnp.zeros_like(t) if n > np.iinfo(t.dtype).max else jnp.maximum(t - n, 0)


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def _check_count(name: str, value: object, low: int = 1) -> None:
    """A count of steps: a Python/numpy int >= ``low``."""
    check_int(name, value, low=low)


def _check_optional_nonnegative(name: str, value: object) -> None:
    if value is not None:
        check_nonnegative(name, value)


def _half_cosine(fraction: jax.Array) -> jax.Array:
    """½(1 + cos(π·fraction))."""
    return 0.5 * (1.0 + jnp.cos(jnp.pi * fraction))


# --------------------------------------------------------------------------------------------
# basic schedules


@_described
def constant(value: float) -> Schedule:
    """η_t = value for every step."""
    check_nonnegative("value", value)
    value = float(value)

    def schedule(step: ArrayLike) -> jax.Array:
        return jnp.full(jnp.shape(step), value, dtype=_float_dtype())

    return schedule


@_described
def exponential_decay(
    init_value: float,
    transition_steps: int,
    decay_rate: float,
    staircase: bool = False,
    transition_begin: int = 0,
    end_value: float | None = None,
) -> Schedule:
    """Exponential decay: η_t = η₀ · r^(c/T), c = max(t − transition_begin, 0).

    T = ``transition_steps``, r = ``decay_rate``. With ``staircase`` the exponent is ⌊c/T⌋.
    ``end_value`` clips the result: a lower bound when r < 1, an upper bound when r > 1 (as in
    ``optax.exponential_decay``).
    """
    check_nonnegative("init_value", init_value)
    _check_count("transition_steps", transition_steps)
    check_positive("decay_rate", decay_rate)
    _check_bool("staircase", staircase)
    _check_count("transition_begin", transition_begin, low=0)
    _check_optional_nonnegative("end_value", end_value)
    init_value, decay_rate = float(init_value), float(decay_rate)
    transition_steps, transition_begin = int(transition_steps), int(transition_begin)
    if end_value is not None:
        end_value = float(end_value)
        if decay_rate < 1.0 and end_value > init_value:
            raise ValueError(
                f"end_value must be <= init_value ({init_value!r}) when decay_rate < 1 "
                f"(it is a lower bound), got {end_value!r}"
            )
        if decay_rate > 1.0 and end_value < init_value:
            raise ValueError(
                f"end_value must be >= init_value ({init_value!r}) when decay_rate > 1 "
                f"(it is an upper bound), got {end_value!r}"
            )

    def schedule(step: ArrayLike) -> jax.Array:
        if staircase:
            count = _sub_clamped(_int_step(step), transition_begin)
            p = _floordiv(count, transition_steps).astype(_float_dtype())
        else:
            count = jnp.maximum(_float_step(step) - float(transition_begin), 0.0)
            p = count / float(transition_steps)
        value = init_value * jnp.power(jnp.asarray(decay_rate, _float_dtype()), p)
        if end_value is not None:
            if decay_rate < 1.0:
                value = jnp.maximum(value, end_value)
            elif decay_rate > 1.0:
                value = jnp.minimum(value, end_value)
        return value

    return schedule


@_described
def inverse_time_decay(
    init_value: float, decay_rate: float, decay_steps: int = 1, staircase: bool = False
) -> Schedule:
    """Inverse time decay (TF semantics): η_t = η₀ / (1 + k · t / decay_steps).

    With ``staircase`` t/decay_steps is replaced by ⌊t/decay_steps⌋; k = ``decay_rate``.
    """
    check_nonnegative("init_value", init_value)
    check_nonnegative("decay_rate", decay_rate)
    _check_count("decay_steps", decay_steps)
    _check_bool("staircase", staircase)
    init_value, decay_rate = float(init_value), float(decay_rate)

    def schedule(step: ArrayLike) -> jax.Array:
        if staircase:
            p = _floordiv(_int_step(step), decay_steps).astype(_float_dtype())
        else:
            p = _float_step(step) / float(decay_steps)
        return init_value / (1.0 + decay_rate * p)

    return schedule


@_described
def piecewise_constant(boundaries: Sequence[int], values: Sequence[float]) -> Schedule:
    """Piecewise constant: η_t = values[i] for boundaries[i−1] ≤ t < boundaries[i].

    ``boundaries`` are strictly increasing non-negative ints and ``len(values) ==
    len(boundaries) + 1`` (values[0] before boundaries[0], values[-1] from boundaries[-1] on).
    """
    if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, (Sequence, np.ndarray)):
        raise TypeError(
            f"boundaries must be a sequence of ints, got {type(boundaries).__name__} {boundaries!r}"
        )
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray)):
        raise TypeError(
            f"values must be a sequence of numbers, got {type(values).__name__} {values!r}"
        )
    boundaries = list(boundaries)
    values = list(values)
    for i, b in enumerate(boundaries):
        _check_count(f"boundaries[{i}]", b, low=0)
    for i in range(1, len(boundaries)):
        if boundaries[i] <= boundaries[i - 1]:
            raise ValueError(
                f"boundaries must be strictly increasing, got boundaries[{i - 1}]="
                f"{boundaries[i - 1]} >= boundaries[{i}]={boundaries[i]}"
            )
    if len(values) != len(boundaries) + 1:
        raise ValueError(
            f"values must have len(boundaries) + 1 = {len(boundaries) + 1} entries, "
            f"got {len(values)}"
        )
    for i, v in enumerate(values):
        check_nonnegative(f"values[{i}]", v)
    bounds = [int(b) for b in boundaries]
    vals = [float(v) for v in values]

    def schedule(step: ArrayLike) -> jax.Array:
        t = _int_step(step)
        # Boundaries beyond the step dtype's range can never be reached.
        reachable = [b for b in bounds if b <= np.iinfo(t.dtype).max]
        table = jnp.asarray(vals, _float_dtype())
        if not reachable:
            return jnp.broadcast_to(table[0], t.shape)
        index = jnp.searchsorted(
            jnp.asarray(reachable, t.dtype), t, side="right", method="compare_all"
        )
        return table[index]

    return schedule


@_described
def cosine_decay(init_value: float, decay_steps: int, alpha: float = 0.0) -> Schedule:
    """Cosine decay (Loshchilov & Hutter 2017, without restarts).

    η_t = η₀ · ((1 − α) · ½(1 + cos(π · min(t, T)/T)) + α), T = ``decay_steps``; α ∈ [0, 1] is the
    final value as a fraction of η₀.
    """
    check_nonnegative("init_value", init_value)
    _check_count("decay_steps", decay_steps)
    check_number("alpha", alpha, low=0.0, high=1.0)
    init_value, alpha, T = float(init_value), float(alpha), float(decay_steps)

    def schedule(step: ArrayLike) -> jax.Array:
        t = jnp.minimum(_float_step(step), T)
        return init_value * ((1.0 - alpha) * _half_cosine(t / T) + alpha)

    return schedule


@_described
def linear_cosine_decay(
    init_value: float,
    decay_steps: int,
    num_periods: float = 0.5,
    alpha: float = 0.0,
    beta: float = 0.001,
) -> Schedule:
    """Linear-cosine decay (TF semantics; Bello et al. 2017).

    With t ← min(t, T), T = ``decay_steps``, n = ``num_periods``:
    η_t = η₀ · [(α + (T − t)/T) · ½(1 + cos(2π·n·t/T)) + β].
    """
    check_nonnegative("init_value", init_value)
    _check_count("decay_steps", decay_steps)
    check_nonnegative("num_periods", num_periods)
    check_nonnegative("alpha", alpha)
    check_nonnegative("beta", beta)
    init_value, num_periods = float(init_value), float(num_periods)
    alpha, beta, T = float(alpha), float(beta), float(decay_steps)

    def schedule(step: ArrayLike) -> jax.Array:
        t = jnp.minimum(_float_step(step), T)
        linear = (T - t) / T
        cosine = _half_cosine(2.0 * num_periods * t / T)
        return init_value * ((alpha + linear) * cosine + beta)

    return schedule


# --------------------------------------------------------------------------------------------
# SGDR and snapshot ensembles


def _sgdr_starts(t_0: int, t_mult: int, limit: int) -> list[int]:
    """Start steps of cycles 0, 1, … (S_0 = 0, S_{i+1} = S_i + t_0·t_mult^i) up to ``limit``."""
    starts, start, period = [0], 0, t_0
    while True:
        start += period
        if start > limit:
            return starts
        starts.append(start)
        period *= t_mult


def sgdr_restart_steps(t_0: int, t_mult: int, num_steps: int) -> list[int]:
    """Steps (0-based) at which SGDR warm restarts happen, in (0, num_steps).

    Restart i ≥ 1 happens at S_i = Σ_{j<i} t_0·t_mult^j; the first cycle starts at step 0, which
    is not listed. A snapshot of the end of cycle i is the parameters after step S_{i+1} − 1.
    """
    _check_count("t_0", t_0)
    _check_count("t_mult", t_mult)
    _check_count("num_steps", num_steps, low=0)
    return [s for s in _sgdr_starts(int(t_0), int(t_mult), int(num_steps) - 1) if s > 0]


@_described
def sgdr(
    eta_max: float,
    t_0: int,
    t_mult: int = 1,
    eta_min: float = 0.0,
    decay: float = 1.0,
) -> Schedule:
    """SGDR: cosine annealing with warm restarts (Loshchilov & Hutter, ICLR 2017).

    η_t = η_min + ½(η_max,i − η_min)(1 + cos(π · T_cur/T_i)), with cycle i of length
    T_i = t_0 · t_mult^i starting at S_i = Σ_{j<i} T_j, T_cur = t − S_i counted per step, and
    η_max,i = max(η_max · decay^i, η_min) (``decay`` shrinks the restart peaks; once a peak would
    fall below η_min the schedule stays at η_min). η_t = η_max,i at every restart step S_i.

    The cycle index is found with integer arithmetic (a lookup in the ≤ 64 restart steps that fit
    the step's integer dtype when t_mult > 1, ⌊t/t_0⌋ when t_mult = 1), so it is exact at every
    step under jit.
    """
    check_nonnegative("eta_max", eta_max)
    _check_count("t_0", t_0)
    _check_count("t_mult", t_mult)
    check_nonnegative("eta_min", eta_min)
    check_number("decay", decay, low=0.0, high=1.0, low_inclusive=False)
    eta_max, eta_min, decay = float(eta_max), float(eta_min), float(decay)
    if eta_min > eta_max:
        raise ValueError(f"eta_min must be in [0, eta_max={eta_max!r}], got {eta_min!r}")
    t_0, t_mult = int(t_0), int(t_mult)

    def schedule(step: ArrayLike) -> jax.Array:
        t = _int_step(step)
        fdtype = _float_dtype()
        if t_mult == 1:
            i = _floordiv(t, t_0)
            t_cur = t - i * min(t_0, int(np.iinfo(t.dtype).max))  # i = 0 when t_0 is larger
            period = jnp.asarray(float(t_0), fdtype)
        else:
            starts = _sgdr_starts(t_0, t_mult, int(np.iinfo(t.dtype).max))
            periods = [float(t_0 * t_mult**k) for k in range(len(starts))]
            i = (
                jnp.searchsorted(
                    jnp.asarray(starts, t.dtype), t, side="right", method="compare_all"
                )
                - 1
            )
            t_cur = t - jnp.asarray(starts, t.dtype)[i]
            period = jnp.asarray(periods, fdtype)[i]
        peak = jnp.maximum(
            eta_max * jnp.power(jnp.asarray(decay, fdtype), i.astype(fdtype)), eta_min
        )
        return eta_min + (peak - eta_min) * _half_cosine(t_cur.astype(fdtype) / period)

    return schedule


def _snapshot_cycle(total_steps: int, num_cycles: int) -> int:
    _check_count("total_steps", total_steps)
    _check_count("num_cycles", num_cycles)
    cycle = -(-int(total_steps) // int(num_cycles))  # ⌈T/M⌉
    if cycle * (num_cycles - 1) >= total_steps:
        raise ValueError(
            f"num_cycles={num_cycles} is too large for total_steps={total_steps}: cycles of "
            f"⌈total_steps/num_cycles⌉={cycle} steps would leave the last cycle empty"
        )
    return cycle


@_described
def snapshot_ensemble(init_value: float, total_steps: int, num_cycles: int) -> Schedule:
    """Snapshot-ensemble cyclic cosine (Huang et al., ICLR 2017, "Snapshot Ensembles").

    α(t) = α₀/2 · (cos(π · mod(t, ⌈T/M⌉)/⌈T/M⌉) + 1), T = ``total_steps``, M = ``num_cycles``.
    Here t is 0-based (the paper's t − 1 with 1-based t). Past T the cycles simply continue.
    """
    check_nonnegative("init_value", init_value)
    cycle = _snapshot_cycle(total_steps, num_cycles)
    init_value = float(init_value)

    def schedule(step: ArrayLike) -> jax.Array:
        t = _int_step(step)
        t_mod = t - _floordiv(t, cycle) * min(cycle, int(np.iinfo(t.dtype).max))
        return init_value * _half_cosine(t_mod.astype(_float_dtype()) / float(cycle))

    return schedule


def snapshot_steps(total_steps: int, num_cycles: int) -> list[int]:
    """0-based steps after which each of the M snapshots is taken.

    The last step of each cycle, (k + 1)·⌈T/M⌉ − 1 for k < M, clipped to T − 1.
    """
    cycle = _snapshot_cycle(total_steps, num_cycles)
    return [min((k + 1) * cycle - 1, int(total_steps) - 1) for k in range(int(num_cycles))]


# --------------------------------------------------------------------------------------------
# warmup schedules


@_described
def noam(d_model: int, warmup_steps: int = 4000, scale: float = 1.0) -> Schedule:
    """Noam schedule (Vaswani et al. 2017, "Attention Is All You Need").

    η = scale · d_model^−0.5 · min(s^−0.5, s · warmup^−1.5) with s = step + 1: the paper counts
    steps from 1, so the first update (step 0) uses s = 1 and never divides by 0. The peak
    scale · (d_model · warmup)^−0.5 is reached at step = warmup − 1.
    """
    _check_count("d_model", d_model)
    _check_count("warmup_steps", warmup_steps)
    check_nonnegative("scale", scale)
    factor = float(scale) * float(d_model) ** -0.5
    warm = float(warmup_steps) ** -1.5

    def schedule(step: ArrayLike) -> jax.Array:
        s = _float_step(step) + 1.0
        return factor * jnp.minimum(jax.lax.rsqrt(s), s * warm)

    return schedule


@_described
def linear_warmup(
    schedule_or_value: Schedule | float, warmup_steps: int, init_value: float = 0.0
) -> Schedule:
    """Linear warmup in front of a schedule (or a constant).

    For t < W (W = ``warmup_steps``): η_t = init + (peak − init) · t/W with peak = schedule(0);
    for t ≥ W: η_t = schedule(t − W). With W = 0 this is the schedule itself.
    """
    check_number("schedule_or_value", schedule_or_value, low=0.0, allow_schedule=True)
    _check_count("warmup_steps", warmup_steps, low=0)
    check_nonnegative("init_value", init_value)
    inner = schedule_or_value if callable(schedule_or_value) else constant(float(schedule_or_value))
    init_value, warmup = float(init_value), int(warmup_steps)
    width = float(max(warmup, 1))

    def schedule(step: ArrayLike) -> jax.Array:
        step = jnp.asarray(step)
        if jnp.issubdtype(step.dtype, jnp.integer):
            shifted = _sub_clamped(step, warmup)
        else:
            shifted = jnp.maximum(step - float(warmup), 0.0)
        peak = jnp.asarray(inner(jnp.zeros_like(step)), _float_dtype())
        after = jnp.asarray(inner(shifted), _float_dtype())
        t = _float_step(step)
        ramp = init_value + (peak - init_value) * (t / width)
        return jnp.where(t < float(warmup), ramp, after)

    return schedule


# --------------------------------------------------------------------------------------------
# sign decays (TF contrib sign_decay.py; Bello et al. 2017)


@_described
def linear_sign_decay(decay_steps: int) -> Schedule:
    """Linear sign decay: s_t = max(0, (T − min(t, T))/T), T = ``decay_steps``."""
    _check_count("decay_steps", decay_steps)

    def schedule(step: ArrayLike) -> jax.Array:
        T = float(decay_steps)
        t = jnp.minimum(_float_step(step), T)
        return jnp.maximum(0.0, (T - t) / T)

    return schedule


@_described
def cosine_sign_decay(
    decay_steps: int, num_periods: float = 0.5, zero_after: float | None = None
) -> Schedule:
    """Cosine (cyclical) sign decay.

    With t ← min(t, T), f = 2·n·t/T: s_t = ½(1 + cos(π f)); n = ``num_periods`` (0.5 maps T to 0).
    With ``zero_after`` z, s_t = 0 once f ≥ 2z (i.e. after z periods).
    """
    _check_count("decay_steps", decay_steps)
    check_positive("num_periods", num_periods)
    _check_optional_nonnegative("zero_after", zero_after)
    num_periods = float(num_periods)
    zero = None if zero_after is None else float(zero_after)

    def schedule(step: ArrayLike) -> jax.Array:
        T = float(decay_steps)
        t = jnp.minimum(_float_step(step), T)
        fraction = 2.0 * num_periods * (t / T)
        decayed = _half_cosine(fraction)
        if zero is not None:
            decayed = jnp.where(fraction >= 2.0 * zero, 0.0, decayed)
        return decayed

    return schedule


@_described
def restart_sign_decay(
    decay_steps: int, num_periods: float = 1, zero_after: float | None = None
) -> Schedule:
    """Restart sign decay (a simplified SGDR).

    With t ← min(t, T), f = ((n·t) mod T)/T: s_t = ½(1 + cos(π f)); n = ``num_periods``.
    With ``zero_after`` z, s_t = 0 once n·t/T ≥ z.
    """
    _check_count("decay_steps", decay_steps)
    check_positive("num_periods", num_periods)
    _check_optional_nonnegative("zero_after", zero_after)
    num_periods = float(num_periods)
    zero = None if zero_after is None else float(zero_after)

    def schedule(step: ArrayLike) -> jax.Array:
        T = float(decay_steps)
        t = jnp.minimum(_float_step(step), T)
        scaled = num_periods * t
        decayed = _half_cosine(jnp.mod(scaled, T) / T)
        if zero is not None:
            decayed = jnp.where(scaled / T >= zero, 0.0, decayed)
        return decayed

    return schedule
