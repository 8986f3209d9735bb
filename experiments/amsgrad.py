"""AMSGrad counterexample (Reddi, Kale & Kumar, ICLR 2018, Section 5 "synthetic experiments").

Online problem: f_t(x) = 1010·x if t mod 101 = 1 else −10·x; stochastic problem: 1010·x with
probability 0.01 else −10·x; x ∈ [−1, 1] (projected after each step), x₀ = 0, optimum x* = −1.
Adam and AMSGrad with β₁ = 0.9, β₂ = 0.99 and α_t = 0.5/√t, as in the paper's synthetic
experiments. Both AMSGrad forms are run: optax's (the max of the bias-corrected v̂) and
PyTorch's (the max of the raw v, bias-corrected after). We record x_t and the average regret
R_t/t = (1/t) Σ_s f_s(x_s) − f_s(x*). The claim: Adam converges to the worst point +1 with a
non-vanishing average regret; AMSGrad moves to the optimum −1 and its average regret → 0.
"""

from __future__ import annotations

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optlab
from optlab import reproduce
from optlab.reproduce import Context, Experiment, Outcome, markdown_table, mean_std
from optlab.tasks import reddi_online, reddi_stochastic

B1, B2 = 0.9, 0.99
OPTIMIZERS = {
    "Adam": lambda lr: optlab.adam(lr, b1=B1, b2=B2),
    "AMSGrad (optax: max of v̂)": lambda lr: optlab.amsgrad(lr, b1=B1, b2=B2),
    "AMSGrad (PyTorch: max of v)": lambda lr: optlab.amsgrad(lr, b1=B1, b2=B2,
                                                             debias_before_max=False),
}
COLORS = {"Adam": "tab:red", "AMSGrad (optax: max of v̂)": "tab:blue",
          "AMSGrad (PyTorch: max of v)": "tab:green"}


def step_size(count: jax.Array) -> jax.Array:
    """α_t = 0.5/√t, t = count + 1."""
    return 0.5 / jnp.sqrt(count + 1.0)


@functools.partial(jax.jit, static_argnames=("name", "problem_name", "steps"))
def trajectories(name: str, problem_name: str, steps: int, seeds: jax.Array):
    """x_t and the gradient g_t at every step (before the update), one row per seed."""
    problem = PROBLEMS[problem_name]
    tx = OPTIMIZERS[name](step_size)

    def one(seed):
        base = jax.random.key(seed)

        def body(carry, step):
            x, state = carry
            g = jax.grad(problem.loss_at)(x, step, jax.random.fold_in(base, step))
            u, state = tx.update(g, state, x)
            return (problem.apply_projection(optax.apply_updates(x, u)), state), (x[0], g[0])

        _, (xs, gs) = jax.lax.scan(body, (problem.x0, tx.init(problem.x0)), jnp.arange(steps))
        return xs, gs

    return jax.vmap(one)(seeds)


PROBLEMS = {"online": reddi_online(), "stochastic": reddi_stochastic()}


def average_regret(xs: np.ndarray, gs: np.ndarray) -> np.ndarray:
    """R_t/t for linear losses f_s(x) = g_s·x: regret_s = g_s·(x_s − x*), x* = −1."""
    regret = np.cumsum(np.asarray(gs, np.float64) * (xs.astype(np.float64) + 1.0), axis=-1)
    return regret / np.arange(1, xs.shape[-1] + 1)


def log_points(steps: int, n: int = 400) -> np.ndarray:
    """Indices 0..steps−1, log-spaced (for plotting a million steps)."""
    return np.unique(np.geomspace(1, steps, n).astype(int) - 1)


def run(ctx: Context) -> Outcome:
    steps = 50_000 if ctx.quick else 1_000_000
    seeds = {"online": [0], "stochastic": ctx.seeds}  # the online problem is deterministic
    idx = log_points(steps)
    curves: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    final: dict[str, dict[str, list[float]]] = {}
    for problem in PROBLEMS:
        curves[problem], final[problem] = {}, {}
        for name in OPTIMIZERS:
            ctx.log(f"{problem}: {name}, {steps} steps × {len(seeds[problem])} seeds")
            xs, gs = trajectories(name, problem, steps, jnp.asarray(seeds[problem]))
            xs, gs = np.asarray(xs), np.asarray(gs)
            if problem == "stochastic":
                # regret against the expected loss F(x) = E f_t(x) = 0.2·x (the sampled
                # gradients ±1010/−10 would make it a random walk around it)
                gs = float(jax.grad(PROBLEMS[problem].loss)(PROBLEMS[problem].x0)[0])
            curves[problem][name] = {"x": xs[:, idx], "regret": average_regret(xs, gs)[:, idx]}
            final[problem][name] = xs[:, -1].tolist()

    fig, axes = reproduce.figure(2, 2, width=5.2, height=3.6)
    for col, problem in enumerate(PROBLEMS):
        for row, (key, label) in enumerate((("x", "$x_t$"), ("regret", "average regret $R_t/t$"))):
            ax = axes[row, col]
            for name, c in curves[problem].items():
                m, s = mean_std(c[key])
                if key == "regret":  # log axis: the band's lower edge at most down to m/10
                    m, s = np.where(m > 0, m, np.nan), np.minimum(s, 0.9 * np.abs(m))
                ax.plot(idx + 1, m, color=COLORS[name], label=name)
                ax.fill_between(idx + 1, m - s, m + s, color=COLORS[name], alpha=0.2)
            ax.set_xscale("log")
            ax.set_xlabel("iteration t")
            ax.set_ylabel(label)
            if key == "regret":
                ax.set_yscale("log")
            ax.set_title(f"{problem} problem" + (f" ({len(seeds[problem])} seeds, mean ± std)"
                                                  if problem == "stochastic" else ""))
            ax.grid(alpha=0.3)
    axes[0, 0].axhline(-1, color="k", lw=0.8, ls=":")
    axes[0, 1].axhline(-1, color="k", lw=0.8, ls=":")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Reddi et al. 2018 counterexample: β₁=0.9, β₂=0.99, α_t=0.5/√t, x* = −1")
    ctx.save_figure(fig, "amsgrad_counterexample")

    rows, verdicts = [], {}
    for problem in PROBLEMS:
        ok = True
        for name in OPTIMIZERS:
            m, s = mean_std(final[problem][name])
            r_m, _ = mean_std(curves[problem][name]["regret"][:, -1])
            rows.append([problem, name, f"{float(m):+.4f} ± {float(s):.4f}", f"{float(r_m):.4f}"])
            ok &= (m >= 0.9) if name == "Adam" else (m <= -0.9)
        verdicts[problem] = bool(ok)
    summary = (
        f"Final x after {steps:,} steps (paper: Adam → +1, AMSGrad → −1; "
        f"online problem deterministic, stochastic over {len(ctx.seeds)} seeds):\n\n"
        + markdown_table(["problem", "optimizer", f"x at t = {steps:,}", "average regret R_T/T"],
                         rows)
        + "\n\nReproduced (Adam ≥ 0.9 and each AMSGrad ≤ −0.9): "
        + ", ".join(f"{p}: {'yes' if v else 'no'}" for p, v in verdicts.items()) + "."
    )
    results = {"steps": steps, "b1": B1, "b2": B2, "step_size": "0.5/sqrt(t)",
               "final_x": final,
               "curves": {p: {n: {k: v.tolist() for k, v in c.items()}
                              for n, c in cs.items()} for p, cs in curves.items()},
               "t": (idx + 1).tolist()}
    return Outcome(all(verdicts.values()), summary, results, checks=verdicts)


EXPERIMENT = Experiment(
    name="amsgrad",
    title="AMSGrad counterexample",
    claim="On Reddi et al.'s online and stochastic linear problems on [−1, 1], Adam converges "
    "to the worst point x = +1 while AMSGrad converges to the optimum x = −1.",
    source="Reddi, Kale & Kumar, ICLR 2018",
    run=run,
    quick_asserts=("online",),  # the stochastic problem needs the full 10⁶ steps
    seeds=5,
)

if __name__ == "__main__":
    sys.exit(reproduce.main(EXPERIMENT))
