# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Training a Flax NNX model with optlab
#
# optlab's optimizers are `optax.GradientTransformation`s, so they plug into Flax NNX like
# optax's own. This notebook trains a classifier on MNIST-1D (Greydanus 2020; generated
# locally by the `mnist1d` package, nothing is downloaded) two ways:
#
# 1. **your own loop**: `nnx.Optimizer(model, tx, wrt=nnx.Param)` and an `nnx.jit` step;
# 2. **`optlab.train`**: a grid of learning rates × seeds trained in one compiled program,
#    with the learning rate picked on the validation split and test accuracy reported as
#    mean ± std over seeds.
#
# Set `OPTLAB_NOTEBOOK_QUICK=1` for a shorter run (what CI does).

# %%
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from flax import nnx
from matplotlib.ticker import MaxNLocator

import optlab
from optlab.tasks import load_dataset
from optlab.train import train

QUICK = os.environ.get("OPTLAB_NOTEBOOK_QUICK") == "1"
EPOCHS = 3 if QUICK else 20
LEARNING_RATES = [3e-3, 3e-2] if QUICK else [1e-3, 3e-3, 1e-2, 3e-2]
SEEDS = 2 if QUICK else 3
BATCH = 128

# %% [markdown]
# ## The data
#
# `load_dataset` returns train / validation / test splits as NumPy arrays (MNIST-1D: 40
# features per example, 10 classes; 10 % of the 4,000 training examples are held out for
# validation).

# %%
data = load_dataset("mnist1d")
print(data.description)
print("train", data.x_train.shape, "val", data.x_val.shape, "test", data.x_test.shape)

# %% [markdown]
# ## A model of our own
#
# Any `nnx.Module` that maps a batch `(B, 40)` to logits `(B, 10)` will do. (optlab ships
# the MNIST-1D paper's models too: `optlab.tasks.make_model("mlp", (40,), 10, rngs=0)`.)

# %%
class MLP(nnx.Module):
    def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs):
        self.hidden1 = nnx.Linear(din, hidden, rngs=rngs)
        self.hidden2 = nnx.Linear(hidden, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, dout, rngs=rngs)

    def __call__(self, x):
        h = jax.nn.relu(self.hidden1(x))
        h = h + jax.nn.relu(self.hidden2(h))   # a residual layer, as the MNIST-1D paper's MLP
        return self.out(h)


# %% [markdown]
# ## 1. Your own training loop with `nnx.Optimizer`
#
# `nnx.Optimizer(model, tx, wrt=nnx.Param)` keeps the optimizer state next to the model and
# `optimizer.update(model, grads)` applies one step. The transform is optlab's AdamW — or
# any chain of primitives (see the notebook *Composing your own optimizer*).

# %%
model = MLP(40, 100, 10, rngs=nnx.Rngs(0))
optimizer = nnx.Optimizer(model, optlab.adamw(3e-3, weight_decay=1e-4), wrt=nnx.Param)


def loss_fn(model, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def accuracy(model, x, y):
    return (jnp.argmax(model(x), -1) == y).mean()


rng = np.random.default_rng(0)
history = {"train_loss": [], "val_accuracy": []}
start = time.perf_counter()
for _ in range(EPOCHS):
    order = rng.permutation(len(data.y_train))
    losses = []
    for i in range(len(order) // BATCH):  # the last partial batch is dropped
        batch = order[i * BATCH:(i + 1) * BATCH]
        losses.append(train_step(model, optimizer, data.x_train[batch], data.y_train[batch]))
    history["train_loss"].append(float(np.mean(losses)))
    history["val_accuracy"].append(float(accuracy(model, data.x_val, data.y_val)))
print(f"{EPOCHS} epochs in {time.perf_counter() - start:.1f} s; "
      f"validation accuracy {history['val_accuracy'][-1]:.3f}, "
      f"test accuracy {float(accuracy(model, data.x_test, data.y_test)):.3f}")

# %% [markdown]
# The optimizer's state is optlab's: the statistics of the formula under optax's names
# (`mu`, `nu`) and one step counter.

# %%
print("step count:", int(optax.tree.get(optimizer.opt_state, "count")[...]))
mu = optax.tree.get(optimizer.opt_state, "mu")
print("first moment of the output layer's kernel:", mu["out"]["kernel"].shape)

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2), layout="constrained")
epochs = np.arange(1, EPOCHS + 1)
ax1.plot(epochs, history["train_loss"], marker="o")
ax1.set_xlabel("epoch")
ax1.set_ylabel("training loss (cross-entropy)")
ax2.plot(epochs, history["val_accuracy"], marker="o", color="tab:green")
ax2.set_xlabel("epoch")
ax2.set_ylabel("validation accuracy")
for ax in (ax1, ax2):
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
fig.suptitle("Own loop: MLP on MNIST-1D with optlab.adamw (one seed)")
plt.show()

# %% [markdown]
# ## 2. A grid with `optlab.train`
#
# `optlab.train(data, model, optimizer, hyperparams=..., seeds=...)` trains every
# combination of hyperparameter values × seeds in **one** jit-compiled program: each epoch
# is a `lax.scan` over mini-batches, the runs go one after another inside it, so a run's
# result does not depend on the rest of the grid. The optimizer is a function of the
# hyperparameters (here `optlab.adam` and `optlab.lion`, called with each run's
# `learning_rate`); the model is a factory `rngs -> nnx.Module`. Give `checkpoint_dir=` to
# save after every epoch and resume an interrupted call.
#
# Both optimizers get the same grid of learning rates (Lion's ten times smaller, as its
# authors recommend: its update is a sign, with magnitude 1 per coordinate).

# %%
def make_mlp(rngs):
    return MLP(40, 100, 10, rngs=rngs)


results = {}
for name, factory, lrs in [("adam", optlab.adam, LEARNING_RATES),
                           ("lion", optlab.lion, [lr / 10 for lr in LEARNING_RATES])]:
    results[name] = train(data, make_mlp, factory, hyperparams={"learning_rate": lrs},
                          seeds=SEEDS, epochs=EPOCHS, batch_size=BATCH, progress=False)
    print(name, "-", results[name].summary().splitlines()[0])

# %% [markdown]
# A `TrainResult` holds, per run, the learning curves (`history[metric]`: runs × epochs) and
# the test accuracy at the epoch of best validation accuracy. Runs are ordered learning
# rate by learning rate, seeds varying fastest. We pick each optimizer's learning rate by
# the mean validation accuracy over seeds and report the test accuracy there.

# %%
def best_learning_rate(result):
    lrs = [hp["learning_rate"] for hp, _ in result.grid.runs[::SEEDS]]
    val = result.val_accuracy.reshape(len(lrs), SEEDS).mean(axis=1)
    best = int(np.nanargmax(val))
    test = result.test_accuracy.reshape(len(lrs), SEEDS)[best]
    return lrs, best, test


for name, result in results.items():
    lrs, best, test = best_learning_rate(result)
    print(f"{name}: best learning rate {lrs[best]:g} on validation; "
          f"test accuracy {100 * test.mean():.1f} ± {100 * test.std():.1f} % "
          f"({SEEDS} seeds)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", sharey=True)
for ax, (name, result) in zip(axes, results.items(), strict=True):
    lrs, best, _ = best_learning_rate(result)
    curves = result.history["val_accuracy"].reshape(len(lrs), SEEDS, -1)
    for j, lr in enumerate(lrs):
        m, s = curves[j].mean(axis=0), curves[j].std(axis=0)
        line, = ax.plot(epochs, m, label=f"lr {lr:g}" + (" (best)" if j == best else ""),
                        lw=2.5 if j == best else 1.2)
        ax.fill_between(epochs, m - s, m + s, alpha=0.2, color=line.get_color())
    ax.set_title(f"optlab.{name}")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
axes[0].set_ylabel(f"validation accuracy (mean ± std, {SEEDS} seeds)")
fig.suptitle("MNIST-1D MLP: one compiled program per optimizer, learning rates × seeds")
plt.show()

# %% [markdown]
# `result.model(run=i)` rebuilds run *i*'s trained `nnx.Module` as it was after the last
# epoch (the test accuracies above are at the epoch of best validation accuracy; the
# last epoch's are in `result.final_test_accuracy`):

# %%
best = best_learning_rate(results["adam"])[1] * SEEDS   # the best learning rate, seed 0
trained = results["adam"].model(run=best)
print("test accuracy of that model:", float(accuracy(trained, data.x_test, data.y_test)))
print("recorded after its last epoch:", float(results["adam"].final_test_accuracy[best]))

# %% [markdown]
# On the command line, `optlab compare` runs such grids with optlab's own MLP (the same
# learning rates for every optimizer; it writes a table, curves and checkpoints):
#
# ```bash
# optlab compare --task mnist1d --optimizers adam,lion --lrs 3e-4,1e-3,3e-3,1e-2,3e-2 \
#     --seeds 3 --epochs 20 --out runs/adam-vs-lion
# ```
