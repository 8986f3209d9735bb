"""LAMB, LARS, Fromage and NovoGrad (optlab.layerwise): optax parity, per-layer numpy
references written from the papers, convergence, and the transform properties (jit, scan,
abstract init, inject_hyperparams, argument errors).

The helpers at the top (``parity_check``, ``check_properties``, ``distance_after``,
``state_bytes``) are shared with ``test_zoo_optimistic.py`` and ``test_zoo_sm3_rprop.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optlab import schedules
from optlab.layerwise import (
    ema_of_sq_norm,
    fromage,
    lamb,
    lars,
    norm_preserving_step,
    novograd,
    trust_ratio,
)
from tests.conftest import assert_trees_close, make_params, run
from tests.test_convergence import PROBLEMS

STEPS = 100

# ------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------


def parity_check(ours: optax.GradientTransformation, ref: optax.GradientTransformation,
                 dtype, drop: tuple[str, ...] = ()) -> None:
    """100 steps of both on make_params (less ``drop``): float64 at every checked step to
    rtol 1e-6, float32 at the end to rtol 1e-4."""
    params = make_params(0, dtype)
    for key in drop:
        params.pop(key)
    a, b = run(ours, params, STEPS), run(ref, params, STEPS)
    if dtype == jnp.float64:
        for t in (1, 10, STEPS):
            assert_trees_close(a[t], b[t], rtol=1e-6, atol=1e-12, msg=f"step {t}")
    else:
        assert_trees_close(a[STEPS], b[STEPS], rtol=1e-4, atol=1e-5)


def state_bytes(state) -> int:
    return sum(np.asarray(x).nbytes for x in jax.tree.leaves(state))


def signature(state):
    return jax.tree.structure(state), [(x.shape, x.dtype) for x in jax.tree.leaves(state)]


def check_properties(tx: optax.GradientTransformation, params=None) -> None:
    """Abstract init = concrete init; one trace for three jitted steps; a type-stable state;
    updates shaped like the params; ``None`` leaves pass through; bfloat16 stays bfloat16."""
    params = make_params(3) if params is None else params
    state = tx.init(params)
    assert signature(jax.eval_shape(tx.init, params)) == signature(state)
    traces = []

    @jax.jit
    def step(p, s, g):
        traces.append(1)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s, u

    sig = signature(state)
    for i in range(3):
        grads = jax.tree.map(lambda p, i=i: jnp.cos(p + i), params)
        params, state, updates = step(params, state, grads)
        assert signature(state) == sig
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        assert all(np.isfinite(np.asarray(u)).all() for u in jax.tree.leaves(updates))
    assert len(traces) == 1

    frozen = {"w": jnp.ones((3, 2)), "frozen": None, "b": jnp.full(2, 0.5)}
    grads = {"w": jnp.full((3, 2), 0.5), "frozen": None, "b": jnp.ones(2)}
    updates, _ = jax.jit(tx.update)(grads, tx.init(frozen), frozen)
    assert updates["frozen"] is None and updates["w"].shape == (3, 2)

    low = jax.tree.map(lambda p: p.astype(jnp.bfloat16), make_params(4))
    s = tx.init(low)
    sig = signature(s)
    for _ in range(2):
        g = jax.tree.map(lambda p: (0.5 * p + 1).astype(jnp.bfloat16), low)
        u, s = jax.jit(tx.update)(g, s, low)
        assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))
        assert signature(s) == sig
        low = optax.apply_updates(low, u)


def check_inject_hyperparams(ours: Callable, ref: Callable, params=None, **kw) -> None:
    """``optax.inject_hyperparams`` works on ours wherever it works on optax's, with the same
    result (hyperparameters become float32 arrays in both)."""
    params = make_params(6) if params is None else params
    a, b = optax.inject_hyperparams(ours)(**kw), optax.inject_hyperparams(ref)(**kw)
    sa, sb = a.init(params), b.init(params)
    pa = pb = params
    for i in range(3):
        ga = jax.tree.map(lambda p, i=i: jnp.sin(p + i), pa)
        gb = jax.tree.map(lambda p, i=i: jnp.sin(p + i), pb)
        ua, sa = jax.jit(a.update)(ga, sa, pa)
        ub, sb = jax.jit(b.update)(gb, sb, pb)
        pa, pb = optax.apply_updates(pa, ua), optax.apply_updates(pb, ub)
    assert_trees_close(pa, pb, rtol=1e-5, atol=1e-6)
    sa.hyperparams["learning_rate"] = jnp.asarray(0.5 * kw["learning_rate"])
    jax.jit(a.update)(ga, sa, pa)  # a changed hyperparameter needs no new construction


C, K, E = "cos", "const", "exp"


def distance_after(factory: Callable, problem: str, recipe: tuple) -> float:
    """‖x_T − x*‖ after a recipe (lr, steps, schedule kind, clip[, optimizer kwargs]) as in
    tests/test_convergence.py."""
    f, x0, x_star = PROBLEMS[problem]
    lr, steps, kind, clip, *kwargs = recipe
    if kind == C:
        lr = schedules.cosine_decay(lr, steps, alpha=1e-3)
    elif kind == E:
        lr = schedules.exponential_decay(lr, steps, decay_rate=1e-6)
    tx = factory(lr, **(kwargs[0] if kwargs else {}))
    if clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)

    def body(carry, _):
        x, s = carry
        u, s = tx.update(jax.grad(f)(x), s, x)
        return (optax.apply_updates(x, u), s), None

    (x, _), _ = jax.jit(lambda x: jax.lax.scan(body, (x, tx.init(x)), None, length=steps))(x0)
    return float(jnp.linalg.norm(x - x_star))


# ------------------------------------------------------------------------------------------
# optax parity
# ------------------------------------------------------------------------------------------

def _matrices(p):
    return jax.tree.map(lambda x: x.ndim > 1, p)


CASES = [
    ("lamb", dict(learning_rate=0.01)),
    ("lamb", dict(learning_rate=0.01, b1=0.8, b2=0.99, eps=1e-8, eps_root=1e-10,
                  weight_decay=0.1, mask=_matrices)),
    ("lamb", dict(learning_rate=optax.cosine_decay_schedule(0.02, 100), weight_decay=0.05,
                  mask={"scalar": False, "w": True, "nested": {"b": False, "k": True},
                        "empty": {}})),
    ("lars", dict(learning_rate=0.1)),
    ("lars", dict(learning_rate=0.5, weight_decay=0.01, weight_decay_mask=_matrices,
                  trust_coefficient=0.01, eps=1e-6, trust_ratio_mask=_matrices, momentum=0.8,
                  nesterov=True)),
    ("lars", dict(learning_rate=optax.linear_schedule(1.0, 0.1, 100), weight_decay=0.001)),
    ("fromage", dict(learning_rate=0.01)),
    ("fromage", dict(learning_rate=optax.linear_schedule(0.1, 0.01, 100), min_norm=1e-3)),
    ("novograd", dict(learning_rate=0.01)),
    ("novograd", dict(learning_rate=0.01, b1=0.95, b2=0.5, eps=1e-8, eps_root=1e-9,
                      weight_decay=0.01)),
]
OURS = {"lamb": lamb, "lars": lars, "fromage": fromage, "novograd": novograd}


def _ids(case):
    name, kw = case
    return name + "-" + "-".join(k for k in kw if k != "learning_rate")


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float64_parity(case, x64):
    name, kw = case
    parity_check(OURS[name](**kw), getattr(optax, name)(**kw), jnp.float64)


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float32_parity(case):
    name, kw = case
    parity_check(OURS[name](**kw), getattr(optax, name)(**kw), jnp.float32)


@pytest.mark.parametrize("name", sorted(OURS))
def test_state_has_optax_names_and_no_more_bytes(name):
    params = make_params(1)
    ours, ref = OURS[name](0.01).init(params), getattr(optax, name)(0.01).init(params)
    assert state_bytes(ours) <= state_bytes(ref)
    for field in {"lamb": ("mu", "nu"), "lars": ("trace",), "fromage": (),
                  "novograd": ("mu", "nu")}[name]:
        assert_trees_close(optax.tree.get(ours, field), optax.tree.get(ref, field), 0.0)


def test_novograd_keeps_one_second_moment_per_layer():
    state = novograd(0.01).init(make_params(0))
    nu = optax.tree.get(state, "nu")
    assert all(x.shape == () for x in jax.tree.leaves(nu))
    assert jax.tree.structure(nu) == jax.tree.structure(make_params(0))


# ------------------------------------------------------------------------------------------
# Per-layer numpy references, written from the papers
# ------------------------------------------------------------------------------------------

T = 60
RNG = np.random.default_rng(0)
P0 = {"w": RNG.normal(size=(4, 5)), "b": RNG.normal(size=(5,)), "s": np.asarray(RNG.normal())}
NOISE = [{k: RNG.normal(size=np.shape(v)) for k, v in P0.items()} for _ in range(T)]


def _grad(p, t):
    """Gradient of ½‖p − 1‖² plus step noise, per layer."""
    return {k: (p[k] - 1.0) + NOISE[t][k] for k in p}


def _run_optlab(tx, steps=T):
    p = jax.tree.map(jnp.asarray, P0)
    s, update = tx.init(p), jax.jit(tx.update)
    for t in range(steps):
        g = jax.tree.map(jnp.asarray, _grad(jax.tree.map(np.asarray, p), t))
        u, s = update(g, s, p)
        p = optax.apply_updates(p, u)
    return jax.tree.map(np.asarray, p)


def _norm(x):
    return float(np.sqrt(np.sum(np.square(x))))


def np_lamb(lr, b1=0.9, b2=0.999, eps=1e-6, wd=0.0):
    """You et al. (2020), Algorithm 2 (LAMB), per layer l with φ(z) = z:
    r = m̂/(√v̂ + ε); x ← x − η ‖x‖/‖r + λx‖ (r + λx)."""
    p = {k: v.copy() for k, v in P0.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(x) for k, x in p.items()}
    for t in range(T):
        g = _grad(p, t)
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
            r = (m[k] / (1 - b1 ** (t + 1))) / (np.sqrt(v[k] / (1 - b2 ** (t + 1))) + eps)
            d = r + wd * p[k]
            ratio = _norm(p[k]) / _norm(d) if _norm(p[k]) > 0 and _norm(d) > 0 else 1.0
            p[k] = p[k] - lr * ratio * d
    return p


def np_lars(lr, eta=0.001, momentum=0.9, wd=0.0, denominator="paper"):
    """You et al. (2017), Algorithm 1 (LARS), per layer l:
    λ_l = η ‖w‖/(‖∇L‖ + β‖w‖) (paper) or η ‖w‖/‖∇L + βw‖ (optax's, the norm of the update it
    scales); v ← m v + γ λ_l (∇L + βw); w ← w − v."""
    p = {k: v.copy() for k, v in P0.items()}
    vel = {k: np.zeros_like(v) for k, v in p.items()}
    for t in range(T):
        g = _grad(p, t)
        for k in p:
            d = g[k] + wd * p[k]
            den = _norm(g[k]) + wd * _norm(p[k]) if denominator == "paper" else _norm(d)
            local = eta * _norm(p[k]) / den if _norm(p[k]) > 0 and den > 0 else 1.0
            vel[k] = momentum * vel[k] + lr * local * d
            p[k] = p[k] - vel[k]
    return p


def np_fromage(lr, min_norm=1e-6):
    """Bernstein et al. (2020), Algorithm 1 (Fromage), per layer:
    W ← (W − η ‖W‖/‖g‖ g)/√(1 + η²), norms clipped below at min_norm."""
    p = {k: v.copy() for k, v in P0.items()}
    for t in range(T):
        g = _grad(p, t)
        for k in p:
            ratio = max(_norm(p[k]), min_norm) / max(_norm(g[k]), min_norm)
            p[k] = (p[k] - lr * ratio * g[k]) / np.sqrt(1 + lr**2)
    return p


def np_novograd(lr, b1=0.9, b2=0.25, eps=1e-6, wd=0.0):
    """Ginsburg et al. (2019), Algorithm 1 (NovoGrad), per layer l:
    v₁ = ‖g₁‖², v_t = β₂v + (1−β₂)‖g_t‖²; m_t = β₁m + (g_t/(√v_t + ε) + d·w); w ← w − λ m."""
    p = {k: v.copy() for k, v in P0.items()}
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = dict.fromkeys(p, 0.0)
    for t in range(T):
        g = _grad(p, t)
        for k in p:
            sq = float(np.sum(g[k] ** 2))
            v[k] = sq if t == 0 else b2 * v[k] + (1 - b2) * sq
            m[k] = b1 * m[k] + (g[k] / (np.sqrt(v[k]) + eps) + wd * p[k])
            p[k] = p[k] - lr * m[k]
    return p


REFERENCES = [
    ("lamb", lambda: lamb(0.01), lambda: np_lamb(0.01)),
    ("lamb_wd", lambda: lamb(0.01, weight_decay=0.1), lambda: np_lamb(0.01, wd=0.1)),
    ("lars", lambda: lars(0.5), lambda: np_lars(0.5)),
    ("lars_wd", lambda: lars(0.5, weight_decay=0.01),
     lambda: np_lars(0.5, wd=0.01, denominator="optax")),
    ("fromage", lambda: fromage(0.05), lambda: np_fromage(0.05)),
    ("novograd", lambda: novograd(0.01, weight_decay=0.01), lambda: np_novograd(0.01, wd=0.01)),
]


@pytest.mark.parametrize("name,ours,reference", REFERENCES, ids=[r[0] for r in REFERENCES])
def test_matches_paper_reference(name, ours, reference, x64):
    assert_trees_close(_run_optlab(ours()), reference(), rtol=1e-9, atol=1e-12, msg=name)


def test_lars_denominator_differs_from_the_paper_only_with_weight_decay(x64):
    """optax's (and optlab's) LARS divides by ‖g + λw‖; You et al. (2017) by ‖g‖ + λ‖w‖. The
    two agree without weight decay (tested above) and differ slightly with it."""
    ours, paper = _run_optlab(lars(0.5, weight_decay=0.01)), np_lars(0.5, wd=0.01)
    gap = max(float(np.max(np.abs(ours[k] - paper[k]))) for k in ours)
    assert 1e-8 < gap < 1e-2


# ------------------------------------------------------------------------------------------
# Primitives
# ------------------------------------------------------------------------------------------


def test_trust_ratio_is_one_for_zero_layers_and_respects_the_mask():
    params = {"zero": jnp.zeros(3), "w": jnp.full((2, 2), 2.0), "b": jnp.ones(2)}
    updates = {"zero": jnp.ones(3), "w": jnp.ones((2, 2)), "b": jnp.zeros(2)}
    tx = trust_ratio()
    out, _ = tx.update(updates, tx.init(params), params)
    assert_trees_close(out["zero"], updates["zero"], 0.0)  # ‖θ‖ = 0: unscaled
    assert_trees_close(out["b"], updates["b"], 0.0)  # ‖u‖ = 0: unscaled
    assert_trees_close(out["w"], 2.0 * updates["w"], 1e-6)  # ‖θ‖/‖u‖ = 4/2
    masked = trust_ratio(mask={"zero": True, "w": False, "b": True})
    out, _ = masked.update(updates, masked.init(params), params)
    assert_trees_close(out["w"], updates["w"], 0.0)


def test_trust_ratio_has_finite_meta_gradients_at_zero():
    def loss(p):
        u, _ = trust_ratio().update({"a": jnp.ones(2)}, optax.EmptyState(), p)
        return jnp.sum(u["a"])

    grad = jax.grad(loss)({"a": jnp.zeros(2)})
    assert np.isfinite(np.asarray(grad["a"])).all()


def test_norm_preserving_step_keeps_orthogonal_norms():
    """θ ⟂ u with ‖u‖ = ‖θ‖ (a trust-ratio step): ‖θ − ηu‖/√(1+η²) = ‖θ‖."""
    theta, u = jnp.array([3.0, 0.0]), jnp.array([0.0, 3.0])
    step = norm_preserving_step(0.3)
    out, _ = step.update(u, step.init(theta), theta)
    assert np.isclose(float(jnp.linalg.norm(theta + out)), 3.0, rtol=1e-6)


def test_ema_of_sq_norm_starts_at_the_first_value():
    tx = ema_of_sq_norm("nu", 0.5)
    s = tx.init({"a": jnp.zeros(2)})
    out, s = tx.update({"a": jnp.array([3.0, 4.0])}, s)
    assert float(out["nu"]["a"]) == 25.0
    out, s = tx.update({"a": jnp.array([0.0, 1.0])}, s)
    assert float(out["nu"]["a"]) == 13.0


# ------------------------------------------------------------------------------------------
# Convergence (recipes as in tests/test_convergence.py: lr, steps, schedule, clip)
# ------------------------------------------------------------------------------------------

RECIPES = {
    "lamb": {"quadratic": (0.03, 4000, K, None), "rosenbrock": (0.03, 10000, C, None),
             "beale": (0.1, 4000, C, None)},
    # LARS's trust coefficient 1e-3 makes each step 1e-3·η‖x‖: Beale needs η ≈ 100.
    "lars": {"quadratic": (1.0, 4000, K, None), "rosenbrock": (1.0, 4000, K, None),
             "beale": (100.0, 4000, C, None)},
    # A layer-wise step η‖x‖ (and Fromage's shrinkage) does not vanish at x* ≠ 0: the learning
    # rate must decay for Rosenbrock and Beale.
    "fromage": {"quadratic": (0.1, 4000, K, None), "rosenbrock": (0.03, 10000, C, None),
                "beale": (1.0, 4000, C, None)},
    "novograd": {"quadratic": (1e-3, 4000, K, None), "rosenbrock": (1e-3, 4000, K, None),
                 "beale": (0.3, 4000, C, None)},
}


@pytest.mark.parametrize("name,problem", [(n, p) for n in RECIPES for p in PROBLEMS])
def test_reaches_minimum(name, problem):
    distance = distance_after(OURS[name], problem, RECIPES[name][problem])
    assert np.isfinite(distance) and distance < 1e-2, (name, problem, distance)


# ------------------------------------------------------------------------------------------
# Transform properties and argument errors
# ------------------------------------------------------------------------------------------

ZOO = {
    "lamb": lambda: lamb(0.01, weight_decay=0.01),
    "lars": lambda: lars(0.1, weight_decay=1e-4),
    "fromage": lambda: fromage(0.01),
    "novograd": lambda: novograd(0.01, weight_decay=1e-3),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_properties(name):
    check_properties(ZOO[name]())


@pytest.mark.parametrize("name", sorted(OURS))
def test_inject_hyperparams(name):
    check_inject_hyperparams(OURS[name], getattr(optax, name), learning_rate=0.05)


BAD = [
    (lambda: lamb(-1e-3), ValueError, r"learning_rate must be in \[0, inf\)"),
    (lambda: lamb(1e-3, b1=1.0), ValueError, r"b1 must be in \[0, 1\)"),
    (lambda: lamb(1e-3, eps=-1.0), ValueError, r"eps must be in \[0, inf\)"),
    (lambda: lamb(1e-3, weight_decay=-0.1), ValueError, "weight_decay"),
    (lambda: lars(0.1, momentum=1.0), ValueError, r"momentum must be in \[0, 1\)"),
    (lambda: lars(0.1, trust_coefficient=-1.0), ValueError, "trust_coefficient must be in"),
    (lambda: lars(0.1, eps=-1.0), ValueError, "eps"),
    (lambda: fromage(0.1, min_norm=-1.0), ValueError, r"min_norm must be in \[0, inf\)"),
    (lambda: fromage("fast"), TypeError, "learning_rate"),
    (lambda: novograd(0.1, b2=1.5), ValueError, r"b2 must be in \[0, 1\)"),
    (lambda: novograd(0.1, eps_root=-1.0), ValueError, "eps_root"),
    (lambda: ema_of_sq_norm("nu", 1.0), ValueError, r"decay must be in \[0, 1\)"),
    (lambda: norm_preserving_step(-0.1), ValueError, "learning_rate"),
]


@pytest.mark.parametrize("make,error,match", BAD)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


@pytest.mark.parametrize("name", ["lamb", "lars", "fromage"])
def test_missing_params_is_a_clear_error(name):
    tx = OURS[name](0.1)
    params = {"a": jnp.ones(2)}
    with pytest.raises(ValueError, match="needs params"):
        tx.update(params, tx.init(params))
