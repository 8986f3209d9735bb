"""Search strategies behind one ask/tell interface (issue 8, "Search strategies").

A strategy proposes programs with :meth:`Strategy.ask` and learns from their rewards with
:meth:`Strategy.tell`; it never evaluates anything, so the vectorized evaluator, a toy reward
or a log replay drive it alike (:func:`run_search` is the plain loop). Programs have a fixed
number of groups per search (``num_groups``), since a population shares one encoded shape.

Determinism and resume. Candidate ``i`` of a search (counted from 0 over all asks) is drawn
from its own generator ``numpy.random.default_rng([seed, i])``, and everything else a strategy
knows is a function of the tells, in order. Hence (i) the same seed and tells give the same
asks, and (ii) a fresh strategy with the same seed that is told a log's candidates and
rewards (in one call or in batches) asks next exactly what the uninterrupted search would
have asked, provided the log ends at a batch boundary of the ask → evaluate → tell loop
(an interrupted batch, asked but never told, is asked again identically).
:meth:`Strategy.state_dict` is strict JSON (a diverged reward is ``null``) and
:meth:`Strategy.from_state_dict` restores it, including asks not yet told.

Rewards are floats, higher is better; NaN and −inf mark a diverged candidate, which is
scored lowest and never chosen as a parent. The RNN controller with PPO (Bello et al. 2017)
fits the same interface: it asks a batch, is told the batch, takes a policy step.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from optlab._checks import check_int, unknown_name
from optlab.search.language import BINARY, OPERANDS, UNARY
from optlab.search.program import Program, _rng, parse, random_program

__all__ = [
    "MUTATIONS",
    "RandomSearch",
    "RegularizedEvolution",
    "SearchResult",
    "Strategy",
    "fit_groups",
    "mutate",
    "run_search",
]

MUTATIONS = ("token", "replace_group", "skip_group")
"""Mutation operators of :func:`mutate`; the last two are the fixed-shape stand-ins for
inserting and deleting a group."""

_ALL = {"operands": tuple(o.name for o in OPERANDS), "unaries": tuple(u.name for u in UNARY),
        "binaries": tuple(b.name for b in BINARY)}


def _reward(r: Any) -> float:
    """A told reward as a float: NaN and −inf → −inf (diverged); +inf is an error."""
    r = float(r)
    if math.isnan(r) or r == -math.inf:
        return -math.inf
    if r == math.inf:
        raise ValueError("a reward must be finite, or NaN / -inf for a diverged candidate; "
                         "got +inf")
    return r


def _to_json(r: float) -> float | None:
    return r if math.isfinite(r) else None


def _from_json(r: float | None) -> float:
    return -math.inf if r is None else float(r)


def _as_program(p: Program | str | Sequence[Any]) -> Program:
    return p if isinstance(p, Program) else parse(p) if isinstance(p, str) else Program(p)


def fit_groups(program: Program, num_groups: int) -> Program:
    """``program`` with exactly ``num_groups`` groups: a shorter one is padded with
    ``(last, last, id, id, keep)`` groups, which pass the result on (same canonical form)."""
    groups = list(program.groups)
    if len(groups) > num_groups:
        raise ValueError(f"num_groups={num_groups} is too small for the warm start "
                         f"{program} ({len(groups)} groups)")
    while len(groups) < num_groups:
        k = len(groups) - 1
        groups.append((k, k, "id", "id", "keep"))
    return Program(tuple(groups))


def mutate(program: Program, key_or_seed: Any, operator: str = "token", *,
           operands: Sequence[str] | None = None, unaries: Sequence[str] | None = None,
           binaries: Sequence[str] | None = None) -> Program:
    """One mutation of ``program`` (Real et al. 2019; Chen et al. 2023), shape unchanged.

    * ``"token"``: a random position of a random group takes another valid value (an
      operand position: another operand or earlier group, so references stay valid);
    * ``"replace_group"`` (the fixed-shape *insert*): a random group becomes a new random
      group reading operands or earlier groups; later groups' references are unchanged;
    * ``"skip_group"`` (the fixed-shape *delete*): a random group becomes
      ``(o, o, id, id, keep)``, the identity of one of its own inputs ``o``, so its readers
      read that input directly, as if the group were deleted.

    ``operands`` / ``unaries`` / ``binaries`` restrict the new tokens (default: all). Up to
    16 draws are made to return a program different from ``program``, then a ``"token"``
    mutation is (``program`` comes back unchanged only if no token has another value).
    ``key_or_seed`` as in :func:`random_program`.
    """
    if operator not in MUTATIONS:
        raise unknown_name("mutation operator", operator, MUTATIONS)
    rng = _rng(key_or_seed)
    ops = tuple(operands or _ALL["operands"])
    us = tuple(unaries or _ALL["unaries"])
    bs = tuple(binaries or _ALL["binaries"])
    groups = [list(g) for g in program.groups]
    for _ in range(16):
        new = [list(g) for g in groups]
        k = int(rng.integers(len(new)))
        if operator == "token":
            pos = int(rng.integers(5))
            choices: list[Any] = [*ops, *range(k)] if pos < 2 else list(us if pos < 4 else bs)
            choices = [c for c in choices if c != new[k][pos]]
            if not choices:
                continue
            new[k][pos] = choices[int(rng.integers(len(choices)))]
        elif operator == "replace_group":
            sub = random_program(rng, k + 1, operands=ops, unaries=us, binaries=bs)
            new[k] = list(sub.groups[k])
        else:
            o = new[k][int(rng.integers(2))]
            new[k] = [o, o, "id", "id", "keep"]
        if new != groups:
            return Program(tuple(tuple(g) for g in new))
    if operator != "token":  # e.g. skip_group on a program of identity groups
        return mutate(program, rng, "token", operands=ops, unaries=us, binaries=bs)
    return program


class Strategy(abc.ABC):
    """The interface: :meth:`ask` n programs, :meth:`tell` their rewards, repeat.

    Subclasses define ``_propose(i, rng)`` (candidate ``i`` from its generator), ``_observe``
    (one told candidate), ``_config`` and ``_state``/``_load`` for :meth:`state_dict`.
    """

    registry: ClassVar[dict[str, type[Strategy]]] = {}
    name: ClassVar[str] = "strategy"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Strategy.registry[cls.name] = cls

    def __init__(self, num_groups: int = 2, seed: int = 0, *,
                 operands: Sequence[str] | None = None, unaries: Sequence[str] | None = None,
                 binaries: Sequence[str] | None = None) -> None:
        check_int("num_groups", num_groups, low=1)
        check_int("seed", seed, low=0)
        self.num_groups, self.seed = int(num_groups), int(seed)
        self.space = {k: list(v) if v is not None else None for k, v in
                      (("operands", operands), ("unaries", unaries), ("binaries", binaries))}
        random_program(0, 1, **self.space)  # validates the names
        self.issued = 0  # candidates asked
        self.told = 0  # candidates told
        self.best: Program | None = None
        self.best_reward = -math.inf

    # -- the interface ------------------------------------------------------------------
    def ask(self, n: int) -> list[Program]:
        """``n`` new candidates, each with ``num_groups`` groups."""
        check_int("n", n, low=1)
        start = max(self.issued, self.told)
        out = [self._propose(i, np.random.default_rng([self.seed, i]))
               for i in range(start, start + n)]
        self.issued = start + n
        return out

    def tell(self, programs: Sequence[Program], rewards: Sequence[float]) -> None:
        """Rewards of evaluated candidates (asked or not, e.g. a log being replayed), in
        evaluation order; NaN or −inf = diverged."""
        programs = [_as_program(p) for p in programs]
        rewards = [_reward(r) for r in rewards]
        if len(programs) != len(rewards):
            raise ValueError(f"tell got {len(programs)} programs but {len(rewards)} rewards")
        for p, r in zip(programs, rewards, strict=True):
            if len(p) != self.num_groups:
                raise ValueError(f"a told program has {len(p)} groups; this search has "
                                 f"num_groups={self.num_groups}: {p}")
            if r > self.best_reward:
                self.best, self.best_reward = p, r
            self._observe(p, r)
            self.told += 1

    def state_dict(self) -> dict[str, Any]:
        """Strict JSON: the strategy's name, constructor arguments and state."""
        return {"strategy": self.name, "config": self._config(),
                "state": {"issued": self.issued, "told": self.told,
                          "best": None if self.best is None else self.best.to_json(),
                          "best_reward": _to_json(self.best_reward), **self._state()}}

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> Strategy:
        """The strategy of :meth:`state_dict` (``Strategy.from_state_dict`` dispatches on
        the recorded name)."""
        name = d["strategy"]
        if name not in Strategy.registry:
            raise unknown_name("strategy", name, Strategy.registry)
        klass = Strategy.registry[name]
        if cls is not Strategy and not issubclass(klass, cls):
            raise ValueError(f"state_dict is of strategy {name!r}, not {cls.name!r}")
        s = klass(**d["config"])
        st = d["state"]
        s.issued, s.told = int(st["issued"]), int(st["told"])
        s.best = None if st["best"] is None else Program.from_json(st["best"])
        s.best_reward = _from_json(st["best_reward"])
        s._load(st)
        return s

    # -- for subclasses -----------------------------------------------------------------
    @abc.abstractmethod
    def _propose(self, i: int, rng: np.random.Generator) -> Program: ...

    def _observe(self, program: Program, reward: float) -> None:  # noqa: B027
        """One told candidate (default: nothing beyond the best)."""

    def _config(self) -> dict[str, Any]:
        return {"num_groups": self.num_groups, "seed": self.seed, **self.space}

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: Mapping[str, Any]) -> None:  # noqa: B027
        """Restores :meth:`_state`."""

    def _random(self, rng: np.random.Generator) -> Program:
        return random_program(rng, self.num_groups, **self.space)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._config().items() if v is not None)
        return f"{type(self).__name__}({args})"


class RandomSearch(Strategy):
    """Uniformly random programs (:func:`~optlab.search.random_program`): the baseline of
    Bello et al. 2017 and Real et al. 2019."""

    name = "random"

    def _propose(self, i: int, rng: np.random.Generator) -> Program:
        return self._random(rng)


class RegularizedEvolution(Strategy):
    """Regularized (aging) evolution, Real et al. 2019, as used by Chen et al. 2023 (Lion).

    The population is the last ``population`` told candidates (FIFO: the oldest dies, not
    the worst). Candidates ``0 … population−1`` are random programs, or with ``warm_start``
    the given program (padded to ``num_groups`` by :func:`fit_groups`) then its one-step
    mutants. Every later candidate is a child: ``tournament`` members sampled without
    replacement from the non-diverged members, the best (earliest told among ties) mutated
    once by an operator drawn with the ``mutations`` weights (:func:`mutate`). With no
    non-diverged member the child is a random program.

    Args:
      num_groups: groups per program (fixed: the population shares one shape).
      seed: the search's seed (see the module docstring).
      population: P, the number of members kept (64, the issue's CLI default).
      tournament: S, the sample size; default P // 4 (Real et al.'s 25 of 100).
      mutations: operator → weight, or a sequence of operators (equal weights); default
        ``{"token": 0.6, "replace_group": 0.2, "skip_group": 0.2}``.
      warm_start: a program, formula (e.g. ``"m / (sqrt(v) + eps)"``, Adam) or groups.
      operands, unaries, binaries: restrict the tokens of random programs and mutations.
    """

    name = "evolution"
    DEFAULT_MUTATIONS: ClassVar[dict[str, float]] = {"token": 0.6, "replace_group": 0.2,
                                                     "skip_group": 0.2}

    def __init__(self, num_groups: int = 2, seed: int = 0, *, population: int = 64,
                 tournament: int | None = None,
                 mutations: Mapping[str, float] | Sequence[str] | None = None,
                 warm_start: Program | str | Sequence[Any] | None = None,
                 **space: Sequence[str] | None) -> None:
        super().__init__(num_groups, seed, **space)
        check_int("population", population, low=2)
        tournament = max(2, population // 4) if tournament is None else tournament
        check_int("tournament", tournament, low=1)
        if tournament > population:
            raise ValueError(f"tournament must be <= population ({population}), got "
                             f"{tournament}")
        self.population, self.tournament = int(population), int(tournament)
        if mutations is None:
            mutations = self.DEFAULT_MUTATIONS
        elif isinstance(mutations, str) or not isinstance(mutations, Mapping):
            mutations = dict.fromkeys(
                [mutations] if isinstance(mutations, str) else mutations, 1.0)
        if not mutations:
            raise ValueError("mutations must name at least one operator")
        for op, w in mutations.items():
            if op not in MUTATIONS:
                raise unknown_name("mutation operator in mutations", op, MUTATIONS)
            if not (isinstance(w, int | float) and math.isfinite(w) and w >= 0):
                raise ValueError(f"mutations[{op!r}] must be a finite weight >= 0, got {w!r}")
        total = float(sum(mutations.values()))
        if total <= 0:
            raise ValueError("mutations: the weights must not all be 0")
        self.mutations = {op: float(w) for op, w in mutations.items()}
        self._ops, self._p = list(self.mutations), np.array(list(self.mutations.values())) / total
        self.warm_start = None if warm_start is None else fit_groups(_as_program(warm_start),
                                                                     self.num_groups)
        self.members: deque[tuple[Program, float]] = deque(maxlen=self.population)

    def _mutate(self, program: Program, rng: np.random.Generator) -> Program:
        op = self._ops[int(rng.choice(len(self._ops), p=self._p))]
        return mutate(program, rng, op, **self.space)

    def parent(self, rng: np.random.Generator) -> Program | None:
        """A tournament winner among the non-diverged members (None if there is none)."""
        alive = [k for k, (_, r) in enumerate(self.members) if r > -math.inf]
        if not alive:
            return None
        sample = rng.choice(alive, size=min(self.tournament, len(alive)), replace=False)
        best = min(sample, key=lambda k: (-self.members[k][1], k))
        return self.members[best][0]

    def _propose(self, i: int, rng: np.random.Generator) -> Program:
        if i < self.population:
            if self.warm_start is None:
                return self._random(rng)
            return self.warm_start if i == 0 else self._mutate(self.warm_start, rng)
        parent = self.parent(rng)
        return self._random(rng) if parent is None else self._mutate(parent, rng)

    def _observe(self, program: Program, reward: float) -> None:
        self.members.append((program, reward))  # the deque drops the oldest

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "population": self.population,
                "tournament": self.tournament, "mutations": dict(self.mutations),
                "warm_start": None if self.warm_start is None else self.warm_start.to_json()}

    def _state(self) -> dict[str, Any]:
        return {"members": [[p.to_json(), _to_json(r)] for p, r in self.members]}

    def _load(self, state: Mapping[str, Any]) -> None:
        self.members.clear()
        self.members.extend((Program.from_json(p), _from_json(r)) for p, r in state["members"])


@dataclasses.dataclass
class SearchResult:
    """What :func:`run_search` returns: the best program (None if every candidate
    diverged), its reward, and every ``(program, reward)`` in evaluation order."""

    best: Program | None
    best_reward: float
    history: list[tuple[Program, float]]

    @classmethod
    def of(cls, history: list[tuple[Program, float]]) -> SearchResult:
        """The result of a history: its best program (the earliest among equal rewards)."""
        finite = [(r, -k) for k, (_, r) in enumerate(history) if r > -math.inf]
        if not finite:
            return cls(None, -math.inf, history)
        r, k = max(finite)
        return cls(history[-k][0], r, history)


def run_search(strategy: Strategy, evaluate: Callable[[list[Program]], Sequence[float]],
               budget: int, batch_size: int = 64, *,
               callback: Callable[[list[Program], list[float]], None] | None = None
               ) -> SearchResult:
    """Ask → ``evaluate`` → tell in batches of ``batch_size`` (the last one smaller) until
    ``budget`` candidates were evaluated. ``callback(programs, rewards)`` sees each batch
    (logging, progress). Rewards as in :meth:`Strategy.tell` (diverged → −inf in history).
    """
    check_int("budget", budget, low=1)
    check_int("batch_size", batch_size, low=1)
    history: list[tuple[Program, float]] = []
    while len(history) < budget:
        programs = strategy.ask(min(batch_size, budget - len(history)))
        rewards = [_reward(r) for r in evaluate(programs)]
        if len(rewards) != len(programs):
            raise ValueError(f"evaluate returned {len(rewards)} rewards for "
                             f"{len(programs)} programs")
        strategy.tell(programs, rewards)
        history.extend(zip(programs, rewards, strict=True))
        if callback is not None:
            callback(programs, rewards)
    return SearchResult.of(history)
