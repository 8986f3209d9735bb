"""A population of programs as integer arrays, interpreted inside one compiled function.

A program of G groups is encoded as an int32 array ``code`` of shape (G, 5): per group the two
operand indices (``0 … len(OPERANDS)−1`` for an operand, ``len(OPERANDS) + k`` for the
result of group k < this group), the two unary function indices and the binary function
index, in the order of :data:`~optlab.search.language.OPERANDS`, ``UNARY`` and ``BINARY``.

:func:`interpreted` is the optimizer whose program is *data*: every operand is computed once
per step, each group selects its operands by index and its functions with ``lax.switch``, so
``jax.vmap`` over codes trains a whole population (× learning rates × seeds) as one XLA
program, and one compilation serves every population of the same shape. Under ``vmap`` a
switch evaluates all branches and selects, which is the price of one program for all.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optlab.accumulators import ema, ema_of_cube, ema_of_square
from optlab.regularizers import _canonical_key, _check_key, scale_by_learning_rate
from optlab.search.compiler import DEFAULT_CONFIG, ExpressionState, leaf_noise, split_per_leaf
from optlab.search.language import (
    BINARY,
    OPERANDS,
    UNARY,
    Binary,
    Context,
    Leaf,
    Node,
    SearchConfig,
    Unary,
)
from optlab.stream import Primitive, as_stream, chain, primitive

__all__ = ["PAD_GROUP", "decode", "encode", "interpreted", "interpreter_expression", "pad",
           "stack", "tree_of"]

_OPERAND_INDEX = {o.name: i for i, o in enumerate(OPERANDS)}
_UNARY_INDEX = {u.name: i for i, u in enumerate(UNARY)}
_BINARY_INDEX = {b.name: i for i, b in enumerate(BINARY)}
N_OPERANDS = len(OPERANDS)


def _groups(program: Any) -> Sequence[Sequence[Any]]:
    groups = getattr(program, "groups", program)
    return [tuple(g) for g in groups]


def _operand_index(tok: Any, k: int, pos: str) -> int:
    if isinstance(tok, int | np.integer) and not isinstance(tok, bool):
        if not 0 <= tok < k:
            raise ValueError(f"group {k}, {pos}: group reference {tok} must name an earlier "
                             f"group (0..{k - 1})")
        return N_OPERANDS + int(tok)
    return _token_index(_OPERAND_INDEX, tok, "operand")


def _token_index(table: dict[str, int], tok: Any, kind: str) -> int:
    if tok not in table:
        from optlab._checks import unknown_name

        raise unknown_name(kind, tok, table)
    return table[tok]


PAD_GROUP = ("g", "g", "id", "id", "keep")
"""The group prepended to pad a program to a population's size (its result is never read)."""


def pad(program: Any, num_groups: int) -> list[tuple[Any, ...]]:
    """The groups of ``program`` with :data:`PAD_GROUP` prepended up to ``num_groups`` (group
    references shift accordingly; the last group, the update, is unchanged)."""
    groups = _groups(program)
    extra = num_groups - len(groups)
    if extra < 0:
        raise ValueError(f"num_groups={num_groups} is smaller than the program's "
                         f"{len(groups)} groups")
    shift = [tuple(t + extra if isinstance(t, int | np.integer) and not isinstance(t, bool)
                   else t for t in g[:2]) + tuple(g[2:]) for g in groups]
    return [PAD_GROUP] * extra + shift


def encode(program: Any, num_groups: int | None = None) -> np.ndarray:
    """A program (a :class:`~optlab.search.program.Program` or a sequence of 5-token groups
    ``(o1, o2, u1, u2, b)``, operands by name or as the int index of an earlier group) as an
    int32 array of shape (groups, 5); with ``num_groups``, padded to that many (:func:`pad`)."""
    if num_groups is not None:
        program = pad(program, num_groups)
    rows = []
    for k, group in enumerate(_groups(program)):
        if len(group) != 5:
            raise ValueError(f"group {k}: expected 5 tokens (o1, o2, u1, u2, b), got {group!r}")
        o1, o2, u1, u2, b = group
        rows.append([_operand_index(o1, k, "o1"), _operand_index(o2, k, "o2"),
                     _token_index(_UNARY_INDEX, u1, "unary function"),
                     _token_index(_UNARY_INDEX, u2, "unary function"),
                     _token_index(_BINARY_INDEX, b, "binary function")])
    if not rows:
        raise ValueError("a program needs at least one group")
    return np.asarray(rows, np.int32)


def decode(code: Any) -> list[tuple[Any, Any, str, str, str]]:
    """The 5-token groups of an encoded program (inverse of :func:`encode`)."""
    code = np.asarray(code)
    if code.ndim != 2 or code.shape[1] != 5:
        raise ValueError(f"code must have shape (groups, 5), got {code.shape}")

    def op(i):
        return OPERANDS[i].name if i < N_OPERANDS else int(i - N_OPERANDS)

    return [(op(o1), op(o2), UNARY[u1].name, UNARY[u2].name, BINARY[b].name)
            for o1, o2, u1, u2, b in code.tolist()]


def tree_of(code: Any) -> Node:
    """The expression tree of an encoded program (its last group)."""
    groups = decode(code)
    built: list[Node] = []
    for o1, o2, u1, u2, b in groups:
        x = built[o1] if isinstance(o1, int) else Leaf(o1)
        y = built[o2] if isinstance(o2, int) else Leaf(o2)
        built.append(Binary(b, Unary(u1, x), Unary(u2, y)))
    return built[-1]


def _switch_unary(index: jax.Array, x: jax.Array, key: jax.Array,
                  config: SearchConfig) -> jax.Array:
    branches = [(lambda x, k, u=u: u.fn(x, k, config)) if u.random
                else (lambda x, k, u=u: u.fn(x)) for u in UNARY]
    return jax.lax.switch(index, branches, x, key)


def _switch_binary(index: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    return jax.lax.switch(index, [b.fn for b in BINARY], x, y)


def _interpret(code: jax.Array, ctx: Context, keys: jax.Array) -> jax.Array:
    """The value of the encoded program on one leaf: all operands, then the groups."""
    g = ctx.g
    values = [jnp.broadcast_to(jnp.asarray(o.fn(ctx), g.dtype), g.shape) for o in OPERANDS]
    num_groups = code.shape[0]
    slots = jnp.stack(values + [jnp.zeros_like(g)] * num_groups)
    for k in range(num_groups):
        o1, o2, u1, u2, b = (code[k, i] for i in range(5))
        x = _switch_unary(u1, slots[o1], keys[k, 0], ctx.config)
        y = _switch_unary(u2, slots[o2], keys[k, 1], ctx.config)
        slots = slots.at[N_OPERANDS + k].set(_switch_binary(b, x, y).astype(g.dtype))
    return slots[N_OPERANDS + num_groups - 1]


def _interpret_flat(code: jax.Array, stream: Any, params: Any, leaf_keys: Any,
                    count: jax.Array, config: SearchConfig) -> Any:
    """:func:`_interpret` once on all leaves concatenated (every operand and function is
    elementwise): one interpreter in the compiled program instead of one per leaf, which
    cuts its trace and compile time by the number of leaves. The noise operands draw each
    leaf's samples as the per-leaf form does; dropout masks come from the first leaf's key."""
    g = stream["g"]
    leaves, treedef = jax.tree.flatten(g)

    def flat(tree):
        return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])

    drawn = [leaf_noise(k, x) for k, x in zip(jax.tree.leaves(leaf_keys), leaves, strict=True)]
    noise = jnp.concatenate([n.reshape(2, -1) for n, _ in drawn], axis=1)
    drop_keys = jax.random.split(drawn[0][1], (code.shape[0], 2))
    ctx = Context(g=flat(g), stats={k: flat(stream[k]) for k in ("m", "v", "gamma")},
                  w=flat(params), count=count, noise=noise, config=config)
    out = _interpret(code, ctx, drop_keys).astype(leaves[0].dtype)
    offsets = np.cumsum([x.size for x in leaves])[:-1]
    return jax.tree.unflatten(treedef, [part.reshape(x.shape) for part, x in
                                        zip(jnp.split(out, offsets), leaves, strict=True)])


def interpreter_expression(code: Any, *, config: SearchConfig = DEFAULT_CONFIG,
                           key: jax.Array | int = 0) -> Primitive:
    """The combiner that interprets ``code`` (an int array, possibly traced) on every leaf.

    Reads g and the moments m, v, gamma from the stream (all three: any program may), the
    params and the step. Random operands draw from ``key`` exactly as
    :func:`~optlab.search.compiler.expression` does (same samples); dropout draws one mask per
    group and argument (the compiled tree draws one per distinct dropout subtree, so programs
    with dropout have equal distributions but not equal samples under the two).
    """
    _check_key(key)

    def init_fn(params):
        del params
        return ExpressionState(_canonical_key(key))

    def update_fn(updates, state, params, count, **extra):
        del extra
        stream = as_stream(updates, "interpreter_expression")
        g = stream["g"]
        if params is None:
            raise ValueError("the interpreter reads the weights: call update(updates, state, "
                             "params)")
        c = jnp.asarray(code, jnp.int32)
        next_key, leaf_keys = split_per_leaf(state.key, g)
        leaves = jax.tree.leaves(g)
        if len(leaves) > 1 and len({x.dtype for x in leaves}) == 1:
            return _interpret_flat(c, stream, params, leaf_keys, count, config), \
                ExpressionState(next_key)

        def one(g_leaf, w_leaf, k, m, v, gamma):
            noise, drop_key = leaf_noise(k, g_leaf)
            drop_keys = jax.random.split(drop_key, (c.shape[0], 2))
            ctx = Context(g=g_leaf, stats={"m": m, "v": v, "gamma": gamma}, w=w_leaf,
                          count=count, noise=noise, config=config)
            return _interpret(c, ctx, drop_keys).astype(g_leaf.dtype)

        out = jax.tree.map(one, g, params, leaf_keys, stream["m"], stream["v"],
                           stream["gamma"])
        return out, ExpressionState(next_key)

    return primitive(init_fn, update_fn, counted=True)


def interpreted(code: Any, learning_rate: optax.ScalarOrSchedule, *,
                config: SearchConfig = DEFAULT_CONFIG, key: jax.Array | int = 0) -> Primitive:
    """An optimizer whose program is the int array ``code`` (shape (groups, 5)): the three
    moment accumulators, :func:`interpreter_expression`, the learning rate. ``code`` may be a
    traced value, so ``jax.vmap`` over codes trains a population in one program."""
    return chain(ema("m", config.beta1, debias=config.debias),
                 ema_of_square("v", config.beta2, debias=config.debias),
                 ema_of_cube("gamma", config.beta3, debias=config.debias),
                 interpreter_expression(code, config=config, key=key),
                 scale_by_learning_rate(learning_rate))


def stack(programs: Iterable[Any], num_groups: int | None = None) -> np.ndarray:
    """A population: the codes of programs with the same number of groups (or padded to
    ``num_groups``), stacked to shape (programs, groups, 5)."""
    codes = [encode(p, num_groups) for p in programs]
    shapes = {c.shape for c in codes}
    if len(shapes) != 1:
        raise ValueError(f"a population needs programs of one size, got shapes {sorted(shapes)}")
    return np.stack(codes)
