"""Adaptive vs non-adaptive generalisation (Wilson, Roelofs, Stern, Srebro & Recht, NeurIPS
2017, "The Marginal Value of Adaptive Gradient Methods in Machine Learning").

**The paper.** SGD, heavy-ball momentum (HB), AdaGrad, RMSProp and Adam on CIFAR-10 (VGG),
character-level language modelling and parsing, each method's initial learning rate tuned
on a grid of 2^k (five consecutive k, moved when the best was at an edge) together with its
decay scheme, the best chosen on a development set. Claims: the adaptive methods reach a
similar or lower training loss than SGD / HB but a worse test accuracy (CIFAR-10 test error:
SGD 7.65 ± 0.14 %, the best adaptive method, RMSProp, 9.60 ± 0.19 %).

**What we run.** SGD, momentum (heavy ball, 0.9), Adam (β = 0.9, 0.999) and RMSprop
(ρ = 0.9) on two tasks with optlab's MLP (2 × 100 ReLU, second layer residual): MNIST-1D
(3,600 train / 400 validation / 1,000 test, 60 epochs) and the UCI digits (1,294 / 143 / 360,
100 epochs); batch 128. The same tuning for every method: 9 learning rates 2^k (consecutive
k, placed per method around its usual range: SGD 2^-6..2^2, momentum 2^-9..2^-1, Adam and
RMSprop 2^-11..2^-3), the same decay scheme for all (× 0.1 at 50 % and 75 % of training),
3 seeds. Selection uses the validation split only (:func:`select`): each method's learning
rate is the one with the best mean final validation accuracy, and each family's
representative (best adaptive, best non-adaptive) is the method whose selected setting has
the better validation accuracy. For the selected runs we evaluate the final model on the
whole training set (loss and accuracy) and on the test set, and report the gap train − test
accuracy, mean ± std over seeds. All methods of one task train in one compiled program
(``optlab.train`` over method × learning rate × seed; a ``lax.switch`` picks the optimizer
of each run).

**Checks** (per task, best adaptive vs best non-adaptive, :func:`optlab.reproduce.decide`:
decided when the difference exceeds 2 standard errors over seeds, else undecided): the
adaptive method tests worse; its training loss is lower or within 0.05 nats; its train–test
gap is larger. The verdict is :func:`optlab.reproduce.verdict_of` over all of them.

**What differs from the paper.** Small tasks and a 2-layer MLP instead of CIFAR-10 / VGG
(2 CPU cores); one fixed decay scheme instead of a tuned one; no AdaGrad.

**Accelerator configuration** (``--accelerator``, not run here): CIFAR-10 read from a local
copy (``$OPTLAB_CIFAR10_DIR``, see :func:`optlab.tasks.load_dataset`; 45,000 train / 5,000
validation / the official 10,000 test), optlab's ``wrn`` (WRN-16-4; optlab has no VGG),
250 epochs (the length of the paper's CIFAR-10 curves), no data augmentation (``optlab.train``
has none), everything else as above: 4 methods × 9 learning rates × 3 seeds = 108 runs.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import optlab
from optlab import reproduce
from optlab.reproduce import (
    Context,
    Experiment,
    Outcome,
    decide,
    fmt_pm,
    markdown_table,
    mean_std,
    select,
    significant,
    verdict_of,
)
from optlab.schedules import piecewise_constant
from optlab.search.run import with_train_size
from optlab.tasks import load_dataset
from optlab.train import train

BATCH = 128
METHODS = ("SGD", "Momentum", "Adam", "RMSprop")
ADAPTIVE = {"SGD": False, "Momentum": False, "Adam": True, "RMSprop": True}
LOG2_LR = {"SGD": tuple(range(-6, 3)), "Momentum": tuple(range(-9, 0)),
           "Adam": tuple(range(-11, -2)), "RMSprop": tuple(range(-11, -2))}
LOSS_TOLERANCE = 0.05  # nats: "similar" training loss
EVAL_CHUNK = 1000
COLORS = {"SGD": "tab:blue", "Momentum": "tab:green", "Adam": "tab:red", "RMSprop": "tab:orange"}


@dataclass(frozen=True)
class Config:
    """One size of the experiment: ``tasks`` (data set, epochs) pairs, the indices into each
    method's ``LOG2_LR`` grid, the model and an optional training subset."""

    tasks: tuple[tuple[str, int], ...]
    lr_index: tuple[int, ...] = tuple(range(9))
    model: str = "mlp"
    train_size: int | None = None


def config(quick: bool = False, accelerator: bool = False) -> Config:
    """The quick (CI), full (CPU) or accelerator (paper-scale, CIFAR-10) configuration."""
    if quick:
        return Config(tasks=(("mnist1d", 6),), lr_index=(3, 6), train_size=512)
    if accelerator:
        return Config(tasks=(("cifar10", 250),), model="wrn")
    return Config(tasks=(("mnist1d", 60), ("digits", 100)))


def optimizers(method, i_lr, *, total_steps: int, log2_lr: tuple
               ) -> optax.GradientTransformation:
    """``METHODS[method]`` with learning rate 2^``log2_lr[method][i_lr]`` (traced indices),
    multiplied by 0.1 at 50 % and by 0.01 from 75 % of ``total_steps``."""
    m = jnp.asarray(method).astype(jnp.int32)
    lr = 2.0 ** jnp.asarray(log2_lr, jnp.float32)[m, jnp.asarray(i_lr).astype(jnp.int32)]
    decay = piecewise_constant([total_steps // 2, (3 * total_steps) // 4], [1.0, 0.1, 0.01])

    def schedule(step):
        return lr * decay(step)

    return optlab.one_of(m, (optlab.sgd(schedule), optlab.sgd(schedule, momentum=0.9),
                      optlab.adam(schedule), optlab.rmsprop(schedule)))


@nnx.jit
def _sums(model: nnx.Module, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits = model(x)
    return (optax.softmax_cross_entropy_with_integer_labels(logits, y).sum(),
            (jnp.argmax(logits, -1) == y).sum())


def evaluate(model: nnx.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (x, y), in chunks (one compiled
    program per chunk shape)."""
    loss = correct = 0.0
    for i in range(0, len(y), EVAL_CHUNK):
        lo, co = _sums(model, jnp.asarray(x[i:i + EVAL_CHUNK]), jnp.asarray(y[i:i + EVAL_CHUNK]))
        loss, correct = loss + float(lo), correct + float(co)
    return loss / len(y), correct / len(y)


# ------------------------------------------------------------------------------------------
# Measurements, checks, summary
# ------------------------------------------------------------------------------------------


def measure_task(ctx: Context, cfg: Config, task: str, epochs: int, seeds: list[int]) -> dict:
    """Trains the grid on one task and evaluates each method's selected runs."""
    data = with_train_size(load_dataset(task), cfg.train_size)
    n, S = len(cfg.lr_index), len(seeds)
    total_steps = epochs * (len(data.y_train) // BATCH)
    ctx.log(f"{task}: {len(METHODS)} methods × {n} learning rates × {S} seeds, "
            f"{epochs} epochs")
    table = tuple(LOG2_LR[m] for m in METHODS)
    result = train(data, cfg.model,
                   functools.partial(optimizers, total_steps=total_steps, log2_lr=table),
                   hyperparams={"method": list(range(len(METHODS))),
                                "i_lr": list(cfg.lr_index)},
                   seeds=seeds, epochs=epochs, batch_size=BATCH, progress=ctx.progress,
                   checkpoint_dir=None if ctx.quick else ctx.checkpoint_dir(task))
    shape = (len(METHODS), n, S)  # runs: method, lr, seed (fastest)
    div = result.diverged.reshape(shape)
    val, val_loss = (np.where(div, np.nan, result.history[k][:, -1].reshape(shape))
                     for k in ("val_accuracy", "val_loss"))
    per_task = {"epochs": epochs, "n_train": len(data.y_train), "methods": {}}
    for k, m in enumerate(METHODS):
        i = select(val[k], val_loss[k])
        runs = [(k * n + i) * S + s for s in range(S)]
        train_eval = [evaluate(result.model(r), data.x_train, data.y_train) for r in runs]
        test_eval = [evaluate(result.model(r), data.x_test, data.y_test) for r in runs]
        train_acc = np.asarray([a for _, a in train_eval])
        test_acc = np.asarray([a for _, a in test_eval])
        per_task["methods"][m] = {
            "selected_log2_lr": LOG2_LR[m][cfg.lr_index[i]], "at_grid_edge": i in (0, n - 1),
            "val_accuracy_per_lr": val[k].tolist(), "val_loss_per_lr": val_loss[k].tolist(),
            "val_accuracy": val[k, i].tolist(), "val_loss": val_loss[k, i].tolist(),
            "train_loss": [lo for lo, _ in train_eval], "train_accuracy": train_acc.tolist(),
            "test_loss": [lo for lo, _ in test_eval], "test_accuracy": test_acc.tolist(),
            "gap": (train_acc - test_acc).tolist(),
            "curves": {key: result.history[key][runs].tolist()
                       for key in ("train_loss", "test_accuracy")},
        }
    ms = per_task["methods"]
    for family, adaptive in (("best_adaptive", True), ("best_non_adaptive", False)):
        names = [m for m in METHODS if ADAPTIVE[m] == adaptive]
        pick = select([ms[m]["val_accuracy"] for m in names], [ms[m]["val_loss"] for m in names])
        per_task[family] = names[pick]
    return per_task


def task_checks(task: str, per_task: dict) -> dict[str, bool | None]:
    """The three parts of the claim on one task, each decided over seeds or undecided."""
    a = per_task["methods"][per_task["best_adaptive"]]
    b = per_task["methods"][per_task["best_non_adaptive"]]
    return {
        f"{task}: the best adaptive method tests worse than the best non-adaptive":
            decide(b["test_accuracy"], a["test_accuracy"]),
        f"{task}: its training loss is similar (≤ +{LOSS_TOLERANCE} nats) or lower":
            decide(a["train_loss"], b["train_loss"], margin=-LOSS_TOLERANCE,
                   higher_is_better=False),
        f"{task}: its train–test accuracy gap is larger": decide(a["gap"], b["gap"]),
    }


def difference_text(a, b, scale: float = 100.0) -> str:
    """``"+1.2 points (z = +2.5)"``: mean(a) − mean(b) and that difference over its standard
    error (2 standard errors: decided; see :func:`optlab.reproduce.decide`)."""
    diff, z = significant(a, b)
    return f"{diff * scale:+.1f} points (z = {z:+.1f})"


def summary_text(cfg: Config, out: dict, checks: dict, reproduced, quick: bool, S: int) -> str:
    rows = []
    for task, per_task in out.items():
        for m in METHODS:
            r = per_task["methods"][m]
            edge = " (grid edge)" if r["at_grid_edge"] else ""
            mark = " ★" if m in (per_task["best_adaptive"], per_task["best_non_adaptive"]) else ""
            rows.append([task, m + mark, f"2^{r['selected_log2_lr']}{edge}",
                         fmt_pm(r["val_accuracy"], 100), _pm_g(r["train_loss"]),
                         fmt_pm(r["train_accuracy"], 100), fmt_pm(r["test_accuracy"], 100),
                         fmt_pm(r["gap"], 100)])
    pairs = []
    for task, per_task in out.items():
        a = per_task["methods"][per_task["best_adaptive"]]
        b = per_task["methods"][per_task["best_non_adaptive"]]
        same = (np.allclose(a["train_accuracy"], 1.0) and np.allclose(b["train_accuracy"], 1.0))
        pairs.append(f"{task}: best adaptive {per_task['best_adaptive']} − best non-adaptive "
                     f"{per_task['best_non_adaptive']}: test accuracy "
                     f"{difference_text(a['test_accuracy'], b['test_accuracy'])}, gap "
                     f"{difference_text(a['gap'], b['gap'])}"
                     + (" (every run fits its training set, so the gap check repeats the "
                        "test check)" if same else ""))
    edges = [f"{m} on {task} (2^{per_task['methods'][m]['selected_log2_lr']})"
             for task, per_task in out.items() for m in METHODS
             if per_task["methods"][m]["at_grid_edge"]]
    edge_note = ("\n\nSelected at the edge of its grid: " + ", ".join(edges) + " — the paper "
                 "would extend the grid there; here every method keeps the same number of "
                 "learning rates, so those methods may be slightly under-tuned."
                 if edges else "")
    lines = "\n".join(f"- {k}: {_yes(v)}" for k, v in checks.items())
    held = {t: verdict_of({k: v for k, v in checks.items() if k.startswith(t + ":")})
            for t in out}
    per = "; ".join(f"{t}: {reproduce.verdict(v)}" for t, v in held.items())
    return (
        f"optlab's `{cfg.model}`, batch {BATCH}, {S} seeds, each method's learning rate "
        f"selected from {len(cfg.lr_index)} powers of two on final validation accuracy, the "
        "same step decay (× 0.1 at 50 % and 75 %) for all"
        + (f" (quick mode: {cfg.train_size} training examples, too small to decide)"
           if quick else "") +
        ".\n\nPaper (Wilson et al. 2017, CIFAR-10 / VGG): adaptive methods reach a similar or "
        "lower training loss but generalise worse — test error SGD 7.65 ± 0.14 % vs RMSProp "
        "(the best adaptive method) 9.60 ± 0.19 %.\n\n"
        + markdown_table(["task", "method (★ family's best on validation)", "selected lr",
                          "val accuracy %", "final train loss", "train accuracy %",
                          "test accuracy %", "gap (train − test) pts"], rows)
        + edge_note + "\n\nDifferences (z: the difference over its standard error, "
        f"{S} seeds each; |z| > 2 decides): " + "; ".join(pairs) + ".\n\nChecks (best "
        "adaptive vs best non-adaptive method, both chosen on validation; yes / no when "
        "decided by more than 2 standard errors, undecided otherwise):\n" + lines + "\n\n"
        + ("Verdict: the quick mode is too small to decide." if quick else
           f"Per task: {per}. Verdict: {reproduce.verdict(reproduced)} (a part that fails "
           "fails the claim; an undecided part leaves it undecided).")
    )


def _pm_g(values) -> str:
    """``"mean ± std"`` (sample std) with 3 and 2 significant digits (losses near 0)."""
    m, sd = mean_std(values)
    return f"{float(m):.3g} ± {float(sd):.2g}"


def _yes(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "undecided (within 2 standard errors)"}[value]


def run(ctx: Context) -> Outcome:
    cfg = config(ctx.quick, ctx.accelerator)
    seeds = ctx.seeds
    out = {task: measure_task(ctx, cfg, task, epochs, seeds) for task, epochs in cfg.tasks}
    checks: dict[str, bool | None] = {}
    for task, per_task in out.items():
        checks.update(task_checks(task, per_task))
    reproduced = None if ctx.quick else verdict_of(checks)
    bars_figure(ctx, out, len(seeds))
    curves_figure(ctx, out, len(seeds))
    summary = summary_text(cfg, out, checks, reproduced, ctx.quick, len(seeds))
    results = {"batch_size": BATCH, "seeds": seeds, "model": cfg.model,
               "train_size": cfg.train_size,
               "log2_lr_grid": {m: [LOG2_LR[m][i] for i in cfg.lr_index] for m in METHODS},
               "selection": "highest mean final validation accuracy; a setting with a diverged "
                            "seed is not selectable; ties by the lower validation loss",
               "decay": "x0.1 at 50% and x0.01 from 75% of the steps", "tasks": out}
    return Outcome(reproduced, summary, results, checks)


def bars_figure(ctx: Context, out: dict, S: int) -> None:
    fig, axes = reproduce.figure(1, len(out), width=5.0, height=3.8)
    for col, (task, per_task) in enumerate(out.items()):
        ax = axes[0, col]
        x = np.arange(len(METHODS))
        for off, key, hatch, label in ((-0.2, "train_accuracy", "//", "train"),
                                       (0.2, "test_accuracy", "", "test")):
            ms = [mean_std(np.asarray(per_task["methods"][m][key]) * 100) for m in METHODS]
            ax.bar(x + off, [float(a) for a, _ in ms], 0.38, yerr=[float(b) for _, b in ms],
                   capsize=3, color=[COLORS[m] for m in METHODS], hatch=hatch,
                   alpha=0.55 if key == "train_accuracy" else 1.0, edgecolor="k",
                   label=f"{label} accuracy")
        lo = min(np.min(per_task["methods"][m]["test_accuracy"]) for m in METHODS) * 100
        bottom = max(0.0, lo - 10)
        for j, m in enumerate(METHODS):
            g = np.mean(per_task["methods"][m]["gap"]) * 100
            ax.text(j, 100 + 0.02 * (100 - bottom), f"gap {g:.1f}", ha="center", va="bottom",
                    fontsize=7)
        ax.set_ylim(bottom, 100 + 0.1 * (100 - bottom))
        ax.set_xticks(x, METHODS)
        ax.set_ylabel(f"accuracy % (mean ± std, {S} seeds)")
        ax.set_title(f"{task} (train hatched, test solid)")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Tuned equally, do adaptive methods (Adam, RMSprop) fit as well "
                 "but test worse?")
    ctx.save_figure(fig, "generalization_accuracy")


def curves_figure(ctx: Context, out: dict, S: int) -> None:
    fig, axes = reproduce.figure(2, len(out), width=4.8, height=3.3)
    for col, (task, per_task) in enumerate(out.items()):
        for row, (key, label) in enumerate((("train_loss", "training loss (epoch mean)"),
                                            ("test_accuracy", "test accuracy %"))):
            ax = axes[row, col]
            for m in METHODS:
                r = per_task["methods"][m]
                c = np.asarray(r["curves"][key]) * (100 if key == "test_accuracy" else 1)
                mu, sd = mean_std(c)
                x = np.arange(1, len(mu) + 1)
                ax.plot(x, mu, color=COLORS[m], lw=1.3,
                        label=f"{m} (lr 2^{r['selected_log2_lr']})")
                ax.fill_between(x, mu - sd, mu + sd, color=COLORS[m], alpha=0.18)
            if key == "train_loss":
                ax.set_yscale("log")
            else:
                lo = min(np.nanmax(np.asarray(per_task["methods"][m]["curves"][key]))
                         for m in METHODS) * 100
                ax.set_ylim(lo - 15, None)
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.set_title(f"{task}, selected learning rates ({S} seeds)")
            ax.grid(alpha=0.3)
            if row == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Training loss and test accuracy during training (decay at 50 % and 75 %)")
    ctx.save_figure(fig, "generalization_curves")


EXPERIMENT = Experiment(
    name="generalization",
    title="Adaptive vs non-adaptive generalisation",
    claim="With the same tuning, adaptive methods (Adam, RMSprop) reach a similar or lower "
    "training loss than SGD and momentum but a worse test accuracy (a larger train–test "
    "gap).",
    source="Wilson, Roelofs, Stern, Srebro & Recht, NeurIPS 2017",
    run=run,
    quick_asserts=(),  # 6 epochs on 512 examples cannot decide any part of the claim
    seeds=3,
    accelerator="the paper's task, CIFAR-10 (a local copy: `$OPTLAB_CIFAR10_DIR`), with "
    "optlab's WRN-16-4 (optlab has no VGG) for 250 epochs, no augmentation, the same 4 methods "
    "× 9 learning rates × 3 seeds (108 runs).",
)

if __name__ == "__main__":
    sys.exit(reproduce.main(EXPERIMENT))
