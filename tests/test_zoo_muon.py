"""Muon: optax.contrib.muon's trajectory, Newton–Schulz properties, composition, convergence."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax.contrib import MuonDimensionNumbers as DN  # noqa: N814

from optlab import schedules
from optlab.orthogonal import muon, newton_schulz, orthogonalize, partition
from tests.conftest import assert_trees_close, make_params, run
from tests.test_convergence import PROBLEMS

STEPS = 100

# make_params has a scalar, a vector, a 5×7 matrix (Muon), a 3×2×6 tensor (Adam by default,
# a batched matrix when dimension numbers say so), a nested dict and an empty subtree.
K_AS_BATCH = {"scalar": None, "w": DN(1, 0), "nested": {"b": None, "k": DN((0,), 2)},
              "empty": {}}
CASES = {
    "defaults": dict(learning_rate=0.01),
    "plain_momentum_adaptive_decay": dict(learning_rate=0.01, nesterov=False, adaptive=True,
                                          beta=0.9, weight_decay=0.1),
    "dion_aol_rms": dict(learning_rate=0.01, ns_coeffs="dion", preconditioning="aol",
                         consistent_rms=0.2, adam_learning_rate=0.003, adam_b1=0.8,
                         adam_b2=0.99, adam_eps_root=1e-8, adam_weight_decay=0.01),
    "schatten_dims_tree": dict(learning_rate=0.01, preconditioning="schatten",
                               muon_weight_dimension_numbers=K_AS_BATCH),
    "spectral_3steps_mask": dict(
        learning_rate=optax.cosine_decay_schedule(0.01, 100), preconditioning="spectral",
        ns_steps=3, weight_decay=0.05,
        weight_decay_mask=lambda p: jax.tree.map(lambda x: x.shape[0] > 4, p)),
    "dims_fn": dict(learning_rate=0.01, ns_coeffs=((3.0, -3.2, 1.2), (2.0, -1.5, 0.5)),
                    muon_weight_dimension_numbers=lambda p: jax.tree.map(
                        lambda x: DN((0, 1), 2) if x.ndim == 3 else None, p)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_float64_parity(name, x64):
    params = make_params(0, jnp.float64)
    ours = run(muon(**CASES[name]), params, STEPS)
    ref = run(optax.contrib.muon(**CASES[name]), params, STEPS)
    for t in (1, 10, STEPS):
        assert_trees_close(ours[t], ref[t], rtol=1e-6, atol=1e-12, msg=f"{name} step {t}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_parity(name):
    params = make_params(0, jnp.float32)
    ours = run(muon(**CASES[name]), params, STEPS)
    ref = run(optax.contrib.muon(**CASES[name]), params, STEPS)
    assert_trees_close(ours[STEPS], ref[STEPS], rtol=1e-4, atol=1e-5, msg=name)


def test_inject_hyperparams_matches_optax():
    params = make_params(0)
    kw = dict(learning_rate=0.02, beta=0.9, ns_steps=4)
    ours = run(optax.inject_hyperparams(muon)(**kw), params, 20)
    ref = run(optax.inject_hyperparams(optax.contrib.muon)(**kw), params, 20)
    assert_trees_close(ours[-1], ref[-1], rtol=1e-4, atol=1e-5)


def _nbytes(tree):
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def test_state_is_momentum_for_matrices_adam_for_the_rest():
    params = make_params(0)
    state = muon(0.01).init(params)
    assert _nbytes(state) <= _nbytes(optax.contrib.muon(0.01).init(params))
    n_matrix = params["w"].size
    n_other = sum(x.size for x in jax.tree.leaves(params)) - n_matrix
    assert _nbytes(state) == 4 * (n_matrix + 2 * n_other) + 4  # + one int32 count
    assert len(optax.tree.get_all_with_path(state, "count")) == 1
    bf16 = muon(0.01, mu_dtype=jnp.bfloat16).init(params)
    assert bf16.inner["muon"][0]["mu"]["w"].dtype == jnp.bfloat16


def test_abstract_init_jit_scan_and_no_recompilation():
    tx = muon(0.01, weight_decay=0.01)
    params = make_params(3)
    abstract = jax.eval_shape(tx.init, params)
    state = tx.init(params)
    sig = lambda s: (jax.tree.structure(s), [(x.shape, x.dtype) for x in jax.tree.leaves(s)])  # noqa: E731
    assert sig(abstract) == sig(state)
    traces = []

    @jax.jit
    def step(p, s, g):
        traces.append(1)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    for i in range(3):
        params, state = step(params, state, jax.tree.map(lambda x, i=i: jnp.cos(x + i), params))
        assert sig(state) == sig(abstract)
    assert len(traces) == 1


@pytest.mark.parametrize("preconditioning", ["frobenius", "spectral", "aol", "schatten"])
@pytest.mark.parametrize("shape", [(6, 9), (9, 6), (8, 8)])
def test_newton_schulz_drives_singular_values_towards_one(shape, preconditioning, x64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=shape))
    o = newton_schulz(x, (3.4445, -4.7750, 2.0315), 5, preconditioning)
    u, _, vt = np.linalg.svd(np.asarray(x), full_matrices=False)
    s = np.linalg.svd(np.asarray(o), compute_uv=False)
    assert s.min() > 0.5 and s.max() < 1.3  # Jordan's coefficients: σ ∈ ~[0.7, 1.2]
    if preconditioning == "aol":
        return  # AOL rescales rows by a diagonal S: SX has other singular vectors than X
    d = u.T @ np.asarray(o) @ vt.T  # O = U p(Σ) Vᵀ: the same singular vectors
    np.testing.assert_allclose(d - np.diag(np.diag(d)), 0.0, atol=1e-8)


def test_more_steps_of_a_convergent_iteration_give_the_polar_factor(x64):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 8)))
    u, _, vt = np.linalg.svd(np.asarray(x), full_matrices=False)
    o = newton_schulz(x, (1.5, -0.5, 0.0), 60)  # the cubic Newton–Schulz iteration
    np.testing.assert_allclose(np.asarray(o), u @ vt, atol=1e-10)


def test_partition_shares_one_counter_and_routes_leaves():
    from optlab.optimizers import adam, sgd

    params = make_params(0)
    tx = partition({"a": adam(0.1), "s": sgd(0.1)},
                   lambda p: jax.tree.map(lambda x: "a" if x.ndim == 2 else "s", p))
    state = tx.init(params)
    assert len(optax.tree.get_all_with_path(state, "count")) == 1
    grads = jax.tree.map(jnp.ones_like, params)
    u, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(u["w"], -0.1 * np.ones((5, 7)), rtol=1e-5)  # Adam's first step
    np.testing.assert_allclose(u["nested"]["b"], -0.1 * np.ones(4))
    with pytest.raises(ValueError, match=r"labels .*'x'.* have no transform"):
        partition({"a": adam(0.1)}, lambda p: jax.tree.map(lambda x: "x", p)).init(params)


def test_orthogonalize_adaptive_scales_by_the_nuclear_norm(x64):
    from optlab.accumulators import ema
    from optlab.stream import chain

    m = jnp.asarray(np.random.default_rng(2).normal(size=(4, 6)))
    tx = chain(ema("mu", 0.0), orthogonalize("mu", (1.5, -0.5, 0.0), 80, adaptive=True))
    u, _ = tx.update(m, tx.init(m))
    s = np.linalg.svd(np.asarray(m), compute_uv=False)
    assert np.isclose(np.linalg.norm(np.asarray(u), 2), s.sum())


# ------------------------------------------------------------------------------------------
# Convergence
# ------------------------------------------------------------------------------------------

# The three classic problems have a vector parameter, so they exercise Muon's AdamW branch
# (adam_b1, adam_b2, Nesterov momentum as muon's default); the least-squares problem below has
# a matrix parameter and exercises the orthogonalised momentum.
RECIPES = {"quadratic": (0.01, 4000), "rosenbrock": (0.02, 10000), "beale": (1.0, 10000)}


def _minimize(tx, f, x0, steps):
    def body(carry, _):
        x, s = carry
        u, s = tx.update(jax.grad(f)(x), s, x)
        return (optax.apply_updates(x, u), s), None

    return jax.jit(lambda x: jax.lax.scan(body, (x, tx.init(x)), None, length=steps))(x0)[0][0]


@pytest.mark.parametrize("problem", sorted(RECIPES))
def test_reaches_minimum(problem):
    f, x0, x_star = PROBLEMS[problem]
    lr, steps = RECIPES[problem]
    x = _minimize(muon(lr), f, x0, steps)
    assert float(jnp.linalg.norm(x - x_star)) < 1e-2


def least_squares(seed: int = 0, n: int = 64, d_in: int = 12, d_out: int = 8):
    """min_W ½‖XW − Y‖²/n with ill-conditioned inputs: a matrix problem with a known W*."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d_in)) * np.logspace(0, -1.5, d_in)
    w_star = rng.normal(size=(d_in, d_out))
    y = x @ w_star
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    return (lambda w: 0.5 * jnp.sum((x @ w - y) ** 2) / n), jnp.zeros((d_in, d_out)), w_star


def test_reaches_minimum_of_matrix_least_squares():
    f, w0, w_star = least_squares()
    steps = 3000
    w = _minimize(muon(schedules.cosine_decay(0.05, steps, alpha=1e-3)), f, w0, steps)
    rel = float(jnp.linalg.norm(w - w_star) / np.linalg.norm(w_star))
    assert rel < 1e-2, rel


# ------------------------------------------------------------------------------------------
# Bad arguments
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw,error,match", [
    (dict(learning_rate=-1.0), ValueError, r"learning_rate must be in \[0, inf\)"),
    (dict(beta=1.0), ValueError, r"beta must be in \[0, 1\)"),
    (dict(adam_b2=1.5), ValueError, r"adam_b2 must be in \[0, 1\)"),
    (dict(eps=-1.0), ValueError, r"eps must be in \[0, inf\)"),
    (dict(ns_steps=0), ValueError, "ns_steps must be an int >= 1"),
    (dict(ns_steps=2.5), TypeError, "ns_steps must be an int"),
    (dict(ns_coeffs=(1.0, 2.0)), ValueError, r"ns_coeffs must be a triple"),
    (dict(ns_coeffs="dino"), ValueError, r"unknown ns_coeffs preset 'dino' \(did you mean "
                                         r"'dion'\?\)"),
    (dict(ns_coeffs="dion", ns_steps=3), ValueError, "5 rows, more than ns_steps=3"),
    (dict(preconditioning="frob"), ValueError, r"preconditioning must be one of"),
    (dict(weight_decay=-0.1), ValueError, "weight_decay"),
    (dict(adam_learning_rate=-0.1), ValueError, "adam_learning_rate"),
    (dict(consistent_rms=-0.2), ValueError, "consistent_rms"),
])
def test_bad_arguments(kw, error, match):
    kw = {"learning_rate": 0.01, **kw}
    with pytest.raises(error, match=match):
        muon(**kw)
