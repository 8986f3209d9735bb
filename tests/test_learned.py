"""optlab.learned: the LSTM and MLP optimizers against numpy references, the meta-gradient
against finite differences, the ES estimator's expectation, and meta-training that helps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab import learned
from optlab.learned import lstm, meta, mlp

from .conftest import make_params


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_preprocess(g: np.ndarray, p: float = 10.0) -> np.ndarray:
    out = np.empty((*g.shape, 2))
    for idx, x in np.ndenumerate(g):
        out[idx] = ((np.log(abs(x)) / p, np.sign(x)) if abs(x) >= np.exp(-p)
                    else (-1.0, np.exp(p) * x))
    return out


def _np_cell(w, b, x, h, c):
    z = np.concatenate([x, h], -1) @ w + b
    i, f, u, o = np.split(z, 4, -1)
    c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(u)
    return _sigmoid(o) * np.tanh(c), c


def test_preprocess_matches_numpy(x64):
    g = np.array([0.0, 1e-6, -1e-6, 4.5e-5, -4.6e-5, 1e-3, -0.5, 3.0, -1e4, 1.0, -1.0])
    for p in (10.0, 5.0):
        np.testing.assert_allclose(np.asarray(learned.preprocess(jnp.asarray(g), p)),
                                   _np_preprocess(g, p), rtol=1e-12, atol=0)
    out = learned.preprocess(jnp.zeros(3, jnp.float32))
    assert out.dtype == jnp.float32 and np.all(np.asarray(out) == [[-1.0, 0.0]] * 3)
    grad = jax.grad(lambda x: learned.preprocess(x).sum())(jnp.zeros(2))
    assert np.all(np.isfinite(np.asarray(grad)))  # no NaN from log(0) in the unused branch


def test_lstm_cell_and_network_match_numpy(x64):
    phi = jax.tree.map(lambda a: a.astype(jnp.float64),
                       learned.init_lstm(jax.random.PRNGKey(1), hidden=5))
    rng = np.random.default_rng(0)
    g = rng.normal(size=(7,)) * np.logspace(-6, 1, 7)
    h = [rng.normal(size=(7, 5)) for _ in range(2)]
    c = [rng.normal(size=(7, 5)) for _ in range(2)]
    cell = phi["lstm"][0]
    got = lstm.lstm_cell(cell, jnp.asarray(_np_preprocess(g)), jnp.asarray(h[0]),
                         jnp.asarray(c[0]))
    want = _np_cell(np.asarray(cell["w"]), np.asarray(cell["b"]), _np_preprocess(g), h[0],
                    c[0])
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-12)
    # the transform: two layers, then 0.1 × the linear read-out
    x = _np_preprocess(g)
    for layer in range(2):
        w, b = (np.asarray(phi["lstm"][layer][k]) for k in ("w", "b"))
        x, _ = _np_cell(w, b, x, h[layer], c[layer])
    want = 0.1 * (x @ np.asarray(phi["out"]["w"]) + np.asarray(phi["out"]["b"]))[:, 0]
    tx = learned.lstm_optimizer(phi)
    state = learned.LSTMState(h=[jnp.asarray(a) for a in h], c=[jnp.asarray(a) for a in c])
    update, _ = tx.update(jnp.asarray(g), state)
    np.testing.assert_allclose(np.asarray(update), want, rtol=1e-12)


def test_lstm_state_is_per_coordinate():
    params = make_params()
    tx = learned.lstm_optimizer(learned.init_lstm(jax.random.PRNGKey(0), hidden=20))
    state = jax.jit(tx.init)(params)
    assert len(state.h) == len(state.c) == 2
    for tree in (*state.h, *state.c):
        for p, s in zip(jax.tree.leaves(params), jax.tree.leaves(tree), strict=True):
            assert s.shape == (*p.shape, 20) and s.dtype == p.dtype
    updates, new = jax.jit(tx.update)(params, state)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    assert jax.tree.map(jnp.shape, new) == jax.tree.map(jnp.shape, state)
    assert not np.allclose(np.asarray(new.h[1]["w"]), 0)


@pytest.mark.parametrize("name", ["lstm", "mlp"])
def test_transform_in_chain_and_jit(name):
    opt = learned.Learned.create(name, jax.random.PRNGKey(0))
    tx = optax.chain(optax.clip_by_global_norm(1.0), opt.optimizer(),
                     optax.scale(0.5))
    params = make_params()

    @jax.jit
    def step(params, state):
        grads = jax.tree.map(lambda p: 2 * p, params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    p1, s1 = step(params, state)
    p2, s2 = step(p1, s1)
    assert step._cache_size() == 1  # no recompilation on the second call
    assert jax.tree.map(jnp.shape, s2) == jax.tree.map(jnp.shape, state)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(p2))
    assert not np.allclose(np.asarray(p2["w"]), np.asarray(params["w"]))


def test_mlp_optimizer_features_and_params_required():
    tx = learned.mlp_optimizer(learned.init_mlp(jax.random.PRNGKey(0)))
    params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4), "none": jnp.zeros((0,))}
    state = tx.init(params)
    with pytest.raises(ValueError, match="needs params"):
        tx.update(params, state)
    updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    assert int(state.count) == 1 and len(state.m) == len(mlp.DECAYS)
    np.testing.assert_allclose(np.asarray(state.m[0]["w"]), 0.5)
    # steps are small: |d·exp(a·1e-3)·1e-3| for an untrained net
    assert float(jnp.max(jnp.abs(updates["w"]))) < 0.05
    x = mlp.features(jnp.arange(1.0, 7.0), [jnp.ones(6)] * 3, jnp.ones(6), jnp.ones(6))
    assert x.shape == (6, mlp.FEATURES)
    np.testing.assert_allclose(np.sqrt(np.mean(np.asarray(x) ** 2, 0)), 1.0, rtol=1e-5)


def _tiny(second_order: bool):
    family = learned.quadratic_family(dim=3, init_std=0.5)
    opt = learned.Learned.create("lstm", jax.random.PRNGKey(3), hidden=4)
    phi = jax.tree.map(lambda a: a.astype(jnp.float64), opt.meta_params)
    config = learned.MetaConfig(unroll=4, horizon=8, tasks=2, second_order=second_order)
    make = opt.factory()
    state = meta.init_meta_state(family, make, config, phi, jax.random.PRNGKey(5))
    state = jax.tree.map(lambda a: a.astype(jnp.float64) if a.dtype == jnp.float32 else a,
                         state)
    # a second truncation: start from the inner states after a first one
    _, inner = meta._batch_loss(family, make, config, phi, state.inner)
    return family, make, config, phi, inner


def test_meta_gradient_matches_finite_differences(x64):
    """Truncated BPTT gives the exact gradient of the truncation's meta-loss (with the
    optimizee's gradients differentiated through), checked by central differences in
    float64 along random directions and per coordinate of the read-out."""
    family, make, config, phi, inner = _tiny(second_order=True)

    @jax.jit
    def loss(mp):
        return meta._batch_loss(family, make, config, mp, inner)[0]

    _, grads, _ = meta.meta_gradient(family, make, config, phi, inner, jax.random.PRNGKey(0))
    leaves, treedef = jax.tree.flatten(phi)
    g_leaves = jax.tree.leaves(grads)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for _ in range(3):
        d = [jnp.asarray(rng.normal(size=x.shape)) for x in leaves]
        plus = treedef.unflatten([x + eps * v for x, v in zip(leaves, d, strict=True)])
        minus = treedef.unflatten([x - eps * v for x, v in zip(leaves, d, strict=True)])
        fd = (float(loss(plus)) - float(loss(minus))) / (2 * eps)
        exact = sum(float(jnp.vdot(g, v)) for g, v in zip(g_leaves, d, strict=True))
        assert exact == pytest.approx(fd, rel=1e-6, abs=1e-9)
    w = phi["out"]["w"]
    for i in range(w.shape[0]):
        e = jnp.zeros_like(w).at[i, 0].set(eps)
        fd = (float(loss({**phi, "out": {**phi["out"], "w": w + e}}))
              - float(loss({**phi, "out": {**phi["out"], "w": w - e}}))) / (2 * eps)
        assert float(grads["out"]["w"][i, 0]) == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_first_order_meta_gradient_drops_only_second_derivatives(x64):
    """The paper's first-order gradient (optimizee gradients stopped) differs from the exact
    one, but (small steps, nearly linear dynamics) points the same way here."""
    family, make, config, phi, inner = _tiny(second_order=False)
    _, first, _ = meta.meta_gradient(family, make, config, phi, inner, jax.random.PRNGKey(0))
    exact_config = learned.MetaConfig(**{**config.to_json(), "second_order": True})
    _, exact, _ = meta.meta_gradient(family, make, exact_config, phi, inner,
                                     jax.random.PRNGKey(0))
    a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(first)])
    b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(exact)])
    assert np.abs(a - b).max() > 1e-9 * np.abs(b).max()
    assert a @ b > 0.99 * np.linalg.norm(a) * np.linalg.norm(b)


def test_es_gradient_is_unbiased_on_a_quadratic(x64):
    """For f(φ) = ½ φᵀAφ + bᵀφ the Gaussian-smoothed f has gradient Aφ + b (smoothing adds a
    constant); the antithetic estimate's mean over many pairs is within 4 standard errors."""
    rng = np.random.default_rng(0)
    m = rng.normal(size=(4, 4))
    a, b = jnp.asarray(m @ m.T + np.eye(4)), jnp.asarray(rng.normal(size=4))
    phi = {"x": jnp.asarray(rng.normal(size=4))}

    def f(p):
        return 0.5 * p["x"] @ a @ p["x"] + b @ p["x"]

    pairs = 20000
    est = learned.es_gradient(f, phi, jax.random.PRNGKey(0), 0.3, pairs)["x"]
    want = a @ phi["x"] + b
    # per pair the estimate is ε εᵀ ∇f: its covariance is ‖∇f‖² I + ∇f ∇fᵀ
    se = np.sqrt((float(want @ want) + np.asarray(want) ** 2) / pairs)
    assert np.all(np.abs(np.asarray(est - want)) < 4 * se)


def test_es_gradient_estimates_the_smoothed_gradient(x64):
    """For f(φ) = Σ φ⁴, E_ε f(φ + σε) has gradient 4φ³ + 12σ²φ: the estimate matches that,
    not the raw gradient 4φ³."""
    phi = {"x": jnp.asarray([1.0, -0.5, 0.8])}
    sigma = 0.5
    est = np.asarray(learned.es_gradient(lambda p: jnp.sum(p["x"] ** 4), phi,
                                         jax.random.PRNGKey(1), sigma, 200000)["x"])
    x = np.asarray(phi["x"])
    smoothed, raw = 4 * x ** 3 + 12 * sigma ** 2 * x, 4 * x ** 3
    np.testing.assert_allclose(est, smoothed, atol=0.1)
    assert np.abs(est - smoothed).max() < 0.3 * np.abs(smoothed - raw).min()


def test_meta_training_beats_initialisation_on_held_out_quadratics():
    """A few hundred meta-steps of truncated BPTT on the quadratic family: on 64 held-out
    quadratics the learned optimizer's mean loss over 100 steps is several times lower than
    at its initialisation (measured: about 10 → 2)."""
    family = learned.quadratic_family()
    opt = learned.Learned.create("lstm", jax.random.PRNGKey(0))
    make = opt.factory()
    config = learned.MetaConfig(unroll=20, horizon=100, tasks=4, meta_lr=3e-3)
    result = learned.meta_train(family, make, opt.meta_params, config, 150, save_every=150)
    keys = jax.random.split(jax.random.PRNGKey(123), 64)  # tasks never seen in training
    before, _ = meta.evaluate_learned(family, make, opt.meta_params, keys, 100)
    after, _ = meta.evaluate_learned(family, make, result.meta_params, keys, 100)
    assert after.mean() < 0.5 * before.mean()
    assert np.median(after[:, -1]) < np.median(before[:, -1])
    assert result.meta_loss.shape == (150,) and np.all(np.isfinite(result.meta_loss))


def test_es_meta_training_runs_and_improves():
    family = learned.quadratic_family()
    opt = learned.Learned.create("lstm", jax.random.PRNGKey(0), hidden=8)
    config = learned.MetaConfig(unroll=10, horizon=50, tasks=2, estimator="es",
                                es_pairs=4, es_sigma=0.05, meta_lr=1e-2)
    result = learned.meta_train(family, opt.factory(), opt.meta_params, config, 60,
                                save_every=60)
    assert np.all(np.isfinite(result.meta_loss))
    assert result.meta_loss[-10:].mean() < result.meta_loss[:10].mean()


def test_meta_config_is_checked():
    for kwargs, match in [({"unroll": 0}, "unroll"), ({"horizon": 30, "unroll": 20},
                                                      "multiple"),
                          ({"estimator": "pes"}, "estimator"), ({"meta_lr": 0.0}, "meta_lr")]:
        with pytest.raises(ValueError, match=match):
            learned.MetaConfig(**kwargs)


def test_mnist1d_family_tasks_differ_and_train():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 40)).astype(np.float32), rng.integers(0, 10, 300)
    family = learned.mnist1d_family(x, y, hidden=(8,), subset=100, batch=16)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    losses, params = learned.evaluate(family, optax.adam(1e-2), keys, 30)
    assert losses.shape == (3, 31) and np.all(losses[:, -1] < losses[:, 0])
    assert not np.allclose(losses[0], losses[1])
    assert params["layers"][0]["w"].shape == (3, 40, 8)
    with pytest.raises(ValueError, match="activation"):
        learned.mnist1d_family(x, y, activation="gelu")


def test_save_and_load_roundtrip(tmp_path):
    opt = learned.Learned.create("mlp", jax.random.PRNGKey(2), hidden=16)
    opt.meta_step = 7
    learned.save(tmp_path / "m", opt)
    back = learned.load(tmp_path / "m")
    assert back.name == "mlp" and back.options == opt.options and back.meta_step == 7
    for a, b in zip(jax.tree.leaves(opt.meta_params), jax.tree.leaves(back.meta_params),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ValueError, match="no learned optimizer"):
        learned.load(tmp_path / "nothing")
    with pytest.raises(ValueError, match="unknown option"):
        learned.Learned.create("lstm", jax.random.PRNGKey(0), width=3)
