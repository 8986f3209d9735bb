"""``optlab.lipschitz_sgd`` in the training loop: activations passed at every update."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from flax import nnx

import optlab
from optlab.lipschitz import LipschitzState
from optlab.train import train
from tests.train_script import MLP, blobs


@pytest.fixture(scope="module")
def digits():
    from optlab.tasks import load_dataset

    return load_dataset("digits")


class WithFeatures(MLP):
    def features(self, x):
        return nnx.relu(self.hidden(x))


def _lipschitz_states(result):
    return [n for n in jax.tree.leaves(result.state["opt_state"],
                                       is_leaf=lambda n: isinstance(n, LipschitzState))
            if isinstance(n, LipschitzState)]


@pytest.mark.parametrize("by_name", [True, False])
def test_lipschitz_sgd_trains_an_mlp_on_digits(digits, by_name):
    """The paper's adaptive-momentum form (η = 1/K, uncapped); plain LipschitzLR SGD takes
    steps too large for this MLP (see optlab.lipschitz's caveats)."""
    if by_name:
        result = train(digits, "mlp", "lipschitz_sgd", hyperparams={"momentum": 0.9},
                       epochs=4, batch_size=64, seeds=2)
    else:
        result = train(digits, "mlp", functools.partial(optlab.lipschitz_sgd, momentum=0.9),
                       epochs=4, batch_size=64, seeds=2)
    val = result.history["val_accuracy"]
    assert not result.diverged.any()
    assert np.all(val[:, -1] > val[:, 0] + 0.02), val
    assert result.test_accuracy.min() > 0.8, result.test_accuracy
    # the step size came from the activations: η = 1/K with K = (k-1)/(k m) max_i ||a_i||
    (state,) = _lipschitz_states(result)
    k = np.asarray(state.lipschitz_constant)
    assert np.all(k > 0)
    np.testing.assert_allclose(np.asarray(state.learning_rate), 1.0 / k, rtol=1e-6)
    assert np.all(np.asarray(state.learning_rate) > 1.0)  # far from any fixed default


def test_lipschitz_step_uses_the_penultimate_activations():
    """One full-batch step of train equals the step taken by hand with the activations of
    optlab.lipschitz.penultimate_activations."""
    import optax

    data = blobs()
    n = len(data.y_train)
    result = train(data, WithFeatures, optlab.lipschitz_sgd, epochs=1, batch_size=n,
                   seeds=[0])

    key = jax.random.key(0)
    model = WithFeatures(nnx.Rngs(jax.random.fold_in(key, 0)))
    order = jax.random.permutation(jax.random.fold_in(jax.random.fold_in(key, 1), 0), n)
    x, y = data.x_train[np.asarray(order)], data.y_train[np.asarray(order)]
    _, params, rest = nnx.split(model, nnx.Param, ...)
    graph = nnx.split(model, nnx.Param, ...)[0]

    def loss_fn(p):
        logits = nnx.merge(graph, p, rest)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    grads = jax.grad(loss_fn)(params)
    tx = optlab.lipschitz_sgd(data.num_classes)
    a = optlab.lipschitz.penultimate_activations(model, x)
    updates, state = tx.update(grads, tx.init(params), params, activations=a)
    expected = optax.apply_updates(params, updates)
    got = jax.tree.map(lambda v: v[0], result.state["params"])
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-5, atol=1e-6)
    (trained,) = _lipschitz_states(result)
    np.testing.assert_allclose(np.asarray(trained.lipschitz_constant)[0],
                               np.asarray(state[0].lipschitz_constant), rtol=1e-6)


def test_optimizers_without_lipschitz_get_no_activations():
    # a plain (not ExtraArgs) transform would reject an activations= keyword
    import optax

    result = train(blobs(), MLP, optax.sgd(0.1), epochs=1, batch_size=40)
    assert result.epochs_trained[0] == 1


def test_unknown_optimizer_name_and_schedule_without_learning_rate():
    with pytest.raises(ValueError, match=r"unknown optimizer 'lipschitz_sg'.*lipschitz_sgd"):
        train(blobs(), MLP, "lipschitz_sg", epochs=1, batch_size=40)
    with pytest.raises(ValueError, match=r"schedule.*learning_rate"):
        train(blobs(), MLP, "lipschitz_sgd", epochs=1, batch_size=40,
              schedule=optlab.schedules.cosine_decay(1.0, 10))


def test_model_without_features_is_a_clear_error():
    with pytest.raises(TypeError, match="features"):
        train(blobs(), MLP, "lipschitz_sgd", epochs=1, batch_size=40)
