"""Drop-in fidelity with optax: one step counter, state types that keep the params' sharding,
run-time annotations, optax's state field names, and clear errors for misplaced transforms."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import typing

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optlab
from tests.zoo import ZOO, make

NAMES = sorted(ZOO)
PARAMS = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4), "nested": {"s": jnp.asarray(2.0)}}


def _int_scalars(state) -> list[jax.Array]:
    """Integer scalars of a state, but for the diagnostics of optax's line searches
    (``num_linesearch_steps``, used by lbfgs), which are not step counters."""
    return [x for path, x in jax.tree_util.tree_leaves_with_path(state)
            if jnp.issubdtype(x.dtype, jnp.integer) and x.shape == ()
            and getattr(path[-1], "name", None) != "num_linesearch_steps"]


@pytest.mark.parametrize("name", NAMES)
def test_one_step_counter_per_optimizer(name):
    """``optax.tree.get(state, "count")`` finds one counter, which counts the updates."""
    tx = make(name)
    state = tx.init(PARAMS)
    counters = _int_scalars(state)
    assert len(counters) <= 1, (name, state)
    for _ in range(3):
        _, state = tx.update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
    if counters:
        assert int(optax.tree.get(state, "count")) == 3


@pytest.mark.parametrize("name", ["adam", "adamw", "lion", "sgd", "powersign", "adafactor"])
def test_one_counter_with_schedules_everywhere(name):
    """A learning-rate schedule, a weight-decay schedule and a sign decay still share one."""
    sched = optax.linear_schedule(1e-2, 1e-3, 10)
    kwargs = {"adamw": {"weight_decay": sched}, "lion": {"weight_decay": sched},
              "powersign": {"sign_decay": optlab.schedules.linear_sign_decay(10)}}.get(name, {})
    tx = getattr(optlab, name)(sched, **kwargs)
    state = tx.init(PARAMS)
    assert len(_int_scalars(state)) == 1
    _, state = jax.jit(tx.update)(PARAMS, state, PARAMS)
    assert int(optax.tree.get(state, "count")) == 1


def test_primitive_alone_keeps_its_own_counter_and_chain_shares_one():
    ema = optlab.ema("m", 0.9, debias=True)
    alone = ema.init(PARAMS)
    assert isinstance(alone, optlab.StepState) and int(alone.count) == 0
    tx = optlab.chain(optlab.ema("m", 0.9, debias=True), optlab.ema_of_square("v", 0.99,
                      debias=True), optlab.ratio("m", "v"), optlab.scale_by_learning_rate(
                      optax.constant_schedule(0.1)))
    assert len(_int_scalars(tx.init(PARAMS))) == 1
    # A chain nested in a chain still shares the outer counter.
    outer = optlab.chain(optax.clip_by_global_norm(1.0), tx)
    assert len(_int_scalars(outer.init(PARAMS))) == 1
    u1, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS)
    u2, _ = outer.update(PARAMS, outer.init(PARAMS), PARAMS)
    chex_close = jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), u1,
                              optax.clip_by_global_norm(1.0).update(u2, (), PARAMS)[0])
    del chex_close


@pytest.mark.parametrize("name,field", [("adam", "mu"), ("adam", "nu"), ("amsgrad", "nu_max"),
                                        ("sgd_momentum", "trace"), ("rmsprop", "nu"),
                                        ("adagrad", "sum_of_squares"), ("adadelta", "e_g"),
                                        ("adadelta", "e_x"),
                                        ("lion", "mu"), ("adafactor", "v_row")])
def test_state_entries_have_optax_names(name, field):
    state = make(name).init(PARAMS)
    got = optax.tree.get(state, field)
    assert jax.tree.structure(got) == jax.tree.structure(PARAMS)


@pytest.mark.parametrize("name", optlab.OPTIMIZERS)
def test_annotations_are_runtime_objects(name):
    """optax's schedule tests compare the annotation with ``optax.ScalarOrSchedule``."""
    fn = getattr(optlab, name)
    hints = typing.get_type_hints(fn)  # fails on string annotations that do not resolve
    lr_name = "learning_rate" if name != "polyak_sgd" else "max_learning_rate"
    lr = inspect.signature(fn).parameters[lr_name].annotation
    assert not isinstance(lr, str)
    schedules = (optax.ScalarOrSchedule, optax.ScalarOrSchedule | None)
    theirs = getattr(optax, name, None) or getattr(optax.contrib, name, None)
    if theirs is None or inspect.signature(theirs).parameters[lr_name].annotation in schedules:
        assert lr in schedules, lr
    # else optax's is narrower (rprop, sm3, polyak_sgd, ... take scalars): ours may be either
    assert lr_name in hints


def test_optax_transform_inside_the_stream_is_reported():
    """optax.scale between an accumulator and the combiner would scale every statistic."""
    grads = {"w": jnp.ones(3)}
    tx = optlab.chain(optlab.ema("m", 0.9), optax.scale(2.0), optlab.select("m"))
    with pytest.raises(TypeError, match=r"transform #1 of the chain \(scale\).*statistic stream"):
        tx.update(grads, tx.init(grads))
    # In a plain optax.chain the next optlab primitive notices the rebuilt stream.
    tx = optax.chain(optlab.ema("m", 0.9), optax.scale(2.0), optlab.select("m"))
    with pytest.raises(TypeError, match=r"not an optlab primitive.*before select read it"):
        tx.update(grads, tx.init(grads))
    # A transform with state of the params' structure fails inside; the message is the same.
    tx = optlab.chain(optlab.ema("m", 0.9), optax.scale_by_adam(), optlab.select("m"))
    with pytest.raises(TypeError, match=r"transform #1 of the chain \(scale_by_adam\)"):
        tx.update(grads, tx.init(grads))


def test_optax_chain_of_optlab_primitives_inside_the_stream_is_fine():
    grads = {"w": jnp.arange(3.0)}
    inner = optax.chain(optlab.ratio("m", "v"))
    tx = optlab.chain(optlab.ema("m", 0.9), optlab.ema_of_square("v", 0.99), inner)
    ref = optlab.chain(optlab.ema("m", 0.9), optlab.ema_of_square("v", 0.99),
                       optlab.ratio("m", "v"))
    np.testing.assert_allclose(tx.update(grads, tx.init(grads))[0]["w"],
                               ref.update(grads, ref.init(grads))[0]["w"])


def test_chain_rejects_what_is_not_a_transform():
    with pytest.raises(TypeError, match="argument #1 is not a GradientTransformation"):
        optlab.chain(optlab.sgd(0.1), 3.0)


@pytest.mark.parametrize("name", NAMES)
def test_scan_carries_the_state_unchanged(name):
    """The state type is the same before and after update, so a lax.scan loop compiles."""
    tx = make(name)

    def step(carry, _):
        p, s = carry
        u, s = tx.update(jax.tree.map(jnp.sin, p), s, p)
        return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), length=3))(PARAMS)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(p))


EXPLICIT_SHARDING_UNSUPPORTED = {
    # optax's own muon, lbfgs and sophia fail the same way on this mesh (checked with optax's)
    "muon": "matrix products of a leaf sharded over an explicit axis need an out_sharding",
    "shampoo": "matrix products of a leaf sharded over an explicit axis need an out_sharding",
    "soap": "matrix products of a leaf sharded over an explicit axis need an out_sharding",
    "lbfgs": "optax's zoom line search (optax.tree.vdot) fails on explicitly sharded leaves",
    "sophia": "optax's Hutchinson estimator draws float32 tangents for float16 params",
}

SHARDING_SCRIPT = r"""
import jax, jax.numpy as jnp, optax, optlab
from tests.zoo import ZOO
from tests.test_dropin import EXPLICIT_SHARDING_UNSUPPORTED as UNSUPPORTED
EAGER = {"adam", "adafactor", "shampoo", "lion", "schedule_free_adamw"}
mesh = jax.make_mesh((4,), ("x",), axis_types=(jax.sharding.AxisType.Explicit,))
sharding = jax.sharding.NamedSharding(mesh, jax.P(None, "x"))
with jax.set_mesh(mesh):
    params = {"w": jnp.zeros((2, 8, 4), jnp.float16, out_sharding=sharding),
              "m": jnp.zeros((8, 8), jnp.float32,
                             out_sharding=jax.sharding.NamedSharding(mesh, jax.P("x", None))),
              "b": jnp.zeros((8,), jnp.float32)}
    for name, build in sorted(ZOO.items()):
        if name in UNSUPPORTED:
            continue
        tx = build()
        s0 = tx.init(params)
        t0 = jax.tree.map(jax.typeof, s0)
        _, s1 = jax.jit(tx.update)(params, s0, params)
        assert jax.tree.map(jax.typeof, s1) == t0, (name, t0, jax.tree.map(jax.typeof, s1))
        assert jax.tree.map(jax.typeof, jax.jit(tx.init)(params)) == t0, name
        if name in EAGER:  # op by op (slow under explicit sharding): a few representatives
            _, s2 = tx.update(params, s0, params)
            assert jax.tree.map(jax.typeof, s2) == t0, name
        abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype,
                                                               sharding=p.sharding), params)
        assert tx.init(abstract) is not None, name
print("ok")
"""


def test_state_type_and_sharding_are_stable_under_explicit_sharding():
    """On 4 simulated devices with an explicit-sharding mesh, init's state has the type update
    returns (optax's sharding_test covers the aliases optax has; this covers every optlab one,
    including factored Adafactor moments)."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", SHARDING_SCRIPT], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]


def test_decay_is_not_rounded_to_a_low_precision_state():
    """A traced β multiplying a bfloat16 momentum and a float32 gradient stays float32, as in
    optax (``inject_hyperparams`` makes β an array)."""
    params = jnp.array([1.0, -2.0, 3.0])
    updates = {}
    for lib in (optax, optlab):
        tx = optax.inject_hyperparams(lib.sgd, static_args=("accumulator_dtype",))(
            learning_rate=0.1, momentum=0.9, accumulator_dtype=jnp.bfloat16)
        p, s = params, tx.init(params)
        for _ in range(3):
            u, s = tx.update(jnp.sin(p), s, p)
            p = optax.apply_updates(p, u)
        updates[lib.__name__] = p
    np.testing.assert_allclose(updates["optlab"], updates["optax"], rtol=1e-6)


def test_an_optlab_error_inside_a_nested_optax_chain_is_not_masked():
    tx = optlab.chain(optlab.ema("mu", 0.9), optlab.ema_of_square("nu", 0.99),
                      optax.chain(optlab.ratio("mu", "nuu"), optax.scale(-0.1)))
    with pytest.raises(ValueError, match="statistic 'nuu' is not in the stream"):
        tx.update(PARAMS, tx.init(PARAMS))


def test_a_failing_foreign_transform_names_its_error():
    tx = optlab.chain(optlab.ema("m", 0.9), optax.scale_by_adam(), optlab.select("m"))
    with pytest.raises(TypeError, match="it failed with"):
        tx.update(PARAMS, tx.init(PARAMS))


def test_replace_gives_a_plain_transform_that_chains():
    adam = optlab.adam(0.1)
    replaced = adam._replace(update=adam.update)
    assert not isinstance(replaced, optlab.Primitive)
    tx = optlab.chain(replaced)
    u, _ = tx.update(PARAMS, tx.init(PARAMS), PARAMS)
    ref, _ = adam.update(PARAMS, adam.init(PARAMS), PARAMS)
    jax.tree.map(np.testing.assert_array_equal, u, ref)
