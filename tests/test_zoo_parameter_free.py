"""Parameter-free optimizers (DoG, DoWG, Prodigy, D-Adaptation AdamW, COCOB) against
optax.contrib, against numpy written from the papers, on the classic problems, and as optax
transforms (jit, scan, eval_shape, inject_hyperparams, errors).

The helpers here (a loss whose gradient is conftest's, the loss-driven runner, the
convergence and drop-in checks) are shared with tests/test_zoo_polyak.py and
tests/test_zoo_sophia.py.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib

from optlab import coin_betting as cb
from optlab import parameter_free as pf
from optlab import schedules
from tests.conftest import Trajectory, assert_trees_close, make_params, noise_sequence

STEPS = 100


def _ours(name: str):
    """optlab's optimizer of that name (cocob lives in optlab.coin_betting)."""
    return getattr(cb if name == "cocob" else pf, name)


# ------------------------------------------------------------------------------------------
# Shared helpers
# ------------------------------------------------------------------------------------------


def loss_fn(params, noise) -> jax.Array:
    """Σ ¼(θ + 2n)²: ≥ 0 with minimum 0, and its gradient is conftest's 0.5 θ + n."""
    return sum((jnp.sum(0.25 * (p + 2 * n) ** 2) for p, n in
                zip(jax.tree.leaves(params), jax.tree.leaves(noise), strict=True)),
               start=jnp.zeros([], jax.tree.leaves(params)[0].dtype))


def run_with_loss(tx: optax.GradientTransformation, params, steps: int = STEPS,
                  extra: tuple[str, ...] = ()) -> Trajectory:
    """conftest.run, passing the loss as optax does: ``value=`` and/or ``obj_fn=`` (the names
    in ``extra``) to ``update``."""

    def step(carry, noise):
        p, s = carry
        value, grads = jax.value_and_grad(loss_fn)(p, noise)
        kwargs = {"value": value, "obj_fn": lambda q: loss_fn(q, noise)}
        updates, s = tx.update(grads, s, p, **{k: kwargs[k] for k in extra})
        p = optax.apply_updates(p, updates)
        return (p, s), p

    @jax.jit
    def scan(p0, noise):
        _, traj = jax.lax.scan(step, (p0, tx.init(p0)), noise)
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), p0, traj)

    return Trajectory(scan(params, noise_sequence(params, steps)))


def check_parity_f64(ours, ref, extra=()) -> None:
    params = make_params(0, jnp.float64)
    a, b = run_with_loss(ours, params, extra=extra), run_with_loss(ref, params, extra=extra)
    for t in (1, 10, STEPS):
        assert_trees_close(a[t], b[t], rtol=1e-6, atol=1e-12, msg=f"step {t}")
    moved = max(float(jnp.max(jnp.abs(x - y))) for x, y in
                zip(jax.tree.leaves(b[STEPS]), jax.tree.leaves(params), strict=True))
    assert moved > 1e-3, "the reference did not move: the comparison says nothing"


def check_parity_f32(ours, ref, extra=()) -> None:
    params = make_params(0, jnp.float32)
    a, b = run_with_loss(ours, params, extra=extra), run_with_loss(ref, params, extra=extra)
    assert_trees_close(a[STEPS], b[STEPS], rtol=1e-4, atol=1e-5)


PROBLEMS = {
    "quadratic": (lambda x: 0.5 * x @ jnp.diag(jnp.linspace(0.5, 5.0, 10)) @ x, jnp.ones(10),
                  jnp.zeros(10)),
    "rosenbrock": (lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2,
                   jnp.array([-0.5, 1.5]), jnp.array([1.0, 1.0])),
    "beale": (lambda x: (1.5 - x[0] + x[0] * x[1]) ** 2 + (2.25 - x[0] + x[0] * x[1] ** 2) ** 2
              + (2.625 - x[0] + x[0] * x[1] ** 3) ** 2,
              jnp.array([-4.5, 4.5]), jnp.array([3.0, 0.5])),
}
"""As tests/test_convergence.py: the quadratic, Rosenbrock from (−0.5, 1.5) and Beale from
(−4.5, 4.5); the loss is passed as ``value`` and ``obj_fn``, as these methods need it."""


def distance_after(make: Callable[..., optax.GradientTransformation], problem: str,
                   recipe: tuple) -> float:
    """‖x_T − x*‖ after a recipe ``(steps, clip or None, cosine lr0 or None, kwargs)``:
    optional global-norm clipping of the gradient and a cosine decay (to 1e-3·lr0) of the
    ``learning_rate`` multiplier over the budget."""
    f, x0, x_star = PROBLEMS[problem]
    steps, clip, cosine, kwargs = recipe
    kwargs = dict(kwargs)
    if cosine is not None:
        kwargs["learning_rate"] = schedules.cosine_decay(cosine, steps, alpha=1e-3)
    tx = make(**kwargs)
    if clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)

    def body(carry, _):
        x, s = carry
        value, g = jax.value_and_grad(f)(x)
        u, s = tx.update(g, s, x, value=value, obj_fn=f)
        return (optax.apply_updates(x, u), s), None

    (x, _), _ = jax.jit(lambda x: jax.lax.scan(body, (x, tx.init(x)), None, length=steps))(x0)
    return float(jnp.linalg.norm(x - x_star))


def check_transform(make: Callable[[], optax.GradientTransformation], extra=()) -> None:
    """init under eval_shape, a jitted update with a type-stable state, a second call with no
    recompilation, and a lax.scan carry."""
    params = make_params(3)
    tx = make()
    state = tx.init(params)
    abstract = jax.eval_shape(tx.init, params)
    signature = lambda s: (jax.tree.structure(s),  # noqa: E731
                           [(x.shape, x.dtype) for x in jax.tree.leaves(s)])
    assert signature(abstract) == signature(state)
    grads = jax.tree.map(lambda p: 0.5 * p + 0.1, params)
    kwargs = {"value": jnp.float32(3.0), "obj_fn": lambda q: loss_fn(q, grads)}
    kwargs = {k: kwargs[k] for k in extra}
    traces = []

    @jax.jit
    def step(p, s):
        traces.append(1)
        u, s = tx.update(grads, s, p, **kwargs)
        return optax.apply_updates(p, u), s

    p1, s1 = step(params, state)
    assert signature(s1) == signature(state)
    p2, _ = step(p1, s1)
    assert len(traces) == 1, "the second update recompiled"
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(p2))
    run_with_loss(tx, params, steps=5, extra=extra)  # in a lax.scan carry


def check_inject(ours, ref, kwargs: dict, extra=()) -> None:
    """Where ``optax.inject_hyperparams`` works on optax's optimizer, it works on ours and
    gives the trajectory of the plain optimizer."""
    params = make_params(0, jnp.float64)
    try:
        run_with_loss(optax.inject_hyperparams(ref)(**kwargs), params, steps=3, extra=extra)
    except Exception:  # optax's does not support it: nothing to match
        pytest.skip("optax.inject_hyperparams does not support optax's version")
    injected = run_with_loss(optax.inject_hyperparams(ours)(**kwargs), params, extra=extra)
    plain = run_with_loss(ours(**kwargs), params, extra=extra)
    assert_trees_close(injected[STEPS], plain[STEPS], rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------
# Parity with optax.contrib
# ------------------------------------------------------------------------------------------


def _decay_matrices(p):
    return jax.tree.map(lambda x: x.ndim > 1, p)


CASES = [
    ("dog", {}),
    ("dog", dict(init_step=("distance", 1e-3), weight_decay=1e-3, mask=_decay_matrices)),
    ("dog", dict(learning_rate=optax.cosine_decay_schedule(1.0, STEPS),
                 init_step=("learning_rate", 1e-2), eps=1e-6)),
    ("dowg", {}),
    ("dowg", dict(learning_rate=optax.cosine_decay_schedule(1.0, STEPS), init_estim_sq_dist=1e-2,
                  eps=1e-3, weight_decay=1e-3)),
    ("prodigy", {}),
    ("prodigy", dict(learning_rate=optax.linear_schedule(1.0, 0.1, STEPS), betas=(0.8, 0.99),
                     beta3=0.9, eps=1e-6, estim_lr0=1e-4, estim_lr_coef=0.5, weight_decay=0.01,
                     safeguard_warmup=True)),
    ("dadapt_adamw", {}),
    ("dadapt_adamw", dict(learning_rate=optax.linear_schedule(1.0, 0.1, STEPS),
                          betas=(0.8, 0.99), eps=1e-6, estim_lr0=1e-4, weight_decay=0.01)),
    ("cocob", {}),
    ("cocob", dict(learning_rate=0.5, alpha=50.0, eps=1e-6, weight_decay=1e-3,
                   mask=_decay_matrices)),
]
IDS = [f"{name}-{'-'.join(kw) or 'defaults'}" for name, kw in CASES]


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_float64_parity(name, kwargs, x64):
    check_parity_f64(_ours(name)(**kwargs), getattr(contrib, name)(**kwargs))


@pytest.mark.parametrize("name,kwargs", CASES, ids=IDS)
def test_float32_parity(name, kwargs):
    check_parity_f32(_ours(name)(**kwargs), getattr(contrib, name)(**kwargs))


@pytest.mark.parametrize("name", ["dog", "dowg", "prodigy", "dadapt_adamw", "cocob"])
def test_passes_through_the_loss_value(name, x64):
    """Code that passes value= (as for optax's polyak_sgd / momo) works unchanged: extra
    keyword arguments reach the chain and are ignored, as optax's."""
    params = make_params(0, jnp.float64)
    with_value = run_with_loss(_ours(name)(), params, extra=("value",))
    ref = run_with_loss(getattr(contrib, name)(), params, extra=("value",))
    assert_trees_close(with_value[STEPS], ref[STEPS], rtol=1e-6, atol=1e-12)


def test_state_uses_optax_names():
    params = make_params(0)
    expect = {"dog": ["init_params", "max_dist", "sum_sq_norm_grads"],
              "dowg": ["init_params", "estim_sq_dist", "weighted_sq_norm_grads"],
              "prodigy": ["exp_avg", "exp_avg_sq", "grad_sum", "params0", "estim_lr",
                          "numerator_weighted"],
              "dadapt_adamw": ["exp_avg", "exp_avg_sq", "grad_sum", "estim_lr",
                               "numerator_weighted"],
              "cocob": ["init_particles", "cumulative_gradients", "scale", "subgradients",
                        "reward"]}
    for name, fields in expect.items():
        ours = _ours(name)().init(params)
        ref = getattr(contrib, name)().init(params)
        for field in fields:
            assert_trees_close(optax.tree.get(ours, field), optax.tree.get(ref, field), 0.0,
                               msg=f"{name}.{field}")
        assert len(optax.tree.get_all_with_path(ours, "count")) <= 1


@pytest.mark.parametrize("name", ["dog", "dowg", "prodigy", "dadapt_adamw", "cocob"])
def test_state_bytes_not_above_optax(name):
    params = jax.eval_shape(lambda: make_params(0))

    def nbytes(tx):
        state = jax.eval_shape(tx.init, params)
        return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state))

    assert nbytes(_ours(name)()) <= nbytes(getattr(contrib, name)())


# ------------------------------------------------------------------------------------------
# Independent numpy references (per element, from the papers' formulas), float64
# ------------------------------------------------------------------------------------------

T = 60
RNG = np.random.default_rng(0)
P0 = RNG.normal(size=(4, 5))
NOISE = RNG.normal(size=(T, 4, 5))


def grad_fn(p, t):
    return (p - 1.0) + NOISE[t]


def run_optlab(tx, steps: int = T) -> np.ndarray:
    p = jnp.asarray(P0)
    s = tx.init(p)
    update = jax.jit(tx.update)
    out = []
    for t in range(steps):
        u, s = update(jnp.asarray(grad_fn(np.asarray(p), t)), s, p)
        p = optax.apply_updates(p, u)
        out.append(np.asarray(p))
    return np.stack(out)


def np_dog(r_eps: float, eps: float = 1e-8, steps: int = T) -> np.ndarray:
    """Ivgi et al. (2023), eq. (1)–(2): η_t = max_{i≤t} max(r_ε, ‖x_i − x_0‖)/√(Σ_{i≤t}‖g_i‖²)."""
    x, out, r_bar, g_sum = P0.copy(), [], r_eps, 0.0
    for t in range(steps):
        g = grad_fn(x, t)
        r_bar = max(r_bar, float(np.sqrt(np.sum((x - P0) ** 2))))
        g_sum += float(np.sum(g * g))
        x = x - r_bar / np.sqrt(g_sum + eps) * g
        out.append(x.copy())
    return np.stack(out)


def np_prodigy(lr=1.0, b1=0.9, b2=0.999, eps=1e-8, d0=1e-6, wd=0.0, steps: int = T):
    """Mishchenko & Defazio (2024), Algorithm 4 (Prodigy, Adam version), with the authors'
    bias correction folded into the step η_k = lr·√(1−β₂ᵏ)/(1−β₁ᵏ), decoupled weight decay:

    m = β₁m + (1−β₁)d g,  v = β₂v + (1−β₂)d²g²,
    r = √β₂ r + (1−√β₂) η d² ⟨g, x₀ − x⟩,  s = √β₂ s + (1−√β₂) η d² g,
    d ← max(d, r/‖s‖₁),  x ← x − η d_old (m/(√v + d ε) + λx).
    """
    x = P0.copy()
    m, v, s = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    r, d, out, sb2 = 0.0, d0, [], np.sqrt(b2)
    for k in range(1, steps + 1):
        g = grad_fn(x, k - 1)
        eta = lr * np.sqrt(1 - b2**k) / (1 - b1**k)
        m = b1 * m + (1 - b1) * d * g
        v = b2 * v + (1 - b2) * d * d * g * g
        r = sb2 * r + (1 - sb2) * eta * d * d * float(np.sum(g * (P0 - x)))
        s = sb2 * s + (1 - sb2) * eta * d * d * g
        d_new = max(d, r / float(np.sum(np.abs(s))))
        x = x - eta * d * (m / (np.sqrt(v) + d_new * eps) + wd * x)
        d = d_new
        out.append(x.copy())
    return np.stack(out)


@pytest.mark.parametrize("r_eps", [1e-4, 0.5])
def test_dog_matches_numpy_reference(r_eps, x64):
    np.testing.assert_allclose(run_optlab(pf.dog(init_step=("distance", r_eps))), np_dog(r_eps),
                               rtol=1e-9, atol=1e-12)


def test_dog_heuristic_initial_distance(x64):
    r_eps = 1e-6 * (1 + float(np.linalg.norm(P0)))
    np.testing.assert_allclose(run_optlab(pf.dog()), np_dog(r_eps), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kwargs", [{}, dict(weight_decay=0.05, estim_lr0=1e-3, eps=1e-4)])
def test_prodigy_matches_numpy_reference(kwargs, x64):
    ours = run_optlab(pf.prodigy(**kwargs))
    ref = np_prodigy(d0=kwargs.get("estim_lr0", 1e-6), wd=kwargs.get("weight_decay", 0.0),
                     eps=kwargs.get("eps", 1e-8))
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-12)
    assert np.max(np.abs(ref[-1] - P0)) > 0.1  # d grew from 1e-6: the estimate was exercised


# ------------------------------------------------------------------------------------------
# Convergence: quadratic, Rosenbrock, Beale
# ------------------------------------------------------------------------------------------

# name -> problem -> (steps, clip global norm at, cosine decay from lr0, optimizer kwargs).
# Defaults reach the quadratic's minimum. Rosenbrock needs 3e4 steps (DoG, DoWG, COCOB) or a
# cosine decay of the schedule multiplier (Prodigy, D-Adaptation, whose defaults end within
# 3e-2 and 0.5 of x*). Beale: from (−4.5, 4.5) a method must cross the x = 0 ridge while f > 14.2
# (see tests/test_convergence.py); the parameter-free methods start with tiny steps
# (d₀ = 1e-6) and slide down to the wrong side unless the first steps are large: DoG with a
# large initial distance r_ε = 5 and the gradient clipped to norm 10, DoWG with the clipping
# alone, COCOB with α = 10 (a larger fraction bet early) and clipping. Prodigy's estimate
# grows fast enough on its own.
RECIPES = {
    "dog": {"quadratic": (4000, None, None, {}), "rosenbrock": (30000, None, None, {}),
            "beale": (30000, 10.0, None, {"init_step": ("distance", 5.0)})},
    "dowg": {"quadratic": (4000, None, None, {}), "rosenbrock": (30000, None, None, {}),
             "beale": (30000, 10.0, None, {})},
    "prodigy": {"quadratic": (4000, None, None, {}), "rosenbrock": (30000, None, 1.0, {}),
                "beale": (30000, None, None, {})},
    "dadapt_adamw": {"quadratic": (4000, None, None, {}), "rosenbrock": (30000, None, 1.0, {}),
                     "beale": (30000, None, 1.0, {})},
    "cocob": {"quadratic": (4000, None, None, {}), "rosenbrock": (30000, None, None, {}),
              "beale": (30000, 10.0, None, {"alpha": 10.0})},
}


@pytest.mark.parametrize("name,problem", [(n, p) for n in RECIPES for p in PROBLEMS])
def test_reaches_minimum(name, problem):
    distance = distance_after(_ours(name), problem, RECIPES[name][problem])
    assert np.isfinite(distance) and distance < 1e-2, (name, problem, distance)


# ------------------------------------------------------------------------------------------
# As optax transforms
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dog", "dowg", "prodigy", "dadapt_adamw", "cocob"])
def test_jit_scan_eval_shape(name):
    check_transform(_ours(name))


INJECT = [
    ("dog", dict(learning_rate=0.5, eps=1e-6)),
    ("dowg", dict(learning_rate=0.5, eps=1e-3)),
    ("prodigy", dict(learning_rate=0.5, eps=1e-6, estim_lr0=1e-4, weight_decay=1e-2)),
    ("dadapt_adamw", dict(learning_rate=0.5, eps=1e-6, estim_lr0=1e-4, weight_decay=1e-2)),
    ("cocob", dict(learning_rate=0.5, alpha=50.0, weight_decay=1e-3)),
]


@pytest.mark.parametrize("name,kwargs", INJECT, ids=[n for n, _ in INJECT])
def test_inject_hyperparams(name, kwargs, x64):
    check_inject(_ours(name), getattr(contrib, name), kwargs)


def test_dog_needs_real_params_for_the_heuristic():
    """The heuristic r_ε = α(1 + ‖θ₀‖) reads the initial params (as optax, documented)."""
    params = make_params(0)
    state = pf.dog().init(params)
    r0 = 1e-6 * (1 + float(optax.tree.norm(params)))
    np.testing.assert_allclose(float(optax.tree.get(state, "max_dist")), r0, rtol=1e-6)


BAD = [
    (lambda: pf.dog(init_step=("distanse", 1.0)), ValueError,
     r"init_step\[0\] must be one of \['distance', 'learning_rate', 'heuristic'\].*'distance'"),
    (lambda: pf.dog(init_step=1e-6), TypeError, "init_step must be a pair"),
    (lambda: pf.dog(init_step=("distance", -1.0)), ValueError, r"init_step\[1\] must be in"),
    (lambda: pf.dog(learning_rate=-1.0), ValueError, r"learning_rate must be in \[0, inf\)"),
    (lambda: pf.dog(eps=-1.0), ValueError, "eps must be in"),
    (lambda: pf.dowg(init_estim_sq_dist=-1.0), ValueError, "init_estim_sq_dist must be in"),
    (lambda: pf.dowg(weight_decay=-0.1), ValueError, "weight_decay must be in"),
    (lambda: pf.prodigy(betas=(0.9, 1.0)), ValueError, r"betas\[1\] must be in \[0, 1\)"),
    (lambda: pf.prodigy(betas=0.9), TypeError, "betas must be a pair"),
    (lambda: pf.prodigy(beta3=1.5), ValueError, r"beta3 must be in \[0, 1\)"),
    (lambda: pf.prodigy(estim_lr0=0.0), ValueError, r"estim_lr0 must be in \(0, inf\)"),
    (lambda: pf.prodigy(estim_lr_coef=-1.0), ValueError, "estim_lr_coef"),
    (lambda: pf.dadapt_adamw(betas=(-0.1, 0.999)), ValueError, r"betas\[0\] must be in"),
    (lambda: pf.dadapt_adamw(eps=-1e-8), ValueError, "eps must be in"),
    (lambda: cb.cocob(alpha=0.0), ValueError, r"alpha must be in \(0, inf\)"),
    (lambda: cb.cocob(learning_rate="one"), TypeError, "learning_rate must be a number"),
]


@pytest.mark.parametrize("make,error,match", BAD)
def test_bad_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_missing_params_is_a_clear_error():
    params = make_params(0)
    for tx in (pf.dog(), pf.prodigy(), cb.cocob()):
        with pytest.raises(ValueError, match="needs params"):
            tx.update(params, tx.init(params))
