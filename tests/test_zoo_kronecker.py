"""Shampoo and SOAP against independent numpy implementations written from the papers.

The references loop over the leaves and the axes, unfold each gradient along an axis to form
its Kronecker factor, take inverse roots and eigenbases with ``numpy.linalg.eigh`` / ``qr``, and
follow the papers' algorithms step by step (Gupta et al. 2018 with Anil et al. 2020's grafting;
Vyas et al. 2024, Algorithm 3, with the reference code's first step that only initialises the
eigenbasis and its QR refresh that sorts the columns and permutes V). Gradients are
conftest's ``0.5·θ + noise``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab import schedules
from optlab.kronecker import kronecker_factors
from optlab.kronecker_optimizers import shampoo, soap
from tests.conftest import assert_trees_close, make_params, noise_sequence, run
from tests.test_convergence import PROBLEMS

STEPS = 100


# ------------------------------------------------------------------------------------------
# numpy references
# ------------------------------------------------------------------------------------------


def unfold(g: np.ndarray, axis: int) -> np.ndarray:
    return np.moveaxis(g, axis, 0).reshape(g.shape[axis], -1)


def mode_product(x: np.ndarray, m: np.ndarray, axis: int) -> np.ndarray:
    """x ×_axis m: (x ×_i m)[.., j, ..] = Σ_k m[j, k] x[.., k, ..]."""
    return np.moveaxis(np.tensordot(m, np.moveaxis(x, axis, 0), axes=1), 0, axis)


def preconditioned_axes(shape, max_dim, precondition_1d):
    if len(shape) == 0 or (len(shape) == 1 and not precondition_1d):
        return []
    return [i for i, d in enumerate(shape) if d <= max_dim]


def np_shampoo(params, steps, lr, b1=0.9, b2=0.999, eps=1e-6, freq=10, max_dim=10000,
               graft="adam", graft_eps=1e-8, wd=0.0, precondition_1d=False):
    leaves, treedef = jax.tree.flatten(params)
    noise = jax.tree.leaves(noise_sequence(params, steps))
    out = []
    for p, nz in zip(leaves, noise, strict=True):
        p, nz = np.asarray(p, np.float64), np.asarray(nz, np.float64)
        axes = preconditioned_axes(p.shape, max_dim, precondition_1d)
        stats = {i: np.zeros((p.shape[i],) * 2) for i in axes}
        roots = {}
        v, m = np.zeros_like(p), np.zeros_like(p)
        for t in range(1, steps + 1):
            g = 0.5 * p + nz[t - 1]
            if graft == "adam":
                v = b2 * v + (1 - b2) * g**2
                a = g / (np.sqrt(v / (1 - b2**t)) + graft_eps)
            elif graft == "adagrad":
                v = v + g**2
                a = g / (np.sqrt(v) + graft_eps)
            else:
                a = g
            for i in axes:
                gi = unfold(g, i)
                stats[i] = stats[i] + gi @ gi.T if b2 == 1 else b2 * stats[i] + (1 - b2) * gi @ gi.T
                if (t - 1) % freq == 0:
                    w, vec = np.linalg.eigh(stats[i])
                    w = np.maximum(w, 0) + eps
                    roots[i] = vec @ np.diag(w ** (-1 / (2 * p.ndim))) @ vec.T
            if axes:
                s = g
                for i in axes:
                    s = mode_product(s, roots[i], i)
                d = s * (np.linalg.norm(a) / np.linalg.norm(s)) if graft else s
            else:
                d = a
            if b1 > 0:
                m = b1 * m + (1 - b1) * d
                d = m / (1 - b1**t)
            p = p - lr * (d + wd * p)
        out.append(p)
    return treedef.unflatten(out)


def np_soap(params, steps, lr=3e-3, b1=0.95, b2=0.95, shampoo_beta=None, eps=1e-8, wd=0.01,
            freq=10, max_dim=10000, method="qr"):
    bs = b2 if shampoo_beta is None else shampoo_beta
    leaves, treedef = jax.tree.flatten(params)
    noise = jax.tree.leaves(noise_sequence(params, steps))
    out = []
    for p, nz in zip(leaves, noise, strict=True):
        p, nz = np.asarray(p, np.float64), np.asarray(nz, np.float64)
        axes = preconditioned_axes(p.shape, max_dim, False)
        L = {i: np.zeros((p.shape[i],) * 2) for i in axes}
        Q = {}
        m, v = np.zeros_like(p), np.zeros_like(p)

        def to_basis(x, Q=Q, axes=axes):
            for i in axes:
                x = mode_product(x, Q[i].T, i)
            return x

        for t in range(1, steps + 1):
            g = 0.5 * p + nz[t - 1]
            if t == 1:  # the first gradient only initialises the factors and the bases
                for i in axes:
                    gi = unfold(g, i)
                    L[i] = (1 - bs) * gi @ gi.T
                    Q[i] = np.linalg.eigh(L[i])[1][:, ::-1]
                continue
            s = t - 1
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * to_basis(g) ** 2
            n = to_basis(m) / (np.sqrt(v) + eps)
            for i in axes:
                n = mode_product(n, Q[i], i)
            p = p - lr * (np.sqrt(1 - b2**s) / (1 - b1**s) * n + wd * p)
            for i in axes:
                gi = unfold(g, i)
                L[i] = bs * L[i] + (1 - bs) * gi @ gi.T
            if s % freq == 0:
                for i in axes:
                    # V follows its directions: the columns sorted by their Rayleigh
                    # quotients, V permuted alike (SOAP's reference code), for both methods
                    order = np.argsort(-np.diag(Q[i].T @ L[i] @ Q[i]), kind="stable")
                    v = np.take(v, order, axis=i)
                    if method == "eigh":
                        Q[i] = np.linalg.eigh(L[i])[1][:, ::-1]
                    else:
                        Q[i] = np.linalg.qr(L[i] @ Q[i][:, order])[0]
        out.append(p)
    return treedef.unflatten(out)


# ------------------------------------------------------------------------------------------
# Shampoo
# ------------------------------------------------------------------------------------------

SHAMPOO_CASES = {
    "defaults": dict(learning_rate=0.01),
    "adagrad_sum_period3_1d": dict(learning_rate=0.05, b2=1.0, graft="adagrad",
                                   precondition_frequency=3, precondition_1d=True, eps=1e-4),
    "sgd_graft_small_blocks": dict(learning_rate=0.01, graft="sgd", max_precond_dim=5,
                                   precondition_frequency=4, b1=0.5, weight_decay=0.01),
    "no_graft_no_momentum": dict(learning_rate=0.003, graft=None, b1=0.0, eps=1e-3),
}
_NP_NAMES = {"learning_rate": "lr", "precondition_frequency": "freq",
             "max_precond_dim": "max_dim", "weight_decay": "wd"}


def _np_kwargs(kw):
    return {_NP_NAMES.get(k, k): v for k, v in kw.items()}


@pytest.mark.parametrize("name", sorted(SHAMPOO_CASES))
def test_shampoo_matches_numpy_reference(name, x64):
    kw = SHAMPOO_CASES[name]
    params = make_params(0, jnp.float64)
    ours = run(shampoo(**kw), params, STEPS)
    ref = np_shampoo(params, STEPS, **_np_kwargs(kw))
    assert_trees_close(ours[STEPS], ref, rtol=1e-6, atol=1e-10, msg=name)


def test_shampoo_float32_follows_float64():
    kw = dict(learning_rate=0.01, eps=1e-3)
    with jax.enable_x64(True):
        ref = np_shampoo(make_params(0, jnp.float64), STEPS, **_np_kwargs(kw))
    ours = run(shampoo(**kw), make_params(0, jnp.float32), STEPS)
    assert_trees_close(ours[STEPS], ref, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------
# SOAP
# ------------------------------------------------------------------------------------------


def soap_params(dtype=jnp.float32, seed: int = 5):
    """Matrices whose first factors have distinct nonzero eigenvalues (the first eigenbasis
    is then unique up to signs, so numpy and LAPACK-in-XLA agree), a rank-3 tensor, a matrix
    with an axis over max_precond_dim = 8, a vector, a scalar, a nested dict, an empty one."""
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.normal(size=(4, 4)), dtype),
        "nested": {"k": jnp.asarray(rng.normal(size=(2, 3, 2)), dtype),
                   "b": jnp.asarray(rng.normal(size=(5,)), dtype)},
        "wide": jnp.asarray(rng.normal(size=(3, 12)), dtype),
        "scalar": jnp.asarray(rng.normal(), dtype),
        "empty": {},
    }


SOAP_CASES = {
    "defaults": dict(max_precond_dim=8),
    "period3_shampoo_beta": dict(learning_rate=0.01, b1=0.9, b2=0.99, shampoo_beta=0.9,
                                 precondition_frequency=3, max_precond_dim=8, weight_decay=0.0),
    "eigh_refresh": dict(learning_rate=0.01, precondition_frequency=4, max_precond_dim=8,
                         eigenbasis_method="eigh"),
}


@pytest.mark.parametrize("name", sorted(SOAP_CASES))
def test_soap_matches_numpy_reference(name, x64):
    kw = SOAP_CASES[name]
    params = soap_params(jnp.float64)
    ours = run(soap(**kw), params, STEPS)
    np_kw = {"learning_rate": "lr", "precondition_frequency": "freq", "weight_decay": "wd",
             "max_precond_dim": "max_dim", "eigenbasis_method": "method"}
    ref = np_soap(params, STEPS, **{np_kw.get(k, k): v for k, v in kw.items()})
    assert_trees_close(ours[STEPS], ref, rtol=1e-6, atol=1e-10, msg=name)


def test_soap_float32_follows_float64():
    with jax.enable_x64(True):
        ref = np_soap(soap_params(jnp.float64), STEPS, max_dim=8)
    ours = run(soap(max_precond_dim=8), soap_params(jnp.float32), STEPS)
    assert_trees_close(ours[STEPS], ref, rtol=1e-4, atol=1e-4)


def test_soap_on_scalars_and_vectors_is_adam_after_the_first_step():
    params = {"s": jnp.asarray(0.3), "b": jnp.arange(4.0)}
    ours = run(soap(0.01, weight_decay=0.0), params, 50)
    np.testing.assert_array_equal(ours[1]["b"], params["b"])  # the first step only initialises
    adam = optax.adam(0.01, b1=0.95, b2=0.95, eps=1e-8)
    # From step 2 on: Adam on the gradients from step 2 on (ε on raw √v: ≈ optax's ε at 1e-8).
    p, s = ours[1], adam.init(params)
    from tests.conftest import gradient, noise_sequence
    noise = noise_sequence(params, 50)
    for t in range(1, 50):
        u, s = adam.update(gradient(p, jax.tree.map(lambda n, t=t: n[t], noise)), s, p)
        p = optax.apply_updates(p, u)
    assert_trees_close(ours[-1], p, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Composition, state, type stability
# ------------------------------------------------------------------------------------------

FACTORIES = {
    "shampoo": lambda: shampoo(0.01, precondition_frequency=3),
    "shampoo_1d_adagrad": lambda: shampoo(0.01, b2=1.0, graft="adagrad", precondition_1d=True),
    "soap": lambda: soap(precondition_frequency=3),
    "soap_1d_eigh": lambda: soap(precondition_frequency=2, precondition_1d=True,
                                 eigenbasis_method="eigh"),
}


def _signature(s):
    return jax.tree.structure(s), [(x.shape, x.dtype) for x in jax.tree.leaves(s)]


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_abstract_init_jit_scan_and_no_recompilation(name):
    tx = FACTORIES[name]()
    params = make_params(3)
    state = tx.init(params)
    assert _signature(jax.eval_shape(tx.init, params)) == _signature(state)
    traces = []

    @jax.jit
    def step(p, s, g):
        traces.append(1)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    for i in range(7):  # crosses several refreshes (period 2 / 3)
        params, state = step(params, state, jax.tree.map(lambda x, i=i: jnp.cos(x + i), params))
        assert _signature(state) == _signature(tx.init(params))
    assert len(traces) == 1
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))
    assert len(optax.tree.get_all_with_path(state, "count")) == 1


def test_state_holds_the_factors_and_the_roots_or_bases():
    params = make_params(0)
    n = sum(x.size for x in jax.tree.leaves(params))
    kron = 5 * 5 + 7 * 7 + 3 * 3 + 2 * 2 + 6 * 6  # w: 5×7, k: 3×2×6; vector/scalar: none

    def nbytes(tree):
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))

    # Shampoo (adam graft): GG, P, ν, μ; SOAP: GG, Q, μ, ν; + one int32 count.
    assert nbytes(shampoo(0.01).init(params)) == 4 * (2 * kron + 2 * n) + 4
    assert nbytes(soap().init(params)) == 4 * (2 * kron + 2 * n) + 4
    state = soap().init(params)
    assert optax.tree.get(state, "GG")["w"][0].shape == (5, 5)
    assert optax.tree.get(state, "Q")["nested"]["b"] == (None,)  # a vector: no factor
    assert optax.tree.get(state, "Q")["scalar"] == ()
    bf16 = kronecker_factors().init({"w": jnp.ones((3, 4), jnp.bfloat16)})
    assert bf16["GG"]["w"][0].dtype == jnp.float32


def test_inject_hyperparams():
    # SOAP on soap_params: where a first factor is rank-deficient its null-space eigenvectors
    # are arbitrary, and two compilations may pick different ones (the reference code too).
    for factory, params in ((shampoo, make_params(0)), (soap, soap_params())):
        tx = optax.inject_hyperparams(factory, static_args=("max_precond_dim",))(
            learning_rate=0.01, max_precond_dim=8)
        out = run(tx, params, 12)[-1]
        ref = run(factory(learning_rate=0.01, max_precond_dim=8), params, 12)[-1]
        assert_trees_close(out, ref, 1e-4, 1e-5)
    params = make_params(0)
    with pytest.raises(TypeError, match="static_args=\\('max_precond_dim',\\)"):
        run(optax.inject_hyperparams(shampoo)(learning_rate=0.01), params, 2)


# ------------------------------------------------------------------------------------------
# Convergence
# ------------------------------------------------------------------------------------------


def _minimize(tx, f, x0, steps):
    def body(carry, _):
        x, s = carry
        u, s = tx.update(jax.grad(f)(x), s, x)
        return (optax.apply_updates(x, u), s), None

    return jax.jit(lambda x: jax.lax.scan(body, (x, tx.init(x)), None, length=steps))(x0)[0][0]


# The classic problems have vector parameters. By default they exercise the diagonal
# fallbacks (Shampoo: the Adam graft with momentum; SOAP: Adam with β = (0.95, 0.95));
# with precondition_1d the vector gets one factor (Shampoo: full-matrix AdaGrad-style
# L^{-1/2}; SOAP: Adam in L's eigenbasis). Learning rates decay by a cosine to 1e-3·lr.
CONVERGENCE = {
    ("shampoo", "quadratic"): (lambda lr: shampoo(lr), 0.01, 4000),
    ("shampoo", "rosenbrock"): (lambda lr: shampoo(lr), 0.02, 10000),
    ("shampoo", "beale"): (lambda lr: shampoo(lr), 3.0, 10000),
    ("shampoo_1d", "quadratic"): (lambda lr: shampoo(lr, precondition_1d=True), 0.01, 4000),
    ("shampoo_1d", "rosenbrock"): (lambda lr: shampoo(lr, precondition_1d=True), 0.02, 10000),
    # Beale's trap (tests/test_convergence.py): the full-matrix step needs the raw gradient's
    # norm (SGD graft), clipped to 10 as the SGD recipes there, to cross the x = 0 ridge.
    ("shampoo_1d", "beale"): (lambda lr: optax.chain(
        optax.clip_by_global_norm(10.0), shampoo(lr, precondition_1d=True, graft="sgd")),
        0.3, 10000),
    ("soap", "quadratic"): (lambda lr: soap(lr, weight_decay=0.0), 0.01, 4000),
    ("soap", "rosenbrock"): (lambda lr: soap(lr, weight_decay=0.0), 0.02, 10000),
    ("soap", "beale"): (lambda lr: soap(lr, weight_decay=0.0), 0.3, 10000),
    ("soap_1d", "quadratic"): (lambda lr: soap(lr, weight_decay=0.0, precondition_1d=True),
                               0.01, 4000),
    ("soap_1d", "rosenbrock"): (lambda lr: soap(lr, weight_decay=0.0, precondition_1d=True),
                                0.02, 10000),
    ("soap_1d", "beale"): (lambda lr: soap(lr, weight_decay=0.0, precondition_1d=True),
                           0.3, 10000),
}


@pytest.mark.parametrize("name,problem", sorted(CONVERGENCE))
def test_reaches_minimum(name, problem):
    make, lr, steps = CONVERGENCE[name, problem]
    f, x0, x_star = PROBLEMS[problem]
    x = _minimize(make(schedules.cosine_decay(lr, steps, alpha=1e-3)), f, x0, steps)
    assert float(jnp.linalg.norm(x - x_star)) < 1e-2, (name, problem, x)


def least_squares(seed: int = 0, n: int = 64, d_in: int = 12, d_out: int = 8,
                  spread: float = 3.0):
    """min_W ½‖XW − Y‖²/n, inputs with singular values over 10^spread: the loss's Hessian is
    the Kronecker product (XᵀX/n) ⊗ I, exactly the structure Shampoo's L factor captures."""
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.normal(size=(n, d_in)))
    v, _ = np.linalg.qr(rng.normal(size=(d_in, d_in)))
    x = np.sqrt(n) * u @ np.diag(np.logspace(0, -spread / 2, d_in)) @ v.T
    w_star = rng.normal(size=(d_in, d_out))
    y = x @ w_star
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    return (lambda w: 0.5 * jnp.sum((x @ w - y) ** 2) / n), jnp.zeros((d_in, d_out)), w_star


def _relative_error(tx, steps):
    f, w0, w_star = least_squares()
    w = _minimize(tx, f, w0, steps)
    return float(jnp.linalg.norm(w - w_star) / np.linalg.norm(w_star))


def test_kronecker_preconditioners_solve_matrix_least_squares_where_adam_does_not():
    steps = 500
    lr = lambda peak: schedules.cosine_decay(peak, steps, alpha=1e-3)  # noqa: E731
    shampoo_err = _relative_error(shampoo(lr(0.2)), steps)
    soap_err = _relative_error(soap(lr(0.05), weight_decay=0.0), steps)
    adam_err = min(_relative_error(optax.adam(lr(peak)), steps)
                   for peak in (0.05, 0.2, 0.5, 1.0, 2.0))
    assert shampoo_err < 1e-2 and soap_err < 1e-2, (shampoo_err, soap_err)
    assert adam_err > 10 * max(shampoo_err, soap_err), (adam_err, shampoo_err, soap_err)


# ------------------------------------------------------------------------------------------
# Bad arguments
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make,error,match", [
    (lambda: shampoo(-0.1), ValueError, r"learning_rate must be in \[0, inf\)"),
    (lambda: shampoo(0.1, b1=1.0), ValueError, r"b1 must be in \[0, 1\)"),
    (lambda: shampoo(0.1, b2=1.5), ValueError, r"b2 must be in \[0, 1\]"),
    (lambda: shampoo(0.1, b2=1.0), ValueError, "graft='adam'"),
    (lambda: shampoo(0.1, eps=-1.0), ValueError, "eps"),
    (lambda: shampoo(0.1, graft="adams"), ValueError,
     r"graft must be one of \['adam', 'adagrad', 'sgd'\], got 'adams'; did you mean 'adam'"),
    (lambda: shampoo(0.1, precondition_frequency=0), ValueError,
     "precondition_frequency must be an int >= 1"),
    (lambda: shampoo(0.1, max_precond_dim=2.5), TypeError, "max_precond_dim must be an int"),
    (lambda: soap(b2=1.0), ValueError, r"b2 must be in \[0, 1\)"),
    (lambda: soap(shampoo_beta=1.2), ValueError, r"shampoo_beta must be in \[0, 1\)"),
    (lambda: soap(weight_decay=-0.1), ValueError, "weight_decay"),
    (lambda: soap(eigenbasis_method="svd"), ValueError, r"eigenbasis_method must be one of"),
    (lambda: soap(precondition_frequency=-1), ValueError, "precondition_frequency"),
])
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
