"""Helpers of experiments/batch_size.py: the three schedules and their update counts."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from optlab import reproduce

reproduce.load("batch_size")
bs = sys.modules["optlab_experiments.batch_size"]


@pytest.mark.parametrize("schedule", bs.SCHEDULES)
def test_schedules_share_the_noise_scale(schedule):
    """In every phase lr/B (SGD's noise scale, up to N and momentum) equals the decaying
    learning rate's: the equivalence the paper's claim rests on."""
    ref = bs.phases("decay_lr", 50, 8)
    for p, q in zip(bs.phases(schedule, 50, 8), ref, strict=True):
        assert (p["start"], p["epochs"]) == (q["start"], q["epochs"])
        assert p["lr_factor"] / p["batch"] == pytest.approx(q["lr_factor"] / q["batch"])


def test_phases_follow_the_paper():
    assert [p["start"] for p in bs.phases("decay_lr", 200, 128)] == [0, 60, 120, 160]
    assert [p["batch"] for p in bs.phases("increase_batch", 200, 128)] == [128, 640, 3200,
                                                                           16000]
    assert [p["batch"] for p in bs.phases("hybrid", 200, 128)] == [128, 640, 640, 640]
    assert [p["lr_factor"] for p in bs.phases("hybrid", 200, 128)] == [1, 1, 0.2, 0.04]


def test_update_counts():
    """The paper's ratio (≈ 80,000 → 29,000 updates: CIFAR-10, N = 50,000, batch 128, 200
    epochs), here with N = 48,000 (a multiple of 128 · 5³), and ours."""
    decay = sum(bs.updates_per_epoch("decay_lr", 200, 128, 48_000))
    grow = sum(bs.updates_per_epoch("increase_batch", 200, 128, 48_000))
    assert (decay, grow) == (75_000, 27_720)
    assert grow / decay == pytest.approx(29 / 80, abs=0.01)
    assert sum(bs.updates_per_epoch("decay_lr", 50, 8, 3000)) == 18_750
    assert sum(bs.updates_per_epoch("increase_batch", 50, 8, 3000)) == 6_930
    assert sum(bs.updates_per_epoch("hybrid", 50, 8, 3000)) == 8_250
    with pytest.raises(ValueError, match="does not divide"):
        bs.updates_per_epoch("increase_batch", 50, 8, 3600)


def test_matches_is_a_paired_equivalence_decision():
    """Within ±1 pt by 2 paired standard errors: True; outside by 2 SE: False; else None."""
    ref = np.array([0.60, 0.65, 0.70])
    assert bs.matches(ref + np.array([0.002, 0.003, 0.001]), ref, 0.01) is True
    assert bs.matches(ref - np.array([0.05, 0.04, 0.05]), ref, 0.01) is False
    assert bs.matches(ref + np.array([0.03, -0.03, 0.01]), ref, 0.01) is None
    assert bs.matches(ref[:1], ref[:1], 0.01) is None  # one seed: no error to measure
