"""Flax NNX classification models for optlab experiments.

Every model is built as ``Model(input_shape, num_classes, *, rngs, **options)`` with
``input_shape`` the per-example shape (``(40,)`` MNIST-1D, ``(8, 8, 1)`` digits, ``(28, 28, 1)``
MNIST, ``(32, 32, 3)`` CIFAR-10; images are channels-last), and provides

* ``model(x)``: logits ``(B, num_classes)`` for a batch ``x`` of shape ``(B, *input_shape)``;
* ``model.features(x)``: the penultimate activations ``(B, F)``, the input of the last dense
  layer ``model.head``, so that ``model(x) == model.head(model.features(x))`` (what
  :func:`optlab.lipschitz.penultimate_activations` uses).

No model draws random numbers when called (no dropout), so a training step is a pure function
of the model state and the batch. Models with batch normalization keep running statistics as
``nnx.BatchStat`` and start in training mode; ``model.train()`` / ``model.eval()`` switch
between batch statistics and running averages by setting the static attribute
``use_running_average``, so ``nnx.split`` after each gives two different graphdefs that share
one state.

Models (see ``MODELS``): ``logreg``, ``mlp``, ``cnn1d`` (the MNIST-1D baselines of
Greydanus 2020), ``convnet`` (the child network of Bello et al. 2017) and ``wrn`` (Wide ResNet,
Zagoruyko & Komodakis 2016). :func:`make_model` builds one by name.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from optlab import _checks

__all__ = [
    "CNN1D",
    "MLP",
    "MODELS",
    "ConvNet",
    "LogisticRegression",
    "WideResNet",
    "make_model",
    "model_options",
    "param_count",
]

# PyTorch's BatchNorm default (running = 0.9·running + 0.1·batch), used by the WRN reference
# code; flax's own default is 0.99.
_BN_MOMENTUM = 0.9
# He et al. (2015) normal init with fan_out, as the WRN reference's MSRinit.
_he_normal_fan_out = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


# ------------------------------------------------------------------------------------------
# Validation helpers
# ------------------------------------------------------------------------------------------


def _check_input_shape(input_shape: Any, ranks: Sequence[int], expected: str) -> tuple[int, ...]:
    """Returns ``input_shape`` as a tuple of positive ints, or raises naming ``input_shape``."""
    if isinstance(input_shape, (int, str)) or not isinstance(input_shape, Sequence):
        raise TypeError(
            f"input_shape must be a tuple of ints {expected}, got {input_shape!r}"
        )
    shape = tuple(int(d) if isinstance(d, np.integer) else d for d in input_shape)
    if len(shape) not in ranks:
        raise ValueError(
            f"input_shape must have {' or '.join(map(str, ranks))} dimension(s) {expected}, "
            f"got {shape!r}"
        )
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"input_shape must contain positive ints {expected}, got {shape!r}")
    return shape


def _check_sizes(name: str, value: Any) -> tuple[int, ...]:
    """A non-empty sequence of positive ints (layer widths)."""
    if isinstance(value, (int, str)) or not isinstance(value, Sequence) or len(value) == 0:
        raise TypeError(f"{name} must be a non-empty tuple of positive ints, got {value!r}")
    for v in value:
        _checks.check_int(name, v, low=1)
    return tuple(int(v) for v in value)


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def _as_batch(x: Any, input_shape: tuple[int, ...], model: str) -> jax.Array:
    """Checks that ``x`` is a batch ``(B, *input_shape)``; integer inputs become float32."""
    x = jnp.asarray(x)
    if x.shape[1:] != input_shape:
        raise ValueError(
            f"{model} was built for examples of shape {input_shape}, so it expects a batch of "
            f"shape (B, {', '.join(map(str, input_shape))}), got {x.shape}"
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output length of a convolution with symmetric padding (PyTorch/lax convention)."""
    return (size + 2 * pad - kernel) // stride + 1


def _batch_norm(num_features: int, momentum: float, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(num_features, use_running_average=False, momentum=momentum,
                         epsilon=1e-5, rngs=rngs)


class _Classifier(nnx.Module):
    """Base class: ``__call__(x) = head(features(x))``; subclasses define ``features``."""

    head: nnx.Linear

    def features(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.head(self.features(x))


# ------------------------------------------------------------------------------------------
# MNIST-1D baselines (Greydanus 2020)
# ------------------------------------------------------------------------------------------


class LogisticRegression(_Classifier):
    """Multinomial logistic regression: flatten → Linear(num_classes).

    ``features`` is the flattened input. The MNIST-1D "logistic regression" baseline
    (``LinearBase`` in greydanus/mnist1d ``notebooks/models.py``; 32 % test accuracy).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, *, rngs: nnx.Rngs):
        self.input_shape = _check_input_shape(input_shape, (1, 2, 3), "(per-example shape)")
        _checks.check_int("num_classes", num_classes, low=2)
        self.head = nnx.Linear(math.prod(self.input_shape), num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        x = _as_batch(x, self.input_shape, "logreg")
        return x.reshape(x.shape[0], -1)


class MLP(_Classifier):
    """Multi-layer perceptron: flatten → [Linear → ReLU] per hidden width → Linear(num_classes).

    With ``residual=True`` (default) a hidden layer whose input and output widths agree adds
    its input, ``h ← h + relu(W h + b)`` (the first hidden layer never does). The defaults,
    ``hidden=(100, 100), residual=True``, are the MNIST-1D paper's MLP (Greydanus 2020,
    arXiv 2011.14439; 68 % test accuracy), ``MLPBase`` in greydanus/mnist1d
    ``notebooks/models.py``: ``h = relu(linear1(x)); h = h + relu(linear2(h));
    linear3(h)``. ``residual=False`` gives a plain MLP.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        hidden: Sequence[int] = (100, 100),
        residual: bool = True,
    ):
        self.input_shape = _check_input_shape(input_shape, (1, 2, 3), "(per-example shape)")
        _checks.check_int("num_classes", num_classes, low=2)
        widths = _check_sizes("hidden", hidden)
        _check_bool("residual", residual)
        sizes = (math.prod(self.input_shape), *widths)
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in itertools.pairwise(sizes)]
        )
        self.skips = tuple(residual and i > 0 and sizes[i] == sizes[i + 1]
                           for i in range(len(widths)))
        self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        x = _as_batch(x, self.input_shape, "mlp")
        h = x.reshape(x.shape[0], -1)
        for layer, skip in zip(self.layers, self.skips, strict=True):
            a = jax.nn.relu(layer(h))
            h = h + a if skip else a
        return h


class CNN1D(_Classifier):
    """The MNIST-1D paper's CNN (Greydanus 2020, arXiv 2011.14439; 94 % test accuracy).

    Three 1-D convolutions with ``channels`` (25) filters, each with ReLU: kernel 5 / stride 2
    / padding 1, then kernel 3 / stride 2 / padding 1 twice; flatten → Linear(num_classes).
    On length-40 inputs the lengths are 40 → 19 → 10 → 5, so ``features`` has 125 entries.
    Source: ``ConvBase`` in greydanus/mnist1d ``notebooks/models.py`` (``linear_in=125``).
    Inputs ``(B, L)`` (``input_shape=(L,)``) get a channel axis; ``(L, C)`` are channels-last.
    Flattening is length-major here (channel-major in PyTorch), which only permutes the head.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        channels: int = 25,
    ):
        self.input_shape = _check_input_shape(input_shape, (1, 2), "(L,) or (L, C)")
        _checks.check_int("num_classes", num_classes, low=2)
        _checks.check_int("channels", channels, low=1)
        length = self.input_shape[0]
        in_channels = self.input_shape[1] if len(self.input_shape) == 2 else 1
        specs = ((in_channels, 5), (channels, 3), (channels, 3))  # (input channels, kernel)
        for _, kernel in specs:
            length = _conv_out(length, kernel, 2, 1)
            if length < 1:
                raise ValueError(
                    f"input_shape {self.input_shape} is too short for cnn1d's three stride-2 "
                    "convolutions; the length must be at least 3"
                )
        self.convs = nnx.List([
            nnx.Conv(c_in, channels, kernel, strides=2, padding=((1, 1),), rngs=rngs)
            for c_in, kernel in specs
        ])
        self.head = nnx.Linear(length * channels, num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        x = _as_batch(x, self.input_shape, "cnn1d")
        h = x.reshape(x.shape[0], self.input_shape[0], -1)  # (B, L, C)
        for conv in self.convs:
            h = jax.nn.relu(conv(h))
        return h.reshape(h.shape[0], -1)


# ------------------------------------------------------------------------------------------
# 2-D ConvNet (Bello et al. 2017)
# ------------------------------------------------------------------------------------------


class ConvNet(_Classifier):
    """Small 2-D ConvNet, the child network of Neural Optimizer Search (Bello et al. 2017).

    Per block: Conv 3×3 (``SAME``, no bias when followed by BN) → BatchNorm → ReLU →
    2×2 max-pool (stride 2); then flatten → Linear(num_classes). Defaults: two blocks of 32
    filters. From the paper (arXiv 1709.07417, quoted in the bkj/qnas reproduction
    ``qnas/nets/two_layer_net.py``): "a small two layer 3x3 ConvNet ... 32 filters with ReLU
    activations and batch normalization applied after each convolutional layer". Not in the
    paper, chosen here: the padding, the order conv → BN → ReLU, the max-pooling and the
    single dense layer on the flattened maps (32 × 8 × 8 = 2048 features for 32×32 inputs,
    32 × 7 × 7 for 28×28, 32 × 2 × 2 for 8×8). BatchNorm momentum 0.9 (PyTorch's default).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        channels: Sequence[int] = (32, 32),
        batch_norm: bool = True,
        pool: bool = True,
        bn_momentum: float = _BN_MOMENTUM,
    ):
        self.input_shape = _check_input_shape(input_shape, (3,), "(height, width, channels)")
        _checks.check_int("num_classes", num_classes, low=2)
        widths = _check_sizes("channels", channels)
        _check_bool("batch_norm", batch_norm)
        _check_bool("pool", pool)
        _checks.check_decay("bn_momentum", bn_momentum, allow_schedule=False)
        h, w, c = self.input_shape
        if pool and min(h, w) < 2 ** len(widths):
            raise ValueError(
                f"input_shape {self.input_shape} is too small for {len(widths)} 2×2 max-pools; "
                f"height and width must be at least {2 ** len(widths)} (or pass pool=False)"
            )
        self.pool = pool
        self.convs = nnx.List()
        self.norms = nnx.List()
        for c_in, c_out in zip((c, *widths[:-1]), widths, strict=True):
            self.convs.append(nnx.Conv(c_in, c_out, (3, 3), padding="SAME",
                                       use_bias=not batch_norm, rngs=rngs))
            if batch_norm:
                self.norms.append(_batch_norm(c_out, bn_momentum, rngs))
            if pool:
                h, w = h // 2, w // 2
        self.head = nnx.Linear(h * w * widths[-1], num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        h = _as_batch(x, self.input_shape, "convnet")
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if len(self.norms):
                h = self.norms[i](h)
            h = jax.nn.relu(h)
            if self.pool:
                h = nnx.max_pool(h, (2, 2), strides=(2, 2))
        return h.reshape(h.shape[0], -1)


# ------------------------------------------------------------------------------------------
# Wide ResNet (Zagoruyko & Komodakis 2016)
# ------------------------------------------------------------------------------------------


class _WideBlock(nnx.Module):
    """Pre-activation basic block: BN-ReLU-conv3×3(stride)-BN-ReLU-conv3×3, plus a shortcut.

    The shortcut is the identity, or a 1×1 conv (stride ``stride``) of the *pre-activated*
    input when the shape changes, as in the reference code.
    """

    def __init__(self, c_in: int, c_out: int, stride: int, momentum: float, rngs: nnx.Rngs):
        def conv(a: int, b: int, k: int, s: int, pad: int) -> nnx.Conv:
            return nnx.Conv(a, b, (k, k), strides=s, padding=((pad, pad),) * 2, use_bias=False,
                            kernel_init=_he_normal_fan_out, rngs=rngs)

        self.bn0 = _batch_norm(c_in, momentum, rngs)
        self.conv0 = conv(c_in, c_out, 3, stride, 1)
        self.bn1 = _batch_norm(c_out, momentum, rngs)
        self.conv1 = conv(c_out, c_out, 3, 1, 1)
        self.shortcut = conv(c_in, c_out, 1, stride, 0) if (c_in != c_out or stride != 1) else None

    def __call__(self, x: jax.Array) -> jax.Array:
        o = jax.nn.relu(self.bn0(x))
        z = self.conv1(jax.nn.relu(self.bn1(self.conv0(o))))
        return z + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(_Classifier):
    """Wide ResNet WRN-``depth``-``width`` (Zagoruyko & Komodakis 2016, arXiv 1605.07146).

    conv3×3(16) → 3 groups of n = (depth − 4)/6 pre-activation basic blocks with 16k, 32k, 64k
    channels (k = ``width``) and strides 1, 2, 2 → BN → ReLU → global average pool
    (= ``features``, 64k entries) → Linear(num_classes). Convolutions have no bias and He-normal
    (fan_out) init, as in the authors' code (szagoruyko/wide-residual-networks
    ``models/wide-resnet.lua``, ``pytorch/resnet.py``); 3×3 convs pad 1 on each side (PyTorch
    convention). BatchNorm momentum 0.9 (Torch's default). Defaults: WRN-16-4, 2,748,890
    parameters for 10 classes (paper: 2.7M). No dropout (the paper's optional dropout between
    the convolutions is left out so that calls stay deterministic).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        depth: int = 16,
        width: int = 4,
        bn_momentum: float = _BN_MOMENTUM,
    ):
        self.input_shape = _check_input_shape(input_shape, (3,), "(height, width, channels)")
        _checks.check_int("num_classes", num_classes, low=2)
        _checks.check_int("depth", depth, low=10)
        if (depth - 4) % 6:
            raise ValueError(
                f"depth must be 6n + 4 (10, 16, 22, 28, 40, ...) for a Wide ResNet, got {depth}"
            )
        _checks.check_int("width", width, low=1)
        _checks.check_decay("bn_momentum", bn_momentum, allow_schedule=False)
        n = (depth - 4) // 6
        widths = (16 * width, 32 * width, 64 * width)
        self.conv = nnx.Conv(self.input_shape[-1], 16, (3, 3), padding=((1, 1),) * 2,
                             use_bias=False, kernel_init=_he_normal_fan_out, rngs=rngs)
        blocks = []
        c_in = 16
        for c_out, stride in zip(widths, (1, 2, 2), strict=True):
            for i in range(n):
                blocks.append(_WideBlock(c_in, c_out, stride if i == 0 else 1, bn_momentum, rngs))
                c_in = c_out
        self.blocks = nnx.List(blocks)
        self.bn = _batch_norm(widths[-1], bn_momentum, rngs)
        self.head = nnx.Linear(widths[-1], num_classes, rngs=rngs)

    def features(self, x: jax.Array) -> jax.Array:
        h = self.conv(_as_batch(x, self.input_shape, "wrn"))
        for block in self.blocks:
            h = block(h)
        return jnp.mean(jax.nn.relu(self.bn(h)), axis=(1, 2))


# ------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------

class Autoencoder(nnx.Module):
    """Dense autoencoder (Hinton & Salakhutdinov 2006's shape; the classic K-FAC benchmark of
    Martens & Grosse 2015): ``sizes`` from input to output width, tanh hidden layers, a linear
    code (the narrowest hidden layer) and sigmoid outputs. Not a classifier, so not in
    :data:`MODELS`: trained by a reconstruction loss in one's own loop
    (``experiments/kfac.py``)."""

    def __init__(self, sizes: Sequence[int], *, rngs: nnx.Rngs):
        sizes = _check_sizes("sizes", sizes)
        if len(sizes) < 3:
            raise ValueError(f"sizes needs an input, at least one hidden and an output width, "
                             f"got {sizes}")
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
                                for a, b in itertools.pairwise(sizes)])
        self.code = int(np.argmin(sizes[1:-1]))

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last and i != self.code:
                h = jnp.tanh(h)
        return jax.nn.sigmoid(h)


MODELS: dict[str, tuple[type[nnx.Module], str]] = {
    "logreg": (LogisticRegression, "logistic regression: flatten → Linear"),
    "mlp": (MLP, "MNIST-1D MLP: 2 hidden ReLU layers of 100, the second residual"),
    "cnn1d": (CNN1D, "MNIST-1D CNN: 3 stride-2 Conv1d(25) + ReLU → Linear"),
    "convnet": (ConvNet, "Bello et al. child ConvNet: 2×[conv3×3(32)-BN-ReLU-maxpool] → Linear"),
    "wrn": (WideResNet, "Wide ResNet WRN-d-k (default WRN-16-4), pre-activation blocks"),
}


def model_options(name: str) -> dict[str, Any]:
    """The keyword options of model ``name`` and their defaults."""
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "rngs"}


def _lookup(name: str) -> type[nnx.Module]:
    if name not in MODELS:
        raise _checks.unknown_name("model", name, MODELS)
    return MODELS[name][0]


def make_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    rngs: nnx.Rngs | int | jax.Array,
    **options: Any,
) -> nnx.Module:
    """Builds model ``name`` (a key of ``MODELS``) with the given keyword ``options``.

    ``rngs`` may be an ``nnx.Rngs``, an int seed or a PRNG key. Raises ``ValueError`` for an
    unknown name and ``TypeError`` for an option the model does not take (both list the valid
    choices and suggest a close match).
    """
    cls = _lookup(name)
    valid = model_options(name)
    for key in options:
        if key not in valid:
            hint = _checks.closest(key, valid)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            raise TypeError(
                f"model {name!r} has no option {key!r}; its options are "
                f"{sorted(valid) or 'none'}{suggestion}"
            )
    if not isinstance(rngs, nnx.Rngs):
        rngs = nnx.Rngs(rngs)
    return cls(input_shape, num_classes, rngs=rngs, **options)


def param_count(model: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param`` entries; BatchNorm statistics excluded)."""
    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
