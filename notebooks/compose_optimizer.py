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
# # Composing your own optimizer from primitives
#
# Every optimizer in optlab is a short `optlab.chain` of *primitives*, each an ordinary
# `optax.GradientTransformation`:
#
# * **accumulators** (`optlab.accumulators`) read the gradient `"g"` (or another statistic)
#   and add a *named* statistic to a stream, owning its state: `ema`, `ema_of_square`,
#   `running_max`, `trace`, ...
# * **combiners** (`optlab.combiners`) read statistics by name and return a plain update
#   tree: `ratio`, `sign_agreement`, `sign_of`, `select`, ...
# * after the combiner any optax transform may follow; optlab's own are
#   `decoupled_weight_decay` and `scale_by_learning_rate` (× −η).
#
# In this notebook we write Adam, AMSGrad and Lion from these pieces, check that each
# follows optax's own implementation to a relative tolerance of 10⁻⁶ (in float64), write a
# sign rule that optax does not have (PowerSign) and check it against the paper's formula
# in NumPy, and finally write a primitive of our own.
#
# Set `OPTLAB_NOTEBOOK_QUICK=1` to run a shorter version (what CI does).

# %%
import os

import jax

jax.config.update("jax_enable_x64", True)  # exact comparisons: float64 everywhere

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import optlab  # noqa: E402
from optlab.stream import as_stream  # noqa: E402

QUICK = os.environ.get("OPTLAB_NOTEBOOK_QUICK") == "1"
STEPS = 100 if QUICK else 1000
print(f"{STEPS} steps per trajectory")

# %% [markdown]
# ## A test problem with a pytree of parameters
#
# Optimizers act on pytrees, so we check them on a nested dict of parameters: a small
# linear model with a weight matrix, a bias vector and a scalar temperature, fitted by least
# squares to random data.

# %%
rng = np.random.default_rng(0)
X = jnp.asarray(rng.normal(size=(64, 5)))
Y = jnp.asarray(rng.normal(size=(64, 3)))
params0 = {"linear": {"w": jnp.zeros((5, 3)), "b": jnp.zeros(3)}, "scale": jnp.asarray(1.0)}


def loss_fn(p):
    pred = p["scale"] * (X @ p["linear"]["w"] + p["linear"]["b"])
    return jnp.mean((pred - Y) ** 2)


def trajectory(tx, params=params0, loss=loss_fn, steps=STEPS):
    """The parameters after each of ``steps`` updates of ``tx`` (leading axis: the step)."""

    def step(carry, _):
        p, state = carry
        g = jax.grad(loss)(p)
        updates, state = tx.update(g, state, p)
        p = optax.apply_updates(p, updates)
        return (p, state), p

    _, ps = jax.lax.scan(step, (params, tx.init(params)), length=steps)
    return ps


def max_relative_difference(a, b):
    """max |a − b| / max(|b|, 1e-12) over every leaf and step."""
    diffs = jax.tree.map(lambda x, y: jnp.max(jnp.abs(x - y) / jnp.maximum(jnp.abs(y), 1e-12)),
                         a, b)
    return float(max(jax.tree.leaves(diffs)))


# %% [markdown]
# ## Adam
#
# Adam (Kingma & Ba 2015) keeps two statistics of the same gradient, the first and second
# moments, bias-corrects both and divides:
#
# $$\hat m_t = \frac{\beta_1 m_{t-1} + (1-\beta_1) g_t}{1-\beta_1^t},\qquad
# \hat v_t = \frac{\beta_2 v_{t-1} + (1-\beta_2) g_t^2}{1-\beta_2^t},\qquad
# \Delta\theta_t = -\eta\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}.$$
#
# Each line of the formula is one primitive. We name the statistics `mu` and `nu`, as
# optax does, so `optax.tree.get(state, "mu")` finds the first moment in both.

# %%
def my_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8):
    return optlab.chain(
        optlab.ema("mu", b1, debias=True),              # m̂
        optlab.ema_of_square("nu", b2, debias=True),    # v̂
        optlab.ratio("mu", "nu", eps=eps),              # m̂ / (√v̂ + ε)
        optlab.scale_by_learning_rate(learning_rate),   # × −η
    )


curves = {}  # trajectories kept for the comparison plot at the end
curves["Adam (ours = optax)"] = ours = trajectory(my_adam(0.05))
theirs = trajectory(optax.adam(0.05))
diff = max_relative_difference(ours, theirs)
print(f"Adam: max relative difference to optax.adam over {STEPS} steps: {diff:.2e}")
assert diff < 1e-6

# %% [markdown]
# The optimizer state holds exactly the statistics of the formula (two trees the shape of
# the parameters) and **one** step counter for the whole chain:

# %%
state = my_adam(0.05).init(params0)
print("mu:", jax.tree.map(jnp.shape, optax.tree.get(state, "mu")))
print("count:", optax.tree.get(state, "count"))
print("arrays in the state:", len(jax.tree.leaves(state)),
      "(3 leaves of params × 2 statistics + 1 counter)")

# %% [markdown]
# ## AMSGrad: one more primitive
#
# AMSGrad (Reddi et al. 2018) replaces $\hat v_t$ by its running maximum. That is one
# primitive, `running_max`, inserted after the second moment. Where the maximum is taken
# is a choice the two popular implementations make differently:
#
# * optax: the maximum of the bias-corrected $\hat v$;
# * PyTorch (`torch.optim.Adam(amsgrad=True)`): the maximum of the raw $v$, bias-corrected
#   afterwards (`optlab.debias` after `running_max`).
#
# Both are three or four primitives. We check the first against `optax.amsgrad`.

# %%
def my_amsgrad(learning_rate, b1=0.9, b2=0.999, eps=1e-8, *, pytorch=False):
    if pytorch:   # max of the raw v, then the bias correction
        second = [optlab.ema_of_square("nu", b2), optlab.running_max("nu"),
                  optlab.debias("nu", b2)]
    else:         # optax: max of the bias-corrected v̂
        second = [optlab.ema_of_square("nu", b2, debias=True), optlab.running_max("nu")]
    return optlab.chain(
        optlab.ema("mu", b1, debias=True),
        *second,
        optlab.ratio("mu", "nu", eps=eps),
        optlab.scale_by_learning_rate(learning_rate),
    )


curves["AMSGrad (ours = optax)"] = ours = trajectory(my_amsgrad(0.05))
diff = max_relative_difference(ours, trajectory(optax.amsgrad(0.05)))
print(f"AMSGrad (max of v̂): max relative difference to optax.amsgrad: {diff:.2e}")
assert diff < 1e-6

diff = max_relative_difference(trajectory(my_amsgrad(0.05, pytorch=True)),
                               trajectory(optlab.amsgrad(0.05, debias_before_max=False)))
print(f"AMSGrad (max of raw v): max relative difference to optlab.amsgrad(..., "
      f"debias_before_max=False): {diff:.2e}")
assert diff < 1e-6

# %% [markdown]
# ## Lion: a sign rule with decoupled weight decay
#
# Lion (Chen et al. 2023) takes the sign of an interpolation between the *previous*
# momentum and the gradient, then updates the momentum with a second rate:
#
# $$c_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
# \Delta\theta_t = -\eta\,(\mathrm{sign}(c_t) + \lambda\theta_{t-1}),\quad
# m_t = \beta_2 m_{t-1} + (1-\beta_2) g_t.$$
#
# `ema(..., emit="previous")` puts $m_{t-1}$ in the stream (and stores $m_t$), `sign_of`
# interpolates and takes the sign, `decoupled_weight_decay` adds $\lambda\theta$ to the
# update before the learning rate scales it.

# %%
def my_lion(learning_rate, b1=0.9, b2=0.99, weight_decay=1e-3):
    return optlab.chain(
        optlab.ema("mu", b2, emit="previous"),          # m_{t-1} in the stream, m_t stored
        optlab.sign_of("mu", "g", weight=b1),           # sign(β₁ m_{t-1} + (1−β₁) g_t)
        optlab.decoupled_weight_decay(weight_decay),    # + λθ
        optlab.scale_by_learning_rate(learning_rate),   # × −η
    )


curves["Lion (ours = optax)"] = ours = trajectory(my_lion(3e-3, weight_decay=0.1))
diff = max_relative_difference(ours, trajectory(optax.lion(3e-3, weight_decay=0.1)))
print(f"Lion: max relative difference to optax.lion: {diff:.2e}")
assert diff < 1e-6

# %% [markdown]
# ## PowerSign: a rule optax does not have
#
# Bello et al. (2017) found PowerSign by searching over update rules built from these same
# statistics: the gradient is scaled up by $e$ when its sign agrees with the sign of the
# momentum and down by $e$ when it disagrees,
#
# $$m_t = \beta m_{t-1} + (1-\beta) g_t,\qquad
# \Delta\theta_t = -\eta\, e^{\,s_t\,\mathrm{sign}(g_t)\,\mathrm{sign}(m_t)}\, g_t,$$
#
# with an optional *sign decay* $s_t$ that anneals the effect (here the linear decay
# $s_t = 1 - t/T$). There is no optax version to compare with, so we compare with the
# formula written out in NumPy.

# %%
def my_powersign(learning_rate, beta=0.9, decay_steps=None):
    sign_decay = None if decay_steps is None else optlab.schedules.linear_sign_decay(decay_steps)
    return optlab.chain(
        optlab.ema("mu", beta),
        optlab.sign_agreement("g", "mu", mode="power", sign_decay=sign_decay),
        optlab.scale_by_learning_rate(learning_rate),
    )


def numpy_powersign(learning_rate, beta, decay_steps, steps=STEPS):
    """The paper's formula on the same problem, one leaf at a time, in NumPy."""
    grad_fn = jax.jit(jax.grad(loss_fn))   # the gradient from JAX, the update in NumPy
    p = jax.tree.map(np.asarray, params0)
    m = jax.tree.map(np.zeros_like, p)
    out = []
    for t in range(steps):
        g = jax.tree.map(np.asarray, grad_fn(p))
        s = 1.0 - min(t, decay_steps) / decay_steps          # linear sign decay, s_0 = 1
        m = jax.tree.map(lambda m, g: beta * m + (1 - beta) * g, m, g)
        p = jax.tree.map(
            lambda p, g, m, s=s: p - learning_rate * np.exp(s * np.sign(g) * np.sign(m)) * g,
            p, g, m)
        out.append(p)
    return jax.tree.map(lambda *xs: np.stack(xs), *out)


curves["PowerSign, linear decay"] = ours = trajectory(my_powersign(0.01, decay_steps=STEPS))
reference = numpy_powersign(0.01, 0.9, STEPS)
diff = max_relative_difference(ours, reference)
print(f"PowerSign (linear sign decay): max relative difference to the NumPy formula: {diff:.2e}")
assert diff < 1e-6
diff = max_relative_difference(ours, trajectory(optlab.powersign(
    0.01, sign_decay=optlab.schedules.linear_sign_decay(STEPS))))
print(f"... and to optlab.powersign: {diff:.2e}")
assert diff < 1e-6

# %% [markdown]
# ## A primitive of your own
#
# A combiner is a function of the stream. `optlab.primitive(step_init, step_update,
# counted=...)` turns a pair of functions into a primitive: `step_init(params)` builds its
# state (none here), `step_update(updates, state, params, count)` receives the stream (a
# mapping from statistic names to trees) and the chain's shared step `count`.
#
# As an example we give Adam's direction PowerSign's treatment: the ratio
# $\hat m/(\sqrt{\hat v}+\epsilon)$ multiplied by $e^{\mathrm{sign}(g)\mathrm{sign}(\hat m)}$.
# Adam's own statistics are reused: nothing new is stored.

# %%
def power_ratio(m="mu", v="nu", eps=1e-8):
    def step_update(updates, state, params, count, **extra):
        stream = as_stream(updates, "power_ratio")  # the stream of named statistics
        out = jax.tree.map(
            lambda g, m, v: jnp.exp(jnp.sign(g) * jnp.sign(m)) * m / (jnp.sqrt(v) + eps),
            stream["g"], stream[m], stream[v])
        return out, state

    return optlab.primitive(lambda params: optax.EmptyState(), step_update, counted=False)


def power_adam(learning_rate, b1=0.9, b2=0.999):
    return optlab.chain(optlab.ema("mu", b1, debias=True),
                        optlab.ema_of_square("nu", b2, debias=True),
                        power_ratio("mu", "nu"),
                        optlab.scale_by_learning_rate(learning_rate))


print("power_adam state:", jax.tree.map(jnp.shape, power_adam(0.01).init(params0)))
curves["power_adam (new)"] = trajectory(power_adam(0.05))

# %% [markdown]
# Every chain is a plain optax transform, so it composes with optax's own transforms —
# here gradient clipping before it — and works under `optax.inject_hyperparams`, which makes
# the learning rate part of the state:

# %%
clipped = optax.chain(optax.clip_by_global_norm(1.0), power_adam(0.01))
injected = optax.inject_hyperparams(power_adam)(learning_rate=0.01)
print("injected learning rate:", injected.init(params0).hyperparams["learning_rate"])

# %% [markdown]
# Misplacing a transform is an error, not a silent bug. Clipping placed *between* an
# accumulator and the combiner would act on every statistic at once; optlab names it:

# %%
try:
    bad = optlab.chain(optlab.ema("mu", 0.9), optax.clip_by_global_norm(1.0),
                       optlab.select("mu"))
    bad.update(jax.grad(loss_fn)(params0), bad.init(params0), params0)
except TypeError as e:
    print(type(e).__name__, ":", str(e)[:200], "...")

# %% [markdown]
# ## Comparing the rules on one problem
#
# Finally, the loss along each trajectory computed above (each rule at the learning rate
# used in its check; no tuning, so this is not a ranking of the rules).

# %%
fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
for name, traj in curves.items():
    losses = jax.vmap(loss_fn)(traj)
    ax.plot(np.arange(1, STEPS + 1), losses, label=name)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("training loss (mean squared error)")
ax.set_title("Least squares on a pytree of parameters: rules written from primitives")
ax.legend()
ax.grid(alpha=0.3)
plt.show()

# %% [markdown]
# The zoo (`optlab.OPTIMIZERS`, `optlab list` on the command line) has 54 optimizers written
# this way; `optlab list adam` shows each one's formula and its chain of primitives.
