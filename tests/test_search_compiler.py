"""The search-space compiler: programs → optlab chains (issue 8, "The compiler")."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import optlab
from optlab.schedules import cosine_sign_decay, linear_sign_decay, restart_sign_decay
from optlab.search.compiler import compile_program, expression, requirements
from optlab.search.language import BINARY, OPERANDS, UNARY, Binary, Leaf, SearchConfig, Unary
from tests.conftest import assert_trees_close, make_params, run

L = Leaf
AGREE = Binary("mul", L("sign_g"), L("sign_m"))
T = 40  # decay steps of the ld / cd / rd operands in these tests
CONFIG = SearchConfig(decay_steps=T)
DECAYS = {"ld": linear_sign_decay(T), "cd": cosine_sign_decay(T, num_periods=0.5),
          "rd": restart_sign_decay(T, num_periods=1)}


def powersign_tree(decay: str | None = None):
    exponent = AGREE if decay is None else Binary("mul", L(decay), AGREE)
    return Binary("mul", Unary("exp", exponent), L("g"))


def addsign_tree(decay: str | None = None):
    agree = AGREE if decay is None else Binary("mul", L(decay), AGREE)
    return Binary("mul", Binary("add", L("one"), agree), L("g"))


NAMED = {
    "sgd": (L("g"), SearchConfig(), lambda: optlab.sgd(0.01)),
    "momentum": (L("m"), SearchConfig(debias=False),  # EMA m = (1 − β)·trace
                 lambda: optlab.sgd(0.01 * (1 - 0.9), momentum=0.9)),
    "adam": (L("adam"), SearchConfig(), lambda: optlab.adam(0.01)),
    "rmsprop": (L("rmsprop"), SearchConfig(),
                lambda: optlab.rmsprop(0.01, decay=0.999, eps=1e-8, eps_in_sqrt=False,
                                       bias_correction=True)),
    "powersign": (powersign_tree(), SearchConfig(), lambda: optlab.powersign(0.01)),
    "addsign": (addsign_tree(), SearchConfig(), lambda: optlab.addsign(0.01)),
    **{f"powersign_{d}": (powersign_tree(d), CONFIG,
                          lambda d=d: optlab.powersign(0.01, sign_decay=DECAYS[d]))
       for d in DECAYS},
    **{f"addsign_{d}": (addsign_tree(d), CONFIG,
                        lambda d=d: optlab.addsign(0.01, sign_decay=DECAYS[d]))
       for d in DECAYS},
}


@pytest.mark.parametrize("name", sorted(NAMED))
def test_programs_follow_named_optimizers(name, x64):
    tree, config, named = NAMED[name]
    params = make_params(dtype=jnp.float64)
    ours = run(compile_program(tree, 0.01, config=config), params, 60)
    ref = run(named(), params, 60)
    assert_trees_close(ours.stacked, ref.stacked, rtol=1e-10, atol=1e-12, msg=name)


def test_state_holds_only_what_the_program_reads():
    params = make_params()
    n = sum(np.size(x) for x in jax.tree.leaves(params))

    def arrays(tree):
        state = compile_program(tree, 0.1).init(params)
        return sum(np.size(x) for x in jax.tree.leaves(state)
                   if jnp.issubdtype(x.dtype, jnp.floating))

    assert arrays(L("g")) == 0 and arrays(L("sign_g")) == 0
    assert arrays(L("sign_m")) == n
    assert arrays(L("adam")) == 2 * n
    assert arrays(Binary("add", L("gamma"), L("rmsprop"))) == 2 * n
    assert requirements(L("ld")).step and not requirements(L("g")).step


@pytest.mark.parametrize("op", [o.name for o in OPERANDS])
def test_every_operand_runs(op):
    params = make_params()
    tx = compile_program(L(op), 0.1, config=CONFIG)
    state = tx.init(params)
    for _ in range(2):
        updates, state = jax.jit(tx.update)(jax.tree.map(jnp.sin, params), state, params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
        assert u.shape == p.shape and u.dtype == p.dtype
        assert np.all(np.isfinite(np.asarray(u))), op


@pytest.mark.parametrize("fn", [u.name for u in UNARY])
def test_every_unary_function_runs(fn):
    params = {"w": jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)}
    tx = compile_program(Unary(fn, L("g")), 0.1)
    updates, _ = jax.jit(tx.update)(params, tx.init(params), params)
    assert updates["w"].shape == (3, 4)
    assert np.all(np.isfinite(np.asarray(updates["w"]))), fn


@pytest.mark.parametrize("fn", [b.name for b in BINARY])
def test_every_binary_function_runs(fn):
    params = {"w": jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)}
    tx = compile_program(Binary(fn, L("g"), L("m")), 0.1)
    updates, _ = jax.jit(tx.update)(params, tx.init(params), params)
    assert np.all(np.isfinite(np.asarray(updates["w"]))), fn


def test_protected_numerics():
    """log of 0 and division by −1e-8 are finite; 0 to a negative power is no NaN (it may
    overflow to inf, which the search scores as diverged)."""
    zero = {"w": jnp.zeros(3)}
    for tree in (Unary("log", L("g")), Binary("div", L("g"), Unary("neg", L("one")))):
        tx = compile_program(tree, 1.0)
        u, _ = tx.update(zero, tx.init(zero), zero)
        assert np.all(np.isfinite(np.asarray(u["w"]))), tree
    tx = compile_program(Binary("pow", L("g"), Unary("neg", L("two"))), 1.0)
    u, _ = tx.update(zero, tx.init(zero), zero)
    assert not np.any(np.isnan(np.asarray(u["w"])))
    x = jnp.full(3, -1e-8)
    tx = compile_program(Binary("div", L("one"), L("g")), 1.0)
    u, _ = tx.update({"w": x}, tx.init({"w": x}), {"w": x})
    np.testing.assert_array_equal(np.asarray(u["w"]), 0.0)


def test_dropout_rescales_and_noise_is_reproducible():
    params = {"w": jnp.ones(20_000)}
    tx = expression(Unary("drop0.5", L("g")))  # the program's value, u = drop(g)
    u, _ = tx.update(params, tx.init(params), params)
    values = set(np.unique(np.asarray(u["w"])).tolist())
    assert values == {0.0, 2.0} and abs(float(jnp.mean(u["w"])) - 1.0) < 0.05
    unscaled = expression(Unary("drop0.5", L("g")), config=SearchConfig(drop_rescale=False))
    u, _ = unscaled.update(params, unscaled.init(params), params)
    assert set(np.unique(np.asarray(u["w"])).tolist()) == {0.0, 1.0}
    noisy = expression(L("noise"), key=3)
    a, s = noisy.update(params, noisy.init(params), params)
    b, _ = noisy.update(params, noisy.init(params), params)
    c, _ = noisy.update(params, s, params)
    np.testing.assert_array_equal(a["w"], b["w"])
    assert not np.array_equal(a["w"], c["w"])
    assert abs(float(jnp.std(a["w"])) - 0.01) < 0.001


def test_works_in_inject_hyperparams_and_nnx_optimizer():
    params = make_params()
    factory = functools.partial(compile_program, powersign_tree("ld"), config=CONFIG)
    tx = optax.inject_hyperparams(factory)(learning_rate=0.01)
    ref = compile_program(powersign_tree("ld"), 0.01, config=CONFIG)
    assert_trees_close(run(tx, params, 10).stacked, run(ref, params, 10).stacked, rtol=1e-6)
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, compile_program(L("adam"), 0.1), wrt=nnx.Param)
    grads = nnx.grad(lambda m: jnp.sum(m(jnp.ones((4, 3))) ** 2))(model)
    before = np.asarray(model.kernel[...])
    opt.update(model, grads)
    assert not np.allclose(before, np.asarray(model.kernel[...]))


def test_trains_in_optlab_train():
    from optlab.tasks import load_dataset
    from optlab.train import train

    data = load_dataset("digits")
    kw = dict(hyperparams={"learning_rate": [0.03]}, epochs=2, progress=False)
    result = train(data, "mlp", functools.partial(compile_program, powersign_tree()), **kw)
    named = train(data, "mlp", optlab.powersign, **kw)
    assert float(result.test_accuracy[0]) > 0.5  # chance is 0.1
    np.testing.assert_allclose(result.history["train_loss"], named.history["train_loss"],
                               rtol=1e-5)


def _trees(depth: int):
    leaves = st.sampled_from([o.name for o in OPERANDS]).map(Leaf)
    if depth == 0:
        return leaves
    sub = _trees(depth - 1)
    return st.one_of(
        leaves,
        st.builds(Unary, st.sampled_from([u.name for u in UNARY]), sub),
        st.builds(Binary, st.sampled_from([b.name for b in BINARY]), sub, sub))


@settings(max_examples=60, deadline=None)
@given(_trees(3))
def test_random_programs_never_crash(tree):
    """Any program compiles and runs; its update keeps shapes and dtypes (non-finite values
    are allowed: the search marks such runs diverged)."""
    params = {"w": jnp.linspace(-1.5, 1.5, 6).reshape(2, 3), "b": jnp.asarray(0.3)}
    tx = compile_program(tree, 0.1, config=CONFIG)
    updates, state = tx.update(params, tx.init(params), params)
    updates, _ = tx.update(updates, state, params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
        assert u.shape == p.shape and u.dtype == p.dtype


def test_bad_programs_are_reported():
    with pytest.raises(ValueError, match=r"unknown operand 'gg'.*did you mean 'g"):
        compile_program(L("gg"), 0.1)
    with pytest.raises(ValueError, match="unknown unary function 'expp'"):
        compile_program(Unary("expp", L("g")), 0.1)
    with pytest.raises(TypeError, match="program must be"):
        compile_program(3.0, 0.1)
    tx = compile_program(L("w1e-2"), 0.1)
    with pytest.raises(ValueError, match="reads the weights"):
        tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}))
