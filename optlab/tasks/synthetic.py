"""Synthetic optimization problems with known minima.

Every problem is a :class:`Problem`: a deterministic objective ``loss(x)`` over a 1-D float
vector, a starting point, the minimiser, and optionally the stochastic or time-varying loss
that an optimizer actually sees (``sample_loss``) and a projection onto a feasible set.

* 2-D test functions: Rosenbrock (1960) from (−0.5, 1.5) and Beale (1958) from (−4.5, 4.5)
  (the DeepOBS starting points), Booth, the saddle x² − y², and Rastrigin (any dimension).
  Each takes ``noise``: DeepOBS-style linear noise (see :func:`rosenbrock`).
* DeepOBS ``quadratic_deep`` (Schneider et al. 2019): a 100-D quadratic ½(x−x*)ᵀH(x−x*)
  whose Hessian has 90 eigenvalues in U(0, 1) and 10 in U(30, 60), under a random rotation.
* Reddi, Kale & Kumar (ICLR 2018) "On the Convergence of Adam and Beyond": the online and the
  stochastic linear counterexamples on [−1, 1], where Adam drifts to +1 and AMSGrad to −1.
* Linear and L2-regularised logistic regression on data drawn from a seed, with the exact
  minimiser computed in float64 at construction and optional minibatch sampling.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

Loss = Callable[[jax.Array], jax.Array]
SampleLoss = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
"""``sample_loss(x, step, key)``: the loss seen at integer ``step`` (0 at the first update,
a traced int32 under ``lax.scan``) with the PRNG key ``key`` (``jax.random.key``)."""


@dataclass(frozen=True)
class Problem:
    """A loss ``f(x)`` over a 1-D float vector, a starting point and the minimiser.

    ``loss`` is the deterministic (expected, or period-averaged) objective, used to report
    results; ``x_star`` its minimiser, or ``None`` when there is none (unbounded below).
    ``sample_loss(x, step, key)`` is what the optimizer sees at ``step`` when it differs from
    ``loss`` (noise, minibatches, an online sequence); ``project`` maps an iterate back onto
    the feasible set after each update. Use :meth:`loss_at` and :meth:`apply_projection`,
    which fall back to ``loss`` and the identity, so callers never branch.
    """

    name: str
    loss: Loss
    x0: jax.Array
    x_star: jax.Array | None
    description: str
    sample_loss: SampleLoss | None = None
    project: Callable[[jax.Array], jax.Array] | None = None

    @property
    def stochastic(self) -> bool:
        """True when the optimizer sees ``sample_loss`` (random or time-varying), not ``loss``."""
        return self.sample_loss is not None

    def loss_at(self, x: jax.Array, step: jax.Array | int, key: jax.Array) -> jax.Array:
        """The loss the optimizer sees at ``step`` with PRNG ``key``: ``sample_loss``, else
        ``loss``."""
        if self.sample_loss is None:
            return self.loss(x)
        return self.sample_loss(x, step, key)

    def apply_projection(self, x: jax.Array) -> jax.Array:
        """``project(x)``, or ``x`` when the problem is unconstrained."""
        return x if self.project is None else self.project(x)


def _vector(values) -> jax.Array:
    """A 1-D array in JAX's default float dtype (float32 unless x64 is enabled)."""
    return jnp.asarray(values, dtype=float)


def _check_nonnegative(**values: float) -> None:
    for name, v in values.items():
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v!r}")


# --- noise -----------------------------------------------------------------------------------

def _linear_noise(f: Loss, noise: float, mix: jax.Array | None = None) -> SampleLoss | None:
    """``f(x) + ζ·x`` with ``ζ = noise · M z``, z ~ N(0, I) drawn from ``key`` (M = I unless
    ``mix`` is given); ``None`` when ``noise == 0``. E[ζ] = 0, so the expected sample loss and
    gradient are ``f`` and ∇f; the gradient noise has covariance noise² M Mᵀ."""
    _check_nonnegative(noise=noise)
    if noise == 0:
        return None

    def sample_loss(x, step, key):
        del step
        z = jax.random.normal(key, x.shape, x.dtype)
        if mix is not None:
            z = mix @ z
        return f(x) + noise * jnp.dot(z, x)

    return sample_loss


def _with_noise(name: str, f: Loss, x0, x_star, description: str, noise: float,
                mix: jax.Array | None = None,
                noise_note: str = "noise u·ξ₁+v·ξ₂, ξ ~ N(0, σ²I)") -> Problem:
    """An unconstrained problem with optional linear noise (see :func:`_linear_noise`);
    named ``name_noisy`` when noise > 0."""
    sample_loss = _linear_noise(f, noise, mix)
    if sample_loss is not None:
        name, description = f"{name}_noisy", f"{description}; {noise_note}, σ = {noise:g}"
    return Problem(name, f, _vector(x0), None if x_star is None else _vector(x_star),
                   description, sample_loss)


# --- 2-D test functions ------------------------------------------------------------------------

def rosenbrock(noise: float = 0.0) -> Problem:
    """Rosenbrock (1960): f(u, v) = (1 − u)² + 100(v − u²)², from (−0.5, 1.5); f(1, 1) = 0.

    ``noise`` > 0 adds DeepOBS's stochastic term u·ξ₁ + v·ξ₂ (``two_d_rosenbrock`` etc.,
    fsschneider/DeepOBS ``deepobs/tensorflow/testproblems/two_d_*.py``) with ξ ~ N(0, noise² I)
    drawn fresh each step, so ``sample_loss`` is unbiased for ``loss``. DeepOBS draws each
    example's (ξ₁, ξ₂) from N(0, noise_level²), ``noise_level = 1.0`` by default
    (``deepobs/tensorflow/datasets/two_d.py``; the pre-1.0 ``deepobs/two_d/`` scripts used a
    different, multiplicative noise with level 6), and averages a minibatch of B examples:
    ``noise = noise_level/√B`` matches that.
    The same ``noise`` option exists on every 2-D function here.
    """
    def f(x):
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

    return _with_noise("rosenbrock", f, [-0.5, 1.5], [1.0, 1.0],
                       "Rosenbrock's banana valley from (-0.5, 1.5); minimum f(1, 1) = 0", noise)


def beale(noise: float = 0.0) -> Problem:
    """Beale (1958): f(u, v) = (1.5 − u + uv)² + (2.25 − u + uv²)² + (2.625 − u + uv³)²,
    from (−4.5, 4.5) (DeepOBS ``two_d_beale``); minimum f(3, 0.5) = 0. ``noise``: see
    :func:`rosenbrock`."""
    def f(x):
        a, b = x[0], x[1]
        return ((1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2
                + (2.625 - a + a * b**3) ** 2)

    return _with_noise("beale", f, [-4.5, 4.5], [3.0, 0.5],
                       "Beale's function from (-4.5, 4.5); minimum f(3, 0.5) = 0", noise)


def booth(noise: float = 0.0) -> Problem:
    """Booth: f(u, v) = (u + 2v − 7)² + (2u + v − 5)², a quadratic with Hessian
    [[10, 8], [8, 10]] (eigenvalues 2 and 18); minimum f(1, 3) = 0. There is no standard
    starting point: we use (−5, 5), inside the usual domain [−10, 10]², with error components
    along both eigenvectors. ``noise``: see :func:`rosenbrock`."""
    def f(x):
        return (x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2

    return _with_noise("booth", f, [-5.0, 5.0], [1.0, 3.0],
                       "Booth's quadratic from (-5, 5), condition number 9; minimum f(1, 3) = 0",
                       noise)


def saddle(noise: float = 0.0) -> Problem:
    """The saddle f(u, v) = u² − v², unbounded below (``x_star`` is ``None``).

    Starts at (1, 10⁻³), just off the stable manifold v = 0: gradient descent first
    contracts u towards the saddle point (0, 0) and then has to escape along v, where the
    displacement grows only by (1 + 2η) per step. From v = 0 exactly, noiseless gradient
    methods never escape. ``noise``: see :func:`rosenbrock`.
    """
    return _with_noise("saddle", lambda x: x[0] ** 2 - x[1] ** 2, [1.0, 1e-3], None,
                       "saddle u^2 - v^2 from (1, 1e-3); unbounded below, tests escaping", noise)


def rastrigin(dim: int = 2, a: float = 10.0, noise: float = 0.0) -> Problem:
    """Rastrigin (1974): f(x) = a·n + Σᵢ (xᵢ² − a·cos 2πxᵢ), a = 10; global minimum f(0) = 0,
    with a local minimum near every integer point.

    Starts at (−2, 3.5), the point used by jettify/pytorch-optimizer
    (``examples/viz_optimizers.py``); for ``dim`` ≠ 2 that pair is repeated (−2, 3.5, −2, …).
    ``noise``: see :func:`rosenbrock`.
    """
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim!r}")
    _check_nonnegative(a=a)

    def f(x):
        return a * x.shape[0] + jnp.sum(x**2 - a * jnp.cos(2 * jnp.pi * x))

    return _with_noise("rastrigin", f, np.resize([-2.0, 3.5], dim), np.zeros(dim),
                       f"Rastrigin in {dim}-D from (-2, 3.5, ...), many local minima; "
                       "minimum f(0) = 0", noise)


# --- DeepOBS quadratic -----------------------------------------------------------------------

def quadratic_deep(seed: int = 42, dim: int = 100, noise: float = 0.0) -> Problem:
    """DeepOBS ``quadratic_deep``: ½(x−x*)ᵀH(x−x*), eigenvalues 90 % in U(0, 1), 10 % in
    U(30, 60), rotated; from x = 1, x* = 0.

    DeepOBS's per-example loss is ½(θ−ξ)ᵀH(θ−ξ) with ξ ~ N(0, 0.6² I) (``noise_level = 0.6``
    in ``deepobs/tensorflow/datasets/quadratic.py``; batch size 128 in ``deepobs/config.py``).
    With ``noise`` > 0, ``sample_loss = loss(x) + noise·(Hz)·x``, z ~ N(0, I), which equals
    ½(x−ξ)ᵀH(x−ξ) with ξ = −noise·z up to a term free of x: the same gradients, and unbiased
    for ``loss``. A minibatch of B DeepOBS examples corresponds to ``noise = 0.6/√B``.
    (Our eigenvalues and rotation come from numpy's ``default_rng(seed)``, not DeepOBS's
    ``RandomState(42)`` draw, so the matrix differs from DeepOBS's.)
    """
    rng = np.random.default_rng(seed)
    n_big = dim // 10
    eig = np.concatenate([rng.uniform(0, 1, dim - n_big), rng.uniform(30, 60, n_big)])
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    hessian = jnp.asarray(q @ np.diag(eig) @ q.T, jnp.float32)

    def f(x):
        return 0.5 * x @ hessian @ x

    return _with_noise(
        "quadratic_deep", f, np.ones(dim), np.zeros(dim),
        f"DeepOBS quadratic_deep: {dim}-D, Hessian eigenvalues {dim - n_big} in U(0,1), "
        f"{n_big} in U(30,60)", noise, mix=hessian, noise_note="data noise ξ ~ N(0, σ²I)")


# --- Reddi et al. 2018 counterexamples ---------------------------------------------------------

def _unit_interval(x: jax.Array) -> jax.Array:
    return jnp.clip(x, -1.0, 1.0)


def _linear_on_interval(name: str, slope: float, sample_loss: SampleLoss,
                        description: str) -> Problem:
    """f(x) = slope·x on [−1, 1] (projected by clipping), from x = 0; x* = −1 for slope > 0."""
    if not slope > 0:
        raise ValueError(f"the expected slope must be > 0 (so that x* = -1), got {slope!r}")
    return Problem(name, lambda x: slope * x[0], _vector([0.0]), _vector([-1.0]), description,
                   sample_loss, _unit_interval)


def reddi_online(C: float = 1010.0, c: float = 10.0, period: int = 101) -> Problem:
    """Reddi et al. 2018, online counterexample: f_t(x) = C·x if t mod period = 1 else −c·x,
    x ∈ [−1, 1]; optimum x* = −1 when C > (period − 1)·c.

    The defaults are the paper's synthetic experiment (1010x once every 101 steps, else −10x);
    ``reddi_online(C, 1.0, 3)`` is its Theorem 1 example (C·x if t mod 3 = 1 else −x, C > 2).
    The paper counts t from 1, so at our 0-based ``step`` = t − 1 the large gradient C comes at
    steps 0, period, 2·period, …. ``loss`` is the average over one period,
    (C − (period−1)·c)/period · x (10/101 · x by default). ``project`` clips to [−1, 1]; x0 = 0,
    as in labmlai's reproduction (``labml_nn/optimizers/amsgrad.py``).

    With β₁ = 0.9, β₂ = 0.99, η_t = 0.5/√t and projection (``tests/test_synthetic.py``), Adam
    passes 0.99 after 2·10⁴ steps and stays near +1; AMSGrad drops to −0.9 within 100 steps and
    then creeps to −1 (−0.93 at 2·10⁴, −0.97 at 3·10⁵, −0.9997 at 10⁶ steps).
    """
    if period < 2:
        raise ValueError(f"period must be >= 2, got {period!r}")
    _check_nonnegative(C=C, c=c)

    def sample_loss(x, step, key):
        del key
        return jnp.where(step % period == 0, C, -c) * x[0]

    return _linear_on_interval(
        "reddi_online", (C - (period - 1) * c) / period, sample_loss,
        f"Reddi et al. 2018 online: {C:g}x once every {period} steps else -{c:g}x on [-1, 1]; "
        "min f(-1)")


def reddi_stochastic(C: float = 1010.0, c: float = 10.0, p: float = 0.01) -> Problem:
    """Reddi et al. 2018, stochastic counterexample: f_t(x) = C·x with probability p, else
    −c·x, x ∈ [−1, 1] (defaults: 1010x with probability 0.01, else −10x).

    The Bernoulli draw uses ``key`` only (``step`` is ignored); ``loss`` is the expectation
    (p·C − (1−p)·c)·x = 0.2x by default, so x* = −1. ``project`` clips to [−1, 1]; x0 = 0.
    With the settings of :func:`reddi_online`, Adam ends near +1 (0.95–1.0 after 3·10⁵ steps
    over 16 seeds) while AMSGrad moves towards −1 slowly and seed-dependently.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    _check_nonnegative(C=C, c=c)

    def sample_loss(x, step, key):
        del step
        return jnp.where(jax.random.bernoulli(key, p), C, -c) * x[0]

    return _linear_on_interval(
        "reddi_stochastic", p * C - (1 - p) * c, sample_loss,
        f"Reddi et al. 2018 stochastic: {C:g}x w.p. {p:g} else -{c:g}x on [-1, 1]; min f(-1)")


# --- regression --------------------------------------------------------------------------------

def _features(rng: np.random.Generator, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix A ~ N(0, 1)^{n×dim}, rounded to float32 so that float32 and float64 runs
    see the same data, and true weights ~ N(0, I/dim) (a unit-variance signal Aw)."""
    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be >= 1, got n={n!r}, dim={dim!r}")
    a = rng.normal(size=(n, dim)).astype(np.float32).astype(np.float64)
    w = rng.normal(size=dim) / math.sqrt(dim)
    return a, w


def _empirical_risk(name: str, per_example: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
                    a: np.ndarray, b: np.ndarray, x_star: np.ndarray, description: str,
                    batch_size: int | None, penalty: Loss = lambda x: 0.0) -> Problem:
    """mean_i per_example(x, aᵢ, bᵢ) + penalty(x) over fixed data; with ``batch_size`` the
    sample loss averages ``batch_size`` examples drawn uniformly with replacement from ``key``
    (an unbiased estimate of ``loss``)."""
    n = a.shape[0]
    a_j, b_j = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)

    def loss(x):
        return jnp.mean(per_example(x, a_j, b_j)) + penalty(x)

    sample_loss = None
    if batch_size is not None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size!r}")

        def sample_loss(x, step, key):
            del step
            idx = jax.random.randint(key, (batch_size,), 0, n)
            return jnp.mean(per_example(x, a_j[idx], b_j[idx])) + penalty(x)

        description += f", minibatch {batch_size}"
    return Problem(name, loss, jnp.zeros(a.shape[1]), _vector(x_star), description, sample_loss)


def linear_regression(n: int = 1000, dim: int = 20, noise: float = 0.1, seed: int = 0,
                      batch_size: int | None = None) -> Problem:
    """Least squares: f(x) = mean_i (aᵢ·x − bᵢ)², a ~ N(0, I), b = a·w + noise·N(0, 1).

    Data come from ``numpy.random.default_rng(seed)``; ``x_star`` is the exact least-squares
    solution (``numpy.linalg.lstsq`` in float64 on the float32-rounded data), x0 = 0.
    ``batch_size``: see :func:`logistic_regression`.
    """
    _check_nonnegative(noise=noise)
    rng = np.random.default_rng(seed)
    a, w = _features(rng, n, dim)
    b = (a @ w + noise * rng.normal(size=n)).astype(np.float32).astype(np.float64)
    x_star = np.linalg.lstsq(a, b, rcond=None)[0]
    return _empirical_risk(
        "linear_regression", lambda x, a_, b_: (a_ @ x - b_) ** 2, a, b, x_star,
        f"least squares, {n} examples x {dim} features, label noise {noise:g}", batch_size)


def _logistic_minimiser(a: np.ndarray, s: np.ndarray, l2: float, tol: float = 1e-10,
                        max_iter: int = 100) -> np.ndarray:
    """argmin mean log(1 + exp(−sᵢ aᵢ·w)) + ½·l2·‖w‖² by damped Newton in float64."""
    n, dim = a.shape

    def value(w):
        return np.mean(np.logaddexp(0.0, -s * (a @ w))) + 0.5 * l2 * w @ w

    w = np.zeros(dim)
    for _ in range(max_iter):
        p = np.exp(-np.logaddexp(0.0, s * (a @ w)))  # σ(−s·aw), the weight of each example
        grad = -a.T @ (s * p) / n + l2 * w
        if np.linalg.norm(grad) <= tol:
            return w
        hess = (a.T * (p * (1 - p))) @ a / n + l2 * np.eye(dim)
        direction = np.linalg.solve(hess, grad)
        step = 1.0
        while value(w - step * direction) > value(w) - 0.25 * step * grad @ direction:
            step /= 2
            if step < 1e-10:
                break
        w = w - step * direction
    raise RuntimeError(f"Newton did not converge: |grad| = {np.linalg.norm(grad):.2e}")


def logistic_regression(n: int = 1000, dim: int = 20, l2: float = 1e-3, seed: int = 0,
                        batch_size: int | None = None) -> Problem:
    """L2-regularised logistic regression: f(x) = mean_i log(1 + exp(−sᵢ aᵢ·x)) + ½·l2·‖x‖²,
    labels sᵢ = ±1 ~ Bernoulli(σ(aᵢ·w)), a ~ N(0, I).

    ``l2`` > 0 makes f strongly convex, so the minimiser is finite and unique even if the
    data are separable. ``x_star`` is computed by damped Newton in float64 to ‖∇f‖ ≤ 1e-10.
    Data come from ``numpy.random.default_rng(seed)``; x0 = 0. With ``batch_size``,
    ``sample_loss`` averages ``batch_size`` examples drawn with replacement using ``key``;
    ``None`` (default) means full batch, so ``sample_loss`` is ``None``.
    """
    if not (math.isfinite(l2) and l2 > 0):
        raise ValueError(f"l2 must be finite and > 0, got {l2!r}")
    rng = np.random.default_rng(seed)
    a, w = _features(rng, n, dim)
    s = np.where(rng.random(n) < 1 / (1 + np.exp(-(a @ w))), 1.0, -1.0)
    x_star = _logistic_minimiser(a, s, l2)
    return _empirical_risk(
        "logistic_regression", lambda x, a_, s_: jnp.logaddexp(0.0, -s_ * (a_ @ x)), a, s,
        x_star, f"logistic regression + {l2:g}/2 |x|^2, {n} examples x {dim} features",
        batch_size, penalty=lambda x: 0.5 * l2 * jnp.dot(x, x))


PROBLEMS: dict[str, Callable[[], Problem]] = {
    "rosenbrock": rosenbrock,
    "beale": beale,
    "quadratic_deep": quadratic_deep,
    "booth": booth,
    "saddle": saddle,
    "rastrigin": rastrigin,
    # DeepOBS's stochastic versions at their per-example noise level (one example per step).
    "rosenbrock_noisy": functools.partial(rosenbrock, noise=1.0),
    "beale_noisy": functools.partial(beale, noise=1.0),
    "quadratic_deep_noisy": functools.partial(quadratic_deep, noise=0.6),
    "reddi_online": reddi_online,
    "reddi_stochastic": reddi_stochastic,
    "linear_regression": linear_regression,
    "logistic_regression": logistic_regression,
}
