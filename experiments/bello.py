"""Neural Optimizer Search: PowerSign, AddSign and their sign decays (Bello, Zoph, Vasudevan & Le,
ICML 2017, arXiv 1709.07417).

Paper: an RNN controller trained with PPO writes update rules in a space of primitives
(operands g, m̂, v̂, sign(g), sign(m̂), decays ld/cd/rd, ...; unary and binary functions); each
candidate trains a small two-layer 3×3 ConvNet (32 filters, ReLU, batch normalization) on
CIFAR-10 for a few epochs and is rewarded with its validation accuracy. Several of the best
rules found multiply the gradient by a function of the sign agreement sign(g)·sign(m̂), which
the paper distils into PowerSign, e^(s_t·sign(g)·sign(m̂))·g, and AddSign,
(1 + s_t·sign(g)·sign(m̂))·g, with s_t = 1 or a linear (ld), cyclical (cd) or restart (rd) sign
decay. The claims tested here: (a) on the child ConvNet the found optimizers match or beat SGD,
Momentum, Adam and RMSProp, and they transfer to other networks and tasks (the paper: a Wide
ResNet on CIFAR-10, ImageNet, GNMT), especially with a sign decay (the issue's reading);
(b) the search's best rules are built on the sign agreement and beat the baselines.

What we run. (a) Every method — SGD, Momentum (0.9), Adam, RMSProp (decay 0.9, TF's default),
PowerSign and AddSign (β = 0.9, TF-contrib semantics, ``optlab.powersign`` / ``optlab.addsign``)
with no decay, ld, cd and rd (``optlab.schedules.linear_sign_decay(T)``, ``cosine_sign_decay(T,
num_periods=1.5)``: 1 → 0 → 1 → 0, and ``restart_sign_decay(T, num_periods=3)``: three restarts,
T = the run's total number of updates) — on two tasks: the paper's child ConvNet (``convnet``)
on MNIST-5k (3,600 train / 400 validation / 1,000 test) and, as a transfer task, the MNIST-1D
MLP (``mlp``; 3,600 / 400 / 1,000); CIFAR-10 too when ``OPTLAB_CIFAR10_DIR`` names a local copy
(on a training subset, see ``config``). Every method gets a learning-rate grid of the same size
and spacing (7 values half a decade apart: three decades) around its conventional default
(SGD, PowerSign, AddSign 0.1 — TF-contrib's defaults for the sign rules — Momentum 0.01, Adam
and RMSProp 0.001), tuned over all seeds on MNIST-1D and on the first seed on the ConvNet (to
fit the CPU budget), whose other seeds then train at the chosen value. (The first full run
used 5 values on MNIST-1D and 3 on the ConvNet, the second 7 and 5: both times baselines were
selected at a grid edge — Adam and RMSProp at 0.01 on the ConvNet, validation still rising —
so every grid was widened and the whole comparison run again; the report flags edges with *.)
The learning rate is selected on the final validation accuracy, the test accuracy is reported
(mean ± std over 3 seeds). (b) A search with ``optlab.search`` — regularized evolution (Real
et al. 2019, who found it at least as sample-efficient as reinforcement learning for
architecture search) rather than the paper's PPO controller, which optlab also has — over
2-group programs in the full primitive space, children = the MNIST-1D MLP trained 2 epochs at
learning rates 1e-3, 1e-2, 1e-1 (reward: validation accuracy); every program of the top 10 is
parsed back from its formula and searched for the agreement subexpression (a product or quotient
of a sign of g and a sign of m̂, also inside longer products, or sign(g·m̂)); the best program
is retrained like the MNIST-1D baselines (with the search's interpreter on the raveled
parameters, which ``tests/test_exp_bello.py`` checks against ``optlab.search.compile``), on
seeds the search never used, with a grid of the same size around its best search learning
rate. The search is driven through optlab.search's Python API (``RegularizedEvolution`` ask /
tell, ``program_hash`` deduplication, ``population.encode`` and ``interpreted``,
``run.load_log`` / ``run.top`` on a log in ``optlab search``'s format) rather than
``optlab.search.run.search``: that loop trains every population through ``optlab.train``, which
compiles the interpreter anew at each call (about 20 s of CPU per population here), while this
experiment's step is compiled once for the whole search, with the parameters raveled into one
vector so that the interpreter is traced once rather than once per parameter leaf.

Differences from the paper and why: a 2-core CPU budget. The child trains 2 epochs of
MNIST-5k (batch 32, 224 updates) instead of 5 epochs of CIFAR-10, and the transfer task is
MNIST-1D instead of a WRN / ImageNet / GNMT; the search evaluates a few hundred candidates
(the paper: thousands, on a cluster), too few to meet the agreement by chance (see the report),
so that part is left undecided here. The accelerator configuration (``--accelerator``, not run
here) adds the ConvNet on the whole of CIFAR-10 (a local copy, ``$OPTLAB_CIFAR10_DIR``: 5
epochs, batch 100, tuned on all seeds, as in ENOS's replication of the paper's child) and a
search of 30,000 candidates (about 10⁴ distinct programs, enough to expect the agreement a few
times by chance). The ConvNet runs use this experiment's own training loop, not
``optlab.train``: XLA:CPU runs convolution gradients several times slower inside a compiled
loop (``benchmarks/RESULTS.md``), so one jitted step per mini-batch is called from Python; all
methods share that one compiled step (``lax.switch`` on the method's index), so the 12 methods
cost one compilation instead of 12. The MNIST-1D runs use the same loop with a whole epoch per
call, and one compiled step serves the baselines, the search's children and the retrained best
program. Results are kept per (task, method) in the checkpoint folder, and the search has its
own resumable log, so an interrupted full run resumes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.flatten_util import ravel_pytree

import optlab
from optlab import reproduce
from optlab.io import atomic_write_text
from optlab.reproduce import Context, Experiment, Outcome, fmt_pm, markdown_table, mean_std
from optlab.schedules import cosine_sign_decay, linear_sign_decay, restart_sign_decay
from optlab.search import (
    Binary,
    Leaf,
    Program,
    RegularizedEvolution,
    Unary,
    canonical,
    formula,
    parse,
    program_hash,
    random_program,
)
from optlab.search.population import encode, interpreted
from optlab.search.run import load_log, top, with_train_size
from optlab.tasks import load_dataset, make_model

# ------------------------------------------------------------------------------------------
# The methods: name -> (lr, T) -> optimizer, and the centre of each one's learning-rate grid
# ------------------------------------------------------------------------------------------

CD_PERIODS, RD_PERIODS = 1.5, 3
DECAYS: dict[str, Callable[[int], Any] | None] = {
    "": None,
    "-ld": lambda T: linear_sign_decay(T),
    "-cd": lambda T: cosine_sign_decay(T, num_periods=CD_PERIODS),
    "-rd": lambda T: restart_sign_decay(T, num_periods=RD_PERIODS),
}
BASELINES = ("SGD", "Momentum", "Adam", "RMSProp")
SIGN = tuple(f"{rule}{d}" for rule in ("PowerSign", "AddSign") for d in DECAYS)
METHODS = BASELINES + SIGN
PROGRAM = "the searched program"  # the Runner's last method: the interpreter (a code as aux)


def make_optimizer(name: str, lr: Any, total_steps: int) -> optax.GradientTransformation:
    """Method ``name`` with learning rate ``lr`` for a run of ``total_steps`` updates."""
    if name == "SGD":
        return optlab.sgd(lr)
    if name == "Momentum":
        return optlab.sgd(lr, momentum=0.9)
    if name == "Adam":
        return optlab.adam(lr)
    if name == "RMSProp":
        return optlab.rmsprop(lr)
    rule, _, decay = name.partition("-")
    decay_fn = DECAYS["-" + decay if decay else ""]
    sign_decay = None if decay_fn is None else decay_fn(total_steps)
    return {"PowerSign": optlab.powersign, "AddSign": optlab.addsign}[rule](
        lr, sign_decay=sign_decay)


def method(name: str, total_steps: int) -> Callable[[Any, Any], optax.GradientTransformation]:
    """``(lr, aux) -> optimizer`` for :class:`Runner`: method ``name`` of the comparison
    (``aux`` unused), or the search's interpreter for ``PROGRAM`` (``aux``: the code)."""
    def make(lr: Any, aux: Any) -> optax.GradientTransformation:
        if name == PROGRAM:
            return flat(interpreted(aux, lr))
        return make_optimizer(name, lr, total_steps)
    return make


def default_lr(name: str) -> float:
    return {"Momentum": 0.01, "Adam": 1e-3, "RMSProp": 1e-3}.get(name, 0.1)


def lr_grid(centre: float, size: int) -> list[float]:
    """``size`` learning rates half a decade apart, centred (in log scale) on ``centre``."""
    half = (size - 1) / 2
    return [float(f"{centre * 10 ** (0.5 * (k - half)):.3g}") for k in range(size)]


# ------------------------------------------------------------------------------------------
# Training: one compiled step for all methods of a task
# ------------------------------------------------------------------------------------------


def _step_fn(g_train, txs: list[Callable[[Any, Any], Any]]):
    """The jitted training call: ``idx`` (chunks × batch indices) mini-batches of one run, the
    method picked by ``lax.switch``; a non-finite loss or gradient freezes the run (``ok``)."""
    def loss_fn(params, rest, x, y):
        m = nnx.merge(g_train, params, rest, copy=True)
        loss = optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()
        return loss, nnx.split(m, nnx.Param, ...)[2]

    def branch(i):
        def update(grads, states, params, lr, aux):
            u, s = txs[i](lr, aux).update(grads, states[i], params)
            return u, (*states[:i], s, *states[i + 1:])
        return update

    @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
    def steps(params, rest, states, ok, idx, method, lr, aux, x, y):
        def body(carry, b):
            params, rest, states, ok = carry
            (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params, rest, x[b], y[b])
            updates, new_states = jax.lax.switch(
                method, [branch(i) for i in range(len(txs))], grads, states, params, lr, aux)
            new_params = optax.apply_updates(params, updates)
            take = ok & jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
            pick = lambda new, old: jax.tree.map(  # noqa: E731
                lambda a, c: jnp.where(take, a, c), new, old)
            return (pick(new_params, params), pick(new_rest, rest),
                    pick(new_states, states), take), loss

        carry = (params, rest, states, ok)
        if idx.shape[0] == 1:  # no loop: XLA:CPU runs conv gradients ~4× faster outside
            carry, loss = body(carry, idx[0])
            return *carry, loss
        carry, losses = jax.lax.scan(body, carry, idx)
        return *carry, losses.sum()

    return steps


class Runner:
    """Trains ``model`` on ``data`` with any of ``methods`` (``(lr, aux) -> optimizer``), one
    run at a time: a jitted call trains ``chunk`` mini-batches (1 for convolutional models,
    whose gradients XLA:CPU runs much faster outside a loop; a whole epoch otherwise), the
    method picked by ``lax.switch`` so every method shares one compilation. ``aux`` is an int
    array of ``aux_shape`` passed to the method (a search program's code)."""

    def __init__(self, data, model: str, methods: list[Callable[[Any, Any], Any]], *,
                 batch: int, per_step: bool, curves: bool = True,
                 aux_shape: tuple[int, ...] = (1,)):
        self.data, self.batch, self.curves, self.aux_shape = data, batch, curves, aux_shape
        self.spe = len(data.y_train) // batch
        self.chunk = 1 if per_step else self.spe
        factory = functools.partial(make_model, model, data.input_shape, data.num_classes)
        abstract = nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0)))
        abstract.train()
        g_train = nnx.split(abstract, nnx.Param, ...)[0]
        abstract.eval()
        g_eval = nnx.split(abstract, nnx.Param, ...)[0]
        self._steps = _step_fn(g_train, methods)

        @jax.jit
        def evaluate(params, rest, x, y):
            logits = nnx.merge(g_eval, params, rest)(x)
            return (jnp.argmax(logits, -1) == y).sum()

        @jax.jit
        def init(seed, aux):
            model = factory(rngs=nnx.Rngs(jax.random.key(seed)))
            model.train()
            _, params, rest = nnx.split(model, nnx.Param, ...)
            return params, rest, tuple(tx(1.0, aux).init(params) for tx in methods)

        self._evaluate, self._init = evaluate, init
        put = jnp.asarray
        self.x, self.y = put(data.x_train), put(data.y_train)
        self.splits = {s: [(put(getattr(data, f"x_{s}")[i:i + 1000]),
                            put(getattr(data, f"y_{s}")[i:i + 1000]))
                           for i in range(0, len(getattr(data, f"y_{s}")), 1000)]
                       for s in ("val", "test")}

    def _accuracy(self, params, rest, split: str) -> float:
        hits = sum(int(self._evaluate(params, rest, x, y)) for x, y in self.splits[split])
        return hits / len(getattr(self.data, f"y_{split}"))

    def run(self, method: int, lr: float, seed: int, epochs: int,
            aux: Any = None) -> dict[str, Any]:
        """One run: per-epoch validation and test accuracy and mean training loss (the last
        epoch only without ``curves``)."""
        aux = jnp.zeros(self.aux_shape, jnp.int32) if aux is None else jnp.asarray(aux,
                                                                                   jnp.int32)
        params, rest, states = self._init(jnp.int32(seed), aux)
        ok = jnp.array(True)
        rng = np.random.default_rng([seed, 2017])
        n_used = self.spe * self.batch
        hist: dict[str, list[float]] = {"val": [], "test": [], "train_loss": []}
        m, r = jnp.int32(method), jnp.float32(lr)
        for epoch in range(epochs):
            order = rng.permutation(len(self.data.y_train))[:n_used]
            order = order.reshape(self.spe, self.batch).astype(np.int32)
            total = 0.0
            for k in range(0, self.spe, self.chunk):
                params, rest, states, ok, loss = self._steps(
                    params, rest, states, ok, jnp.asarray(order[k:k + self.chunk]), m, r, aux,
                    self.x, self.y)
                total += float(loss)
            if not bool(ok):
                break
            if self.curves or epoch == epochs - 1:
                hist["train_loss"].append(total / self.spe)
                hist["val"].append(self._accuracy(params, rest, "val"))
                hist["test"].append(self._accuracy(params, rest, "test"))
        diverged = not bool(ok)
        for v in hist.values():  # a diverged run: NaN from the epoch it diverged in
            v += [math.nan] * ((epochs if self.curves else 1) - len(v))
        return {**hist, "diverged": diverged}


def flat(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` applied to all parameters raveled into one vector: the search interpreter is
    then traced (and compiled) once instead of once per parameter leaf — 3× less compile time
    for the MLP. Elementwise programs give the same update; noise and dropout draw other
    samples of the same distribution (one key for the vector instead of one per leaf)."""

    def init(params):
        return tx.init(ravel_pytree(params)[0])

    def update(grads, state, params=None):
        g, unravel = ravel_pytree(grads)
        u, state = tx.update(g, state, None if params is None else ravel_pytree(params)[0])
        return unravel(u), state

    return optax.GradientTransformation(init, update)


# ------------------------------------------------------------------------------------------
# Part (a): tuned comparison
# ------------------------------------------------------------------------------------------


def final(h: dict[str, Any], key: str = "val") -> float:
    return h[key][-1]


def tune_and_train(train: Callable[[float, int], dict[str, Any]], grid: list[float],
                   tune_seeds: list[int], seeds: list[int], log) -> dict[str, Any]:
    """``train(lr, seed)`` at every learning rate of ``grid`` on ``tune_seeds``; the best by
    mean final validation accuracy (a learning rate where a seed diverged: never) then on the
    remaining seeds."""
    tuning = {f"{lr:g}": {str(s): train(lr, s) for s in tune_seeds} for lr in grid}
    scores = [np.mean([final(h) for h in tuning[f"{lr:g}"].values()])
              if not any(h["diverged"] for h in tuning[f"{lr:g}"].values()) else -np.inf
              for lr in grid]
    best = grid[int(np.argmax(scores))]
    runs = dict(tuning[f"{best:g}"])
    for s in seeds:
        if str(s) not in runs:
            runs[str(s)] = train(best, s)
    runs = {str(s): runs[str(s)] for s in seeds}
    log(f"  lr {best:g}: test {fmt_pm([final(h, 'test') for h in runs.values()], 100)} %")
    return {"grid": grid, "lr": best, "edge": len(grid) > 1 and best in (grid[0], grid[-1]),
            "grid_val": {k: [final(h) for h in v.values()] for k, v in tuning.items()},
            "runs": runs}


def compare_methods(ctx: Context, task: dict[str, Any], data, runner: Runner,
                    names: tuple[str, ...], seeds: list[int]) -> dict[str, Any]:
    """Every method of ``names`` (the first methods of ``runner``) tuned and trained."""
    tune_seeds = seeds[: task["tune_seeds"]] if task["tune_seeds"] else seeds
    out = {}
    for i, name in enumerate(names):
        grid = lr_grid(default_lr(name), task["grid"])
        ident = {"task": task, "seeds": seeds, "grid": grid, "dataset": data.summary(),
                 "cd": CD_PERIODS, "rd": RD_PERIODS}
        ctx.log(f"{task['name']}: {name} (lrs {grid}, {task['epochs']} epochs)")
        def train(lr: float, seed: int, i: int = i) -> dict[str, Any]:
            return runner.run(i, lr, seed, task["epochs"])

        out[name] = ctx.cached(f"{task['name']}-{name}", ident,
                               lambda grid=grid, train=train: tune_and_train(
                                   train, grid, tune_seeds, seeds, ctx.log))
    return out


def test_acc(r: dict[str, Any]) -> np.ndarray:
    return np.array([final(h, "test") for h in r["runs"].values()])


def val_acc(r: dict[str, Any]) -> float:
    v = [final(h) for h in r["runs"].values()]
    return -np.inf if np.isnan(v).any() else float(np.mean(v))


def best_of(results: dict[str, Any], names) -> str:
    """The method of ``names`` with the best mean final validation accuracy."""
    names = [n for n in names if n in results]
    return max(names, key=lambda n: (val_acc(results[n]), -names.index(n)))


MATCH_TOLERANCE_PT = 0.5  # decided before measuring


def versus(a: np.ndarray, b: np.ndarray, margin_pt: float) -> dict[str, Any]:
    """``reproduce.decide`` of test accuracies ``a`` against ``b`` (over seeds) with a margin
    in points; the difference and its standard error (pt, for the report)."""
    diff, _ = reproduce.significant(a, b)
    sa, sb = mean_std(a)[1], mean_std(b)[1]
    return {"decided": reproduce.decide(a, b, margin=margin_pt / 100), "diff_pt": 100 * diff,
            "se_pt": 100 * float(np.sqrt(sa**2 / len(a) + sb**2 / len(b)))}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _task_section(task, data, res, checks) -> str:
    """One task's table and its checks (added to ``checks``)."""
    names = list(res)
    rows = [[n, f"{res[n]['lr']:g}{'*' if res[n]['edge'] else ''}",
             fmt_pm([final(h) for h in res[n]["runs"].values()], 100),
             fmt_pm(test_acc(res[n]), 100)] for n in names]
    sign = [n for n in names if n in SIGN]
    base = [n for n in names if n in BASELINES]
    text = (f"**{task['name']}** ({data.summary()}; {task['epochs']} epochs, batch "
            f"{task['batch']}, {_count(task['grid'], 'learning rate')} per method):\n\n"
            + markdown_table(["method", "lr", "val. acc. (%)", "test acc. (%)"], rows))
    words = {True: "match or beat", False: "worse", None: "undecided"}
    if sign and base:
        bs, bb = best_of(res, sign), best_of(res, base)
        v = versus(test_acc(res[bs]), test_acc(res[bb]), -MATCH_TOLERANCE_PT)
        checks[f"{task['name']}: PowerSign/AddSign match or beat the baselines"] = v["decided"]
        text += (f"\n\nBest by validation — sign rules: {bs} {fmt_pm(test_acc(res[bs]), 100)} "
                 f"%, baselines: {bb} {fmt_pm(test_acc(res[bb]), 100)} % (difference "
                 f"{v['diff_pt']:+.2f} ± {v['se_pt']:.2f} pt): {words[v['decided']]}.")
        decayed = [n for n in sign if "-" in n]
        plain = [n for n in sign if "-" not in n]
        if decayed and plain:
            bd, bp = best_of(res, decayed), best_of(res, plain)
            v = versus(test_acc(res[bd]), test_acc(res[bp]), -MATCH_TOLERANCE_PT)
            checks[f"{task['name']}: sign decay matches or beats no decay"] = v["decided"]
            text += (f" With decay: {bd} {fmt_pm(test_acc(res[bd]), 100)} % against "
                     f"{bp} {fmt_pm(test_acc(res[bp]), 100)} % without ({v['diff_pt']:+.2f} "
                     f"± {v['se_pt']:.2f} pt): {words[v['decided']]}.")
    return text


# ------------------------------------------------------------------------------------------
# Part (b): the search and the sign-agreement detector
# ------------------------------------------------------------------------------------------

G_LIKE = ("g", "g3", "rmsprop")  # operands whose sign is sign(g)
M_LIKE = ("m", "adam")  # operands whose sign is sign(m̂)


def _sign_of(n: Any) -> str | None:
    """"g" or "m" if node ``n`` (canonical) is the sign of g or of m̂, else None."""
    if n == Leaf("sign_g"):
        return "g"
    if n == Leaf("sign_m"):
        return "m"
    if isinstance(n, Unary) and n.fn == "sign" and isinstance(n.x, Leaf):
        return "g" if n.x.operand in G_LIKE else "m" if n.x.operand in M_LIKE else None
    return None


def _factors(n: Any) -> list[Any]:
    """The factors of a product chain (through ``·``, unary minus and ``/``)."""
    if isinstance(n, Binary) and n.fn in ("mul", "div"):
        return _factors(n.x) + _factors(n.y)
    if isinstance(n, Unary) and n.fn == "neg":
        return _factors(n.x)
    return [n]


def _like(n: Any, kinds: tuple[str, ...]) -> bool:
    return isinstance(n, Leaf) and n.operand in kinds


def agreement(program: str | Program) -> bool:
    """Whether a program (or the program of a formula, parsed) contains the sign agreement
    sign(g)·sign(m̂): a product (or quotient) chain with a sign of g and a sign of m̂ among its
    factors, or sign(x·y) with x g-like and y m̂-like. Works on the canonical tree
    (sign(g) → sign_g)."""
    root = canonical(parse(program) if isinstance(program, str) else program)
    stack, seen = [root], set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        signs = {_sign_of(f) for f in _factors(n)}
        if {"g", "m"} <= signs:
            return True
        if isinstance(n, Unary) and n.fn == "sign" and isinstance(n.x, Binary) \
                and n.x.fn == "mul" and ((_like(n.x.x, G_LIKE) and _like(n.x.y, M_LIKE))
                                         or (_like(n.x.x, M_LIKE) and _like(n.x.y, G_LIKE))):
            return True
        if isinstance(n, Unary):
            stack.append(n.x)
        elif isinstance(n, Binary):
            stack += [n.x, n.y]
    return False


def _resume(out, s: dict[str, Any], strategy: RegularizedEvolution) -> list[dict[str, Any]]:
    """The logged candidates of an interrupted search, told to ``strategy`` again (so it asks
    exactly what it would have asked); the log is rewritten (atomically) without a torn
    tail."""
    rows = load_log(out)
    for b in range(0, len(rows), s["population"]):
        batch = rows[b:b + s["population"]]
        strategy.tell([Program.from_json(r["groups"]) for r in batch],
                      [-math.inf if r["reward"] is None else r["reward"] for r in batch])
    atomic_write_text(out / "log.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return rows


def _child(runner: Runner, index: int, p: Program, s: dict[str, Any]) -> dict[str, Any]:
    """A new program's log row: trained at every learning rate of the search (seed 0),
    reward = the best final validation accuracy (None if every run diverged)."""
    runs = {f"{lr:g}": runner.run(index, lr, 0, s["epochs"], encode(p, s["groups"]))
            for lr in s["lrs"]}
    scores = {k: None if r["diverged"] else r["val"][-1] for k, r in runs.items()}
    finite = [v for v in scores.values() if v is not None]
    return {"formula": formula(p), "hash": program_hash(p), "scores": scores,
            "reward": max(finite) if finite else None, "source": "trained"}


def search_programs(ctx: Context, cfg: dict[str, Any], data, runner: Runner, index: int
                    ) -> list[dict[str, Any]]:
    """Regularized evolution (``optlab.search.RegularizedEvolution``, ask / tell) over programs
    of ``groups`` groups; each new program (deduplicated by its canonical hash) trains the
    MNIST-1D MLP child (:func:`_child`). All children share one compiled step: the program is
    data (``runner``'s method ``index``, the interpreter). Candidates are appended to
    ``log.jsonl`` (optlab search's format, one population per flush), so an interrupted
    search resumes."""
    s = cfg["search"]
    pop = s["population"]
    ident = json.dumps({k: s[k] for k in sorted(s)} | {"data": data.summary()},
                       sort_keys=True)
    out = ctx.checkpoint_dir(f"search-{hashlib.sha256(ident.encode()).hexdigest()[:12]}")
    strategy = RegularizedEvolution(s["groups"], seed=0, population=pop)
    rows = _resume(out, s, strategy)
    known = {r["hash"]: r for r in rows if r["source"] == "trained"}
    ctx.log(f"search: {s['budget']} candidates in populations of {pop}"
            + (f" (resumed after {len(rows)})" if rows else ""))
    while len(rows) < s["budget"]:
        programs = strategy.ask(min(pop, s["budget"] - len(rows)))
        new = []
        for p in programs:
            h = program_hash(p)
            if h in known:
                r = {**known[h], "formula": formula(p), "source": "hash"}
            else:
                r = known[h] = _child(runner, index, p, s)
            new.append({**r, "index": len(rows) + len(new), "batch": len(rows) // pop,
                        "batch_size": len(programs), "groups": p.to_json()})
        with open(out / "log.jsonl", "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r) + "\n" for r in new))
            f.flush()
            os.fsync(f.fileno())
        rows += new
        strategy.tell(programs, [-math.inf if r["reward"] is None else r["reward"]
                                 for r in new])
        best = max((r["reward"] for r in rows if r["reward"] is not None), default=-math.inf)
        ctx.log(f"search: {len(rows)}/{s['budget']} candidates, best reward "
                f"{100 * best:.1f} %")
    return rows


# ------------------------------------------------------------------------------------------
# The experiment
# ------------------------------------------------------------------------------------------

MIN_EXPECTED = 3  # the enrichment is decided only when chance alone would give this many


def config(quick: bool = False, accelerator: bool = False) -> dict[str, Any]:
    """The quick (CI), full (CPU) or accelerator configuration. The search's children train
    on the MNIST-1D task's data and batch size (one compiled step serves both)."""
    mnist1d = {"name": "mnist1d-mlp", "dataset": "mnist1d", "model": "mlp", "batch": 128,
               "epochs": 20, "grid": 7, "tune_seeds": 0, "per_step": False, "curves": True,
               "train_size": None, "eval_size": None}
    if quick:
        return {
            "methods": ("SGD", "Adam", "PowerSign-ld", "AddSign"),
            "tasks": [{**mnist1d, "epochs": 2, "grid": 1, "train_size": 1024}],
            "search": {"budget": 4, "population": 4, "groups": 2, "lrs": [1e-2, 1e-1],
                       "epochs": 1, "batch": 128, "train_size": 1024},
            "top": 3, "random_programs": 200,
            "cifar": {"train_size": 256, "eval_size": 200, "required": False},
            # the ConvNet task is left out: its compilation alone would exceed the quick
            # mode's budget (tests/test_exp_bello.py checks the per-step loop it uses)
        }
    convnet = {"name": "mnist5k-convnet", "dataset": "mnist5k", "model": "convnet",
               "batch": 32, "epochs": 2, "grid": 7, "tune_seeds": 1, "per_step": True,
               "curves": False, "train_size": None, "eval_size": None}
    cfg = {
        "methods": METHODS, "tasks": [convnet, mnist1d],
        "search": {"budget": 384, "population": 64, "groups": 2, "lrs": [1e-3, 1e-2, 1e-1],
                   "epochs": 2, "batch": 128, "train_size": None},
        "top": 10, "random_programs": 200_000,
        "cifar": {"train_size": 5000, "eval_size": 2000, "required": False},
    }
    if accelerator:  # GPU: the ConvNet in a compiled loop, tuned on every seed
        gpu = {"per_step": False, "tune_seeds": 0}
        cfg["tasks"] = [{**convnet, **gpu}, mnist1d]
        cfg["search"] = {**cfg["search"], "budget": 30_000}
        cfg["cifar"] = {"train_size": None, "eval_size": None, "required": True,
                        "epochs": 5, "batch": 100, **gpu}
    return cfg


def cifar10_task(cfg: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The CIFAR-10 task when a local copy is configured, else None and why (an error when
    the configuration needs it)."""
    where = os.environ.get("OPTLAB_CIFAR10_DIR")
    c = cfg["cifar"]
    if not where:
        if c["required"]:
            raise RuntimeError("the accelerator configuration trains the ConvNet on CIFAR-10, "
                               "read from a local copy: set OPTLAB_CIFAR10_DIR to the "
                               "cifar-10-batches-py folder")
        return None, ("CIFAR-10 skipped: no local copy (set OPTLAB_CIFAR10_DIR to the "
                      "cifar-10-batches-py folder to include it).")
    convnet = next((t for t in cfg["tasks"] if t["model"] == "convnet"),
                   config()["tasks"][0])
    task = {**convnet, "name": "cifar10-convnet", "dataset": "cifar10",
            **{k: v for k, v in c.items() if k != "required"}}
    size = ("full size" if task["train_size"] is None else
            f"CPU-sized: the first {task['train_size']:,} training images, the first "
            f"{task['eval_size']:,} validation and test images")
    return task, (f"CIFAR-10 from {where} ({size}; {task['epochs']} epochs, batch "
                  f"{task['batch']}).")


def task_data(task: dict[str, Any]):
    """The task's data set: its first ``train_size`` training examples and ``eval_size``
    validation and test examples (None: all)."""
    data = with_train_size(load_dataset(task["dataset"]), task["train_size"])
    n = task["eval_size"]
    if n is None:
        return data
    return dataclasses.replace(data, x_val=data.x_val[:n], y_val=data.y_val[:n],
                               x_test=data.x_test[:n], y_test=data.y_test[:n])


def part_a(ctx: Context, cfg: dict[str, Any], tasks: list[dict[str, Any]], seeds: list[int]
           ) -> tuple[dict[str, Any], list[str], dict[str, bool | None], tuple]:
    """Every method tuned and trained on every task: results, report sections, checks, and
    the MNIST-1D task's (data, runner, index of the interpreter) for part (b)."""
    names = tuple(cfg["methods"])
    results, sections, checks, mnist1d = {}, [], {}, None
    for task in tasks:
        data = task_data(task)
        total = task["epochs"] * (len(data.y_train) // task["batch"])
        program = task["dataset"] == "mnist1d"  # the search's interpreter as a last method
        runner = Runner(data, task["model"],
                        [method(n, total) for n in names + ((PROGRAM,) if program else ())],
                        batch=task["batch"], per_step=task["per_step"], curves=task["curves"],
                        aux_shape=(cfg["search"]["groups"], 5) if program else (1,))
        res = compare_methods(ctx, task, data, runner, names, seeds)
        results[task["name"]] = {"dataset": data.summary(), "task": task, "methods": res}
        sections.append(_task_section(task, data, res, checks))
        if program:
            mnist1d = (task, data, runner, len(names))
    return results, sections, checks, mnist1d


def part_b(ctx: Context, cfg: dict[str, Any], mnist1d: tuple, base: dict[str, Any],
           seeds: list[int], checks: dict[str, bool | None]) -> dict[str, Any]:
    """The search, the agreement statistics, and the best program retrained on held-out
    seeds against the tuned baselines (``base``: the MNIST-1D results); checks added."""
    task, data, runner, index = mnist1d
    s = cfg["search"]
    if (s["train_size"], s["batch"]) != (task["train_size"], task["batch"]):
        raise ValueError("the search's children train on the MNIST-1D task's data and batch")
    rows = search_programs(ctx, cfg, data, runner, index)
    best_rows = top(rows, k=cfg["top"])
    distinct = {r["hash"]: r for r in rows if r["reward"] is not None}
    for r in best_rows:
        r["agreement"] = agreement(r["formula"])
    n_top = sum(r["agreement"] for r in best_rows)
    frac_top = n_top / max(len(best_rows), 1)
    frac_all = float(np.mean([agreement(r["formula"]) for r in distinct.values()])
                     if distinct else 0.0)
    # how often uniformly random programs of this size contain the agreement: the number a
    # search of this size meets by chance, and the size it needs to be expected 3 times
    rng = np.random.default_rng(0)
    rate = float(np.mean([agreement(random_program(rng, s["groups"]))
                          for _ in range(cfg["random_programs"])]))
    expected = rate * len(distinct)
    checks["search: sign agreement enriched among the top programs"] = (
        None if expected < MIN_EXPECTED else bool(n_top >= 1 and frac_top > frac_all))

    best = best_rows[0]
    best_lr = max((float(k) for k, v in best["scores"].items() if v is not None),
                  key=lambda k: best["scores"][f"{k:g}"])
    grid = lr_grid(best_lr, task["grid"])
    code = encode(Program.from_json(best["groups"]), s["groups"])
    ctx.log(f"retraining the best program {best['formula']} (lrs {grid})")
    retrained = ctx.cached(
        "best-program", {"task": task, "seeds": seeds, "grid": grid,
                         "program": best["groups"], "via": "interpreter"},
        lambda: tune_and_train(lambda lr, seed: runner.run(index, lr, seed, task["epochs"],
                                                           code),
                               grid, seeds, seeds, ctx.log))
    top_baseline = best_of(base, BASELINES)
    v = versus(test_acc(retrained), test_acc(base[top_baseline]), 0.0)
    checks["search: best program beats the tuned baselines"] = v["decided"]
    return {
        "candidates": len(rows), "distinct": len(distinct), "top": best_rows,
        "agreement_top": n_top, "agreement_fraction_top": frac_top,
        "agreement_fraction_all": frac_all, "agreement_rate_random": rate,
        "random_programs_sampled": cfg["random_programs"],
        "expected_by_chance": expected,
        "distinct_needed": math.ceil(MIN_EXPECTED / rate) if rate > 0 else None,
        "best_program": best["formula"], "best_program_retrained": retrained,
        "retrain_grid": grid, "best_baseline": top_baseline,
        "best_sign_rule": best_of(base, [n for n in base if n in SIGN] or list(base)),
        "difference_pt": v["diff_pt"], "se_pt": v["se_pt"], "beats": v["decided"],
        "rewards": [r["reward"] for r in rows],
        "agreement_all": [agreement(r["formula"]) if r["reward"] is not None else None
                          for r in rows],
    }


def _search_text(cfg: dict[str, Any], sr: dict[str, Any], base: dict[str, Any],
                 task: dict[str, Any], seeds: list[int]) -> str:
    s, retrained = cfg["search"], sr["best_program_retrained"]
    rows = [[i + 1, f"`{r['formula']}`", f"{100 * r['reward']:.1f}",
             "yes" if r["agreement"] else "no"] for i, r in enumerate(sr["top"])]
    needed = sr["distinct_needed"]
    chance = (f"{100 * sr['agreement_rate_random']:.3f} % of {sr['random_programs_sampled']:,} "
              f"uniformly random programs of this size contain it, "
              f"{sr['expected_by_chance']:.2f} expected among {sr['distinct']} random ones")
    if sr["expected_by_chance"] < MIN_EXPECTED:
        chance += (f": fewer than {MIN_EXPECTED}, so this search is too small to tell "
                   "enrichment from chance and that part is undecided; it needs about "
                   + (f"{needed:,} distinct programs" if needed else
                      "more distinct programs (no sampled random program had it)")
                   + " (the accelerator configuration searches "
                   f"{config(accelerator=True)['search']['budget']:,} candidates)")
    words = {True: "it beats the baselines", False: "it is worse than the baselines",
             None: "no significant difference (undecided)"}
    return (
        f"**(b) Search** (regularized evolution, {sr['candidates']} candidates, "
        f"{sr['distinct']} distinct programs of {s['groups']} groups; children: MNIST-1D MLP, "
        f"{_count(s['epochs'], 'epoch')}, reward = validation accuracy at the best of "
        f"{s['lrs']}). Sign agreement in {sr['agreement_top']} of the top {len(sr['top'])} "
        f"({100 * sr['agreement_fraction_top']:.0f} %) against "
        f"{100 * sr['agreement_fraction_all']:.1f} % of all distinct programs (the paper: the "
        "agreement recurs among its best rules and motivates PowerSign and AddSign). For "
        f"scale: {chance}.\n\n"
        + markdown_table(["rank", "program", "reward (val. %)", "agreement"], rows)
        + f"\n\nBest program `{sr['best_program']}` retrained on held-out seeds {seeds} "
        f"({_count(task['epochs'], 'epoch')}, learning rates {sr['retrain_grid']}, selected "
        f"{retrained['lr']:g}{' (grid edge)' if retrained['edge'] else ''}): test "
        f"{fmt_pm(test_acc(retrained), 100)} % against the best tuned baseline "
        f"({sr['best_baseline']}) {fmt_pm(test_acc(base[sr['best_baseline']]), 100)} %: "
        f"difference {sr['difference_pt']:+.2f} ± {sr['se_pt']:.2f} pt (SE) — "
        f"{words[sr['beats']]}; the best sign rule ({sr['best_sign_rule']}) reached "
        f"{fmt_pm(test_acc(base[sr['best_sign_rule']]), 100)} %.")


def run(ctx: Context) -> Outcome:
    cfg = config(ctx.quick, ctx.accelerator)
    seeds = [1000 + s for s in ctx.seeds]  # held out from the search (its children: seed 0)
    tasks = list(cfg["tasks"])
    cifar, cifar_note = cifar10_task(cfg)
    if cifar is not None:
        tasks.insert(1, cifar)
    ctx.log(cifar_note)
    tasks_res, sections, checks, mnist1d = part_a(ctx, cfg, tasks, seeds)
    base = tasks_res[mnist1d[0]["name"]]["methods"]
    search = part_b(ctx, cfg, mnist1d, base, seeds, checks)
    results = {"config": cfg, "seeds": seeds, "tasks": tasks_res, "cifar10": cifar_note,
               "search": search}
    _methods_figure(ctx, results, tasks)
    _search_figure(ctx, search, base, mnist1d[0])
    reproduced = reproduce.verdict_of(checks)
    summary = _summary(ctx, sections, cifar_note,
                       _search_text(cfg, search, base, mnist1d[0], seeds), checks, seeds)
    return Outcome(None if ctx.quick else reproduced, summary, results, checks)


def _summary(ctx: Context, sections, cifar_note: str, search_text: str, checks,
             seeds: list[int]) -> str:
    reproduced = reproduce.verdict_of(checks)
    failed = [k for k, v in checks.items() if v is False]
    undecided = [k for k, v in checks.items() if v is None]
    verdict = ("All parts hold: **reproduced**." if reproduced else
               ("At this size" if ctx.quick else
                f"**{reproduce.verdict(reproduced).capitalize()}**")
               + (f"; failing parts: {'; '.join(failed)}" if failed else "")
               + (f"; undecided parts: {'; '.join(undecided)}" if undecided else "") + ".")
    text = (
        "Paper (abstract): \"On CIFAR-10, our method discovers several update rules that are "
        "better than many commonly used optimizers, such as Adam, RMSProp, or SGD with and "
        "without Momentum on a ConvNet model. We introduce two new optimizers, named PowerSign "
        "and AddSign, which we show transfer well and improve training on a variety of "
        "different tasks and architectures\"; the issue adds: especially with sign decays. "
        "The paper's numeric tables are for a Wide ResNet on CIFAR-10, ImageNet and GNMT, "
        "beyond this CPU budget, so we test the comparative claims. Our numbers (test "
        "accuracy at the learning rate selected on validation, mean ± std over "
        f"{len(seeds)} seeds; * = the selected learning rate is at the edge of the grid):\n\n"
        + "\n\n".join(sections) + f"\n\n{cifar_note}\n\n" + search_text
        + "\n\nCriteria (``reproduce.decide``: a difference decided by more than 2 standard "
        "errors over seeds, else undecided): \"match or beat\" = the mean test accuracy "
        f"above the other's minus {MATCH_TOLERANCE_PT} pt by 2 SE (fails: below it by 2 SE); "
        "\"beats\" = above the other's by 2 SE (fails: below it by 2 SE); \"enriched\" = at "
        "least one top program with the agreement and a larger share than among all "
        f"programs, decided only when chance alone would give ≥ {MIN_EXPECTED} programs with "
        "the agreement in a search of this size. (The first full runs decided \"match or "
        f"beat\" by a mean at least the other's minus max({MATCH_TOLERANCE_PT} pt, 2 SE) and "
        "\"beats\" by a higher mean, which count noise as agreement.) " + verdict)
    if ctx.quick:
        text += ("\n\n(Quick mode: MNIST-1D only, 4 methods, 1 learning rate, 2 epochs "
                 "on 1,024 examples and a 4-candidate search: a smoke test that decides "
                 "nothing.)")
    return text


FAMILY_COLORS = {"SGD": "0.35", "Momentum": "0.55", "Adam": "tab:purple",
                 "RMSProp": "tab:brown", "PowerSign": "tab:red", "AddSign": "tab:blue"}


def _color(name: str) -> str:
    return FAMILY_COLORS[name.split("-")[0]]


def _methods_figure(ctx: Context, results, tasks) -> None:
    """Test accuracy of every method on every task."""
    fig, axes = reproduce.figure(1, len(tasks), width=4.4, height=0.32 * len(
        results["config"]["methods"]) + 1.6)
    for ax, task in zip(axes[0], tasks, strict=True):
        res = results["tasks"][task["name"]]["methods"]
        names = list(res)
        for k, n in enumerate(names):
            acc = 100 * test_acc(res[n])
            m, s = mean_std(acc)
            ax.errorbar(m, k, xerr=s, fmt="o", color=_color(n), capsize=3)
            ax.scatter(acc, [k] * len(acc), s=8, color=_color(n), alpha=0.4)
        best_base = best_of(res, [n for n in names if n in BASELINES] or names)
        ax.axvline(100 * np.mean(test_acc(res[best_base])), color="0.3", ls=":", lw=1,
                   label=f"best baseline ({best_base})")
        ax.set_yticks(range(len(names)), names)
        ax.invert_yaxis()
        ax.set_xlabel("test accuracy (%), mean ± std over seeds")
        ax.set_title(f"{task['name']} ({task['epochs']} epochs)")
        ax.grid(alpha=0.3, axis="x")
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("Bello et al.: sign rules (red: PowerSign, blue: AddSign; -ld/-cd/-rd sign "
                 "decays) vs baselines, tuned learning rate")
    ctx.save_figure(fig, "bello_methods")


def _search_figure(ctx: Context, s: dict[str, Any], base: dict[str, Any],
                   mnist1d: dict[str, Any]) -> None:
    """The search's rewards over candidates (agreement marked); the best program retrained."""
    fig, axes = reproduce.figure(1, 2, width=5.2, height=3.8)
    ax = axes[0, 0]
    rewards = np.array([np.nan if r is None else 100 * r for r in s["rewards"]])
    flags = np.array([bool(f) for f in s["agreement_all"]])
    idx = np.arange(1, len(rewards) + 1)
    ax.scatter(idx[~flags], rewards[~flags], s=10, color="0.6", label="other programs")
    ax.scatter(idx[flags], rewards[flags], s=22, color="tab:red", marker="D",
               label="with sign(g)·sign(m̂)")
    ax.plot(idx, np.fmax.accumulate(np.nan_to_num(rewards, nan=-np.inf)), color="k", lw=1,
            label="best so far")
    finite = rewards[np.isfinite(rewards)]
    if finite.size:
        ax.set_ylim(max(0, np.percentile(finite, 5) - 5), finite.max() + 3)
    ax.set_xlabel("candidate (evaluation order)")
    ax.set_ylabel("reward: validation accuracy (%)")
    ax.set_title(f"search: {s['agreement_top']} of top {len(s['top'])} use the agreement")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[0, 1]
    retrained = s["best_program_retrained"]
    ep = np.arange(1, mnist1d["epochs"] + 1)
    curves = [(f"best program (lr {retrained['lr']:g})", retrained, "tab:green")]
    curves += [(f"{n} (lr {base[n]['lr']:g})", base[n], _color(n)) for n in BASELINES
               if n in base]
    for label, r, color in curves:
        acc = 100 * np.array([h["test"] for h in r["runs"].values()])
        m, sd = mean_std(acc)
        ax.plot(ep, m, color=color, label=label)
        ax.fill_between(ep, m - sd, m + sd, color=color, alpha=0.2, lw=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("MNIST-1D MLP, held-out seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Best program found: {s['best_program']}")
    ctx.save_figure(fig, "bello_search")


EXPERIMENT = Experiment(
    name="bello",
    title="Neural Optimizer Search: PowerSign and AddSign",
    claim="PowerSign and AddSign (especially with linear, cyclical or restart sign decay) match "
    "or beat SGD, Momentum, Adam and RMSProp on the small ConvNet child and transfer to other "
    "tasks; a search in the primitive space finds update rules built on the sign agreement "
    "sign(g)·sign(m̂) that beat the baselines.",
    source="Bello, Zoph, Vasudevan & Le, ICML 2017",
    run=run,
    quick_asserts=(),
    seeds=3,
    accelerator="the paper's child ConvNet on the whole of CIFAR-10 (a local copy: "
    "`$OPTLAB_CIFAR10_DIR`; 5 epochs, batch 100, the learning rate tuned on every seed), the "
    "MNIST-5k ConvNet tuned on every seed too, and a search of 30,000 candidates (about 10⁴ "
    "distinct programs: enough to expect the sign agreement a few times by chance, so that "
    "its enrichment among the top programs can be decided).",
)

if __name__ == "__main__":
    sys.exit(reproduce.main(EXPERIMENT))
