"""K-FAC (``optlab.kfac``, ``optlab.fisher``): statistics against brute force, the Kronecker
block against the exact Fisher, invariants of the damped step, training."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import optlab
from optlab import cli, fisher, registry
from optlab.fisher import LayerStatistics, Statistics

DOCS = Path(__file__).resolve().parents[1] / "docs" / "kfac.md"


class TinyMLP(nnx.Module):
    """A user's model: Linear → tanh → Linear (no optlab conventions)."""

    def __init__(self, d_in=3, hidden=4, classes=3, *, rngs):
        self.l1 = nnx.Linear(d_in, hidden, rngs=rngs)
        self.l2 = nnx.Linear(hidden, classes, rngs=rngs)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.l1(x)))


def _forward(p, x, e1=0.0, e2=0.0):
    """TinyMLP by hand with additive output perturbations e1, e2 (for δ by autodiff)."""
    s1 = x @ p["l1"]["kernel"] + p["l1"]["bias"] + e1
    return jnp.tanh(s1), jnp.tanh(s1) @ p["l2"]["kernel"] + p["l2"]["bias"] + e2


def _stats(model, *args, **kw):
    """:func:`optlab.fisher.statistics` under ``nnx.jit`` (eager op-by-op runs are slow)."""
    return nnx.jit(fisher.statistics, static_argnames=("fisher",))(model, *args, **kw)


def _params(model):
    return nnx.state(model, nnx.Param).to_pure_dict()


def _first_factors(stats, params, **kw):
    """A and G after one update: the first step takes the batch estimate (ρ₁ = 0)."""
    tx = fisher.kfac_factors(**kw)
    _, state = jax.jit(tx.update)(params, tx.init(params), params, kfac_stats=stats)
    return state.inner.factors if hasattr(state, "inner") else state.factors


def _ones(a):
    return np.concatenate([a, np.ones((*a.shape[:-1], 1))], -1)


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_factors_match_brute_force_on_a_tiny_mlp(kind):
    model = TinyMLP(rngs=nnx.Rngs(0))
    p = _params(model)
    x = jax.random.normal(jax.random.key(1), (6, 3))
    y = jnp.array([0, 1, 2, 2, 1, 0])
    key = jax.random.key(7)
    stats = _stats(model, x, y, key=key, fisher=kind)

    h, logits = _forward(p, x)
    labels = y if kind == "empirical" else jax.random.categorical(key, logits, axis=-1)

    def loss_i(xi, yi, e1, e2):
        return optax.softmax_cross_entropy_with_integer_labels(_forward(p, xi, e1, e2)[1], yi)

    d1, d2 = jax.vmap(jax.grad(loss_i, argnums=(2, 3)))(x, labels, jnp.zeros((6, 4)),
                                                         jnp.zeros((6, 3)))
    a1, a2 = _ones(np.asarray(x)), _ones(np.asarray(h))
    want = {"l1": (a1.T @ a1 / 6, np.asarray(d1).T @ d1 / 6),
            "l2": (a2.T @ a2 / 6, np.asarray(d2).T @ d2 / 6)}
    got = _first_factors(stats, p, fisher=kind)
    for name in want:
        np.testing.assert_allclose(got[name][0], want[name][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[name][1], want[name][1], rtol=1e-5, atol=1e-7)
    # the diagonal estimate of any parameter: (Σ_i ∇ℓ_i)² / B
    grad_sum = jax.grad(lambda q: jax.vmap(
        lambda xi, yi: optax.softmax_cross_entropy_with_integer_labels(
            _forward(q, xi)[1], yi))(x, labels).sum())(p)
    np.testing.assert_allclose(stats.diagonal["l2.bias"], grad_sum["l2"]["bias"] ** 2 / 6,
                               rtol=1e-5, atol=1e-8)


def _exact_fisher_block(p, x, name):
    """Σ_c p_c vec(∇W̄_c) vec(∇W̄_c)ᵀ for one example, W̄ = [W; b] flattened row-major."""
    probs = jax.nn.softmax(_forward(p, x)[1])[0]

    def vec_grad(c):
        g = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(
            _forward(q, x)[1], jnp.array([c]))[0])(p)[name]
        return jnp.concatenate([g["kernel"], g["bias"][None]]).reshape(-1)

    vs = jnp.stack([vec_grad(c) for c in range(probs.shape[0])])
    return np.asarray((vs.T * probs) @ vs)


def test_exact_fisher_block_is_the_kronecker_product_and_the_step_its_damped_solve():
    model = TinyMLP(rngs=nnx.Rngs(3))
    p = _params(model)
    x = jax.random.normal(jax.random.key(2), (1, 3))
    stats = _stats(model, x, fisher="exact")
    factors = _first_factors(stats, p, fisher="exact")
    damping = 0.05
    grads = jax.tree.map(lambda v: jax.random.normal(jax.random.key(v.size), v.shape), p)
    tx = fisher.scale_by_kfac(damping, fisher="exact")
    u, _ = jax.jit(tx.update)(grads, tx.init(p), p, kfac_stats=stats)
    for name in ("l1", "l2"):
        a, g = (np.asarray(f, np.float64) for f in factors[name])
        np.testing.assert_allclose(np.kron(a, g), _exact_fisher_block(p, x, name),
                                   rtol=1e-4, atol=1e-7)
        pi = np.sqrt((np.trace(a) / len(a)) / (np.trace(g) / len(g)))
        damped = np.kron(a + pi * np.sqrt(damping) * np.eye(len(a)),
                         g + np.sqrt(damping) / pi * np.eye(len(g)))
        w = np.concatenate([grads[name]["kernel"], grads[name]["bias"][None]]).reshape(-1)
        want = np.linalg.solve(damped, w).reshape(len(a), len(g))
        got = np.concatenate([u[name]["kernel"], u[name]["bias"][None]])
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def _fake_stats(a_scale, g_scale, d=3, diag=None):
    """Statistics with Â = a_scale·I and Ĝ = g_scale·I for a layer with d_a = d_g = d."""
    eye = np.eye(d)
    a = jnp.asarray(np.sqrt(a_scale * d) * eye)[:, None, :]  # (B=d, T=1, d)
    g = jnp.asarray(np.sqrt(g_scale * d) * eye)[None, :, None, :]  # (S=1, B=d, T=1, d)
    return Statistics({"dense": LayerStatistics(a, g)}, diag or {})


def test_identity_factors_scale_the_gradient_by_one_over_one_plus_root_damping_squared():
    """A = I, G = I: (1 + √λ)⁻² g; A = cI, G = I/c gives the same (π cancels the scale);
    π = 1 instead gives 1/((c + √λ)(1/c + √λ))."""
    params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}}
    grads = {"dense": {"kernel": jnp.arange(6.0).reshape(2, 3) - 2, "bias": jnp.ones(3)}}
    lam, c = 0.3, 4.0
    cases = [((1, 1), True, 1 / (1 + np.sqrt(lam)) ** 2),
             ((c, 1 / c), True, 1 / (1 + np.sqrt(lam)) ** 2),
             ((c, 1 / c), False, 1 / ((c + np.sqrt(lam)) * (1 / c + np.sqrt(lam))))]
    for (sa, sg), trace_norm, factor in cases:
        tx = optlab.kfac(1.0, lam, trace_norm=trace_norm, max_norm=None)
        u, _ = tx.update(grads, tx.init(params), params, kfac_stats=_fake_stats(sa, sg))
        jax.tree.map(lambda ui, gi, f=factor: np.testing.assert_allclose(ui, -f * gi, rtol=1e-5),
                     u, grads)


class Normed(nnx.Module):
    """Linear → LayerNorm (a scale and shift, the diagonal fallback) → Linear."""

    def __init__(self, *, rngs):
        self.l1 = nnx.Linear(3, 5, rngs=rngs)
        self.norm = nnx.LayerNorm(5, rngs=rngs)
        self.l2 = nnx.Linear(5, 4, rngs=rngs)

    def __call__(self, x):
        return self.l2(jax.nn.relu(self.norm(self.l1(x))))


def test_large_damping_with_the_learning_rate_scaled_by_it_is_sgd():
    model = Normed(rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    x, y = jax.random.normal(jax.random.key(0), (8, 3)), jnp.arange(8) % 4
    grads = nnx.grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y)
                     .mean())(model)
    stats = _stats(model, x, y, key=jax.random.key(1))
    lam, lr = 1e10, 0.1
    tx = optlab.kfac(lr * lam, lam)
    u, _ = jax.jit(tx.update)(grads, tx.init(params), params, kfac_stats=stats)
    assert sorted(stats.layers) == ["l1", "l2"]
    jax.tree.map(lambda ui, gi: np.testing.assert_allclose(
        ui, -lr * gi, rtol=1e-3, atol=1e-5 * lr * float(jnp.abs(gi).max())), u, grads)


def _node(state, cls):
    return next(n for n in jax.tree.leaves(state, is_leaf=lambda n: isinstance(n, cls))
                if isinstance(n, cls))


def test_inverses_are_refreshed_every_k_steps_only():
    params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}}
    tx = optlab.kfac(0.1, 0.01, inverse_every=3)
    state = tx.init(params)
    step = jax.jit(tx.update)
    inverses, factors = [], []
    for t in range(7):
        stats = _fake_stats(1.0 + t, 1.0 / (1 + t))
        _, state = step(params, state, params, kfac_stats=stats)
        inverses.append(np.asarray(_node(state, fisher.KFACInversesState).a_inv["dense"]))
        factors.append(np.asarray(_node(state, fisher.KFACFactorsState).factors["dense"][0]))
    changed = [not np.array_equal(inverses[t], inverses[t - 1]) for t in range(1, 7)]
    assert changed == [False, False, True, False, False, True]  # refreshed at t = 1, 4, 7
    assert all(not np.array_equal(factors[t], factors[t - 1]) for t in range(1, 7))


CONVS = [
    dict(kernel_size=(3, 2), strides=(2, 1), padding=((1, 1), (0, 1))),
    dict(kernel_size=(3, 3), padding="SAME", kernel_dilation=(1, 2), use_bias=False),
    dict(kernel_size=(3,), padding="CIRCULAR", kernel_dilation=2),
]


class TinyConv(nnx.Module):
    def __init__(self, spatial, conv, *, rngs):
        self.conv = nnx.Conv(2, 3, **conv, rngs=rngs)
        out = self.conv(jnp.zeros((1, *spatial, 2))).shape
        self.head = nnx.Linear(int(np.prod(out[1:])), 3, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.conv(x))
        return self.head(h.reshape(h.shape[0], -1))


def _brute_patches(x, ks, strides, pads):
    """Patches by loops: (B, T, k₁·k₂·C) in the kernel's (k₁, k₂, C) order."""
    x = np.pad(np.asarray(x), [(0, 0), *pads, (0, 0)])
    b, h, w, _ = x.shape
    rows = []
    for i in range(0, h - ks[0] + 1, strides[0]):
        for j in range(0, w - ks[1] + 1, strides[1]):
            rows.append(x[:, i:i + ks[0], j:j + ks[1], :].reshape(b, -1))
    return np.stack(rows, 1)


@pytest.mark.parametrize("conv", CONVS, ids=["strided", "dilated_same", "circular_1d"])
def test_conv_statistics_are_kfc_patches(conv):
    spatial = (6,) if len(conv["kernel_size"]) == 1 else (5, 4)
    model = TinyConv(spatial, conv, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, *spatial, 2))
    y = jnp.array([1, 2])
    stats = _stats(model, x, y, fisher="empirical")
    a, g = stats.layers["conv"]
    out = model.conv(x)
    t = int(np.prod(out.shape[1:-1]))
    bias = conv.get("use_bias", True)
    assert a.shape == (2, t, int(np.prod(conv["kernel_size"])) * 2 + bias)
    kernel = model.conv.kernel[...].reshape(-1, 3)
    w = jnp.concatenate([kernel, model.conv.bias[...][None]]) if bias else kernel
    np.testing.assert_allclose(a @ w, out.reshape(2, t, 3), rtol=1e-5, atol=1e-5)
    if conv["padding"] != "SAME" and len(spatial) == 2:
        want = _brute_patches(x, conv["kernel_size"], conv["strides"], conv["padding"])
        np.testing.assert_allclose(a, _ones(want), rtol=1e-6)
    # δ: gradient of each example's loss w.r.t. the conv output, by autodiff of a perturbation
    def loss(e):
        h = jax.nn.relu(out + e)
        logits = model.head(h.reshape(2, -1))
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()

    delta = jax.grad(loss)(jnp.zeros_like(out)).reshape(2, t, 3)
    np.testing.assert_allclose(g[0], delta, rtol=1e-5, atol=1e-7)
    # KFC's normalisation: Ω sums the locations, Γ averages them
    factors = _first_factors(stats, nnx.state(model, nnx.Param))["conv"]
    want = np.einsum("bti,btj->ij", a, a) / 2
    np.testing.assert_allclose(factors[0], want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    np.testing.assert_allclose(factors[1], np.einsum("bti,btj->ij", delta, delta) / (2 * t),
                               rtol=1e-5, atol=1e-9)


def test_statistics_leave_the_model_alone_and_pool_a_shared_layer():
    """BatchNorm statistics of the caller's model are unchanged; a layer called twice gets
    both calls as locations; the taps are gone afterwards."""
    from optlab.tasks import make_model

    model = make_model("convnet", (8, 8, 1), 3, rngs=0, channels=(2, 2))
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    stats = _stats(model, x, key=jax.random.key(0))
    jax.tree.map(np.testing.assert_array_equal, before, nnx.state(model, nnx.BatchStat))
    assert type(model.convs[0]) is nnx.Conv and sorted(stats.layers) == fisher.layer_names(model)

    class Shared(nnx.Module):
        def __init__(self, *, rngs):
            self.l = nnx.Linear(3, 3, rngs=rngs)

        def __call__(self, x):
            return self.l(jnp.tanh(self.l(x)))

    s = _stats(Shared(rngs=nnx.Rngs(0)), jnp.ones((5, 3)), key=jax.random.key(1))
    assert s.layers["l"].a.shape == (5, 2, 4) and s.layers["l"].g.shape == (1, 5, 2, 3)


def test_missing_statistics_and_unmatched_layers_are_reported():
    params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)},
              "custom": {"kernel": jnp.ones((3, 3))}}
    tx = optlab.kfac(0.1)
    with pytest.raises(ValueError, match="kfac_stats="):
        tx.update(params, tx.init(params), params)
    with pytest.raises(ValueError, match=r"no statistics for layer 'custom'.*layer_names"):
        tx.update(params, tx.init(params), params, kfac_stats=_fake_stats(1, 1))
    tx = optlab.kfac(0.1, layers=["dense"])  # the custom kernel takes the diagonal instead
    stats = _fake_stats(1, 1, diag={"custom.kernel": jnp.ones((3, 3))})
    u, _ = tx.update(params, tx.init(params), params, kfac_stats=stats)
    assert u["custom"]["kernel"].shape == (3, 3)


@pytest.fixture(scope="module")
def mnist1d():
    from optlab.tasks import load_dataset

    return load_dataset("mnist1d")


def test_kfac_trains_the_mnist1d_mlp(mnist1d):
    """Two epochs: K-FAC above 50 % (Adam at its best of 1e-3, 3e-3, 1e-2 reaches 43 %)."""
    from optlab.train import train

    result = train(mnist1d, "mlp", "kfac", hyperparams={"learning_rate": 0.1}, epochs=2,
                   batch_size=128, progress=False)
    assert fisher.requested_fisher(result.state["opt_state"]) == "true"
    assert result.history["test_accuracy"][0, -1] > 0.5


def test_cli_train_kfac_and_resume(tmp_path, capsys):
    out = tmp_path / "kfac"
    argv = ["train", "--task", "digits", "--epochs", "2", "--seeds", "1", "--batch-size", "64",
            "--no-progress", "--optimizer", "kfac", "--lr", "0.1", "--opt-arg",
            "fisher='empirical'", "--out", str(out)]
    assert cli.main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["runs"][0]["test_accuracy"] > 0.8  # chance is 0.1
    assert cli.main(argv) == 0  # resumes from the checkpoint (the factors' static field)
    assert json.loads((out / "results.json").read_text())["runs"] == record["runs"]
    assert cli.main(["list", "kfac"]) == 0
    assert "K-FAC" in capsys.readouterr().out and "kfac" in registry.OPTIMIZERS


def test_docs_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(DOCS), "exec"), namespace)
    assert namespace["accuracy"] > 0.8


def test_layer_names_of_optlab_models():
    from optlab.tasks import make_model

    shapes = {"mlp": (40,), "cnn1d": (40,), "convnet": (8, 8, 1)}
    names = {m: fisher.layer_names(make_model(m, s, 10, rngs=0)) for m, s in shapes.items()}
    assert names == {"mlp": ["head", "layers.0", "layers.1"],
                     "cnn1d": ["convs.0", "convs.1", "convs.2", "head"],
                     "convnet": ["convs.0", "convs.1", "head"]}


def test_injected_hyperparameters_and_no_recompilation():
    """optax.inject_hyperparams (traced λ, η, k, ...) works, and the state keeps its types:
    one compilation for several steps."""
    params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}, "scale": jnp.ones(3)}
    stats = _fake_stats(1.0, 1.0, diag={"scale": jnp.ones(3)})
    tx = optax.inject_hyperparams(optlab.kfac, static_args=("fisher",))(
        learning_rate=0.1, damping=1e-3, momentum=0.9, inverse_every=2, max_norm=None)
    state, step = tx.init(params), jax.jit(tx.update)
    for _ in range(3):
        u, state = step(params, state, params, kfac_stats=stats)
    assert step._cache_size() == 1
    np.testing.assert_allclose(u["scale"], -0.1 * (1 + 0.9 + 0.81) / (1 + 1e-3), rtol=1e-5)


def test_max_norm_caps_the_step_in_the_fisher_norm():
    """The step's squared norm in the approximate Fisher, uᵀF̂u = ⟨u, g⟩²/gᵀF̂⁻¹g, is capped
    at c²; below the cap the step is unchanged."""
    params = {"dense": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}}
    stats = _fake_stats(1.0, 1.0)
    for scale, c in ((10.0, 0.5), (0.01, 0.5)):
        grads = jax.tree.map(lambda p, s=scale: s * p, params)
        tx = optlab.fisher.scale_by_kfac(1e-4, max_norm=c)
        u, _ = tx.update(grads, tx.init(params), params, kfac_stats=stats)
        inner = float(sum(jnp.vdot(a, b) for a, b in zip(jax.tree.leaves(u),
                                                         jax.tree.leaves(grads), strict=True)))
        free = scale**2 * 9 / (1 + 1e-2) ** 2
        np.testing.assert_allclose(inner**2 / free, min(free, c**2), rtol=1e-4)
