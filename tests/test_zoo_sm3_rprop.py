"""SM3 (optlab.covers) and Rprop (optlab.resilient): optax parity, numpy references written
from the papers, convergence, transform properties and argument errors.

Two optax 0.2.8 bugs are not copied, and tested here: ``optax.sm3`` raises IndexError on a
scalar leaf (google-deepmind/optax#1736), and ``optax.rprop`` applies every step one update
late, its first update being 0 (google-deepmind/optax#1725). Parity with optax is tested on
trees without scalars (SM3) and with ``one_step_late=True`` (Rprop).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab.covers import cover_sum_of_squares, sm3
from optlab.resilient import rprop, sign_adapted_step
from tests.conftest import assert_trees_close, make_params
from tests.test_convergence import PROBLEMS
from tests.test_zoo_layerwise import (
    K,
    check_inject_hyperparams,
    check_properties,
    distance_after,
    parity_check,
    state_bytes,
)

NO_SCALAR = ("scalar",)
LATE = {"one_step_late": True}

CASES = [
    ("sm3", dict(learning_rate=0.1), {}, NO_SCALAR),
    ("sm3", dict(learning_rate=0.05, momentum=0.5), {}, NO_SCALAR),
    ("rprop", dict(learning_rate=0.01), LATE, ()),
    ("rprop", dict(learning_rate=0.001, eta_minus=0.3, eta_plus=1.5, min_step_size=1e-4,
                   max_step_size=0.1), LATE, ()),
]
OURS = {"sm3": sm3, "rprop": rprop}


def _ids(case):
    name, kw, extra, _ = case
    return name + "-" + "-".join([k for k in kw if k != "learning_rate"] + list(extra))


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float64_parity(case, x64):
    name, kw, extra, drop = case
    parity_check(OURS[name](**kw, **extra), getattr(optax, name)(**kw), jnp.float64, drop)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float32_parity(case):
    name, kw, extra, drop = case
    parity_check(OURS[name](**kw, **extra), getattr(optax, name)(**kw), jnp.float32, drop)


@pytest.mark.parametrize("name,fields", [("sm3", ("mu", "nu")),
                                         ("rprop", ("step_sizes", "prev_updates"))])
def test_state_has_optax_names_and_no_more_bytes(name, fields):
    params = make_params(1)
    params.pop("scalar")
    ours, ref = OURS[name](0.01).init(params), getattr(optax, name)(0.01).init(params)
    assert state_bytes(ours) <= state_bytes(ref)
    for field in fields:
        assert_trees_close(optax.tree.get(ours, field), optax.tree.get(ref, field), 0.0)


def test_sm3_memory_is_the_sum_of_the_dimensions():
    """A 5 × 7 matrix keeps 5 + 7 accumulators, a 3 × 2 × 6 tensor 3 + 2 + 6, a vector its
    entries (plus the momentum, 1 × params)."""
    mu = optax.tree.get(sm3(0.1).init(make_params(0)), "mu")
    assert [x.shape for x in mu["w"]] == [(5,), (7,)]
    assert [x.shape for x in mu["nested"]["k"]] == [(3,), (2,), (6,)]
    assert [x.shape for x in mu["nested"]["b"]] == [(4,)]
    assert [x.shape for x in mu["scalar"]] == [()]


# ------------------------------------------------------------------------------------------
# SM3: scalars, and the paper's SM3-II
# ------------------------------------------------------------------------------------------


def test_sm3_accepts_scalar_leaves_which_optax_does_not():
    params = {"w": jnp.ones((2, 3)), "temperature": jnp.asarray(2.0)}
    grads = {"w": jnp.full((2, 3), 0.5), "temperature": jnp.asarray(0.3)}
    ref = optax.sm3(0.1)
    with pytest.raises(IndexError):
        ref.update(grads, ref.init(params), params)
    # A scalar is covered by itself: its update equals that of a one-element vector.
    tx = sm3(0.1)
    s = tx.init(params)
    vec = {"w": params["w"], "temperature": params["temperature"][None]}
    sv = tx.init(vec)
    for _ in range(3):
        u, s = tx.update(grads, s, params)
        uv, sv = tx.update({"w": grads["w"], "temperature": grads["temperature"][None]}, sv, vec)
        assert_trees_close(u["temperature"], uv["temperature"][0], 0.0)


def np_sm3(grads, lr, momentum, eps=1e-8):
    """Anil et al. (2019), SM3-II on one matrix with row and column covers, written from the
    algorithm: ν'(i,j) = min(μ_row(i), μ_col(j)) + g²(i,j); μ_row(i) = max_j ν'(i,j),
    μ_col(j) = max_i ν'(i,j); d = g/√ν' (0/0 = 0); momentum b = β b + (1−β) d; u = −η b."""
    rows, cols = np.zeros(grads.shape[1]), np.zeros(grads.shape[2])
    b, out = np.zeros(grads.shape[1:]), []
    for g in grads:
        nu = np.empty_like(g)
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                nu[i, j] = min(rows[i], cols[j]) + g[i, j] ** 2
        rows, cols = nu.max(axis=1), nu.max(axis=0)
        d = np.where(nu > 0, g / np.sqrt(nu + eps), 0.0)
        b = momentum * b + (1 - momentum) * d
        out.append(-lr * b)
    return np.stack(out)


def test_sm3_matches_the_paper(x64):
    grads = np.random.default_rng(0).normal(size=(25, 4, 3)) * np.arange(1, 4)
    tx = sm3(0.1, momentum=0.7)
    s = tx.init(jnp.zeros((4, 3)))
    ours = []
    for g in grads:
        u, s = tx.update(jnp.asarray(g), s)
        ours.append(np.asarray(u))
    np.testing.assert_allclose(np.stack(ours), np_sm3(grads, 0.1, 0.7), rtol=1e-10, atol=1e-14)


def test_cover_sum_of_squares_is_adagrads_sum_for_vectors():
    tx = cover_sum_of_squares("mu")
    s = tx.init(jnp.zeros(3))
    for g in ([1.0, 2.0, 0.0], [3.0, 0.0, 1.0]):
        out, s = tx.update(jnp.asarray(g), s)
    assert_trees_close(out["mu"], jnp.array([10.0, 4.0, 1.0]), 0.0)


# ------------------------------------------------------------------------------------------
# Rprop: the paper's iRprop⁻, and optax's one-step lag
# ------------------------------------------------------------------------------------------

T = 60
RNG = np.random.default_rng(0)
P0 = RNG.normal(size=(4, 5))
NOISE = 0.3 * RNG.normal(size=(T, 4, 5))


def np_irprop_minus(lr, eta_minus=0.5, eta_plus=1.2, step_min=1e-6, step_max=50.0):
    """Igel & Hüsken (2003), iRprop⁻, per coordinate, from the paper's pseudo-code:
    if g_{t-1} g_t > 0: Δ ← min(Δ η⁺, Δmax); elif g_{t-1} g_t < 0: Δ ← max(Δ η⁻, Δmin), g_t ← 0;
    w ← w − sign(g_t) Δ; remember g_t. Gradient of ½‖w − 1‖² plus noise."""
    w, delta, g_prev, out = P0.copy(), np.full_like(P0, lr), np.zeros_like(P0), []
    for t in range(T):
        g = (w - 1.0) + NOISE[t]
        for idx in np.ndindex(w.shape):
            agree = g_prev[idx] * g[idx]
            if agree > 0:
                delta[idx] = min(delta[idx] * eta_plus, step_max)
            elif agree < 0:
                delta[idx] = max(delta[idx] * eta_minus, step_min)
                g[idx] = 0.0
            w[idx] -= np.sign(g[idx]) * delta[idx]
        g_prev = g
        out.append(w.copy())
    return np.stack(out)


def _rprop_trajectory(tx):
    w = jnp.asarray(P0)
    s, update, out = tx.init(w), jax.jit(tx.update), []
    for t in range(T):
        u, s = update((w - 1.0) + NOISE[t], s, w)
        w = optax.apply_updates(w, u)
        out.append(np.asarray(w))
    return np.stack(out)


@pytest.mark.parametrize("kw", [dict(lr=0.01), dict(lr=0.1, eta_minus=0.3, eta_plus=1.5,
                                                    step_min=1e-3, step_max=0.2)])
def test_rprop_matches_the_paper(kw, x64):
    args = (kw["lr"], kw.get("eta_minus", 0.5), kw.get("eta_plus", 1.2),
            kw.get("step_min", 1e-6), kw.get("step_max", 50.0))
    np.testing.assert_allclose(_rprop_trajectory(rprop(*args)), np_irprop_minus(*args),
                               rtol=1e-12, atol=1e-14)


def test_optax_rprop_lags_one_step():
    """google-deepmind/optax#1725's example: gradients 1, 1, 1, −1, 1 with Δ₀ = 0.1."""
    grads = [1.0, 1.0, 1.0, -1.0, 1.0]

    def steps(tx):
        s, out = tx.init(jnp.zeros(1)), []
        for g in grads:
            u, s = tx.update(jnp.asarray([g]), s)
            out.append(-float(u[0]))
        return np.asarray(out)

    correct = np.array([0.1, 0.12, 0.144, 0.0, 0.072])
    np.testing.assert_allclose(steps(rprop(0.1)), correct, rtol=1e-6)
    late = np.array([0.0, 0.1, 0.12, 0.0, 0.0])
    np.testing.assert_allclose(steps(optax.rprop(0.1)), late, rtol=1e-6)
    np.testing.assert_allclose(steps(rprop(0.1, one_step_late=True)), late, rtol=1e-6)


# ------------------------------------------------------------------------------------------
# Convergence
# ------------------------------------------------------------------------------------------

RECIPES = {
    "sm3": {"quadratic": (0.3, 4000, K, None), "rosenbrock": (3.0, 4000, K, None),
            "beale": (1.0, 4000, K, 10.0)},
    "rprop": {"quadratic": (0.01, 4000, K, None), "rosenbrock": (0.01, 4000, K, None),
              "beale": (1.0, 4000, K, None)},
}


@pytest.mark.parametrize("name,problem", [(n, p) for n in RECIPES for p in PROBLEMS])
def test_reaches_minimum(name, problem):
    distance = distance_after(OURS[name], problem, RECIPES[name][problem])
    assert np.isfinite(distance) and distance < 1e-2, (name, problem, distance)


# ------------------------------------------------------------------------------------------
# Transform properties and argument errors
# ------------------------------------------------------------------------------------------

ZOO = {"sm3": lambda: sm3(0.1), "rprop": lambda: rprop(0.01)}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_properties(name):
    check_properties(ZOO[name]())


def test_inject_hyperparams():
    params = make_params(6)
    params.pop("scalar")
    check_inject_hyperparams(sm3, optax.sm3, params, learning_rate=0.05)
    check_inject_hyperparams(functools.partial(rprop, one_step_late=True), optax.rprop, params,
                             learning_rate=0.05)


BAD = [
    (lambda: sm3(-0.1), ValueError, r"learning_rate must be in \[0, inf\)"),
    (lambda: sm3(0.1, momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda: rprop(-0.1), ValueError, "learning_rate must be in"),
    (lambda: rprop(lambda t: 0.1), TypeError, "initial step size"),
    (lambda: rprop(0.1, eta_minus=1.5), ValueError, r"eta_minus must be in \[0, 1\]"),
    (lambda: rprop(0.1, eta_plus=0.5), ValueError, r"eta_plus must be in \[1, inf\)"),
    (lambda: rprop(0.1, min_step_size=-1.0), ValueError, "min_step_size"),
    (lambda: rprop(0.1, min_step_size=1.0, max_step_size=0.5), ValueError,
     "min_step_size must be <= max_step_size"),
    (lambda: sign_adapted_step(0.1, max_step_size=float("inf")), ValueError, "max_step_size"),
    (lambda: cover_sum_of_squares(""), TypeError, "name"),
]


@pytest.mark.parametrize("make,error,match", BAD)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
