"""The measurements of experiments/trajectories.py (Ruder's pictures)."""

from __future__ import annotations

import math
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from optlab import reproduce


@pytest.fixture(scope="module")
def tr():
    reproduce.load("trajectories")
    return sys.modules["optlab_experiments.trajectories"]


def test_steps_and_escape(tr):
    assert tr.steps_to_target(np.array([5.0, 1e-2, 5e-4, 1e-6])) == 2
    assert tr.steps_to_target(np.array([5.0, np.nan, 1e-6])) == 2
    assert tr.steps_to_target(np.array([5.0, 1.0])) is None
    xs = np.array([[1.0, 1e-3], [0.5, 0.1], [0.2, -1.5], [0.0, 3.0]])
    assert tr.escape_step(xs) == 2
    assert tr.escape_step(np.array([[1.0, 0.1], [np.nan, np.nan]])) == 1  # blown up = out
    assert tr.escape_step(xs[:2]) is None
    # the threshold grows with the step size: one step of ±lr is not an escape
    assert tr.escape_threshold(0.01) == 1.0 and tr.escape_threshold(1.78) == pytest.approx(17.8)
    assert tr.escape_step(np.array([[1.0, 1e-3], [0.0, 1.78]]), tr.escape_threshold(1.78)) is None


def test_overshoot_and_path_ratio(tr):
    straight = np.stack([np.linspace(0, 3, 7), np.linspace(0, 0.5, 7)], -1)
    assert tr.overshoot(straight, (3.0, 0.5)) == 0.0
    assert tr.path_ratio(straight, (3.0, 0.5)) == pytest.approx(1.0)
    # past the minimum by 1 and back: travelled 1 away from it, start distance 2
    past = np.array([[1.0, 0.0], [3.0, 0.0], [4.0, 0.0], [3.0, 0.0]])
    assert tr.overshoot(past, (3.0, 0.0)) == pytest.approx(0.5)
    assert tr.path_ratio(past, (3.0, 0.0)) == pytest.approx(2.0)
    assert tr.overshoot(past, (3.0, 0.0), until=1) == 0.0
    assert math.isinf(tr.overshoot(np.array([[1.0, 0.0], [np.inf, 0.0]]), (0.0, 0.0)))


def test_tuning_rule(tr):
    # below the floor counts as equal: then the fewest steps to the target wins
    assert tr.tune_index(np.array([1e-3, 1e-12, 1e-9]), [None, 300, 100]) == 2
    assert tr.tune_index(np.array([np.nan, 1e-2, 1e-4]), [None, None, 50]) == 2
    assert tr.tune_index(np.array([np.inf, np.nan]), [None, None]) == 0


def test_sgd_escape_matches_the_closed_form(tr):
    """On u² − v², SGD multiplies v by (1 + 2η) each step: from v₀ = 10⁻³ it passes 1 at the
    first t with (1 + 2η)^t > 1000."""
    lr = 0.1
    xs = np.asarray(tr.paths("SGD", 60, jnp.asarray([lr]), jnp.asarray([[1.0, 1e-3]]),
                             jnp.asarray([1])))[0, 0]
    assert tr.escape_step(xs) == math.ceil(math.log(1000) / math.log(1 + 2 * lr))
    np.testing.assert_allclose(xs[:5, 0], (1 - 2 * lr) ** np.arange(5), rtol=1e-6)


def test_beale_loss_matches_the_problem(tr):
    from optlab.tasks import beale

    pts = np.array([[1.0, 1.5], [3.0, 0.5], [-4.5, 4.5]])
    np.testing.assert_allclose(tr.beale_loss(pts),
                               [float(beale().loss(jnp.asarray(p))) for p in pts], rtol=1e-5)
    assert tr.beale_loss(np.array([3.0, 0.5])) == 0.0


def test_claim_checks(tr):
    """Each part from the tuned runs' numbers; None (never reached) counts as slowest."""
    def opt(reach, shoot, esc):
        return {"beale_steps_to_target": reach, "beale_overshoot": shoot,
                "saddle_escape_step": esc}

    per_opt = {"SGD": opt(200, 0.5, None), "Momentum": opt(80, 0.9, 150),
               "NAG": opt(70, 0.6, 120), **{n: opt(50, 0.2, 20) for n in tr.ADAPTIVE}}
    assert all(tr.claim_checks(per_opt).values())
    per_opt["Adam"] = opt(None, 0.2, 130)
    checks = tr.claim_checks(per_opt)
    assert not checks["beale_adaptive_fast"] and not checks["saddle_adaptive_escape"]
    assert tr.claim_checks(per_opt, ("Adagrad", "Adadelta", "RMSprop"))["beale_adaptive_fast"]
