"""Adam with and without a global learning-rate decay.

The question (Stack Overflow 39517431, "Should we do learning rate decay for adam
optimizer"): Adam already adapts a step size per parameter, so does a global decay of its
learning rate still help? One answer says it "usually [is] not necessary", another that it
is "very useful" and shows TF's ``tf.train.exponential_decay(learning_rate, global_step,
10000, 0.95, staircase=True)``; the issue's example is the smooth per-step form
``exponential_decay(0.15, step, 1, 0.9999)``. Kingma & Ba's own convergence analysis uses
α_t = α/√t. The folk claim under test: a global decay improves Adam's final test accuracy
and loss. There are no published numbers to compare with: the claim is qualitative.

What we run: Adam (β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁸) on MNIST-1D with the MNIST-1D MLP (40
epochs) and on UCI digits with the same MLP (60 epochs), batch 128, 3 seeds, with five
learning-rate schedules η_t = η₀·s(t), t = update count from 0, T = total updates:

* constant: s = 1;
* exponential, smooth (TF ``exponential_decay``, ``staircase=False``): s = r^(t/D);
* exponential, staircase (``staircase=True``): s = r^⌊t/D⌋, with D = T/5 and r = f^(1/5)
  for both. The last update is t = T − 1, so the smooth form ends at s(T − 1) = f^((T−1)/T),
  just above f, while the staircase drops only 4 times (at t = D, 2D, 3D, 4D; the fifth drop
  would be at t = T) and ends at f^(4/5), e.g. 0.158 for f = 0.1; the table shows each
  schedule's last multiplier s(T − 1). (The smooth form with D = T/5 is the same function as
  D = 1 with rate r^(5/T), the issue's per-step form: 0.9999 per step is f = 0.9999^T);
* inverse time (TF ``inverse_time_decay``): s = 1/(1 + k·t/D), D = one epoch,
  k = (1/f − 1)·D/T, so s(T) = f;
* inverse square root (Kingma & Ba's α/√t, shifted to start at 1): s = 1/√(1 + t/τ),
  τ = T/(1/f² − 1), so s(T) = f.

Tuning, the same budget for every schedule (12 configurations × 3 seeds): each decayed
schedule gets η₀ ∈ 10^{−3, −2.5, ..., −0.5} (6 values) × final factor f ∈ {0.1, 0.01}; the
constant schedule gets 12 learning rates over the same range, 10^(−3 + 2.5k/11), k = 0..11.
This is our third grid. The first (10^−3.5..10^−1.5, 8 configurations each) and the second
(10^−3.5..10^−1, 12 each) both had every decayed schedule select its largest η₀ on MNIST-1D,
so they did not bracket the decayed schedules' optimum; we moved the range up for all
schedules alike, and stop here whatever this grid selects (the table marks any selected η₀
on the edge of its grid). Final test accuracy on MNIST-1D in those runs: constant 63.8 ± 1.2
and 63.2 ± 2.0 %, the four decays 57.5–60.7 and 59.6–63.8 %; on digits (optimum inside the
grid both times) constant 96.7 ± 0.2 and 96.9 ± 0.2 %, decays 96.7–97.2 and 96.3–96.9 %; no
decay beat the constant schedule by 2 standard errors in either run.

Each schedule's configuration is chosen by ``select`` on the final-epoch validation accuracy
(mean over seeds; a configuration at which a seed diverged cannot be selected; ties by
validation loss) on a 10 % validation split of the training set; we report the held-out test
set at the final epoch (the decay question is about the end of training), and, for
reference, the test accuracy at each run's best validation epoch (early stopping).

"Helps" (each check, ``reproduce.decide``): the schedule's mean final test accuracy (or, for
the loss checks, final training or test loss) beats the constant schedule's by more than 2
standard errors of the difference, √(s₁²/n + s₂²/n) over n = 3 seeds each: True; worse by
more than 2 standard errors: False; within that: None (undecided). Verdict
(``reproduce.verdict_of`` on the accuracy checks): reproduced when every decayed schedule
improves the final test accuracy on both data sets; not reproduced when one of them is
significantly worse; undecided otherwise (the table shows which did what).

Quick mode (CI): 1,000 MNIST-1D training examples, 3 epochs, 2 configurations per schedule
(constant: 2 learning rates; decayed: 2 learning rates × f = 0.01), digits left out; it
decides nothing (``reproduced`` is None).

Differences from the question: MLPs on small data sets instead of an image-localisation
network; decays are parameterised by their final factor f over a fixed run (TF users pick
decay_steps and rate by hand), so that all schedules span the same range of learning rates.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import jax.numpy as jnp
import numpy as np

import optlab
from optlab import reproduce
from optlab.reproduce import (
    Context,
    Experiment,
    Outcome,
    decide,
    fmt_pm,
    markdown_table,
    masked,
    mean_std,
    select,
    significant,
    verdict_of,
)
from optlab.search.run import with_train_size
from optlab.tasks import load_dataset
from optlab.train import train

SCHEDULES = ("constant", "exp_smooth", "exp_staircase", "inverse_time", "inverse_sqrt")
LABELS = {"constant": "constant", "exp_smooth": "exponential (smooth)",
          "exp_staircase": "exponential (staircase)", "inverse_time": "inverse time 1/(1+kt)",
          "inverse_sqrt": "inverse sqrt 1/√(1+t/τ)"}
COLORS = {"constant": "black", "exp_smooth": "tab:blue", "exp_staircase": "tab:cyan",
          "inverse_time": "tab:red", "inverse_sqrt": "tab:orange"}
STAIRS = 5  # staircase: decay_steps = T / STAIRS


def multiplier(kind, factor, step, total_steps: int, steps_per_epoch: int):
    """s(t) of schedule ``kind`` (an index into SCHEDULES; may be traced) ending at
    ``factor`` after ``total_steps`` updates (see the module docstring)."""
    t = jnp.asarray(step, jnp.float32)
    f = jnp.asarray(factor, jnp.float32)
    T = float(total_steps)
    D = max(1, round(T / STAIRS))
    rate = f ** (D / T)
    k = (1.0 / f - 1.0) * steps_per_epoch / T
    tau = T / (1.0 / f**2 - 1.0)
    values = jnp.stack([
        jnp.ones_like(t),                                   # constant
        rate ** (t / D),                                    # exponential, smooth
        rate ** jnp.floor(t / D),                           # exponential, staircase
        1.0 / (1.0 + k * t / steps_per_epoch),              # inverse time
        1.0 / jnp.sqrt(1.0 + t / tau),                      # inverse square root
    ])
    return values[jnp.asarray(kind, jnp.int32)]


def configurations(quick: bool) -> list[tuple[str, float, float]]:
    """(schedule, η₀, f) for every configuration of the tuning grid: the same number for
    every schedule."""
    if quick:
        decayed_lrs, factors, constant_lrs = (1e-3, 1e-2), (0.01,), (1e-3, 1e-2)
    else:
        decayed_lrs = tuple(float(10 ** (-3 + k / 2)) for k in range(6))
        factors = (0.1, 0.01)
        constant_lrs = tuple(float(10 ** (-3 + 2.5 * k / 11)) for k in range(12))
    configs = [("constant", lr, 1.0) for lr in constant_lrs]
    for kind in SCHEDULES[1:]:
        configs += [(kind, lr, f) for lr in decayed_lrs for f in factors]
    return configs


def adam_scheduled(config, *, table, total_steps: int, steps_per_epoch: int):
    """Adam whose learning rate is row ``config`` of ``table`` = (kind, η₀, f): the whole
    grid of schedules is one compiled program (``config`` is a traced scalar)."""
    row = jnp.asarray(table, jnp.float32)[jnp.asarray(config, jnp.int32)]
    kind, lr0, factor = row[0], row[1], row[2]

    def learning_rate(step):
        return lr0 * multiplier(kind, factor, step, total_steps, steps_per_epoch)

    return optlab.adam(learning_rate)


def run_dataset(ctx: Context, name: str, epochs: int, configs, batch_size: int = 128):
    """Trains every configuration on data set ``name`` (one program) and summarises each
    schedule at its selected configuration."""
    data = load_dataset(name)
    if ctx.quick:
        data = with_train_size(data, 1000)
    steps_per_epoch = len(data.y_train) // batch_size
    total = steps_per_epoch * epochs
    table = np.array([[SCHEDULES.index(k), lr, f] for k, lr, f in configs], np.float32)
    optimizer = functools.partial(adam_scheduled, table=table, total_steps=total,
                                  steps_per_epoch=steps_per_epoch)
    ctx.log(f"{name}: {len(configs)} configurations × {len(ctx.seeds)} seeds, {epochs} epochs")
    result = train(data, "mlp", optimizer, hyperparams={"config": list(range(len(configs)))},
                   seeds=ctx.seeds, epochs=epochs, batch_size=batch_size,
                   checkpoint_dir=None if ctx.quick else ctx.checkpoint_dir(name),
                   progress=ctx.progress)
    n_seeds = len(ctx.seeds)
    hist = {k: v.reshape(len(configs), n_seeds, -1) for k, v in result.history.items()}
    final = {k: v[:, :, -1] for k, v in hist.items()}
    best_epoch_test = result.test_accuracy.reshape(len(configs), n_seeds)
    diverged = result.diverged.reshape(len(configs), n_seeds)

    chosen = {}
    for kind in SCHEDULES:
        idx = [i for i, c in enumerate(configs) if c[0] == kind]
        chosen[kind] = idx[select(masked(final["val_accuracy"][idx], diverged[idx]),
                                  final["val_loss"][idx])]

    lrs = {kind: [c[1] for c in configs if c[0] == kind] for kind in SCHEDULES}
    per = {}
    for kind, i in chosen.items():
        per[kind] = {
            "lr0": configs[i][1], "final_factor": configs[i][2],
            "last_multiplier": float(multiplier(SCHEDULES.index(kind), configs[i][2],
                                                total - 1, total, steps_per_epoch)),
            "lr0_on_grid_edge": configs[i][1] in (min(lrs[kind]), max(lrs[kind])),
            "val_accuracy": final["val_accuracy"][i].tolist(),
            "test_accuracy": final["test_accuracy"][i].tolist(),
            "test_loss": final["test_loss"][i].tolist(),
            "train_loss": final["train_loss"][i].tolist(),
            "best_epoch_test_accuracy": best_epoch_test[i].tolist(),
            "diverged": int(diverged[i].sum()),
            "curves": {m: hist[m][i].tolist() for m in ("train_loss", "test_accuracy")},
        }
    grid = [{"schedule": k, "lr0": lr, "final_factor": f,
             "val_accuracy": final["val_accuracy"][i].tolist(),
             "test_accuracy": final["test_accuracy"][i].tolist(),
             "train_loss": final["train_loss"][i].tolist(),
             "diverged": int(diverged[i].sum())}
            for i, (k, lr, f) in enumerate(configs)]
    return {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "total_steps": total,
            "train_examples": len(data.y_train), "val_examples": len(data.y_val),
            "test_examples": len(data.y_test), "selected": per, "grid": grid,
            "wall_time_s": result.wall_time}


def decide_checks(measured: dict[str, Any]) -> dict[str, bool | None]:
    """Each decayed schedule against the constant one, per data set: final test accuracy
    higher, final training and test loss lower (``reproduce.decide``: 2 standard errors over
    seeds; None within them). Also stores each difference and its z in ``vs_constant``."""
    checks: dict[str, bool | None] = {}
    for name, m in measured.items():
        base = m["selected"]["constant"]
        for kind in SCHEDULES:
            s = m["selected"][kind]
            s["vs_constant"] = {}
            for metric, higher in (("test_accuracy", True), ("train_loss", False),
                                   ("test_loss", False)):
                diff, z = significant(s[metric], base[metric])
                s["vs_constant"] |= {f"{metric}_diff": diff, f"{metric}_z": z}
                if kind != "constant":
                    short = "accuracy" if metric == "test_accuracy" else metric
                    checks[f"{name}_{kind}_{short}"] = decide(s[metric], base[metric],
                                                              higher_is_better=higher)
    return checks


def run(ctx: Context) -> Outcome:
    configs = configurations(ctx.quick)
    tasks = {"mnist1d": 3} if ctx.quick else {"mnist1d": 40, "digits": 60}
    measured = {name: run_dataset(ctx, name, epochs, configs) for name, epochs in tasks.items()}
    checks = decide_checks(measured)
    reproduced = None if ctx.quick else verdict_of(
        checks, [k for k in checks if k.endswith("_accuracy")])
    # for reference only (selected on the test set, so not a fair comparison): the best
    # mean final test accuracy anywhere in each schedule's grid, to show how much of the
    # differences is the validation-based selection
    oracle = {name: {kind: max(float(np.nanmean(g["test_accuracy"])) for g in m["grid"]
                               if g["schedule"] == kind) for kind in SCHEDULES}
              for name, m in measured.items()}
    _figures(ctx, measured)
    results = {"configurations": [list(c) for c in configs], "tasks": measured,
               "oracle_best_test_accuracy": oracle}
    return Outcome(reproduced, _summary(ctx, measured, checks, oracle, reproduced, configs),
                   results, checks)


def _summary(ctx: Context, measured: dict[str, Any], checks: dict[str, bool | None],
             oracle: dict[str, dict[str, float]], reproduced: bool | None, configs) -> str:
    rows = []
    for name, m in measured.items():
        for kind in SCHEDULES:
            s = m["selected"][kind]
            edge = s["lr0_on_grid_edge"]
            d_acc, z_acc = (s["vs_constant"][k] for k in ("test_accuracy_diff",
                                                           "test_accuracy_z"))
            rows.append([
                name, LABELS[kind], f"{s['lr0']:.2g}" + (" (grid edge)" if edge else ""),
                "—" if kind == "constant" else f"{s['final_factor']:g}",
                "—" if kind == "constant" else f"{s['last_multiplier']:.3g}",
                fmt_pm(s["test_accuracy"], 100), fmt_pm(s["best_epoch_test_accuracy"], 100),
                fmt_pm(s["test_loss"], 1, 3), fmt_pm(s["train_loss"], 1, 4),
                "—" if kind == "constant" else f"{100 * d_acc:+.1f} ({z_acc:+.1f} SE)",
                str(s["diverged"])])
    table = markdown_table(
        ["data set", "schedule", "η₀", "f", "last multiplier s(T−1)", "final test acc. %",
         "test acc. % at best val. epoch", "final test loss", "final train loss",
         "Δ final test acc. vs constant (pts)", "diverged runs"], rows)

    def which(suffix: str, value: bool) -> str:
        return ", ".join(f"`{k}`" for k, v in checks.items()
                         if k.endswith(suffix) and v is value) or "none"

    n_acc = sum(k.endswith("_accuracy") for k in checks)
    verdict = ("undecided (quick mode)" if ctx.quick else
               {True: "**reproduced**", False: "**not reproduced**",
                None: "**undecided**"}[reproduced])
    return (
        "Adam with a global learning-rate decay vs a constant learning rate; each schedule "
        f"tuned with the same budget ({len(configs) // len(SCHEDULES)} configurations × "
        f"{len(ctx.seeds)} seeds) on the final-epoch validation accuracy; final-epoch numbers, "
        f"mean ± std over {len(ctx.seeds)} seeds. f is the final factor the decay is "
        "parameterised by (s(T) = f); the last update uses s(T−1), which for the staircase is "
        f"f^({STAIRS - 1}/{STAIRS}). The claim (Stack Overflow folk wisdom; no published "
        "numbers): a global decay still helps Adam's final test accuracy and loss.\n\n"
        + table + "\n\n"
        + "A schedule \"helps\" when it beats the constant one by more than 2 standard "
        "errors of the difference, and is worse when it loses by more than that. Helped "
        f"final test accuracy: {which('_accuracy', True)} of {n_acc} (schedule, data set) "
        f"pairs; worse: {which('_accuracy', False)}; lowered final training loss: "
        f"{which('train_loss', True)}; lowered final test loss: {which('test_loss', True)}. "
        "For reference only (chosen on the test set, not a fair selection), the best "
        "mean final test accuracy anywhere in each schedule's grid: "
        + "; ".join(f"{name}: " + ", ".join(f"{LABELS[k]} {100 * v:.1f} %"
                                             for k, v in o.items())
                    for name, o in oracle.items())
        + ". Where these lie within a point or two of each other, the differences in the "
        "table come from which grid point a small validation set picked, not from the "
        f"schedule.\n\nVerdict: {verdict} (reproduced = every decayed schedule helps final "
        "test accuracy on both data sets; not reproduced = at least one is significantly "
        "worse than the constant rate).")


def _figures(ctx: Context, measured) -> None:
    n = len(measured)
    fig, axes = reproduce.figure(2, n, width=5.2, height=3.6)
    for col, (name, m) in enumerate(measured.items()):
        epochs = np.arange(1, m["epochs"] + 1)
        for row, (metric, ylabel) in enumerate((("train_loss", "training loss (log)"),
                                                ("test_accuracy", "test accuracy (%)"))):
            ax = axes[row, col]
            for kind, s in m["selected"].items():
                values = np.asarray(s["curves"][metric], float)
                if metric == "test_accuracy":
                    values = 100 * values
                mu, sd = mean_std(values)
                label = (f"{LABELS[kind]}, η₀={s['lr0']:.2g}"
                         + ("" if kind == "constant" else f", f={s['final_factor']:g}"))
                ax.plot(epochs, mu, color=COLORS[kind], label=label, lw=1.4)
                ax.fill_between(epochs, mu - sd, mu + sd, color=COLORS[kind], alpha=0.2)
            if metric == "train_loss":
                ax.set_yscale("log")
            else:
                last = [100 * np.nanmean(np.asarray(s["curves"][metric])[:, -1])
                        for s in m["selected"].values()]
                ax.set_ylim(min(last) - 8, min(100.5, max(last) + 4))
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(f"{name} MLP: {'training loss' if row == 0 else 'test accuracy'} "
                         f"(mean ± std, {len(ctx.seeds)} seeds)", fontsize=9)
            ax.grid(alpha=0.3)
        axes[0, col].legend(fontsize=6.5)
    fig.suptitle("Adam: does a global learning-rate decay help? (each schedule tuned on "
                 "validation, same budget)", fontsize=10)
    ctx.save_figure(fig, "lr_decay_curves", dpi=90)

    # the schedules themselves (as run on the first task)
    name, m = next(iter(measured.items()))
    fig, axes = reproduce.figure(1, 1, width=5.6, height=3.6)
    ax = axes[0, 0]
    steps = np.arange(m["total_steps"])
    for kind, s in m["selected"].items():
        mult = np.asarray(multiplier(SCHEDULES.index(kind), s["final_factor"], steps,
                                     m["total_steps"], m["steps_per_epoch"]))
        ax.plot(steps, s["lr0"] * mult, color=COLORS[kind], label=LABELS[kind])
    ax.set_yscale("log")
    ax.set_xlabel("update step t")
    ax.set_ylabel("learning rate η_t")
    ax.set_title(f"selected schedules on {name} (tuned η₀ and f)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ctx.save_figure(fig, "lr_decay_schedules")


EXPERIMENT = Experiment(
    name="lr_decay",
    title="Adam with and without learning-rate decay",
    claim="Although Adam adapts a step size per parameter, a global learning-rate decay "
    "(exponential, staircase or smooth; inverse time) still improves its final test "
    "accuracy and loss.",
    source="Stack Overflow 39517431 \"Should we do learning rate decay for adam "
    "optimizer\"; Kingma & Ba, ICLR 2015 (α_t = α/√t in their analysis)",
    run=run,
    quick_asserts=(),  # 3 epochs on 1,000 examples cannot tell schedules apart
    seeds=3,
)

if __name__ == "__main__":
    sys.exit(reproduce.main(EXPERIMENT))
