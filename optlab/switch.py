"""Choosing among whole optimizers by a traced index: several optimizers in one compiled
program (e.g. a grid over methods in :func:`optlab.train.train`, vmapped over the index)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import optax

__all__ = ["OneOf", "one_of"]


class OneOf(optax.GradientTransformationExtraArgs):
    """The transform :func:`one_of` returns: an ``optax.GradientTransformationExtraArgs`` that
    also knows where its chosen optimizer is evaluated (:meth:`evaluation_params`)."""

    _index: jax.Array | int

    def evaluation_params(self, state: Any, params: Any) -> Any:
        """The point the chosen optimizer is evaluated at: Schedule-Free's averaged iterate
        x for a Schedule-Free member (from that member's own state, not another's), else the
        params (:func:`optlab.schedule_free.evaluation_point` per member, then the index)."""
        from optlab.schedule_free import evaluation_point

        return jax.lax.switch(self._index, [lambda s=s: evaluation_point(s, params)
                                            for s in state])


def one_of(index: jax.Array | int,
           transforms: Sequence[optax.GradientTransformation]
           ) -> OneOf:
    """The transform ``transforms[index]``, with ``index`` a (possibly traced) integer.

    The state holds every transform's state (so its structure does not depend on the index);
    ``lax.switch`` runs only the chosen transform's update, and the other states are passed
    through unchanged. Extra arguments (``value=...``) reach each transform that accepts them.
    Use it to train several optimizers as one grid: ``train(data, model, lambda method, lr:
    one_of(method, [optlab.sgd(lr), optlab.adam(lr)]), hyperparams={"method": [0, 1], ...})``.
    """
    transforms = tuple(optax.with_extra_args_support(t) for t in transforms)
    if not transforms:
        raise ValueError("one_of needs at least one transform")

    def init(params):
        return tuple(t.init(params) for t in transforms)

    def update(updates, state, params=None, **extra):
        def branch(i):
            def run(_):
                u, s = transforms[i].update(updates, state[i], params, **extra)
                return u, (*state[:i], s, *state[i + 1:])

            return run

        return jax.lax.switch(index, [branch(i) for i in range(len(transforms))], None)

    tx = OneOf(init, update)
    tx._index = index
    return tx
