r"""Lipschitz adaptive learning rate, LipschitzLR (Yedida & Saha 2019, arXiv 1902.07399).

The learning rate is the inverse of a bound :math:`K` on the gradient of the loss with respect
to the weights of the *last* (dense) layer, recomputed from the activations that enter that
layer:

.. math::

    η_t = \min\!\Big(\frac{\mathrm{scale}}{K_t},\ η_{\max}\Big), \qquad
    K^{\mathrm{CE}}_t = \frac{k-1}{k\,m}\,K_z, \qquad
    K^{\mathrm{MSE}}_t = \frac{1}{m}\,K_z\,\max\lVert W\rVert_F,

with k classes, m the batch size, :math:`W` the last-layer kernel and :math:`K_z` a size of the
penultimate activations :math:`a^{[L-1]}` of the batch (see ``activation_norm``).

Sources, and what each one supports
-----------------------------------
* **Cross-entropy, (k−1)/(k·m)·K_z** — arXiv 1902.07399 v1 ("A novel adaptive learning rate
  scheduler for deep neural networks", Yedida & Saha), read from the authors' LaTeX source
  ``yrahul3910/adaptive-lr-dnn: paper/main.tex``. Its framework (eq. 6) writes
  :math:`\max|∂E/∂w^{[L]}| = \max|∂E/∂a^{[L]}|\cdot\max|∂a^{[L]}/∂z^{[L]}|\cdot K_z` with
  :math:`K_z = \max_j |a^{[L-1]}_j|`, and the softmax case (eq. mul:5) gives
  :math:`\frac{k-1}{km}K_z`; binary cross-entropy gives :math:`K_z/(2m)` (not implemented).
  The experiments section says m "must be set to the batch size".
* **How** :math:`K_z` **is measured** — the authors' own Keras callbacks
  (``yrahul3910/adaptive-lr-dnn: CIFAR10/SGD/DenseNet/Adaptive/cif.py``, and co-author
  T. Prashanth's SymNet code, ``tej-prash/GeneExpression``) take ``np.linalg.norm`` of the
  whole (batch × features) penultimate output, i.e. the Frobenius norm of the batch matrix,
  maximised over the epoch's mini-batches once per epoch, and add
  ``weight_decay · max_layer ‖W‖_F`` for L2 regularisation. Here K is recomputed at every
  step from the current batch only. The max over examples of the
  per-example norm, :math:`\max_i \lVert a_i\rVert_2` (the default here, as specified for
  optlab in ``REFERENCES.md``), lies between the paper's max-entry and the code's Frobenius
  norm: :math:`\max_{i,j}|a_{ij}| \le \max_i \lVert a_i\rVert \le \lVert A\rVert_F`.
* **MSE, (1/m)·K_z·max‖W‖** — taken from ``REFERENCES.md``, which records it from a
  third-party re-implementation; *unverified*. The v1 drafts read derive instead
  :math:`\frac1m (K_a - \lVert y\rVert) K_z` with :math:`K_a` a bound on the norm of the
  *outputs* :math:`a^{[L]}`; the final version (Yedida, Saha & Prashanth, "LipschitzLR",
  Applied Intelligence 2021) was not available, only its abstract.
* The paper's momentum/Adam variants keep an EMA of K as well; :func:`lipschitz_sgd` uses the
  current K with an EMA of the gradient (its Algorithm "Adaptive momentum" without the K EMA).

Caveats (checked numerically in ``tests/test_lipschitz.py``)
------------------------------------------------------------
The paper bounds the *gradient* (a Lipschitz constant of the loss, "weaker than assuming the
gradient ... Lipschitz continuous", its footnote), not the gradient's Lipschitz constant, so
:math:`1/K` carries no descent guarantee; and the :math:`1/m` makes :math:`K` smaller than
even the gradient bound by up to a factor m (the step grows linearly with the batch size).
On random softmax-regression problems :math:`1/K` was 5–70× the classical safe step
:math:`2/L` (:math:`L = \tfrac12 λ_{\max}(\tilde A^\top \tilde A/m)`, the smoothness constant,
:math:`\tilde A` the inputs with a column of ones), and full-batch gradient descent with it
increases the loss on non-separable data; on a small MLP, plain Lipschitz SGD made the loss
spike 15–60× before recovering; the MSE form diverged on plain linear regression. Use
``scale`` (< 1) or ``max_learning_rate`` to temper the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from optlab import _checks
from optlab.accumulators import ema
from optlab.combiners import select
from optlab.stream import chain, expect_plain, scalar_as, tree_map

LossName = Literal["cross_entropy", "mse"]
ActivationNorm = Literal["max_example", "frobenius", "max_entry"]

LOSSES = ("cross_entropy", "mse")
ACTIVATION_NORMS = ("max_example", "frobenius", "max_entry")

__all__ = [
    "ACTIVATION_NORMS",
    "LOSSES",
    "LipschitzState",
    "lipschitz_constant",
    "lipschitz_sgd",
    "penultimate_activations",
    "scale_by_lipschitz",
]


class LipschitzState(NamedTuple):
    """The learning rate used at the last update and the constant it came from (for logging).

    Both are float32 scalars, 0 before the first update.
    """

    learning_rate: jax.Array
    lipschitz_constant: jax.Array


def _check_loss(loss: Any, num_classes: Any) -> None:
    _checks.check_choice("loss", loss, LOSSES)
    if loss == "cross_entropy":
        if num_classes is None:
            raise ValueError("num_classes is required for loss='cross_entropy' (k ≥ 2 classes)")
        _checks.check_int("num_classes", num_classes, low=2)


def _activation_size(activations: Any, activation_norm: str) -> tuple[jax.Array, int]:
    """Returns (K_z, m) for activations of shape (m, ...); trailing axes are flattened."""
    a = jnp.asarray(activations)
    if a.ndim < 2 or a.shape[0] == 0:
        raise ValueError(
            "activations must have shape (batch, features...) with a non-empty batch, got "
            f"shape {a.shape}"
        )
    if not jnp.issubdtype(a.dtype, jnp.floating):
        a = a.astype(jnp.float32)
    a = a.astype(jnp.promote_types(a.dtype, jnp.float32)).reshape(a.shape[0], -1)
    if activation_norm == "max_example":
        size = jnp.max(jnp.linalg.norm(a, axis=1))
    elif activation_norm == "frobenius":
        size = jnp.linalg.norm(a)
    else:
        size = jnp.max(jnp.abs(a))
    return size, a.shape[0]


def _kernel_norm(kernel: Any) -> jax.Array:
    """max over the leaves of ``kernel`` of their Frobenius norm (one kernel or a tree)."""
    leaves = jax.tree.leaves(kernel)
    if not leaves:
        raise ValueError("last_layer_kernel is an empty tree; pass the last dense kernel W")
    norms = [jnp.linalg.norm(jnp.asarray(w, jnp.float32).reshape(-1)) for w in leaves]
    return jnp.max(jnp.stack(norms))


def lipschitz_constant(
    activations: jax.Array,
    *,
    loss: LossName = "cross_entropy",
    num_classes: int | None = None,
    last_layer_kernel: Any = None,
    activation_norm: ActivationNorm = "max_example",
) -> jax.Array:
    r"""The LipschitzLR bound K for one batch (Yedida & Saha 2019); the learning rate is 1/K.

    .. math::

        K^{\mathrm{CE}} = \frac{k-1}{k\,m} K_z, \qquad
        K^{\mathrm{MSE}} = \frac{1}{m} K_z \max\lVert W\rVert_F

    Args:
      activations: the input :math:`a^{[L-1]}` of the last dense layer for the batch, shape
        ``(m, ...)`` (trailing axes are flattened per example). For a single dense layer
        (softmax / linear regression) these are the inputs.
      loss: ``"cross_entropy"`` (softmax, k classes; paper eq. mul:5) or ``"mse"`` (the
        unverified re-implementation form, see the module docstring).
      num_classes: k ≥ 2, required for cross-entropy.
      last_layer_kernel: W, required for MSE; a single array or a tree of arrays, whose largest
        Frobenius norm is used (the authors' Keras code takes the max over all the model's
        weights, for its weight-decay term).
      activation_norm: how :math:`K_z` measures the batch: ``"max_example"``
        :math:`\max_i \lVert a_i\rVert_2` (default); ``"frobenius"`` :math:`\lVert A\rVert_F`
        (the authors' Keras code); ``"max_entry"`` :math:`\max_{i,j}|a_{ij}|` (the paper's
        eq. 6 read literally).

    Returns:
      K as a scalar of at least float32 precision (0 when the activations or W vanish).
    """
    _check_loss(loss, num_classes)
    _checks.check_choice("activation_norm", activation_norm, ACTIVATION_NORMS)
    size, m = _activation_size(activations, activation_norm)
    if loss == "cross_entropy":
        return (num_classes - 1) / (num_classes * m) * size
    if last_layer_kernel is None:
        raise ValueError("loss='mse' needs last_layer_kernel (the kernel W of the last layer)")
    return size * _kernel_norm(last_layer_kernel).astype(size.dtype) / m


def scale_by_lipschitz(
    loss: LossName = "cross_entropy",
    *,
    num_classes: int | None = None,
    max_learning_rate: float | None = None,
    scale: float = 1.0,
    activation_norm: ActivationNorm = "max_example",
) -> optax.GradientTransformationExtraArgs:
    r"""Scales updates by :math:`-η_t`, the LipschitzLR rate recomputed every step.

    .. math::

        η_t = \min\big(\mathrm{scale}/K_t,\ η_{\max}\big), \qquad u_t = -η_t\, g_t

    with :math:`K_t` = :func:`lipschitz_constant` of the activations passed to ``update`` as an
    extra keyword argument (Yedida & Saha 2019, arXiv 1902.07399; see the module docstring for
    the sources and caveats). Use it as the last transform of a chain; ``optax.chain``
    forwards extra arguments to it::

        tx = optax.chain(optax.clip_by_global_norm(1.0), scale_by_lipschitz(num_classes=10))
        updates, state = tx.update(grads, state, params, activations=a)

    ``update(updates, state, params=None, *, activations, last_layer_kernel=None, **extra)``:
    ``activations`` (shape ``(m, ...)``, gradients stopped) is required at every step;
    ``last_layer_kernel`` is required for ``loss="mse"``; other extra arguments are ignored.

    If :math:`K_t = 0` (all-zero activations, or a zero kernel for MSE) the step falls back to
    :math:`η_t = η_{\max}` when given, else to :math:`η_t = \mathrm{scale}` (the update is
    only multiplied by −scale), so a zero-initialised regression kernel still moves. A NaN
    :math:`K_t` propagates. The state keeps :math:`η_t` and :math:`K_t` (float32) for logging.

    Args:
      loss: ``"cross_entropy"`` or ``"mse"``.
      num_classes: k ≥ 2, required for cross-entropy.
      max_learning_rate: optional cap :math:`η_{\max} > 0` on the step size.
      scale: factor > 0 on :math:`1/K` (the paper uses 1).
      activation_norm: see :func:`lipschitz_constant`.
    """
    _check_loss(loss, num_classes)
    _checks.check_choice("activation_norm", activation_norm, ACTIVATION_NORMS)
    if max_learning_rate is not None:
        _checks.check_positive("max_learning_rate", max_learning_rate)
    _checks.check_positive("scale", scale)

    def init_fn(params):
        del params
        zero = jnp.zeros([], jnp.float32)
        return LipschitzState(learning_rate=zero, lipschitz_constant=zero)

    def update_fn(updates, state, params=None, *, activations=None, last_layer_kernel=None,
                  **extra):
        del params, extra
        expect_plain(updates, "scale_by_lipschitz")
        if activations is None:
            raise ValueError(
                "scale_by_lipschitz needs the activations entering the last dense layer at "
                "every step: call update(updates, state, params, activations=a) (see "
                "optlab.lipschitz.penultimate_activations)"
            )
        if loss == "mse" and last_layer_kernel is None:
            raise ValueError(
                "scale_by_lipschitz(loss='mse') needs the last-layer kernel at every step: call "
                "update(..., activations=a, last_layer_kernel=W)"
            )
        k_const = lipschitz_constant(
            jax.lax.stop_gradient(activations),
            loss=loss,
            num_classes=num_classes,
            last_layer_kernel=None if last_layer_kernel is None
            else jax.lax.stop_gradient(last_layer_kernel),
            activation_norm=activation_norm,
        )
        fallback = scale if max_learning_rate is None else max_learning_rate
        is_zero = k_const == 0
        lr = jnp.where(is_zero, fallback, scale / jnp.where(is_zero, 1.0, k_const))
        if max_learning_rate is not None:
            lr = jnp.minimum(lr, max_learning_rate)
        out = tree_map(lambda u: (scalar_as(-lr, u) * u).astype(u.dtype), updates)
        new_state = LipschitzState(
            learning_rate=lr.astype(jnp.float32),
            lipschitz_constant=jnp.asarray(k_const, jnp.float32),
        )
        return out, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lipschitz_sgd(
    num_classes: int | None,
    *,
    loss: LossName = "cross_entropy",
    momentum: float | None = None,
    max_learning_rate: float | None = None,
    scale: float = 1.0,
    activation_norm: ActivationNorm = "max_example",
) -> optax.GradientTransformationExtraArgs:
    r"""SGD with the LipschitzLR step :math:`η_t = \mathrm{scale}/K_t` (Yedida & Saha 2019;
    scale 1 is the paper's). ``activation_norm`` as in :func:`lipschitz_constant`:
    ``"frobenius"`` is the authors' code; the default, the largest per-example norm, gives a
    smaller K, so steps up to √m larger (m the batch size), which the ``lipschitz_lr``
    experiment found unstable on digits.

    :math:`u_t = -η_t g_t`; with ``momentum`` β, the paper's "adaptive momentum" form
    :math:`m_t = β m_{t-1} + (1-β) g_t`, :math:`u_t = -η_t m_t` (an EMA, so the step keeps the
    scale of :math:`η_t g_t`; the paper also averages K, which is not done here). Pass
    ``activations=`` (and ``last_layer_kernel=`` for MSE) to ``update``; ``num_classes`` may be
    None for MSE.
    """
    if momentum is not None:
        _checks.check_decay("momentum", momentum, allow_schedule=False)
    tail = scale_by_lipschitz(loss, num_classes=num_classes, max_learning_rate=max_learning_rate,
                              scale=scale, activation_norm=activation_norm)
    if momentum is None:
        return chain(tail)
    return chain(ema("mu", momentum), select("mu"), tail)


def _last_linear_index(layers: Any) -> int | None:
    for i in range(len(layers) - 1, -1, -1):
        if isinstance(layers[i], nnx.Linear):
            return i
    return None


def penultimate_activations(model: Any, x: jax.Array) -> jax.Array:
    """The input of the last dense layer of ``model`` on the batch ``x`` (for LipschitzLR).

    Conventions, tried in order:

    1. ``model.features(x)`` if the model has a callable ``features`` attribute: the model
       defines what enters its last dense layer (recommended for custom ``nnx.Module``\\ s).
    2. ``nnx.Sequential``: runs the layers before its last ``nnx.Linear`` (layers after it,
       such as a softmax, are skipped too).
    3. A plain function that is not an ``nnx.Module`` is called as ``model(x)``: a feature
       extractor supplied by the caller.

    Raises ``TypeError`` for anything else (e.g. a module without ``features``, whose last
    dense layer cannot be identified reliably) and for a ``Sequential`` with no ``nnx.Linear``.
    This is an extra forward pass in the model's current mode: in training mode dropout draws
    a fresh mask and ``nnx.BatchNorm`` updates its running statistics once more; for such
    models, return the features from the training forward pass instead.
    """
    features: Callable[[jax.Array], jax.Array] | None = getattr(model, "features", None)
    if callable(features):
        return features(x)
    if isinstance(model, nnx.Sequential):
        layers = list(model.layers)
        idx = _last_linear_index(layers)
        if idx is None:
            raise TypeError(
                "penultimate_activations: this nnx.Sequential has no nnx.Linear layer, so its "
                "last dense layer is unknown; give the model a features(x) method"
            )
        out = x
        for layer in layers[:idx]:
            out = layer(out)
        return out
    if callable(model) and not isinstance(model, nnx.Module):
        return model(x)
    raise TypeError(
        f"penultimate_activations: unsupported model {type(model).__name__}; expected an "
        "nnx.Module with a features(x) method returning the input of its last dense layer, an "
        "nnx.Sequential ending in an nnx.Linear (plus optional parameter-free layers), or a "
        "plain feature-extractor function"
    )
