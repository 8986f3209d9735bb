"""Optimistic gradient descent and Optimistic Adam (optlab.optimistic): optax parity, a numpy
reference, the bilinear game they are made for, convergence, transform properties, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab.optimistic import (
    extrapolation,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    previous,
)
from tests.conftest import assert_trees_close, make_params
from tests.test_convergence import PROBLEMS
from tests.test_zoo_layerwise import (
    C,
    K,
    check_inject_hyperparams,
    check_properties,
    distance_after,
    parity_check,
    state_bytes,
)

# optax.optimistic_adam warns that its interface is deprecated (in favour of _v2).
pytestmark = pytest.mark.filterwarnings("ignore:`optimistic_adam` is deprecated")

OURS = {"optimistic_gradient_descent": optimistic_gradient_descent,
        "optimistic_adam": optimistic_adam, "optimistic_adam_v2": optimistic_adam_v2}

CASES = [
    ("optimistic_gradient_descent", dict(learning_rate=0.01)),
    ("optimistic_gradient_descent", dict(learning_rate=optax.cosine_decay_schedule(0.02, 100),
                                         alpha=0.5, beta=2.0)),
    ("optimistic_adam", dict(learning_rate=0.01)),
    ("optimistic_adam", dict(learning_rate=0.01, optimism=0.1, b1=0.8, b2=0.99, eps=1e-6,
                             eps_root=1e-9, nesterov=False)),
    ("optimistic_adam_v2", dict(learning_rate=0.01)),
    ("optimistic_adam_v2", dict(learning_rate=optax.cosine_decay_schedule(0.02, 100),
                                alpha=0.5, beta=2.0, b1=0.8, eps_root=1e-8, nesterov=False)),
    ("optimistic_adam_v2", dict(learning_rate=0.01, mu_dtype=jnp.bfloat16)),
]


def _ids(case):
    name, kw = case
    return name + "-" + "-".join(k for k in kw if k != "learning_rate")


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float64_parity(case, x64):
    name, kw = case
    if kw.get("mu_dtype") is not None:
        pytest.skip("a bfloat16 momentum is a float32-run option")
    parity_check(OURS[name](**kw), getattr(optax, name)(**kw), jnp.float64)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float32_parity(case):
    name, kw = case
    parity_check(OURS[name](**kw), getattr(optax, name)(**kw), jnp.float32)


@pytest.mark.parametrize("name", sorted(OURS))
def test_state_has_optax_names_and_no_more_bytes(name):
    params = make_params(1)
    ours, ref = OURS[name](0.01).init(params), getattr(optax, name)(0.01).init(params)
    assert state_bytes(ours) <= state_bytes(ref)
    fields = ["previous_gradient", "is_initial_step"]
    if name != "optimistic_gradient_descent":
        fields += ["mu", "nu"]
    for field in fields:
        assert_trees_close(optax.tree.get(ours, field), optax.tree.get(ref, field), 0.0)


def test_mu_dtype_sets_the_momentum_dtype():
    state = optimistic_adam_v2(0.01, mu_dtype=jnp.bfloat16).init(make_params(0))
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(optax.tree.get(state, "mu")))


# ------------------------------------------------------------------------------------------
# Reference and the bilinear game
# ------------------------------------------------------------------------------------------


def test_optimistic_gradient_descent_matches_its_formula(x64):
    """u_t = −η((α + β) g_t − β g_{t−1}), g_0 := g_1 (Mokhtari et al. 2020, eq. OGDA)."""
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(20, 3))
    lr, alpha, beta = 0.1, 0.7, 1.3
    tx = optimistic_gradient_descent(lr, alpha, beta)
    s = tx.init(jnp.zeros(3))
    prev = grads[0]
    for g in grads:
        u, s = tx.update(jnp.asarray(g), s)
        np.testing.assert_allclose(np.asarray(u), -lr * ((alpha + beta) * g - beta * prev),
                                   rtol=1e-12)
        prev = g


def _bilinear_distance(tx, steps=2000):
    """min_x max_y x·y from (1, 2), simultaneous steps: the equilibrium is (0, 0)."""

    def body(carry, _):
        p, s = carry
        x, y = p
        u, s = tx.update((y, -x), s, p)  # descent in x, ascent in y
        return (optax.apply_updates(p, u), s), None

    p0 = (jnp.asarray(1.0), jnp.asarray(2.0))
    (p, _), _ = jax.lax.scan(body, (p0, tx.init(p0)), None, length=steps)
    return float(jnp.hypot(*p))


def test_optimism_converges_on_the_bilinear_game_where_gradient_descent_spirals_out():
    assert _bilinear_distance(optax.sgd(0.1)) > 10.0
    assert _bilinear_distance(optimistic_gradient_descent(0.1)) < 1e-3
    # optax's documented configuration for this game
    assert _bilinear_distance(optimistic_adam_v2(1.0, alpha=1e-2, beta=1.0)) < 1e-2


def test_previous_and_extrapolation_compose_on_any_statistic():
    """The primitives read any statistic: here the optimism acts on a momentum."""
    from optlab.accumulators import ema
    from optlab.regularizers import scale_by_learning_rate
    from optlab.stream import chain

    tx = chain(ema("mu", 0.5), previous("mu_prev", source="mu"),
               extrapolation("mu", "mu_prev", alpha=1.0, beta=1.0), scale_by_learning_rate(1.0))
    s = tx.init(jnp.zeros(2))
    u1, s = tx.update(jnp.ones(2), s)  # mu = 0.5, previous := 0.5
    u2, s = tx.update(jnp.ones(2), s)  # mu = 0.75, previous 0.5
    assert_trees_close(u1, -0.5 * jnp.ones(2), 1e-7)
    assert_trees_close(u2, -(2 * 0.75 - 0.5) * jnp.ones(2), 1e-7)


# ------------------------------------------------------------------------------------------
# Convergence
# ------------------------------------------------------------------------------------------

RECIPES = {
    "optimistic_gradient_descent": {
        "quadratic": (0.03, 4000, K, None), "rosenbrock": (3e-4, 50000, K, None),
        "beale": (0.1, 10000, C, 10.0)},
    # optimistic_adam takes no schedule (as optax's); it needs more steps than Adam on Beale.
    "optimistic_adam": {"quadratic": (0.01, 4000, K, None), "rosenbrock": (0.01, 10000, K, None),
                        "beale": (3.0, 10000, K, None)},
    "optimistic_adam_v2": {"quadratic": (0.01, 4000, K, None),
                           "rosenbrock": (0.03, 10000, C, None),
                           "beale": (3.0, 10000, K, None)},
}


@pytest.mark.parametrize("name,problem", [(n, p) for n in RECIPES for p in PROBLEMS])
def test_reaches_minimum(name, problem):
    distance = distance_after(OURS[name], problem, RECIPES[name][problem])
    assert np.isfinite(distance) and distance < 1e-2, (name, problem, distance)


# ------------------------------------------------------------------------------------------
# Transform properties and argument errors
# ------------------------------------------------------------------------------------------

ZOO = {
    "optimistic_gradient_descent": lambda: optimistic_gradient_descent(0.01),
    "optimistic_adam": lambda: optimistic_adam(0.01),
    "optimistic_adam_v2": lambda: optimistic_adam_v2(0.01),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_properties(name):
    check_properties(ZOO[name]())


@pytest.mark.parametrize("name", sorted(OURS))
def test_inject_hyperparams(name):
    check_inject_hyperparams(OURS[name], getattr(optax, name), learning_rate=0.05)


BAD = [
    (lambda: optimistic_gradient_descent(-0.1), ValueError, "learning_rate must be in"),
    (lambda: optimistic_gradient_descent(0.1, alpha=-1.0), ValueError,
     r"alpha must be in \[0, inf\)"),
    (lambda: optimistic_gradient_descent(0.1, beta=-1.0), ValueError, "beta must be in"),
    (lambda: optimistic_adam_v2(0.1, b1=1.0), ValueError, r"b1 must be in \[0, 1\)"),
    (lambda: optimistic_adam_v2(0.1, beta=float("nan")), ValueError, "beta"),
    (lambda: optimistic_adam(0.1, optimism=-1.0), ValueError, "optimism must be in"),
    (lambda: optimistic_adam(lambda t: 0.1), ValueError, "optimistic_adam_v2"),
    (lambda: optimistic_adam(0.1, eps=-1.0), ValueError, "eps"),
    (lambda: previous(""), TypeError, "name"),
]


@pytest.mark.parametrize("make,error,match", BAD)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
