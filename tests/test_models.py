"""Tests for optlab.tasks.models: shapes, features/head, training, BatchNorm modes, vmap init."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optlab.lipschitz import penultimate_activations
from optlab.tasks.models import (
    CNN1D,
    MLP,
    MODELS,
    ConvNet,
    make_model,
    model_options,
    param_count,
)

# (model name, per-example input shape, options); small enough to train in a few seconds.
SMALL = {
    "logreg": ((40,), {}),
    "mlp": ((40,), {}),
    "cnn1d": ((40,), {}),
    "convnet": ((8, 8, 1), {}),
    "wrn": ((8, 8, 3), {"depth": 10, "width": 1}),
}
BATCHNORM_MODELS = ("convnet", "wrn")


def _data(input_shape, n=64, num_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *input_shape)).astype(np.float32)
    y = rng.integers(0, num_classes, size=n)
    return jnp.asarray(x), jnp.asarray(y)


def _key(seed):
    """An "rbg" PRNG key: initialising under jit/vmap compiles several times faster on CPU than
    with the default threefry (same semantics; the int-seed path is tested separately)."""
    return jax.random.key(seed, impl="rbg")


@functools.cache
def _initial(name):
    """(graphdef, state) of the small model ``name`` built with seed 0 (once per process)."""
    shape, options = SMALL[name]
    return nnx.split(make_model(name, shape, 10, rngs=nnx.Rngs(_key(0)), **options))


def _small(name):
    """A fresh copy of the small model ``name`` (seed 0, training mode)."""
    graphdef, state = _initial(name)
    return nnx.merge(graphdef, state, copy=True)


def _batch_stats(model):
    return jax.tree.leaves(nnx.state(model, nnx.BatchStat))


def test_registry_covers_the_test_configs():
    assert set(SMALL) == set(MODELS)
    for cls, description in MODELS.values():
        assert issubclass(cls, nnx.Module) and description


@pytest.mark.parametrize("name", sorted(SMALL))
def test_graphdef_is_hashable(name):
    """Static configuration is hashable, so a graphdef can be a jit static argument."""
    shape, options = SMALL[name]
    model = nnx.eval_shape(lambda: make_model(name, shape, 10, rngs=0, **options))
    graphdef = nnx.split(model)[0]
    assert hash(graphdef) == hash(nnx.split(model)[0])


# ------------------------------------------------------------------------------------------
# Shapes, features and the head
# ------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, x):
    """Jitted (logits, features, head(features), penultimate_activations, BatchStats after)."""
    m = nnx.merge(graphdef, state, copy=True)
    feats = m.features(x)
    return m(x), feats, m.head(feats), penultimate_activations(m, x), nnx.state(m, nnx.BatchStat)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_features_and_head(name):
    shape, _ = SMALL[name]
    model = _small(name)
    x, _ = _data(shape, n=16)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        logits, feats, head, penultimate, _ = _forward(*nnx.split(model), x)
        assert logits.shape == (16, 10) and logits.dtype == jnp.float32
        assert feats.ndim == 2 and feats.shape[0] == 16 and feats.dtype == jnp.float32
        assert isinstance(model.head, nnx.Linear)
        assert model.head.kernel.shape == (feats.shape[1], 10)
        np.testing.assert_allclose(head, logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(penultimate, feats, rtol=1e-5, atol=1e-5)


def _abstract_forward(name, shape, num_classes, options, batch=5):
    """(logits, features, head(features)) shapes via eval_shape: nothing is compiled."""
    model = nnx.eval_shape(lambda: make_model(name, shape, num_classes, rngs=0, **options))
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)

    def forward(state, x):
        m = nnx.merge(graphdef, state, copy=True)
        feats = m.features(x)
        return m(x), feats, m.head(feats)

    return model, jax.eval_shape(forward, state, x)


@pytest.mark.parametrize(
    "name, shape, options, num_features",
    [
        ("logreg", (40,), {}, 40),
        ("logreg", (8, 8, 1), {}, 64),
        ("mlp", (40,), {}, 100),
        ("mlp", (28, 28, 1), {"hidden": (32, 16)}, 16),
        ("cnn1d", (40,), {}, 125),  # ConvBase's linear_in=125
        ("cnn1d", (40, 2), {"channels": 8}, 40),
        ("convnet", (8, 8, 1), {}, 32 * 2 * 2),
        ("convnet", (28, 28, 1), {}, 32 * 7 * 7),
        ("convnet", (32, 32, 3), {}, 32 * 8 * 8),
        ("convnet", (32, 32, 3), {"channels": (8, 16, 24)}, 24 * 4 * 4),
        ("convnet", (8, 8, 1), {"pool": False, "batch_norm": False}, 32 * 8 * 8),
        ("wrn", (8, 8, 3), {"depth": 10, "width": 1}, 64),
        ("wrn", (28, 28, 1), {"depth": 10, "width": 2}, 128),
        ("wrn", (32, 32, 3), {"depth": 22, "width": 3}, 192),
    ],
)
def test_output_and_feature_shapes(name, shape, options, num_features):
    model, (logits, feats, head) = _abstract_forward(name, shape, 7, options)
    assert logits.shape == head.shape == (5, 7)
    assert feats.shape == (5, num_features)
    assert logits.dtype == feats.dtype == jnp.float32
    assert model.head.kernel.shape == (num_features, 7)


def test_integer_inputs_become_float32():
    model = _small("logreg")
    assert model(jnp.ones((2, 40), jnp.int32)).dtype == jnp.float32


def test_mlp_is_the_mnist1d_mlpbase():
    """h = relu(l1 x); h = h + relu(l2 h); logits = l3 h (greydanus/mnist1d MLPBase)."""
    model = _small("mlp")
    x, _ = _data((40,), n=3)
    l1, l2 = model.layers
    h = jax.nn.relu(l1(x))
    h = h + jax.nn.relu(l2(h))
    np.testing.assert_allclose(model.features(x), h, rtol=1e-5, atol=1e-5)
    assert param_count(model) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10

    plain = MLP((40,), 10, rngs=nnx.Rngs(_key(0)), residual=False)
    assert plain.skips == (False, False) and model.skips == (False, True)
    l1, l2 = plain.layers
    np.testing.assert_allclose(plain.features(x), jax.nn.relu(l2(jax.nn.relu(l1(x)))),
                               rtol=1e-5, atol=1e-5)


def test_cnn1d_matches_convbase_sizes():
    model = nnx.eval_shape(lambda: CNN1D((40,), 10, rngs=nnx.Rngs(0)))
    kernels = [conv.kernel.shape for conv in model.convs]
    assert kernels == [(5, 1, 25), (3, 25, 25), (3, 25, 25)]
    # 3 conv layers + Linear(125, 10), the same count as the PyTorch ConvBase
    assert param_count(model) == (5 * 25 + 25) + 2 * (3 * 25 * 25 + 25) + 125 * 10 + 10


def test_wrn_16_4_parameter_count():
    model, (logits, feats, _) = _abstract_forward("wrn", (32, 32, 3), 10, {}, batch=2)
    n = param_count(model)
    # Exact count of this architecture (convs without bias, BN scale+bias, Linear(256, 10)):
    assert n == 2_748_890
    assert abs(n - 2.75e6) / 2.75e6 < 0.005  # the paper's table reports 2.7M
    assert len(model.blocks) == 6  # 3 groups of (16 - 4) / 6 = 2 blocks
    assert [b.shortcut is not None for b in model.blocks] == [True, False] * 3
    assert logits.shape == (2, 10) and feats.shape == (2, 256)
    stats = sum(int(v.size) for v in jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    assert stats == 2 * (16 + 4 * 64 + 4 * 128 + 4 * 256)  # mean + var of 13 BN layers


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------


def _train(model, x, y, steps=20, learning_rate=1e-2):
    """Functional Adam on (params, other state) in one lax.scan; returns (losses, model).

    ``copy=True`` in ``nnx.merge`` is needed: without it the merged module shares the
    Variables of ``rest`` (flax 0.12), and BatchNorm's in-place update of its statistics
    inside the traced function raises a TraceContextError.
    """
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(learning_rate)

    def loss_fn(params, rest):
        m = nnx.merge(graphdef, params, rest, copy=True)
        loss = optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
        return loss, nnx.split(m, nnx.Param, ...)[2]

    @jax.jit
    def run(params, rest):
        def step(carry, _):
            params, rest, opt_state = carry
            (loss, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest)
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), rest, opt_state), loss

        (params, rest, _), losses = jax.lax.scan(step, (params, rest, tx.init(params)), None,
                                                 length=steps)
        return params, rest, losses

    params, rest, losses = run(params, rest)
    return np.asarray(losses), nnx.merge(graphdef, params, rest)


@functools.cache
def _trained(name):
    """Losses and (graphdef, state) of the small model after 20 Adam steps (once per process)."""
    shape, _ = SMALL[name]
    losses, model = _train(_small(name), *_data(shape, n=32))
    return losses, nnx.split(model)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_model_memorises_a_tiny_dataset(name):
    losses, (_, state) = _trained(name)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], (name, losses[0], losses[-1])
    # training in train mode moved the BatchNorm running statistics
    initial = _batch_stats(_small(name))
    trained = jax.tree.leaves(nnx.state(state, nnx.BatchStat))
    assert len(initial) == len(trained) == (2 * 2 if name == "convnet" else
                                            2 * 7 if name == "wrn" else 0)
    if trained:
        assert any(not np.allclose(a, b) for a, b in zip(initial, trained, strict=True))


# ------------------------------------------------------------------------------------------
# BatchNorm: train / eval modes through split and merge
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BATCHNORM_MODELS)
def test_batchnorm_train_and_eval_modes(name):
    shape, _ = SMALL[name]
    x, _ = _data(shape, n=16, seed=1)
    # the same first 8 examples in a different batch
    x_other = x.at[8:].set(_data(shape, n=8, seed=2)[0] * 3.0 + 1.0)
    model = _small(name)
    initial_stats = _batch_stats(model)
    assert initial_stats, "BatchNorm statistics must be nnx.BatchStat"

    model.train()
    graphdef_train, state = nnx.split(model)
    model.eval()
    graphdef_eval, state_eval = nnx.split(model)
    assert graphdef_train != graphdef_eval  # the mode is static, part of the graphdef
    assert jax.tree.structure(state) == jax.tree.structure(state_eval)

    # train mode: batch statistics (outputs depend on the rest of the batch), stats updated
    out_train, *_, stats = _forward(graphdef_train, state, x)
    assert not np.allclose(_forward(graphdef_train, state, x_other)[0][:8], out_train[:8],
                           atol=1e-3)
    assert any(not np.allclose(a, b)
               for a, b in zip(initial_stats, jax.tree.leaves(stats), strict=True))
    nnx.update(model, stats)  # the state after a train-mode step
    _, stepped = nnx.split(model)

    # eval mode: running averages, left untouched; each example independent of the batch
    out_eval, *_, eval_stats = _forward(graphdef_eval, stepped, x)
    for a, b in zip(jax.tree.leaves(eval_stats), jax.tree.leaves(stats), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(_forward(graphdef_eval, stepped, x_other)[0][:8], out_eval[:8],
                               rtol=1e-4, atol=1e-4)
    assert not np.allclose(out_train, out_eval, atol=1e-3)
    # merging with the eval graphdef normalises with the running averages
    m = nnx.merge(graphdef_eval, stepped, copy=True)
    assert all(bn.use_running_average for _, bn in nnx.iter_modules(m)
               if isinstance(bn, nnx.BatchNorm))


def test_models_without_batchnorm_have_no_batch_stats():
    for name in ("logreg", "mlp", "cnn1d"):
        assert not _batch_stats(_small(name))
    model = nnx.eval_shape(lambda: ConvNet((8, 8, 1), 10, rngs=nnx.Rngs(0), batch_norm=False))
    assert not _batch_stats(model)
    assert all(conv.bias is not None for conv in model.convs)


# ------------------------------------------------------------------------------------------
# vmap over seeds
# ------------------------------------------------------------------------------------------


def _vmap_init(name, keys):
    shape, options = SMALL[name]

    def init(key):
        return nnx.split(make_model(name, shape, 10, rngs=nnx.Rngs(key), **options))[1]

    return jax.vmap(init)(keys)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_vmap_init_over_seeds(name):
    keys = jnp.stack([_key(0), _key(1), _key(2)])
    stacked = jax.jit(_vmap_init, static_argnums=0)(name, keys)
    graphdef, single = _initial(name)  # built alone with _key(0)
    assert jax.tree.structure(stacked) == jax.tree.structure(single)
    for s, p in zip(jax.tree.leaves(stacked), jax.tree.leaves(single), strict=True):
        assert s.shape == (3, *p.shape)
        np.testing.assert_allclose(s[0], p, rtol=1e-6, atol=1e-6)  # vmap == building alone
    kernels = jax.tree.leaves(nnx.state(nnx.merge(graphdef, stacked, copy=True), nnx.Param))
    assert all(not np.allclose(k[0], k[i]) for k in kernels if k.ndim >= 3 for i in (1, 2))

    # the stacked state drives a vmapped forward pass (train mode: BN stats per seed)
    x, _ = _data(SMALL[name][0], n=4)
    logits = jax.jit(jax.vmap(lambda s: nnx.merge(graphdef, s, copy=True)(x)))(stacked)
    assert logits.shape == (3, 4, 10)
    assert not np.allclose(logits[0], logits[1])


def test_vmap_init_with_default_threefry_keys():
    keys = jax.random.split(jax.random.key(0), 2)
    stacked = _vmap_init("logreg", keys)
    single = nnx.split(make_model("logreg", (40,), 10, rngs=nnx.Rngs(keys[1])))[1]
    for s, p in zip(jax.tree.leaves(stacked), jax.tree.leaves(single), strict=True):
        np.testing.assert_allclose(s[1], p, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------
# Validation and the registry
# ------------------------------------------------------------------------------------------


def _abstract(name, shape, **options):
    return nnx.eval_shape(lambda: make_model(name, shape, 10, rngs=0, **options))


def test_wrn_depth_validation():
    for depth in (15, 17, 20):
        with pytest.raises(ValueError, match="depth must be 6n \\+ 4"):
            _abstract("wrn", (32, 32, 3), depth=depth)
    with pytest.raises(ValueError, match="depth"):
        _abstract("wrn", (32, 32, 3), depth=4)
    with pytest.raises(ValueError, match="width"):
        _abstract("wrn", (32, 32, 3), width=0)
    assert len(_abstract("wrn", (32, 32, 3), depth=28, width=10).blocks) == 12


@pytest.mark.parametrize(
    "name, shape, options, error, match",
    [
        ("convnet", (40,), {}, ValueError, r"input_shape.*\(height, width, channels\)"),
        ("wrn", (32, 32), {}, ValueError, r"input_shape.*\(height, width, channels\)"),
        ("cnn1d", (8, 8, 1), {}, ValueError, r"input_shape.*\(L,\) or \(L, C\)"),
        ("cnn1d", (2,), {}, ValueError, "too short"),
        ("convnet", (3, 3, 1), {}, ValueError, "too small"),
        ("logreg", (0,), {}, ValueError, "positive"),
        ("mlp", (40, -1), {}, ValueError, "positive"),
        ("mlp", 40, {}, TypeError, "input_shape"),
        ("mlp", (40,), {"hidden": ()}, TypeError, "hidden"),
        ("mlp", (40,), {"hidden": (100, 0)}, ValueError, "hidden"),
        ("mlp", (40,), {"residual": 1}, TypeError, "residual"),
        ("cnn1d", (40,), {"channels": 0}, ValueError, "channels"),
        ("convnet", (8, 8, 1), {"bn_momentum": 1.0}, ValueError, "bn_momentum"),
    ],
)
def test_constructor_validation(name, shape, options, error, match):
    with pytest.raises(error, match=match):
        _abstract(name, shape, **options)


def test_input_shape_from_numpy():
    model = nnx.eval_shape(lambda: make_model("convnet", np.zeros((5, 8, 8, 1)).shape[1:], 10,
                                              rngs=0))
    assert model.input_shape == (8, 8, 1)
    model = nnx.eval_shape(lambda: make_model("mlp", (np.int64(40),), 10, rngs=0))
    assert model.input_shape == (40,) and type(model.input_shape[0]) is int


def test_num_classes_validation():
    with pytest.raises(ValueError, match="num_classes"):
        make_model("logreg", (40,), 1, rngs=0)
    with pytest.raises(TypeError, match="num_classes"):
        make_model("logreg", (40,), 10.0, rngs=0)


def test_wrong_batch_shape_is_reported():
    model = _small("mlp")
    with pytest.raises(ValueError, match=r"expects a batch of shape \(B, 40\)"):
        model(jnp.zeros((2, 41)))


def test_unknown_model_name():
    with pytest.raises(ValueError, match=r"unknown model 'mpl'.*did you mean 'mlp'") as e:
        make_model("mpl", (40,), 10, rngs=0)
    assert all(name in str(e.value) for name in MODELS)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        model_options("resnet")


def test_unknown_option():
    with pytest.raises(TypeError, match=r"no option 'hiden'.*did you mean 'hidden'"):
        make_model("mlp", (40,), 10, rngs=0, hiden=(10,))
    with pytest.raises(TypeError, match=r"'logreg' has no option 'depth'; its options are none"):
        make_model("logreg", (40,), 10, rngs=0, depth=3)


def test_model_options_and_rngs_forms():
    assert model_options("wrn") == {"depth": 16, "width": 4, "bn_momentum": 0.9}
    assert model_options("mlp") == {"hidden": (100, 100), "residual": True}
    assert model_options("logreg") == {}
    a = make_model("logreg", (40,), 10, rngs=3)
    b = make_model("logreg", (40,), 10, rngs=jax.random.key(3))
    c = make_model("logreg", (40,), 10, rngs=nnx.Rngs(3))
    for m in (b, c):
        np.testing.assert_array_equal(m.head.kernel[...], a.head.kernel[...])


def test_autoencoder_shape_code_layer_and_bad_sizes():
    """Sigmoid outputs of the input's width; the narrowest hidden layer is the linear code."""
    from optlab.tasks.models import Autoencoder

    model = Autoencoder((12, 6, 3, 6, 12), rngs=nnx.Rngs(0))
    out = model(jnp.ones((4, 3, 4)))
    assert out.shape == (4, 12) and bool(jnp.all((out > 0) & (out < 1)))
    assert model.code == 1
    with pytest.raises(ValueError, match="at least one hidden"):
        Autoencoder((12, 12), rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="sizes must be"):
        Autoencoder(12, rngs=nnx.Rngs(0))
