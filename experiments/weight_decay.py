"""Decoupled weight decay (Loshchilov & Hutter, ICLR 2019, "Decoupled Weight Decay
Regularization", Fig. 2).

**The paper.** A 26 2x64d Shake-Shake ResNet (batch normalization) on CIFAR-10, 100 epochs,
cosine annealing, batch 128; final test error over a grid of initial learning rate α ×
weight decay for SGD (momentum) with L2 regularization, SGDW, Adam with L2 regularization and
AdamW. Claims: (i) with L2 the good region of (α, λ) is a diagonal valley — the best weight
decay depends on the learning rate — while with decoupled decay it is axis-aligned
("separable"); (ii) AdamW generalises substantially better than Adam + L2.

**The parameterization.** The paper's decoupled step is θ ← θ − η_t (α · d_t + λ θ) with η_t
the schedule multiplier (cosine, 1 → 0) and d_t the optimizer's direction: λ is *not*
multiplied by α. optax / optlab (``optlab.adamw``, ``optlab.sgdw``, like
``torch.optim.AdamW``) multiply the decay by the learning rate: θ ← θ − α η_t (d_t + λ' θ), so
λ' = λ / α. We grid over the paper's λ (the claim is about it) and pass
``weight_decay = λ / α`` to optlab; in optax's λ' the best λ' per learning rate is the best λ
divided by α, so its slope on log axes is the paper-λ slope minus one (reported too). The
paper's normalized weight decay is λ_norm = λ / √(b / (B T)) (b batch size, B training
examples, T epochs); with b = 128, B = 3,600, T = 30 one λ_norm = 29 λ; we report it. Coupled
L2 adds λ θ to the gradient (``optlab.l2_penalty`` in front of the same optimizer), the
``weight_decay`` of ``torch.optim.Adam`` / ``SGD``.

**What we run.** MNIST-1D (3,600 train / 400 validation / 1,000 test), 30 epochs, batch 128,
cosine decay of the learning rate to 0 (multiplying both terms, as the paper's η_t); a 5 × 5
grid of α × λ (half-decade steps) per method — the same grid for the coupled and the
decoupled variant of each optimizer — × 3 seeds; Adam β = (0.9, 0.999), SGD heavy-ball
momentum 0.9. Two networks: the paper's network uses batch normalization, through which
weight decay acts on the effective learning rate of scale-invariant weights, so we train the
MNIST-1D MLP (2 × 100 ReLU, residual second layer) both **with batch normalization** before
each ReLU (defined here) and **without** (optlab's ``mlp``, no normalization). The four
methods of one network train in one compiled program (``optlab.train`` over the grid
method × α index × λ index × seed; a ``lax.switch`` picks Adam or SGD per run).

**Measurements.** Heatmaps of the final test error (mean over seeds). Separability: for every
learning rate, the weight decay with the lowest mean test error (refined by a parabola
through the three grid points around the minimum, in log λ), then the least-squares slope of
log λ* on log α and the correlation: 0 slope = axis-aligned, ±1 = diagonal. A global
measure too: the share of the heatmap's variance (of log test error) that an additive model
f(α) + g(λ) leaves unexplained (0 = perfectly separable). Generalisation: the cell with the
best mean validation accuracy per method, its test error mean ± std over seeds.

**What differs from the paper.** MNIST-1D and a 2-layer MLP instead of CIFAR-10 and a
26-layer ResNet (2 CPU cores), 30 epochs instead of 100, no data augmentation, a 5 × 5 grid.
The grid ranges were set from a 2-seed pilot so that each method's best cell lies inside the
grid, not to favour any method. The accelerator-scale version is CIFAR-10 (``cifar10``
task) with ``wrn`` (WRN-16-4) and the same script structure: 100 epochs, the paper's grid.
"""

from __future__ import annotations

import functools
import itertools
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optlab
from optlab import reproduce
from optlab.reproduce import Context, Experiment, Outcome, fmt_pm, markdown_table, mean_std
from optlab.schedules import cosine_decay
from optlab.search.run import with_train_size
from optlab.tasks import load_dataset
from optlab.train import train

METHODS = ("Adam + L2", "AdamW", "SGD + L2", "SGDW")
FAMILY = {"Adam + L2": 0, "AdamW": 0, "SGD + L2": 1, "SGDW": 1}
DECOUPLED = {"Adam + L2": False, "AdamW": True, "SGD + L2": False, "SGDW": True}
# log10 of the grids (half-decade steps): learning rate α and weight decay λ (the L2 factor
# for the coupled variants, the paper's decoupled λ for AdamW / SGDW).
LOG_LR = {0: (-3.0, -2.5, -2.0, -1.5, -1.0), 1: (-2.0, -1.5, -1.0, -0.5, 0.0)}
LOG_WD = {0: (-3.5, -3.0, -2.5, -2.0, -1.5), 1: (-4.0, -3.5, -3.0, -2.5, -2.0)}
ARCHS = {"mlp_bn": "MLP + BatchNorm", "mlp": "MLP (no normalization)"}
BATCH = 128
MOMENTUM = 0.9


# ------------------------------------------------------------------------------------------
# The network with batch normalization
# ------------------------------------------------------------------------------------------


class BatchNormMLP(nnx.Module):
    """optlab's MNIST-1D MLP (Linear → ReLU, 2 × 100, the second layer residual) with a
    BatchNorm before each ReLU (and no bias in the Linear it follows)."""

    def __init__(self, input_shape, num_classes: int, *, rngs: nnx.Rngs,
                 hidden: tuple[int, ...] = (100, 100)):
        sizes = (math.prod(input_shape), *hidden)
        self.layers = nnx.List([nnx.Linear(a, b, use_bias=False, rngs=rngs)
                                for a, b in itertools.pairwise(sizes)])
        self.norms = nnx.List([nnx.BatchNorm(b, momentum=0.9, epsilon=1e-5,
                                             use_running_average=False, rngs=rngs)
                               for b in hidden])
        self.head = nnx.Linear(hidden[-1], num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms, strict=True)):
            a = jax.nn.relu(norm(layer(h)))
            h = h + a if i > 0 and a.shape == h.shape else a
        return h

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


def batchnorm_mlp(rngs: nnx.Rngs, *, input_shape, num_classes: int) -> BatchNormMLP:
    return BatchNormMLP(tuple(input_shape), num_classes, rngs=rngs)


# ------------------------------------------------------------------------------------------
# The optimizers: one compiled program for all four methods
# ------------------------------------------------------------------------------------------


def decay_methods(method, i_lr, i_wd, *, total_steps: int, log_lr: tuple, log_wd: tuple
                  ) -> optax.GradientTransformation:
    """Method ``METHODS[method]`` at the grid cell (``i_lr``, ``i_wd``) of its table
    ``log_lr[method]`` × ``log_wd[method]`` (log10 values; the indices are traced scalars).

    Adam / SGD (heavy-ball 0.9) with coupled L2 ``optlab.l2_penalty(λ)`` in front, or
    decoupled decay ``weight_decay = λ / α`` (optlab multiplies it by the learning rate, so
    the step is η_t(α d + λ θ), the paper's); the learning rate is α times a cosine decay
    to 0 over the run.
    """
    m = jnp.asarray(method).astype(jnp.int32)
    lr = 10.0 ** jnp.asarray(log_lr, jnp.float32)[m, jnp.asarray(i_lr).astype(jnp.int32)]
    wd = 10.0 ** jnp.asarray(log_wd, jnp.float32)[m, jnp.asarray(i_wd).astype(jnp.int32)]
    decoupled = jnp.asarray([DECOUPLED[k] for k in METHODS])[m]
    l2, dec = jnp.where(decoupled, 0.0, wd), jnp.where(decoupled, wd, 0.0)
    cosine = cosine_decay(1.0, total_steps)

    def schedule(step):
        return lr * cosine(step)

    adam = optax.chain(optlab.l2_penalty(l2), optlab.adamw(schedule, weight_decay=dec / lr))
    sgd = optax.chain(optlab.l2_penalty(l2),
                      optlab.sgdw(schedule, momentum=MOMENTUM, weight_decay=dec / lr))
    family = jnp.asarray([FAMILY[k] for k in METHODS])[m]
    return optlab.one_of(family, (adam, sgd))


# ------------------------------------------------------------------------------------------
# Analysis
# ------------------------------------------------------------------------------------------


def best_log_wd(err: np.ndarray, log_wd) -> np.ndarray:
    """Per column (learning rate) of a mean-error map ``(n_wd, n_lr)``: the log λ of the
    minimum, refined by a parabola through the three grid points around it (kept within
    half a grid step of the minimum; at the grid's edge, the edge)."""
    log_wd = np.asarray(log_wd, float)
    step = log_wd[1] - log_wd[0]
    out = []
    for col in err.T:
        col = np.where(np.isfinite(col), col, np.nanmax(col[np.isfinite(col)]) + 1.0) \
            if np.isfinite(col).any() else np.zeros_like(col)
        i = int(np.argmin(col))
        if 0 < i < len(col) - 1:
            a, b, c = col[i - 1], col[i], col[i + 1]
            denom = a - 2 * b + c
            shift = 0.5 * (a - c) / denom if denom > 0 else 0.0
            out.append(log_wd[i] + float(np.clip(shift, -0.5, 0.5)) * step)
        else:
            out.append(log_wd[i])
    return np.asarray(out)


def slope_and_r(x, y) -> tuple[float, float]:
    """Least-squares slope of y on x and the Pearson correlation (0 when y is constant)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    slope = float(np.polyfit(x, y, 1)[0])
    r = float(np.corrcoef(x, y)[0, 1]) if np.std(y) > 1e-12 else 0.0
    return slope, r


def interaction_share(err: np.ndarray) -> float:
    """Share of the variance of log(error) a two-way additive model f(α) + g(λ) leaves
    unexplained (0: separable, the rows are shifts of each other)."""
    e = np.log(np.clip(err, 1e-6, None))
    centred = e - e.mean()
    resid = e - e.mean(0, keepdims=True) - e.mean(1, keepdims=True) + e.mean()
    total = float((centred ** 2).sum())
    return float((resid ** 2).sum() / total) if total > 0 else 0.0


# ------------------------------------------------------------------------------------------
# The experiment
# ------------------------------------------------------------------------------------------


def run(ctx: Context) -> Outcome:
    data = load_dataset("mnist1d")
    if ctx.quick:
        data = with_train_size(data, 1024)
        epochs, archs, pick = 4, ("mlp_bn",), (0, 2, 4)
    else:
        epochs, archs, pick = 30, ("mlp_bn", "mlp"), (0, 1, 2, 3, 4)
    log_lr = {f: tuple(LOG_LR[f][i] for i in pick) for f in LOG_LR}
    log_wd = {f: tuple(LOG_WD[f][i] for i in pick) for f in LOG_WD}
    steps_per_epoch = len(data.y_train) // BATCH
    total_steps = epochs * steps_per_epoch
    norm = math.sqrt(BATCH / (len(data.y_train) * epochs))  # λ = λ_norm · norm
    seeds = ctx.seeds
    S = len(seeds)

    n = len(pick)
    table_lr = tuple(log_lr[FAMILY[m]] for m in METHODS)
    table_wd = tuple(log_wd[FAMILY[m]] for m in METHODS)
    optimizer = functools.partial(decay_methods, total_steps=total_steps, log_lr=table_lr,
                                  log_wd=table_wd)
    models = {"mlp_bn": functools.partial(batchnorm_mlp, input_shape=data.input_shape,
                                          num_classes=data.num_classes),
              "mlp": "mlp"}

    maps: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    timing = {}
    for arch in archs:
        ctx.log(f"{ARCHS[arch]}: {len(METHODS)} methods × {n} × {n} grid × {S} seeds, "
                f"{epochs} epochs")
        result = train(data, models[arch], optimizer,
                       hyperparams={"method": list(range(len(METHODS))),
                                    "i_lr": list(range(n)), "i_wd": list(range(n))},
                       seeds=seeds, epochs=epochs, batch_size=BATCH,
                       progress=ctx.progress,
                       checkpoint_dir=None if ctx.quick else ctx.checkpoint_dir(arch))
        timing[arch] = {"wall_s": result.wall_time, "compile_s": result.compile_time}
        hist = result.history
        shape = (len(METHODS), n, n, S)  # runs: method, α index, λ index, seed (fastest)

        diverged = result.diverged.reshape(shape)
        # (method, α, λ, seed) -> (method, λ, α, seed); diverged runs as NaN
        test_err, val_err, train_err = (
            np.where(diverged, np.nan, (1.0 - hist[k][:, -1]).reshape(shape)).transpose(0, 2, 1, 3)
            for k in ("test_accuracy", "val_accuracy", "train_accuracy"))
        maps[arch] = {m: {"test_error": test_err[k], "val_error": val_err[k],
                          "train_error": train_err[k]} for k, m in enumerate(METHODS)}

    # --- analysis -------------------------------------------------------------------------
    stats: dict[str, dict[str, dict]] = {}
    for arch in archs:
        stats[arch] = {}
        for m in METHODS:
            f = FAMILY[m]
            test_mean = mean_std(maps[arch][m]["test_error"], axis=2)[0]
            val_mean = maps[arch][m]["val_error"].mean(axis=2)  # NaN if a seed diverged
            bw = best_log_wd(test_mean, log_wd[f])
            slope, r = slope_and_r(log_lr[f], bw)
            per_seed = [slope_and_r(log_lr[f], best_log_wd(
                maps[arch][m]["test_error"][..., s], log_wd[f]))[0] for s in range(S)]
            filled = np.where(np.isfinite(test_mean), test_mean, 1.0)
            vi = np.unravel_index(np.argmin(np.where(np.isfinite(val_mean), val_mean,
                                                     np.inf)), val_mean.shape)
            best_test = maps[arch][m]["test_error"][vi[0], vi[1]]
            stats[arch][m] = {
                "best_log_wd_per_lr": bw.tolist(), "slope": slope, "r": r,
                "slope_per_seed": per_seed,
                "edge_columns": int(np.sum(np.isin(bw, (log_wd[f][0], log_wd[f][-1])))),
                "slope_optax_parameterization": slope - 1.0 if DECOUPLED[m] else None,
                "interaction_share": interaction_share(filled),
                "selected": {"log_lr": log_lr[f][vi[1]], "log_wd": log_wd[f][vi[0]]},
                "selected_test_error": best_test.tolist(),
                "selected_val_error": maps[arch][m]["val_error"][vi[0], vi[1]].tolist(),
                "min_mean_test_error": float(np.nanmin(test_mean)),
            }

    checks: dict[str, bool] = {}
    for arch in archs:
        s = stats[arch]
        checks[f"{arch}: AdamW more separable than Adam + L2"] = bool(
            abs(s["AdamW"]["slope"]) < abs(s["Adam + L2"]["slope"]))
        checks[f"{arch}: SGDW more separable than SGD + L2"] = bool(
            abs(s["SGDW"]["slope"]) < abs(s["SGD + L2"]["slope"]))
        checks[f"{arch}: AdamW generalises better than Adam + L2"] = bool(
            np.mean(s["AdamW"]["selected_test_error"])
            < np.mean(s["Adam + L2"]["selected_test_error"]))
    reproduced = None if ctx.quick else all(checks.values())

    # --- figures --------------------------------------------------------------------------
    heatmaps(ctx, maps, stats, archs, log_lr, log_wd, norm, S, epochs)
    best_bars(ctx, stats, archs, S)

    # --- summary --------------------------------------------------------------------------
    rows = []
    for arch in archs:
        for m in METHODS:
            st = stats[arch][m]
            sel = st["selected"]
            rows.append([ARCHS[arch], m, f"{st['slope']:+.2f} (r = {st['r']:+.2f})",
                         f"{np.mean(st['slope_per_seed']):+.2f} ± "
                         f"{np.std(st['slope_per_seed']):.2f}",
                         f"{st['interaction_share']:.2f}", f"{st['edge_columns']}",
                         f"α = {10 ** sel['log_lr']:.3g}, λ = {10 ** sel['log_wd']:.2g}",
                         fmt_pm(st["selected_test_error"], 100)])
    table = markdown_table(
        ["network", "method", "slope d log λ*/d log α (mean map)",
         "slope, one seed's map (mean ± std)", "interaction share",
         "α columns with λ* at the grid's edge",
         "selected on validation", "test error % (mean ± std)"], rows)
    diffs = []
    for arch in archs:
        a = np.asarray(stats[arch]["AdamW"]["selected_test_error"]) * 100
        b = np.asarray(stats[arch]["Adam + L2"]["selected_test_error"]) * 100
        pooled = math.sqrt((a.var() + b.var()) / 2)
        diffs.append(f"{ARCHS[arch]}: AdamW − (Adam + L2) = {a.mean() - b.mean():+.1f} points "
                     f"(pooled std {pooled:.1f}: "
                     + ("larger than" if abs(a.mean() - b.mean()) > pooled else "within")
                     + " the seed-to-seed spread)")
    verdict_lines = "\n".join(f"- {k}: {'yes' if v else 'no'}" for k, v in checks.items())
    optax_note = ", ".join(
        f"{ARCHS[a]} {m} {stats[a][m]['slope_optax_parameterization']:+.2f}"
        for a in archs for m in ("AdamW", "SGDW"))
    summary = (
        f"MNIST-1D, {epochs} epochs, cosine decay, batch {BATCH}, {len(pick)} × {len(pick)} "
        f"grid of learning rate α × weight decay λ per method, {S} seeds "
        f"({'quick mode: a 1,024-example subset, too small to decide' if ctx.quick else 'full'})."
        "\n\nPaper (Loshchilov & Hutter 2019, Fig. 2, CIFAR-10, 26 2x64d ResNet): with L2 the "
        "best λ moves with α (a diagonal valley); with decoupled decay the good region is "
        "axis-aligned (slope ≈ 0), and AdamW reaches a lower test error than Adam + L2 "
        "(\"substantially improves Adam's generalization performance\").\n\n"
        "Slope of the best log λ per learning rate against log α (0 = separable), the share "
        "of the log-error heatmap an additive model cannot explain, and the val-selected cell's "
        "test error:\n\n" + table +
        f"\n\nIn optax's parameterization (λ' = λ/α) the decoupled slopes would be: "
        f"{optax_note}. Normalized weight decay: λ_norm = λ / {norm:.4f}. Test error "
        "difference of the val-selected settings: " + "; ".join(diffs) + ".\n\n"
        "Checks (each decided from the measurements):\n" + verdict_lines + "\n\n"
        + "".join(
            f"{ARCHS[a]}: "
            + ("every part holds." if all(v for k, v in checks.items() if k.startswith(a + ":"))
               else "fails: " + "; ".join(k.split(": ", 1)[1] for k, v in checks.items()
                                         if k.startswith(a + ":") and not v) + ".")
            + "\n" for a in archs)
        + ("\nVerdict: the quick mode is too small to decide." if ctx.quick else
           f"\nVerdict: {'reproduced' if reproduced else 'not reproduced'} — every check must "
           "hold on both networks.")
    )
    results = {
        "dataset": data.name, "epochs": epochs, "batch_size": BATCH, "seeds": seeds,
        "schedule": "cosine decay to 0 (both terms)", "momentum": MOMENTUM,
        "log10_lr": {("adam" if f == 0 else "sgd"): list(v) for f, v in log_lr.items()},
        "log10_wd": {("adam" if f == 0 else "sgd"): list(v) for f, v in log_wd.items()},
        "wd_parameterization": "decoupled: paper's λ (optlab weight_decay = λ/α); "
                               "coupled: L2 factor added to the gradient",
        "normalized_wd_factor": norm,
        "test_error": {a: {m: maps[a][m]["test_error"].tolist() for m in METHODS}
                       for a in archs},
        "val_error": {a: {m: maps[a][m]["val_error"].tolist() for m in METHODS}
                      for a in archs},
        "train_error_last_epoch": {a: {m: maps[a][m]["train_error"].tolist()
                                       for m in METHODS} for a in archs},
        "stats": stats, "timing": timing,
    }
    return Outcome(reproduced, summary, results, checks)


def heatmaps(ctx, maps, stats, archs, log_lr, log_wd, norm, S, epochs) -> None:
    fig, axes = reproduce.figure(len(archs), len(METHODS), width=3.6, height=3.3)
    for row, arch in enumerate(archs):
        means = {m: mean_std(maps[arch][m]["test_error"], axis=2)[0] * 100 for m in METHODS}
        lo = min(np.nanmin(v) for v in means.values())
        hi = lo + 25.0
        for col, m in enumerate(METHODS):
            ax = axes[row, col]
            f = FAMILY[m]
            err = means[m]
            im = ax.imshow(np.where(np.isfinite(err), err, hi), origin="lower", cmap="viridis_r",
                           vmin=lo, vmax=hi, aspect="auto")
            for i in range(err.shape[0]):
                for j in range(err.shape[1]):
                    txt = "div" if not np.isfinite(err[i, j]) else f"{err[i, j]:.0f}"
                    ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                            color="black" if np.isfinite(err[i, j]) and err[i, j] < lo + 15
                            else "white")
            step = log_wd[f][1] - log_wd[f][0]
            yb = (np.asarray(stats[arch][m]["best_log_wd_per_lr"]) - log_wd[f][0]) / step
            ax.plot(np.arange(len(log_lr[f])), yb, "o-", color="red", lw=1.5, ms=4,
                    label="best λ per α (parabolic refinement)")
            sel = stats[arch][m]["selected"]
            ax.plot(log_lr[f].index(sel["log_lr"]), log_wd[f].index(sel["log_wd"]), "*",
                    color="orange", ms=13, mec="k", label="selected on validation")
            ax.set_xticks(range(len(log_lr[f])),
                          [f"{10 ** v:.2g}" for v in log_lr[f]], fontsize=7)
            ax.set_yticks(range(len(log_wd[f])),
                          [f"{10 ** v:.1e}" for v in log_wd[f]], fontsize=7)
            ax.set_xlabel("initial learning rate α")
            ax.set_ylabel("L2 factor λ" if not DECOUPLED[m] else "decoupled λ (paper's)")
            ax.set_title(f"{ARCHS[arch]}\n{m}: slope {stats[arch][m]['slope']:+.2f}",
                         fontsize=9)
            if col == len(METHODS) - 1:
                fig.colorbar(im, ax=ax, label=f"test error % (mean of {S} seeds)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=8)
    fig.suptitle(f"Final test error, MNIST-1D, {epochs} epochs cosine: is the good region "
                 "axis-aligned (slope 0) with decoupled decay?")
    ctx.save_figure(fig, "weight_decay_heatmaps", dpi=90)


def best_bars(ctx, stats, archs, S) -> None:
    fig, axes = reproduce.figure(1, 1, width=6.0, height=3.6)
    ax = axes[0, 0]
    width = 0.8 / len(archs)
    colors = {"mlp_bn": "tab:blue", "mlp": "tab:gray"}
    for k, arch in enumerate(archs):
        ms = [mean_std(np.asarray(stats[arch][m]["selected_test_error"]) * 100) for m in METHODS]
        x = np.arange(len(METHODS)) + (k - (len(archs) - 1) / 2) * width
        ax.bar(x, [float(a) for a, _ in ms], width, yerr=[float(b) for _, b in ms],
               capsize=3, color=colors[arch], label=ARCHS[arch])
    ax.set_xticks(range(len(METHODS)), METHODS)
    ax.set_ylabel(f"test error % (mean ± std, {S} seeds)")
    ax.set_title("Best setting per method (selected on validation):\n"
                 "does AdamW beat Adam + L2?")
    lows = [np.min(stats[a][m]["selected_test_error"]) * 100 for a in archs for m in METHODS]
    ax.set_ylim(max(0.0, min(lows) - 8), None)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ctx.save_figure(fig, "weight_decay_best")


EXPERIMENT = Experiment(
    name="weight_decay",
    title="Decoupled weight decay (AdamW, SGDW)",
    claim="Decoupling weight decay from the gradient step makes the best weight decay "
    "independent of the learning rate (an axis-aligned rather than diagonal good region, for "
    "SGD and Adam), and AdamW generalises better than Adam with L2 regularization.",
    source="Loshchilov & Hutter, ICLR 2019 (Fig. 2)",
    run=run,
    quick_asserts=(),  # a 3 × 3 grid on 1,024 examples for 4 epochs cannot decide any part
    seeds=3,
)

if __name__ == "__main__":
    sys.exit(reproduce.main(EXPERIMENT))
