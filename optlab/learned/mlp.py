"""A small per-parameter MLP optimizer in the style of learned_optimization's ``MLPLOpt``
(Metz et al. 2022, "Practical tradeoffs between memory, compute, and performance in learned
optimizers"; github.com/google/learned_optimization, ``learned_optimizers/mlp_lopt.py``).

Every coordinate is described by features — the gradient g, momentum EMAs m_β of g at a few
timescales β, the parameter θ, the rms √v of g (EMA at 0.999) and g/√v — each normalised
by its root mean square over the tensor (learned_optimization's second-moment normaliser).
One MLP shared by all coordinates maps them to a direction d and a magnitude a:

    update = −(d · exp(a · exp_mult)) · step_mult      (exp_mult = step_mult = 10⁻³)

so an untrained network takes small steps.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

DECAYS = (0.5, 0.9, 0.99)
RMS_DECAY = 0.999
HIDDEN = 32
EXP_MULT = 1e-3
STEP_MULT = 1e-3
FEATURES = 3 + len(DECAYS) + 1  # g, m_β..., θ, rms, g/rms


def init_meta_params(key: jax.Array, hidden: int = HIDDEN, layers: int = 2,
                     features: int = FEATURES, dtype: Any = jnp.float32) -> dict[str, Any]:
    """MLP weights ``{"layers": [{"w", "b"}, ...]}``: ``features → hidden (ReLU) × layers →
    2``; Glorot-uniform weights, zero biases."""
    sizes = [features, *([hidden] * layers), 2]
    keys = jax.random.split(key, len(sizes) - 1)
    out = []
    for k, (a, b) in zip(keys, itertools.pairwise(sizes), strict=True):
        bound = np.sqrt(6.0 / (a + b))
        out.append({"w": jax.random.uniform(k, (a, b), dtype, -bound, bound),
                    "b": jnp.zeros(b, dtype)})
    return {"layers": out}


class MLPState(NamedTuple):
    """Step count, the momentum EMAs (one tree per decay) and the EMA of g²."""

    count: jax.Array
    m: list[Any]
    v: Any


def _normalise(x: jax.Array) -> jax.Array:
    """x / rms(x) over the tensor (per feature)."""
    axes = tuple(range(x.ndim - 1))
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True) + 1e-12)


def features(g: jax.Array, ms: list[jax.Array], v: jax.Array, theta: jax.Array
             ) -> jax.Array:
    """The normalised features of every coordinate: ``(*g.shape, FEATURES)``."""
    rms = jnp.sqrt(v + 1e-12)
    raw = jnp.stack([g, *ms, theta, rms, g / (rms + 1e-8)], axis=-1)
    return _normalise(raw.reshape(-1, raw.shape[-1])).reshape(raw.shape)


def mlp_apply(meta_params: dict[str, Any], x: jax.Array) -> jax.Array:
    """The MLP: ReLU hidden layers, linear output of 2 (direction, magnitude)."""
    layers = meta_params["layers"]
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def mlp_optimizer(meta_params: dict[str, Any], exp_mult: float = EXP_MULT,
                  step_mult: float = STEP_MULT, decays: tuple[float, ...] = DECAYS,
                  rms_decay: float = RMS_DECAY) -> optax.GradientTransformation:
    """The per-parameter MLP optimizer as an optax transform (needs ``params`` in
    ``update``: θ is a feature).

    ``m_β ← β m_β + (1 − β) g``, ``v ← b v + (1 − b) g²`` (debiased), then ``(d, a) =
    MLP(features; φ)`` and ``update = −d · exp(a · exp_mult) · step_mult``."""

    def init_fn(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return MLPState(count=jnp.zeros([], jnp.int32), m=[zeros for _ in decays], v=zeros)

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("mlp_optimizer needs params (the parameter is a feature): call "
                             "update(grads, state, params)")
        count = state.count + 1
        ms = [jax.tree.map(lambda m, g, b=b: b * m + (1 - b) * g, m, updates)
              for b, m in zip(decays, state.m, strict=True)]
        v = jax.tree.map(lambda v, g: rms_decay * v + (1 - rms_decay) * g * g, state.v,
                         updates)
        debias = 1 - rms_decay ** count.astype(jnp.float32)

        def one(g, theta, v_leaf, *m_leaves):
            if g.size == 0:
                return g
            mp = jax.tree.map(lambda a: a.astype(g.dtype), meta_params)
            x = features(g, list(m_leaves), v_leaf / debias.astype(g.dtype), theta)
            out = mlp_apply(mp, x)
            step = out[..., 0] * jnp.exp(out[..., 1] * exp_mult) * step_mult
            return (-step).astype(g.dtype)

        new = jax.tree.map(one, updates, params, v, *ms)
        return new, MLPState(count=count, m=ms, v=v)

    return optax.GradientTransformation(init_fn, update_fn)
