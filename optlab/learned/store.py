"""Learned optimizers by name, and their meta-parameters on disk.

A folder written by :func:`save` (or by ``optlab meta-train --out DIR``) holds
``learned.json`` (the optimizer's name and options) and ``meta_params/STEP/`` (orbax, with a
sha256 manifest; the last two kept), so ``optlab train --optimizer learned:DIR`` and
:func:`load` rebuild the same transform.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from optlab.learned import lstm, mlp

INFO = "learned.json"
PARAMS = "meta_params"


@dataclass(frozen=True)
class Kind:
    """One learned optimizer: its meta-parameter initialiser, its transform, and which
    options shape the meta-parameters (``arch``) or only the transform (``run``)."""

    init: Callable[..., Any]
    build: Callable[..., optax.GradientTransformation]
    arch: dict[str, Any]
    run: dict[str, Any]
    description: str


OPTIMIZERS = {
    "lstm": Kind(lstm.init_meta_params, lstm.lstm_optimizer,
                 {"hidden": lstm.HIDDEN, "layers": lstm.LAYERS},
                 {"scale": lstm.SCALE, "p": lstm.P},
                 "Andrychowicz et al. (2016)'s coordinate-wise 2-layer LSTM"),
    "mlp": Kind(mlp.init_meta_params, mlp.mlp_optimizer,
                {"hidden": mlp.HIDDEN, "layers": 2},
                {"exp_mult": mlp.EXP_MULT, "step_mult": mlp.STEP_MULT},
                "per-parameter MLP on g, momenta, θ and rms (learned_optimization style)"),
}


@dataclass(frozen=True)
class Factory:
    """``meta_params -> transform`` of learned optimizer ``name`` with options ``run``."""

    name: str
    run: tuple[tuple[str, Any], ...]

    def __call__(self, meta_params: Any) -> optax.GradientTransformation:
        return OPTIMIZERS[self.name].build(meta_params, **dict(self.run))


@dataclass
class Learned:
    """A learned optimizer: its name, options and meta-parameters φ."""

    name: str
    meta_params: Any
    options: dict[str, Any] = field(default_factory=dict)
    meta_step: int = 0

    @classmethod
    def create(cls, name: str, key: jax.Array, **options: Any) -> Learned:
        """Fresh meta-parameters of optimizer ``name`` (options: see :data:`OPTIMIZERS`)."""
        options = resolve_options(name, options)
        kind = OPTIMIZERS[name]
        arch = {k: options[k] for k in kind.arch}
        return cls(name, kind.init(key, **arch), options)

    def factory(self) -> Factory:
        """``meta_params -> transform`` with this optimizer's run options fixed (hashable by
        value, so jitted meta-training compiles once per configuration in a process)."""
        kind = OPTIMIZERS[self.name]
        return Factory(self.name, tuple((k, self.options[k]) for k in kind.run))

    def optimizer(self, learning_rate: float = 1.0) -> optax.GradientTransformation:
        """The transform with φ = ``meta_params``; ``learning_rate`` multiplies its output
        (1: as meta-trained)."""
        tx = self.factory()(self.meta_params)
        if isinstance(learning_rate, int | float) and learning_rate == 1.0:
            return tx
        return optax.chain(tx, optax.scale(learning_rate))


def resolve_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` over the defaults of optimizer ``name``; unknown names are refused."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown learned optimizer {name!r}; known: {sorted(OPTIMIZERS)}")
    kind = OPTIMIZERS[name]
    defaults = {**kind.arch, **kind.run}
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(defaults))}")
    return {**defaults, **options}


def _identity(learned: Learned) -> dict[str, Any]:
    return {"config": {"optimizer": learned.name, "options": learned.options}}


def save(path: str | Path, learned: Learned) -> Path:
    """Writes ``learned`` to folder ``path`` (created): ``learned.json`` and the orbax
    checkpoint ``meta_params/STEP`` (STEP = ``learned.meta_step``), both atomically. Saving
    again (a later step) keeps the last two steps. Returns the folder."""
    from optlab.checkpoints import _Checkpoints
    from optlab.io import atomic_write_json

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / INFO, {"optimizer": learned.name, "options": learned.options})
    ckpt = _Checkpoints(path / PARAMS, _identity(learned))
    try:
        ckpt.save(int(learned.meta_step), jax.tree.map(np.asarray, learned.meta_params),
                  {"epoch": int(learned.meta_step)})
    finally:
        ckpt.close()
    return path


def load(path: str | Path) -> Learned:
    """The learned optimizer saved in folder ``path`` (by :func:`save` or ``optlab
    meta-train``), at its newest intact step. ValueError when there is none."""
    path = Path(path).expanduser()
    info_file = path / INFO
    if not info_file.is_file():
        raise ValueError(f"{path} holds no learned optimizer (no {INFO}); write one with "
                         "`optlab meta-train --out DIR` or optlab.learned.save")
    try:
        info = json.loads(info_file.read_text())
        name, options = info["optimizer"], resolve_options(info["optimizer"], info["options"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{info_file} is unreadable: {e}") from None
    from optlab.checkpoints import _Checkpoints

    kind = OPTIMIZERS[name]
    abstract = jax.eval_shape(lambda: kind.init(jax.random.PRNGKey(0),
                                                **{k: options[k] for k in kind.arch}))
    abstract = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)
    if not (path / PARAMS).is_dir():
        raise ValueError(f"{path} holds no meta-parameters yet ({PARAMS}/ is missing)")
    ckpt = _Checkpoints(path / PARAMS, _identity(Learned(name, None, options)))
    try:
        restored = ckpt.restore(abstract)
    finally:
        ckpt.close()
    if restored is None:
        raise ValueError(f"{path / PARAMS} holds no saved meta-parameters yet")
    meta_params, meta = restored
    return Learned(name, jax.tree.map(jax.numpy.asarray, meta_params), options,
                   int(meta["epoch"]))
