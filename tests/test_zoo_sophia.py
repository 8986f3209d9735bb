"""Sophia: parity with optax.contrib.sophia (same Hutchinson keys, so the stochastic Hessian
estimates are identical), any optax Hessian-diagonal estimator inside the chain, convergence,
and behaviour as an optax transform (``obj_fn`` passed exactly as optax's)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib

from optlab import curvature as cv
from tests.conftest import make_params
from tests.test_zoo_parameter_free import (
    PROBLEMS,
    check_inject,
    check_parity_f32,
    check_parity_f64,
    check_transform,
    distance_after,
    run_with_loss,
)

OBJ_FN = ("obj_fn",)


def _gauss_newton_diagonal() -> optax.GradientTransformation:
    """A deterministic estimator (g², the Gauss–Newton diagonal of a squared loss): any optax
    transform that maps the gradient to a diagonal plugs in."""
    return optax.stateless(lambda updates, params: jax.tree.map(jnp.square, updates))


CASES = [
    dict(learning_rate=0.01),
    dict(learning_rate=optax.cosine_decay_schedule(0.02, 100), b1=0.9, b2=0.95, eps=1e-6,
         weight_decay=0.01, weight_decay_mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p),
         gamma=0.05, clip_threshold=0.5, update_interval=3, mu_dtype=jnp.float32,
         hessian_diagonal_fn=contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(3))),
    dict(learning_rate=0.01, update_interval=1, hessian_diagonal_fn=_gauss_newton_diagonal()),
]
IDS = ["defaults", "options-and-key", "custom-estimator"]


@pytest.mark.parametrize("kwargs", CASES, ids=IDS)
def test_float64_parity(kwargs, x64):
    check_parity_f64(cv.sophia(**kwargs), contrib.sophia(**kwargs), extra=OBJ_FN)


@pytest.mark.parametrize("kwargs", CASES, ids=IDS)
def test_float32_parity(kwargs):
    check_parity_f32(cv.sophia(**kwargs), contrib.sophia(**kwargs), extra=OBJ_FN)


def test_hessian_is_refreshed_every_update_interval_steps(x64):
    """h changes exactly at steps 1, 1 + k, 1 + 2k, ... (the lax.cond), as optax's."""
    params = make_params(0, jnp.float64)
    tx = cv.sophia(0.01, update_interval=4)
    state = tx.init(params)
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    obj_fn = lambda p: sum(jnp.sum(0.25 * x**2) for x in jax.tree.leaves(p))  # noqa: E731
    update = jax.jit(lambda s: tx.update(grads, s, params, obj_fn=obj_fn))
    changed = []
    for _ in range(9):
        before = optax.tree.get(state, "nu")
        _, state = update(state)
        changed.append(bool(optax.tree.norm(optax.tree.sub(optax.tree.get(state, "nu"),
                                                           before)) > 0))
    assert changed == [True, False, False, False, True, False, False, False, True]
    np.testing.assert_allclose(float(optax.tree.get(state, "count")), 9)


def test_state_uses_optax_names_and_bytes():
    params = make_params(0)
    ours, ref = cv.sophia(0.01).init(params), contrib.sophia(0.01).init(params)
    for field in ("mu", "nu"):
        assert jax.tree.structure(optax.tree.get(ours, field)) == jax.tree.structure(
            optax.tree.get(ref, field))
    nbytes = lambda s: sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(s))  # noqa: E731
    assert nbytes(ours) <= nbytes(ref)
    bf16 = cv.sophia(0.01, mu_dtype=jnp.bfloat16).init(params)
    mu_dtypes = {x.dtype for x in jax.tree.leaves(optax.tree.get(bf16, "mu"))}
    assert mu_dtypes == {jnp.dtype(jnp.bfloat16)}


@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_reaches_minimum(problem):
    # weight_decay=0: optax's default 1e-4 moves the minimiser (Rosenbrock ends 1.3e-3 away).
    recipe = (10000, None, None, {"learning_rate": 0.1, "weight_decay": 0.0})
    distance = distance_after(cv.sophia, problem, recipe)
    assert np.isfinite(distance) and distance < 1e-2, (problem, distance)


def test_jit_scan_eval_shape():
    check_transform(lambda: cv.sophia(0.01), extra=OBJ_FN)


def test_inject_hyperparams(x64):
    check_inject(cv.sophia, contrib.sophia,
                 dict(learning_rate=0.01, b1=0.9, gamma=0.05, weight_decay=0.01), extra=OBJ_FN)


def test_without_clipping():
    """clip_threshold=None returns the unclipped ratio m̂ / max(γh, ε), as optax."""
    params = make_params(0)
    grads = jax.tree.map(lambda p: 0.5 * p, params)
    obj = lambda p: sum(jnp.sum(0.25 * x**2) for x in jax.tree.leaves(p))  # noqa: E731

    def second_update(tx):
        s = tx.init(params)
        _, s = tx.update(grads, s, params, obj_fn=obj)
        return tx.update(grads, s, params, obj_fn=obj)[0]

    ours = second_update(cv.sophia(0.01, clip_threshold=None))
    ref = second_update(contrib.sophia(0.01, clip_threshold=None))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5)


def test_obj_fn_reaches_the_estimator_inside_an_optax_chain(x64):
    params = make_params(0, jnp.float64)
    ours = optax.chain(optax.clip_by_global_norm(1.0), cv.sophia(0.01))
    ref = optax.chain(optax.clip_by_global_norm(1.0), contrib.sophia(0.01))
    a = run_with_loss(ours, params, steps=30, extra=OBJ_FN)
    b = run_with_loss(ref, params, steps=30, extra=OBJ_FN)
    for x, y in zip(jax.tree.leaves(a[30]), jax.tree.leaves(b[30]), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-12)


def test_missing_obj_fn_is_a_clear_error():
    params = make_params(0)
    tx = cv.sophia(0.01)
    with pytest.raises(ValueError, match="obj_fn must be provided"):
        tx.update(params, tx.init(params), params)


BAD = [
    (lambda: cv.sophia(-0.1), ValueError, r"learning_rate must be in \[0, inf\)"),
    (lambda: cv.sophia(0.01, b1=1.0), ValueError, r"b1 must be in \[0, 1\)"),
    (lambda: cv.sophia(0.01, b2=-0.1), ValueError, r"b2 must be in \[0, 1\)"),
    (lambda: cv.sophia(0.01, eps=-1.0), ValueError, "eps must be in"),
    (lambda: cv.sophia(0.01, gamma=0.0), ValueError, r"gamma must be in \(0, inf\)"),
    (lambda: cv.sophia(0.01, clip_threshold=0.0), ValueError,
     r"clip_threshold must be in \(0, inf\)"),
    (lambda: cv.sophia(0.01, update_interval=0), ValueError, "update_interval must be an int >= 1"),
    (lambda: cv.sophia(0.01, weight_decay=-1.0), ValueError, "weight_decay must be in"),
]


@pytest.mark.parametrize("make,error,match", BAD)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()
