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
# # The Bello et al. search space
#
# Bello, Zoph, Vasudevan & Le (2017), *Neural Optimizer Search with Reinforcement
# Learning*, searched for update rules written as small programs over the gradient and its
# moving averages, and found PowerSign, $e^{\mathrm{sign}(g)\,\mathrm{sign}(m)}\cdot g$, and
# AddSign, $(1 + \mathrm{sign}(g)\,\mathrm{sign}(m))\cdot g$. `optlab.search` implements that
# space on top of optlab's primitives:
#
# 1. **programs**: groups of 5 tokens ↔ expression trees ↔ readable formulas, with a
#    canonical form and a hash;
# 2. **compiling** a program to an optlab chain (the accumulators it reads + one combiner);
# 3. **a vectorized search**: a whole population of programs trained as one `optlab.train`
#    grid, in one compiled program, scored on validation accuracy.
#
# Set `OPTLAB_NOTEBOOK_QUICK=1` for a much smaller search (what CI does).

# %%
import os
import time

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from matplotlib.ticker import MaxNLocator

import optlab
from optlab import search
from optlab.tasks import Dataset, load_dataset
from optlab.tasks.datasets import default_cache_dir

QUICK = os.environ.get("OPTLAB_NOTEBOOK_QUICK") == "1"

# Each evaluation of a population is one `optlab.train` call, which compiles its program.
# JAX's persistent compilation cache stores the compiled program on disk, so a later
# population of the same size (and the next run of this notebook) loads it instead of
# compiling again.
jax.config.update("jax_compilation_cache_dir", str(default_cache_dir() / "jax-cache"))

# %% [markdown]
# ## 1. Programs
#
# A program is a list of groups $(o_1, o_2, u_1, u_2, b)$, each computing
# $b(u_1(o_1), u_2(o_2))$: two operands, a unary function of each, and a binary function
# that combines them. An operand is a statistic (g, m̂, v̂, ...), a constant, a decay
# schedule, or the result of an earlier group.

# %%
print("operands:", ", ".join(f"{o.name} ({o.formula})" for o in search.OPERANDS))
print("unary:   ", ", ".join(u.name for u in search.UNARY))
print("binary:  ", ", ".join(b.name for b in search.BINARY))

# %% [markdown]
# `search.parse` reads a formula; `search.formula` prints one; `to_json` shows the groups.
# PowerSign is two groups: `sign(g) · sign(m)`, then `exp` of that times `g`.

# %%
powersign = search.parse("exp(sign(g) * sign(m)) * g")
print("formula:", search.formula(powersign))
print("groups: ", powersign.to_json())

# %% [markdown]
# The canonical form applies exact identities only (commutativity, `keep`, multiplication
# by 1, double negation), so programs that are written differently but compute the same
# thing get the same hash:

# %%
variants = ["exp(sign(g) * sign(m)) * g",
            "g * exp(sign(m) * sign(g))",
            "exp(sign(g) * sign(m)) * g * 1",
            "exp(sign(g) * sign(m)) * (-(-g))"]
for text in variants:
    p = search.parse(text)
    print(f"{text:34s} hash {search.program_hash(p)[:12]}  "
          f"equivalent to PowerSign: {search.equivalent(p, powersign)}")

# %% [markdown]
# A formula that does not parse says where:

# %%
try:
    search.parse("exp(sign(g) * sign(q)) * g")
except ValueError as e:
    print(e)

# %% [markdown]
# ## 2. Compiling a program
#
# `search.compile(program, learning_rate)` returns an optlab chain: the accumulators the
# program reads (here only m̂; a program reading only g keeps no state at all), one combiner
# that evaluates the program's tree on every parameter leaf, and the learning rate,
# $\Delta w = -\eta\cdot\mathrm{program}(g, \hat m, \hat v, \ldots)$. It is an ordinary optax
# transform.

# %%
params = {"w": jnp.zeros((5, 3)), "b": jnp.zeros(3)}
tx = search.compile(powersign, learning_rate=0.01)
print("state of the compiled PowerSign:", jax.tree.map(jnp.shape, tx.init(params)))
adam_program = search.parse("m / (sqrt(v) + eps)")
print("state of the compiled Adam:     ", jax.tree.map(jnp.shape,
                                                        search.compile(adam_program, 0.01)
                                                        .init(params)))

# %% [markdown]
# The compiled program is the same optimizer as the hand-written one: its trajectory on a
# least-squares problem matches `optlab.powersign` (PowerSign with base e and β = 0.9; the
# search's m̂ is bias-corrected, which does not change its sign).

# %%
rng = np.random.default_rng(0)
X, Y = jnp.asarray(rng.normal(size=(64, 5))), jnp.asarray(rng.normal(size=(64, 3)))


def loss_fn(p):
    return jnp.mean((X @ p["w"] + p["b"] - Y) ** 2)


def trajectory(tx, steps=200):
    def step(carry, _):
        p, s = carry
        u, s = tx.update(jax.grad(loss_fn)(p), s, p)
        p = optax.apply_updates(p, u)
        return (p, s), loss_fn(p)

    return jax.lax.scan(step, (params, tx.init(params)), length=steps)[1]


compiled = trajectory(search.compile(powersign, learning_rate=0.01))
handwritten = trajectory(optlab.powersign(0.01))
print("max |loss difference| over 200 steps:", float(jnp.max(jnp.abs(compiled - handwritten))))
np.testing.assert_allclose(compiled, handwritten, rtol=1e-5)

# %% [markdown]
# ## 3. A small vectorized search
#
# `search.Evaluator` scores a batch of programs by training a small child network with each
# program at a few learning rates; the reward is the validation accuracy at the best
# learning rate. The batch is **one** `optlab.train` grid (programs × learning rates ×
# seeds): each program is an integer array, interpreted inside one compiled step, so the
# whole population costs one compilation. Before training, programs equal to one seen
# before — by canonical hash, or by a *functional fingerprint* (the update on a fixed random
# batch, as in AutoML-Zero) — are answered from a cache.
#
# The child here is the MNIST-1D MLP trained for 2 epochs at learning rates 10⁻³, 10⁻²,
# 10⁻¹ (the quick version: logistic regression on 1,024 examples for one epoch, at 10⁻¹
# only). Programs have up to `num_groups=3` groups (AddSign needs three); shorter ones are
# padded.

# %%
data = load_dataset("mnist1d")
if QUICK:
    n = 1024
    data = Dataset("mnist1d-1024", data.x_train[:n], data.y_train[:n], data.x_val, data.y_val,
                   data.x_test, data.y_test, data.num_classes, "the first 1024 examples")
    evaluator = search.Evaluator(data, "logreg", learning_rates=(0.1,), epochs=1,
                                 num_groups=3)
else:
    evaluator = search.Evaluator(data, "mlp", learning_rates=(1e-3, 1e-2, 1e-1), epochs=2,
                                 num_groups=3)

# %% [markdown]
# First, the known rules, with two duplicates: `sign(sign(g))` is canonically `sign(g)`, and
# `(m / (sqrt(v) + eps)) * 1` is canonically Adam. Only the distinct programs are trained.

# %%
known = {
    "SGD": "g",
    "signSGD": "sign(g)",
    "signSGD again": "sign(sign(g))",
    "Adam": "m / (sqrt(v) + eps)",
    "Adam again": "(m / (sqrt(v) + eps)) * 1",
    "PowerSign": "exp(sign(g) * sign(m)) * g",
    "AddSign": "(1 + sign(g) * sign(m)) * g",
}
start = time.perf_counter()
evaluations = evaluator.evaluate([search.parse(f) for f in known.values()])
print(f"{evaluator.trained} programs trained in one grid, {time.perf_counter() - start:.1f} s "
      "(compilation included)")
for name, e in zip(known, evaluations, strict=True):
    print(f"  {name:14s} {e.formula:32s} reward {e.reward:.3f}  ({e.source})")

# %% [markdown]
# Now the search: regularized evolution (Real et al. 2019, the strategy of Chen et al.
# 2023's Lion search) over programs of 2 groups. The first population is random; each
# later candidate mutates the winner of a tournament among the last `population`
# candidates. `run_search` asks the strategy for a batch, evaluates it as one population
# and tells the strategy the rewards.

# %%
POPULATION, BUDGET = (5, 5) if QUICK else (16, 64)
strategy = search.RegularizedEvolution(num_groups=2, seed=0, population=POPULATION)
start = time.perf_counter()
result = search.run_search(strategy, evaluator, budget=BUDGET, batch_size=POPULATION)
print(f"{BUDGET} candidates in {time.perf_counter() - start:.1f} s; "
      f"{100 * evaluator.hit_rate:.0f} % of all evaluations answered from the cache")
if result.best is None:
    print("every candidate diverged")
else:
    print(f"best: {search.formula(result.best)}  (reward {result.best_reward:.3f})")

# %%
rewards = np.array([r for _, r in result.history])
finite = np.where(np.isfinite(rewards), rewards, np.nan)
fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
ax.scatter(np.arange(1, len(rewards) + 1), finite, s=12, label="candidate")
ax.plot(np.arange(1, len(rewards) + 1), np.fmax.accumulate(np.nan_to_num(finite, nan=0.0)),
        color="tab:red", label="best so far")
for name in ("Adam", "PowerSign"):
    e = evaluations[list(known).index(name)]
    ax.axhline(e.reward, ls=":", color="k" if name == "Adam" else "tab:purple",
               label=f"{name} (the known program above)")
ax.set_xlabel("candidate (in evaluation order)")
ax.xaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_ylabel("reward (validation accuracy)")
ax.set_title("Regularized evolution in Bello et al.'s space (diverged runs not shown)")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# The top programs, and how many of them contain PowerSign's and AddSign's ingredient, the
# sign agreement $\mathrm{sign}(g)\cdot\mathrm{sign}(\hat m)$ (a search this small says little
# about how often it appears; `experiments/` holds the real measurement).

# %%
def has_sign_agreement(program):
    text = search.formula(program)
    return "sign(g)" in text and "sign(m)" in text


seen, top = set(), []
for program, reward in sorted(result.history, key=lambda pr: -pr[1]):
    h = search.program_hash(program)
    if h not in seen and np.isfinite(reward):
        seen.add(h)
        top.append((program, reward))
for program, reward in top[:8]:
    mark = "  ← sign agreement" if has_sign_agreement(program) else ""
    print(f"{reward:.3f}  {search.formula(program)}{mark}")
print(f"{sum(has_sign_agreement(p) for p, _ in top[:8])} of the top {min(8, len(top))} "
      "distinct programs use sign(g)·sign(m)")

# %% [markdown]
# The best program found is an optimizer like any other — compile it and train with it:
#
# ```python
# tx = search.compile(result.best, learning_rate=1e-2)
# ```
#
# On the command line the same search runs, logs every candidate, and resumes:
#
# ```bash
# optlab search --task mnist1d --strategy evolution --budget 2000 --population 64 --out runs/search
# optlab search show runs/search
# optlab train --task mnist1d --program "exp(sign(g) * sign(m)) * g" --lr 0.1
# ```
