"""Polyak-type step sizes (polyak_sgd, MoMo, MoMo-Adam): parity with optax driven by the same
loss (passed as ``value=``), a numpy reference written from Loizou et al. (2021), convergence
on the classic problems, and behaviour as optax transforms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib

from optlab import polyak as pk
from tests.conftest import make_params
from tests.test_zoo_parameter_free import (
    PROBLEMS,
    check_inject,
    check_parity_f32,
    check_parity_f64,
    check_transform,
    distance_after,
)

VALUE = ("value",)


def _reference(name):
    return getattr(optax, name) if name == "polyak_sgd" else getattr(contrib, name)


CASES = [
    ("polyak_sgd", {}),
    ("polyak_sgd", dict(max_learning_rate=0.5, scaling=optax.cosine_decay_schedule(1.0, 100),
                        f_min=0.1, eps=1e-3, variant="sps+")),
    ("polyak_sgd", dict(scaling=0.7, f_min=-1.0)),
    ("momo", {}),
    ("momo", dict(learning_rate=optax.cosine_decay_schedule(0.5, 100), beta=0.8,
                  weight_decay=0.01)),
    ("momo", dict(learning_rate=0.5, lower_bound=-1.0, weight_decay=0.01,
                  adapt_lower_bound=True)),
    ("momo_adam", {}),
    ("momo_adam", dict(learning_rate=0.1, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.01)),
    ("momo_adam", dict(learning_rate=optax.linear_schedule(0.1, 0.01, 100), lower_bound=-1.0,
                       adapt_lower_bound=True)),
]
IDS = [f"{name}-{'-'.join(kw) or 'defaults'}" for name, kw in CASES]


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_float64_parity(name, kwargs, x64):
    check_parity_f64(getattr(pk, name)(**kwargs), _reference(name)(**kwargs), extra=VALUE)


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_float32_parity(name, kwargs):
    check_parity_f32(getattr(pk, name)(**kwargs), _reference(name)(**kwargs), extra=VALUE)


def test_state_uses_optax_names():
    params = make_params(0)
    for name, fields in {"momo": ["exp_avg", "barf", "gamma", "lb"],
                         "momo_adam": ["exp_avg", "exp_avg_sq", "barf", "gamma", "lb"]}.items():
        ours, ref = getattr(pk, name)().init(params), _reference(name)().init(params)
        for field in fields:
            got, want = optax.tree.get(ours, field), optax.tree.get(ref, field)
            assert jax.tree.structure(got) == jax.tree.structure(want), (name, field)
    assert jax.tree.leaves(pk.polyak_sgd().init(params)) == []


@pytest.mark.parametrize("name", ["polyak_sgd", "momo", "momo_adam"])
def test_state_bytes_not_above_optax(name):
    params = jax.eval_shape(lambda: make_params(0))

    def nbytes(tx):
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(jax.eval_shape(tx.init,
                                                                                     params)))

    assert nbytes(getattr(pk, name)()) <= nbytes(_reference(name)())


# ------------------------------------------------------------------------------------------
# numpy reference (Loizou et al. 2021, SPS_max), float64
# ------------------------------------------------------------------------------------------

T = 60
RNG = np.random.default_rng(0)
P0 = RNG.normal(size=(4, 5))
NOISE = RNG.normal(size=(T, 4, 5))


def loss_and_grad(x, t):
    """f_t(x) = ½‖x − 1 − n_t‖² (min 0 at each step, as in the interpolation setting)."""
    r = x - 1.0 - NOISE[t]
    return 0.5 * float(np.sum(r * r)), r


def np_sps(gamma_max, f_star=0.0, c=1.0, eps=0.0, plus=False, steps=T):
    """x ← x − min((f(x) − f*)/(c‖∇f(x)‖² + ε), γ_max)·∇f(x) per step (SPS_max; c = 1 in optax;
    SPS+ uses (f − f*)₊)."""
    x, out = P0.copy(), []
    for t in range(steps):
        f, g = loss_and_grad(x, t)
        gap = max(f - f_star, 0.0) if plus else f - f_star
        x = x - min(gap / (c * float(np.sum(g * g)) + eps), gamma_max) * g
        out.append(x.copy())
    return np.stack(out)


def run_optlab(tx, steps=T):
    p = jnp.asarray(P0)
    s = tx.init(p)
    update = jax.jit(tx.update)
    out = []
    for t in range(steps):
        f, g = loss_and_grad(np.asarray(p), t)
        u, s = update(jnp.asarray(g), s, p, value=jnp.asarray(f))
        p = optax.apply_updates(p, u)
        out.append(np.asarray(p))
    return np.stack(out)


@pytest.mark.parametrize("kwargs", [dict(max_learning_rate=1.0), dict(max_learning_rate=0.3),
                                    dict(max_learning_rate=1.0, f_min=0.5, eps=0.1),
                                    dict(max_learning_rate=2.0, f_min=3.0, variant="sps+")])
def test_polyak_sgd_matches_numpy_reference(kwargs, x64):
    ref = np_sps(kwargs["max_learning_rate"], kwargs.get("f_min", 0.0), eps=kwargs.get("eps", 0.0),
                 plus=kwargs.get("variant") == "sps+")
    np.testing.assert_allclose(run_optlab(pk.polyak_sgd(**kwargs)), ref, rtol=1e-10, atol=1e-12)


def test_polyak_sgd_zero_gradient_gives_zero_step():
    p = jnp.ones(3)
    tx = pk.polyak_sgd()
    u, _ = tx.update(jnp.zeros(3), tx.init(p), p, value=jnp.float32(1.0))
    np.testing.assert_array_equal(np.asarray(u), 0.0)


# ------------------------------------------------------------------------------------------
# Convergence: the loss is the problem's (minimum 0 on all three, so f* = 0 is exact)
# ------------------------------------------------------------------------------------------

# (steps, clip global norm at, cosine lr0, kwargs). Beale: the gradient norm at (−4.5, 4.5) is
# 2.4e5, so the Polyak step f/‖g‖² moves by f/‖g‖ ≈ 0.04 and the iterate slides down the
# diagonal to the wrong side of the x = 0 ridge (tests/test_convergence.py); with the gradient
# clipped to norm 10 the first steps f/10 are large (capped by γ_max) and cross it.
RECIPES = {
    "polyak_sgd": {"quadratic": (4000, None, None, {}), "rosenbrock": (10000, None, None, {}),
                   "beale": (10000, 10.0, None, {})},
    "momo": {"quadratic": (4000, None, None, {}), "rosenbrock": (10000, None, None, {}),
             "beale": (10000, 10.0, None, {})},
    "momo_adam": {"quadratic": (4000, None, None, {}), "rosenbrock": (10000, None, None, {}),
                  "beale": (10000, 10.0, None, {"learning_rate": 0.3})},
}


@pytest.mark.parametrize("name,problem", [(n, p) for n in RECIPES for p in PROBLEMS])
def test_reaches_minimum(name, problem):
    distance = distance_after(getattr(pk, name), problem, RECIPES[name][problem])
    assert np.isfinite(distance) and distance < 1e-2, (name, problem, distance)


# ------------------------------------------------------------------------------------------
# As optax transforms; the loss is passed exactly as optax's
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["polyak_sgd", "momo", "momo_adam"])
def test_jit_scan_eval_shape(name):
    check_transform(getattr(pk, name), extra=VALUE)


INJECT = [
    ("polyak_sgd", dict(max_learning_rate=0.5, scaling=0.8, f_min=0.1, eps=1e-3)),
    ("momo", dict(learning_rate=0.5, beta=0.8, weight_decay=0.01)),
    ("momo_adam", dict(learning_rate=0.1, b1=0.8, b2=0.99, eps=1e-6, weight_decay=0.01)),
]


@pytest.mark.parametrize("name,kwargs", INJECT, ids=[n for n, _ in INJECT])
def test_inject_hyperparams(name, kwargs, x64):
    check_inject(getattr(pk, name), _reference(name), kwargs, extra=VALUE)


@pytest.mark.parametrize("name", ["polyak_sgd", "momo", "momo_adam"])
def test_value_reaches_the_optimizer_inside_an_optax_chain(name, x64):
    """``value=`` passes through optax.chain (and optax.apply_if_finite wrappers) as optax's."""
    params = make_params(0, jnp.float64)
    grads = jax.tree.map(lambda p: 0.5 * p + 0.1, params)
    ours = optax.chain(optax.clip_by_global_norm(1.0), getattr(pk, name)())
    ref = optax.chain(optax.clip_by_global_norm(1.0), _reference(name)())
    u, _ = ours.update(grads, ours.init(params), params, value=jnp.float64(2.0))
    v, _ = ref.update(grads, ref.init(params), params, value=jnp.float64(2.0))
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(v), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name", ["polyak_sgd", "momo", "momo_adam"])
def test_missing_value_is_a_clear_error(name):
    params = make_params(0)
    tx = getattr(pk, name)()
    with pytest.raises(ValueError, match=r"needs the loss: call update\(grads, state, params, "
                                         r"value=loss\)"):
        tx.update(params, tx.init(params), params)


BAD = [
    (lambda: pk.polyak_sgd(variant="sps++"), ValueError,
     r"variant must be one of \['sps', 'sps\+'\], got 'sps\+\+'"),
    (lambda: pk.polyak_sgd(max_learning_rate=-1.0), ValueError,
     r"max_learning_rate must be in \[0, inf\)"),
    (lambda: pk.polyak_sgd(scaling=-1.0), ValueError, "scaling must be in"),
    (lambda: pk.polyak_sgd(eps=-1.0), ValueError, "eps must be in"),
    (lambda: pk.polyak_sgd(f_min="zero"), TypeError, "f_min must be a number"),
    (lambda: pk.momo(beta=1.0), ValueError, r"beta must be in \[0, 1\)"),
    (lambda: pk.momo(learning_rate=-1.0), ValueError, "learning_rate must be in"),
    (lambda: pk.momo(weight_decay=-1.0), ValueError, "weight_decay must be in"),
    (lambda: pk.momo(lower_bound=float("nan")), ValueError, "lower_bound"),
    (lambda: pk.momo_adam(b1=1.5), ValueError, r"b1 must be in \[0, 1\)"),
    (lambda: pk.momo_adam(b2=-0.5), ValueError, r"b2 must be in \[0, 1\)"),
    (lambda: pk.momo_adam(eps=-1.0), ValueError, "eps must be in"),
    (lambda: pk.momentum_model_step("m", "v"), ValueError, "b1 is required"),
]


@pytest.mark.parametrize("make,error,match", BAD)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_momo_trains_in_optlab_train():
    """optlab.train passes the batch loss as ``value=`` (optax's convention), so the
    optimizers that read it train there as any other."""
    from optlab.train import train
    from tests.train_script import MLP, blobs

    result = train(blobs(), MLP, pk.momo, hyperparams={"learning_rate": [1.0]}, epochs=3,
                   batch_size=40, progress=False)
    assert not np.asarray(result.diverged).any()
    assert float(np.asarray(result.test_accuracy).ravel()[-1]) > 0.8
