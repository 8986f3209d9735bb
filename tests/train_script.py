"""A small training run used by tests/test_train.py in a subprocess (for kill / resume and
multi-device tests). Usage: python tests/train_script.py OUT.npz [checkpoint_dir|-] [epochs]

Writes the final parameters of every run and the history to OUT.npz.
"""

from __future__ import annotations

import sys

import jax
import numpy as np
from flax import nnx

import optlab
from optlab.tasks.datasets import Dataset
from optlab.train import train


def blobs(n: int = 600, dim: int = 16, classes: int = 4, seed: int = 0) -> Dataset:
    """Gaussian clusters: a quick, learnable classification problem."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 1.5
    y = rng.integers(0, classes, size=n).astype(np.int32)
    x = (centers[y] + rng.normal(size=(n, dim))).astype(np.float32)
    a, b = int(0.6 * n), int(0.8 * n)
    return Dataset("blobs", x[:a], y[:a], x[a:b], y[a:b], x[b:], y[b:], classes,
                   "Gaussian blobs")


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, dim: int = 16, hidden: int = 32, classes: int = 4):
        self.hidden = nnx.Linear(dim, hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, classes, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.hidden(x)))


def run(checkpoint_dir=None, epochs: int = 8, **kw):
    kw.setdefault("hyperparams", {"learning_rate": [1e-2, 1e-1]})
    kw.setdefault("seeds", 2)
    return train(blobs(), MLP, optlab.adam, epochs=epochs, batch_size=40,
                 checkpoint_dir=checkpoint_dir, **kw)


def flat_params(result) -> np.ndarray:
    leaves = jax.tree.leaves(result.state["params"])
    return np.concatenate([np.asarray(x).reshape(len(result.grid), -1) for x in leaves], 1)


if __name__ == "__main__":
    out = sys.argv[1]
    ckpt = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
    epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 8
    result = run(ckpt, epochs)
    np.savez(out, params=flat_params(result), **result.history)
