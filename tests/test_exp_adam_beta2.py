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
