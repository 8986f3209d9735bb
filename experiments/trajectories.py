"""Ruder's pictures (Ruder 2016, "An overview of gradient descent optimization algorithms",
Fig. 4 a/b, from Alec Radford's animations): optimizer trajectories on Beale's function and on
a saddle point.

The paper's figure shows SGD, Momentum, NAG, Adagrad, Adadelta and RMSprop (Adam is not in
it). Its reading (Section 4.9): on Beale's contours, Adagrad, Adadelta and RMSprop "almost
immediately head off in the right direction and converge similarly fast, while Momentum and
NAG are led off-track", NAG correcting its course sooner thanks to its look-ahead; on the
saddle, SGD, Momentum and NAG have a hard time breaking the symmetry (the latter two
eventually escape), while Adagrad, RMSprop and Adadelta "quickly head down the negative
slope". No numbers are given: the claim is qualitative, and we turn each part into a
measured check (below). We add Adam (the issue counts it with the adaptive methods) and
PowerSign, AddSign and Lion (reported, not part of the claim).

What we run (float32, deterministic: one seed, no noise):

* Beale f(u, v) = (1.5 − u + uv)² + (2.25 − u + uv²)² + (2.625 − u + uv³)², minimum f(3, ½) = 0,
  from (1, 1.5): the start the issue gives for Radford's animations (we could not check his
  code). DeepOBS's start (−4.5, 4.5), optlab.tasks.beale's default, has f ≈ 1.7·10⁵ and
  ‖∇f‖ ≈ 10⁶: plain SGD then needs a learning rate below ~10⁻⁶ to survive the first step and
  crawls afterwards, a picture of that start's scale rather than of the methods. We still run
  it, tuned by the same rule, and report it beside the main start.
* The saddle f(u, v) = u² − v² (optlab.tasks.saddle) from (1, 10⁻³), just off the stable
  manifold v = 0, with each optimizer's learning rate tuned on Beale (one learning rate per
  optimizer for both pictures; tuning on the saddle itself would only reward the largest
  stable step). Escape: the first step with |v| > max(1, 10·lr): Adam's and Adagrad's first
  step is about ±lr per coordinate whatever the surface, so with a threshold of 1 alone a
  Beale-tuned lr of 1.78 "escaped" in one step (a first full run). Escape steps over the whole
  learning-rate grid show how much of the result is the learning rate.
* Optimizer settings: Momentum and NAG μ = 0.9; Adagrad as in the paper's equation
  (G₀ = 0, ε = 10⁻⁸ inside the square root; optax's default G₀ = 0.1 would damp the first
  steps); Adadelta ρ = 0.9, ε = 10⁻⁶, learning rate a multiplier of Zeiler's step (1 = the
  paper's method); RMSprop γ = 0.9, ε = 10⁻⁸; Adam, PowerSign, AddSign defaults; Lion
  β = (0.9, 0.99) without weight decay (a regulariser has no place on a test function).
* Tuning (same budget for every optimizer): the learning-rate grid 10^(k/4), k = −16..8
  (10⁻⁴..10², 25 values), N steps (1000 full, 400 quick). Rule: the lowest final Beale loss
  f(x_N), losses below 10⁻⁸ counting as equal (float32 noise at the minimum), ties broken by
  the fewest steps to f < 10⁻³; a run that leaves the finite numbers loses.

Checks (each optimizer at its tuned learning rate; "adaptive" = Adagrad, Adadelta, RMSprop,
Adam):

* ``beale_adaptive_fast``: every adaptive method reaches f < 10⁻³ in fewer steps than SGD;
* ``beale_momentum_off_track``: Momentum and NAG both overshoot more than every adaptive
  method; overshoot = Σₜ max(0, dₜ₊₁ − dₜ)/d₀ with dₜ = ‖xₜ − x*‖ up to the step f < 10⁻³ (or
  N): the distance travelled *away* from the minimum, 0 for a path that never turns back;
* ``beale_nag_corrects``: NAG overshoots less than Momentum;
* ``saddle_adaptive_escape``: every adaptive method escapes before any of SGD,
  Momentum and NAG;
* ``saddle_momentum_eventually``: Momentum and NAG escape within N steps, and before SGD.

Differences from the paper: Radford's learning rates, step counts and start points are not
published with the figure; ours are tuned by the stated rule. Float32 (JAX's default).
"""

from __future__ import annotations

import functools
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import optlab
from optlab import reproduce
from optlab.reproduce import Context, Experiment, Outcome, markdown_table
from optlab.tasks import beale, saddle

OPTIMIZERS = {
    "SGD": lambda lr: optlab.sgd(lr),
    "Momentum": lambda lr: optlab.sgd(lr, momentum=0.9),
    "NAG": lambda lr: optlab.sgd(lr, momentum=0.9, nesterov=True),
    "Adagrad": lambda lr: optlab.adagrad(lr, initial_accumulator_value=0.0, eps=1e-8),
    "Adadelta": lambda lr: optlab.adadelta(lr, rho=0.9, eps=1e-6),
    "RMSprop": lambda lr: optlab.rmsprop(lr, decay=0.9, eps=1e-8),
    "Adam": lambda lr: optlab.adam(lr),
    "PowerSign": lambda lr: optlab.powersign(lr),
    "AddSign": lambda lr: optlab.addsign(lr),
    "Lion": lambda lr: optlab.lion(lr, weight_decay=0.0),
}
ADAPTIVE = ("Adagrad", "Adadelta", "RMSprop", "Adam")
NON_ADAPTIVE = ("SGD", "Momentum", "NAG")
COLORS = {"SGD": "tab:red", "Momentum": "tab:green", "NAG": "tab:purple",
          "Adagrad": "tab:blue", "Adadelta": "gold", "RMSprop": "black",
          "Adam": "tab:orange", "PowerSign": "tab:pink", "AddSign": "tab:brown",
          "Lion": "tab:cyan"}
STYLES = {name: ("--" if name in ("PowerSign", "AddSign", "Lion") else "-") for name in COLORS}

LRS = tuple(float(10.0 ** (k / 4)) for k in range(-16, 9))
TARGET = 1e-3  # "reached the minimum": f < TARGET on Beale
FLOOR = 1e-8  # final Beale losses below this count as equal when tuning
ESCAPE = 1.0  # "escaped the saddle": |v| > max(ESCAPE, ESCAPE_STEPS · lr)
ESCAPE_STEPS = 10  # ... so a first step of about ±lr (Adam, Adagrad) is not an escape alone
BEALE_START = (1.0, 1.5)
DEEPOBS_START = (-4.5, 4.5)
BEALE_MIN = (3.0, 0.5)


@functools.partial(jax.jit, static_argnames=("name", "steps"))
def paths(name: str, steps: int, lrs: jax.Array, starts: jax.Array,
          surfaces: jax.Array) -> jax.Array:
    """The iterates x_0..x_steps of optimizer ``name`` for every learning rate and every
    case (start ``starts[i]`` on surface ``surfaces[i]``: 0 = Beale, 1 = saddle), as one
    program: shape ``(len(lrs), len(starts), steps + 1, 2)``."""
    grads = (jax.grad(beale().loss), jax.grad(saddle().loss))

    def one(lr, x0, surface):
        tx = OPTIMIZERS[name](lr)

        def body(carry, _):
            x, state = carry
            # select between the gradients (not the losses: an overflowing Beale gradient
            # far out on the saddle would turn into NaN through a select's zero cotangent)
            g = jnp.where(surface == 0, grads[0](x), grads[1](x))
            u, state = tx.update(g, state, x)
            x = optax.apply_updates(x, u)
            return (x, state), x

        _, xs = jax.lax.scan(body, (x0, tx.init(x0)), None, length=steps)
        return jnp.concatenate([x0[None], xs])

    per_case = jax.vmap(one, (None, 0, 0))
    return jax.vmap(per_case, (0, None, None))(lrs, starts, surfaces)


def beale_loss(xs: np.ndarray) -> np.ndarray:
    """Beale's function at points ``(..., 2)``, in float64."""
    a, b = np.asarray(xs, np.float64)[..., 0], np.asarray(xs, np.float64)[..., 1]
    with np.errstate(all="ignore"):
        return ((1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2
                + (2.625 - a + a * b**3) ** 2)


def first_step(mask: np.ndarray) -> int | None:
    """The first index where ``mask`` is True (None if never)."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def steps_to_target(losses: np.ndarray, target: float = TARGET) -> int | None:
    """The first step t with f(x_t) < target (None if never, or after leaving the finite
    numbers)."""
    losses = np.asarray(losses, float)
    return first_step(np.isfinite(losses) & (losses < target))


def escape_threshold(lr: float) -> float:
    """|v| beyond which a run at learning rate ``lr`` has escaped the saddle: at least
    ESCAPE, and at least ESCAPE_STEPS steps of size ``lr`` (a step-size artefact otherwise)."""
    return max(ESCAPE, ESCAPE_STEPS * float(lr))


def escape_step(xs: np.ndarray, threshold: float = ESCAPE) -> int | None:
    """The first step with |v_t| > threshold (None if never)."""
    v = np.abs(np.asarray(xs, float)[:, 1])
    return first_step(~(v <= threshold))  # NaN/inf count as escaped


def overshoot(xs: np.ndarray, x_star, until: int | None = None) -> float:
    """Σ max(0, d_{t+1} − d_t) / d_0, d_t = ‖x_t − x*‖, over steps 0..until: the distance
    travelled away from the minimum, relative to the start's distance (0 for a path that only
    approaches it; inf when the path leaves the finite numbers)."""
    xs = np.asarray(xs, np.float64)[: None if until is None else until + 1]
    d = np.linalg.norm(xs - np.asarray(x_star, np.float64), axis=-1)
    if not np.all(np.isfinite(d)):
        return float("inf")
    return float(np.maximum(np.diff(d), 0.0).sum() / d[0])


def path_ratio(xs: np.ndarray, x_star, until: int | None = None) -> float:
    """Path length up to ``until`` over the straight distance ‖x_0 − x*‖ (1 = a straight
    line to the minimum)."""
    xs = np.asarray(xs, np.float64)[: None if until is None else until + 1]
    if not np.all(np.isfinite(xs)):
        return float("inf")
    length = np.linalg.norm(np.diff(xs, axis=0), axis=-1).sum()
    return float(length / np.linalg.norm(xs[0] - np.asarray(x_star, np.float64)))


def tune_index(final_losses: np.ndarray, reach_steps: list[int | None]) -> int:
    """The tuning rule: lowest final loss (values below FLOOR equal; non-finite = worst),
    ties broken by the fewest steps to f < TARGET, then by the smaller learning rate."""
    keys = []
    for i, (f, s) in enumerate(zip(final_losses, reach_steps, strict=True)):
        f = float(f) if np.isfinite(f) else float("inf")
        keys.append((max(f, FLOOR), s if s is not None else float("inf"), i))
    return min(keys)[2]


def _fmt_steps(s: int | None, steps: int) -> str:
    return f"> {steps}" if s is None else str(s)


def measure(ctx: Context, steps: int) -> dict[str, Any]:
    """Every optimizer over the learning-rate grid on the three cases; the tuned learning rate
    (Beale from BEALE_START) and that run's measurements, the grids, and the tuned paths."""
    lrs = jnp.asarray(LRS, jnp.float32)
    starts = jnp.asarray([BEALE_START, DEEPOBS_START, saddle().x0], jnp.float32)
    surfaces = jnp.asarray([0, 0, 1], jnp.int32)
    out: dict[str, dict[str, Any]] = {"per_opt": {}, "beale_paths": {}, "saddle_paths": {},
                                      "reach_grid": {}, "escape_grid": {}, "optimizers": {}}
    for name in OPTIMIZERS:
        ctx.log(f"{name}: Beale from {BEALE_START} and {DEEPOBS_START}, saddle; "
                f"{len(LRS)} learning rates × {steps} steps")
        cases = np.asarray(paths(name, steps, lrs, starts, surfaces))
        xs, xs_deep, xs_saddle = cases[:, 0], cases[:, 1], cases[:, 2]
        f, f_deep = beale_loss(xs), beale_loss(xs_deep)
        reach = [steps_to_target(f[i]) for i in range(len(LRS))]
        reach_deep = [steps_to_target(f_deep[i]) for i in range(len(LRS))]
        best, best_deep = tune_index(f[:, -1], reach), tune_index(f_deep[:, -1], reach_deep)
        escapes = [escape_step(xs_saddle[i], escape_threshold(lr)) for i, lr in enumerate(LRS)]
        until = reach[best] if reach[best] is not None else steps
        out["per_opt"][name] = r = {
            "lr": LRS[best],
            "beale_steps_to_target": reach[best],
            "beale_final_loss": float(f[best, -1]),
            "beale_overshoot": overshoot(xs[best], BEALE_MIN, until),
            "beale_path_ratio": path_ratio(xs[best], BEALE_MIN, until),
            "saddle_escape_threshold": escape_threshold(LRS[best]),
            "saddle_escape_step": escapes[best],
            "saddle_v_at_50": float(xs_saddle[best, min(50, steps), 1]),
            "deepobs_lr": LRS[best_deep],
            "deepobs_steps_to_target": reach_deep[best_deep],
            "deepobs_final_loss": float(f_deep[best_deep, -1]),
        }
        out["beale_paths"][name], out["saddle_paths"][name] = xs[best], xs_saddle[best]
        out["reach_grid"][name], out["escape_grid"][name] = reach, escapes
        out["optimizers"][name] = {
            **r,
            "grid_beale_final_loss": f[:, -1].tolist(),
            "grid_beale_steps_to_target": reach,
            "grid_deepobs_steps_to_target": reach_deep,
            "grid_saddle_escape_step": escapes,
            # the tuned paths, downsampled to ≤ 300 points for the JSON
            "beale_path": np.round(xs[best][_sample(steps)], 5).tolist(),
            "saddle_path": np.round(np.clip(xs_saddle[best][_sample(steps)], -1e6, 1e6),
                                    6).tolist(),
        }
    return out


def claim_checks(per_opt: dict[str, dict[str, Any]], adaptive: tuple[str, ...] = ADAPTIVE
                 ) -> dict[str, bool]:
    """The parts of the claim (see the module docstring), ``adaptive`` the adaptive methods."""
    def reach(n):
        s = per_opt[n]["beale_steps_to_target"]
        return math.inf if s is None else s

    def esc(n):
        s = per_opt[n]["saddle_escape_step"]
        return math.inf if s is None else s

    shoot = {n: per_opt[n]["beale_overshoot"] for n in per_opt}
    checks = {
        "beale_adaptive_fast": all(reach(n) < reach("SGD") for n in adaptive),
        "beale_momentum_off_track": min(shoot["Momentum"], shoot["NAG"])
        > max(shoot[n] for n in adaptive),
        "beale_nag_corrects": shoot["NAG"] < shoot["Momentum"],
        "saddle_adaptive_escape": max(esc(n) for n in adaptive)
        < min(esc(n) for n in NON_ADAPTIVE),
        "saddle_momentum_eventually": esc("Momentum") < math.inf and esc("NAG") < math.inf
        and max(esc("Momentum"), esc("NAG")) < esc("SGD"),
    }
    return {k: bool(v) for k, v in checks.items()}


def run(ctx: Context) -> Outcome:
    steps = 400 if ctx.quick else 1000
    m = measure(ctx, steps)
    per_opt = m["per_opt"]
    checks = claim_checks(per_opt)
    ruder3 = ("Adagrad", "Adadelta", "RMSprop")  # the adaptive methods in Ruder's figure
    without_adam = {k: v for k, v in claim_checks(per_opt, ruder3).items()
                    if k in ("beale_adaptive_fast", "beale_momentum_off_track",
                             "saddle_adaptive_escape")}
    results = {"steps": steps, "lr_grid": list(LRS), "target": TARGET, "floor": FLOOR,
               "escape": {"at_least": ESCAPE, "lr_steps": ESCAPE_STEPS},
               "beale_start": BEALE_START, "deepobs_start": DEEPOBS_START,
               "optimizers": m["optimizers"], "checks_without_adam": without_adam}

    _draw_beale(ctx, m["beale_paths"], per_opt, steps, checks)
    _draw_saddle(ctx, m["saddle_paths"], per_opt, steps)
    _draw_grids(ctx, m["reach_grid"], m["escape_grid"], steps)
    frames, dpi = (6, 48) if ctx.quick else (60, 76)
    _animate(ctx, "beale", m["beale_paths"], steps, frames, dpi)
    _animate(ctx, "saddle", m["saddle_paths"], steps, frames, dpi)
    return Outcome(all(checks.values()), _summary(per_opt, checks, without_adam, steps),
                   results, checks)


def _summary(per_opt, checks, without_adam, steps: int) -> str:
    rows = []
    for name, r in per_opt.items():
        rows.append([name, f"{r['lr']:.3g}", _fmt_steps(r["beale_steps_to_target"], steps),
                     f"{r['beale_final_loss']:.1e}", f"{r['beale_overshoot']:.2f}",
                     f"{r['beale_path_ratio']:.2f}",
                     f"{_fmt_steps(r['saddle_escape_step'], steps)} "
                     f"({r['saddle_escape_threshold']:.3g})",
                     f"{r['deepobs_lr']:.3g}" if np.isfinite(r["deepobs_final_loss"])
                     else "diverges at every lr",
                     _fmt_steps(r["deepobs_steps_to_target"], steps)])
    table = markdown_table(
        ["optimizer", "tuned lr", "Beale: steps to f < 1e-3", f"f after {steps}",
         "overshoot", "path / straight line", "saddle: escape step (threshold on v)",
         "lr from (−4.5, 4.5)", "steps to f < 1e-3 from (−4.5, 4.5)"], rows)
    reproduced = all(checks.values())
    words = {True: "yes", False: "no"}
    return (
        f"Each optimizer at the learning rate tuned on Beale from {BEALE_START} (same grid of "
        f"{len(LRS)} values 10⁻⁴..10² for all; {steps} steps; rule: lowest final loss, "
        f"< {FLOOR:g} counted equal, then fewest steps to f < {TARGET:g}). The saddle "
        "u² − v² from (1, 10⁻³) uses the same learning rates; a run has escaped it when "
        f"|v| > max({ESCAPE:g}, {ESCAPE_STEPS}·lr), so that the first step of a sign-like "
        "method (about ±lr per coordinate for Adam and Adagrad) is not an escape by itself. "
        "Ruder (2016, Fig. 4, Sec. 4.9) gives no numbers; his reading is: Adagrad, Adadelta, "
        "RMSprop head straight for the minimum while Momentum and NAG go off-track (NAG "
        "correcting sooner); on the saddle SGD, Momentum and NAG struggle to break symmetry "
        "while the adaptive methods escape quickly.\n\n" + table + "\n\n"
        "Parts of the claim (adaptive = Adagrad, Adadelta, RMSprop, Adam):\n\n"
        + "\n".join(f"- `{k}`: {words[v]}" for k, v in checks.items())
        + "\n\nThe same checks with only the adaptive methods of Ruder's figure (Adagrad, "
        "Adadelta, RMSprop; no Adam): "
        + ", ".join(f"`{k}`: {words[v]}" for k, v in without_adam.items()) + "."
        + f"\n\n**{'Reproduced' if reproduced else 'Not reproduced'}**"
        + ("." if reproduced else
           f": {', '.join(k for k, v in checks.items() if not v)} did not hold.")
        + " The escape steps over the whole learning-rate grid (figure `lr_sensitivity`) "
        "show which of these orderings are a matter of the learning rate.")


def _sample(steps: int, n: int = 120) -> np.ndarray:
    """Indices 0..steps, dense at the start (quadratic spacing), at most n."""
    return np.unique(np.round(steps * np.linspace(0, 1, n) ** 2).astype(int))


# ------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------

BEALE_BOX = (-1.0, 4.5, -1.5, 2.5)  # u_min, u_max, v_min, v_max
SADDLE_BOX = (-1.5, 1.5, -1.5, 1.5)


def _beale_contours(ax, box=BEALE_BOX):
    u = np.linspace(box[0], box[1], 300)
    v = np.linspace(box[2], box[3], 300)
    uu, vv = np.meshgrid(u, v)
    zz = beale_loss(np.stack([uu, vv], -1))
    ax.contour(uu, vv, zz, levels=np.logspace(-1, 5, 25), norm="log", cmap="Greys",
               linewidths=0.6, alpha=0.8)
    ax.plot(*BEALE_MIN, marker="*", ms=14, color="red", mec="k", zorder=5,
            label="minimum (3, 0.5)")
    ax.plot(*BEALE_START, marker="o", ms=6, color="k", zorder=5)
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    ax.set_xlabel("u")
    ax.set_ylabel("v")


def _saddle_contours(ax, box=SADDLE_BOX):
    u = np.linspace(box[0], box[1], 200)
    v = np.linspace(box[2], box[3], 200)
    uu, vv = np.meshgrid(u, v)
    ax.contour(uu, vv, uu**2 - vv**2, levels=np.linspace(-2.25, 2.25, 19), cmap="Greys",
               linewidths=0.6, alpha=0.8)
    ax.plot(0, 0, marker="x", ms=10, color="red", mew=2, zorder=5, label="saddle point (0, 0)")
    ax.plot(1.0, 1e-3, marker="o", ms=6, color="k", zorder=5)
    ax.set_xlim(box[0], box[1])
    ax.set_ylim(box[2], box[3])
    ax.set_xlabel("u")
    ax.set_ylabel("v")


def _label(name, r, key, steps):
    s = r[key]
    when = f"{s} steps" if s is not None else f"> {steps} steps"
    return f"{name} (lr {r['lr']:.2g}, {when})"


def _draw_beale(ctx, beale_paths, per_opt, steps, checks):
    fig, axes = reproduce.figure(1, 1, width=9.0, height=5.6)
    ax = axes[0, 0]
    _beale_contours(ax)
    for name, xs in beale_paths.items():
        ax.plot(xs[:, 0], xs[:, 1], STYLES[name], color=COLORS[name], lw=1.5,
                label=_label(name, per_opt[name], "beale_steps_to_target", steps))
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              title=f"tuned lr, steps to f < {TARGET:g}", title_fontsize=7.5)
    fast = "faster than" if checks["beale_adaptive_fast"] else "not all faster than"
    off = ("overshoot more" if checks["beale_momentum_off_track"]
           else "do not overshoot more")
    ax.set_title(f"Beale from (1, 1.5), each optimizer at its tuned learning rate:\n"
                 f"adaptive methods {fast} SGD; Momentum/NAG {off} than them", fontsize=9.5)
    ctx.save_figure(fig, "beale_paths")


def _draw_saddle(ctx, saddle_paths, per_opt, steps):
    fig, axes = reproduce.figure(1, 2, width=5.4, height=4.6)
    ax = axes[0, 0]
    _saddle_contours(ax)
    for name, xs in saddle_paths.items():
        xs = np.where(np.isfinite(xs), xs, np.nan)
        ax.plot(xs[:, 0], xs[:, 1], STYLES[name], color=COLORS[name], lw=1.5, label=name)
    ax.set_title("saddle u² − v² from (1, 10⁻³): paths", fontsize=9)
    ax = axes[0, 1]
    t = np.arange(steps + 1)
    for name, xs in saddle_paths.items():
        v = np.abs(xs[:, 1])
        v = np.where(np.isfinite(v), v, np.nan)
        ax.plot(t + 1, v, STYLES[name], color=COLORS[name], lw=1.5,
                label=_label(name, per_opt[name], "saddle_escape_step", steps))
        s = per_opt[name]["saddle_escape_step"]
        if s is not None and np.isfinite(v[s]):  # where it passed its threshold
            ax.plot(s + 1, v[s], "o", color=COLORS[name], ms=4)
    ax.axhline(ESCAPE, color="k", lw=0.8, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1e-4, 1e3)
    ax.set_xlabel("step t + 1")
    ax.set_ylabel(f"|v_t| (escape, dot: |v| > max({ESCAPE:g}, {ESCAPE_STEPS}·lr))")
    ax.set_title("escaping the saddle (Beale-tuned lr)", fontsize=9)
    ax.legend(fontsize=6.5, loc="upper left")
    ctx.save_figure(fig, "saddle_paths")


def _draw_grids(ctx, reach_grid, escape_grid, steps):
    fig, axes = reproduce.figure(1, 2, width=5.4, height=4.2)
    for ax, grid, ylabel, title in (
            (axes[0, 0], reach_grid, f"Beale: steps to f < {TARGET:g}",
             "Beale from (1, 1.5): speed vs learning rate"),
            (axes[0, 1], escape_grid, f"saddle: steps to |v| > max({ESCAPE:g}, "
             f"{ESCAPE_STEPS}·lr)",
             "saddle from (1, 10⁻³): escape vs learning rate")):
        for name, s in grid.items():
            y = np.array([np.nan if v is None else v for v in s], float)
            ax.plot(LRS, y, STYLES[name], marker=".", color=COLORS[name], label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel(f"{ylabel} (gap: not within {steps})")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 1].legend(fontsize=7, ncol=2)
    ctx.save_figure(fig, "lr_sensitivity")


def _animate(ctx, surface, paths_by_name, steps, frames, dpi):
    """An animated GIF: the tuned paths growing over the steps (quadratic time axis)."""
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    fig, axes = reproduce.figure(1, 1, width=6.4, height=5.0)
    ax = axes[0, 0]
    if surface == "beale":
        _beale_contours(ax)
    else:
        _saddle_contours(ax)
    lines, heads = {}, {}
    for name in paths_by_name:
        (lines[name],) = ax.plot([], [], STYLES[name], color=COLORS[name], lw=1.6, label=name)
        (heads[name],) = ax.plot([], [], "o", color=COLORS[name], ms=5)
    ax.legend(fontsize=7, loc="lower left" if surface == "beale" else "upper right", ncol=2)
    title = ax.set_title("Beale: step 0" if surface == "beale" else "saddle u² − v²: step 0")
    fig.canvas.draw()  # lay the figure out once; the frames keep that layout
    fig.set_layout_engine("none")
    ts = np.unique(np.round(steps * np.linspace(0, 1, frames) ** 2).astype(int))

    def update(t):
        for name, xs in paths_by_name.items():
            xs = np.where(np.isfinite(xs[: t + 1]), xs[: t + 1], np.nan)
            lines[name].set_data(xs[:, 0], xs[:, 1])
            heads[name].set_data(xs[-1:, 0], xs[-1:, 1])
        title.set_text(f"{'Beale' if surface == 'beale' else 'saddle u² − v²'}: step {t}")
        return [*lines.values(), *heads.values(), title]

    anim = FuncAnimation(fig, update, frames=ts, blit=False)
    fd, tmp = tempfile.mkstemp(suffix=".gif", dir=ctx.out)
    os.close(fd)
    try:
        anim.save(tmp, writer=PillowWriter(fps=12), dpi=dpi)
        data = Path(tmp).read_bytes()
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    ctx.save_file(f"{surface}.gif", lambda f: f.write(data))


EXPERIMENT = Experiment(
    name="trajectories",
    title="Ruder's pictures: trajectories on Beale and a saddle",
    claim="On Beale's function the adaptive-rate methods (Adagrad, Adadelta, RMSprop; Adam) "
    "head to the minimum quickly and directly while SGD is slow and Momentum/NAG overshoot; "
    "on a saddle point SGD, Momentum and NAG struggle to break symmetry while the adaptive "
    "methods escape quickly.",
    source="Ruder 2016, \"An overview of gradient descent optimization algorithms\", Fig. 4 "
    "(animations by Alec Radford)",
    run=run,
    quick_asserts=(),  # the claim is qualitative and lr-dependent: reported, not asserted
    seeds=1,  # deterministic: no noise, no initialisation
)

if __name__ == "__main__":
    sys.exit(reproduce.main(EXPERIMENT))
