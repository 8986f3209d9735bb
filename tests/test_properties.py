"""Properties every optlab optimizer must have, whatever its formula."""

from __future__ import annotations

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import optlab
from tests.conftest import assert_trees_close, make_params
from tests.zoo import ZOO, make, state_signature

NAMES = sorted(ZOO)

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
trees = st.dictionaries(st.sampled_from(list("abcd")), shapes, min_size=1, max_size=3)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree_shapes=trees, seed=st.integers(0, 2**16), name=st.sampled_from(NAMES))
def test_state_structure_shapes_dtypes_are_stable(tree_shapes, seed, name):
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in tree_shapes.items()}
    tx = make(name)
    state = tx.init(params)
    sig = state_signature(state)
    for _ in range(3):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        updates, state = tx.update(grads, state, params)
        assert state_signature(state) == sig
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params), strict=True):
            assert u.shape == p.shape and u.dtype == p.dtype
            assert np.isfinite(np.asarray(u)).all()
        params = optax.apply_updates(params, updates)


@pytest.mark.parametrize("name", NAMES)
def test_no_recompilation_on_second_call(name):
    tx = make(name)
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = make_params(3)
    state = tx.init(params)
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: jnp.cos(p + i), params)
        params, state = step(params, state, grads)
    assert len(traces) == 1


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_params_give_bfloat16_updates(name):
    params = make_params(4, jnp.bfloat16)
    tx = make(name)
    state = tx.init(params)
    sig = state_signature(state)
    step = jax.jit(tx.update)
    for _ in range(2):
        grads = jax.tree.map(lambda p: (0.5 * p + 1).astype(jnp.bfloat16), params)
        updates, state = step(grads, state, params)
        assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates)), name
        assert state_signature(state) == sig
        params = optax.apply_updates(params, updates)


@pytest.mark.parametrize("name", NAMES)
def test_none_leaves_pass_through(name):
    params = {"w": jnp.ones((3, 2)), "frozen": None, "b": jnp.zeros(2)}
    grads = {"w": jnp.full((3, 2), 0.5), "frozen": None, "b": jnp.ones(2)}
    tx = make(name)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    assert updates["frozen"] is None
    assert updates["w"].shape == (3, 2)


@pytest.mark.parametrize("name", NAMES)
def test_works_inside_optax_masked(name):
    params = make_params(5)
    mask = jax.tree.map(lambda p: p.ndim >= 2, params)
    tx = optax.masked(make(name), mask)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    assert_trees_close(updates["nested"]["b"], grads["nested"]["b"], 0.0)  # masked out
    assert not np.allclose(np.asarray(updates["w"]), 1.0)  # transformed


@pytest.mark.parametrize("name", ["adam", "amsgrad", "lion", "rmsprop", "sgd", "powersign"])
def test_inject_hyperparams(name):
    params = make_params(6)
    factory = getattr(optlab, name)
    tx = optax.inject_hyperparams(factory)(learning_rate=0.1)
    state = tx.init(params)
    step = jax.jit(tx.update)
    grads = jax.tree.map(jnp.sin, params)
    u1, state = step(grads, state, params)
    ref, _ = factory(0.1).update(grads, factory(0.1).init(params), params)
    assert_trees_close(u1, ref, rtol=1e-4)  # hyperparameters become float32 arrays
    state.hyperparams["learning_rate"] = jnp.asarray(0.0)
    u2, state = step(grads, state, params)
    assert all(np.allclose(np.asarray(u), 0.0) for u in jax.tree.leaves(u2))


@pytest.mark.parametrize("name", ["adam", "amsgrad", "adamw", "lion", "sgd"])
def test_multisteps_matches_optax(name):
    params = make_params(7)
    ours = optax.MultiSteps(getattr(optlab, name)(0.05), every_k_schedule=3)
    ref = optax.MultiSteps(getattr(optax, name)(0.05), every_k_schedule=3)
    s1, s2 = ours.init(params), ref.init(params)
    p1 = p2 = params
    for i in range(7):
        g = jax.tree.map(lambda p, i=i: jnp.cos(p * (i + 1)), p1)
        u1, s1 = ours.update(g, s1, p1)
        u2, s2 = ref.update(g, s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    assert_trees_close(p1, p2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(p1["w"]), np.asarray(params["w"]))


class _MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(4, 8, rngs=rngs)
        self.l2 = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.l1(x)))


def _train_nnx(tx, steps=20):
    model = _MLP(nnx.Rngs(0))
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    x = jnp.linspace(-1, 1, 32 * 4).reshape(32, 4)
    y = jnp.sum(x**2, axis=1, keepdims=True)

    @nnx.jit
    def step(model, opt):
        def loss_fn(m):
            return jnp.mean((m(x) - y) ** 2)

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(steps)]
    return losses, nnx.state(model, nnx.Param)


def test_flax_nnx_optimizer_matches_optax():
    losses, ours = _train_nnx(optlab.adamw(1e-2, weight_decay=1e-3))
    _, ref = _train_nnx(optax.adamw(1e-2, weight_decay=1e-3))
    assert losses[-1] < 0.5 * losses[0]
    assert_trees_close(ours, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["powersign", "addsign", "lion", "adabound", "nadam_torch"])
def test_flax_nnx_optimizer_trains(name):
    losses, _ = _train_nnx(make(name), steps=30)
    assert losses[-1] < losses[0]


def test_vmap_over_learning_rates():
    """Hyperparameters injected as arrays vmap: one compiled program for a whole lr grid."""
    params = make_params(8)
    tx = optax.inject_hyperparams(optlab.adam)(learning_rate=0.1)
    lrs = jnp.array([0.0, 0.01, 0.1])

    def one(lr):
        state = tx.init(params)
        state.hyperparams["learning_rate"] = lr
        updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
        return updates["w"]

    out = jax.jit(jax.vmap(one))(lrs)
    np.testing.assert_allclose(np.asarray(out[0]), 0.0)
    np.testing.assert_allclose(np.asarray(out[2]), 10 * np.asarray(out[1]), rtol=1e-5)


def test_statistic_is_stored_once():
    """Two combiners reading one statistic share it: the state holds m once."""
    params = {"w": jnp.ones((10, 10))}
    tx = optlab.chain(optlab.ema("m", 0.9), optlab.ema_of_square("v", 0.99),
                      optlab.ratio("m", "v"), optlab.scale_by_learning_rate(0.1))
    both = optlab.chain(optlab.ema("m", 0.9), optlab.ema_of_square("v", 0.99),
                        optax.chain(optlab.ratio("m", "v")), optlab.scale_by_learning_rate(0.1))
    n = lambda s: sum(x.size for x in jax.tree.leaves(s))  # noqa: E731
    assert n(tx.init(params)) == n(both.init(params)) < 2 * 100 + 10


@pytest.mark.parametrize("name,copies", [("powersign", 1), ("addsign", 1), ("lion", 1),
                                          ("signum", 1), ("adam", 2), ("adamw", 2),
                                          ("amsgrad", 3), ("amsgrad_torch", 3), ("sgd", 0),
                                          ("sgd_momentum", 1), ("rmsprop", 1), ("adadelta", 2)])
def test_state_holds_exactly_the_statistics_of_the_formula(name, copies):
    params = {"w": jnp.ones((64, 64)), "b": jnp.ones(64)}
    n_params = 64 * 64 + 64
    n_state = sum(x.size for x in jax.tree.leaves(make(name).init(params)))
    assert copies * n_params <= n_state <= copies * n_params + 16  # + scalar step counters


FIRST_STEP_ZERO = {
    "adopt": "v₀ = g₀² (Taniguchi et al. 2024, Algorithm 2; optax's adopt also steps 0)",
    "soap": "step 1 builds the eigenbasis (Vyas et al. 2024's reference code)",
}


@pytest.mark.parametrize("name", NAMES)
def test_default_first_step_goes_downhill(name):
    """⟨u, g⟩ < 0 on the first step: no default steps uphill (unlike optax.adadelta())."""
    params = {"w": jnp.linspace(-1.0, 2.0, 12).reshape(3, 4)}
    grads = {"w": params["w"] - 0.5}
    tx = make(name)
    updates, state = tx.update(grads, tx.init(params), params)
    if name in FIRST_STEP_ZERO:  # by design: the first step only initialises statistics
        assert not np.any(np.asarray(updates["w"]))
        updates, _ = tx.update(grads, state, params)
    assert float(jnp.vdot(updates["w"], grads["w"])) < 0


SHARDING_SCRIPT = r"""
import jax, jax.numpy as jnp, numpy as np, optax, optlab
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
assert len(jax.devices()) == 4
mesh = Mesh(np.array(jax.devices()), ("d",))
shard = NamedSharding(mesh, P("d"))
params = {"w": jnp.arange(32.0).reshape(8, 4) / 10, "b": jnp.ones(8)}
sharded = jax.device_put(params, shard)
for name in ["adam", "amsgrad", "lion", "powersign", "adafactor", "rmsprop"]:
    tx = getattr(optlab, name)(0.01)
    step = jax.jit(lambda p, s: tx.update(jax.tree.map(jnp.sin, p), s, p), donate_argnums=1)
    s = jax.jit(tx.init)(sharded)
    u, s = step(sharded, s)
    u, s = step(sharded, s)
    ref_u, _ = tx.update(jax.tree.map(jnp.sin, params), tx.update(
        jax.tree.map(jnp.sin, params), tx.init(params), params)[1], params)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(ref_u)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    assert u["w"].sharding.is_equivalent_to(shard, 2), name
    for leaf in jax.tree.leaves(s):
        if leaf.shape == (8, 4) or leaf.shape == (8,):
            assert leaf.sharding.is_equivalent_to(shard, leaf.ndim), (name, leaf.sharding)
print("ok")
"""


def test_state_follows_parameter_sharding():
    """On 4 simulated CPU devices, sharded params give sharded state and the same updates."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SHARDING_SCRIPT], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


@pytest.mark.parametrize("name,kw", [("rmsprop", dict(centered=True)), ("adam", {}),
                                     ("adagrad", {}), ("amsgrad", {})])
def test_complex_params_match_optax(name, kw):
    """Second moments of complex gradients are |g|². (optax.adadelta squares complex
    gradients without conjugating them, so it is left out; optlab.adadelta uses |g|².)"""
    params = {"z": jnp.array([1 + 2j, -0.5 + 0.1j, 3 - 1j], jnp.complex64)}
    ours, ref = getattr(optlab, name)(0.1, **kw), getattr(optax, name)(0.1, **kw)
    s1, s2 = ours.init(params), ref.init(params)
    for i in range(5):
        g = jax.tree.map(lambda z, i=i: z * (i + 1) - 1j, params)
        u1, s1 = ours.update(g, s1, params)
        u2, s2 = ref.update(g, s2, params)
        assert_trees_close(u1, u2, rtol=1e-5, atol=1e-6)


def test_mu_dtype_reaches_the_torch_nadam_momentum():
    params = {"w": jnp.ones(3)}
    state = optlab.nadam(1e-3, mu_dtype=jnp.bfloat16, momentum_decay=0.004).init(params)
    assert optax.tree.get(state, "mu")["w"].dtype == jnp.bfloat16


def test_noisy_sgd_inside_inject_hyperparams():
    params = jnp.ones(4)
    tx = optax.inject_hyperparams(optlab.noisy_sgd)(learning_rate=0.1, key=0)
    updates, _ = jax.jit(tx.update)(jnp.zeros(4), tx.init(params), params)
    assert np.all(np.isfinite(np.asarray(updates))) and np.any(np.asarray(updates) != 0)


def test_integer_noise_exponent_does_not_overflow():
    tx = optlab.gradient_noise(0.01, gamma=2, key=0)
    state = tx.init(jnp.zeros(3))
    state = state._replace(count=jnp.asarray(50_000, jnp.int32))
    updates, _ = tx.update(jnp.zeros(3), state)
    assert np.all(np.isfinite(np.asarray(updates)))


def test_zero_weight_decay_needs_no_params():
    tx = optlab.adabound(1e-3)
    updates, _ = tx.update(jnp.ones(3), tx.init(jnp.ones(3)))
    assert np.all(np.asarray(updates) < 0)
