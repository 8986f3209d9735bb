"""AdaptiveRevision (McMahan & Streeter 2014): a delay-tolerant AdaGrad."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optlab import _checks
from optlab.parallel.staleness import queue_init, queue_push_pull, resolve_delay
from optlab.stream import Primitive, expect_plain, primitive, tree_map_n, zeros_like

__all__ = ["RevisionState", "adaptive_revision"]


class RevisionState(NamedTuple):
    """``gradients`` / ``reads``: queues of the gradients in flight and of ḡ at the step each
    was read; ``gbar``: the sum of applied gradients ḡ; ``z``, ``z_max``: z and z′."""

    gradients: Any
    reads: Any
    gbar: Any
    z: Any
    z_max: Any
    key: jax.Array | None


def adaptive_revision(learning_rate: float = 0.1,
                      delay: int | Sequence[int] | Callable[[jax.Array], jax.Array] = 0, *,
                      beta: float = 1.0, max_delay: int | None = None,
                      key: jax.Array | int = 0) -> Primitive:
    r"""AdaptiveRevision (McMahan & Streeter, NIPS 2014; dmlc/wormhole's delay-tolerant
    handle), with its own gradient queue: a gradient computed at step s arrives at
    :math:`t = s + d_t` (``delay`` as in :func:`stale_gradients`). Per coordinate, with
    :math:`\bar g` the sum of the gradients applied so far and :math:`\bar g_{old}` its value
    when the arriving gradient g was read,

    .. math::
        g_{bck} = \bar g - \bar g_{old},\quad z ← z + g^2 + 2 g\,g_{bck},\quad
        η_{old} = \frac{α}{β + \sqrt{z'}},\quad z' ← \max(z', z),\quad
        η = \frac{α}{β + \sqrt{z'}},

    .. math:: θ ← θ - η g + (η_{old} - η)\, g_{bck},\qquad \bar g ← \bar g + g.

    The revision term takes back, at the smaller new rate, the part of the earlier updates
    that the late gradient shows to be too large. Without delay it is AdaGrad with
    :math:`η = α/(β + \sqrt{\sum g^2})`. α = ``learning_rate``.
    """
    _checks.check_positive("learning_rate", learning_rate)
    _checks.check_nonnegative("beta", beta)
    spec = resolve_delay(delay, max_delay, key, "adaptive_revision")

    def init_fn(params):
        zeros = zeros_like(params)
        return RevisionState(queue_init(params, spec.depth), queue_init(params, spec.depth),
                             zeros, zeros, zeros, spec.key)

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        expect_plain(updates, "adaptive_revision")
        d, key = spec.draw(count, state.key)
        gradients, g = queue_push_pull(state.gradients, updates, count, d)
        reads, gbar_old = queue_push_pull(state.reads, state.gbar, count, d)

        def one(g, gbar, gbar_old, z, z_max):
            back = gbar - gbar_old
            z = z + g * g + 2 * g * back
            eta_old = learning_rate / (beta + jnp.sqrt(z_max))
            z_max = jnp.maximum(z_max, z)
            eta = learning_rate / (beta + jnp.sqrt(z_max))
            return -eta * g + (eta_old - eta) * back, gbar + g, z, z_max

        out, gbar, z, z_max = tree_map_n(one, 4, g, state.gbar, gbar_old, state.z, state.z_max)
        return out, RevisionState(gradients, reads, gbar, z, z_max, key)

    return primitive(init_fn, update_fn, counted=True)
