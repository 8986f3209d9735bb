"""Distributions of training tasks for meta-training (pure functions, vmappable).

A :class:`TaskFamily` samples a task (a pytree of arrays) from a key, initialises its
parameters, and gives the training loss seen at one inner step. Two families:

* :func:`quadratic_family` — Andrychowicz et al. (2016)'s f(θ) = ‖Wθ − y‖² with W (d × d)
  and y drawn i.i.d. N(0, 1) (d = 10), θ₀ ~ N(0, 0.01²) (the released code's θ₀; it draws W
  and y uniform in [0, 1)); deterministic.
* :func:`mnist1d_family` — a small MLP classifier on MNIST-1D (Greydanus 2020): each task a
  random subset of the training examples and a random initialisation; each inner step sees a
  random mini-batch of its subset. The architecture (widths, activation) is a setting, so a
  learned optimizer can be tested on another one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid, "tanh": jnp.tanh}


@dataclass(frozen=True, eq=False)
class TaskFamily:
    """A distribution of training tasks.

    Attributes:
      name: e.g. "quadratic".
      sample: ``key -> task`` (a pytree of arrays, the same structure for every task).
      init: ``(key, task) -> params``.
      loss: ``(params, task, key) -> scalar``, the training loss of one inner step (``key``
        picks the mini-batch; ignored by deterministic tasks).
      eval_loss: ``(params, task) -> scalar``, the full training loss of the task.
      config: JSON-able settings (the family's identity in checkpoints).
      accuracy: ``(params, x, y) -> scalar`` for classifiers (test accuracy), else None.
    """

    name: str
    sample: Callable[[jax.Array], Any]
    init: Callable[[jax.Array, Any], Any]
    loss: Callable[[Any, Any, jax.Array], jax.Array]
    eval_loss: Callable[[Any, Any], jax.Array]
    config: dict[str, Any] = field(default_factory=dict)
    accuracy: Callable[[Any, jax.Array, jax.Array], jax.Array] | None = None


@functools.lru_cache(maxsize=8)  # one object per setting: jitted code is reused
def quadratic_family(dim: int = 10, init_std: float = 0.01) -> TaskFamily:
    """f(θ) = ‖Wθ − y‖², W ∈ R^{d×d} and y ∈ R^d i.i.d. N(0, 1); θ₀ ~ N(0, init_std²)."""

    def sample(key):
        kw, ky = jax.random.split(key)
        return {"w": jax.random.normal(kw, (dim, dim)), "y": jax.random.normal(ky, (dim,))}

    def init(key, task):
        return init_std * jax.random.normal(key, (dim,), task["w"].dtype)

    def eval_loss(theta, task):
        return jnp.sum(jnp.square(task["w"] @ theta - task["y"]))

    return TaskFamily("quadratic", sample, init, lambda theta, task, key: eval_loss(theta, task),
                      eval_loss, {"family": "quadratic", "dim": dim, "init_std": init_std})


def mlp_init(key: jax.Array, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Weights N(0, 1/fan_in), zero biases, for layer widths ``sizes`` (input first)."""
    keys = jax.random.split(key, len(sizes) - 1)
    return {"layers": [{"w": jax.random.normal(k, (a, b)) / np.sqrt(a), "b": jnp.zeros(b)}
                       for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)]}


def mlp_logits(params: dict[str, Any], x: jax.Array, activation: str) -> jax.Array:
    """An MLP's logits: hidden layers with ``activation``, a linear last layer."""
    act = ACTIVATIONS[activation]
    layers = params["layers"]
    for layer in layers[:-1]:
        x = act(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def _cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def mnist1d_family(x: np.ndarray, y: np.ndarray, hidden: tuple[int, ...] = (32,),
                   activation: str = "relu", subset: int = 1000, batch: int = 64,
                   num_classes: int = 10) -> TaskFamily:
    """MLP classifiers on MNIST-1D: a task is a random ``subset`` of ``(x, y)`` (the training
    split) and a random initialisation; an inner step sees ``batch`` examples of it drawn
    uniformly (with replacement)."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if not 1 <= batch <= subset <= len(y):
        raise ValueError(f"need 1 <= batch ({batch}) <= subset ({subset}) <= {len(y)} examples")
    xs, ys = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
    sizes = (int(xs.shape[1]), *hidden, num_classes)

    def sample(key):
        return {"idx": jax.random.choice(key, len(ys), (subset,), replace=False)}

    def init(key, task):
        return mlp_init(key, sizes)

    def loss(params, task, key):
        idx = task["idx"][jax.random.randint(key, (batch,), 0, subset)]
        return _cross_entropy(mlp_logits(params, xs[idx], activation), ys[idx])

    def eval_loss(params, task):
        return _cross_entropy(mlp_logits(params, xs[task["idx"]], activation), ys[task["idx"]])

    def accuracy(params, x_eval, y_eval):
        return jnp.mean(jnp.argmax(mlp_logits(params, x_eval, activation), -1) == y_eval)

    return TaskFamily("mnist1d", sample, init, loss, eval_loss,
                      {"family": "mnist1d", "hidden": list(hidden), "activation": activation,
                       "subset": subset, "batch": batch, "examples": len(ys)}, accuracy)
