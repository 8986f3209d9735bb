"""Learning-curve figures (matplotlib, headless), written atomically."""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection, Mapping

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
                title: str = "", diverged: Collection[str] = ()) -> None:
    """One panel per metric; one line per entry of ``curves`` (label → metric → array of
    shape ``(seeds, epochs)``), the mean over seeds with a ±1 std band. NaN epochs (stopped
    or diverged runs) are left out of the mean.

    Entries named in ``diverged`` are drawn dashed, labelled "(diverged)", and left out of
    the axis limits, so a loss of 1e21 does not flatten every other curve. Isolated points
    (a single epoch) are drawn as markers.
    """
    from optlab.io import atomic_save_figure

    plt, fig = draw_curves(curves, title, diverged)
    try:
        atomic_save_figure(path, lambda f: fig.savefig(f, format="png", dpi=110))
    finally:
        plt.close(fig)


def draw_curves(curves: Mapping[str, Mapping[str, np.ndarray]], title: str = "",
                diverged: Collection[str] = ()):
    """The figure of :func:`plot_curves`: ``(pyplot, figure)``; the caller closes it."""
    from matplotlib.ticker import MaxNLocator

    plt, fig, axes = _figure(len(CURVES))
    for ax, (metric, label, log) in zip(axes, CURVES, strict=True):
        limits: list[np.ndarray] = []
        for name, history in curves.items():
            values = np.asarray(history[metric], float)
            if values.ndim == 1:
                values = values[None]
            epochs = np.arange(1, values.shape[1] + 1)
            values = np.where(np.isfinite(values), values, np.nan)
            with warnings.catch_warnings():  # all-NaN epochs (every seed stopped) stay NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
            bad = name in diverged
            (line,) = ax.plot(epochs, mean, label=f"{name} (diverged)" if bad else name,
                              linestyle="--" if bad else "-",
                              marker="o" if _isolated(mean) else None, markersize=4)
            if values.shape[0] > 1:
                ax.fill_between(epochs, mean - std, mean + std, alpha=0.2,
                                color=line.get_color(), linewidth=0)
            if not bad:
                limits.append(mean[np.isfinite(mean)])
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        if log:
            ax.set_yscale("log")
        _set_limits(ax, np.concatenate(limits) if limits else np.empty(0), log)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return plt, fig


def _isolated(mean: np.ndarray) -> bool:
    """True when some finite point has no finite neighbour (a line would not show it)."""
    ok = np.isfinite(mean)
    left = np.concatenate([[False], ok[:-1]])
    right = np.concatenate([ok[1:], [False]])
    return bool((ok & ~left & ~right).any())


def _set_limits(ax, values: np.ndarray, log: bool) -> None:
    """y limits from the finite values of the runs that did not diverge (with a margin)."""
    if log:
        values = values[values > 0]
    if values.size == 0:
        return
    lo, hi = float(values.min()), float(values.max())
    if log:
        lo, hi = np.log10(lo), np.log10(hi)
    flat = 0.5 if log else max(0.05 * abs(hi), 0.05)  # one value: a band around it
    pad = 0.05 * (hi - lo) if hi > lo else flat
    lo, hi = lo - pad, hi + pad
    ax.set_ylim((10**lo, 10**hi) if log else (lo, hi))
