"""Minimising a synthetic :class:`~optlab.tasks.synthetic.Problem` with an optimizer, over a
grid of learning rates (and other scalar hyperparameters, and seeds) in one compiled, vmapped
``lax.scan`` program."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from optlab.tasks.synthetic import Problem


def final_losses(make: Callable[..., optax.GradientTransformation], problem: Problem,
                 lrs: Sequence[float], steps: int, seed: int = 0, *,
                 hyperparams: Mapping[str, Sequence[float]] | None = None,
                 schedule: Callable[[jax.Array], jax.Array] | None = None,
                 seeds: Sequence[int] | None = None) -> jax.Array:
    """``problem.loss`` after ``steps`` updates of ``make(learning_rate=lr, **point)`` for each
    lr.

    Each step differentiates ``problem.loss_at(x, step, key)`` (noise, minibatches or an
    online sequence when the problem has them; key = ``fold_in(key(seed), step)``) and then
    applies ``problem.apply_projection``. All runs are one program.

    Args:
      hyperparams: further scalar arguments of ``make``, one value per learning rate (the
        i-th run uses ``lrs[i]`` and ``hyperparams[k][i]``).
      schedule: a multiplier ``step -> factor`` of the learning rate.
      seeds: run every point with each of these seeds; the result then has shape
        ``(len(lrs), len(seeds))`` instead of ``(len(lrs),)``.
    """
    points = {"learning_rate": jnp.asarray(lrs, jnp.float32)}
    for name, values in (hyperparams or {}).items():
        if len(values) != len(lrs):
            raise ValueError(f"hyperparams[{name!r}] has {len(values)} values; expected one "
                             f"per learning rate ({len(lrs)})")
        points[name] = jnp.asarray(values, jnp.float32)
    seed_list = jnp.asarray([seed] if seeds is None else list(seeds), jnp.int32)

    def run(point, run_seed):
        base = jax.random.key(run_seed)
        kwargs = dict(point)
        if schedule is not None:
            lr = kwargs["learning_rate"]
            kwargs["learning_rate"] = lambda step: lr * schedule(step)
        tx = make(**kwargs)

        def body(carry, step):
            x, state = carry
            grad = jax.grad(problem.loss_at)(x, step, jax.random.fold_in(base, step))
            updates, state = tx.update(grad, state, x)
            return (problem.apply_projection(optax.apply_updates(x, updates)), state), None

        (x, _), _ = jax.lax.scan(body, (problem.x0, tx.init(problem.x0)), jnp.arange(steps))
        return problem.loss(x)

    losses = jax.jit(jax.vmap(jax.vmap(run, (None, 0)), (0, None)))(points, seed_list)
    return losses[:, 0] if seeds is None else losses
