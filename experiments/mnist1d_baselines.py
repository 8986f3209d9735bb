"""MNIST-1D baselines (Greydanus 2020, "Scaling down deep learning", arXiv 2011.14439).

The paper's protocol, read from the mnist1d repository (``notebooks/train.py``:
``get_model_args`` and ``train_model``; ``notebooks/mnist1d-classification.ipynb``, the
notebook that produces the benchmark): PyTorch, ``torch.optim.Adam(lr=1e-2,
weight_decay=0)``, batch 100, ``total_steps = 6000`` (the notebook overrides the default
8000), all 4,000 training examples (no validation split), the inputs as generated (no
standardisation), PyTorch's default initialisation (weights and biases
U(−1/√fan_in, 1/√fan_in)), and the test accuracy printed at the last step, one run with seed
42. Models (``notebooks/models.py``): ``LinearBase`` (logistic regression), ``MLPBase``
(40 → 100 → 100 → 10, ReLU, the second hidden layer residual) and ``ConvBase`` (three stride-2
Conv1d with 25 channels, then a linear head); optlab's ``logreg``, ``mlp`` and ``cnn1d`` are
these models. Published test accuracy: logistic regression 32 %, MLP 68 %, CNN 94 %
(GRU 91 %, human 96 %).

What we run: the three models under that protocol, with optlab's Adam (same defaults as
PyTorch's: β = (0.9, 0.999), ε = 1e-8 outside the square root), 150 epochs of 40 batches =
6,000 steps, ``val_fraction=0`` and ``normalize=False``, the PyTorch initialisation
re-created below (``torch_init``), several seeds instead of one; the reported number is the
test accuracy after the last step. To explain why optlab's own MLP setting gives less (~63 %),
the MLP is also trained with each of optlab's defaults swapped in one at a time — a 10 %
validation split (3,600 training examples), standardised inputs, Flax's initialisation
(LeCun-normal kernels, zero biases), and optlab's CLI budget (20 epochs of batch 128 =
560 steps) — and with all of them together (optlab's default, reporting the test accuracy at
the best validation epoch, as ``optlab train`` does); logistic regression and the CNN are
run under optlab's default too. Every configuration trains with ``optlab.train`` checkpoints
(an interrupted run resumes). Quick mode (CI): the MLP under the paper's protocol for 80 steps;
it decides nothing.

Differences that remain: the paper cycles through the training set in one fixed order
(batch i = examples 100i..100i+99, every epoch the same); ``optlab.train`` reshuffles every
epoch. PyTorch's CNN flattens channel-major, ours length-major (a permutation of the head's
inputs, no effect on training). The GRU baseline (optional in the issue) is not run: a
bidirectional recurrent scan of 40 steps for 6,000 steps per seed does not fit the CPU
budget next to the others.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
from flax import nnx

import optlab
from optlab import reproduce
from optlab.reproduce import (
    Context,
    Experiment,
    Outcome,
    fmt_pm,
    markdown_table,
    mean_std,
    verdict_of,
)
from optlab.tasks import load_dataset, make_model
from optlab.train import train

PAPER = {"logreg": 0.32, "mlp": 0.68, "cnn1d": 0.94}  # Greydanus 2020, test accuracy
NAMES = {"logreg": "logistic regression", "mlp": "MLP", "cnn1d": "CNN"}
TOLERANCE = 0.02  # reproduced: our mean within 2 percentage points of the paper's number
LEARNING_RATE = 1e-2
PAPER_STEPS = 6000
PAPER_BATCH = 100
QUICK_STEPS = 80  # quick mode (CI): 2 epochs of the paper's protocol

# The protocol as settings: which training set, which inputs, which init, which budget.
PAPER_PROTOCOL = {"val_fraction": 0.0, "normalize": False, "init": "pytorch",
                  "epochs": None, "batch_size": PAPER_BATCH}  # epochs None: PAPER_STEPS
OPTLAB_DEFAULT = {"val_fraction": 0.1, "normalize": True, "init": "flax",
                  "epochs": 20, "batch_size": 128}
# One of optlab's defaults at a time, swapped into the paper's protocol (MLP only).
ABLATIONS = {
    "paper protocol": {},
    "+ 10 % validation split": {"val_fraction": 0.1},
    "+ standardised inputs": {"normalize": True},
    "+ Flax init": {"init": "flax"},
    "+ optlab budget (20 epochs × batch 128)": {"epochs": 20, "batch_size": 128},
    "optlab default (all four)": OPTLAB_DEFAULT,
}


def torch_init(model: nnx.Module, rngs: nnx.Rngs) -> nnx.Module:
    """PyTorch's default initialisation of ``nn.Linear`` / ``nn.Conv1d``: weights
    (``kaiming_uniform_(a=√5)``) and biases both U(−1/√fan_in, 1/√fan_in), fan_in = inputs
    (× kernel size for a convolution)."""
    for _, module in nnx.iter_graph(model):
        if isinstance(module, nnx.Linear | nnx.Conv):
            kernel = module.kernel[...]
            bound = 1.0 / np.sqrt(np.prod(kernel.shape[:-1]))
            module.kernel[...] = nnx.initializers.uniform(2 * bound)(
                rngs.params(), kernel.shape, kernel.dtype) - bound
            if module.bias is not None:
                bias = module.bias[...]
                module.bias[...] = nnx.initializers.uniform(2 * bound)(
                    rngs.params(), bias.shape, bias.dtype) - bound
    return model


def build_model(rngs: nnx.Rngs, *, name: str, init: str) -> nnx.Module:
    """optlab's model ``name`` for MNIST-1D, with Flax's or PyTorch's initialisation."""
    model = make_model(name, (40,), 10, rngs=rngs)
    return torch_init(model, rngs) if init == "pytorch" else model


def run_config(ctx: Context, model: str, settings: dict, steps: int, key: str) -> dict:
    """Trains ``model`` under ``settings`` for every seed; returns accuracies and curves."""
    data = load_dataset("mnist1d", val_fraction=settings["val_fraction"],
                        normalize=settings["normalize"])
    batch = settings["batch_size"]
    per_epoch = len(data.y_train) // batch
    epochs = settings["epochs"] or max(1, steps // per_epoch)
    ctx.log(f"{model}, {key}: {data.summary()}; {epochs} epochs × {per_epoch} steps, "
            f"{len(ctx.seeds)} seeds")
    has_val = len(data.y_val) > 0
    result = train(data, functools.partial(build_model, name=model, init=settings["init"]),
                   optlab.adam, hyperparams={"learning_rate": [LEARNING_RATE]},
                   seeds=ctx.seeds, epochs=epochs, batch_size=batch,
                   checkpoint_dir=ctx.checkpoint_dir(f"{model}-{key}"), progress=ctx.progress)
    return {
        "settings": settings, "epochs": epochs, "steps": epochs * per_epoch,
        "train_examples": len(data.y_train),
        # the paper reports the accuracy after the last step; with a validation split
        # optlab reports the test accuracy at the best validation epoch
        "final_test_accuracy": result.final_test_accuracy.tolist(),
        "reported_test_accuracy": (result.test_accuracy if has_val
                                   else result.final_test_accuracy).tolist(),
        "max_test_accuracy": np.nanmax(result.history["test_accuracy"], axis=1).tolist(),
        "final_train_accuracy": result.history["train_accuracy"][:, -1].tolist(),
        "test_curve": result.history["test_accuracy"].tolist(),
        "steps_per_epoch": per_epoch,
        "wall_time_s": result.wall_time, "compile_time_s": result.compile_time,
    }


def measure(ctx: Context, steps: int) -> dict[str, dict[str, dict]]:
    """Every model under the paper's protocol and optlab's default, and the MLP with each of
    optlab's defaults alone; quick mode: the MLP under the paper's protocol only (one
    compiled program; the other models follow the same code)."""
    results: dict[str, dict[str, dict]] = {}
    for model in (("mlp",) if ctx.quick else PAPER):
        if ctx.quick:
            configs = {"paper protocol": {}}
        elif model == "mlp":
            configs = ABLATIONS
        else:
            configs = {"paper protocol": {}, "optlab default (all four)": OPTLAB_DEFAULT}
        results[model] = {}
        for label, change in configs.items():
            settings = {**PAPER_PROTOCOL, **change}
            key = "paper" if not change else "-".join(sorted(change)).replace("_", "")
            if change == OPTLAB_DEFAULT:
                key = "optlab-default"
            results[model][label] = run_config(ctx, model, settings, steps, key)
    return results


def run(ctx: Context) -> Outcome:
    steps = QUICK_STEPS if ctx.quick else PAPER_STEPS
    results = measure(ctx, steps)
    paper_row = {m: r["paper protocol"] for m, r in results.items()}
    # How much each of optlab's defaults costs the MLP, alone (mean over seeds, in points).
    base = float(np.mean(results["mlp"]["paper protocol"]["reported_test_accuracy"]))
    drops = {k: 100 * (float(np.mean(r["reported_test_accuracy"])) - base)
             for k, r in results["mlp"].items() if k != "paper protocol"}
    checks = {m: bool(abs(float(np.mean(r["final_test_accuracy"])) - PAPER[m]) <= TOLERANCE)
              for m, r in paper_row.items()}
    verdict = None if ctx.quick else verdict_of(checks)  # QUICK_STEPS cannot decide
    _comparison_figure(ctx, results, checks, steps)
    _curves_figure(ctx, results)
    _ablation_figure(ctx, results, drops)
    return Outcome(verdict, _summary(ctx, results, checks, drops, verdict, steps),
                   {"paper": PAPER, "tolerance": TOLERANCE, "mlp_change_points": drops,
                    "learning_rate": LEARNING_RATE, "steps": steps, "runs": results}, checks)


def _comparison_figure(ctx: Context, results: dict[str, dict[str, dict]],
                       checks: dict[str, bool], steps: int) -> None:
    """Paper vs ours (paper protocol) vs ours (optlab default), per model."""
    models = list(results)
    fig, axes = reproduce.figure(1, 1, width=6.4, height=3.8)
    ax = axes[0, 0]
    x = np.arange(len(models))
    ax.bar(x - 0.27, [100 * PAPER[m] for m in models], 0.26, color="0.6",
           label="paper (Greydanus 2020, 1 run)")
    for offset, label, color in ((0.0, "paper protocol", "tab:blue"),
                                 (0.27, "optlab default (all four)", "tab:orange")):
        if any(label not in results[m] for m in models):
            continue
        m_s = [mean_std(100 * np.asarray(results[m][label]["reported_test_accuracy"]))
               for m in models]
        ax.bar(x + offset, [float(a) for a, _ in m_s], 0.26, yerr=[float(s) for _, s in m_s],
               capsize=3, color=color, label=f"ours, {label} (mean ± std, "
               f"{len(ctx.seeds)} seeds)")
    ax.set_xticks(x, [NAMES[m] for m in models])
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    reached = [NAMES[m] for m in models if checks[m]]
    ax.set_title(f"MNIST-1D baselines, paper's protocol ({steps:,} Adam steps, all 4,000 "
                 f"examples):\nwithin {100 * TOLERANCE:.0f} points of the paper: "
                 f"{', '.join(reached) or 'none'}", fontsize=9)
    ctx.save_figure(fig, "mnist1d_baselines")


def _curves_figure(ctx: Context, results: dict[str, dict[str, dict]]) -> None:
    """Test accuracy during training under the paper's protocol."""
    fig, axes = reproduce.figure(1, 1, width=6.0, height=3.8)
    ax = axes[0, 0]
    colors = {"logreg": "tab:green", "mlp": "tab:blue", "cnn1d": "tab:red"}
    for m in results:
        r = results[m]["paper protocol"]
        curve = 100 * np.asarray(r["test_curve"])
        t = (np.arange(curve.shape[1]) + 1) * r["steps_per_epoch"]
        mu, sd = mean_std(curve)
        ax.plot(t, mu, color=colors[m], label=f"{NAMES[m]} (ours)")
        ax.fill_between(t, mu - sd, mu + sd, color=colors[m], alpha=0.2)
        ax.axhline(100 * PAPER[m], color=colors[m], ls=":", lw=1)
    ax.plot([], [], color="k", ls=":", lw=1, label="paper's final accuracy")
    ax.set_xlabel("training step (batch 100)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"MNIST-1D, paper's protocol: test accuracy during training "
                 f"(mean ± std, {len(ctx.seeds)} seeds)", fontsize=9)
    ctx.save_figure(fig, "mnist1d_curves")


def _ablation_figure(ctx: Context, results: dict[str, dict[str, dict]],
                     drops: dict[str, float]) -> None:
    """The MLP under the paper's protocol with one of optlab's defaults at a time."""
    labels = list(results["mlp"])
    m_s = [mean_std(100 * np.asarray(results["mlp"][k]["reported_test_accuracy"]))
           for k in labels]
    fig, axes = reproduce.figure(1, 1, width=6.4, height=0.45 * len(labels) + 1.6)
    ax = axes[0, 0]
    y = np.arange(len(labels))[::-1]
    ax.barh(y, [float(a) for a, _ in m_s], xerr=[float(s) for _, s in m_s], capsize=3,
            color=[{"paper protocol": "tab:blue", "optlab default (all four)": "tab:orange"}
                   .get(k, "tab:purple") for k in labels])
    ax.axvline(100 * PAPER["mlp"], color="k", ls=":", lw=1, label="paper: 68 %")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("MLP test accuracy (%)")
    ax.set_xlim(min(40.0, min(float(a) for a, _ in m_s) - 5), 75)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    singles = {k: v for k, v in drops.items() if k.startswith("+")}
    worst = min(singles, key=singles.get) if singles else None
    ax.set_title("MNIST-1D MLP, the paper's protocol with one of optlab's defaults swapped in"
                 + (f":\nthe largest loss comes from {worst.lstrip('+ ')} "
                    f"({singles[worst]:+.1f} points)" if worst else "")
                 + f" (mean ± std, {len(ctx.seeds)} seeds)", fontsize=8)
    ctx.save_figure(fig, "mnist1d_mlp_ablation")


def _summary(ctx: Context, results: dict[str, dict[str, dict]], checks: dict[str, bool],
             drops: dict[str, float], verdict: bool | None, steps: int) -> str:
    rows = []
    for m, r in results.items():
        ours = r["paper protocol"]
        default = r.get("optlab default (all four)")
        rows.append([NAMES[m], f"{100 * PAPER[m]:.0f}", fmt_pm(ours["final_test_accuracy"], 100),
                     fmt_pm(ours["final_train_accuracy"], 100),
                     fmt_pm(default["reported_test_accuracy"], 100) if default else "—",
                     "yes" if checks[m] else "no"])
    ablation_rows = [[k, r["train_examples"], "standardised" if r["settings"]["normalize"]
                      else "as generated", r["settings"]["init"], f"{r['steps']:,}",
                      fmt_pm(r["reported_test_accuracy"], 100),
                      fmt_pm(r["max_test_accuracy"], 100)]
                     for k, r in results["mlp"].items()]
    return (
        f"Test accuracy (%), mean ± std over {len(ctx.seeds)} seeds. Paper: Greydanus 2020 "
        "(arXiv 2011.14439; mnist1d README and notebook), one run each. \"Ours, paper "
        f"protocol\": Adam lr 1e-2, batch 100, {steps:,} steps, all 4,000 training examples, "
        "raw inputs, PyTorch init, accuracy after the last step. \"Ours, optlab default\": 10 % "
        "validation split, standardised inputs, Flax init, 20 epochs × batch 128, test accuracy "
        "at the best validation epoch."
        + (" Quick mode: the MLP only." if ctx.quick else "") + "\n\n"
        + markdown_table(["model", "paper", "ours, paper protocol", "train acc. (ours)",
                          "ours, optlab default",
                          f"within {100 * TOLERANCE:.0f} points"], rows)
        + "\n\nThe MLP with one of optlab's defaults at a time (test accuracy as reported: "
        "after the last step without a validation split, at the best validation epoch with "
        "one; the last column is the best test accuracy over all epochs, an optimistic "
        "upper bound):\n\n"
        + markdown_table(["MLP setting", "train examples", "inputs", "init", "steps",
                          "test accuracy", "max over epochs"], ablation_rows)
        + ("\n\nChange of the MLP's mean test accuracy from the paper protocol, in points: "
           + "; ".join(f"{k.lstrip('+ ')} {v:+.1f}" for k, v in drops.items()) + "."
           if drops else "")
        + f"\n\n**{ {True: 'Reproduced', False: 'Not reproduced', None: 'Undecided'}[verdict]}**"
        f" (each model within {100 * TOLERANCE:.0f} percentage points of the paper"
        f"{'; quick mode: too few steps to decide' if ctx.quick else ''}): "
        + ", ".join(f"{NAMES[m]} {'yes' if checks[m] else 'no'}" for m in results) + "."
    )


EXPERIMENT = Experiment(
    name="mnist1d_baselines",
    title="MNIST-1D baselines",
    claim="With Adam (lr 1e-2, batch 100, 6,000 steps) on all 4,000 MNIST-1D training "
    "examples, logistic regression reaches 32 %, the MLP 68 % and the CNN 94 % test accuracy.",
    source="Greydanus 2020, arXiv 2011.14439",
    run=run,
    quick_asserts=(),  # QUICK_STEPS (80) cannot decide the final accuracies
    seeds=3,
)

if __name__ == "__main__":
    sys.exit(reproduce.main(EXPERIMENT))
