"""Compiling a search-space program to an optlab chain.

A program reads some of the moments m̂, v̂, γ̂; :func:`compile_program` puts exactly those
accumulators first (a program that reads only g keeps no arrays in its state), then one
combiner, :func:`expression`, that evaluates the program's tree on every parameter leaf, then
the learning rate: Δw = −η · program(g, m̂, v̂, ...). The result is an ordinary optax
transform (an :class:`optlab.Primitive`), so it works wherever a named optimizer does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optlab.accumulators import ema, ema_of_cube, ema_of_square
from optlab.regularizers import _canonical_key, _check_key, scale_by_learning_rate
from optlab.search.language import (
    Binary,
    Context,
    Leaf,
    Node,
    SearchConfig,
    Unary,
    binary,
    operand,
    unary,
)
from optlab.stream import Primitive, as_stream, chain, primitive, tree_map

__all__ = ["Requirements", "compile_program", "expression", "requirements"]

DEFAULT_CONFIG = SearchConfig()

# The stream names of the moments (accumulators are created only for those a program reads).
_MOMENTS = ("m", "v", "gamma")


@dataclasses.dataclass(frozen=True)
class Requirements:
    """What evaluating a tree needs: moment statistics, the params, the step, random keys."""

    stats: frozenset[str]
    params: bool
    step: bool
    random: bool


def _nodes(node: Node) -> Iterator[Node]:
    """Every node of the tree, depth first, parents before children."""
    yield node
    if isinstance(node, Unary):
        yield from _nodes(node.x)
    elif isinstance(node, Binary):
        yield from _nodes(node.x)
        yield from _nodes(node.y)


def requirements(node: Node) -> Requirements:
    """The statistics, params, step and randomness ``node`` reads (validates every name)."""
    stats, params, step, random = set(), False, False, False
    for n in _nodes(node):
        if isinstance(n, Leaf):
            op = operand(n.operand)
            stats |= op.stats
            params, step, random = params or op.params, step or op.step, random or op.random
        elif isinstance(n, Unary):
            random = random or unary(n.fn).random
        elif isinstance(n, Binary):
            binary(n.fn)
        else:
            raise TypeError(f"not a program node: {type(n).__name__} {n!r}")
    return Requirements(frozenset(stats), params, step, random)


def _as_node(program: Any) -> Node:
    """A tree from a :class:`~optlab.search.program.Program`, a formula or a tree."""
    if isinstance(program, str):
        from optlab.search.program import parse

        program = parse(program)
    if hasattr(program, "tree"):
        return program.tree()
    if isinstance(program, Leaf | Unary | Binary):
        return program
    raise TypeError(f"program must be a Program, a formula (str) or a tree node, got "
                    f"{type(program).__name__}")


class ExpressionState(NamedTuple):
    """The PRNG key of a program with noise operands or dropout (split once per step)."""

    key: jax.Array


def split_per_leaf(key: jax.Array, tree: Any) -> tuple[jax.Array, Any]:
    """The next state key and one key per leaf of ``tree`` for this step (shared by the
    compiled and the interpreted program, so their noise operands draw the same samples)."""
    leaves, treedef = jax.tree.flatten(tree)
    next_key, step_key = jax.random.split(key)
    keys = list(jax.random.split(step_key, max(len(leaves), 1)))[:len(leaves)]
    return next_key, jax.tree.unflatten(treedef, keys)


def leaf_noise(key: jax.Array, leaf: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Two standard-normal draws shaped like ``leaf`` (the noise and annealed-noise
    operands) and the key left for dropout masks."""
    noise_key, drop_key = jax.random.split(key)
    return jax.random.normal(noise_key, (2, *jnp.shape(leaf)), leaf.dtype), drop_key


def _random_nodes(node: Node) -> dict[Node, int]:
    """A fixed index per distinct random unary subtree (its dropout mask's key)."""
    out: dict[Node, int] = {}
    for n in _nodes(node):
        if isinstance(n, Unary) and unary(n.fn).random and n not in out:
            out[n] = len(out)
    return out


def _evaluate(node: Node, ctx: Context, keys: dict[Node, jax.Array]) -> jax.Array:
    """The tree's value on one leaf; a subtree that occurs twice is evaluated once (a group
    result read by two later groups is one value, as in the program)."""
    memo: dict[Node, jax.Array] = {}

    def ev(n: Node) -> jax.Array:
        if n in memo:
            return memo[n]
        if isinstance(n, Leaf):
            out = operand(n.operand).fn(ctx)
        elif isinstance(n, Unary):
            fn = unary(n.fn)
            out = fn.fn(ev(n.x), keys[n], ctx.config) if fn.random else fn.fn(ev(n.x))
        else:
            out = binary(n.fn).fn(ev(n.x), ev(n.y))
        memo[n] = out = jnp.asarray(out)
        return out

    return ev(node)


def expression(program: Any, *, config: SearchConfig = DEFAULT_CONFIG,
               key: jax.Array | int = 0) -> Primitive:
    """The combiner that evaluates a program on every leaf: u = program(g, m̂, v̂, ...).

    Reads the gradient and the moment statistics the program needs from the stream (put
    there by :func:`compile_program`'s accumulators), the params for weight operands and the
    chain's step count for decays and annealed noise. Random operands and dropout draw from
    ``key`` (split once per step; one noise sample per operand, leaf and step; one dropout
    mask per distinct dropout subtree, leaf and step).
    """
    node = _as_node(program)
    req = requirements(node)
    if req.random:
        _check_key(key)
    random_nodes = _random_nodes(node)

    def init_fn(params):
        del params
        return ExpressionState(_canonical_key(key)) if req.random else optax.EmptyState()

    def update_fn(updates, state, params, count, **extra):
        del extra
        stream = as_stream(updates, "expression")
        g = stream["g"]
        stats = {name: stream[name] for name in _MOMENTS if name in req.stats}
        if req.params and params is None:
            raise ValueError("this program reads the weights (1e-4 * w, ...): call "
                             "update(updates, state, params)")
        if req.random:
            next_key, per_leaf_keys = split_per_leaf(state.key, g)
            state = ExpressionState(next_key)
        else:
            per_leaf_keys = tree_map(lambda x: None, g)

        def one(g_leaf, w_leaf, k, *moments):
            noise, keys = None, {}
            if k is not None:
                noise, drop_key = leaf_noise(k, g_leaf)
                keys = {n: jax.random.fold_in(drop_key, i) for n, i in random_nodes.items()}
            ctx = Context(g=g_leaf, stats=dict(zip(sorted(stats), moments, strict=True)),
                          w=w_leaf, count=count if count is not None else jnp.zeros([], int),
                          noise=noise, config=config)
            out = _evaluate(node, ctx, keys)
            return jnp.broadcast_to(out, jnp.shape(g_leaf)).astype(g_leaf.dtype)

        w = params if req.params else tree_map(lambda x: None, g)
        moments = [stats[name] for name in sorted(stats)]
        out = jax.tree.map(one, g, w, per_leaf_keys, *moments,
                           is_leaf=lambda x: x is None)
        return out, state

    return primitive(init_fn, update_fn, counted=req.step)


def compile_program(program: Any, learning_rate: optax.ScalarOrSchedule, *,
                    config: SearchConfig = DEFAULT_CONFIG,
                    key: jax.Array | int = 0) -> Primitive:
    """A program as an optimizer: the accumulators it reads, its combiner, the learning rate.

    ``program`` is a :class:`~optlab.search.program.Program`, a formula (``"exp(sign(g) *
    sign(m)) * g"``) or a tree. m̂, v̂, γ̂ are ``ema("m", β₁)``, ``ema_of_square("v", β₂)`` and
    ``ema_of_cube("gamma", β₃)`` (bias-corrected unless ``config.debias`` is False), present
    only when the program reads them. Δw = −η · program.
    """
    node = _as_node(program)
    req = requirements(node)
    accumulators = {
        "m": lambda: ema("m", config.beta1, debias=config.debias),
        "v": lambda: ema_of_square("v", config.beta2, debias=config.debias),
        "gamma": lambda: ema_of_cube("gamma", config.beta3, debias=config.debias),
    }
    return chain(*(accumulators[name]() for name in _MOMENTS if name in req.stats),
                 expression(node, config=config, key=key),
                 scale_by_learning_rate(learning_rate))
