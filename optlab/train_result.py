"""The result of a training call (:class:`TrainResult`): the metric history, outcome and
trained state of every run of the grid."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from flax import nnx

from optlab.grid import Grid


@dataclass
class TrainResult:
    """Everything a training call produced, one row per run of the grid.

    ``history[metric]`` has shape ``(runs, epochs)``; epochs a run did not train (stopped
    early or diverged) are NaN. ``test_accuracy`` is taken at the epoch of best validation
    accuracy (``best_epoch``; the last trained epoch when there is no validation set);
    ``final_test_accuracy`` at the last trained epoch. ``resumed_from`` is the number of
    epochs restored from a checkpoint (None when training started fresh).
    """

    grid: Grid
    history: dict[str, np.ndarray]
    diverged: np.ndarray
    epochs_trained: np.ndarray
    best_epoch: np.ndarray
    wall_time: float
    compile_time: float
    epoch_seconds: list[float]
    device: str
    config: dict[str, Any]
    resumed_from: int | None = None
    state: Any = field(repr=False, default=None)
    graphdef: Any = field(repr=False, default=None)

    @property
    def test_accuracy(self) -> np.ndarray:
        return _at(self.history["test_accuracy"], self.best_epoch)

    @property
    def val_accuracy(self) -> np.ndarray:
        return _at(self.history["val_accuracy"], self.best_epoch)

    @property
    def final_test_accuracy(self) -> np.ndarray:
        return _at(self.history["test_accuracy"], self.epochs_trained - 1)

    def runs(self) -> list[dict[str, Any]]:
        """One dict per run: hyperparameters, seed, outcome."""
        out = []
        for i, (hp, seed) in enumerate(self.grid.runs):
            out.append({
                "hyperparams": hp, "seed": seed, "diverged": bool(self.diverged[i]),
                "epochs_trained": int(self.epochs_trained[i]),
                "best_epoch": int(self.best_epoch[i]) + 1 if self.best_epoch[i] >= 0 else None,
                "val_accuracy": float(self.val_accuracy[i]),
                "test_accuracy": float(self.test_accuracy[i]),
                "final_test_accuracy": float(self.final_test_accuracy[i]),
                "history": {k: v[i].tolist() for k, v in self.history.items()},
            })
        return out

    def to_json(self) -> dict[str, Any]:
        return {"config": self.config, "device": self.device, "wall_time_s": self.wall_time,
                "compile_time_s": self.compile_time, "epoch_seconds": self.epoch_seconds,
                "resumed_from": self.resumed_from, "runs": self.runs()}

    def model(self, run: int = 0) -> nnx.Module:
        """The trained model of run ``run`` (evaluation mode)."""
        params, rest = jax.tree.map(lambda a: a[run], (self.state["params"],
                                                      self.state["rest"]))
        return nnx.merge(self.graphdef, params, rest)

    def summary(self) -> str:
        lines = [f"{len(self.grid)} runs on {self.device}, wall time {self.wall_time:.1f} s "
                 f"(compile {self.compile_time:.1f} s)"]
        for r in self.runs():
            hp = ", ".join(f"{k}={_fmt(v)}" for k, v in r["hyperparams"].items())
            status = "DIVERGED" if r["diverged"] else f"test acc {r['test_accuracy']:.4f}"
            lines.append(f"  seed {r['seed']}{', ' + hp if hp else ''}: {status} "
                         f"(epochs {r['epochs_trained']}, best {r['best_epoch']})")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"<{value.dtype} array {value.shape}>"
    return f"{value:g}"


def _at(history: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    rows = np.arange(history.shape[0])
    return np.where(epoch >= 0, history[rows, np.maximum(epoch, 0)], np.nan)
