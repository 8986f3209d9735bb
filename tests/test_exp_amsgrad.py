"""Helpers of experiments/amsgrad.py: the recorded trajectory, the regret and the decision."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab import reproduce

reproduce.load("amsgrad")
ams = sys.modules["optlab_experiments.amsgrad"]


def _every_step(name: str, problem_name: str, steps: int, seed: int):
    """x_t and g_t at every step, the plain way (the reference)."""
    problem = ams.PROBLEMS[problem_name]
    tx = ams.OPTIMIZERS[name](ams.step_size)
    base = jax.random.key(seed)

    def body(carry, step):
        x, state = carry
        g = jax.grad(problem.loss_at)(x, step, jax.random.fold_in(base, step))
        u, state = tx.update(g, state, x)
        return (problem.apply_projection(optax.apply_updates(x, u)), state), (x[0], g[0])

    _, (xs, gs) = jax.lax.scan(body, (problem.x0, tx.init(problem.x0)), jnp.arange(steps))
    return np.asarray(xs), np.asarray(gs)


@pytest.mark.parametrize("problem", ["online", "stochastic"])
def test_recorded_points_equal_the_full_trajectory(problem):
    """x and R_t/t at the log-spaced points are those of the full trajectory (float64
    regret; the stochastic regret uses the expected gradient 0.2)."""
    steps, name = 3000, "AMSGrad (PyTorch: max of v)"
    idx = ams.log_points(steps, n=50)
    xs, rs = ams.trajectories(name, problem, jnp.asarray([3]), jnp.asarray(idx))
    x_ref, g_ref = _every_step(name, problem, steps, 3)
    if problem == "stochastic":
        g_ref = np.full_like(g_ref, 0.2)
    np.testing.assert_array_equal(np.asarray(xs)[0], x_ref[idx])
    np.testing.assert_allclose(np.asarray(rs)[0], ams.average_regret(x_ref, g_ref)[idx],
                               rtol=1e-5)


def test_log_points_hold_the_decade_and_the_end():
    idx = ams.log_points(10_000_000)
    assert idx[0] == 0 and idx[-1] == 9_999_999 and 999_999 in idx
    assert np.all(np.diff(idx) > 0) and len(idx) <= 402


def test_average_regret():
    xs = np.zeros((1, 4))  # x = 0 against x* = −1: regret g per step
    np.testing.assert_allclose(ams.average_regret(xs, np.array([[2.0, 0.0, 4.0, 2.0]])),
                               [[2.0, 1.0, 2.0, 2.0]])


def test_part_decisions():
    """True at the end points; None when an AMSGrad form misses −0.9 but is still falling
    significantly; False when it is not, or when Adam does not reach 0.9."""
    amsgrad = [n for n in ams.OPTIMIZERS if n != "Adam"]
    final = {"Adam": [0.99, 0.98, 1.0], **{n: [-0.99, -0.97, -1.0] for n in amsgrad}}
    assert ams.part(final, final) is True
    slow = {**final, amsgrad[0]: [-0.8, -0.7, -0.75]}
    before = {**final, amsgrad[0]: [-0.3, -0.2, -0.25]}
    assert ams.part(slow, before) is None
    assert ams.part(slow, slow) is False
    assert ams.part({**final, "Adam": [0.5, 0.6, 0.7]}, final) is False
