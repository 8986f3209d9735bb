"""Scoring candidate programs: deduplicate, then train the new ones as one population.

:class:`Evaluator` is the ``evaluate(programs) -> rewards`` of
:func:`~optlab.search.strategies.run_search`. For a batch of programs it

1. looks each up by its canonical hash (:func:`~optlab.search.program.program_hash`:
   programs equal up to exact identities) and then by a *functional fingerprint*, the
   program's update on a fixed random batch of statistics, rounded to 6 significant digits
   and hashed (as AutoML-Zero's functional-equivalence cache does, Real et al. 2020); a
   program seen before, in either sense, is not trained again;
2. trains the remaining ones as **one** :func:`optlab.train.train` grid — programs (encoded
   as int arrays, :mod:`optlab.search.population`) × learning rates × seeds in one compiled
   program (one compilation per population shape);
3. scores each program by the validation accuracy after the fixed budget, averaged over
   seeds, at its best learning rate; a learning rate where any seed diverged scores −inf, so
   a program that diverged everywhere gets −inf (lowest).

The budget's default (MNIST-1D MLP, learning rates 1e-3, 1e-2, 1e-1, one seed, 2 epochs) is
a CPU-sized proxy. The paper's child (ENOS's replication) picked the learning rate by a
1-epoch run and then trained 5 epochs; here every learning rate trains the whole budget in the
same compiled program and the best is kept, which costs no extra compilation.

With more than one visible device (a multi-GPU host, a TPU slice) the population is spread
over all of them (``optlab.train``'s ``run_parallel``: each device trains whole children);
the scores equal the single-device ones bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from optlab._checks import check_int
from optlab.search.compiler import DEFAULT_CONFIG
from optlab.search.language import Context, SearchConfig
from optlab.search.population import _interpret, encode, interpreted
from optlab.search.program import Program, formula, program_hash

__all__ = ["Evaluation", "Evaluator", "fingerprints"]

_FINGERPRINT_SHAPE = (64,)


def _fixed_context(config: SearchConfig) -> tuple[Context, jax.Array]:
    """A fixed random batch of statistics (v positive, as a second moment is)."""
    k = jax.random.split(jax.random.PRNGKey(20170101), 8)
    shape = _FINGERPRINT_SHAPE
    g = jax.random.normal(k[0], shape)
    stats = {"m": 0.5 * g + 0.1 * jax.random.normal(k[1], shape),
             "v": jnp.abs(jax.random.normal(k[2], shape)) + 0.1,
             "gamma": jax.random.normal(k[3], shape)}
    ctx = Context(g=g, stats=stats, w=jax.random.normal(k[4], shape),
                  count=jnp.asarray(7, jnp.int32),
                  noise=jax.random.normal(k[5], (2, *shape)), config=config)
    return ctx, k[6]


def fingerprints(codes: np.ndarray, config: SearchConfig = DEFAULT_CONFIG) -> list[str]:
    """The functional fingerprint of each encoded program (codes of shape (n, groups, 5)):
    sha256 of its update on a fixed random batch, rounded to 6 significant digits (NaN and
    ±inf kept as such). Computed for the whole batch in one vmapped, compiled call."""
    values = np.asarray(_fingerprint_fn(jnp.asarray(codes, jnp.int32), config))
    out = []
    for row in values:
        text = " ".join(f"{x:.5e}" for x in row.astype(np.float64))
        out.append(hashlib.sha256(text.encode()).hexdigest())
    return out


@functools.partial(jax.jit, static_argnums=1)
def _fingerprint_fn(codes: jax.Array, config: SearchConfig) -> jax.Array:
    ctx, key = _fixed_context(config)
    drop_keys = jax.random.split(key, (codes.shape[1], 2))
    return jax.vmap(lambda c: _interpret(c, ctx, drop_keys))(codes)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """One candidate's outcome. ``scores`` maps each learning rate to the validation accuracy
    averaged over seeds (None where a seed diverged); ``source`` is ``"trained"``,
    ``"hash"`` (a canonically equal program was trained) or ``"fingerprint"`` (a
    functionally equal one was)."""

    formula: str
    hash: str
    fingerprint: str
    scores: dict[str, float | None]
    reward: float
    diverged: bool
    source: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["reward"] = None if not np.isfinite(self.reward) else self.reward
        return d


class Evaluator:
    """``evaluate(programs) -> rewards`` by training populations of children (see module).

    Args:
      data: a :class:`~optlab.tasks.Dataset` (default: MNIST-1D).
      model: the child network (a model name of ``optlab.tasks`` or a factory).
      learning_rates: the small grid each program is tried at.
      seeds: seeds per learning rate (rewards average over them).
      epochs, batch_size: the training budget per child.
      num_groups: the programs' size (shorter programs are padded).
      config: the search space's settings.
      run_parallel: spread each population over all visible devices (default: when there
        is more than one); ``False`` trains it on one device (or data-parallel).
    """

    def __init__(self, data: Any = None, model: Any = "mlp", *,
                 learning_rates: Sequence[float] = (1e-3, 1e-2, 1e-1), seeds: int = 1,
                 epochs: int = 2, batch_size: int = 128, num_groups: int = 2,
                 config: SearchConfig = DEFAULT_CONFIG, run_parallel: bool | None = None):
        check_int("seeds", seeds, low=1)
        check_int("epochs", epochs, low=1)
        check_int("num_groups", num_groups, low=1)
        if not learning_rates:
            raise ValueError("learning_rates must name at least one learning rate")
        for lr in learning_rates:
            if not (isinstance(lr, int | float) and lr > 0 and np.isfinite(lr)):
                raise ValueError(f"learning_rates must be finite and > 0, got {lr!r}")
        if data is None:
            from optlab.tasks import load_dataset

            data = load_dataset("mnist1d")
        self.data, self.model, self.config = data, model, config
        self.learning_rates = tuple(float(x) for x in learning_rates)
        self.seeds, self.epochs, self.batch_size = seeds, epochs, batch_size
        self.num_groups = num_groups
        if run_parallel is not None and not isinstance(run_parallel, bool):
            raise TypeError(f"run_parallel must be a bool or None, got {run_parallel!r}")
        self.run_parallel = run_parallel
        self.by_hash: dict[str, Evaluation] = {}
        self.by_fingerprint: dict[str, Evaluation] = {}
        self.evaluated = self.trained = 0

    def remember(self, evaluation: Evaluation) -> None:
        """Adds an earlier evaluation (e.g. from a search log) to the cache."""
        self.by_hash.setdefault(evaluation.hash, evaluation)
        self.by_fingerprint.setdefault(evaluation.fingerprint, evaluation)

    @property
    def hit_rate(self) -> float:
        """Share of evaluated candidates answered from the cache."""
        return 0.0 if not self.evaluated else 1.0 - self.trained / self.evaluated

    def __call__(self, programs: Sequence[Program]) -> list[float]:
        return [e.reward for e in self.evaluate(programs)]

    def evaluate(self, programs: Sequence[Program]) -> list[Evaluation]:
        """Evaluations of ``programs``, in order (new ones trained as one population)."""
        programs = [p if isinstance(p, Program) else Program(p) for p in programs]
        codes = np.stack([encode(p, self.num_groups) for p in programs]) if programs else None
        hashes = [program_hash(p) for p in programs]
        prints = fingerprints(codes, self.config) if programs else []
        todo: dict[str, int] = {}  # fingerprint -> index of the program trained for it
        for i, (h, f) in enumerate(zip(hashes, prints, strict=True)):
            if h not in self.by_hash and f not in self.by_fingerprint and f not in todo:
                todo[f] = i
        start = time.perf_counter()
        if todo:
            fresh = self._train([programs[i] for i in todo.values()], codes[list(todo.values())])
            seconds = (time.perf_counter() - start) / len(todo)
            for (f, i), (scores, reward, diverged) in zip(todo.items(), fresh, strict=True):
                e = Evaluation(formula(programs[i]), hashes[i], f, scores, reward, diverged,
                               "trained", seconds)
                self.by_hash[hashes[i]] = self.by_fingerprint[f] = e
            self.trained += len(todo)
        out = []
        for i, (h, f) in enumerate(zip(hashes, prints, strict=True)):
            known = self.by_hash.get(h) or self.by_fingerprint[f]
            if todo.get(f) == i:
                e = known
            else:
                source = "hash" if h in self.by_hash else "fingerprint"
                e = dataclasses.replace(known, formula=formula(programs[i]), hash=h,
                                        fingerprint=f, source=source, seconds=0.0)
                self.by_hash.setdefault(h, e)
            out.append(e)
        self.evaluated += len(programs)
        return out

    def _train(self, programs: list[Program], codes: np.ndarray):
        from optlab.train import train

        result = train(self.data, self.model, _interpreted_with(self.config),
                       hyperparams={"code": codes, "learning_rate": list(self.learning_rates)},
                       seeds=self.seeds, epochs=self.epochs, batch_size=self.batch_size,
                       run_parallel=(jax.device_count() > 1 if self.run_parallel is None
                                     else self.run_parallel), progress=False)
        n_lr, n_seed = len(self.learning_rates), self.seeds
        val = result.history["val_accuracy"][:, -1].reshape(len(programs), n_lr, n_seed)
        bad = (result.diverged | ~np.isfinite(result.history["val_accuracy"][:, -1]))
        bad = bad.reshape(len(programs), n_lr, n_seed).any(axis=2)
        out = []
        for p in range(len(programs)):
            per_lr = np.where(bad[p], -np.inf, val[p].mean(axis=1))
            scores = {f"{lr:g}": (None if bad[p, j] else float(per_lr[j]))
                      for j, lr in enumerate(self.learning_rates)}
            out.append((scores, float(per_lr.max()), bool(bad[p].all())))
        return out


def _interpreted_with(config: SearchConfig):
    """The optimizer factory of a population; equal for equal configs, so that ``train``
    reuses one compiled program for every population of a search."""
    if config == DEFAULT_CONFIG:
        return interpreted
    return functools.partial(interpreted, config=config)
