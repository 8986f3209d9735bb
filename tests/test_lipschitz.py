"""Tests for optlab.lipschitz: the LipschitzLR bound, its transform, the nnx helper."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optlab import accumulators, combiners
from optlab.lipschitz import (
    LipschitzState,
    lipschitz_constant,
    lipschitz_sgd,
    penultimate_activations,
    scale_by_lipschitz,
)
from optlab.stream import Stream


def _rng_array(seed: int, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def _params_and_grads(seed: int = 0):
    def tree(offset):
        return {"w": jnp.asarray(_rng_array(seed + offset, (4, 3))),
                "b": jnp.asarray(_rng_array(seed + offset + 1, (3,)))}

    return tree(0), tree(2)


# ------------------------------------------------------------------------------------------
# The constant, against numpy
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 10])
def test_cross_entropy_constant_matches_numpy(seed, k):
    a = _rng_array(seed, (17, 6), scale=3.0)
    m = a.shape[0]
    expected = {
        "max_example": (k - 1) * max(np.sqrt((row.astype(np.float64) ** 2).sum()) for row in a),
        "frobenius": (k - 1) * np.sqrt((a.astype(np.float64) ** 2).sum()),
        "max_entry": (k - 1) * np.abs(a).max(),
    }
    for norm, numerator in expected.items():
        got = lipschitz_constant(a, num_classes=k, activation_norm=norm)
        np.testing.assert_allclose(float(got), numerator / (k * m), rtol=1e-5)
    # default is the max over examples of the per-example 2-norm
    np.testing.assert_allclose(float(lipschitz_constant(a, num_classes=k)),
                               expected["max_example"] / (k * m), rtol=1e-5)


def test_constant_flattens_trailing_axes():
    a = _rng_array(3, (5, 2, 3, 4))
    flat = a.reshape(5, -1)
    np.testing.assert_allclose(float(lipschitz_constant(a, num_classes=3)),
                               float(lipschitz_constant(flat, num_classes=3)), rtol=1e-6)


def test_mse_constant_matches_numpy_and_takes_max_kernel_norm():
    a = _rng_array(4, (9, 5))
    w1, w2 = _rng_array(5, (5, 1)), _rng_array(6, (5, 2), scale=4.0)
    max_a = max(np.linalg.norm(row) for row in a.astype(np.float64))
    got = lipschitz_constant(a, loss="mse", last_layer_kernel=w1)
    np.testing.assert_allclose(float(got), max_a * np.linalg.norm(w1) / 9, rtol=1e-5)
    tree = {"first": w1, "second": w2}
    got = lipschitz_constant(a, loss="mse", last_layer_kernel=tree)
    np.testing.assert_allclose(float(got), max_a * np.linalg.norm(w2) / 9, rtol=1e-5)


def test_constant_validation():
    a = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"loss must be one of \['cross_entropy', 'mse'\]"):
        lipschitz_constant(a, loss="hinge", num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        lipschitz_constant(a)
    with pytest.raises(ValueError, match="num_classes"):
        lipschitz_constant(a, num_classes=1)
    with pytest.raises(TypeError, match="num_classes"):
        lipschitz_constant(a, num_classes=3.0)
    with pytest.raises(ValueError, match="last_layer_kernel"):
        lipschitz_constant(a, loss="mse")
    with pytest.raises(ValueError, match="activation_norm"):
        lipschitz_constant(a, num_classes=3, activation_norm="spectral")
    with pytest.raises(ValueError, match="activations must have shape"):
        lipschitz_constant(np.ones(4, np.float32), num_classes=3)


# ------------------------------------------------------------------------------------------
# The transform
# ------------------------------------------------------------------------------------------


def test_update_is_minus_gradient_over_k():
    params, grads = _params_and_grads()
    a = jnp.asarray(_rng_array(7, (8, 4)))
    tx = scale_by_lipschitz(num_classes=3)
    state = tx.init(params)
    assert isinstance(state, LipschitzState)
    assert state.learning_rate.dtype == jnp.float32 and float(state.learning_rate) == 0.0
    updates, state = tx.update(grads, state, params, activations=a)
    k_const = float(lipschitz_constant(a, num_classes=3))
    for name in grads:
        np.testing.assert_allclose(updates[name], -grads[name] / k_const, rtol=1e-5)
    np.testing.assert_allclose(float(state.learning_rate), 1 / k_const, rtol=1e-5)
    np.testing.assert_allclose(float(state.lipschitz_constant), k_const, rtol=1e-6)
    assert state.learning_rate.dtype == jnp.float32
    assert state.lipschitz_constant.dtype == jnp.float32


def test_scale_and_max_learning_rate():
    params, grads = _params_and_grads()
    a = jnp.asarray(_rng_array(7, (8, 4)))
    inv_k = 1 / float(lipschitz_constant(a, num_classes=3))
    tx = scale_by_lipschitz(num_classes=3, scale=0.25)
    updates, state = tx.update(grads, tx.init(params), activations=a)
    np.testing.assert_allclose(updates["w"], -0.25 * inv_k * grads["w"], rtol=1e-5)
    cap = 0.1 * inv_k
    tx = scale_by_lipschitz(num_classes=3, max_learning_rate=cap)
    updates, state = tx.update(grads, tx.init(params), activations=a)
    np.testing.assert_allclose(updates["w"], -cap * grads["w"], rtol=1e-5)
    np.testing.assert_allclose(float(state.learning_rate), cap, rtol=1e-6)


def test_zero_constant_falls_back_to_finite_rate():
    params, grads = _params_and_grads()
    zeros = jnp.zeros((8, 4))
    tx = scale_by_lipschitz(num_classes=3, scale=0.5)
    updates, state = tx.update(grads, tx.init(params), activations=zeros)
    np.testing.assert_allclose(updates["w"], -0.5 * grads["w"], rtol=1e-6)
    assert float(state.learning_rate) == 0.5 and float(state.lipschitz_constant) == 0.0
    tx = scale_by_lipschitz(num_classes=3, max_learning_rate=0.03)
    updates, state = tx.update(grads, tx.init(params), activations=zeros)
    np.testing.assert_allclose(updates["w"], -0.03 * grads["w"], rtol=1e-6)
    # MSE with a zero-initialised kernel: K = 0, the step still moves
    tx = scale_by_lipschitz("mse")
    updates, _ = tx.update(grads, tx.init(params), activations=jnp.ones((8, 4)),
                           last_layer_kernel=jnp.zeros((4, 1)))
    assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates))
    np.testing.assert_allclose(updates["b"], -grads["b"], rtol=1e-6)


def test_jit_and_dtypes():
    params, grads = _params_and_grads()
    a = jnp.asarray(_rng_array(7, (8, 4)))
    tx = scale_by_lipschitz(num_classes=3)
    state = tx.init(params)
    update = jax.jit(tx.update)
    out, new_state = update(grads, state, params, activations=a)
    ref, _ = tx.update(grads, state, params, activations=a)
    for name in grads:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-6)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert all(x.dtype == y.dtype for x, y in zip(jax.tree.leaves(new_state),
                                                  jax.tree.leaves(state), strict=True))
    bf16 = jax.tree.map(lambda g: g.astype(jnp.bfloat16), grads)
    out, _ = update(bf16, state, params, activations=a.astype(jnp.bfloat16))
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(out))


@pytest.mark.parametrize(
    "head",
    [
        lambda: [optax.identity()],
        lambda: [optax.trace(decay=0.9)],
        lambda: [accumulators.ema("m", 0.9), combiners.select("m")],
    ],
    ids=["identity", "optax_trace", "optlab_ema"],
)
def test_extra_args_forwarded_through_chain(head):
    params, grads = _params_and_grads()
    a = jnp.asarray(_rng_array(8, (8, 4)))
    head_tx = optax.chain(*head())
    tx = optax.chain(*head(), scale_by_lipschitz(num_classes=3))
    state = tx.init(params)
    step = jax.jit(lambda g, s, a: tx.update(g, s, params, activations=a, unrelated=1.0))
    out, state = step(grads, state, a)
    pre, _ = head_tx.update(grads, head_tx.init(params), params)
    k_const = float(lipschitz_constant(a, num_classes=3))
    for name in grads:
        np.testing.assert_allclose(out[name], -pre[name] / k_const, rtol=1e-5)
    np.testing.assert_allclose(float(state[-1].learning_rate), 1 / k_const, rtol=1e-5)


def test_missing_arguments_raise_clear_errors():
    params, grads = _params_and_grads()
    tx = optax.chain(optax.identity(), scale_by_lipschitz(num_classes=3))
    with pytest.raises(ValueError, match="activations"):
        tx.update(grads, tx.init(params), params)
    mse = scale_by_lipschitz("mse")
    with pytest.raises(ValueError, match="last_layer_kernel"):
        mse.update(grads, mse.init(params), activations=jnp.ones((2, 4)))
    with pytest.raises(TypeError, match="stream"):
        tx.update(Stream({"g": grads}), tx.init(params), activations=jnp.ones((2, 4)))


def test_constructor_validation():
    with pytest.raises(ValueError, match=r"loss must be one of \['cross_entropy', 'mse'\]"):
        scale_by_lipschitz("cross-entropy", num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        scale_by_lipschitz()
    with pytest.raises(ValueError, match="num_classes"):
        lipschitz_sgd(1)
    with pytest.raises(ValueError, match="max_learning_rate"):
        scale_by_lipschitz(num_classes=3, max_learning_rate=0.0)
    with pytest.raises(ValueError, match="scale"):
        scale_by_lipschitz(num_classes=3, scale=-1.0)
    with pytest.raises(ValueError, match="momentum"):
        lipschitz_sgd(3, momentum=1.0)
    with pytest.raises(ValueError, match="activation_norm"):
        scale_by_lipschitz(num_classes=3, activation_norm="l1")
    scale_by_lipschitz("mse")  # no num_classes needed


# ------------------------------------------------------------------------------------------
# penultimate_activations
# ------------------------------------------------------------------------------------------


class _FeatureMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(4, 8, rngs=rngs)
        self.head = nnx.Linear(8, 3, rngs=rngs)

    def features(self, x):
        return nnx.relu(self.hidden(x))

    def __call__(self, x):
        return self.head(self.features(x))


def test_penultimate_activations_conventions():
    x = jnp.asarray(_rng_array(9, (5, 4)))
    l1, l2 = nnx.Linear(4, 8, rngs=nnx.Rngs(0)), nnx.Linear(8, 3, rngs=nnx.Rngs(1))
    expected = nnx.relu(l1(x))
    seq = nnx.Sequential(l1, nnx.relu, l2)
    np.testing.assert_allclose(penultimate_activations(seq, x), expected, rtol=1e-6)
    # trailing parameter-free layers after the last Linear are skipped too
    seq_softmax = nnx.Sequential(l1, nnx.relu, l2, nnx.softmax)
    np.testing.assert_allclose(penultimate_activations(seq_softmax, x), expected, rtol=1e-6)
    # softmax regression: a single dense layer, the activations are the inputs
    np.testing.assert_allclose(penultimate_activations(nnx.Sequential(l1), x), x)
    custom = _FeatureMLP(nnx.Rngs(2))
    np.testing.assert_allclose(penultimate_activations(custom, x),
                               nnx.relu(custom.hidden(x)), rtol=1e-6)
    np.testing.assert_allclose(penultimate_activations(lambda z: 2 * z, x), 2 * x)


def test_penultimate_activations_unsupported():
    class NoFeatures(nnx.Module):
        def __init__(self):
            self.lin = nnx.Linear(4, 3, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.lin(x)

    with pytest.raises(TypeError, match="features"):
        penultimate_activations(NoFeatures(), jnp.ones((2, 4)))
    with pytest.raises(TypeError, match=r"no nnx\.Linear"):
        penultimate_activations(nnx.Sequential(nnx.relu, nnx.relu), jnp.ones((2, 4)))
    with pytest.raises(TypeError, match="unsupported model"):
        penultimate_activations(3, jnp.ones((2, 4)))


# ------------------------------------------------------------------------------------------
# Training behaviour
# ------------------------------------------------------------------------------------------


def _separable_data(seed: int, m: int = 256, d: int = 10, k: int = 3):
    x = _rng_array(seed, (m, d))
    y = np.argmax(x @ _rng_array(seed + 100, (d, k)), axis=1)
    return jnp.asarray(x), jnp.asarray(y)


def _train(model, tx, x, y, steps: int = 50, batch: int = 64) -> np.ndarray:
    """Mini-batch training in one jitted scan; returns the full-batch loss before each step."""
    graphdef, params = nnx.split(model)
    batches = x.reshape(-1, batch, x.shape[1]), y.reshape(-1, batch)

    def loss_fn(p, xb, yb):
        logits = nnx.merge(graphdef, p)(xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    def step(carry, t):
        p, s = carry
        i = t % batches[0].shape[0]
        xb, yb = batches[0][i], batches[1][i]
        grads = jax.grad(loss_fn)(p, xb, yb)
        activations = penultimate_activations(nnx.merge(graphdef, p), xb)
        u, s = tx.update(grads, s, p, activations=activations)
        return (optax.apply_updates(p, u), s), loss_fn(p, x, y)

    @jax.jit
    def run(p):
        (p, _), losses = jax.lax.scan(step, (p, tx.init(p)), jnp.arange(steps))
        return jnp.append(losses, loss_fn(p, x, y))

    return np.asarray(run(params))


def _mlp(seed: int):
    return nnx.Sequential(nnx.Linear(10, 32, rngs=nnx.Rngs(seed)), nnx.relu,
                          nnx.Linear(32, 3, rngs=nnx.Rngs(seed + 1)))


def test_training_softmax_regression_and_mlp():
    """50 mini-batch steps on separable data: finite throughout and a large decrease.

    (``_train`` also runs ``penultimate_activations`` under ``jax.jit``.)
    """
    seed = 0
    x, y = _separable_data(seed)
    softmax_regression = nnx.Sequential(nnx.Linear(10, 3, rngs=nnx.Rngs(seed)))
    losses = _train(softmax_regression, lipschitz_sgd(3), x, y)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.15 * losses[0]
    assert losses.max() <= 1.5 * losses[0]
    # MLP with the paper's EMA momentum: smooth decrease
    losses = _train(_mlp(seed), lipschitz_sgd(3, momentum=0.9), x, y)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.05 * losses[0]
    assert losses.max() <= 1.1 * losses[0]
    # MLP with plain Lipschitz SGD: ends low, but the huge early steps make the loss spike
    # (to 15-60x the initial loss on these problems) before it recovers
    losses = _train(_mlp(seed), lipschitz_sgd(3), x, y)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.2 * losses[0]
    assert losses.max() > 5 * losses[0]


def _softmax_regression_problem(seed: int, m: int = 64, d: int = 5, k: int = 3):
    """A noisy (non-separable) softmax regression problem with bias."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(m, d)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(d, k)) + rng.gumbel(size=(m, k)), axis=1)
    x_aug = np.concatenate([x, np.ones((m, 1))], axis=1).astype(np.float64)
    # classical smoothness constant of the mean softmax cross-entropy in (W, b):
    # Hessian ≼ ½ λ_max(X̃ᵀX̃ / m) since the logit Hessian diag(p) − ppᵀ ≼ ½ I.
    smooth = 0.5 * np.linalg.eigvalsh(x_aug.T @ x_aug / m)[-1]
    return jnp.asarray(x), jnp.asarray(y), float(smooth)


def _gd_losses(loss, tx, p0, x, y, steps, **extra) -> np.ndarray:
    """Full-batch gradient descent on ``loss(p, x, y)``, vmapped over a leading problem axis
    of ``x`` and ``y``; returns the losses, shape (problems, steps + 1). ``extra`` names
    functions of (params, x) giving the extra arguments of ``tx.update``."""

    def one(x, y):
        def step(carry, _):
            p, s = carry
            value, g = jax.value_and_grad(loss)(p, x, y)
            kwargs = {name: fn(p, x) for name, fn in extra.items()}
            u, s = tx.update(g, s, p, **kwargs)
            return (optax.apply_updates(p, u), s), value

        (p, _), losses = jax.lax.scan(step, (p0, tx.init(p0)), None, length=steps)
        return jnp.append(losses, loss(p, x, y))

    return np.asarray(jax.jit(jax.vmap(one))(x, y))


def _softmax_loss(p, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(x @ p["w"] + p["b"], y).mean()


def test_inverse_bound_is_not_a_descent_step():
    """The paper's K bounds the gradient, not its Lipschitz constant: 1/K is no descent step.

    On softmax regression (activations = inputs) 1/K is far above the classical 2/L, and
    full-batch gradient descent with it increases the loss on these non-separable problems.
    Capped at 1/L by ``max_learning_rate`` (L the smoothness constant) every step descends.
    """
    problems = [_softmax_regression_problem(seed) for seed in range(3)]
    x = jnp.stack([p[0] for p in problems])
    y = jnp.stack([p[1] for p in problems])
    smooth = np.array([p[2] for p in problems])
    for xi, li in zip(x, smooth, strict=True):
        assert 1 / float(lipschitz_constant(xi, num_classes=3)) > 4 * (2 / li)
    p0 = {"w": jnp.zeros((5, 3)), "b": jnp.zeros(3)}
    acts = {"activations": lambda p, x: x}
    losses = _gd_losses(_softmax_loss, scale_by_lipschitz(num_classes=3), p0, x, y, 40, **acts)
    assert np.all(np.any(np.diff(losses, axis=1) > 0, axis=1))
    assert np.all(losses[:, -1] > losses[:, 0])
    capped_tx = scale_by_lipschitz(num_classes=3, max_learning_rate=float(1 / smooth.max()))
    capped = _gd_losses(_softmax_loss, capped_tx, p0, x, y, 40, **acts)
    assert np.all(np.diff(capped, axis=1) <= 1e-6)
    assert np.all(capped[:, -1] < capped[:, 0])


def test_mse_rate_on_linear_regression():
    """MSE end to end (kernel passed each step): the uncapped 1/K step blows the loss up on
    plain linear regression; capped at the classical 1/L it converges."""
    xs, ys, smooth = [], [], []
    for seed in range(2):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=(128, 5))
        xs.append(x)
        ys.append(x @ rng.normal(size=(5, 1)) + 0.1 * rng.normal(size=(128, 1)))
        x_aug = np.concatenate([x, np.ones((128, 1))], axis=1)
        smooth.append(np.linalg.eigvalsh(x_aug.T @ x_aug / 128)[-1])
    x = jnp.asarray(np.stack(xs), jnp.float32)
    y = jnp.asarray(np.stack(ys), jnp.float32)

    def loss(p, x, y):
        return 0.5 * jnp.mean((x @ p["w"] + p["b"] - y) ** 2)

    p0 = {"w": jnp.full((5, 1), 0.3), "b": jnp.zeros(1)}
    extra = {"activations": lambda p, x: x, "last_layer_kernel": lambda p, x: p["w"]}
    uncapped = _gd_losses(loss, lipschitz_sgd(None, loss="mse"), p0, x, y, 30, **extra)
    assert np.all(uncapped[:, -1] > 10 * uncapped[:, 0])
    capped_tx = lipschitz_sgd(None, loss="mse", max_learning_rate=float(1 / max(smooth)))
    capped = _gd_losses(loss, capped_tx, p0, x, y, 30, **extra)
    assert np.all(np.isfinite(capped)) and np.all(capped[:, -1] < 0.1 * capped[:, 0])


def test_lipschitz_sgd_passes_the_activation_norm():
    """lipschitz_sgd(activation_norm=...) reaches the step size (the authors' Frobenius form
    measures a larger K than the largest per-example norm, so its step is smaller)."""
    import jax.numpy as jnp

    import optlab

    params = {"w": jnp.ones(3)}
    a = jnp.arange(12.0).reshape(4, 3) / 10
    steps = {}
    for norm in ("max_example", "frobenius"):
        tx = optlab.lipschitz_sgd(10, activation_norm=norm)
        updates, _ = tx.update(params, tx.init(params), params, activations=a)
        steps[norm] = float(jnp.abs(updates["w"][0]))
    assert steps["frobenius"] < steps["max_example"]
