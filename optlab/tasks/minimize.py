"""Minimising a synthetic :class:`~optlab.tasks.synthetic.Problem` with an optimizer, over a
grid of learning rates in one compiled, vmapped ``lax.scan`` program."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax

from optlab.tasks.synthetic import Problem


def final_losses(make: Callable[..., optax.GradientTransformation], problem: Problem,
                 lrs: Sequence[float], steps: int, seed: int = 0) -> jax.Array:
    """``problem.loss`` after ``steps`` updates of ``make(learning_rate=lr)`` for each lr.

    Each step differentiates ``problem.loss_at(x, step, key)`` (noise, minibatches or an
    online sequence when the problem has them; key = ``fold_in(key(seed), step)``) and then
    applies ``problem.apply_projection``. All learning rates run in one program.
    """
    base = jax.random.key(seed)

    def run(lr):
        tx = make(learning_rate=lr)

        def body(carry, step):
            x, state = carry
            grad = jax.grad(problem.loss_at)(x, step, jax.random.fold_in(base, step))
            updates, state = tx.update(grad, state, x)
            return (problem.apply_projection(optax.apply_updates(x, updates)), state), None

        (x, _), _ = jax.lax.scan(body, (problem.x0, tx.init(problem.x0)), jnp.arange(steps))
        return problem.loss(x)

    return jax.jit(jax.vmap(run))(jnp.asarray(lrs, jnp.float32))
