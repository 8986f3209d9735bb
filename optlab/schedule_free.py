r"""Schedule-Free SGD and AdamW (Defazio et al. 2024): a base step followed by interpolated
iterates.

Schedule-Free keeps three sequences. The base optimizer steps a sequence z; x is a weighted
average of the z's (the point to evaluate at); the gradient is taken at the interpolation y:

.. math::
   y_t = (1-β_1) z_t + β_1 x_t,\qquad z_{t+1} = z_t + u_t(\nabla f(y_t)),\qquad
   x_{t+1} = (1-c_{t+1}) x_t + c_{t+1} z_{t+1}

with :math:`u_t` the base optimizer's update (:math:`-γ g_t` for SGD) and
:math:`c_{t+1} = w_{t+1}/\sum_{i \le t+1} w_i`, :math:`w_i = (\max_{j\le i} γ_j)^{p}`
(p = ``weight_lr_power``).

It is not a per-step function of the gradient, but it composes as a chain: the params the
user holds are y, so the base optimizer (any chain, optlab's or optax's, *without* momentum —
the averaging replaces it) maps the gradient at y to :math:`u_t` as usual, and one more
transform, :func:`schedule_free_iterates`, placed last, turns :math:`u_t` into the step of y,
:math:`y_{t+1} - y_t`. It stores z and recomputes :math:`x_t = (y_t - (1-β_1) z_t)/β_1` from
the params, so only two sequences are kept (the base state plus z), and x stays exact even if
another transform wrapped around the chain changes y. :func:`schedule_free_eval_params`
recovers x from the state and the params.
"""


from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.accumulators import ema_of_square
from optlab.combiners import ratio
from optlab.regularizers import decoupled_weight_decay, scale_by_learning_rate
from optlab.stream import (
    Primitive,
    StepState,
    chain,
    check_same_structure,
    expect_plain,
    increment,
    lowest_dtype,
    own_copy,
    primitive,
    require_params,
    tree_map,
)

__all__ = [
    "ScheduleFreeChainState",
    "ScheduleFreeState",
    "evaluation_point",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_iterates",
    "schedule_free_sgd",
]


class ScheduleFreeState(NamedTuple):
    """State of :func:`schedule_free_iterates`, with the field names of optax's
    ``ScheduleFreeState``: β₁ (for evaluation), the sum of averaging weights, the largest
    learning rate so far, and the base sequence z."""

    b1: jax.Array
    weight_sum: jax.Array
    max_lr: jax.Array
    z: Any


class ScheduleFreeChainState(StepState):
    """The state of a Schedule-Free optimizer: the chain's ``StepState(count, inner)``, whose
    attributes ``b1`` and ``z`` read the iterates' state, as on optax's ``ScheduleFreeState``
    (so ``optax.contrib.schedule_free_eval_params`` works on it too)."""

    __slots__ = ()

    @property
    def b1(self) -> jax.Array:
        return self.inner[-1].b1

    @property
    def z(self) -> Any:
        return self.inner[-1].z


def _check_b1(b1: Any) -> None:
    _checks.check_number("b1", b1, low=0.0, high=1.0, low_inclusive=False)


def schedule_free_iterates(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> Primitive:
    r"""Turns a base step :math:`u_t` into the Schedule-Free step of the params y.

    .. math::
       z_{t+1} = z_t + u_t,\quad x_t = \frac{y_t - (1-β_1) z_t}{β_1},\quad
       x_{t+1} = (1-c_{t+1}) x_t + c_{t+1} z_{t+1},\\
       y_{t+1} = β_1 x_{t+1} + (1-β_1) z_{t+1},\qquad \text{update} = y_{t+1} - y_t

    with :math:`c_{t+1} = w/(W_t + w)`, :math:`w = (\max_{i \le t+1} γ_i)^p`, :math:`W_t`
    the sum of earlier weights and :math:`γ_i` = ``learning_rate`` at step i (1 first).
    Place it last in the chain, after the base optimizer; it needs the params. ``z`` is
    stored in ``state_dtype`` (default: the params' dtype); the scalars in the params' lowest
    float dtype, as optax does.
    """
    _checks.check_learning_rate(learning_rate)
    _check_b1(b1)
    _checks.check_number("weight_lr_power", weight_lr_power)

    def init_fn(params):
        dtype = lowest_dtype(params)
        z = params if state_dtype is None else optax.tree.cast(params, state_dtype)
        return ScheduleFreeState(
            b1=jnp.asarray(b1, dtype=dtype),
            weight_sum=jnp.zeros([], dtype=dtype),
            max_lr=jnp.zeros([], dtype=dtype),
            z=tree_map(own_copy, z),  # a distinct buffer: params and z can be donated
        )

    def update_fn(updates, state, params, count, **extra):
        del extra
        expect_plain(updates, "schedule_free_iterates")
        require_params(params, "schedule_free_iterates")
        check_same_structure(updates, state.z, "schedule_free_iterates: updates",
                             "the optimizer state (from params)")
        lr = learning_rate
        if callable(lr):
            lr = jnp.asarray(lr(increment(count)), dtype=state.max_lr.dtype)
        max_lr = jnp.maximum(state.max_lr, lr)
        weight = max_lr**weight_lr_power
        weight_sum = state.weight_sum + weight
        # 0/0 while every learning rate so far is 0: c = 0 (the average does not move).
        c = jnp.where(jnp.isnan(weight) | jnp.isnan(weight_sum), jnp.nan,
                      jnp.nan_to_num(weight / weight_sum, nan=0.0, posinf=jnp.inf))
        z = tree_map(lambda z, u: jnp.asarray(z + u).astype(z.dtype), state.z, updates)

        def step(y, z_old, z_new):
            x = (y - (1.0 - b1) * z_old) / b1
            x = (1.0 - c) * x + c * z_new
            return b1 * x + (1.0 - b1) * z_new - y

        out = tree_map(step, params, state.z, z)
        return out, ScheduleFreeState(state.b1, weight_sum, max_lr, z)

    return primitive(init_fn, update_fn, counted=True)


def _exposing_iterates(tx: Primitive) -> Primitive:
    """``tx`` (a counted chain ending in :func:`schedule_free_iterates`) whose own state is a
    :class:`ScheduleFreeChainState`; nested in another optlab chain it shares that chain's
    counter as any primitive."""

    def init_fn(params):
        return ScheduleFreeChainState(*tx.init(params))

    def update_fn(updates, state, params=None, **extra):
        out, new_state = tx.update(updates, state, params, **extra)
        return out, ScheduleFreeChainState(*new_state)

    p = Primitive(init_fn, update_fn)
    p.step_init, p.step_update, p.counted = tx.step_init, tx.step_update, tx.counted
    return p


def schedule_free(
    base_optimizer: optax.GradientTransformation,
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> Primitive:
    r"""Schedule-Free wrapper of any base optimizer (Defazio et al. 2024), as
    ``optax.contrib.schedule_free``: ``chain(base_optimizer, schedule_free_iterates(...))``.

    The base optimizer should have no momentum (``b1=0`` for Adam): the interpolation with
    β₁ = ``b1`` replaces it. ``learning_rate`` is the base optimizer's (constant, or with a
    warmup but no decay); it weights the average. Evaluate at
    :func:`schedule_free_eval_params`.
    """
    if not (callable(getattr(base_optimizer, "init", None))
            and callable(getattr(base_optimizer, "update", None))):
        raise TypeError("base_optimizer must be a GradientTransformation, got "
                        f"{type(base_optimizer).__name__}")
    return _exposing_iterates(chain(
        base_optimizer,
        schedule_free_iterates(learning_rate, b1, weight_lr_power, state_dtype),
    ))


def _with_warmup(learning_rate: ScalarOrSchedule, warmup_steps: int | None) -> ScalarOrSchedule:
    if warmup_steps is None:
        return learning_rate
    if not isinstance(warmup_steps, jax.core.Tracer):
        _checks.check_int("warmup_steps", warmup_steps, low=1)
    if callable(learning_rate):  # a schedule, multiplied by a linear warmup from 0 to 1
        warmup = optax.linear_schedule(0.0, 1.0, warmup_steps)
        return lambda count: warmup(count) * learning_rate(count)
    return optax.warmup_constant_schedule(0.0, learning_rate, warmup_steps)


def schedule_free_sgd(
    learning_rate: ScalarOrSchedule = 1.0,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    weight_decay: float | None = None,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> Primitive:
    r"""Schedule-Free SGD (Defazio et al. 2024, "The Road Less Scheduled").

    .. math::
       y_t = (1-β_1) z_t + β_1 x_t,\quad z_{t+1} = z_t - γ_t(\nabla f(y_t) + λ y_t),\quad
       x_{t+1} = (1-c_{t+1}) x_t + c_{t+1} z_{t+1}

    :math:`γ_t` = ``learning_rate`` after a linear warmup from 0 over ``warmup_steps`` (a
    number, as optax's, or a schedule, which the warmup multiplies; Schedule-Free is meant
    for a constant rate, but a decay can help settle on hard problems);
    :math:`c_{t+1}` as in :func:`schedule_free_iterates`; λ = ``weight_decay`` (multiplied
    by the learning rate). State: z, 1 × params. Evaluate at
    :func:`schedule_free_eval_params`.

    As in optax, the z step reads the schedule at the 0-based step (:math:`γ_{t-1}`: with
    ``warmup_steps`` > 0 the first step is 0) while the averaging weight reads it at the
    1-based step; the reference PyTorch code uses one value for both. Kept for parity with
    optax's trajectories.
    """
    _checks.check_learning_rate(learning_rate)
    if weight_decay is not None:
        _checks.check_nonnegative("weight_decay", weight_decay)
    lr = _with_warmup(learning_rate, warmup_steps)
    base = scale_by_learning_rate(lr)
    if weight_decay is not None:
        base = chain(decoupled_weight_decay(weight_decay), base)
    return schedule_free(base, lr, b1, weight_lr_power, state_dtype)


def schedule_free_adamw(
    learning_rate: ScalarOrSchedule = 0.0025,
    warmup_steps: int | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> Primitive:
    r"""Schedule-Free AdamW (Defazio et al. 2024): Schedule-Free iterates over an Adam step
    without momentum.

    .. math::
       v_t = β_2 v_{t-1} + (1-β_2) g_t^2,\quad
       u_t = -γ_t\Big(\frac{g_t}{\sqrt{v_t/(1-β_2^t)} + ε} + λ y_t\Big),\quad
       z_{t+1} = z_t + u_t

    with g the gradient at :math:`y_t` and x, y as in :func:`schedule_free_sgd` (including
    its note on the step at which a warmup or schedule is read). State: v and z, 2 × params.
    Evaluate at :func:`schedule_free_eval_params`.
    """
    _checks.check_learning_rate(learning_rate)
    _checks.check_decay("b2", b2, allow_schedule=False)
    _checks.check_nonnegative("eps", eps)
    _checks.check_nonnegative("weight_decay", weight_decay)
    lr = _with_warmup(learning_rate, warmup_steps)
    base = chain(
        ema_of_square("nu", b2, debias=True),
        ratio("g", "nu", eps=eps),
        decoupled_weight_decay(weight_decay),
        scale_by_learning_rate(lr),
    )
    return schedule_free(base, lr, b1, weight_lr_power, state_dtype)


def _iterates_state(state: Any, name: str) -> Any:
    """``name`` of the (unique) ``ScheduleFreeState`` in ``state`` (optlab's or optax's)."""

    def in_schedule_free_state(path, value) -> bool:
        del value
        return getattr(path[-1], "tuple_name", None) == "ScheduleFreeState"

    found = optax.tree.get(state, name, filtering=in_schedule_free_state)
    if found is None:
        raise ValueError("schedule_free_eval_params needs the state of a Schedule-Free "
                         "optimizer (one holding a ScheduleFreeState); none found in "
                         f"{type(state).__name__}")
    return found


def evaluation_point(opt_state: Any, params: Any) -> Any:
    """Where a model trained with this optimizer state is evaluated: Schedule-Free's averaged
    iterate x (:func:`schedule_free_eval_params`) when the state is Schedule-Free's, else
    ``params``."""
    try:
        return schedule_free_eval_params(opt_state, params)
    except ValueError:  # not a Schedule-Free optimizer
        return params


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    r"""The evaluation point :math:`x_t = (y_t - (1-β_1) z_t)/β_1` of a Schedule-Free
    optimizer, from its state and the params :math:`y_t`.

    Works on the state of :func:`schedule_free_sgd` / :func:`schedule_free_adamw` /
    :func:`schedule_free`, also nested (``optax.inject_hyperparams``, a larger chain), and on
    optax's own Schedule-Free state.
    """
    b1, z = _iterates_state(state, "b1"), _iterates_state(state, "z")
    return jax.tree.map(lambda y, z: (y - (1.0 - b1) * z) / b1, params, z)

