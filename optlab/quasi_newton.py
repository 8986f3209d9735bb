r"""L-BFGS as a chain: a memory of secant pairs, the two-loop recursion, a line search.

L-BFGS (Liu & Nocedal 1989) is not a per-step function of the gradient: its direction
:math:`-P_k g_k` depends on the last m *secant pairs*

.. math:: s_i = w_{i+1} - w_i,\qquad y_i = g_{i+1} - g_i,\qquad ρ_i = 1 / \langle y_i, s_i\rangle

and its step size on the objective along that direction. It still composes as an optlab chain,
because each part reads what the one before it produced:

* :func:`secant_memory` is an *accumulator*. It remembers the previous params and gradient,
  forms the newest pair (s, y) from the current ones and writes it into a ring buffer of the
  last m pairs. It adds the whole memory to the stream as one statistic (a
  :class:`SecantMemory`): the pairs are statistics of the gradient *sequence*, as an EMA is.
  The buffer is updated before the direction is computed, so a line search after it can
  change the step without leaving a stale pair behind (the pair is formed at the next call,
  from the params the line search accepted).
* :func:`two_loop_recursion` is a *combiner*: it reads the gradient and the memory and returns
  :math:`P_k g_k` (Nocedal & Wright, Algorithm 7.4), a plain update tree.
* After it come ordinary transforms of plain trees: the sign flip or a learning rate, then a
  line search such as ``optax.scale_by_zoom_linesearch``, which scales the direction by a step
  satisfying the Wolfe conditions, reading ``value``, ``grad`` and ``value_fn`` from the
  ``update`` call. optlab's chain passes these extra arguments to every transform, so optax's
  line-search transforms compose unchanged, and ``optax.value_and_grad_from_state`` finds the
  value and gradient the line search stored in the state.
"""


from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax import ScalarOrSchedule

from optlab import _checks
from optlab.regularizers import scale_by_learning_rate
from optlab.stream import (
    GRAD,
    Primitive,
    as_stream,
    cast_like,
    chain,
    check_same_structure,
    primitive,
    require_params,
    tree_inner,
    tree_map,
    zeros_like,
)

__all__ = [
    "SecantMemory",
    "SecantMemoryState",
    "lbfgs",
    "secant_memory",
    "two_loop_recursion",
]


class SecantMemoryState(NamedTuple):
    """State of :func:`secant_memory`, with optax's ``ScaleByLBFGSState`` field names.

    ``params`` and ``updates`` are the previous params and gradient; the memories hold m pairs
    stacked along a leading axis of every leaf, and ``weights_memory`` the m values ρ_i.
    """

    params: Any
    updates: Any
    diff_params_memory: Any
    diff_updates_memory: Any
    weights_memory: jax.Array


class SecantMemory(NamedTuple):
    """The statistic :func:`secant_memory` adds to the stream.

    ``s``, ``y`` and ``rho`` are the ring buffers (zeros where no pair is stored yet, which
    the recursion skips: their ρ is 0); ``oldest`` is the slot of the oldest pair, k mod m;
    ``sy`` and ``yy`` are :math:`\\langle y, s\\rangle` and :math:`\\lVert y\\rVert^2` of the
    newest pair (0 at the first step).
    """

    s: Any
    y: Any
    rho: jax.Array
    oldest: jax.Array
    sy: jax.Array
    yy: jax.Array


def _tree_where(cond: jax.Array, tree: Any) -> Any:
    return tree_map(lambda x: jnp.where(cond, x, jnp.zeros_like(x)), tree)


def secant_memory(name: str = "memory", memory_size: int = 10) -> Primitive:
    r"""Ring buffer of the last ``memory_size`` secant pairs (L-BFGS's memory).

    At step k (0 first) it forms :math:`s_{k-1} = w_k - w_{k-1}`,
    :math:`y_{k-1} = g_k - g_{k-1}` and :math:`ρ_{k-1} = 1/\langle y_{k-1}, s_{k-1}\rangle`
    (0 when the inner product is 0), stores them in slot (k − 1) mod m, and adds the memory
    to the stream as a :class:`SecantMemory` under ``name``. Nothing is stored at k = 0.
    Needs the params in ``update``. State: the previous params and gradient and the m pairs,
    :math:`(2m + 2)` × params, as optax's ``scale_by_lbfgs``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise TypeError(f"name must be a statistic name (a Python identifier), got {name!r}")
    _checks.check_int("memory_size", memory_size, low=1)

    def stacked_zeros(params):
        # Broadcast from zeros_like, so each slot has the sharding of its leaf.
        return tree_map(lambda p: jnp.broadcast_to(
            jnp.zeros_like(p)[None], (memory_size, *jnp.shape(p))), params)

    def init_fn(params):
        # Distinct buffers (not one zeros tree used twice), so the state can be donated.
        return SecantMemoryState(
            params=zeros_like(params), updates=zeros_like(params),
            diff_params_memory=stacked_zeros(params), diff_updates_memory=stacked_zeros(params),
            weights_memory=jnp.zeros(memory_size))

    def update_fn(updates, state, params, count, **extra):
        del extra
        stream = as_stream(updates, "secant_memory")
        g = stream[GRAD]
        check_same_structure(g, state.params, "secant_memory: updates",
                             "the optimizer state (from params)")
        require_params(params, "secant_memory (L-BFGS)")
        started = count > 0
        s = tree_map(jnp.subtract, params, state.params)
        y = tree_map(jnp.subtract, g, state.updates)
        sy = tree_inner(y, s)
        rho = jnp.where(sy == 0.0, 0.0, 1.0 / sy)
        s, y, rho, sy = _tree_where(started, (s, y, rho, sy))
        slot = (count - 1) % memory_size
        s_mem, y_mem, rho_mem = jax.tree.map(
            lambda buf, new: buf.at[slot].set(new),
            (state.diff_params_memory, state.diff_updates_memory, state.weights_memory),
            (s, y, rho))
        memory = SecantMemory(
            s=s_mem, y=y_mem, rho=rho_mem, oldest=count % memory_size, sy=sy,
            yy=optax.tree.norm(y, squared=True))
        new_state = SecantMemoryState(
            params=cast_like(params, state.params), updates=cast_like(g, state.updates),
            diff_params_memory=s_mem, diff_updates_memory=y_mem, weights_memory=rho_mem)
        return stream.add(name, memory), new_state

    return primitive(init_fn, update_fn, counted=True)


def two_loop_recursion(memory: str = "memory", *, scale_init_precond: bool = True) -> Primitive:
    r"""The L-BFGS direction :math:`P_k g_k` by the two-loop recursion (Nocedal & Wright 2006,
    Algorithm 7.4), reading the gradient and a :class:`SecantMemory`.

    .. math::
       q \leftarrow g;\ \ α_i = ρ_i\langle s_i, q\rangle,\ q \leftarrow q - α_i y_i
       \ \ (i = k-1, \dots, k-m);\qquad r \leftarrow γ_k q;\\
       β_i = ρ_i\langle y_i, r\rangle,\ r \leftarrow r + (α_i - β_i) s_i
       \ \ (i = k-m, \dots, k-1);\qquad P_k g_k = r

    with :math:`γ_k = \langle s_{k-1}, y_{k-1}\rangle / \lVert y_{k-1}\rVert^2` when
    ``scale_init_precond`` (1 while :math:`y_{k-1} = 0`), else 1. At the first step
    :math:`γ_0 = \min(1, 1/\lVert g_0\rVert)`: the first step stays in the unit ball
    (optax's heuristic). Stateless.
    """
    if not isinstance(scale_init_precond, bool):
        raise TypeError(f"scale_init_precond must be a bool, got {scale_init_precond!r}")

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "two_loop_recursion")
        g, mem = stream[GRAD], stream[memory]
        m = mem.rho.shape[0]
        if scale_init_precond:
            gamma = jnp.where(mem.yy > 0.0, mem.sy / mem.yy, 1.0)
            first = jnp.minimum(1.0, 1.0 / optax.tree.norm(jax.lax.stop_gradient(g)))
            gamma = jnp.where(count > 0, gamma, first)
        else:
            gamma = 1.0
        order = (mem.oldest + jnp.arange(m)) % m  # oldest ... newest

        def pair(i):
            return jax.tree.map(lambda buf: buf[i], (mem.s, mem.y))

        def newest_to_oldest(q, i):
            s_i, y_i = pair(i)
            alpha = mem.rho[i] * tree_inner(s_i, q)
            return cast_like(tree_map(lambda q, y: q - alpha * y, q, y_i), q), alpha

        def oldest_to_newest(r, i_alpha):
            i, alpha = i_alpha
            s_i, y_i = pair(i)
            beta = mem.rho[i] * tree_inner(y_i, r)
            return cast_like(tree_map(lambda r, s: r + (alpha - beta) * s, r, s_i), r), beta

        q, alphas = jax.lax.scan(newest_to_oldest, g, order, reverse=True)
        r = tree_map(lambda q: gamma * q, q)
        r, _ = jax.lax.scan(oldest_to_newest, r, (order, alphas))
        return cast_like(r, g), state

    def init_fn(params):
        del params
        return optax.EmptyState()

    return primitive(init_fn, update_fn, counted=scale_init_precond)


def _default_linesearch() -> optax.GradientTransformationExtraArgs:
    return optax.scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")


def _strongly_typed(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` whose initial state has no weakly typed leaves.

    optax's line searches start with Python scalars in their state (weakly typed) that their
    update returns strongly typed, so a jitted step would compile twice; casting the initial
    state to its own dtype makes the state type-stable from the first call.
    """

    def init_fn(params):
        return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.result_type(x)), tx.init(params))

    return tx._replace(init=init_fn)


def lbfgs(
    learning_rate: ScalarOrSchedule | None = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: optax.GradientTransformation | None = _default_linesearch(),  # noqa: B008
) -> Primitive:
    r"""L-BFGS (Liu & Nocedal 1989; Nocedal & Wright 2006, Algorithms 7.4 and 7.5).

    .. math::
       s_i = w_{i+1} - w_i,\quad y_i = g_{i+1} - g_i,\quad ρ_i = 1/\langle y_i, s_i\rangle,\\
       P_k = V_{k-1}^\top P_{k-1} V_{k-1} + ρ_{k-1} s_{k-1} s_{k-1}^\top,\quad
       V_i = I - ρ_i y_i s_i^\top,\quad P_{k-m} = γ_k I,\\
       w_{k+1} = w_k - η_k P_k g_k

    over the last m = ``memory_size`` pairs, with :math:`γ_k` as in
    :func:`two_loop_recursion`. The step :math:`η_k` is found by ``linesearch`` (default: the
    zoom line search for the strong Wolfe conditions, ``optax.scale_by_zoom_linesearch(
    max_linesearch_steps=20, initial_guess_strategy='one')``, as optax's ``lbfgs``), times the
    ``learning_rate`` when one is given; with ``linesearch=None``, :math:`η_k` is the learning
    rate (1 by default).

    Chain: :func:`secant_memory` (accumulator: the pairs), :func:`two_loop_recursion`
    (combiner: :math:`P_k g_k`), ``-η``, then the line search, which reads ``value``, ``grad``
    and ``value_fn`` passed to ``update`` exactly as for ``optax.lbfgs``::

        value_and_grad = optax.value_and_grad_from_state(f)
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=f)

    State: the previous params and gradient and m pairs ((2m + 2) × params) plus the line
    search's state, as optax's.
    """
    if learning_rate is not None:
        _checks.check_learning_rate(learning_rate)
    _checks.check_int("memory_size", memory_size, low=1)
    if not isinstance(scale_init_precond, bool):
        raise TypeError(f"scale_init_precond must be a bool, got {scale_init_precond!r}")
    if linesearch is not None and not (callable(getattr(linesearch, "init", None))
                                       and callable(getattr(linesearch, "update", None))):
        raise TypeError("linesearch must be None or a GradientTransformation such as "
                        f"optax.scale_by_zoom_linesearch(...), got {type(linesearch).__name__}")
    parts = [
        secant_memory("memory", memory_size),
        two_loop_recursion("memory", scale_init_precond=scale_init_precond),
        scale_by_learning_rate(1.0 if learning_rate is None else learning_rate),
    ]
    if linesearch is not None:
        parts.append(_strongly_typed(linesearch))
    return chain(*parts)
