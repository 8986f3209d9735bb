"""Helpers of experiments/gradient_noise.py: the seeded noisy SGD and the random-walk estimate."""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optlab
from optlab import reproduce

reproduce.load("gradient_noise")
gn = sys.modules["optlab_experiments.gradient_noise"]


def _params(init: str, seed: int):
    model = gn.DeepMLP(6, 3, rngs=nnx.Rngs(seed), depth=3, width=4, init=init)
    return nnx.split(model, nnx.Param, ...)[1]


def _updates(tx, params, steps=3):
    state = tx.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    out = []
    for _ in range(steps):
        u, state = tx.update(grads, state, params)
        out.append(u)
    return out


def test_zero_noise_is_plain_sgd():
    params = _params("simple", 0)
    noisy = _updates(gn.noisy_sgd(0.1, 0.0, clip=None), params)
    plain = _updates(optlab.sgd(0.1), params)
    for a, b in zip(noisy, plain, strict=True):
        assert jax.tree.all(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b))


def test_noise_key_differs_per_seed_even_from_zero_init():
    p0, p1 = _params("zero", 0), _params("zero", 1)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(p0["layers"]))
    u0 = _updates(gn.noisy_sgd(0.1, 0.01, clip=10.0), p0)[0]
    u1 = _updates(gn.noisy_sgd(0.1, 0.01, clip=10.0), p1)[0]
    u0b = _updates(gn.noisy_sgd(0.1, 0.01, clip=10.0), _params("zero", 0))[0]
    k = lambda u: np.asarray(u["layers"][0]["kernel"])  # noqa: E731
    assert not np.allclose(k(u0), k(u1))
    np.testing.assert_array_equal(k(u0), k(u0b))  # same seed, same noise


def test_noise_variance_and_clipping():
    """σ_0 = √η at the first step; clipping comes before the noise."""
    params = {"w": jnp.zeros((200_000,)), "noise_tag": jnp.float32(0.5)}
    tx = gn.noisy_sgd(1.0, 0.01, clip=None)
    u, _ = tx.update({"w": jnp.zeros((200_000,)), "noise_tag": jnp.float32(0)},
                     tx.init(params), params)
    assert abs(float(jnp.std(u["w"])) - 0.1) < 0.002
    clipped = gn.noisy_sgd(1.0, 0.0, clip=1.0)
    g = {"w": jnp.full((4,), 10.0), "noise_tag": jnp.float32(0)}
    u, _ = clipped.update(g, clipped.init(params | {"w": jnp.zeros(4)}), params)
    assert abs(float(optax.tree.norm(u)) - 1.0) < 1e-5


def test_steps_to_unit_gain():
    # Σ_{t<T} (1+t)^−γ ≥ 2/(width·lr²·η), checked against the exact sums
    for lr in (0.1, 0.3):
        T = gn.steps_to_unit_gain(lr, horizon=10**6)
        target = 2.0 / 50 / (lr**2 * 0.01)
        s = np.cumsum((1.0 + np.arange(T)) ** -0.55)
        assert s[-1] >= target > s[-2]
    assert gn.steps_to_unit_gain(0.01, horizon=10**5) is None


def test_budgets_full_and_accelerator():
    """Full mode keeps its CPU budgets; --accelerator runs zero init for twice the steps the
    noise needs to reach unit gain at lr 0.1 (about 2·10⁵), the rest unchanged; quick runs
    zero init only."""
    per_epoch = 3600 // gn.BATCH
    assert [gn.epochs(k, per_epoch) for k in gn.SCENARIOS] == [200, 50, 50]
    assert [gn.epochs(k, per_epoch, quick=True) for k in gn.SCENARIOS] == [0, 0, 2]
    zero = gn.epochs("zero", per_epoch, accelerator=True)
    need = gn.steps_to_unit_gain(0.1)
    assert 100_000 < need < 110_000
    assert zero * per_epoch >= 2 * need > (zero - 1) * per_epoch
    assert [gn.epochs(k, per_epoch, accelerator=True) for k in ("simple", "he")] == [200, 50]
    assert gn.EXPERIMENT.accelerator and f"{2 * need:,}" in gn.EXPERIMENT.accelerator


def test_zero_init_with_noise_is_undecided_when_too_short():
    def scenario(steps, best_noise):
        stats = lambda best: {"best_over_runs": best, "average_over_runs": best}  # noqa: E731
        return {"zero": {"steps": steps, "none": stats(0.1), "noise": stats(best_noise)}}

    checks = gn.decide_checks(scenario(1800, 0.1))
    assert checks == {"zero_init_fails_without_noise": True,
                      "zero_init_trains_with_noise": None}
    assert gn.decide_checks(scenario(250_000, 0.9))["zero_init_trains_with_noise"] is True
    assert gn.decide_checks(scenario(250_000, 0.1))["zero_init_trains_with_noise"] is False


def test_selection_policy():
    val = [[0.877, 0.887, 0.785], [0.095, 0.102, 0.097]]
    loss = [[0.5] * 3, [2.3] * 3]
    assert gn.select(val, loss) == 0
    assert gn.select(gn.masked(val, [[0, 0, 1], [0, 0, 0]]), loss) == 1  # diverged: excluded
    assert gn.select([[0.1] * 3, [0.1] * 3], [[2.3] * 3, [2.2] * 3]) == 1  # tie: lower loss
