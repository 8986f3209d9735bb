"""Helpers of experiments/warm_restarts.py: the schedules of each method, anytime counting,
the snapshot ensemble's averaging."""

from __future__ import annotations

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optlab
from optlab import reproduce


@pytest.fixture(scope="module")
def wr():
    reproduce.load("warm_restarts")
    return sys.modules["optlab_experiments.warm_restarts"]


def test_restart_schedule_ends_cycles_at_the_last_epoch(wr):
    spe = 4
    for t0, epochs in ((1, 63), (9, 63), (1, 15), (5, 15)):
        sched = optlab.schedules.sgdr(1.0, t0 * spe, t_mult=2)
        ends = np.cumsum([t0 * 2 ** i for i in range(8)])
        assert epochs in ends
        last = float(sched(epochs * spe - 1))
        assert last < 0.01  # annealed to ~0 at the end of the final cycle


def test_methods_build_and_match_plain_optimizers(wr):
    """Method 4 (AdamW, constant) is optlab.adamw with λ/α; method 0 is Nesterov SGD + L2."""
    p = {"w": jnp.asarray([1.0, -2.0, 0.5])}
    g = {"w": jnp.asarray([0.3, -0.1, 0.2])}
    lr = 10.0 ** wr.LOG_LR[1][2]
    tx = wr.schedule_methods(4, 2, epochs=10, steps_per_epoch=5, t0s=(1, 3),
                             decoupled_wd=1e-3)
    ref = optlab.adamw(lr, weight_decay=1e-3 / lr)
    u, _ = tx.update(g, tx.init(p), p)
    v, _ = ref.update(g, ref.init(p), p)
    np.testing.assert_allclose(u["w"], v["w"], rtol=1e-6)
    lr0 = 10.0 ** wr.LOG_LR[0][1]
    tx = wr.schedule_methods(0, 1, epochs=10, steps_per_epoch=5, t0s=(1, 3),
                             decoupled_wd=1e-3)
    u, _ = tx.update(g, tx.init(p), p)
    grad = g["w"] + wr.L2 * p["w"]
    np.testing.assert_allclose(u["w"], -lr0 * (grad + wr.MOMENTUM * grad), rtol=1e-6)


def test_step_decay_factor(wr):
    """Method 1: × 0.2 from 30 %, 0.04 from 60 %, 0.008 from 80 % of the epochs."""
    epochs, spe = 10, 5
    p = {"w": jnp.zeros(2)}
    g = {"w": jnp.ones(2)}
    sizes = []
    tx = wr.schedule_methods(1, 2, epochs=epochs, steps_per_epoch=spe, t0s=(1, 3),
                             decoupled_wd=0.0)
    update = jax.jit(tx.update)  # one compilation (eager lax.switch compiles every call)
    for step in (0, 14, 15, 30, 40):
        state = tx.init(p)
        # advance the step counter without moving: updates on a zero gradient
        for _ in range(step):
            _, state = update({"w": jnp.zeros(2)}, state, p)
        u, _ = update(g, state, p)
        sizes.append(float(-u["w"][0]))
    lr = 10.0 ** wr.LOG_LR[0][2]
    np.testing.assert_allclose(sizes, [x * lr * (1 + wr.MOMENTUM) for x in
                                       (1, 1, 0.2, 0.04, 0.008)], rtol=1e-5)


def test_epochs_to_reach(wr):
    curve = np.asarray([0.5, 0.4, 0.45, 0.3, 0.2])
    assert wr.epochs_to_reach(curve, 0.4) == 2
    assert wr.epochs_to_reach(curve, 0.25) == 5
    assert math.isinf(wr.epochs_to_reach(curve, 0.1))


def test_ensemble_errors_average_the_last_snapshots(wr):
    labels = np.asarray([0, 1])
    # 3 snapshots, 1 run, 2 examples, 2 classes
    snaps = np.asarray([[[[0.95, 0.05], [0.1, 0.9]]],  # first: right, right
                        [[[0.3, 0.7], [0.4, 0.6]]],     # second: wrong, right
                        [[[0.4, 0.6], [0.45, 0.55]]]])  # last: wrong, right
    err = wr.ensemble_errors(snaps, labels)
    assert err.shape == (3, 1)
    assert err[0, 0] == 0.5   # the last alone
    assert err[1, 0] == 0.5   # the last two: (0.35, 0.65) wrong, right
    assert err[2, 0] == 0.0   # all three: (0.55, 0.45) right, right


def test_ensemble_metrics_cross_entropy(wr):
    labels = np.asarray([0, 1])
    snaps = np.asarray([[[[0.5, 0.5], [0.2, 0.8]]], [[[0.9, 0.1], [0.4, 0.6]]]])
    err, loss = wr.ensemble_metrics(snaps, labels)
    np.testing.assert_allclose(loss[0, 0], -(np.log(0.9) + np.log(0.6)) / 2)
    np.testing.assert_allclose(loss[1, 0], -(np.log(0.7) + np.log(0.7)) / 2)
    assert err.tolist() == [[0.0], [0.0]]


def test_select_on_validation(wr):
    acc = np.asarray([[0.8, 0.9], [0.9, np.nan], [0.85, 0.85]])
    loss = np.asarray([[0.5, 0.4], [0.1, 0.1], [0.3, 0.3]])
    assert wr.select(acc, loss) == 2  # tie at 0.85 broken by the loss; NaN excluded


def test_configurations_end_cycles_at_the_last_epoch(wr):
    """Both restart settings end a cycle at the last epoch in every configuration; the
    accelerator configuration is the SGDR paper's network on CIFAR-10."""
    for cfg in (wr.config(), wr.config(accelerator=True)):
        for t0 in cfg.t0s:
            assert cfg.epochs in np.cumsum([t0 * 2 ** i for i in range(10)]), cfg
    quick = wr.config(quick=True)  # T0 = 3: a cut second cycle
    assert quick.epochs in np.cumsum([quick.t0s[0] * 2 ** i for i in range(10)])
    acc = wr.config(accelerator=True)
    assert acc.dataset == "cifar10" and acc.model == "wrn"
    assert dict(acc.model_options) == {"depth": 28, "width": 10}
    assert acc.epochs == 255 and acc.t0s == (1, 17) and acc.snapshot_group > 0
    assert len(acc.lr_index) == len(wr.config().lr_index)
    assert "WRN-28-10" in wr.EXPERIMENT.accelerator
