"""Schedule-Free SGD / AdamW (optlab.schedule_free): optax parity, evaluation params,
convergence, composition, state, errors."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab import schedule_free as sf
from optlab import schedules
from optlab.optimizers import adam
from tests.conftest import assert_trees_close, make_params, run
from tests.test_convergence import PROBLEMS

STEPS = 100

CASES = [
    ("schedule_free_sgd", {}),
    ("schedule_free_sgd", dict(learning_rate=0.1)),
    ("schedule_free_sgd", dict(learning_rate=0.3, warmup_steps=10, b1=0.95, weight_decay=0.01,
                               weight_lr_power=1.0)),
    ("schedule_free_adamw", {}),
    ("schedule_free_adamw", dict(learning_rate=0.01, warmup_steps=20, b1=0.8, b2=0.99,
                                 eps=1e-6, weight_decay=0.05, weight_lr_power=3.0)),
]


def _ids(case):
    name, kw = case
    return "-".join([name, *kw]) if kw else f"{name}-defaults"


def _pair(name, kw):
    return getattr(sf, name)(**kw), getattr(optax.contrib, name)(**kw)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float64_parity(case, x64):
    ours, ref = _pair(*case)
    params = make_params(0, jnp.float64)
    a, b = run(ours, params, STEPS), run(ref, params, STEPS)
    for t in (1, 10, STEPS):
        assert_trees_close(a[t], b[t], rtol=1e-6, atol=1e-12, msg=f"{case} step {t}")


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float32_parity(case):
    ours, ref = _pair(*case)
    params = make_params(0, jnp.float32)
    assert_trees_close(run(ours, params, STEPS)[STEPS], run(ref, params, STEPS)[STEPS],
                       rtol=1e-4, atol=1e-5, msg=str(case))


def _final(tx, params, steps):
    """Final params and state after ``steps`` updates on the conftest gradients."""
    noise = jax.tree.map(lambda p: jnp.cos(jnp.arange(steps, dtype=p.dtype))[:, None]
                         * jnp.ones(p.size, p.dtype), params)

    def step(carry, n):
        p, s = carry
        g = jax.tree.map(lambda p, n: 0.5 * p + n.reshape(p.shape), p, n)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    return jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), noise)[0])(params)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_eval_params_equal_optax(case, x64):
    """x_t from optlab's state equals x_t from optax's; each helper reads the other's state."""
    ours, ref = _pair(*case)
    params = make_params(0, jnp.float64)
    p_ours, s_ours = _final(ours, params, 30)
    p_ref, s_ref = _final(ref, params, 30)
    x_ours = sf.schedule_free_eval_params(s_ours, p_ours)
    x_ref = optax.contrib.schedule_free_eval_params(s_ref, p_ref)
    assert_trees_close(x_ours, x_ref, rtol=1e-12, atol=1e-14)
    assert_trees_close(optax.contrib.schedule_free_eval_params(s_ours, p_ours), x_ours, 0.0)
    assert_trees_close(sf.schedule_free_eval_params(s_ref, p_ref), x_ref, 0.0)


def test_wrapper_matches_optax_with_optax_and_optlab_bases(x64):
    params = make_params(1, jnp.float64)
    for lr in (0.1, optax.warmup_constant_schedule(0.0, 0.1, 10)):
        ref = optax.contrib.schedule_free(optax.sgd(lr), lr, b1=0.9)
        ours = sf.schedule_free(optax.sgd(lr), lr, b1=0.9)
        assert_trees_close(run(ours, params, 50)[-1], run(ref, params, 50)[-1], 1e-10, 1e-12)
    # An optlab base shares the chain's counter (Adam without momentum, as recommended).
    ours = sf.schedule_free(adam(0.01, b1=0.0), 0.01, b1=0.9)
    ref = optax.contrib.schedule_free(optax.adam(0.01, b1=0.0), 0.01, b1=0.9)
    assert_trees_close(run(ours, params, 50)[-1], run(ref, params, 50)[-1], 1e-8, 1e-12)
    assert optax.tree.get(ours.init(params), "count").shape == ()


def test_eval_params_inside_nested_states():
    """Found inside optax.inject_hyperparams and inside a larger chain."""
    params = make_params(0)
    injected = optax.inject_hyperparams(sf.schedule_free_sgd)(learning_rate=0.1)
    outer = optax.chain(optax.clip_by_global_norm(1.0), sf.schedule_free_adamw(0.01))
    for tx in (injected, outer):
        p, s = _final(tx, params, 5)
        x = sf.schedule_free_eval_params(s, p)
        z = optax.tree.get(s, "z")
        assert_trees_close(x, jax.tree.map(lambda y, z: (y - 0.1 * z) / 0.9, p, z), 1e-6)
    with pytest.raises(ValueError, match="needs the state of a Schedule-Free optimizer"):
        sf.schedule_free_eval_params(optax.adam(0.1).init(params), params)


def test_inject_hyperparams_matches_optax():
    params = make_params(0)
    outs = []
    for name in ("schedule_free_sgd", "schedule_free_adamw"):
        for module in (sf, optax.contrib):
            opt = optax.inject_hyperparams(getattr(module, name))(learning_rate=0.05, b1=0.8)
            outs.append(run(opt, params, 20)[-1])
        assert_trees_close(outs[-2], outs[-1], rtol=1e-5, atol=1e-6, msg=name)


def test_state_fields_dtypes_and_size():
    params = make_params(0)
    state = sf.schedule_free_adamw().init(params)
    for field in ("b1", "weight_sum", "max_lr", "z", "nu", "count"):
        assert optax.tree.get(state, field) is not None, field
    assert state.z is optax.tree.get(state, "z") and state.b1.dtype == jnp.float32
    bf16 = sf.schedule_free_sgd(state_dtype=jnp.bfloat16).init(params)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(bf16.z))

    def nbytes(s):
        return sum(x.nbytes for x in jax.tree.leaves(s))

    for name, kw in CASES:
        ours, ref = _pair(name, kw)
        assert nbytes(ours.init(params)) <= nbytes(ref.init(params)), (name, kw)


@pytest.mark.parametrize("name", ["schedule_free_sgd", "schedule_free_adamw"])
def test_jit_scan_donation_and_abstract_init(name):
    params = make_params(0)
    opt = getattr(sf, name)(learning_rate=0.1, warmup_steps=5)
    abstract = jax.eval_shape(opt.init, params)
    state = opt.init(params)
    assert jax.tree.structure(abstract) == jax.tree.structure(state)

    @functools.partial(jax.jit, donate_argnums=(0, 1))
    def step(p, s):
        u, s = opt.update(jax.tree.map(lambda x: 0.5 * x, p), s, p)
        return optax.apply_updates(p, u), s

    p, s = step(jax.tree.map(jnp.copy, params), state)
    assert jax.eval_shape(lambda: s) == abstract
    p, s = step(p, s)
    assert step._cache_size() == 1  # type-stable: no recompilation on the second call
    assert type(s) is sf.ScheduleFreeChainState


# Recipes: (learning rate, steps, kwargs, clip). SGD on Rosenbrock needs a small step; the
# averaged iterate x is the uniform average of the z's (c_t = 1/t for a constant rate), so it
# only forgets early iterates as 1/t: long budgets. Beale from (−4.5, 4.5) (see
# tests/test_convergence.py for its x = 0 ridge): SGD crosses with η = 1 on gradients clipped to
# norm 10 and β₁ = 0.98; AdamW's first step moves y to z₁ (c₁ = 1), every coordinate by ≈ η, so
# η₀ = 5 lands at (0.5, −0.5), past the ridge (as sign_sgd in test_convergence); a cosine decay
# lets the Adam step settle (η₀ = 8 passes too; constant η or η₀ ≤ 3 end on the x < 0 side).
RECIPES = {
    "schedule_free_sgd": {
        "quadratic": (1.0, 4000, {}, None),
        "rosenbrock": (3e-3, 50000, {}, None),
        "beale": (1.0, 20000, {"b1": 0.98}, 10.0),
    },
    "schedule_free_adamw": {
        "quadratic": (0.01, 4000, {}, None),
        "rosenbrock": (0.01, 20000, {}, None),
        "beale": ("cos5", 20000, {}, None),
    },
}


@pytest.mark.parametrize("name", list(RECIPES))
@pytest.mark.parametrize("problem", list(PROBLEMS))
def test_reaches_minimum(name, problem):
    f, x0, x_star = PROBLEMS[problem]
    lr, steps, kwargs, clip = RECIPES[name][problem]
    if lr == "cos5":
        lr = schedules.cosine_decay(5.0, steps, alpha=1e-3)
    tx = getattr(sf, name)(lr, **kwargs)
    if clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)

    def body(carry, _):
        x, s = carry
        u, s = tx.update(jax.grad(f)(x), s, x)
        return (optax.apply_updates(x, u), s), None

    (y, s), _ = jax.jit(lambda x: jax.lax.scan(body, (x, tx.init(x)), None, length=steps))(x0)
    x = sf.schedule_free_eval_params(s, y)
    for which, point in (("params y", y), ("eval params x", x)):
        distance = float(jnp.linalg.norm(point - x_star))
        assert np.isfinite(distance) and distance < 1e-2, (name, problem, which, distance)


@pytest.mark.parametrize("factory,kwargs,error,match", [
    (sf.schedule_free_sgd, dict(b1=0.0), ValueError, r"b1 must be in \(0, 1\]"),
    (sf.schedule_free_sgd, dict(b1=1.5), ValueError, r"b1 must be in \(0, 1\]"),
    (sf.schedule_free_sgd, dict(learning_rate=-1.0), ValueError, "learning_rate must be in"),
    (sf.schedule_free_sgd, dict(warmup_steps=0), ValueError, "warmup_steps must be an int >= 1"),
    (sf.schedule_free_sgd, dict(weight_decay=-0.1), ValueError, "weight_decay must be in"),
    (sf.schedule_free_adamw, dict(b2=1.0), ValueError, r"b2 must be in \[0, 1\)"),
    (sf.schedule_free_adamw, dict(eps=-1.0), ValueError, "eps must be in"),
    (sf.schedule_free_adamw, dict(warmup_steps=2.5), TypeError, "warmup_steps must be an int"),
    (sf.schedule_free_adamw, dict(weight_lr_power="2"), TypeError, "weight_lr_power must be"),
])
def test_bad_arguments(factory, kwargs, error, match):
    with pytest.raises(error, match=match):
        factory(**kwargs)


def test_wrapper_bad_base_and_missing_params():
    with pytest.raises(TypeError, match="base_optimizer must be a GradientTransformation"):
        sf.schedule_free("sgd", 0.1)
    opt = sf.schedule_free_sgd()
    params = make_params(0)
    with pytest.raises(ValueError, match="needs params"):
        opt.update(params, opt.init(params))


@pytest.mark.parametrize("name", ["schedule_free_sgd", "schedule_free_adamw"])
def test_schedule_learning_rate_with_warmup(name):
    """A schedule is accepted (as annotated) and the warmup multiplies it: a constant
    schedule gives the trajectory of the constant rate."""
    params = make_params(0)
    factory = getattr(sf, name)
    const = run(factory(learning_rate=0.05, warmup_steps=10), params, 30)[-1]
    sched = run(factory(learning_rate=optax.constant_schedule(0.05), warmup_steps=10),
                params, 30)[-1]
    assert_trees_close(sched, const, rtol=1e-5, atol=1e-6)
