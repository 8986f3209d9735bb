r"""K-FAC's primitives: the Kronecker factors (accumulator), their damped inverses refreshed
every k steps (accumulator), and the preconditioned step (combiner).

Per layer with kernel and bias stacked as :math:`\bar W = [W; b]` (d_a × d_g, flax's
``(in, out)`` layout; a convolution's kernel flattened to :math:`(k_1⋯k_n C) × d_{out}`):

* :func:`kfac_factors` — EMAs of :math:`A = E[\bar a\bar a^\top]` and :math:`G = E[δδ^\top]`
  from the statistics of :func:`optlab.fisher.statistics` passed as
  ``update(..., kfac_stats=stats)``, with decay :math:`ρ_t = \min(ρ, 1 − 1/t)` (Martens &
  Grosse 2015 §5: the first step takes the batch estimate), and of a diagonal Fisher D of
  the other parameters (statistics ``"A"``, ``"G"``, ``"D"``);
* :func:`kfac_inverses` — :math:`(A + π\sqrt λ I)^{-1}` and :math:`(G + \sqrt λ/π\, I)^{-1}`,
  factored Tikhonov damping with :math:`π = \sqrt{(\mathrm{tr}A/d_a)/(\mathrm{tr}G/d_g)}`
  (§6.3; or π = 1), recomputed every ``every`` steps and kept in the state;
* :func:`kfac_precondition` — :math:`U = (A + π\sqrt λ I)^{-1}\, ∇\bar W\, (G + \sqrt λ/π\,
  I)^{-1}` (the paper's :math:`(G+⋯)^{-1}∇W(A+⋯)^{-1}` for its ``(out, in)`` layout), and
  :math:`u = g/(D + λ)` for every other parameter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from optlab import _checks
from optlab.fisher.capture import FISHERS, Statistics, param_names
from optlab.kronecker import _check_int
from optlab.stream import GRAD, Primitive, as_stream, empty_init, primitive, tree_inner

__all__ = [
    "KFACFactorsState",
    "KFACInversesState",
    "damped_inverses",
    "kfac_factors",
    "kfac_inverses",
    "kfac_precondition",
    "requested_fisher",
]

_HIGHEST = jax.lax.Precision.HIGHEST


# ------------------------------------------------------------------------------------------
# Which leaves form a layer
# ------------------------------------------------------------------------------------------


class _Layer(NamedTuple):
    kernel: str
    bias: str | None
    d_a: int
    d_g: int


def _layout(tree: Any, layers: Collection[str] | None) -> tuple[dict[str, _Layer], list[str]]:
    """K-FAC layers of a parameter tree and the other (diagonal) leaves.

    A layer is a leaf named ``kernel`` of rank ≥ 2 (``nnx.Linear``, ``nnx.Conv``), with the
    sibling ``bias`` of shape (d_out,) when there is one; ``layers`` restricts them to the
    given layer names (the kernel's path without ``.kernel``).
    """
    shapes = dict(zip(param_names(tree), (jnp.shape(x) for x in jax.tree.leaves(tree)),
                      strict=True))
    found = {}
    for name, shape in shapes.items():
        prefix, _, last = name.rpartition(".")
        if last != "kernel" or len(shape) < 2 or (layers is not None and prefix not in layers):
            continue
        bias = f"{prefix}.bias" if prefix else "bias"
        has_bias = shapes.get(bias) == (shape[-1],)
        found[prefix] = _Layer(name, bias if has_bias else None,
                               math.prod(shape[:-1]) + has_bias, shape[-1])
    if layers is not None and (missing := sorted(set(layers) - set(found))):
        raise ValueError(f"K-FAC: layers {missing} have no kernel of rank ≥ 2 among the "
                         f"params (kernels: {sorted(n for n in shapes if n.endswith('kernel'))})")
    used = {n for layer in found.values() for n in (layer.kernel, layer.bias) if n}
    return found, [n for n in shapes if n not in used]


def _factor_dtype(x: Any) -> Any:
    return jnp.promote_types(x.dtype, jnp.float32)


# ------------------------------------------------------------------------------------------
# Accumulator: the factors
# ------------------------------------------------------------------------------------------


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KFACFactorsState:
    """The EMAs of K-FAC's factors, per layer ``(A, G)``, and of the diagonal Fisher of the
    other parameters; ``fisher`` (static) tells a training step which statistics to supply."""

    factors: dict[str, tuple[jax.Array, jax.Array]]
    diagonal: dict[str, jax.Array]
    fisher: str = dataclasses.field(default="true", metadata={"static": True})


def requested_fisher(opt_state: Any) -> str | None:
    """The ``fisher`` of the K-FAC factors in an optimizer state, or None when the optimizer
    has none (how ``optlab.train`` recognises K-FAC)."""
    nodes = jax.tree.leaves(opt_state, is_leaf=lambda n: isinstance(n, KFACFactorsState))
    return next((n.fisher for n in nodes if isinstance(n, KFACFactorsState)), None)


def _batch_factors(s: Any) -> tuple[jax.Array, jax.Array]:
    """KFC's per-batch Ω = Σ_t E[ā āᵀ] and Γ = E[δ δᵀ]/T (expectations over the B examples,
    a sum over the S label draws)."""
    b, t = s.a.shape[0], s.a.shape[1]
    a = jnp.einsum("bti,btj->ij", s.a, s.a, precision=_HIGHEST) / b
    g = jnp.einsum("sbti,sbtj->ij", s.g, s.g, precision=_HIGHEST) / (b * t)
    return a, g


def _require_stats(stats: Any, who: str) -> Statistics:
    if stats is None:
        raise ValueError(
            f"{who} needs the layers' statistics at every step: call update(grads, state, "
            "params, kfac_stats=optlab.fisher.statistics(model, x, y, key=key)) (optlab.train "
            "supplies them)")
    return stats


def kfac_factors(
    decay: float = 0.95,
    *,
    fisher: str = "true",
    layers: Collection[str] | None = None,
    names: tuple[str, str, str] = ("A", "G", "D"),
) -> Primitive:
    r"""Accumulator of K-FAC's factors (Martens & Grosse 2015; Grosse & Martens 2016):

    .. math:: A_t = ρ_t A_{t-1} + (1-ρ_t)\hat A,\quad G_t = ρ_t G_{t-1} + (1-ρ_t)\hat G,\quad
       D_t = ρ_t D_{t-1} + (1-ρ_t)\hat D,\qquad ρ_t = \min(ρ, 1 - 1/t)

    with :math:`\hat A = \frac1B Σ_{i,t}\bar a\bar a^\top`, :math:`\hat G = \frac1{BT}
    Σ δδ^\top` and :math:`\hat D` the diagonal estimate, all from ``update(...,
    kfac_stats=stats)`` (:func:`optlab.fisher.statistics`). Adds the statistics ``names``
    (dicts: layer → A, layer → G, parameter → D) to the stream. ``fisher`` is not used here:
    it is stored (statically) in the state, so a training step knows which statistics to
    compute. ``layers``: as in :func:`optlab.fisher.kfac`.
    """
    _checks.check_number("decay", decay, low=0.0, high=1.0)
    _checks.check_choice("fisher", fisher, FISHERS)

    def init_fn(params):
        found, rest = _layout(params, layers)
        leaves = dict(zip(param_names(params), jax.tree.leaves(params), strict=True))

        def zeros(d, name):
            return jnp.zeros((d, d), _factor_dtype(leaves[name]))

        factors = {n: (zeros(ly.d_a, ly.kernel), zeros(ly.d_g, ly.kernel))
                   for n, ly in found.items()}
        diagonal = {n: jnp.zeros(leaves[n].shape, _factor_dtype(leaves[n])) for n in rest}
        return KFACFactorsState(factors, diagonal, fisher)

    def update_fn(updates, state, params, count, *, kfac_stats=None, **extra):
        del params, extra
        stream = as_stream(updates, "kfac_factors")
        stats = _require_stats(kfac_stats, "kfac_factors")
        found, rest = _layout(stream[GRAD], layers)
        rho = jnp.minimum(decay, 1.0 - 1.0 / (count + 1).astype(jnp.float32))
        factors = {}
        for name in found:
            if name not in stats.layers:
                raise ValueError(
                    f"kfac_factors: no statistics for layer {name!r} (captured: "
                    f"{sorted(stats.layers)}); statistics() captures nnx.Linear and nnx.Conv "
                    "only: restrict K-FAC with layers=optlab.fisher.layer_names(model)")
            new = _batch_factors(stats.layers[name])
            for old, x in zip(state.factors[name], new, strict=True):
                if old.shape != x.shape:
                    raise ValueError(f"kfac_factors: layer {name!r} has a factor of shape "
                                     f"{old.shape}, its statistics give {x.shape}")
            factors[name] = tuple((rho * old + (1 - rho) * x).astype(old.dtype)
                                  for old, x in zip(state.factors[name], new, strict=True))
        diagonal = {n: (rho * state.diagonal[n] + (1 - rho) * stats.diagonal[n]
                        ).astype(state.diagonal[n].dtype) for n in rest}
        a_name, g_name, d_name = names
        stream = (stream.add(a_name, {n: f[0] for n, f in factors.items()})
                  .add(g_name, {n: f[1] for n, f in factors.items()})
                  .add(d_name, diagonal))
        return stream, KFACFactorsState(factors, diagonal, state.fisher)

    return primitive(init_fn, update_fn, counted=True)


# ------------------------------------------------------------------------------------------
# Accumulator: damped inverses, refreshed every k steps
# ------------------------------------------------------------------------------------------


class KFACInversesState(NamedTuple):
    """Per layer, the damped inverses :math:`(A + π\\sqrt λ I)^{-1}` and
    :math:`(G + \\sqrt λ/π I)^{-1}` computed at the last refresh."""

    a_inv: dict[str, jax.Array]
    g_inv: dict[str, jax.Array]


def _spd_inverse(m: jax.Array) -> jax.Array:
    """Inverse of a symmetric positive-definite matrix (Cholesky)."""
    factor = jax.scipy.linalg.cho_factor(m, lower=True)
    return jax.scipy.linalg.cho_solve(factor, jnp.eye(m.shape[0], dtype=m.dtype))


def damped_inverses(a: jax.Array, g: jax.Array, damping: Any, trace_norm: bool = True
                    ) -> tuple[jax.Array, jax.Array]:
    r"""Factored Tikhonov damping (Martens & Grosse 2015 §6.3):
    :math:`((A + π\sqrt λ I)^{-1}, (G + \sqrt λ/π\, I)^{-1})` with
    :math:`π = \sqrt{(\mathrm{tr}A/d_a)/(\mathrm{tr}G/d_g)}` (π = 1 when ``trace_norm`` is
    False or a trace is 0)."""
    root = jnp.sqrt(jnp.asarray(damping, a.dtype))
    pi = jnp.ones((), a.dtype)
    if trace_norm:
        ta, tg = jnp.trace(a) / a.shape[0], jnp.trace(g) / g.shape[0]
        ok = (ta > 0) & (tg > 0)
        pi = jnp.where(ok, jnp.sqrt(jnp.where(ok, ta / jnp.where(ok, tg, 1.0), 1.0)), 1.0)
    eye_a, eye_g = jnp.eye(a.shape[0], dtype=a.dtype), jnp.eye(g.shape[0], dtype=g.dtype)
    return _spd_inverse(a + pi * root * eye_a), _spd_inverse(g + root / pi * eye_g)


def kfac_inverses(
    damping: float = 1e-3,
    *,
    every: int = 10,
    trace_norm: bool = True,
    layers: Collection[str] | None = None,
    factors: tuple[str, str] = ("A", "G"),
    names: tuple[str, str] = ("A_inv", "G_inv"),
) -> Primitive:
    r"""Accumulator of the damped inverses of the factors (:func:`damped_inverses`),
    recomputed at steps t with (t − 1) mod ``every`` = 0 (the first included) inside
    ``lax.cond`` and kept in the state in between; adds them to the stream as ``names``.
    ``layers`` must be those of :func:`kfac_factors`."""
    _checks.check_positive("damping", damping)
    _check_int("every", every, 1)  # lets a traced value (a hyperparameter grid) through

    def init_fn(params):
        found, _ = _layout(params, layers)
        leaves = dict(zip(param_names(params), jax.tree.leaves(params), strict=True))

        def eye(d, name):
            return jnp.eye(d, dtype=_factor_dtype(leaves[name]))

        return KFACInversesState({n: eye(ly.d_a, ly.kernel) for n, ly in found.items()},
                                 {n: eye(ly.d_g, ly.kernel) for n, ly in found.items()})

    def update_fn(updates, state, params, count, **extra):
        del params, extra
        stream = as_stream(updates, "kfac_inverses")
        a, g = stream[factors[0]], stream[factors[1]]

        def refresh(_):
            pairs = {n: damped_inverses(a[n], g[n], damping, trace_norm) for n in a}
            return KFACInversesState({n: p[0] for n, p in pairs.items()},
                                     {n: p[1] for n, p in pairs.items()})

        new = jax.lax.cond(count % every == 0, refresh, lambda _: state, None)
        return stream.add(names[0], new.a_inv).add(names[1], new.g_inv), new

    return primitive(init_fn, update_fn, counted=True)


# ------------------------------------------------------------------------------------------
# Combiner
# ------------------------------------------------------------------------------------------


def _precondition_layer(layer: _Layer, grads: dict[str, jax.Array], a_inv: jax.Array,
                        g_inv: jax.Array) -> dict[str, jax.Array]:
    """:math:`A^{-1} [∇W; ∇b] G^{-1}`, split back into kernel and bias."""
    kernel = grads[layer.kernel]
    w = kernel.reshape(-1, layer.d_g).astype(a_inv.dtype)
    if layer.bias is not None:
        w = jnp.concatenate([w, grads[layer.bias].astype(a_inv.dtype)[None]], axis=0)
    u = jnp.matmul(jnp.matmul(a_inv, w, precision=_HIGHEST), g_inv, precision=_HIGHEST)
    out = {layer.kernel: u[: w.shape[0] - (layer.bias is not None)].reshape(kernel.shape)
           .astype(kernel.dtype)}
    if layer.bias is not None:
        out[layer.bias] = u[-1].astype(grads[layer.bias].dtype)
    return out


def _clip_norm(u: Any, g: Any, max_norm: Any) -> Any:
    """u · min(1, c/√⟨u, g⟩): caps the F̂-norm √(uᵀF̂u) = √(gᵀF̂⁻¹g) of the step at c."""
    inner = tree_inner(u, g)
    scale = jnp.where(inner > max_norm**2, max_norm / jnp.sqrt(jnp.maximum(inner, 1e-30)), 1.0)
    return jax.tree.map(lambda x: (scale * x).astype(x.dtype), u)


def kfac_precondition(
    damping: float = 1e-3,
    *,
    max_norm: float | None = None,
    inverses: tuple[str, str] = ("A_inv", "G_inv"),
    diagonal: str = "D",
) -> Primitive:
    r"""K-FAC's combiner: per layer of the statistics ``inverses``,

    .. math:: [U_W; u_b] = (A + π\sqrt λ I)^{-1}\,[∇W; ∇b]\,(G + \sqrt λ/π\, I)^{-1}

    and :math:`u = g/(D + λ)` for every other parameter (its diagonal Fisher, statistic
    ``diagonal``). With ``max_norm`` c, the whole step is scaled by
    :math:`\min(1, c/\sqrt{⟨u, g⟩})`, so that its norm in the approximate Fisher,
    :math:`\sqrt{u^\top\hat F u} = \sqrt{g^\top \hat F^{-1} g}`, is at most c (the "KL
    clipping" of Ba et al. 2017, without the learning rate: the KL divergence of a step of
    size η is about η²c²/2). Returns the ascent direction
    (:func:`optlab.scale_by_learning_rate` follows)."""
    _checks.check_positive("damping", damping)
    if max_norm is not None:
        _checks.check_positive("max_norm", max_norm)

    def update_fn(updates, state, params, count, **extra):
        del params, count, extra
        stream = as_stream(updates, "kfac_precondition")
        grads = stream[GRAD]
        a_inv, g_inv, d = stream[inverses[0]], stream[inverses[1]], stream[diagonal]
        found, rest = _layout(grads, list(a_inv))
        names = param_names(grads)
        leaves = dict(zip(names, jax.tree.leaves(grads), strict=True))
        out = {}
        for name, layer in found.items():
            out.update(_precondition_layer(layer, leaves, a_inv[name], g_inv[name]))
        for name in rest:
            g = leaves[name]
            out[name] = (g / (d[name] + damping)).astype(g.dtype)
        u = jax.tree.structure(grads).unflatten([out[n] for n in names])
        return (u if max_norm is None else _clip_norm(u, grads, max_norm)), state

    return primitive(empty_init, update_fn, counted=False)
