r"""Orthogonalised momentum: Newton–Schulz iterations and Muon.

Muon (Jordan et al. 2024) replaces the momentum M of a weight matrix by its polar factor
:math:`UV^\top` (:math:`M = UΣV^\top`), approximated by a few Newton–Schulz iterations, and
trains every non-matrix parameter with AdamW. In optlab that is

* :func:`orthogonalize`, a combiner that reads a momentum statistic (e.g. the ``ema`` ``"mu"``)
  and returns its orthogonalisation (optionally rescaled by the dual norm, ``adaptive``);
* :func:`scale_by_shape`, Muon's width (or consistent-RMS) scaling of the update;
* :func:`partition`, which runs one chain on the matrices and another on the remaining leaves
  while sharing the optimizer's single step counter (optax's ``partition`` keeps one per
  branch).

Higher-rank leaves take optax's ``MuonDimensionNumbers``: the reduction and output axes form
the matrix, every other axis is a batch axis orthogonalised independently.
"""


import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import ScalarOrSchedule
from optax.contrib import MuonDimensionNumbers

from optlab import _checks
from optlab.accumulators import ema
from optlab.optimizers import _check_args, adamw
from optlab.regularizers import decoupled_weight_decay, scale_by_learning_rate
from optlab.stream import (
    Primitive,
    as_stream,
    chain,
    empty_init,
    expect_plain,
    primitive,
    scalar_as,
    tree_map,
)

__all__ = [
    "NS_COEFFS",
    "MuonDimensionNumbers",
    "muon",
    "newton_schulz",
    "orthogonalize",
    "partition",
    "scale_by_shape",
]

Preconditioning = Literal["frobenius", "spectral", "aol", "schatten"]
PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
Coeffs = tuple[float, float, float]

NS_COEFFS: dict[str, Coeffs | tuple[Coeffs, ...]] = {
    # Jordan et al. (2024): the quintic with the steepest slope at 0 that still converges.
    "standard": (3.4445, -4.7750, 2.0315),
    # Ahn et al. (2025), Dion: one polynomial per step (5 steps).
    "dion": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
}


# ------------------------------------------------------------------------------------------
# Newton–Schulz orthogonalisation of one matrix
# ------------------------------------------------------------------------------------------


def _quintic(x: jax.Array, a: jax.Array, c: Any) -> jax.Array:
    """One step :math:`X ← c_0 X + (c_1 A + c_2 A^2) X` with :math:`A = XX^H` given."""
    return c[0] * x + (c[1] * a + c[2] * (a @ a)) @ x


def _gram(x: jax.Array) -> jax.Array:
    return x @ x.T.conj()


def _first_step(x: jax.Array, c: Any, preconditioning: str, eps: Any) -> jax.Array:
    """The first step, with AOL (Boissin et al. 2025) or Schatten-4 (Grishina et al. 2025)
    rescaling folded in: X ← SX, A ← SAS with S diagonal from A = XX^H."""
    a = _gram(x)
    if preconditioning == "aol":
        s = jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.abs(a), axis=-1), eps))[:, None]
        x, a = x * s, a * s * s.T
    elif preconditioning == "schatten":
        s = jax.lax.rsqrt(jnp.maximum(jnp.linalg.norm(a), eps))
        x, a = x * s, a * (s * s)
    return _quintic(x, a, c)


def newton_schulz(
    x: jax.Array,
    coeffs: Sequence[Coeffs] | Coeffs,
    steps: int | jax.Array = 5,
    preconditioning: Preconditioning = "frobenius",
    eps: float = 1e-8,
) -> jax.Array:
    r"""Approximate polar factor :math:`UV^\top` of a matrix :math:`X = UΣV^\top`.

    X is first scaled to spectral norm ≤ 1 (``frobenius``: :math:`X/(\lVert X\rVert_F + ε)`,
    ``spectral``: :math:`X/(\lVert X\rVert_2 + ε)`; ``aol`` / ``schatten`` rescale inside the
    first step), then iterated :math:`X ← aX + (bA + cA^2)X`, :math:`A = XX^H`: ``steps`` times
    with one triple (a, b, c), or once per triple of a sequence. The iteration maps each
    singular value σ to p(σ) = aσ + bσ³ + cσ⁵ and leaves U, V unchanged; Jordan's
    coefficients drive σ into roughly [0.7, 1.2] in 5 steps rather than exactly to 1. A tall
    X is transposed first so that A is the smaller Gram matrix (p commutes with transposition).
    ``steps`` may be traced (``optax.inject_hyperparams``): the loop is then a ``fori_loop``.
    """
    if x.ndim != 2:
        raise ValueError(f"newton_schulz expects a matrix, got shape {x.shape}")
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    if preconditioning == "frobenius":
        x = x / (jnp.linalg.norm(x) + eps)
    elif preconditioning == "spectral":
        x = x / (jnp.linalg.norm(x, ord=2) + eps)
    table = np.asarray(coeffs, dtype=np.float64)
    if table.ndim == 1:
        c = tuple(float(v) for v in table)
        concrete = _concrete_int(steps)
        if concrete is not None:
            for i in range(concrete):
                x = _first_step(x, c, preconditioning, eps) if i == 0 else _quintic(x, _gram(x), c)
        else:  # a traced number of steps
            x = jax.lax.cond(steps > 0, lambda x: _first_step(x, c, preconditioning, eps),
                             lambda x: x, x)
            x = jax.lax.fori_loop(1, steps, lambda i, x: _quintic(x, _gram(x), c), x)
    else:
        for i, row in enumerate(table):
            c = tuple(float(v) for v in row)
            x = _first_step(x, c, preconditioning, eps) if i == 0 else _quintic(x, _gram(x), c)
    return x.T if tall else x


def _as_matrices(x: jax.Array, dims: MuonDimensionNumbers):
    """(reshape, inverse): x ↔ (batch, reduction, output), batch axes being all others."""
    def axes(a):
        return tuple(i % x.ndim for i in ((a,) if isinstance(a, int) else a))

    red, out = axes(dims.reduction_axis), axes(dims.output_axis)
    if x.ndim < 2:
        raise ValueError(f"orthogonalize: a matrix parameter needs rank >= 2, got shape "
                         f"{x.shape}")
    if set(red) & set(out):
        raise ValueError(f"orthogonalize: reduction axes {red} and output axes {out} overlap "
                         f"for shape {x.shape}")
    batch = tuple(i for i in range(x.ndim) if i not in red and i not in out)
    perm = batch + red + out
    sizes = [math.prod(x.shape[i] for i in group) for group in (batch, red, out)]
    permuted_shape = tuple(x.shape[i] for i in perm)
    inverse_perm = tuple(np.argsort(perm))
    return (lambda y: y.transpose(perm).reshape(sizes),
            lambda y: y.reshape(permuted_shape).transpose(inverse_perm)), sizes


def _fans(x: Any, dims: MuonDimensionNumbers) -> tuple[int, int]:
    _, (_, fan_in, fan_out) = _as_matrices(x, dims)
    return fan_in, fan_out


def _resolve_dims(dimension_numbers: Any, tree: Any) -> Any:
    """A tree with ``tree``'s structure whose leaves are _Dims boxes (None where masked)."""
    default = MuonDimensionNumbers()
    if dimension_numbers is None:
        return tree_map(lambda _: _Dims(default), tree)
    dims = dimension_numbers(tree) if callable(dimension_numbers) else dimension_numbers
    return jax.tree.map(
        lambda d, sub: tree_map(lambda _: None if d is None else _Dims(d), sub), dims, tree,
        is_leaf=lambda v: v is None or isinstance(v, MuonDimensionNumbers))


class _Dims:
    """Boxes a MuonDimensionNumbers (a NamedTuple, hence a pytree) as a tree leaf."""

    def __init__(self, dims: MuonDimensionNumbers):
        self.dims = dims


def _per_leaf(fn: Callable[[jax.Array, MuonDimensionNumbers], jax.Array], tree: Any,
              dimension_numbers: Any) -> Any:
    dims = _resolve_dims(dimension_numbers, tree)
    return jax.tree.map(lambda d, x: x if d is None else fn(x, d.dims), dims, tree,
                        is_leaf=lambda v: v is None or isinstance(v, _Dims))


# ------------------------------------------------------------------------------------------
# Primitives
# ------------------------------------------------------------------------------------------


def orthogonalize(
    source: str = "mu",
    ns_coeffs: Coeffs | Sequence[Coeffs] = NS_COEFFS["standard"],
    ns_steps: int | jax.Array = 5,
    *,
    preconditioning: Preconditioning = "frobenius",
    eps: float = 1e-8,
    adaptive: bool = False,
    dimension_numbers: Any = None,
) -> Primitive:
    r"""Combiner: the Newton–Schulz orthogonalisation :math:`O = \mathrm{NS}(x)` of statistic
    ``source`` (see :func:`newton_schulz`), per leaf.

    With ``adaptive`` (Bernstein & Newhouse 2024) the update is :math:`\langle x, O\rangle\,O`,
    steepest descent scaled by the dual (nuclear) norm. ``dimension_numbers`` (a tree, prefix
    of the params, of ``MuonDimensionNumbers`` or a function of the updates returning one)
    says which axes form the matrix; by default every leaf is a matrix (reduction axis 0,
    output axis 1).
    """
    coeffs = _check_ns(ns_coeffs, ns_steps)
    _checks.check_choice("preconditioning", preconditioning, PRECONDITIONINGS)
    _checks.check_nonnegative("eps", eps)

    def one(x, dims):
        to_matrices, back = _as_matrices(x, dims)[0]
        batch = to_matrices(x)

        def ns(m):
            return newton_schulz(m, coeffs, ns_steps, preconditioning, scalar_as(eps, m))

        o = ns(batch[0])[None] if batch.shape[0] == 1 else jax.vmap(ns)(batch)
        o = back(o)
        if adaptive:
            o = jnp.sum(x.conj() * o) * o
        return o.astype(x.dtype)

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        x = as_stream(updates, "orthogonalize")[source]
        return _per_leaf(one, x, dimension_numbers), state

    return primitive(empty_init, update_fn, counted=False)


def scale_by_shape(dimension_numbers: Any = None, consistent_rms: float | None = None
                   ) -> Primitive:
    r"""Muon's shape-dependent update scale, from fan-in :math:`n` (reduction axes) and fan-out
    :math:`m` (output axes): :math:`\sqrt{\max(1, m/n)}` (Jordan 2024, width transfer), or with
    ``consistent_rms=r`` :math:`r\sqrt{\max(n, m)}`, which gives orthogonal updates the RMS r
    (Liu et al. 2025 recommend r = 0.2, AdamW's typical update RMS)."""
    if consistent_rms is not None:
        _checks.check_nonnegative("consistent_rms", consistent_rms)

    def one(u, dims):
        fan_in, fan_out = _fans(u, dims)
        if consistent_rms is None:
            scale = math.sqrt(max(1.0, fan_out / fan_in))
        else:
            scale = math.sqrt(max(fan_in, fan_out)) * scalar_as(consistent_rms, u)
        return (scale * u).astype(u.dtype)

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        expect_plain(updates, "scale_by_shape")
        return _per_leaf(one, updates, dimension_numbers), state

    return primitive(empty_init, update_fn, counted=False)


def _broadcast_labels(labels: Any, tree: Any) -> Any:
    """Labels (a tree, prefix of ``tree``) broadcast to every leaf of ``tree``."""
    return jax.tree.map(lambda label, sub: tree_map(lambda _: label, sub), labels, tree)


def partition(
    transforms: Mapping[Any, optax.GradientTransformation],
    param_labels: Any | Callable[[Any], Any],
) -> Primitive:
    """Runs ``transforms[label]`` on the leaves labelled ``label``, one step counter for all.

    As ``optax.partition``: ``param_labels`` is a tree (prefix of the params) of labels or a
    function of the params (called on the updates in ``update``). Each transform sees the
    tree with the other leaves masked to ``None`` (an empty subtree, like optax's
    ``MaskedNode``), so its state holds only its own leaves. The state is ``{label: state}``.
    """
    transforms = dict(transforms)

    def labels_of(tree):
        labels = param_labels(tree) if callable(param_labels) else param_labels
        labels = _broadcast_labels(labels, tree)
        unknown = set(jax.tree.leaves(labels)) - set(transforms)
        if unknown:
            raise ValueError(f"partition: labels {sorted(map(str, unknown))} have no transform; "
                             f"transforms are given for {sorted(map(str, transforms))}")
        return labels

    def mask(tree, labels, label):
        if tree is None:
            return None
        return jax.tree.map(lambda lab, x: x if lab == label else None, labels, tree)

    counted = any(isinstance(t, Primitive) and t.counted for t in transforms.values())

    def step_init(params):
        labels = labels_of(params)
        return {k: (t.step_init if isinstance(t, Primitive) else t.init)(mask(params, labels, k))
                for k, t in transforms.items()}

    def step_update(updates, state, params, count, **extra):
        expect_plain(updates, "partition")
        labels = labels_of(updates)
        outs, new_state = {}, {}
        for k, t in transforms.items():
            u, p = mask(updates, labels, k), mask(params, labels, k)
            if isinstance(t, Primitive):
                outs[k], new_state[k] = t.step_update(u, state[k], p, count, **extra)
            else:
                update = optax.with_extra_args_support(t).update
                outs[k], new_state[k] = update(u, state[k], p, **extra)
        merged = jax.tree.map(lambda lab, *o: o[list(transforms).index(lab)], labels,
                              *outs.values())
        return merged, new_state

    return primitive(step_init, step_update, counted=counted)


def _concrete_int(x: Any) -> int | None:
    """A Python int for a concrete integer (also a 0-d integer array), else None."""
    if isinstance(x, (bool, jax.core.Tracer)):
        return None
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (np.ndarray, jax.Array)) and x.shape == () and np.issubdtype(
            x.dtype, np.integer):
        return int(x)
    return None


def _check_ns(ns_coeffs: Any, ns_steps: Any) -> Coeffs | tuple[Coeffs, ...]:
    """Validates Newton–Schulz coefficients (a triple, a sequence of triples, or a preset
    name) and the number of steps; returns the coefficients as Python floats."""
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in NS_COEFFS:
            raise _checks.unknown_name("ns_coeffs preset", ns_coeffs, NS_COEFFS)
        ns_coeffs = NS_COEFFS[ns_coeffs]
    table = np.asarray(ns_coeffs, dtype=np.float64)
    if table.ndim not in (1, 2) or table.shape[-1] != 3 or table.size == 0:
        raise ValueError(f"ns_coeffs must be a triple (a, b, c) or a sequence of triples, "
                         f"shape (3,) or (n, 3); got shape {table.shape}")
    steps = _concrete_int(ns_steps)
    if steps is None and not isinstance(ns_steps, jax.core.Tracer):
        raise TypeError(f"ns_steps must be an int, got {type(ns_steps).__name__} {ns_steps!r}")
    if steps is not None and steps < 1:
        raise ValueError(f"ns_steps must be an int >= 1, got {steps}")
    if table.ndim == 2:
        if steps is not None and table.shape[0] > steps:
            raise ValueError(f"ns_coeffs has {table.shape[0]} rows, more than ns_steps={steps}; "
                             "one row of coefficients is used per step")
        return tuple(tuple(float(v) for v in row) for row in table)
    return tuple(float(v) for v in table)


# ------------------------------------------------------------------------------------------
# Muon
# ------------------------------------------------------------------------------------------


def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs: Coeffs | Sequence[Coeffs] | str = NS_COEFFS["standard"],
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: Preconditioning = "frobenius",
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: float = 0.0,
    adam_learning_rate: ScalarOrSchedule | None = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: float | None = None,
) -> Primitive:
    r"""Muon, MomentUm Orthogonalized by Newton–Schulz (Jordan et al. 2024), optax's arguments.

    For a matrix parameter W (by default every 2-D leaf; ``muon_weight_dimension_numbers``
    picks others — a tree or function of ``MuonDimensionNumbers``, ``None`` marking an Adam
    leaf):

    .. math::
       M_t = β M_{t-1} + (1-β) G_t,\quad
       \hat M_t = β\frac{M_t}{1-β^{t+1}} + (1-β)\frac{G_t}{1-β^t}\ \text{(Nesterov; else }
       M_t/(1-β^t)),\\
       O_t = \mathrm{NS}(\hat M_t) ≈ UV^\top,\quad
       u_t = -η_t\big(s\,O_t + λ W\big),\quad s = \sqrt{\max(1, \mathrm{fan_{out}/fan_{in}})}

    (``adaptive``: :math:`O_t ← \langle \hat M_t, O_t\rangle O_t`; ``consistent_rms=r``:
    :math:`s = r\sqrt{\max(\mathrm{fan_{in}}, \mathrm{fan_{out}})}`). Every other leaf is
    trained by AdamW(``adam_learning_rate`` or η, ``adam_b1``, ``adam_b2``, ``eps``,
    ``adam_eps_root``, ``adam_weight_decay``, Nesterov as ``nesterov``).

    Composition: ``partition`` of ``chain(ema("mu", β), orthogonalize("mu"), scale_by_shape,
    decoupled_weight_decay, scale_by_learning_rate)`` and :func:`optlab.adamw`, with one step
    counter. State: M (1 × matrix params) and Adam's m, v (2 × the others), as optax. The two
    momenta use different β, so they are two ``"mu"`` entries, as in optax.

    References: Jordan et al., *Muon: An optimizer for hidden layers in neural networks*
    (2024, kellerjordan.github.io/posts/muon); Bernstein & Newhouse, *Old Optimizer, New
    Norm* (arXiv:2409.20325); Liu et al., *Muon is Scalable for LLM Training*
    (arXiv:2502.16982).
    """
    _check_args(learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    _checks.check_decay("beta", beta, allow_schedule=False)
    _checks.check_decay("adam_b1", adam_b1, allow_schedule=False)
    _checks.check_decay("adam_b2", adam_b2, allow_schedule=False)
    _checks.check_nonnegative("adam_eps_root", adam_eps_root)
    _checks.check_nonnegative("adam_weight_decay", adam_weight_decay, allow_schedule=True)
    if adam_learning_rate is not None:
        _checks.check_learning_rate(adam_learning_rate, "adam_learning_rate")
    coeffs = _check_ns(ns_coeffs, ns_steps)
    _checks.check_choice("preconditioning", preconditioning, PRECONDITIONINGS)
    user_dims = muon_weight_dimension_numbers

    def labels(tree):
        if user_dims is None:
            return jax.tree.map(lambda x: "muon" if np.ndim(x) == 2 else "adam", tree)
        dims = user_dims(tree) if callable(user_dims) else user_dims
        return jax.tree.map(
            lambda d, sub: jax.tree.map(lambda _: "adam" if d is None else "muon", sub),
            dims, tree, is_leaf=lambda v: v is None or isinstance(v, MuonDimensionNumbers))

    return partition({
        "muon": chain(
            ema("mu", beta, debias=True, nesterov=nesterov, dtype=mu_dtype),
            orthogonalize("mu", coeffs, ns_steps, preconditioning=preconditioning, eps=eps,
                          adaptive=adaptive, dimension_numbers=user_dims),
            scale_by_shape(user_dims, consistent_rms),
            decoupled_weight_decay(weight_decay, weight_decay_mask),
            scale_by_learning_rate(learning_rate),
        ),
        "adam": adamw(learning_rate if adam_learning_rate is None else adam_learning_rate,
                      adam_b1, adam_b2, eps, adam_eps_root, mu_dtype, adam_weight_decay,
                      nesterov=nesterov),
    }, labels)
