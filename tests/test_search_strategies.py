"""Search strategies (issue 8, "Search strategies"): ask/tell, toy rewards with a known
optimum, determinism, resume from a state_dict or a replayed log, diverged rewards, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from optlab.search import (
    Program,
    RandomSearch,
    RegularizedEvolution,
    Strategy,
    equivalent,
    formula,
    mutate,
    parse,
    random_program,
    run_search,
)
from optlab.search.strategies import MUTATIONS, fit_groups

TARGET = random_program(12345, 2)


def tokens(p: Program) -> list:
    return [t for g in p.groups for t in g]


def neg_hamming(programs: list[Program]) -> list[float]:
    """−(tokens differing from a hidden 2-group target): optimum 0."""
    return [-float(sum(a != b for a, b in zip(tokens(p), tokens(TARGET), strict=True)))
            for p in programs]


def mul_sign(programs: list[Program]) -> list[float]:
    """Groups whose binary is mul, + 1 if the formula reads sign(m): optimum num_groups + 1."""
    return [sum(g[4] == "mul" for g in p.groups) + float("sign(m)" in formula(p))
            for p in programs]


def strategies(seed: int = 0) -> list[Strategy]:
    return [RandomSearch(2, seed), RegularizedEvolution(2, seed, population=16, tournament=4),
            RegularizedEvolution(2, seed, population=8, warm_start="m / (sqrt(v) + eps)")]


# ------------------------------------------------------------------------------------------
# Improvement on toy rewards
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_evolution_reaches_hidden_target(seed: int) -> None:
    evo = run_search(RegularizedEvolution(2, seed, population=32, tournament=16),
                     neg_hamming, budget=3000, batch_size=16)
    rnd = run_search(RandomSearch(2, seed), neg_hamming, budget=3000, batch_size=16)
    assert evo.best_reward == 0.0 and evo.best == TARGET
    assert rnd.best_reward < -2  # random search is nowhere near in this budget
    last = lambda r: np.mean([x for _, x in r.history[-500:]])  # noqa: E731
    assert last(evo) > last(rnd) + 3


def test_evolution_reaches_known_optimum_fast() -> None:
    res = run_search(RegularizedEvolution(3, 0, population=16), mul_sign, budget=300,
                     batch_size=8)
    assert res.best_reward == 4.0  # all three groups mul, reads sign(m)
    assert "sign(m)" in formula(res.best)


def test_random_search_improves_over_its_first_candidate() -> None:
    res = run_search(RandomSearch(2, 0), mul_sign, budget=200, batch_size=32)
    assert res.best_reward == max(r for _, r in res.history) >= 2.0
    assert res.best_reward > res.history[0][1] or res.history[0][1] == 3.0
    assert all(len(p) == 2 for p, _ in res.history)
    assert len({p for p, _ in res.history}) > 190  # uniform: nearly all distinct


def test_warm_start_seeds_population_with_program_and_mutants() -> None:
    adam = parse("m / (sqrt(v) + eps)")
    s = RegularizedEvolution(2, 0, population=8, warm_start=adam)
    first = s.ask(8)
    assert first[0] == fit_groups(adam, 2) and equivalent(first[0], adam)
    assert all(p != first[0] for p in first[1:])  # one mutation each
    assert all(sum(a != b for a, b in zip(tokens(p), tokens(first[0]), strict=True)) <= 5
               for p in first[1:])
    assert RegularizedEvolution(1, 0, warm_start=adam).ask(1)[0] == adam
    with pytest.raises(ValueError, match="num_groups=1"):
        RegularizedEvolution(1, 0, warm_start="exp(sign(g) * sign(m)) * g")


# ------------------------------------------------------------------------------------------
# Mutations
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", MUTATIONS)
def test_mutations_keep_shape_and_validity(op: str) -> None:
    rng = np.random.default_rng(0)
    for i in range(200):
        p = random_program(i, 3)
        child = mutate(p, rng, op)  # Program() validates group references
        assert len(child) == 3 and child != p
        diff = [k for k in range(3) if child.groups[k] != p.groups[k]]
        assert len(diff) == 1  # one group changed
        if op == "token":
            assert sum(a != b for a, b in zip(tokens(p), tokens(child), strict=True)) == 1
        if op == "skip_group":
            o1, o2, u1, u2, b = child.groups[diff[0]]
            assert o1 == o2 and o1 in p.groups[diff[0]][:2] and (u1, u2, b) == ("id", "id",
                                                                                  "keep")


def test_mutation_respects_restricted_tokens() -> None:
    space = dict(operands=["g", "m"], unaries=["id", "neg"], binaries=["add", "mul"])
    s = RegularizedEvolution(2, 0, population=8, tournament=2, **space)
    res = run_search(s, mul_sign, budget=100, batch_size=10)
    allowed = {*space["operands"], *space["unaries"], *space["binaries"], 0, "keep"}
    assert all(set(tokens(p)) <= allowed for p, _ in res.history)


# ------------------------------------------------------------------------------------------
# Determinism and resume
# ------------------------------------------------------------------------------------------


def asks(s: Strategy, n_batches: int, batch: int = 6) -> list[list[Program]]:
    out = []
    for _ in range(n_batches):
        ps = s.ask(batch)
        s.tell(ps, neg_hamming(ps))
        out.append(ps)
    return out


@pytest.mark.parametrize("k", range(3))
def test_same_seed_same_asks(k: int) -> None:
    a, b, c = strategies(0)[k], strategies(0)[k], strategies(1)[k]
    assert asks(a, 6) == asks(b, 6)
    assert asks(strategies(0)[k], 6) != asks(c, 6)


@pytest.mark.parametrize("k", range(3))
def test_resume_from_state_dict_equals_uninterrupted(k: int) -> None:
    full = asks(strategies(0)[k], 8)
    s = strategies(0)[k]
    head = asks(s, 3)
    d = json.loads(json.dumps(s.state_dict(), allow_nan=False))  # strict JSON
    resumed = Strategy.from_state_dict(d)
    assert type(resumed) is type(s) and resumed.state_dict() == s.state_dict()
    assert head + asks(resumed, 5) == full


@pytest.mark.parametrize("k", range(3))
def test_replaying_a_log_into_fresh_strategy_equals_uninterrupted(k: int) -> None:
    full = asks(strategies(0)[k], 8)
    log = [p for batch in full[:3] for p in batch]
    fresh = strategies(0)[k]
    fresh.tell(log, neg_hamming(log))  # one call: batching of the replay does not matter
    assert asks(fresh, 5) == full[3:]


def test_asked_but_untold_batch_is_asked_again_after_replay() -> None:
    s = RegularizedEvolution(2, 0, population=8, tournament=2)
    done = asks(s, 3)
    lost = s.ask(6)  # evaluated never: killed here
    fresh = RegularizedEvolution(2, 0, population=8, tournament=2)
    log = [p for b in done for p in b]
    fresh.tell(log, neg_hamming(log))
    assert fresh.ask(6) == lost
    restored = Strategy.from_state_dict(s.state_dict())  # state_dict keeps the untold asks
    assert restored.ask(6) == s.ask(6)


def test_run_search_resume_at_batch_boundary() -> None:
    full = run_search(RegularizedEvolution(2, 3, population=16, tournament=4), neg_hamming,
                      budget=160, batch_size=16)
    s = RegularizedEvolution(2, 3, population=16, tournament=4)
    head = run_search(s, neg_hamming, budget=64, batch_size=16)
    tail = run_search(RegularizedEvolution.from_state_dict(s.state_dict()), neg_hamming,
                      budget=96, batch_size=16)
    assert head.history + tail.history == full.history
    assert tail.best_reward == full.best_reward


# ------------------------------------------------------------------------------------------
# Diverged candidates
# ------------------------------------------------------------------------------------------


def test_diverged_members_are_never_parents() -> None:
    s = RegularizedEvolution(2, 0, population=32, tournament=8, mutations=["token"])
    survivor = random_program(7, 2)
    others = [random_program(100 + i, 2) for i in range(31)]
    s.tell([*others[:15], survivor, *others[15:]],
           [math.nan if i % 2 else -math.inf for i in range(15)] + [-50.0]
           + [math.nan] * 16)
    children = s.ask(100)
    assert all(sum(a != b for a, b in zip(tokens(c), tokens(survivor), strict=True)) == 1
               for c in children)


def test_all_diverged_gives_random_children_and_no_best() -> None:
    s = RegularizedEvolution(2, 0, population=4, tournament=2)
    res = run_search(s, lambda ps: [math.nan] * len(ps), budget=20, batch_size=4)
    assert res.best is None and res.best_reward == -math.inf
    assert all(r == -math.inf for _, r in res.history)
    assert len({p for p, _ in res.history}) == 20
    assert json.dumps(s.state_dict(), allow_nan=False)  # diverged rewards are null


def test_nan_rewards_score_lowest_in_best() -> None:
    rewards = iter([math.nan, 0.5, -math.inf, 0.25])
    res = run_search(RandomSearch(1, 0), lambda ps: [next(rewards) for _ in ps], budget=4,
                     batch_size=2)
    assert res.best == res.history[1][0] and res.best_reward == 0.5


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "match"), [
    (lambda: RegularizedEvolution(2, 0, population=4, tournament=5), "tournament"),
    (lambda: RegularizedEvolution(2, 0, population=1), "population"),
    (lambda: RegularizedEvolution(2, 0, tournament=0), "tournament"),
    (lambda: RandomSearch(0, 0), "num_groups"),
    (lambda: RegularizedEvolution(0), "num_groups"),
    (lambda: RandomSearch(2, -1), "seed"),
    (lambda: RegularizedEvolution(2, 0, mutations=["insert"]), "mutation operator"),
    (lambda: RegularizedEvolution(2, 0, mutations={"token": -1.0}), "mutations"),
    (lambda: RegularizedEvolution(2, 0, mutations={"token": 0}), "mutations"),
    (lambda: RandomSearch(2, 0, operands=["gg"]), "operand"),
    (lambda: run_search(RandomSearch(2, 0), mul_sign, budget=0), "budget"),
    (lambda: run_search(RandomSearch(2, 0), mul_sign, budget=4, batch_size=0), "batch_size"),
    (lambda: run_search(RandomSearch(2, 0), lambda ps: [1.0], budget=4), "evaluate returned"),
    (lambda: RandomSearch(2, 0).ask(0), "n must"),
    (lambda: RandomSearch(2, 0).tell([random_program(0, 3)], [1.0]), "num_groups=2"),
    (lambda: RandomSearch(2, 0).tell([random_program(0, 2)], [1.0, 2.0]), "2 rewards"),
    (lambda: RandomSearch(2, 0).tell([random_program(0, 2)], [math.inf]), r"\+inf"),
    (lambda: Strategy.from_state_dict({"strategy": "evolutoin"}), "did you mean"),
    (lambda: RegularizedEvolution.from_state_dict(RandomSearch(2).state_dict()), "not"),
])
def test_bad_arguments_name_the_argument(make, match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        make()
