"""Staleness as a primitive: gradients applied late, as in asynchronous SGD.

XLA programs are bulk-synchronous, so asynchrony is simulated: the training loop computes one
gradient per step at the current parameters, and :func:`stale_gradients` holds it back in a
queue, releasing at step t the gradient computed at step t − d_t. Placed in front of any
optimizer it turns it into its asynchronous counterpart:

* a fixed delay τ is asynchronous SGD with τ + 1 equally fast workers taking turns (each reads
  the parameters, computes a gradient on its own batch, and pushes it τ server steps later);
* a delay schedule from :func:`async_worker_delays` is the same with workers of different
  speeds (the arrival order of a simulated run);
* a delay drawn afresh each step (``delay`` a function of a PRNG key) is Hogwild!-style
  inconsistent reads (Niu et al. 2011): the update uses a gradient as old as the draw.

Until a gradient has arrived (t − d_t < 0) the released gradient is zero. The queue holds
``max_delay + 1`` gradients (the state is ``max_delay + 1`` × params): the memory of the
method it simulates, where those gradients are in flight on the workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from optlab import _checks
from optlab.regularizers import _canonical_key, _check_key
from optlab.stream import Primitive, expect_plain, primitive, tree_map

__all__ = ["Delay", "StaleState", "async_worker_delays", "resolve_delay", "stale_gradients"]

class StaleState(NamedTuple):
    """``queue``: the last ``max_delay + 1`` gradients, one ring buffer per leaf (leading axis);
    ``key``: the PRNG key of a drawn delay (``None`` otherwise)."""

    queue: Any
    key: jax.Array | None


class Delay(NamedTuple):
    """A resolved ``delay`` argument: the queue ``depth`` (the largest delay) and how
    :math:`d_t` is found at step ``count`` (``draw(count, key) -> (d, key)``)."""

    depth: int
    draw: Callable[[jax.Array, jax.Array | None], tuple[jax.Array, jax.Array | None]]
    key: jax.Array | None


def resolve_delay(delay: Delay | Any, max_delay: int | None, key: Any, who: str) -> Delay:
    """Checks and resolves the ``delay`` / ``max_delay`` / ``key`` arguments (see
    :func:`stale_gradients`)."""
    if callable(delay):
        if max_delay is None:
            raise ValueError(f"{who}: a drawn delay needs max_delay (an int >= 0)")
        _checks.check_int("max_delay", max_delay, low=0)
        _check_key(key)
        depth = int(max_delay)

        def draw(count, key):
            key, sample = jax.random.split(key)
            return jnp.clip(jnp.asarray(delay(sample)).astype(jnp.int32), 0, depth), key

        return Delay(depth, draw, _canonical_key(key))
    if max_delay is not None:
        raise ValueError(f"{who}: max_delay is only for a drawn delay (a function of a key); a "
                         "fixed or scheduled delay is its own maximum")
    schedule = _schedule(delay, who)
    if len(schedule) == 1:
        return Delay(int(schedule[0]), lambda count, key: (jnp.int32(schedule[0]), key), None)
    return Delay(int(schedule.max()),
                 lambda count, key: (jnp.asarray(schedule)[count % len(schedule)], key), None)


def queue_init(tree: Any, depth: int) -> Any:
    """A ring buffer of ``depth + 1`` zero copies of each leaf (leading axis)."""
    return tree_map(lambda p: jnp.zeros((depth + 1, *jnp.shape(p)), jnp.result_type(p)), tree)


def queue_push_pull(queue: Any, tree: Any, count: jax.Array, d: jax.Array) -> tuple[Any, Any]:
    """Writes ``tree`` at step ``count`` and reads the entry of step ``count - d`` (zero while
    ``count < d``: that slot is past ``count`` in the first pass through the ring)."""
    slots = jax.tree.leaves(queue)[0].shape[0] if jax.tree.leaves(queue) else 1
    write = (count % slots).astype(jnp.int32)
    read = ((count - d) % slots).astype(jnp.int32)
    queue = tree_map(lambda q, x: jax.lax.dynamic_update_index_in_dim(
        q, x.astype(q.dtype), write, 0), queue, tree)
    out = tree_map(lambda q, x: jax.lax.dynamic_index_in_dim(
        q, read, 0, keepdims=False).astype(x.dtype), queue, tree)
    return queue, out


def stale_gradients(delay: int | Sequence[int] | Callable[[jax.Array], jax.Array], *,
                    max_delay: int | None = None, key: jax.Array | int = 0) -> Primitive:
    r"""Releases at step t the gradient received at step :math:`t - d_t` (zero before any).

    .. math:: \tilde g_t = g_{t - d_t}\ (t - d_t \ge 0),\qquad \tilde g_t = 0\ \text{otherwise}

    ``delay`` is

    * an int τ ≥ 0: a fixed delay (τ = 0 is the identity and keeps no state);
    * a sequence of ints (e.g. :func:`async_worker_delays`): :math:`d_t` = ``delay[t % len]``;
    * a function ``key -> int`` drawing :math:`d_t` (e.g. ``lambda k:
      jax.random.poisson(k, 4.0)``), with ``max_delay`` required: draws are clipped to
      ``[0, max_delay]``; ``key`` (a PRNG key or int seed) is split once per step.

    Place it first in a chain (it acts on the raw gradient, before any statistic), e.g.
    ``optlab.chain(stale_gradients(4), optlab.adagrad(0.1))`` for Downpour's observation that
    Adagrad makes asynchronous SGD robust (Dean et al. 2012).
    """
    spec = resolve_delay(delay, max_delay, key, "stale_gradients")
    if spec.depth == 0 and spec.key is None:
        return primitive(lambda params: StaleState(None, None),
                         lambda u, s, p, c, **e: (u, s), counted=False)

    def init_fn(params):
        return StaleState(queue_init(params, spec.depth), spec.key)

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        expect_plain(updates, "stale_gradients")
        d, key = spec.draw(count, state.key)
        queue, out = queue_push_pull(state.queue, updates, count, d)
        return out, StaleState(queue, key)

    return primitive(init_fn, update_fn, counted=True)


def _schedule(delay: Any, who: str) -> np.ndarray:
    if isinstance(delay, (bool, np.bool_)):
        raise TypeError(f"{who}: delay must be an int, a sequence of ints or a function of a "
                        "key, got bool")
    schedule = np.atleast_1d(np.asarray(delay))
    if schedule.ndim != 1 or schedule.size == 0 or not np.issubdtype(schedule.dtype, np.integer):
        raise ValueError(f"{who}: delay must be an int >= 0, a non-empty sequence of ints >= 0 "
                         f"or a function of a key, got {delay!r}")
    if schedule.min() < 0:
        raise ValueError(f"{who}: delay must be >= 0, got {int(schedule.min())}")
    return schedule.astype(np.int32)


def async_worker_delays(durations: Sequence[float], steps: int, *, jitter: float = 0.0,
                        seed: int = 0) -> np.ndarray:
    """The delay of each server step in a simulated run of asynchronous SGD.

    ``len(durations)`` = M workers; worker m needs ``durations[m]`` time units per gradient
    (times a factor drawn uniformly from ``[1 - jitter, 1 + jitter]`` per gradient with
    ``seed``). At step m < M worker m reads the still-initial parameters (those M − 1 steps
    release no gradient); from step M − 1 on, each step applies the next gradient to arrive,
    whose worker then reads the new parameters. Returns ``steps`` delays :math:`d_t = t - r`
    (r: the step at which the applied gradient's worker read), for :func:`stale_gradients`.
    M equal durations give the fixed delay M − 1 after the warm-up.
    """
    durations = np.asarray(durations, dtype=float)
    if durations.ndim != 1 or durations.size == 0 or not np.all(durations > 0):
        raise ValueError(f"durations must be a non-empty sequence of times > 0, got "
                         f"{durations.tolist()}")
    _checks.check_int("steps", steps, low=1)
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    rng = np.random.default_rng(seed)
    workers = len(durations)

    def work(m: int) -> float:
        return durations[m] * (1.0 + jitter * rng.uniform(-1.0, 1.0) if jitter else 1.0)

    finish = np.array([work(m) for m in range(workers)])
    read = np.arange(workers)
    delays = np.empty(steps, np.int32)
    for t in range(steps):
        if t < workers - 1:  # warm-up: nothing has arrived yet; a delay past t releases zero
            delays[t] = t + 1
            continue
        m = int(np.argmin(finish))
        delays[t] = t - read[m]
        read[m], finish[m] = t + 1, finish[m] + work(m)
    return delays
