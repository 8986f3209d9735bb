"""A training result as the command line reports it: the resume notice, runs grouped by
hyperparameters (mean ± std over seeds, divergence, the best group) and their labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _resumed(result, epochs: int, out: Path | None, prefix: str = "") -> None:
    epoch = getattr(result, "resumed_from", None)  # epochs loaded from the checkpoint
    if epoch is not None:
        print(f"{prefix}resumed from epoch {epoch} of {epochs} (checkpoint in {out})",
              flush=True)


def _by_hyperparams(result) -> list[tuple[dict[str, float], list[int]]]:
    """Groups run indices by hyperparameter combination (seeds vary fastest)."""
    n_seeds = len(result.grid.seeds)
    runs = result.grid.runs
    return [(runs[i][0], list(range(i, i + n_seeds))) for i in range(0, len(runs), n_seeds)]


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))


def _group_diverged(result, idx: list[int]) -> bool:
    return bool(result.diverged[idx].any() or np.isnan(result.val_accuracy[idx]).any())


def _best_group(result) -> tuple[dict[str, float], list[int], bool]:
    """The hyperparameters with the best mean validation accuracy over seeds, and whether
    they trained without diverging. A combination with a diverged seed ranks last; when
    every combination diverged, the one that trained longest is returned with False."""
    groups = _by_hyperparams(result)
    ok = [(hp, idx) for hp, idx in groups if not _group_diverged(result, idx)]
    if ok:
        hp, idx = max(ok, key=lambda g: result.val_accuracy[g[1]].mean())
        return hp, idx, True
    hp, idx = max(groups, key=lambda g: result.epochs_trained[g[1]].mean())
    return hp, idx, False


def _fmt_hp(hp: dict[str, float]) -> str:
    return ", ".join(f"{'lr' if k == 'learning_rate' else k}={v:g}" for k, v in hp.items())
