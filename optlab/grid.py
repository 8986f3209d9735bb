"""The grid of a training call: every combination of hyperparameter values × seeds
(:class:`Grid`), and the checks of its values (finite numbers, or arrays of one shape and
dtype)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np

from optlab._checks import check_int


@dataclass(frozen=True)
class Grid:
    """The runs of one training call: every combination of hyperparameter values × seeds.

    Runs are ordered as ``itertools.product(*values, seeds)`` (seeds vary fastest). A value is
    a number (float32 in the compiled program) or a numpy array, e.g. an optimizer-search
    program encoded as integers (:mod:`optlab.search.population`); arrays of one name must
    share shape and dtype, and become per-run inputs of the same compiled program.
    """

    names: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    seeds: tuple[int, ...]

    @classmethod
    def make(cls, hyperparams: Mapping[str, float | Sequence[float]] | None,
             seeds: int | Sequence[int]) -> Grid:
        hyperparams = dict(hyperparams or {})
        names, values = [], []
        for name, v in hyperparams.items():
            vs = tuple(v) if isinstance(v, Sequence | np.ndarray) and not isinstance(v, str) \
                else (v,)
            if not vs:
                raise ValueError(f"hyperparams[{name!r}] is empty; give at least one value")
            if any(isinstance(x, np.ndarray | jax.Array) and np.ndim(x) for x in vs):
                values.append(_array_values(name, vs))
                names.append(name)
                continue
            for x in vs:
                if isinstance(x, bool) or not isinstance(x, int | float | np.number):
                    raise TypeError(f"hyperparams[{name!r}] values must be numbers or arrays, "
                                    f"got {x!r}")
                if not math.isfinite(float(x)):
                    raise ValueError(f"hyperparams[{name!r}] values must be finite, got {x!r}")
            names.append(name)
            values.append(tuple(float(x) for x in vs))
        if isinstance(seeds, int) and not isinstance(seeds, bool):
            check_int("seeds", seeds, low=1)
            seeds = tuple(range(seeds))
        seeds = tuple(seeds)
        if not seeds:
            raise ValueError("seeds must be a positive count or a non-empty list of seeds")
        for s in seeds:
            check_int("seeds", s, low=0)
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {list(seeds)}")
        return cls(tuple(names), tuple(values), seeds)

    @property
    def runs(self) -> list[tuple[dict[str, float], int]]:
        out = []
        for combo in itertools.product(*self.values, self.seeds):
            out.append((dict(zip(self.names, combo[:-1], strict=True)), combo[-1]))
        return out

    def __len__(self) -> int:
        return math.prod(len(v) for v in self.values) * len(self.seeds)

    def column(self, name: str) -> np.ndarray:
        """The values of hyperparameter ``name`` for every run, stacked (numbers as float32,
        arrays in their own dtype)."""
        values = [hp[name] for hp, _ in self.runs]
        if isinstance(values[0], np.ndarray):
            return np.stack(values)
        return np.asarray(values, np.float32)


def _array_values(name: str, vs: Sequence[Any]) -> tuple[np.ndarray, ...]:
    """Array-valued hyperparameters (read-only numpy copies), checked for one shape, one
    dtype and finite values."""
    arrays = []
    for x in vs:
        if isinstance(x, bool) or not isinstance(x, np.ndarray | jax.Array | Sequence):
            raise TypeError(f"hyperparams[{name!r}]: every value must be an array when one "
                            f"is, got {x!r}")
        a = np.array(x)
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise TypeError(f"hyperparams[{name!r}]: arrays must be integer or float, got "
                            f"{a.dtype}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"hyperparams[{name!r}] values must be finite")
        a.setflags(write=False)
        arrays.append(a)
    kinds = {(a.shape, a.dtype.str) for a in arrays}
    if len(kinds) != 1:
        raise ValueError(f"hyperparams[{name!r}]: arrays must share one shape and dtype, got "
                         f"{sorted(kinds)}")
    return tuple(arrays)
