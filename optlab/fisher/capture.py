r"""The statistics K-FAC reads, captured from a Flax NNX model in a training step.

For every ``nnx.Linear`` and ``nnx.Conv`` layer ℓ of a model (its *taps*), one extra forward
and backward pass records

* the layer's inputs :math:`\bar a`, in homogeneous coordinates (a 1 appended when the layer
  has a bias, so that :math:`[W; b]` is one matrix): for a convolution, the patches
  :math:`⟦a⟧` that the kernel sees at each output location (Grosse & Martens 2016, KFC);
* the gradients :math:`δ = ∂ℓ_i/∂s` of each example's loss with respect to the layer's
  outputs s (pre-activations), for labels drawn from the model's predictive distribution
  (the true Fisher, Martens & Grosse 2015 §5), the data's labels (the empirical Fisher), or
  every label weighted by its probability (the exact expectation, for checks).

How the taps work: the model is copied (``nnx.split`` / ``nnx.merge``; the caller's model,
BatchNorm statistics included, is never changed), the copy's Linear/Conv instances are given a
subclass whose ``__call__`` records its input and adds a zero *perturbation* to its output,
and the loss is differentiated with respect to the perturbations (the ``perturb`` idea of
Flax, without having to edit the model's code). A layer called several times gets one
perturbation per call; the calls are pooled as extra locations.

Shapes (B examples, T locations per example — output pixels of a convolution, the positions
of a Linear applied to a sequence, calls of a shared layer — and S label draws):
``a``: (B, T, d_in [+1]); ``g``: (S, B, T, d_out). The factors are then
:math:`A = \frac1B Σ_{i,t} \bar a_{it}\bar a_{it}^\top` and
:math:`G = \frac1{BT} Σ_{s,i,t} δ^s_{it}δ^{s\top}_{it}` (KFC's Ω and Γ).

Parameters outside the taps get a diagonal Fisher estimate
:math:`\hat F_{jj} = Σ_s B\,\bar g_j^{s\,2}`, with :math:`\bar g^s` the batch mean of the
sampled-label gradients: unbiased for the true Fisher (those gradients have mean zero under
the model), an over-estimate by :math:`B\,(E g_j)^2` for the empirical one.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn.linear import canonicalize_padding

from optlab import _checks

__all__ = [
    "FISHERS",
    "LOSSES",
    "LayerStatistics",
    "Statistics",
    "layer_names",
    "param_names",
    "statistics",
]

Fisher = Literal["true", "empirical", "exact"]
Loss = Literal["softmax_cross_entropy", "squared_error"]
FISHERS = ("true", "empirical", "exact")
LOSSES = ("softmax_cross_entropy", "squared_error")


class LayerStatistics(NamedTuple):
    """One layer's samples: inputs ``a`` (B, T, d_in [+1]) in homogeneous coordinates and
    output gradients ``g`` (S, B, T, d_out) of the per-example losses."""

    a: jax.Array
    g: jax.Array


class Statistics(NamedTuple):
    """What :func:`statistics` returns and K-FAC's ``update(..., kfac_stats=...)`` reads.

    ``layers``: layer name (module path joined by ``"."``) → :class:`LayerStatistics`;
    ``diagonal``: parameter name (as :func:`param_names`) → diagonal Fisher estimate.
    """

    layers: dict[str, LayerStatistics]
    diagonal: dict[str, jax.Array]


# ------------------------------------------------------------------------------------------
# Names: module paths and parameter paths as dotted strings
# ------------------------------------------------------------------------------------------


def _key_name(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def param_names(tree: Any) -> list[str]:
    """Dotted names of the leaves of a parameter tree (``nnx.State``, a dict, ...), in leaf
    order: ``"layers.0.kernel"``; an ``nnx.Variable``'s ``value`` attribute is left out."""
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = [_key_name(k) for k in path]
        if parts and isinstance(path[-1], jax.tree_util.GetAttrKey) and parts[-1] == "value":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _module_name(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def _supported(module: Any) -> bool:
    """Linear, and Conv without feature groups, input dilation or a mask (whose patches are
    not those of one dense matrix product)."""
    if isinstance(module, nnx.Linear):
        return True
    if isinstance(module, nnx.Conv):
        d = module.input_dilation
        plain = d is None or (all(v == 1 for v in d) if isinstance(d, tuple | list) else d == 1)
        return module.feature_group_count == 1 and module.mask is None and plain
    return False


def layer_names(model: nnx.Module) -> list[str]:
    """Names of the layers of ``model`` that K-FAC preconditions (its nnx.Linear and
    supported nnx.Conv layers), e.g. ``["head", "layers.0", "layers.1"]``."""
    return sorted(_module_name(p) for p, m in nnx.iter_modules(model) if _supported(m))


# ------------------------------------------------------------------------------------------
# Taps
# ------------------------------------------------------------------------------------------


class _Recorder:
    """Collects, per tapped layer and call, the inputs (as rows) and the outputs, and adds
    the call's perturbation (when given) to the output."""

    def __init__(self, names: dict[int, str], perturbations: dict[str, list] | None):
        self.names = names
        self.perturbations = perturbations
        self.inputs: dict[str, list[jax.Array]] = {n: [] for n in names.values()}
        self.outputs: dict[str, list[jax.Array]] = {n: [] for n in names.values()}

    def __call__(self, layer: nnx.Module, x: jax.Array, y: jax.Array) -> jax.Array:
        name = self.names.get(id(layer))
        if name is None:
            return y
        i = len(self.outputs[name])
        self.inputs[name].append(jax.lax.stop_gradient(_rows(layer, x)))
        if self.perturbations is not None:
            y = y + self.perturbations[name][i]
        self.outputs[name].append(y)
        return y


_RECORDER: contextvars.ContextVar[_Recorder | None] = contextvars.ContextVar(
    "optlab_fisher_recorder", default=None)
_TAPPED: dict[type, type] = {}


def _tapped_class(cls: type) -> type:
    """A subclass of ``cls`` whose call reports input and output to the active recorder."""
    if cls not in _TAPPED:
        def call(self, inputs, *args, **kwargs):
            y = cls.__call__(self, inputs, *args, **kwargs)
            recorder = _RECORDER.get()
            return y if recorder is None else recorder(self, inputs, y)

        _TAPPED[cls] = type(cls)(cls.__name__, (cls,), {"__call__": call,
                                                         "__module__": cls.__module__,
                                                         "__qualname__": cls.__qualname__})
    return _TAPPED[cls]


def _tap(model: nnx.Module) -> dict[int, str]:
    """Gives the supported layers of ``model`` (a private copy) the tapped class; returns
    ``id(layer) -> name``."""
    names = {}
    for path, m in nnx.iter_modules(model):
        if _supported(m):
            if type(m) not in _TAPPED.values():
                m.__class__ = _tapped_class(type(m))
            names[id(m)] = _module_name(path)
    return names


def _with_ones(rows: jax.Array, bias: bool) -> jax.Array:
    if not bias:
        return rows
    return jnp.concatenate([rows, jnp.ones((*rows.shape[:-1], 1), rows.dtype)], axis=-1)


def _rows(layer: nnx.Module, x: jax.Array) -> jax.Array:
    """The layer's input as (B, T, d) rows that multiply the kernel reshaped to (d, d_out)."""
    if isinstance(layer, nnx.Conv):
        rows = _conv_patches(layer, x)
    else:
        x = x.reshape(1, 1, -1) if x.ndim == 1 else x
        rows = x.reshape(x.shape[0], -1, x.shape[-1])
    rows = rows.astype(jnp.promote_types(rows.dtype, jnp.float32))
    return _with_ones(rows, layer.bias is not None)


def _conv_patches(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    """KFC's expansion ⟦a⟧ of a convolution's input: (B, T, k₁⋯k_n·C), ordered as the kernel
    (k₁, …, k_n, C, d_out) flattened, so that ``patches @ kernel.reshape(-1, d_out)`` is the
    convolution. Mirrors ``nnx.Conv.__call__`` (batch axes, CIRCULAR / REFLECT / CAUSAL)."""
    ks = tuple(conv.kernel_size)
    n = len(ks)

    def per_axis(v: Any) -> tuple[int, ...]:
        v = 1 if v is None else v
        return (v,) * n if isinstance(v, int) else tuple(v)

    batch = x.ndim - (n + 1)
    x = x.reshape(1, *x.shape) if batch == 0 else x.reshape(-1, *x.shape[batch:])
    strides, dilation = per_axis(conv.strides), per_axis(conv.kernel_dilation)
    padding = canonicalize_padding(conv.padding, n)
    if padding in ("CIRCULAR", "REFLECT"):
        dilated = [(k - 1) * d + 1 for k, d in zip(ks, dilation, strict=True)]
        pads = [(0, 0), *[((k - 1) // 2, k // 2) for k in dilated], (0, 0)]
        x = jnp.pad(x, pads, mode={"CIRCULAR": "wrap", "REFLECT": "reflect"}[padding])
        padding = "VALID"
    elif padding == "CAUSAL":
        x = jnp.pad(x, [(0, 0), (dilation[0] * (ks[0] - 1), 0), (0, 0)])
        padding = "VALID"
    if n > 3:
        raise ValueError(f"K-FAC supports convolutions of rank ≤ 3, got kernel size {ks}")
    spatial = "DHW"[-n:]
    dn = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")
    p = jax.lax.conv_general_dilated_patches(
        x, ks, strides, padding, rhs_dilation=dilation, dimension_numbers=dn,
        precision=jax.lax.Precision.HIGHEST)
    c = x.shape[-1]
    p = p.reshape(*p.shape[:-1], c, math.prod(ks))  # channel-major → (…, C, k₁⋯k_n)
    p = jnp.swapaxes(p, -1, -2)  # → (…, k₁⋯k_n, C), the kernel's order
    return p.reshape(p.shape[0], -1, math.prod(ks) * c)


# ------------------------------------------------------------------------------------------
# Label draws
# ------------------------------------------------------------------------------------------


def _cotangents(out: jax.Array, y: Any, key: Any, fisher: str, loss: str) -> jax.Array:
    r"""Gradients of the per-example losses w.r.t. the model's outputs, (S, *out.shape).

    Softmax cross-entropy: :math:`p − e_y` with y the label (empirical), a draw from
    :math:`p` (true), or every class c weighted by :math:`\sqrt{p_c}` (exact). Squared error
    :math:`½\lVert f−y\rVert^2` (unit Gaussian): :math:`f − y`, a standard normal draw (true),
    or the unit vectors (exact: :math:`E[εε^\top] = I`).
    """
    out = jax.lax.stop_gradient(out).astype(jnp.promote_types(out.dtype, jnp.float32))
    k = out.shape[-1]
    if loss == "softmax_cross_entropy":
        p = jax.nn.softmax(out, axis=-1)
        if fisher == "exact":
            eye = jnp.eye(k, dtype=p.dtype)[:, *([None] * (out.ndim - 1))]  # (K, 1.., K)
            return jnp.sqrt(jnp.moveaxis(p, -1, 0))[..., None] * (p[None] - eye)
        if fisher == "true":
            y = jax.random.categorical(key, out, axis=-1)
        return (p - jax.nn.one_hot(y, k, dtype=p.dtype))[None]
    if fisher == "exact":
        eye = jnp.eye(k, dtype=out.dtype)[:, *([None] * (out.ndim - 1))]
        return jnp.broadcast_to(eye, (k, *out.shape))
    if fisher == "true":
        return jax.random.normal(key, out.shape, out.dtype)[None]
    return (out - jnp.asarray(y, out.dtype))[None]


# ------------------------------------------------------------------------------------------
# The helper
# ------------------------------------------------------------------------------------------


def _check(y: Any, key: Any, fisher: str, loss: str) -> None:
    _checks.check_choice("fisher", fisher, FISHERS)
    _checks.check_choice("loss", loss, LOSSES)
    if fisher == "true" and key is None:
        raise ValueError("fisher='true' samples labels from the model: pass key= (a PRNG key)")
    if fisher == "empirical" and y is None:
        raise ValueError("fisher='empirical' uses the data's labels: pass y")


def statistics(
    model: nnx.Module,
    x: Any,
    y: Any = None,
    *,
    key: jax.Array | None = None,
    fisher: Fisher = "true",
    loss: Loss = "softmax_cross_entropy",
    apply: Callable[[nnx.Module, Any], jax.Array] | None = None,
) -> Statistics:
    r"""K-FAC's statistics of a batch: per tapped layer its inputs and output gradients, and a
    diagonal Fisher estimate for the other parameters (module docstring).

    One forward pass of a copy of ``model`` (``model`` itself, BatchNorm statistics and RNG
    state included, is left unchanged) and one backward pass per label draw (``S`` = 1, or
    the number of outputs K for ``fisher="exact"``). Call it inside the jitted step with the
    model of the step, and pass the result to K-FAC: ``tx.update(grads, state, params,
    kfac_stats=stats)``.

    Args:
      model: a Flax NNX model; its ``nnx.Linear`` / ``nnx.Conv`` layers are captured
        (:func:`layer_names`).
      x: the batch (leading axis: examples).
      y: the labels (integer classes, or targets for ``"squared_error"``); needed for the
        empirical Fisher only.
      key: PRNG key for the label draws of the true Fisher.
      fisher: ``"true"`` (labels drawn from the model's predictive distribution; Martens &
        Grosse 2015), ``"empirical"`` (the data's labels), or ``"exact"`` (every label
        weighted by its probability: the exact expectation over labels, K backward passes).
      loss: the model's negative log-likelihood: ``"softmax_cross_entropy"`` (categorical
        over the last axis of the outputs) or ``"squared_error"`` (:math:`½\lVert f−y\rVert^2`,
        a unit Gaussian).
      apply: ``apply(model, x) -> outputs``; default ``model(x)``.
    """
    _check(y, key, fisher, loss)
    apply = apply or (lambda m, inputs: m(inputs))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def run(p: Any, perturbations: dict | None) -> tuple[jax.Array, _Recorder]:
        copy = nnx.merge(graphdef, p, rest, copy=True)
        recorder = _Recorder(_tap(copy), perturbations)
        token = _RECORDER.set(recorder)
        try:
            out = apply(copy, x)
        finally:
            _RECORDER.reset(token)
        return out, recorder

    shapes = jax.eval_shape(lambda p: run(p, None)[1].outputs, params)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

    def forward(p, perturbations):
        out, recorder = run(p, perturbations)
        return out, recorder.inputs

    out, vjp, inputs = jax.vjp(forward, params, zeros, has_aux=True)
    cotangents = _cotangents(out, y, key, fisher, loss).astype(out.dtype)
    param_grads, output_grads = jax.vmap(vjp)(cotangents)
    batch = out.shape[0] if out.ndim > 1 else 1
    layers = {name: _layer(inputs[name], output_grads[name])
              for name in inputs if inputs[name]}
    leaves = jax.tree.leaves(param_grads)
    diagonal = {n: jnp.sum(jnp.square(g.astype(jnp.promote_types(g.dtype, jnp.float32))),
                           axis=0) / batch
                for n, g in zip(param_names(params), leaves, strict=True)}
    return Statistics(layers=layers, diagonal=diagonal)


def _layer(inputs: list[jax.Array], grads: list[jax.Array]) -> LayerStatistics:
    """Pools the calls of one layer as extra locations: a (B, T, d_a), g (S, B, T, d_g)."""
    a = jnp.concatenate(inputs, axis=1)
    b = a.shape[0]
    gs = [g.reshape(g.shape[0], b, -1, g.shape[-1]) for g in grads]
    g = jnp.concatenate(gs, axis=2)
    return LayerStatistics(a=a, g=g.astype(jnp.promote_types(g.dtype, jnp.float32)))
