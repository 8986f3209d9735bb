"""Helpers of experiments/mnist1d_baselines.py: PyTorch's default initialisation.

(One model, the CNN, throughout: each new model shape costs seconds of first-use compilation
of the initialisers.)"""

from __future__ import annotations

import sys

import numpy as np
from flax import nnx

from optlab import reproduce

reproduce.load("mnist1d_baselines")
mb = sys.modules["optlab_experiments.mnist1d_baselines"]


def test_torch_init_bounds_and_spread():
    model = mb.build_model(nnx.Rngs(0), name="cnn1d", init="pytorch")
    for layer, fan_in in ((model.convs[0], 5 * 1), (model.convs[1], 3 * 25), (model.head, 125)):
        bound = 1 / np.sqrt(fan_in)
        for p in (np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])):
            assert np.all(np.abs(p) <= bound)
        k = np.asarray(layer.kernel[...])
        # U(−b, b) has standard deviation b/√3
        assert abs(k.std() - bound / np.sqrt(3)) < 0.15 * bound
        assert np.abs(np.asarray(layer.bias[...])).max() > 0  # biases are not zero


def test_flax_init_is_optlab_default():
    a = mb.build_model(nnx.Rngs(3), name="cnn1d", init="flax")
    b = mb.make_model("cnn1d", (40,), 10, rngs=nnx.Rngs(3))
    np.testing.assert_array_equal(np.asarray(a.head.kernel[...]), np.asarray(b.head.kernel[...]))
