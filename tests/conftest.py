"""Shared fixtures: random parameter trees and reproducible gradient sequences."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

# One persistent XLA compilation cache for the whole test session: the xdist workers and the
# subprocesses tests start (they inherit the environment) compile the same training programs
# many times over. Keys cover the program, the XLA flags and the devices, so a hit is the
# same executable. `make clean` removes it; set JAX_COMPILATION_CACHE_DIR to move it.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(__file__).resolve().parents[1] / ".cache" / "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def make_params(seed: int = 0, dtype=jnp.float32) -> dict:
    """A pytree with a scalar, a vector, matrices, a nested dict and an empty subtree."""
    rng = np.random.default_rng(seed)
    return {
        "scalar": jnp.asarray(rng.normal(), dtype),
        "w": jnp.asarray(rng.normal(size=(5, 7)), dtype),
        "nested": {"b": jnp.asarray(rng.normal(size=(4,)), dtype),
                   "k": jnp.asarray(rng.normal(size=(3, 2, 6)), dtype)},
        "empty": {},
    }


def noise_sequence(params, steps: int):
    """Per-step noise trees stacked along a leading axis of length ``steps``."""
    rng = np.random.default_rng(1000)
    return jax.tree.map(
        lambda p: jnp.asarray(rng.normal(size=(steps, *np.shape(p))), p.dtype), params)


def gradient(params, noise):
    """A param-dependent gradient plus step noise (signs flip from step to step)."""
    return jax.tree.map(lambda p, n: 0.5 * p + n, params, noise)


def run(tx: optax.GradientTransformation, params, steps: int):
    """Applies ``steps`` updates of ``tx`` in one ``lax.scan``; returns the stacked params
    trajectory (index 0 is the initial params)."""

    def step(carry, noise):
        p, s = carry
        updates, s = tx.update(gradient(p, noise), s, p)
        p = optax.apply_updates(p, updates)
        return (p, s), p

    @jax.jit
    def scan(p0, noise):
        _, traj = jax.lax.scan(step, (p0, tx.init(p0)), noise)
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), p0, traj)

    return Trajectory(scan(params, noise_sequence(params, steps)))


class Trajectory:
    """Stacked parameter trees; ``traj[t]`` is the tree after t updates (``traj[-1]`` last)."""

    def __init__(self, stacked):
        self.stacked = stacked

    def __getitem__(self, t: int):
        return jax.tree.map(lambda x: x[t], self.stacked)


def assert_trees_close(a, b, rtol, atol=0.0, msg=""):
    assert jax.tree.structure(a) == jax.tree.structure(b), msg
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                                   err_msg=msg)


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield
