"""The search's evaluator: deduplication and rewards from one trained population."""

from __future__ import annotations

import math

import pytest

from optlab.search import parse
from optlab.search.evaluator import Evaluator, fingerprints
from optlab.search.population import stack
from optlab.tasks import load_dataset


@pytest.fixture(scope="module")
def evaluator():
    return Evaluator(load_dataset("digits"), epochs=2, learning_rates=(1e-2, 1e-1),
                     num_groups=2)


def test_rewards_dedup_and_divergence(evaluator):
    programs = [parse("m / (sqrt(v) + eps)"),        # Adam
                parse("(m / (sqrt(v) + eps)) * 1"),   # canonically Adam: not trained again
                parse("sign(g)"),                     # signSGD
                parse("sign(sign(g))"),               # canonically equal to sign(g)
                parse("g + g"), parse("g * 2"),       # functionally equal, canonically not
                parse("exp(1 / g)")]                  # exp(1e8) = inf where g = 0
    out = evaluator.evaluate(programs)
    assert [e.source for e in out] == ["trained", "hash", "trained", "hash", "trained",
                                       "fingerprint", "trained"]
    assert evaluator.trained == 4 and evaluator.evaluated == 7
    assert out[0].reward == out[1].reward and out[4].reward == out[5].reward
    assert out[0].reward > 0.8 and set(out[0].scores) == {"0.01", "0.1"}
    assert out[6].diverged and out[6].reward == -math.inf
    assert all(v is None for v in out[6].scores.values())
    assert out[6].to_json()["reward"] is None
    # A second batch: everything is a cache hit; rewards are the same.
    again = evaluator([programs[0], programs[4]])
    assert again == [out[0].reward, out[4].reward] and evaluator.trained == 4
    assert math.isclose(evaluator.hit_rate, 1 - 4 / 9)


def test_fingerprints_separate_different_functions():
    codes = stack([parse("g"), parse("-g"), parse("m"), parse("sign(m)"), parse("g + g"),
                   parse("2 * g")], 2)
    f = fingerprints(codes)
    assert len(set(f[:4])) == 4 and f[4] == f[5]


def test_bad_arguments(evaluator):
    data = evaluator.data
    with pytest.raises(ValueError, match="learning_rates must be finite and > 0"):
        Evaluator(data, learning_rates=(0.0,))
    with pytest.raises(ValueError, match="epochs"):
        Evaluator(data, epochs=0)
    with pytest.raises(ValueError, match="num_groups=1 is smaller"):
        Evaluator(data, num_groups=1).evaluate([parse("exp(sign(g) * sign(m)) * g")])


_SHARDED_SCRIPT = """
import json, sys, jax
from optlab.search import parse
from optlab.search.evaluator import Evaluator
from optlab.tasks import load_dataset
data = load_dataset("mnist1d")
data = data.__class__(data.name, data.x_train[:256], data.y_train[:256], data.x_val,
                      data.y_val, data.x_test, data.y_test, data.num_classes, data.description)
formulas = ["g", "m / (sqrt(v) + eps)", "exp(sign(g) * sign(m)) * g", "sign(m)",
            "(1 + sign(g) * sign(m)) * g"]
ev = Evaluator(data, learning_rates=(1e-2, 1e-1), epochs=1, num_groups=3)
rewards = ev([parse(f) for f in formulas])
json.dump({"devices": jax.device_count(), "rewards": rewards}, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_population_sharded_over_8_devices_scores_as_on_one(tmp_path):
    """The population axis spread over 8 simulated CPU devices (5 programs x 2 learning rates:
    10 children padded to 16) gives the single-device rewards bit for bit."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    base = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    base.update(PYTHONPATH=str(root), JAX_PLATFORMS="cpu")
    out = {}
    for n in (1, 8):
        env = dict(base, XLA_FLAGS=f"--xla_force_host_platform_device_count={n}")
        path = tmp_path / f"{n}.json"
        subprocess.run([sys.executable, "-c", _SHARDED_SCRIPT, str(path)], check=True,
                       env=env, timeout=300)
        out[n] = json.loads(path.read_text())
    assert out[8]["devices"] == 8 and out[1]["devices"] == 1
    assert out[8]["rewards"] == out[1]["rewards"]
    assert max(out[1]["rewards"]) > 0.15  # the children really trained
