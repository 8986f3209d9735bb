"""Learning-curve figures (matplotlib, headless), written atomically."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

import numpy as np

CURVES = (("train_loss", "train loss", True), ("val_accuracy", "validation accuracy", False),
          ("test_accuracy", "test accuracy", False))


def _figure(ncols: int):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(4.6 * ncols, 3.6), squeeze=False)
    return plt, fig, axes[0]


def plot_curves(curves: Mapping[str, Mapping[str, np.ndarray]], path: str | os.PathLike,
                title: str = "") -> None:
    """One panel per metric; one line per entry of ``curves`` (label → metric → array of
    shape ``(seeds, epochs)``), the mean over seeds with a ±1 std band. NaN epochs (stopped
    or diverged runs) are left out of the mean."""
    from optlab.io import atomic_save_figure

    plt, fig, axes = _figure(len(CURVES))
    for ax, (metric, label, log) in zip(axes, CURVES, strict=True):
        for name, history in curves.items():
            values = np.asarray(history[metric], float)
            if values.ndim == 1:
                values = values[None]
            epochs = np.arange(1, values.shape[1] + 1)
            values = np.where(np.isfinite(values), values, np.nan)
            with warnings.catch_warnings():  # all-NaN epochs (every seed stopped) stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
            (line,) = ax.plot(epochs, mean, label=name)
            if values.shape[0] > 1:
                ax.fill_between(epochs, mean - std, mean + std, alpha=0.2,
                                color=line.get_color(), linewidth=0)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        atomic_save_figure(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)
