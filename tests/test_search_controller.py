"""The RNN controller (Bello et al. 2017) as a search strategy (issue 8, "Search
strategies"): it learns a toy reward, samples only valid programs, is deterministic, resumes
from a state_dict exactly, runs REINFORCE and PPO, and rejects bad arguments."""

from __future__ import annotations

import json
import math

import pytest

from optlab.search import Controller, Program, Strategy, run_search

TARGET = Program((("m", "sign_g", "sign", "id", "mul"), (0, "g", "id", "sign", "add")))


def score(p: Program) -> float:
    """Fraction of the 10 tokens equal to TARGET's (optimum 1 at TARGET)."""
    return sum(a == b and type(a) is type(b) for g, h in zip(p.groups, TARGET.groups,
                                                             strict=True)
               for a, b in zip(g, h, strict=True)) / 10


def rewards(programs: list[Program]) -> list[float]:
    return [score(p) for p in programs]


@pytest.mark.parametrize("algorithm", ["reinforce", "ppo"])
def test_learns_toy_reward(algorithm: str) -> None:
    c = Controller(2, seed=0, algorithm=algorithm, learning_rate=0.02)
    res = run_search(c, rewards, 320, 32)
    rs = [r for _, r in res.history]
    first, last = sum(rs[:32]) / 32, sum(rs[-32:]) / 32
    assert first < 0.15  # about chance
    assert last > first + 0.15, (first, last)  # seed 0: ~0.1 → ~0.33
    assert c.best_reward == max(rs)


def test_masked_choices_give_valid_programs() -> None:
    c = Controller(4, seed=3, operands=["g", "m"], unaries=["id", "neg"], binaries=["add"])
    for p in c.ask(64):  # Program validates references (only earlier groups)
        assert len(p) == 4
        for k, (o1, o2, u1, u2, b) in enumerate(p.groups):
            for o in (o1, o2):
                assert o in ("g", "m") or (isinstance(o, int) and 0 <= o < k)
            assert {u1, u2} <= {"id", "neg"} and b == "add"
    assert any(isinstance(o, int) for p in c.ask(64) for g in p.groups for o in g[:2])


def test_deterministic() -> None:
    a, b = Controller(2, seed=7), Controller(2, seed=7)
    assert a.ask(5) == b.ask(5)
    pa = a.ask(32)
    assert pa == b.ask(32) and pa != Controller(2, seed=8).ask(37)[5:]
    a.tell(pa, rewards(pa))
    b.tell(pa, rewards(pa))
    assert a.ask(8) == b.ask(8)


@pytest.mark.parametrize("algorithm", ["reinforce", "ppo"])
def test_resume_equals_uninterrupted(algorithm: str) -> None:
    full = Controller(2, seed=1, algorithm=algorithm)
    part = Controller(2, seed=1, algorithm=algorithm)
    for step in range(3):
        ps = full.ask(32)
        assert part.ask(32) == ps
        full.tell(ps, rewards(ps))
        if step < 2:
            part.tell(ps, rewards(ps))
        else:  # interrupted mid-batch: half told
            part.tell(ps[:16], rewards(ps[:16]))
            d = json.loads(json.dumps(part.state_dict(), allow_nan=False))
            part = Strategy.from_state_dict(d)
            assert isinstance(part, Controller) and part.algorithm == algorithm
            part.tell(ps[16:], rewards(ps[16:]))
    assert part.ask(32) == full.ask(32)
    assert part.best_reward == full.best_reward


def test_diverged_rewards_and_json() -> None:
    c = Controller(2, seed=2)
    ps = c.ask(32)
    c.tell(ps, [math.nan] * 16 + [-math.inf] * 8 + [0.5] * 8)
    d = c.state_dict()
    json.dumps(d, allow_nan=False)
    assert Controller.from_state_dict(d).ask(4) == c.ask(4)
    c.tell(c.ask(32), [math.nan] * 32)  # no finite reward: replaced by 0
    assert c.best_reward == 0.5 and 0 < c.probability(ps[0]) < 1


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"hidden": 0}, "hidden"), ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": -1.0}, "learning_rate"), ({"algorithm": "a2c"}, "algorithm"),
    ({"batch_size": 0}, "batch_size"), ({"clip": 0.0}, "clip"),
    ({"baseline_decay": 1.0}, "baseline_decay"), ({"ppo_epochs": 0}, "ppo_epochs"),
])
def test_bad_arguments(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Controller(2, **kwargs)


def test_registry() -> None:
    assert Strategy.registry["controller"] is Controller
    assert "hidden=32" in repr(Controller(2))
