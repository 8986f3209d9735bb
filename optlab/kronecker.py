r"""Kronecker-factored preconditioning primitives, from which Shampoo and SOAP are chained.

For a gradient tensor G of rank k, axis i has the *Kronecker factor*
:math:`L_i = \sum G_{(i)} G_{(i)}^\top` (or an EMA of it), where :math:`G_{(i)}` is G unfolded
along axis i (for a matrix, :math:`L_0 = GG^\top`, :math:`L_1 = G^\top G`). Shampoo preconditions
with inverse roots of the factors; SOAP runs Adam in their eigenbasis. The vocabulary:

* :func:`kronecker_factors` (accumulator): the factors ``GG``, one ``d × d`` matrix per
  preconditioned axis;
* :func:`inverse_root` (accumulator): :math:`P_i = (L_i + εI)^{-1/(2k)}`, recomputed every
  ``every`` steps inside ``lax.cond`` and kept in the state (type-stable);
* :func:`eigenbasis` (accumulator): eigenvectors :math:`Q_i` of the factors, refreshed every
  ``every`` steps by one power-iteration step and QR (or ``eigh``);
* :func:`rotate` (accumulator): :math:`x' = x ×_i Q_i^\top`, a statistic in the eigenbasis;
* combiners :func:`kronecker_graft` (Shampoo's preconditioned step with a grafted norm) and
  :func:`rotated_ratio` (Adam's ratio in the eigenbasis, rotated back).

Which axes are preconditioned: every axis of size ≤ ``max_precond_dim`` of a leaf of rank ≥ 2
(rank 1 too with ``precondition_1d``); other axes are left as they are (identity factor).
Tensors of rank > 2 are *not* reshaped: each axis has its own factor (the tensor case of
Gupta et al. 2018; SOAP's reference code without ``merge_dims``). Scalars, and vectors unless
``precondition_1d``, have no factor and fall back to the diagonal method (the graft for
Shampoo, plain Adam for SOAP).

Factors, roots and bases are stored in at least float32 (in the params' dtype if wider).
"""


from collections.abc import Callable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from optlab import _checks
from optlab.stream import (
    GRAD,
    Primitive,
    as_stream,
    empty_init,
    increment,
    per_dtype,
    primitive,
)

__all__ = [
    "eigenbasis",
    "inverse_root",
    "kronecker_factors",
    "kronecker_graft",
    "rotate",
    "rotated_ratio",
    "skip_first",
]

Factors = tuple[jax.Array | None, ...]


# ------------------------------------------------------------------------------------------
# Per-leaf linear algebra
# ------------------------------------------------------------------------------------------


def factor_axes(shape: tuple[int, ...], max_precond_dim: int, precondition_1d: bool
                ) -> tuple[bool, ...]:
    """Which axes of a leaf of ``shape`` get a Kronecker factor."""
    if isinstance(max_precond_dim, jax.core.Tracer):
        raise TypeError("max_precond_dim decides the shapes of the state, so it cannot be "
                        "traced; with optax.inject_hyperparams pass "
                        "static_args=('max_precond_dim',)")
    if len(shape) == 0 or (len(shape) == 1 and not precondition_1d):
        return (False,) * len(shape)
    return tuple(d <= max_precond_dim for d in shape)


def _factor_dtype(dtype: Any) -> Any:
    return jnp.promote_types(dtype, jnp.float32)


def _outer(g: jax.Array, axis: int) -> jax.Array:
    """:math:`G_{(i)} G_{(i)}^\\top`: G contracted with itself over every axis but ``axis``."""
    others = [a for a in range(g.ndim) if a != axis]
    return jnp.tensordot(g, g, axes=(others, others))


def _along_axes(x: jax.Array, mats: Factors, transpose: bool) -> jax.Array:
    """:math:`x ×_i M_i^\\top` (``transpose``) or :math:`x ×_i M_i` over every axis with a
    matrix: each step contracts the leading axis and appends the result as the last axis, so
    after all axes the order is restored."""
    for m in mats:
        if m is None:
            x = jnp.moveaxis(x, 0, -1)
        else:
            x = jnp.tensordot(x, m.astype(x.dtype), axes=([0], [0 if transpose else 1]))
    return x


def _inverse_root(a: jax.Array, power: float, eps: Any) -> jax.Array:
    """:math:`(A + εI)^{-p}` of a symmetric PSD matrix by eigendecomposition (eigenvalues
    below 0 from rounding are clipped to 0 first)."""
    w, v = jnp.linalg.eigh(a)
    w = jnp.maximum(w, 0.0) + eps
    return (v * w ** (-power)) @ v.T


def _eigh_basis(a: jax.Array) -> jax.Array:
    """Eigenvectors of a symmetric matrix, columns by decreasing eigenvalue."""
    return jnp.linalg.eigh(a)[1][:, ::-1]


def _in_previous_slots(a: jax.Array, q: jax.Array, new: Callable[[jax.Array], jax.Array]
                       ) -> jax.Array:
    """``new(Q_sorted)``, a basis whose columns follow the previous columns' Rayleigh
    quotients :math:`q_j^\top A q_j` (descending), put back in those columns' slots, so
    second moments stored per column (SOAP's V) stay aligned without being permuted."""
    order = jnp.argsort(-jnp.einsum("ij,ik,kj->j", q, a, q))
    return jnp.zeros_like(q).at[:, order].set(new(q[:, order]))


def _eigh_basis_aligned(a: jax.Array, q: jax.Array) -> jax.Array:
    """Eigenvectors of ``a`` (by decreasing eigenvalue) in the slots of the previous basis
    ``q`` (see :func:`_in_previous_slots`)."""
    return _in_previous_slots(a, q, lambda _: _eigh_basis(a))


def _qr_basis(a: jax.Array, q: jax.Array) -> jax.Array:
    """One power-iteration step with QR from the current basis (SOAP reference code).

    Columns are ordered by their Rayleigh quotients :math:`q_j^\\top A q_j` (descending)
    before :math:`\\mathrm{QR}(AQ)`, so the Gram–Schmidt order follows the eigenvalues; the
    result is put back in the columns' previous slots, so second moments stored per column
    (SOAP's V) stay aligned without being permuted.
    """
    return _in_previous_slots(a, q, lambda sorted_q: jnp.linalg.qr(a @ sorted_q)[0])


def _leaves(tree: Any) -> tuple[list, Any]:
    return jax.tree.flatten(tree)


def _per_leaf_state(treedef: Any, state_tree: Any) -> list:
    """The per-leaf entries (tuples of factors) of a state tree shaped like the params."""
    return treedef.flatten_up_to(state_tree)


def _identity_factors(p: Any, axes: tuple[bool, ...]) -> Factors:
    dtype = _factor_dtype(p.dtype)
    return tuple(jnp.eye(d, dtype=dtype) if on else None
                 for d, on in zip(p.shape, axes, strict=True))


# ------------------------------------------------------------------------------------------
# Accumulators
# ------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, low: int) -> None:
    """An int >= ``low``; a 0-d integer array (``optax.inject_hyperparams`` makes every numeric
    argument one) is checked when concrete and let through when traced."""
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, (np.ndarray, jax.Array)) and value.shape == () and np.issubdtype(
            value.dtype, np.integer):
        value = int(value)
    _checks.check_int(name, value, low=low)


def _check_factor_args(max_precond_dim: int, every: int | None = None) -> None:
    _check_int("max_precond_dim", max_precond_dim, 1)
    if every is not None:
        _check_int("precondition_frequency", every, 1)


def kronecker_factors(
    name: str = "GG",
    decay: float = 0.999,
    *,
    max_precond_dim: int = 10000,
    precondition_1d: bool = False,
    source: str = GRAD,
) -> Primitive:
    r"""Per-axis Kronecker factors of a statistic x (default the gradient):

    .. math:: L_{i,t} = β L_{i,t-1} + (1-β)\, x_{(i)} x_{(i)}^\top
       \quad(β = 1:\ L_{i,t} = L_{i,t-1} + x_{(i)} x_{(i)}^\top,\ \text{Gupta et al. 2018})

    for each axis i chosen by ``max_precond_dim`` / ``precondition_1d`` (module docstring).
    The state ``{name: tree}`` holds, per leaf, a tuple with one ``d × d`` matrix per axis
    (``None`` for an axis without a factor).
    """
    _checks.check_number("decay", decay, low=0.0, high=1.0)
    _check_factor_args(max_precond_dim)
    concrete = _checks._concrete_scalar(decay)
    is_sum = None if concrete is None else concrete == 1.0

    def axes_of(p):
        return factor_axes(tuple(p.shape), max_precond_dim, precondition_1d)

    def init_fn(params):
        leaves, treedef = _leaves(params)
        zeros = [tuple(None if f is None else jnp.zeros_like(f) for f in
                       _identity_factors(p, axes_of(p))) for p in leaves]
        return {name: treedef.unflatten(zeros)}

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream = as_stream(updates, "kronecker_factors")
        leaves, treedef = _leaves(stream[source])
        old = _per_leaf_state(treedef, state[name])
        new = []
        for g, factors in zip(leaves, old, strict=True):
            row = []
            for axis, f in enumerate(factors):
                if f is None:
                    row.append(None)
                    continue
                outer = _outer(g.astype(f.dtype), axis)
                if is_sum is None:  # a traced decay (inject_hyperparams): decide at run time
                    row.append(jnp.where(decay == 1, f + outer,
                                         decay * f + (1 - decay) * outer).astype(f.dtype))
                else:
                    row.append(f + outer if is_sum else decay * f + (1 - decay) * outer)
            new.append(tuple(row))
        tree = treedef.unflatten(new)
        return stream.add(name, tree), {name: tree}

    return primitive(init_fn, update_fn, counted=False)


def _identities(params: Any, max_precond_dim: int, precondition_1d: bool) -> Any:
    """Per leaf, a tuple of identity matrices on the preconditioned axes (``None`` else)."""
    leaves, treedef = _leaves(params)
    return treedef.unflatten([
        _identity_factors(p, factor_axes(tuple(p.shape), max_precond_dim, precondition_1d))
        for p in leaves])


def _map_factors(fn: Callable[[jax.Array, int], jax.Array], tree: Any, reference: Any) -> Any:
    """Applies ``fn(matrix, rank of the leaf)`` to every factor of a per-leaf-tuples tree."""
    leaves, treedef = _leaves(reference)
    return treedef.unflatten([
        tuple(None if f is None else fn(f, p.ndim) for f in fs)
        for p, fs in zip(leaves, _per_leaf_state(treedef, tree), strict=True)])


def inverse_root(
    factors: str = "GG",
    name: str = "P",
    *,
    every: int = 1,
    eps: float = 1e-6,
    exponent: float | None = None,
    max_precond_dim: int = 10000,
    precondition_1d: bool = False,
) -> Primitive:
    r"""Inverse roots of the Kronecker factors ``factors``, :math:`P_i = (L_i + εI)^{-1/e}`.

    Computed (by ``eigh``) at steps t with (t − 1) mod ``every`` = 0, the first step
    included, and kept in the state ``{name: tree}`` in between. ``exponent`` e defaults to
    2k for a leaf of rank k (Gupta et al. 2018: :math:`L^{-1/4}` and :math:`R^{-1/4}` for a
    matrix, :math:`L^{-1/2}` for a preconditioned vector). The refresh runs inside
    ``lax.cond``: the state never changes type and the eigendecompositions execute on refresh
    steps only. ``max_precond_dim`` / ``precondition_1d`` must be those of the factors.
    """
    _check_int("every", every, 1)
    _checks.check_positive("eps", eps)  # (L + εI)^(-1/e) of a rank-deficient L needs ε > 0
    _check_factor_args(max_precond_dim)
    if exponent is not None:
        _checks.check_positive("exponent", exponent)

    def init_fn(params):
        return {name: _identities(params, max_precond_dim, precondition_1d)}

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "inverse_root")
        grads = stream[GRAD]

        def refresh(gg):
            def root(f, rank):
                return _inverse_root(f, 1.0 / (exponent or 2 * rank), eps)

            return _map_factors(root, gg, grads)

        p = jax.lax.cond(count % every == 0, refresh, lambda _: state[name], stream[factors])
        return stream.add(name, p), {name: p}

    return primitive(init_fn, update_fn, counted=True)


def eigenbasis(
    factors: str = "GG",
    name: str = "Q",
    *,
    every: int = 10,
    method: Literal["qr", "eigh"] = "qr",
    max_precond_dim: int = 10000,
    precondition_1d: bool = False,
) -> Primitive:
    r"""Eigenbases :math:`Q_i` of the Kronecker factors (SOAP, Vyas et al. 2024).

    Emits the basis to use at this step and stores the next one: at the first step
    :math:`Q_i` = ``eigh`` of the first factors (columns by decreasing eigenvalue); at the end
    of every step t > 1 with (t − 1) mod ``every`` = 0 (every ``every`` steps after the first)
    the stored basis is refreshed from the current factors, by one step of power iteration
    and QR, :math:`Q ← \mathrm{QR}(L_i Q)` (``method="qr"``, the paper's reference code), or
    by ``eigh``. The refresh runs inside
    ``lax.switch``, so the state keeps its type. ``max_precond_dim`` / ``precondition_1d``
    must be those of the factors.
    """
    _check_int("every", every, 1)
    _checks.check_choice("method", method, ["qr", "eigh"])
    _check_factor_args(max_precond_dim)

    def init_fn(params):
        return {name: _identities(params, max_precond_dim, precondition_1d)}

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "eigenbasis")
        grads, gg, old = stream[GRAD], stream[factors], state[name]

        def keep(gg, q):
            return q

        def by_eigh(gg, q):
            return _map_factors(lambda f, _: _eigh_basis(f), gg, grads)

        def from_previous(basis):
            def refresh(gg, q):
                treedef = jax.tree.structure(grads)
                return treedef.unflatten([
                    tuple(None if f is None else basis(f, b) for f, b in zip(fs, bs, strict=True))
                    for fs, bs in zip(_per_leaf_state(treedef, gg), _per_leaf_state(treedef, q),
                                      strict=True)])

            return refresh

        refresh = from_previous(_qr_basis if method == "qr" else _eigh_basis_aligned)
        first = count == 0
        due = count % every == 0
        branch = jnp.where(first, 1, jnp.where(due, 2, 0))
        new = jax.lax.switch(branch, [keep, by_eigh, refresh], gg, old)
        # The first step uses the basis it has just computed; later steps the stored one.
        used = jax.lax.cond(first, lambda: new, lambda: old)
        return stream.add(name, used), {name: new}

    return primitive(init_fn, update_fn, counted=True)


def rotate(source: str = GRAD, basis: str = "Q", name: str = "g_rot") -> Primitive:
    r"""Adds statistic ``source`` expressed in the eigenbasis: :math:`x' = x ×_i Q_i^\top`
    (for a matrix, :math:`Q_L^\top X Q_R`)."""

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream = as_stream(updates, "rotate")
        x = stream[source]
        leaves, treedef = _leaves(x)
        qs = _per_leaf_state(treedef, stream[basis])
        out = [_along_axes(v, q, transpose=True) for v, q in zip(leaves, qs, strict=True)]
        return stream.add(name, treedef.unflatten(out)), state

    return primitive(empty_init, update_fn, counted=False)


def skip_first(source: str = GRAD, name: str = "g_skip") -> Primitive:
    """Adds statistic ``source`` as ``name`` at every step but the first, where it is zero.

    SOAP's reference code spends its first step on the eigenbasis alone: the first gradient
    initialises the Kronecker factors and their eigenvectors, and reaches neither the moments
    nor the parameters. (In its own eigenbasis the first gradient is diagonal, so its
    off-diagonal rotated entries are pure rounding error, which Adam's ratio would blow up
    to O(1) in float32.)
    """

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "skip_first")
        keep = count > 0
        x = jax.tree.map(lambda v: jnp.where(keep, v, jnp.zeros_like(v)), stream[source])
        return stream.add(name, x), state

    return primitive(empty_init, update_fn, counted=True)


# ------------------------------------------------------------------------------------------
# Combiners
# ------------------------------------------------------------------------------------------


def kronecker_graft(
    preconditioners: str = "P",
    *,
    source: str = GRAD,
    graft_denominator: str | None = None,
    graft_eps: float = 1e-8,
    graft: bool = True,
) -> Primitive:
    r"""Shampoo's preconditioned step with a grafted per-layer norm (Anil et al. 2020).

    Per leaf with factors: :math:`S = x ×_i P_i` (:math:`P_L X P_R` for a matrix); the graft
    :math:`A = x/(\sqrt{d} + ε)` with d = statistic ``graft_denominator`` (AdaGrad's sum or
    Adam's second moment), or :math:`A = x` without one (SGD grafting); the update is
    :math:`u = \lVert A\rVert_F\, S / \lVert S\rVert_F` (``graft=False``: :math:`u = S`).
    Leaves without factors take the graft's step :math:`u = A`, the diagonal fallback.
    """
    _checks.check_nonnegative("graft_eps", graft_eps)

    def one(x, ps, d):
        a = x if d is None else x / (jnp.sqrt(d) + graft_eps)
        if all(p is None for p in ps):
            return a.astype(x.dtype)
        s = _along_axes(x, ps, transpose=False)
        if graft:
            s_norm = jnp.linalg.norm(s)
            scale = jnp.where(s_norm > 0, jnp.linalg.norm(a) / jnp.where(s_norm > 0, s_norm, 1),
                              0.0)
            s = scale * s
        return s.astype(x.dtype)

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream = as_stream(updates, "kronecker_graft")
        leaves, treedef = _leaves(stream[source])
        ps = _per_leaf_state(treedef, stream[preconditioners])
        ds = (jax.tree.leaves(stream[graft_denominator]) if graft_denominator is not None
              else [None] * len(leaves))
        out = [one(x, p, d) for x, p, d in zip(leaves, ps, ds, strict=True)]
        return treedef.unflatten(out), state

    return primitive(empty_init, update_fn, counted=False)


def rotated_ratio(
    numerator: str = "mu",
    denominator: str = "nu",
    basis: str = "Q",
    *,
    eps: float = 1e-8,
    b1: float = 0.95,
    b2: float = 0.95,
    skipped_steps: int = 0,
) -> Primitive:
    r"""Adam's ratio in the eigenbasis, rotated back (SOAP, Vyas et al. 2024, Algorithm 3):

    .. math:: u = \frac{\sqrt{1-β_2^s}}{1-β_1^s}\;
       \Big(\frac{M ×_i Q_i^\top}{\sqrt{V} + ε}\Big) ×_i Q_i

    with M the first moment in the original space (rotated here with the current basis, so
    it follows every basis refresh) and V the second moment of the rotated gradients. The bias
    corrections and ε (outside the root, on raw V) are placed as in the reference code; s is
    the step less ``skipped_steps`` (steps whose gradient the moments did not see), and the
    update is 0 while s = 0.
    """
    _checks.check_nonnegative("eps", eps)
    _checks.check_decay("b1", b1, allow_schedule=False)
    _checks.check_decay("b2", b2, allow_schedule=False)

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "rotated_ratio")
        t = (increment(count) - skipped_steps).astype(jnp.result_type(float))
        safe = jnp.maximum(t, 1.0)
        step = per_dtype(lambda _: jnp.where(t > 0, jnp.sqrt(1 - b2**safe) / (1 - b1**safe),
                                             0.0))
        leaves, treedef = _leaves(stream[numerator])
        qs = _per_leaf_state(treedef, stream[basis])
        vs = jax.tree.leaves(stream[denominator])

        def one(m, q, v):
            n = _along_axes(m, q, transpose=True) / (jnp.sqrt(v) + eps)
            return (step(m) * _along_axes(n, q, transpose=False)).astype(m.dtype)

        out = [one(m, q, v) for m, q, v in zip(leaves, qs, vs, strict=True)]
        return treedef.unflatten(out), state

    return primitive(empty_init, update_fn, counted=True)
