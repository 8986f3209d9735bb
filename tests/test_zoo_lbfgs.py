"""L-BFGS (optlab.quasi_newton): optax parity, convergence, composition, state, errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab.quasi_newton import lbfgs, secant_memory, two_loop_recursion
from optlab.stream import chain
from tests.conftest import assert_trees_close, make_params
from tests.test_convergence import PROBLEMS

STEPS = 100


def chained_rosenbrock(params) -> jax.Array:
    """Rosenbrock over all coordinates of a pytree, chained leaf to leaf: a deterministic,
    non-convex objective that L-BFGS needs all 100 steps on (f ≈ 55 after 100 steps)."""
    x = jnp.concatenate([jnp.ravel(leaf) for leaf in jax.tree.leaves(params)])
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def drive(opt, params, steps: int, f=chained_rosenbrock, from_state: bool = True):
    """``steps`` updates in one jitted ``lax.scan``, driven as in optax's docs: value and
    gradient from ``optax.value_and_grad_from_state`` (or recomputed without a line search).
    Returns the stacked params trajectory (index 0: the initial params)."""
    if from_state:
        value_and_grad = optax.value_and_grad_from_state(f)
    else:
        def value_and_grad(p, state):
            del state
            return jax.value_and_grad(f)(p)

    def step(carry, _):
        p, s = carry
        value, grad = value_and_grad(p, state=s)
        u, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=f)
        p = optax.apply_updates(p, u)
        return (p, s), p

    @jax.jit
    def scan(p0):
        _, traj = jax.lax.scan(step, (p0, opt.init(p0)), None, length=steps)
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), p0, traj)

    stacked = scan(params)
    return [jax.tree.map(lambda x, t=t: x[t], stacked) for t in range(steps + 1)]


def _backtracking():
    return optax.scale_by_backtracking_linesearch(max_backtracking_steps=20, store_grad=True)


# (keyword arguments, whether the value and gradient come from the line search's state)
CASES = {
    "defaults": (dict, True),
    "no-linesearch": (lambda: dict(learning_rate=1e-4, linesearch=None), False),
    "memory3-unscaled": (lambda: dict(memory_size=3, scale_init_precond=False), True),
    "backtracking-lr": (lambda: dict(learning_rate=0.5, linesearch=_backtracking()), True),
    "schedule-no-linesearch": (
        lambda: dict(learning_rate=optax.linear_schedule(1e-4, 1e-5, 100), memory_size=4,
                     linesearch=None), False),
}


@pytest.mark.parametrize("case", CASES)
def test_float64_parity(case, x64):
    kwargs, from_state = CASES[case]
    params = make_params(0, jnp.float64)
    ours = drive(lbfgs(**kwargs()), params, STEPS, from_state=from_state)
    ref = drive(optax.lbfgs(**kwargs()), params, STEPS, from_state=from_state)
    for t in (1, 10, STEPS):
        assert_trees_close(ours[t], ref[t], rtol=1e-6, atol=1e-12, msg=f"{case} step {t}")


@pytest.mark.parametrize("case", CASES)
def test_float32_parity(case):
    kwargs, from_state = CASES[case]
    params = make_params(0, jnp.float32)
    ours = drive(lbfgs(**kwargs()), params, STEPS, from_state=from_state)
    ref = drive(optax.lbfgs(**kwargs()), params, STEPS, from_state=from_state)
    assert_trees_close(ours[STEPS], ref[STEPS], rtol=1e-4, atol=1e-5, msg=case)


def test_the_objective_is_not_solved_early(x64):
    """The parity objective keeps L-BFGS busy for all 100 steps (no trivial agreement at a
    converged point)."""
    traj = drive(lbfgs(), make_params(0, jnp.float64), STEPS)
    values = [float(chained_rosenbrock(traj[t])) for t in (10, 50, STEPS)]
    assert values[0] > values[1] > values[2] > 10.0


# Recipes: (steps, lbfgs keyword arguments). Beale from (−4.5, 4.5): with the defaults the
# zoom line search accepts short first steps and L-BFGS creeps down to the x < 0 side, where f
# falls towards 0.45 as x → −∞ (see tests/test_convergence.py); optax's lbfgs does exactly the
# same. A learning rate of 10 scales the line search's first trial step, so the first step
# crosses the x = 0 ridge, after which the line search settles at x* = (3, 0.5).
RECIPES = {"quadratic": (100, {}), "rosenbrock": (100, {}),
           "beale": (200, {"learning_rate": 10.0})}


@pytest.mark.parametrize("problem", PROBLEMS)
def test_reaches_minimum(problem):
    f, x0, x_star = PROBLEMS[problem]
    steps, kwargs = RECIPES[problem]
    x = drive(lbfgs(**kwargs), x0, steps, f=f)[-1]
    distance = float(jnp.linalg.norm(x - x_star))
    assert np.isfinite(distance) and distance < 1e-2, (problem, distance)


def test_two_loop_recursion_is_the_bfgs_inverse_hessian(x64):
    """P_k g from the recursion equals the dense L-BFGS matrix built from the stored pairs by
    P ← Vᵀ P V + ρ s sᵀ, V = I − ρ y sᵀ, P₀ = γ I (Nocedal & Wright, eq. 7.19), in numpy."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    hess = a @ a.T + 6 * np.eye(6)
    f = lambda x: 0.5 * x @ jnp.asarray(hess) @ x + jnp.sum(jnp.sin(x))  # noqa: E731
    m = 3
    tx = chain(secant_memory("memory", m), two_loop_recursion("memory"))
    x, state = jnp.asarray(rng.normal(size=6)), tx.init(jnp.zeros(6))
    xs, gs = [], []
    for _ in range(5):  # more steps than pairs: the ring buffer wraps around
        g = jax.grad(f)(x)
        xs.append(np.asarray(x))
        gs.append(np.asarray(g))
        direction, state = tx.update(g, state, x)
        x = x - 0.05 * direction
    s = [xs[i + 1] - xs[i] for i in range(len(xs) - 1)][-m:]
    y = [gs[i + 1] - gs[i] for i in range(len(gs) - 1)][-m:]
    gamma = s[-1] @ y[-1] / (y[-1] @ y[-1])
    p = gamma * np.eye(6)
    for si, yi in zip(s, y, strict=True):
        rho = 1.0 / (yi @ si)
        v = np.eye(6) - rho * np.outer(yi, si)
        p = v.T @ p @ v + rho * np.outer(si, si)
    np.testing.assert_allclose(np.asarray(direction), p @ gs[-1], rtol=1e-10)


def test_state_fields_and_size():
    """optax's field names, and no more bytes per parameter than optax's lbfgs."""
    params = make_params(0)
    state = lbfgs().init(params)
    for field in ("params", "updates", "diff_params_memory", "diff_updates_memory",
                  "weights_memory", "count", "value", "grad"):
        assert optax.tree.get(state, field) is not None, field
    assert optax.tree.get(state, "diff_params_memory")["w"].shape == (10, 5, 7)

    def nbytes(s):
        return sum(x.nbytes for x in jax.tree.leaves(s))

    for kwargs in ({}, {"memory_size": 3, "linesearch": None}):
        assert nbytes(lbfgs(**kwargs).init(params)) <= nbytes(optax.lbfgs(**kwargs).init(params))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.complex64])
def test_jit_scan_and_abstract_init_are_type_stable(dtype):
    params = jax.tree.map(lambda p: p.astype(dtype), make_params(0))

    def f(p):
        return sum(jnp.sum(jnp.abs(x - 1.0) ** 2).real for x in jax.tree.leaves(p))

    opt = lbfgs()
    state = opt.init(params)
    abstract = jax.eval_shape(opt.init, params)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)
    value, grad = jax.value_and_grad(f)(params)
    grad = jax.tree.map(jnp.conj, grad)
    step = jax.jit(lambda g, s, p, v: opt.update(g, s, p, value=v, grad=g, value_fn=f))
    _, new_state = step(grad, state, params, value)
    same = jax.tree.map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype), abstract,
                        jax.eval_shape(lambda: new_state))
    assert all(jax.tree.leaves(same))
    assert step._cache_size() == 1
    step(grad, new_state, params, value)
    assert step._cache_size() == 1  # no recompilation on the second call


def test_inject_hyperparams():
    """As optax's lbfgs: the learning rate injected, memory_size static."""
    params = make_params(0)
    f = chained_rosenbrock
    outs = []
    for factory in (lbfgs, optax.lbfgs):
        opt = optax.inject_hyperparams(factory, static_args=("memory_size",))(
            learning_rate=0.5, memory_size=4)
        outs.append(drive(opt, params, 5, f=f)[-1])
    assert_trees_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)


def test_composes_in_an_optax_chain_and_accepts_extra_args():
    """Nested in optax.chain (e.g. after gradient clipping), still driven from the state."""
    params = make_params(0)
    ours = drive(optax.chain(optax.clip_by_global_norm(100.0), lbfgs()), params, 20)[-1]
    ref = drive(optax.chain(optax.clip_by_global_norm(100.0), optax.lbfgs()), params, 20)[-1]
    assert_trees_close(ours, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(memory_size=0), ValueError, "memory_size must be an int >= 1"),
    (dict(memory_size=2.5), TypeError, "memory_size must be an int"),
    (dict(learning_rate=-1.0), ValueError, r"learning_rate must be in \[0, inf\)"),
    (dict(scale_init_precond="yes"), TypeError, "scale_init_precond must be a bool"),
    (dict(linesearch="zoom"), TypeError, "linesearch must be None or a GradientTransformation"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        lbfgs(**kwargs)


def test_update_without_params_is_a_clear_error():
    opt = lbfgs(linesearch=None)
    params = make_params(0)
    with pytest.raises(ValueError, match="needs params"):
        opt.update(params, opt.init(params))


def test_state_can_be_donated():
    """Every state buffer is distinct, so a step with donated params and state runs (optax's
    lbfgs init uses one zeros tree for both memories, which a donated step rejects)."""
    opt = lbfgs(linesearch=None, learning_rate=0.1)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(p, s):
        u, s = opt.update(jax.grad(chained_rosenbrock)(p), s, p)
        return optax.apply_updates(p, u), s

    p = make_params(0)
    s = opt.init(p)
    for _ in range(3):
        p, s = step(p, s)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(p))
