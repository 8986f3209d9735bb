"""Programs as integer arrays, interpreted in one compiled function (issue 8, "One compiled
program for a whole population")."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optlab.search.compiler import compile_program
from optlab.search.language import BINARY, OPERANDS, UNARY, SearchConfig
from optlab.search.population import (
    N_OPERANDS,
    decode,
    encode,
    interpreted,
    stack,
    tree_of,
)

CONFIG = SearchConfig(decay_steps=20)
NO_DROP = [i for i, u in enumerate(UNARY) if not u.random]
PARAMS = {"w": jnp.linspace(-1.0, 1.2, 12).reshape(3, 4), "b": jnp.asarray([0.3, -0.7])}


def random_code(rng: np.random.Generator, groups: int, unary=None) -> np.ndarray:
    unary = list(range(len(UNARY))) if unary is None else unary
    rows = []
    for k in range(groups):
        rows.append([rng.integers(N_OPERANDS + k), rng.integers(N_OPERANDS + k),
                     rng.choice(unary), rng.choice(unary), rng.integers(len(BINARY))])
    return np.asarray(rows, np.int32)


def _steps(tx, n=3):
    state, params, out = tx.init(PARAMS), PARAMS, []
    for _ in range(n):
        grads = jax.tree.map(jnp.sin, params)
        u, state = jax.jit(tx.update)(grads, state, params)
        out.append(u)
        params = jax.tree.map(lambda p, d: p + jnp.nan_to_num(d), params, u)
    return out


def test_encode_decode_round_trip():
    program = [("sign_g", "sign_m", "id", "id", "mul"), (0, "g", "exp", "id", "mul")]
    code = encode(program)
    assert code.shape == (2, 5) and code.dtype == np.int32
    assert decode(code) == program
    assert encode(decode(code)).tolist() == code.tolist()


@pytest.mark.parametrize("seed", range(8))
def test_interpreter_equals_compiled_chain(seed):
    """For random programs (dropout left out: its masks are drawn per group there and per
    subtree in the compiled tree), the interpreted update equals the compiled program's."""
    rng = np.random.default_rng(seed)
    code = random_code(rng, groups=1 + seed % 3, unary=NO_DROP)
    ours = _steps(interpreted(code, 0.1, config=CONFIG))
    ref = _steps(compile_program(tree_of(code), 0.1, config=CONFIG))
    for a, b in zip(ours, ref, strict=True):
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6,
                                       equal_nan=True, err_msg=str(decode(code)))


def test_a_population_is_one_compilation():
    """vmap over codes: two different populations of one shape trace (and compile) once, and
    each program's update equals its update alone."""
    traces = []

    def step(code, grads, params):
        traces.append(1)
        tx = interpreted(code, 0.1, config=CONFIG)
        return tx.update(grads, tx.init(params), params)[0]

    population_step = jax.jit(jax.vmap(step, in_axes=(0, None, None)))
    single_step = jax.jit(step)  # the code is a traced argument here too
    rng = np.random.default_rng(0)
    grads = jax.tree.map(jnp.cos, PARAMS)
    for _ in range(2):
        codes = np.stack([random_code(rng, 2, unary=NO_DROP) for _ in range(6)])
        together = population_step(codes, grads, PARAMS)
        for i, code in enumerate(codes):
            alone = single_step(code, grads, PARAMS)
            for x, y in zip(jax.tree.leaves(together), jax.tree.leaves(alone), strict=True):
                np.testing.assert_allclose(np.asarray(x)[i], np.asarray(y), rtol=1e-5,
                                           atol=1e-6, equal_nan=True)
    assert len(traces) == 2  # one for both populations, one for all 12 programs alone


def test_stack_and_bad_codes():
    a = [("g", "m", "id", "id", "add")]
    b = [("sign_g", "two", "neg", "exp", "mul")]
    assert stack([a, b]).shape == (2, 1, 5)
    with pytest.raises(ValueError, match="one size"):
        stack([a, [*a, (0, "g", "id", "id", "keep")]])
    with pytest.raises(ValueError, match="group 0, o1: group reference 0"):
        encode([(0, "g", "id", "id", "add")])
    with pytest.raises(ValueError, match="unknown unary function 'expo'"):
        encode([("g", "g", "expo", "id", "add")])
    with pytest.raises(ValueError, match="at least one group"):
        encode([])
    with pytest.raises(ValueError, match=r"shape \(groups, 5\)"):
        decode(np.zeros((2, 4), np.int32))


def test_every_function_in_the_interpreter():
    """Each operand, unary and binary function through the interpreter (dropout included),
    all as one vmapped population: finite updates of the right shape."""
    keep, g, m = len(BINARY) - 1, 0, 3
    codes = ([[i, g, 0, 0, keep] for i in range(N_OPERANDS)]
             + [[g, g, j, 0, keep] for j in range(len(UNARY))]
             + [[g, m, 0, 0, j] for j in range(len(BINARY))])
    codes = np.asarray(codes, np.int32)[:, None, :]

    def step(code):
        tx = interpreted(code, 0.1, config=CONFIG)
        state = tx.init(PARAMS)
        u, state = tx.update(jax.tree.map(jnp.sin, PARAMS), state, PARAMS)
        return tx.update(u, state, PARAMS)[0]

    updates = jax.jit(jax.vmap(step))(codes)
    names = ([o.name for o in OPERANDS] + [u.name for u in UNARY] + [b.name for b in BINARY])
    for leaf, p in zip(jax.tree.leaves(updates), jax.tree.leaves(PARAMS), strict=True):
        assert leaf.shape == (len(codes), *p.shape)
        finite = np.all(np.isfinite(np.asarray(leaf)).reshape(len(codes), -1), axis=1)
        assert finite.all(), [n for n, ok in zip(names, finite, strict=True) if not ok]


def test_a_population_trains_as_one_grid():
    """Programs are per-run values of ``optlab.train``'s grid (× learning rates × seeds);
    each program's runs equal the compiled program trained alone."""
    import functools

    from optlab.search import parse
    from optlab.tasks import load_dataset
    from optlab.train import train

    data = load_dataset("digits")
    programs = [parse("exp(sign(g) * sign(m)) * g"), parse("g + 1e-4 * w")]
    kw = dict(seeds=2, epochs=1, progress=False)
    together = train(data, "mlp", interpreted,
                     hyperparams={"code": stack(programs, 2), "learning_rate": [0.01, 0.1]},
                     **kw)
    assert len(together.grid) == 2 * 2 * 2
    for i, program in enumerate(programs):
        alone = train(data, "mlp", functools.partial(compile_program, program),
                      hyperparams={"learning_rate": [0.01, 0.1]}, **kw)
        np.testing.assert_allclose(together.history["train_loss"][4 * i:4 * i + 4],
                                   alone.history["train_loss"], rtol=1e-5)


def test_padding_keeps_the_program():
    program = [("sign_g", "sign_m", "id", "id", "mul"), (0, "g", "exp", "id", "mul")]
    padded = encode(program, 4)
    assert padded.shape == (4, 5)
    assert tree_of(padded) == tree_of(encode(program))
    with pytest.raises(ValueError, match="num_groups=1 is smaller"):
        encode(program, 1)


def test_array_hyperparameters_are_checked():
    from optlab.train import Grid

    grid = Grid.make({"code": [np.zeros((2, 5), np.int32), np.ones((2, 5), np.int32)],
                      "learning_rate": [0.1]}, seeds=1)
    assert grid.column("code").shape == (2, 2, 5) and grid.column("code").dtype == np.int32
    with pytest.raises(ValueError, match="one shape and dtype"):
        Grid.make({"code": [np.zeros((2, 5), np.int32), np.zeros((3, 5), np.int32)]}, 1)
    with pytest.raises(TypeError, match="every value must be an array"):
        Grid.make({"code": [np.zeros((2, 5), np.int32), 3.0]}, 1)
