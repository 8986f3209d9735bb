"""The coordinate-wise LSTM optimizer of Andrychowicz et al. (2016), "Learning to learn by
gradient descent by gradient descent" (NeurIPS 2016, arXiv:1606.04474).

One small two-layer LSTM m(·; φ) is shared by every coordinate of every parameter; each
coordinate keeps its own hidden and cell states (in the optimizer state). Per step:

    x_i = preprocess(g_i)                     (2 numbers per coordinate, see below)
    (o_i, s_i) = m(x_i, s_i; φ)               (two LSTM layers, then a linear read-out)
    update_i = scale · o_i                    (θ ← θ + update: the network picks the sign)

Gradient preprocessing (the paper's Appendix A), with p > 0:

    (log|g| / p, sign(g))   if |g| ≥ e^{−p}
    (−1, e^{p} · g)         otherwise

What was checked against the authors' released code (github.com/google-deepmind/learning-to-
learn, read through the project's search tool; the paper's text itself was not reachable):
the coordinate-wise deep LSTM with layers (20, 20) and a linear read-out to one output per
coordinate (``CoordinateWiseDeepLSTM``); the output multiplied by a constant ``scale``; the
log-and-sign preprocessing as *clamped* log/sign pairs (``LogAndSign``: clamp(log(|g|+ε)/k,
min=−1), clamp(e^{k}·g, −1, 1)), which equals the two-branch rule above away from the
threshold; the quadratic task ‖Wθ − y‖² in 10 dimensions; unrolls of 20 steps within 100-step
inner runs; Adam as the meta-optimizer; and gradients of the optimizee *not* differentiated
through (``tf.stop_gradient``, "what was done in the original L2L NIPS submission").
Differences: the released code uses k = 5 and scale 0.01 for MNIST and no preprocessing with
scale 1 on the quadratics; p = 10 follows third-party reimplementations of Appendix A (a Lua
and several PyTorch ones, all p = 10), and scale 0.1 the task brief — both are arguments.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

HIDDEN = 20
LAYERS = 2
P = 10.0
SCALE = 0.1


def preprocess(g: jax.Array, p: float = P) -> jax.Array:
    """The paper's gradient preprocessing: ``g`` → ``(..., 2)``.

    ``(log|g|/p, sign(g))`` where ``|g| ≥ e^{−p}``, else ``(−1, e^{p}·g)``."""
    big = jnp.abs(g) >= jnp.exp(-p)
    safe = jnp.where(big, jnp.abs(g), 1.0)  # log of 1 where unused: finite gradients
    first = jnp.where(big, jnp.log(safe) / p, -1.0)
    second = jnp.where(big, jnp.sign(g), jnp.exp(p) * g)
    return jnp.stack([first, second], axis=-1).astype(g.dtype)


def lstm_cell(params: dict[str, jax.Array], x: jax.Array, h: jax.Array, c: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
    """One LSTM step on a batch of coordinates: ``[x, h] @ w + b`` split into the input,
    forget, candidate and output gates (i, f, u, o);

        c' = σ(f) ⊙ c + σ(i) ⊙ tanh(u),   h' = σ(o) ⊙ tanh(c').
    """
    z = jnp.concatenate([x, h], axis=-1) @ params["w"] + params["b"]
    i, f, u, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(u)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def init_meta_params(key: jax.Array, hidden: int = HIDDEN, layers: int = LAYERS,
                     inputs: int = 2, dtype: Any = jnp.float32) -> dict[str, Any]:
    """Meta-parameters φ of the LSTM optimizer: ``{"lstm": [{"w", "b"} per layer],
    "out": {"w", "b"}}``. Gate weights are uniform in ±1/√(fan-in), the forget-gate bias is
    1 (a common LSTM choice); the read-out starts small (±0.1/√hidden), so the first steps are
    short."""
    keys = jax.random.split(key, layers + 1)
    cells = []
    for layer in range(layers):
        fan_in = (inputs if layer == 0 else hidden) + hidden
        bound = 1.0 / np.sqrt(fan_in)
        w = jax.random.uniform(keys[layer], (fan_in, 4 * hidden), dtype, -bound, bound)
        b = jnp.zeros(4 * hidden, dtype).at[hidden:2 * hidden].set(1.0)
        cells.append({"w": w, "b": b})
    bound = 0.1 / np.sqrt(hidden)
    out = {"w": jax.random.uniform(keys[-1], (hidden, 1), dtype, -bound, bound),
           "b": jnp.zeros(1, dtype)}
    return {"lstm": cells, "out": out}


class LSTMState(NamedTuple):
    """Per coordinate and layer: hidden ``h`` and cell ``c`` states, each a list (one per
    layer) of trees shaped like the params with a trailing axis of ``hidden`` units."""

    h: list[Any]
    c: list[Any]


def _hidden(meta_params: dict[str, Any]) -> int:
    return int(meta_params["out"]["w"].shape[0])


def lstm_step(meta_params: dict[str, Any], g: jax.Array, h: list[jax.Array],
              c: list[jax.Array], p: float = P) -> tuple[jax.Array, list, list]:
    """The network on one array of gradients ``g``: the raw output (shape of ``g``) and the
    new states of each layer."""
    x = preprocess(g, p)
    new_h, new_c = [], []
    for cell, h_l, c_l in zip(meta_params["lstm"], h, c, strict=True):
        x, c_l = lstm_cell(cell, x, h_l, c_l)
        new_h.append(x)
        new_c.append(c_l)
    out = x @ meta_params["out"]["w"] + meta_params["out"]["b"]
    return out[..., 0], new_h, new_c


def lstm_optimizer(meta_params: dict[str, Any], scale: float = SCALE, p: float = P
                   ) -> optax.GradientTransformation:
    """Andrychowicz et al. (2016)'s coordinate-wise LSTM optimizer as an optax transform.

    ``update = scale · m(preprocess(g), state; φ)`` per coordinate, with ``φ =
    meta_params`` (from :func:`init_meta_params` or meta-training) and the hidden and cell
    states of every coordinate in :class:`LSTMState`. ``meta_params`` may be traced (the
    transform is differentiable in φ: meta-training differentiates through it).

    Args:
      meta_params: the network's weights (a pytree: data, not code).
      scale: output multiplier (0.1; the released code uses 0.01 on MNIST).
      p: preprocessing constant (10).
    """
    hidden, layers = _hidden(meta_params), len(meta_params["lstm"])

    def init_fn(params):
        def zeros(x):
            return jnp.zeros((*jnp.shape(x), hidden), jnp.result_type(x))

        return LSTMState(h=[jax.tree.map(zeros, params) for _ in range(layers)],
                         c=[jax.tree.map(zeros, params) for _ in range(layers)])

    def update_fn(updates, state, params=None):
        del params
        leaves, treedef = jax.tree.flatten(updates)
        hs = [treedef.flatten_up_to(h) for h in state.h]
        cs = [treedef.flatten_up_to(c) for c in state.c]
        outs, new_h, new_c = [], [[] for _ in range(layers)], [[] for _ in range(layers)]
        for i, g in enumerate(leaves):
            mp = jax.tree.map(lambda a, g=g: a.astype(g.dtype), meta_params)
            out, h, c = lstm_step(mp, g, [x[i] for x in hs], [x[i] for x in cs], p)
            outs.append((scale * out).astype(g.dtype))
            for layer in range(layers):
                new_h[layer].append(h[layer])
                new_c[layer].append(c[layer])
        unflatten = treedef.unflatten
        return unflatten(outs), LSTMState(h=[unflatten(x) for x in new_h],
                                          c=[unflatten(x) for x in new_c])

    return optax.GradientTransformation(init_fn, update_fn)
