"""The Adam family of issue 9: AdaBelief, AdaMaxW, NAdamW, Yogi, Adan (optax aliases) and
ADOPT, AdEMAMix, Simplified AdEMAMix, ACProp, MADGRAD (optax.contrib).

Each follows optax's trajectory (float64 and float32), AdaBelief, Adan and AdEMAMix also an
element-wise numpy implementation written from their papers, and each reaches the minimum of
the quadratic, Rosenbrock and Beale problems; plus jit / scan / abstract init, optax state
names, state size, ``optax.inject_hyperparams`` and argument errors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
import pytest

from optlab import adam_variants as O  # noqa: N812
from optlab import schedules
from tests.conftest import assert_trees_close, make_params, run
from tests.test_convergence import PROBLEMS

STEPS = 100
NAMES = ["adabelief", "adamaxw", "nadamw", "yogi", "adan", "adopt", "ademamix",
         "simplified_ademamix", "acprop", "madgrad"]


def _optax(name: str):
    return getattr(optax, name, None) or getattr(optax.contrib, name)


def _warmup(c):
    return jnp.minimum(c / 50.0, 1.0) * 5.0


# (name, keyword arguments): defaults and at least one non-default configuration each.
CASES = [
    ("adabelief", dict(learning_rate=0.01)),
    ("adabelief", dict(learning_rate=0.01, b1=0.8, b2=0.99, eps=1e-8, eps_root=0.0,
                       nesterov=True)),
    ("adamaxw", dict(learning_rate=0.01)),
    ("adamaxw", dict(learning_rate=optax.cosine_decay_schedule(0.01, 100), b1=0.8,
                     weight_decay=0.1, mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))),
    ("nadamw", dict(learning_rate=0.01)),
    ("nadamw", dict(learning_rate=0.01, b1=0.8, eps_root=1e-8, weight_decay=0.1)),
    ("yogi", dict(learning_rate=0.01)),
    ("yogi", dict(learning_rate=0.03, b1=0.8, b2=0.99, eps=1e-6)),
    ("adan", dict(learning_rate=0.01)),
    ("adan", dict(learning_rate=0.01, b1=0.9, b2=0.8, b3=0.9, eps_root=0.0, weight_decay=0.05,
                  mask=lambda p: jax.tree.map(lambda x: x.ndim > 1, p))),
    ("adopt", dict(learning_rate=0.01)),
    ("adopt", dict(learning_rate=0.01, b2=0.99, nesterov=True, use_clipping=False)),
    ("adopt", dict(learning_rate=0.01, clip_value_fn=lambda c: 0.5 * (c + 1.0) ** 0.5)),
    ("ademamix", dict(learning_rate=0.01)),
    ("ademamix", dict(learning_rate=0.01, b3=lambda c: 0.999 - 0.1 / (c + 1.0), alpha=_warmup,
                      eps_root=1e-8, weight_decay=0.1)),
    ("simplified_ademamix", dict(learning_rate=0.01)),
    ("simplified_ademamix", dict(learning_rate=0.001, b1=0.9, alpha=lambda c: c / 100.0,
                                 weight_decay=0.1)),
    ("acprop", dict(learning_rate=0.01)),
    ("acprop", dict(learning_rate=0.01, b1=0.8, eps=1e-8, eps_root=0.0, weight_decay=0.1)),
    ("madgrad", dict(learning_rate=0.01)),
    ("madgrad", dict(learning_rate=optax.cosine_decay_schedule(0.01, 100), momentum=0.5,
                     weight_decay=0.01, eps=1e-4)),
]


def _ids(case):
    name, kw = case
    return name + "-" + "-".join(k for k in kw if k != "learning_rate")


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float64_parity(case, x64):
    name, kw = case
    params = make_params(0, jnp.float64)
    ours = run(getattr(O, name)(**kw), params, STEPS)
    ref = run(_optax(name)(**kw), params, STEPS)
    for t in (1, 10, STEPS):
        assert_trees_close(ours[t], ref[t], rtol=1e-6, atol=1e-12, msg=f"{name} step {t}")


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_float32_parity(case):
    name, kw = case
    params = make_params(0, jnp.float32)
    ours = run(getattr(O, name)(**kw), params, STEPS)
    ref = run(_optax(name)(**kw), params, STEPS)
    assert_trees_close(ours[STEPS], ref[STEPS], rtol=1e-4, atol=1e-5, msg=name)


def test_every_optimizer_has_parity_cases():
    for name in NAMES:
        configs = [kw for n, kw in CASES if n == name]
        assert len(configs) >= 2, name


# --- independent numpy references, written from the papers -------------------------------

T = 60
RNG = np.random.default_rng(0)
P0 = RNG.normal(size=(4, 5))
NOISE = RNG.normal(size=(T, 4, 5))


def grad_fn(p, t):
    """Gradient of ½‖p − 1‖² plus step noise."""
    return (p - 1.0) + NOISE[t]


def run_optlab(tx, steps=T):
    p = jnp.asarray(P0)
    s = tx.init(p)
    update = jax.jit(tx.update)
    out = []
    for t in range(steps):
        u, s = update(jnp.asarray(grad_fn(np.asarray(p), t)), s, p)
        p = optax.apply_updates(p, u)
        out.append(np.asarray(p))
    return np.stack(out)


def np_adabelief(lr, b1, b2, eps):
    """Zhuang et al. (2020), Algorithm 2: s_t = β₂s + (1−β₂)(g − m_t)² + ε, and ε again
    outside the root of the bias-corrected ŝ."""
    p, m, s = P0.copy(), np.zeros_like(P0), np.zeros_like(P0)
    out = []
    for t in range(1, T + 1):
        g = grad_fn(p, t - 1)
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * (g - m) ** 2 + eps
        m_hat, s_hat = m / (1 - b1**t), s / (1 - b2**t)
        p = p - lr * m_hat / (np.sqrt(s_hat) + eps)
        out.append(p.copy())
    return np.stack(out)


def test_adabelief_matches_the_paper(x64):
    ours = run_optlab(O.adabelief(0.05, b1=0.9, b2=0.99, eps=1e-8, eps_root=1e-8))
    np.testing.assert_allclose(ours, np_adabelief(0.05, 0.9, 0.99, 1e-8), rtol=1e-10,
                               atol=1e-12)


def np_adan(lr, beta1, beta2, beta3, eps):
    """Xie et al. (2022), Algorithm 1, in the paper's convention (β small: weight of the new
    term), with the bias corrections of the authors' code; g₀ := g₁ so Δg₁ = 0."""
    p = P0.copy()
    m, v, n = np.zeros_like(P0), np.zeros_like(P0), np.zeros_like(P0)
    g_prev = None
    out = []
    for t in range(1, T + 1):
        g = grad_fn(p, t - 1)
        diff = np.zeros_like(g) if g_prev is None else g - g_prev
        m = (1 - beta1) * m + beta1 * g
        v = (1 - beta2) * v + beta2 * diff
        n = (1 - beta3) * n + beta3 * (g + (1 - beta2) * diff) ** 2
        m_hat = m / (1 - (1 - beta1) ** t)
        v_hat = v / (1 - (1 - beta2) ** t)
        n_hat = n / (1 - (1 - beta3) ** t)
        p = p - lr * (m_hat + (1 - beta2) * v_hat) / (np.sqrt(n_hat) + eps)
        g_prev = g
        out.append(p.copy())
    return np.stack(out)


def test_adan_matches_the_paper_with_its_difference_weight(x64):
    """The paper (and sail-sg/Adan) weighs Δg by 1 − β₂(paper) = b2; optax by 1 − b2."""
    b1, b2, b3 = 0.98, 0.92, 0.99
    ref = np_adan(0.05, 1 - b1, 1 - b2, 1 - b3, 1e-8)
    paper = run_optlab(O.adan(0.05, b1, b2, b3, eps=1e-8, eps_root=0.0, diff_coef=b2))
    np.testing.assert_allclose(paper, ref, rtol=1e-10, atol=1e-12)
    default = run_optlab(O.adan(0.05, b1, b2, b3, eps=1e-8, eps_root=0.0))
    assert np.max(np.abs(default - ref)) > 1e-3  # optax's weight is a different method


def np_ademamix(lr, b1, b2, b3, alpha, t_alpha, t_b3, eps, weight_decay):
    """Pagliardini et al. (2024), Algorithm 1, with the α and β₃ schedulers of §3, indexed by
    the step k = t − 1 (0 first) as optax evaluates schedules."""

    def alpha_at(k):
        return min(k * alpha / t_alpha, alpha)

    def b3_at(k):
        f = min(k / t_b3, 1.0)
        ln1, ln3 = math.log(b1), math.log(b3)
        return min(math.exp(ln1 * ln3 / ((1 - f) * ln3 + f * ln1)), b3)

    p = P0.copy()
    m1, m2, nu = np.zeros_like(P0), np.zeros_like(P0), np.zeros_like(P0)
    out = []
    for t in range(1, T + 1):
        g = grad_fn(p, t - 1)
        beta3 = b3_at(t - 1)
        m1 = b1 * m1 + (1 - b1) * g
        m2 = beta3 * m2 + (1 - beta3) * g
        nu = b2 * nu + (1 - b2) * g * g
        m1_hat, nu_hat = m1 / (1 - b1**t), nu / (1 - b2**t)
        step = (m1_hat + alpha_at(t - 1) * m2) / (np.sqrt(nu_hat) + eps) + weight_decay * p
        p = p - lr * step
        out.append(p.copy())
    return np.stack(out)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_ademamix_matches_the_paper(weight_decay, x64):
    b1, b2, b3, alpha = 0.9, 0.999, 0.999, 5.0
    tx = O.ademamix(0.02, b1, b2, b3=O.ademamix_b3_warmup(b1, b3, 40),
                    alpha=O.ademamix_alpha_warmup(alpha, 30), weight_decay=weight_decay)
    ref = np_ademamix(0.02, b1, b2, b3, alpha, 30, 40, 1e-8, weight_decay)
    np.testing.assert_allclose(run_optlab(tx), ref, rtol=1e-10, atol=1e-12)


def test_ademamix_warmups():
    alpha, b3 = O.ademamix_alpha_warmup(5.0, 10), O.ademamix_b3_warmup(0.9, 0.999, 10)
    np.testing.assert_allclose([float(alpha(k)) for k in (0, 5, 10, 20)], [0, 2.5, 5, 5])
    np.testing.assert_allclose([float(b3(k)) for k in (0, 10, 20)], [0.9, 0.999, 0.999],
                               rtol=1e-6)
    # half-life ln ½ / ln β grows linearly in the step
    half = [math.log(0.5) / math.log(float(b3(k))) for k in (0, 5, 10)]
    assert half[1] == pytest.approx((half[0] + half[2]) / 2, rel=1e-4)


def test_acprop_first_step_is_the_gradient(x64):
    """No belief exists before the first step: ŝ₀ = 1, so u₁ = −η g₁ / (1 + ε)."""
    tx = O.acprop(0.1)
    g = jnp.asarray(NOISE[0])
    u, _ = tx.update(g, tx.init(g), g)
    np.testing.assert_allclose(np.asarray(u), -0.1 * NOISE[0] / (1 + 1e-16), rtol=1e-15)


# --- convergence --------------------------------------------------------------------------

C, K = "cos", "const"
# name -> problem -> (learning rate, steps, schedule, clip global norm at), found by a grid over
# lr ∈ {1e-3, 3e-3, …, 3} × {constant, cosine} × {no clip, clip 10}; each recipe reached
# ‖x − x*‖ < 1e-3 there (the test asks 1e-2).
RECIPES = {
    "adabelief": {"quadratic": (0.01, 4000, K, None), "rosenbrock": (0.01, 10000, K, None),
                  "beale": (1.0, 10000, K, None)},
    "adamaxw": {"quadratic": (0.03, 4000, K, None), "rosenbrock": (0.01, 10000, K, None),
                "beale": (3.0, 10000, K, None)},
    "nadamw": {"quadratic": (0.01, 4000, K, None), "rosenbrock": (0.1, 10000, C, None),
               "beale": (1.0, 10000, K, None)},
    "yogi": {"quadratic": (0.01, 4000, K, None), "rosenbrock": (0.3, 10000, K, None),
             "beale": (1.0, 10000, K, 10.0)},
    "adan": {"quadratic": (3e-3, 4000, K, None), "rosenbrock": (3e-3, 10000, K, None),
             "beale": (0.3, 10000, C, None)},
    "adopt": {"quadratic": (0.01, 4000, K, None), "rosenbrock": (1.0, 10000, K, None),
              "beale": (1.0, 10000, K, 10.0)},
    "ademamix": {"quadratic": (0.3, 4000, K, None), "rosenbrock": (0.1, 10000, K, None),
                 "beale": (1.0, 10000, C, 10.0)},
    "simplified_ademamix": {"quadratic": (1e-3, 4000, C, None),
                            "rosenbrock": (1e-3, 10000, C, None),
                            "beale": (1e-3, 10000, C, 10.0)},
    "acprop": {"quadratic": (0.01, 4000, K, None), "rosenbrock": (3e-3, 10000, C, 10.0),
               "beale": (1.0, 10000, C, 10.0)},
    "madgrad": {"quadratic": (0.01, 4000, K, None), "rosenbrock": (3e-3, 10000, K, None),
                "beale": (1.0, 10000, C, 10.0)},
}


def _factory(name, lr):
    if name in ("adamaxw", "nadamw"):
        return getattr(O, name)(lr, weight_decay=0.0)
    return getattr(O, name)(lr)


@pytest.mark.parametrize("problem", list(PROBLEMS))
@pytest.mark.parametrize("name", NAMES)
def test_reaches_minimum(name, problem):
    f, x0, x_star = PROBLEMS[problem]
    lr, steps, kind, clip = RECIPES[name][problem]
    if kind == C:
        lr = schedules.cosine_decay(lr, steps, alpha=1e-3)
    tx = _factory(name, lr)
    if clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(clip), tx)

    def body(carry, _):
        x, s = carry
        u, s = tx.update(jax.grad(f)(x), s, x)
        return (optax.apply_updates(x, u), s), None

    (x, _), _ = jax.jit(lambda x: jax.lax.scan(body, (x, tx.init(x)), None, length=steps))(x0)
    distance = float(jnp.linalg.norm(x - x_star))
    assert np.isfinite(distance) and distance < 1e-2, (name, problem, distance)


# --- drop-in properties -------------------------------------------------------------------


def _shapes(tree):
    return jax.tree.map(lambda x: (x.shape, x.dtype), tree)


@pytest.mark.parametrize("name", NAMES)
def test_abstract_init_jit_and_type_stable_state(name):
    params = make_params(3)
    tx = getattr(O, name)(0.01)
    state = tx.init(params)
    assert _shapes(jax.eval_shape(tx.init, params)) == _shapes(state)
    abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
    assert _shapes(tx.init(abstract)) == _shapes(state)
    grads = jax.tree.map(jnp.ones_like, params)
    step = jax.jit(tx.update)
    _, new_state = step(grads, state, params)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert _shapes(new_state) == _shapes(state)
    step(grads, new_state, params)
    assert step._cache_size() == 1  # the second step reuses the first compilation


# optax's state fields, one per statistic, found by optax.tree.get in optlab's state.
STATE_NAMES = {
    "adabelief": ["mu", "nu"], "adamaxw": ["mu", "nu"], "nadamw": ["mu", "nu"],
    "yogi": ["mu", "nu"], "adan": ["m", "v", "n", "g"], "adopt": ["mu", "nu"],
    "ademamix": ["m1", "m2", "nu"], "simplified_ademamix": ["m", "n"],
    "acprop": ["mu", "nu"], "madgrad": ["grad_sum_sq", "s", "x0"],
}


def _nbytes(tree):
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("name", NAMES)
def test_state_names_values_and_size_match_optax(name):
    params = make_params(4)
    ours, ref = getattr(O, name)(0.01), _optax(name)(0.01)
    s_ours, s_ref = ours.init(params), ref.init(params)
    assert _nbytes(s_ours) <= _nbytes(s_ref)
    for t in range(5):
        grads = jax.tree.map(lambda p, t=t: jnp.sin(p * (t + 1)), params)
        _, s_ours = ours.update(grads, s_ours, params)
        _, s_ref = ref.update(grads, s_ref, params)
    for field in STATE_NAMES[name]:
        assert_trees_close(optax.tree.get(s_ours, field), optax.tree.get(s_ref, field),
                           rtol=1e-5, atol=1e-7, msg=f"{name}.{field}")
    assert int(optax.tree.get(s_ours, "count")) == 5


@pytest.mark.parametrize("name", ["adopt", "ademamix", "nadamw"])
def test_mu_dtype_keeps_the_state_dtype(name):
    params = make_params(5)
    tx = getattr(O, name)(0.01, mu_dtype=jnp.bfloat16)
    state = tx.init(params)
    first = optax.tree.get(state, "m1" if name == "ademamix" else "mu")
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(first))
    traj = run(tx, params, 10)  # a lax.scan carry: fails unless the state keeps its dtypes
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(traj[10]))


INJECT = {
    "adabelief": dict(learning_rate=0.01, b1=0.8), "adamaxw": dict(learning_rate=0.01),
    "nadamw": dict(learning_rate=0.01, weight_decay=0.1), "yogi": dict(learning_rate=0.01),
    "adan": dict(learning_rate=0.01, b2=0.9, weight_decay=0.01),
    "adopt": dict(learning_rate=0.01, b1=0.8),
    "ademamix": dict(learning_rate=0.01, alpha=3.0, b3=0.99),
    "simplified_ademamix": dict(learning_rate=0.01, alpha=1.0),
    "acprop": dict(learning_rate=0.01), "madgrad": dict(learning_rate=0.01, momentum=0.8),
}


@pytest.mark.parametrize("name", NAMES)
def test_inject_hyperparams(name):
    params = make_params(6)
    kw = INJECT[name]
    ours = run(optax.inject_hyperparams(getattr(O, name))(**kw), params, 20)
    if name == "adopt":
        # optax's adopt fails under inject_hyperparams (its clip_value_fn is injected as a
        # number and then called); optlab's takes the injected value as the clip.
        ref = run(_optax(name)(**kw), params, 20)
    else:
        ref = run(optax.inject_hyperparams(_optax(name))(**kw), params, 20)
    assert_trees_close(ours[20], ref[20], rtol=1e-4, atol=1e-5, msg=name)


# --- argument errors ----------------------------------------------------------------------

BAD = [
    ("adabelief", dict(b1=1.0), "b1"),
    ("adabelief", dict(eps_root=-1e-8), "eps_root"),
    ("adamaxw", dict(weight_decay=-0.1), "weight_decay"),
    ("nadamw", dict(b2=-0.1), "b2"),
    ("yogi", dict(eps=-1.0), "eps"),
    ("adan", dict(b3=1.5), "b3"),
    ("adan", dict(diff_coef=-0.1), "diff_coef"),
    ("adopt", dict(b2=1.0), "b2"),
    ("adopt", dict(clip_value_fn="x"), "clip_value_fn"),
    ("adopt", dict(clip_value_fn=-1.0), "clip_value_fn"),
    ("ademamix", dict(alpha=-1.0), "alpha"),
    ("ademamix", dict(b3=1.0), "b3"),
    ("simplified_ademamix", dict(alpha=-0.5), "alpha"),
    ("acprop", dict(eps=-1e-16), "eps"),
    ("madgrad", dict(momentum=1.0), "momentum"),
    ("madgrad", dict(weight_decay=-1.0), "weight_decay"),
]


@pytest.mark.parametrize("name,kw,arg", BAD, ids=[f"{n}-{a}" for n, _, a in BAD])
def test_bad_arguments_name_the_argument(name, kw, arg):
    with pytest.raises((ValueError, TypeError), match=arg):
        getattr(O, name)(0.01, **kw)


@pytest.mark.parametrize("name", NAMES)
def test_negative_learning_rate_is_refused(name):
    with pytest.raises(ValueError, match=r"learning_rate must be in \[0"):
        getattr(O, name)(-0.1)


def test_madgrad_state_and_params_can_both_be_donated():
    """MADGRAD keeps θ₀ in its own buffers (optax's aliases the params, so donating both
    fails with "donate the same buffer twice")."""
    tx = O.madgrad(0.01)
    p = make_params(0)
    s = tx.init(p)
    step = jax.jit(lambda p, s: (lambda u, s: (optax.apply_updates(p, u), s))(
        *tx.update(jax.tree.map(jnp.sin, p), s, p)), donate_argnums=(0, 1))
    for _ in range(2):
        p, s = step(p, s)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(p))


def test_madgrad_needs_params():
    tx = O.madgrad(0.01)
    p = make_params(0)
    with pytest.raises(ValueError, match="params"):
        tx.update(p, tx.init(p))


@pytest.mark.parametrize("bad", [dict(warmup=0), dict(alpha=-1.0)])
def test_ademamix_warmup_arguments(bad):
    kw = dict(alpha=5.0, warmup=10) | bad
    with pytest.raises(ValueError, match=next(iter(bad))):
        O.ademamix_alpha_warmup(**kw)
    with pytest.raises(ValueError, match="b3"):
        O.ademamix_b3_warmup(0.9, 1.0, 10)
