"""The stability measure of experiments/adam_beta2.py."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from optlab import reproduce


@pytest.fixture(scope="module")
def ab():
    reproduce.load("adam_beta2")
    return sys.modules["optlab_experiments.adam_beta2"]


def test_spikes(ab):
    assert ab.spikes([2.3, 1.5, 1.0, 0.8, 0.6]) == 0
    assert ab.spikes([2.3, 1.0, 1.6, 0.9, 2.0]) == 2  # above 1.5 × the best earlier epoch
    assert ab.spikes([2.3, 1.0, 1.4, 0.9]) == 0  # +40 %: not a spike
    # tiny losses: +100 % but below the absolute threshold of 0.05
    assert ab.spikes([0.5, 0.01, 0.02, 0.005]) == 0
    assert ab.spikes([2.3, 1.0, np.nan, np.nan]) == 0  # diverged: counted apart
    assert ab.spikes([np.nan, 2.0, 3.5]) == 1


def test_same_grid_for_every_beta2(ab):
    assert ab.DEFAULT in ab.B2S and len(ab.B2S) == 3
    assert len(ab.LRS) == 6 and ab.LRS[0] == pytest.approx(10 ** -3.5)
    assert ab.LRS[-1] == pytest.approx(0.1)


def test_significance(ab):
    diff, z = ab.significant([0.5, 0.52, 0.54], [0.5, 0.52, 0.54])
    assert diff == 0.0 and z == 0.0
    assert ab.significant([0.6, 0.62, 0.64], [0.5, 0.52, 0.54])[1] > 2


def test_select_on_validation(ab):
    acc = np.asarray([[0.8, 0.9], [0.9, np.nan], [0.85, 0.85]])
    loss = np.asarray([[0.5, 0.4], [0.1, 0.1], [0.3, 0.3]])
    assert ab.select(acc, loss) == 2  # tie at 0.85 broken by the loss; NaN excluded


B2S = (0.9, 0.99, 0.999)


def _measured(test, unstable_seeds):
    """One task: β₂ → final test accuracies, and which seeds had an unstable run."""
    by_b2 = {}
    for b2 in B2S:
        spikes = np.zeros((2, 3), int)
        spikes[0, unstable_seeds[b2]] = 1
        by_b2[str(b2)] = {"test_accuracy": test[b2], "grid_diverged": np.zeros((2, 3), int),
                          "grid_spikes": spikes}
    return {"t": {"by_b2": by_b2}}


def test_checks(ab):
    """as_good: within 1 point (2 SE); better: above (2 SE); stable: fewer unstable runs per
    seed."""
    test = {0.9: [0.800, 0.802, 0.798], 0.99: [0.70, 0.75, 0.80], 0.999: [0.799, 0.801, 0.8]}
    unstable = {0.9: [], 0.99: [0, 1, 2], 0.999: [0, 1, 2]}
    checks = ab.checks_of(_measured(test, unstable))
    assert checks["t_0.9_as_good"] is True and checks["t_0.9_better"] is None
    assert checks["t_0.99_as_good"] is None
    assert checks["stable_0.9"] is True and checks["stable_0.99"] is None


def test_configurations(ab):
    tasks, lrs = ab.config(quick=True)
    assert len(tasks) == 1 and len(lrs) == 2
    tasks, lrs = ab.config()
    assert tasks == ab.TASKS and lrs == ab.LRS
    tasks, _ = ab.config(accelerator=True)
    assert tasks["mnist5k_convnet"] == ("mnist5k", "convnet", 20) and set(ab.TASKS) < set(tasks)
    assert "MNIST-5k" in ab.EXPERIMENT.accelerator
