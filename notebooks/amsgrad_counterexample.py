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
# # The AMSGrad counterexample
#
# Reddi, Kale & Kumar (ICLR 2018), *On the Convergence of Adam and Beyond*, showed that
# Adam can converge to the **worst** point of a simple convex problem, and proposed AMSGrad,
# which keeps the running maximum of the second moment. Their synthetic experiment (Section
# 5) is a linear loss on the interval $[-1, 1]$:
#
# * **online**: $f_t(x) = 1010\,x$ once every 101 steps, $-10\,x$ otherwise;
# * **stochastic**: $f_t(x) = 1010\,x$ with probability 0.01, $-10\,x$ otherwise.
#
# On average the loss grows with $x$ ($\tfrac{10}{101}x$ and $0.2\,x$), so the optimum is
# $x^* = -1$. The rare large gradient pushes $x$ down, the frequent small ones push it up.
# Adam's second moment $\hat v$ forgets the large gradient within a few hundred steps, so
# the small gradients get large steps and win; AMSGrad's $\max \hat v$ never forgets it.
#
# We run Adam and both forms of AMSGrad with the paper's settings: $\beta_1 = 0.9$,
# $\beta_2 = 0.99$, step size $\alpha_t = 0.5/\sqrt t$, $x_0 = 0$, each iterate projected back
# onto $[-1, 1]$. (`experiments/amsgrad.py` is the full reproduction, 10⁶ steps; `optlab
# reproduce amsgrad` runs it.)
#
# Set `OPTLAB_NOTEBOOK_QUICK=1` for fewer steps (what CI does).

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax

import optlab
from optlab.tasks import reddi_online, reddi_stochastic

QUICK = os.environ.get("OPTLAB_NOTEBOOK_QUICK") == "1"
STEPS = 10_000 if QUICK else 200_000
SEEDS = 3 if QUICK else 5
B1, B2 = 0.9, 0.99
print(f"{STEPS:,} steps; stochastic problem over {SEEDS} seeds")

# %% [markdown]
# ## The problems and the optimizers
#
# `optlab.tasks.reddi_online()` and `reddi_stochastic()` are these problems: `loss_at(x,
# step, key)` is the loss the optimizer sees at a step, `loss(x)` the average loss, and
# `apply_projection` clips to $[-1, 1]$.
#
# AMSGrad has two forms in the wild: optax takes the maximum of the bias-corrected
# $\hat v_t$; PyTorch (`torch.optim.Adam(amsgrad=True)`) takes the maximum of the raw $v_t$
# and bias-corrects afterwards. `optlab.amsgrad(..., debias_before_max=False)` is
# PyTorch's.

# %%
PROBLEMS = {"online": reddi_online(), "stochastic": reddi_stochastic()}
for p in PROBLEMS.values():
    print(p.description)


def step_size(count):
    """α_t = 0.5 / √t, with t = count + 1 the step being taken."""
    return 0.5 / jnp.sqrt(count + 1.0)


OPTIMIZERS = {
    "Adam": optlab.adam(step_size, b1=B1, b2=B2),
    "AMSGrad (optax: max of v̂)": optlab.amsgrad(step_size, b1=B1, b2=B2),
    "AMSGrad (PyTorch: max of v)": optlab.amsgrad(step_size, b1=B1, b2=B2,
                                                  debias_before_max=False),
}
COLORS = dict(zip(OPTIMIZERS, ["tab:red", "tab:blue", "tab:green"], strict=True))

# %% [markdown]
# ## Running them
#
# One `lax.scan` over the steps, `vmap`-ed over seeds. Besides $x_t$ we record the
# *effective step size* $\alpha_t/(\sqrt{\hat v_t}+\epsilon)$, read from the optimizer state
# (`optax.tree.get` finds the statistics by name: `nu` is the raw second moment, `nu_max`
# AMSGrad's running maximum).

# %%
def effective_step(name, state, count):
    """α_t / (√(the second moment the update divides by) + ε) after step t = count."""
    t = count.astype(jnp.float32)
    bias = 1.0 - B2 ** t
    if name == "Adam":
        v = optax.tree.get(state, "nu") / bias
    elif "optax" in name:
        v = optax.tree.get(state, "nu_max")              # max of the bias-corrected v̂
    else:
        v = optax.tree.get(state, "nu_max") / bias       # max of raw v, then corrected
    return step_size(count - 1) / (jnp.sqrt(v[0]) + 1e-8)


def run(name, problem, seeds):
    tx = OPTIMIZERS[name]

    def one(seed):
        key = jax.random.key(seed)

        def body(carry, step):
            x, state = carry
            g = jax.grad(problem.loss_at)(x, step, jax.random.fold_in(key, step))
            updates, state = tx.update(g, state, x)
            x = problem.apply_projection(optax.apply_updates(x, updates))
            return (x, state), (x[0], effective_step(name, state, step + 1))

        carry = (problem.x0, tx.init(problem.x0))
        return jax.lax.scan(body, carry, jnp.arange(STEPS))[1]

    return jax.jit(jax.vmap(one))(jnp.asarray(seeds))


xs, steps_eff = {}, {}
for pname, problem in PROBLEMS.items():
    seeds = [0] if pname == "online" else list(range(SEEDS))   # the online problem is fixed
    for name in OPTIMIZERS:
        x, eff = run(name, problem, seeds)
        xs[pname, name], steps_eff[pname, name] = np.asarray(x), np.asarray(eff)
        print(f"{pname:10s} {name:28s} x_T = {x[:, -1].mean():+.4f} "
              f"(± {x[:, -1].std():.4f} over {len(seeds)} seed{'s' if len(seeds) > 1 else ''})")

# %% [markdown]
# ## Where the iterates go
#
# Adam climbs to the worst point $x = +1$ on both problems. AMSGrad goes to the optimum
# $x^* = -1$ on the online problem; on the stochastic one it moves towards it much more
# slowly, with a large spread over seeds at this length (the paper ran 10⁶ steps; so does
# `experiments/amsgrad.py`). The stochastic problem: mean ± std over seeds.

# %%
t = np.arange(1, STEPS + 1)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained", sharey=True)
for ax, pname in zip(axes, PROBLEMS, strict=True):
    for name in OPTIMIZERS:
        x = xs[pname, name]
        m, s = x.mean(axis=0), x.std(axis=0)
        ax.plot(t, m, color=COLORS[name], label=name)
        ax.fill_between(t, m - s, m + s, color=COLORS[name], alpha=0.2)
    ax.axhline(-1, color="k", ls=":", lw=1, label="optimum x* = −1")
    ax.set_xscale("log")
    ax.set_xlabel("step t")
    ax.set_title(f"{pname} problem" + (f" ({SEEDS} seeds, mean ± std)"
                                       if pname == "stochastic" else ""))
    ax.grid(alpha=0.3)
axes[0].set_ylabel("iterate $x_t$")
axes[0].legend(fontsize=8)
fig.suptitle("Adam goes to the worst point x = +1 on both problems, AMSGrad towards the "
             "optimum x* = −1")
plt.show()

# %% [markdown]
# ## Why: the effective step size
#
# On the online problem the large gradient 1010 arrives at steps 1, 102, 203, ... Adam's
# $\hat v$ decays by $\beta_2 = 0.99$ per step after it, so its effective step size grows
# back by a factor of about $e^{0.5} \approx 1.6$ per 100 steps and the next hundred small
# gradients $-10$ each move $x$ further up than the one large gradient moved it down.
# AMSGrad's maximum keeps the step size of the large gradient, so it stays small and only
# shrinks with $\alpha_t$.

# %%
window = slice(0, min(STEPS, 505))
fig, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
for name in OPTIMIZERS:
    ax.plot(t[window], steps_eff["online", name][0, window], color=COLORS[name], label=name)
ax.set_yscale("log")
ax.set_xlabel("step t (large gradient at t = 1, 102, 203, ...)")
ax.set_ylabel(r"effective step $\alpha_t / (\sqrt{\hat v_t} + \epsilon)$")
ax.set_title("Online problem: Adam's step size recovers between large gradients")
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# ## Average regret
#
# The paper's measure is the average regret $R_T/T = \frac1T\sum_{t\le T} f_t(x_t) -
# f_t(x^*)$. For the online problem $f_t$ is the linear loss seen at step $t$; for the
# stochastic problem we measure it against the expected loss $F(x) = 0.2\,x$ (the sampled
# losses would add a zero-mean random walk). Adam's average regret tends to that of
# sitting at $x = +1$, $F(1) - F(-1)$ (dotted), while AMSGrad's keeps decreasing.

# %%
def average_regret(pname, x):
    """R_T/T for linear losses f_t(x) = c_t·x with x* = −1: regret_t = c_t·(x_t − x*)."""
    problem = PROBLEMS[pname]
    x_before = np.concatenate([np.zeros((x.shape[0], 1)), x[:, :-1]], axis=1)  # x_t, x_0 = 0
    if pname == "online":
        slope = jax.vmap(lambda s: jax.grad(problem.loss_at)(problem.x0, s, None)[0])
        c = np.asarray(slope(jnp.arange(STEPS)))                 # the slope seen at each step
    else:
        c = float(jax.grad(problem.loss)(problem.x0)[0])
    return np.cumsum(c * (x_before + 1.0), axis=1) / t


fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
for ax, pname in zip(axes, PROBLEMS, strict=True):
    for name in OPTIMIZERS:
        r = average_regret(pname, xs[pname, name])
        m, s = r.mean(axis=0), r.std(axis=0)
        ax.plot(t, m, color=COLORS[name], label=name)
        ax.fill_between(t, np.maximum(m - s, m / 10), m + s, color=COLORS[name], alpha=0.2)
    loss = PROBLEMS[pname].loss
    worst = float(loss(jnp.array([1.0])) - loss(jnp.array([-1.0])))
    ax.axhline(worst, color="k", ls=":", lw=1, label="regret of x = +1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step T")
    ax.set_title(f"{pname} problem" + (f" ({SEEDS} seeds, mean ± std)"
                                       if pname == "stochastic" else ""))
    ax.grid(alpha=0.3)
axes[0].set_ylabel("average regret $R_T / T$")
axes[0].legend(fontsize=8)
plt.show()

# %%
print(f"average regret after {STEPS:,} steps:")
for pname in PROBLEMS:
    for name in OPTIMIZERS:
        r = average_regret(pname, xs[pname, name])[:, -1]
        print(f"  {pname:10s} {name:28s} {r.mean():.4f}")
