"""Programs (issue 8, "The language"): tokens ↔ tree ↔ formula, parse, canonical form, hash."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optlab.search import (
    OPERANDS,
    UNARY,
    Binary,
    Leaf,
    Program,
    Unary,
    canonical,
    equivalent,
    formula,
    parse,
    program_hash,
    random_program,
)
from optlab.search.compiler import compile_program
from optlab.search.program import parse_tree

SETTINGS = settings(max_examples=150, deadline=None)
uniform = st.builds(random_program, st.integers(0, 2**32 - 1), st.integers(1, 5))
# mostly `id` and `neg` between operators and multi-token operands: exercises precedence
operators = st.builds(
    lambda s, n: random_program(s, n, operands=["g", "m", "one", "g2", "w1e-4", "adam"],
                                unaries=["id", "id", "id", "neg", "sign"]),
    st.integers(0, 2**32 - 1), st.integers(2, 6))
programs = st.one_of(uniform, operators)

POWERSIGN = Binary("mul", Unary("exp", Binary("mul", Leaf("sign_g"), Leaf("sign_m"))), Leaf("g"))
ADDSIGN = Binary("mul", Binary("add", Leaf("one"), Binary("mul", Leaf("sign_g"),
                                                            Leaf("sign_m"))), Leaf("g"))


def grp(a, b, u1="id", u2="id", fn="keep"):
    return (a, b, u1, u2, fn)


def prog(*groups) -> Program:
    return Program(groups)


# ------------------------------------------------------------------------------------------
# Parsing the paper's examples
# ------------------------------------------------------------------------------------------


def test_powersign_addsign_adam_parse_to_the_expected_trees():
    assert parse_tree("exp(sign(g) * sign(m)) * g") == POWERSIGN
    assert parse("exp(sign(g) * sign(m)) * g").groups == (
        grp("sign_g", "sign_m", fn="mul"), grp(0, "g", "exp", "id", "mul"))
    assert parse_tree("(1 + sign(g) * sign(m)) * g") == ADDSIGN
    assert parse("(1 + sign(g) * sign(m)) * g").tree() == Binary(
        "mul", Unary("id", Binary("add", Unary("id", Leaf("one")), Unary("id", Binary(
            "mul", Unary("id", Leaf("sign_g")), Unary("id", Leaf("sign_m")))))),
        Unary("id", Leaf("g")))
    assert parse_tree("m / (sqrt(v) + eps)") == Leaf("adam")
    assert parse_tree("g / (sqrt(v) + eps)") == Leaf("rmsprop")
    assert parse("m / (sqrt(v) + eps)").groups == (grp("adam", "adam"),)


@pytest.mark.parametrize("text, tree", [
    ("g", Leaf("g")),
    ("-g", Unary("neg", Leaf("g"))),
    ("--g", Unary("neg", Unary("neg", Leaf("g")))),
    ("clip(g, 1e-3)", Unary("clip1e-3", Leaf("g"))),
    ("clip(g, 0.0001)", Unary("clip1e-4", Leaf("g"))),
    ("drop(m, 0.5)", Unary("drop0.5", Leaf("m"))),
    ("g^2", Leaf("g2")), ("g ** 3", Leaf("g3")), ("(g)^2", Leaf("g2")),
    ("abs(g) ^ 2", Binary("pow", Leaf("g"), Leaf("two"))),
    ("g ^ 2 ^ 2", Binary("pow", Leaf("g"), Binary("pow", Leaf("two"), Leaf("two")))),
    ("m ^ v", Binary("pow", Leaf("m"), Leaf("v"))),
    ("-m ^ 2", Unary("neg", Binary("pow", Leaf("m"), Leaf("two")))),
    ("abs(m) ^ -v", Binary("pow", Leaf("m"), Unary("neg", Leaf("v")))),
    ("1e-4 * w", Leaf("w1e-4")), ("w * 1e-1", Leaf("w1e-1")), ("0.01*w", Leaf("w1e-2")),
    ("g * 1e-3 * w", Binary("mul", Leaf("g"), Leaf("w1e-3"))),
    ("sign(g)", Leaf("sign_g")), ("sign(v)", Unary("sign", Leaf("v"))),
    ("sign(-g)", Unary("sign", Unary("neg", Leaf("g")))),
    ("log(abs(g))", Unary("log", Leaf("g"))), ("log(g)", Unary("log", Leaf("g"))),
    ("sqrt(abs(v))", Unary("sqrt", Leaf("v"))), ("sqrt(v)", Unary("sqrt", Leaf("v"))),
    ("g / (v + 1e-8)", Binary("div", Leaf("g"), Leaf("v"))),
    ("g / v", Binary("div", Leaf("g"), Leaf("v"))),
    ("g / (m - v + 1e-8)", Binary("div", Leaf("g"), Binary("sub", Leaf("m"), Leaf("v")))),
    ("m / (sqrt(v) + 1e-8)", Binary("div", Leaf("m"), Unary("sqrt", Leaf("v")))),
    ("2 * (m / (sqrt(v) + eps))", Binary("mul", Leaf("two"), Leaf("adam"))),
    ("m / (sqrt(abs(v)) + eps) * g", Binary("mul", Leaf("adam"), Leaf("g"))),
    ("gamma - noise + anneal", Binary("add", Binary("sub", Leaf("gamma"), Leaf("noise")),
                                      Leaf("anneal"))),
    ("ld * cd * rd", Binary("mul", Binary("mul", Leaf("ld"), Leaf("cd")), Leaf("rd"))),
    ("adam + sign_m - g2", Binary("sub", Binary("add", Leaf("adam"), Leaf("sign_m")),
                                  Leaf("g2"))),
    ("2*-g", Binary("mul", Leaf("two"), Unary("neg", Leaf("g")))),
])
def test_parse_natural_spellings(text, tree):
    assert parse_tree(text) == tree


# ------------------------------------------------------------------------------------------
# Printing
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tree, text", [
    (POWERSIGN, "exp(sign(g) * sign(m)) * g"),
    (ADDSIGN, "(1 + sign(g) * sign(m)) * g"),
    (Binary("sub", Leaf("g"), Binary("sub", Leaf("m"), Leaf("v"))), "g - (m - v)"),
    (Binary("sub", Binary("sub", Leaf("g"), Leaf("m")), Leaf("v")), "g - m - v"),
    (Binary("add", Leaf("g"), Binary("mul", Leaf("m"), Leaf("v"))), "g + m * v"),
    (Binary("mul", Leaf("g"), Leaf("w1e-4")), "g * (1e-4 * w)"),
    (Binary("mul", Leaf("w1e-4"), Leaf("g")), "1e-4 * w * g"),
    (Binary("mul", Leaf("g"), Leaf("adam")), "g * (m / (sqrt(v) + eps))"),
    (Binary("div", Binary("add", Leaf("g"), Leaf("m")), Binary("add", Leaf("v"), Leaf("m"))),
     "(g + m) / (v + m + 1e-8)"),
    (Binary("pow", Binary("add", Leaf("g"), Leaf("m")), Leaf("g2")), "abs(g + m) ^ (g^2)"),
    (Binary("pow", Leaf("g"), Unary("neg", Leaf("m"))), "abs(g) ^ (-m)"),
    (Unary("neg", Binary("mul", Leaf("g"), Leaf("m"))), "-(g * m)"),
    (Binary("mul", Unary("neg", Leaf("g")), Leaf("m")), "-g * m"),
    (Binary("sub", Leaf("g"), Unary("neg", Leaf("m"))), "g - -m"),
    (Unary("neg", Leaf("g3")), "-(g^3)"),
    (Unary("log", Leaf("g")), "log(abs(g))"),
    (Binary("keep", Unary("sqrt", Leaf("v")), Leaf("noise")), "sqrt(abs(v))"),
    (Binary("mul", Unary("id", Binary("keep", Binary("add", Leaf("g"), Leaf("m")),
                                      Leaf("v"))), Leaf("v")), "(g + m) * v"),
    (Unary("clip1e-5", Unary("drop0.3", Leaf("g"))), "clip(drop(g, 0.3), 1e-5)"),
])
def test_formula_parenthesizes_only_where_needed(tree, text):
    assert formula(tree) == text
    assert canonical(parse_tree(text)) == canonical(tree)  # and reads back


def test_formula_of_a_program_and_str():
    p = prog(grp("sign_g", "sign_m", fn="mul"), grp(0, "g", "exp", "id", "mul"))
    assert formula(p) == str(p) == "exp(sign(g) * sign(m)) * g"


# ------------------------------------------------------------------------------------------
# Round trips
# ------------------------------------------------------------------------------------------


@SETTINGS
@given(programs)
def test_formula_parse_round_trip_on_random_programs(p):
    text = formula(p)
    q = parse(text)
    assert formula(q) == text
    assert equivalent(p, q) and canonical(p) == canonical(q)
    assert program_hash(p) == program_hash(q)


@SETTINGS
@given(programs)
def test_tree_json_round_trips_on_random_programs(p):
    assert Program.from_tree(p.tree()).tree() == p.tree()
    assert Program.from_json(json.loads(json.dumps(p.to_json()))) == p
    assert Program.from_json(json.dumps(p.to_json())) == p
    c = canonical(p)
    assert canonical(Program.from_tree(c)) == c  # canonical trees are fixed points


def test_from_tree_rule():
    assert Program.from_tree(Leaf("g")).groups == (grp("g", "g"),)
    assert Program.from_tree(Unary("exp", Unary("neg", Leaf("m")))).groups == (
        grp("m", "m", "neg"), grp(0, 0, "exp"))
    shared = Binary("add", Leaf("g"), Leaf("m"))
    assert Program.from_tree(Binary("mul", shared, Unary("exp", shared))).groups == (
        grp("g", "m", fn="add"), grp(0, 0, "id", "exp", "mul"))
    p = prog(grp("g", "v", "sign", "sqrt", "div"), grp(0, "noise", "drop0.1", "neg", "sub"))
    assert Program.from_tree(p.tree()) == p


def test_examples_round_trip_exactly_through_json_and_formula():
    for text in ["exp(sign(g) * sign(m)) * g", "(1 + sign(g) * sign(m)) * g",
                 "m / (sqrt(v) + eps)", "g", "-g", "clip(g, 1e-3)", "drop(m, 0.5)",
                 "abs(g) ^ 2", "g^3 - 1e-4 * w", "ld * sign(m) + cd"]:
        p = parse(text)
        assert formula(p) == text
        assert Program.from_json(json.dumps(p.to_json())) == p


# ------------------------------------------------------------------------------------------
# Canonical form
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("a, b", [
    ("g + m", "m + g"), ("g * m", "m * g"), ("exp(g * (v + m))", "exp((m + v) * g)"),
    ("g * 1", "g"), ("1 * g", "g"), ("--g", "g"), ("g - -m", "g + m"), ("-g + m", "m - g"),
    ("g + -m", "g - m"), ("-g * m", "-(g * m)"), ("g * -m", "-(m * g)"), ("-g * -m", "g * m"),
    ("-g - m", "-(m + g)"), ("sign(sign(v))", "sign(v)"), ("sign(sign(g))", "sign(g)"),
    ("m / (sqrt(v) + eps) * 1", "adam"),
])
def test_equivalent_formulas(a, b):
    assert equivalent(parse(a), parse(b))
    assert program_hash(parse(a)) == program_hash(parse(b))


def test_equivalent_programs_differing_in_tokens():
    x = grp("g", "m", "exp", "id", "add")
    assert equivalent(prog(x), prog(grp("m", "g", "id", "exp", "add")))  # a + b ≡ b + a
    assert equivalent(prog(x, grp(0, "noise", fn="keep")), prog(x))  # keep(x, y) ≡ x
    assert equivalent(prog(x, grp(0, "one", fn="mul")), prog(x))  # x · 1 ≡ x
    assert equivalent(prog(x, grp("one", 0, fn="mul")), prog(x))  # 1 · x ≡ x
    assert equivalent(prog(grp("g", "g", "sign")), prog(grp("sign_g", "v")))  # sign(g) ≡ operand
    assert equivalent(prog(grp("v", "v", fn="add"), x), prog(x))  # a dead group
    assert equivalent(prog(x, grp(0, 0, fn="mul")), prog(x, x, grp(0, 1, fn="mul")))  # shared group
    assert canonical(prog(x, grp(0, "one", fn="mul"))) == Binary(
        "add", Leaf("m"), Unary("exp", Leaf("g")))


@pytest.mark.parametrize("a, b", [
    ("g - m", "m - g"), ("g / m", "m / g"), ("g ^ m", "m ^ g"), ("noise * noise", "noise"),
    ("drop(g, 0.1) + drop(g, 0.1)", "2 * drop(g, 0.1)"), ("g - g", "g * 2 - g * 2"),
    ("g * 2", "g"), ("g + g", "2 * g"), ("(g + m) + v", "g + (m + v)"), ("sign(g)", "g"),
    ("g * g", "g^2"), ("abs(g) ^ 2", "g^2"), ("m / (sqrt(v) + 1e-8)", "adam"),
    ("-g", "g"), ("exp(log(g))", "g"), ("sqrt(g) * sqrt(g)", "g"),
])
def test_not_equivalent(a, b):
    assert not equivalent(parse(a), parse(b))
    assert program_hash(parse(a)) != program_hash(parse(b))


def test_random_subtrees_are_never_merged():
    assert canonical(parse("noise * noise")) == Binary("mul", Leaf("noise"), Leaf("noise"))
    assert canonical(parse("anneal - anneal")) == Binary("sub", Leaf("anneal"), Leaf("anneal"))
    d = Unary("drop0.5", Leaf("g"))
    assert canonical(parse("drop(g, 0.5) - drop(g, 0.5)")) == Binary("sub", d, d)


def test_hash_is_sha256_hex_and_structural_equality_is_kept():
    a, b = parse("g + m"), parse("m + g")
    assert a != b and len({a, b}) == 2  # Program equality is structural
    h = program_hash(a)
    assert len(h) == 64 and int(h, 16) >= 0
    assert program_hash(a) == program_hash(canonical(b))


NO_RANDOM_OPERANDS = [o.name for o in OPERANDS if not o.random]
NO_DROP = [u.name for u in UNARY if not u.random]
deterministic = st.builds(lambda s, n: random_program(s, n, operands=NO_RANDOM_OPERANDS,
                                                      unaries=NO_DROP),
                          st.integers(0, 2**32 - 1), st.integers(1, 4))


@settings(max_examples=25, deadline=None)
@given(deterministic)
def test_canonical_form_computes_the_same_updates(p):
    """Every identity is exact: the compiled canonical tree's updates equal the program's,
    bit for bit (as numbers; NaN where the program's is NaN)."""
    rng = np.random.default_rng(0)
    params = {"a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
              "b": jnp.asarray([0.0, -1.5, 2.0], jnp.float32)}
    out = []
    for program in (p.tree(), canonical(p)):
        tx = compile_program(program, 1.0)
        state, ups = tx.init(params), []
        for step in range(3):
            g = {k: jnp.asarray(np.random.default_rng(step).normal(size=v.shape), v.dtype)
                 for k, v in params.items()}
            u, state = tx.update(g, state, params)
            ups.append(u)
        out.append(ups)
    for u, v in zip(*out, strict=True):
        for k in params:
            np.testing.assert_array_equal(np.asarray(u[k]), np.asarray(v[k]))


# ------------------------------------------------------------------------------------------
# Random programs
# ------------------------------------------------------------------------------------------


def test_random_program_is_reproducible_valid_and_covers_every_token():
    assert random_program(3, 4) == random_program(3, 4)
    assert random_program(3, 4) != random_program(4, 4)
    rng = np.random.default_rng(0)
    seen: set = set()
    for _ in range(400):
        p = random_program(rng, 3)
        assert len(p) == 3
        for i, group in enumerate(p.groups):
            seen.update((j, t if not isinstance(t, int) else ("ref", i, t))
                        for j, t in enumerate(group))
    for o in OPERANDS:
        assert (0, o.name) in seen and (1, o.name) in seen
    assert {(0, ("ref", 2, 0)), (0, ("ref", 2, 1)), (1, ("ref", 1, 0))} <= seen
    assert all((2, u.name) in seen and (3, u.name) in seen for u in UNARY)
    assert {t for j, t in seen if j == 4} == {"add", "sub", "mul", "div", "pow", "keep"}


def test_random_program_options_and_errors():
    p = random_program(0, 6, operands=["g"], unaries=["exp"], binaries=["add"])
    assert all(g[0] in ("g", *range(6)) and g[2] == "exp" and g[4] == "add" for g in p.groups)
    import jax

    assert random_program(jax.random.key(1), 2) == random_program(jax.random.key(1), 2)
    assert random_program(jax.random.PRNGKey(1), 2) == random_program(jax.random.PRNGKey(1), 2)
    with pytest.raises(ValueError, match="num_groups"):
        random_program(0, 0)
    with pytest.raises(ValueError, match="did you mean 'exp'"):
        random_program(0, 1, unaries=["exq"])
    with pytest.raises(TypeError, match="key_or_seed"):
        random_program("seed", 1)


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, message", [
    ("sgn(g)", r"unknown name 'sgn' at column 1 \(did you mean 'sign'\?\)"),
    ("exp(sing(g))", r"unknown name 'sing' at column 5 \(did you mean 'sign'\?\)"),
    ("g + gama", r"unknown name 'gama' at column 5 \(did you mean 'gamma'\?\)"),
    ("g + x", r"unknown name 'x' at column 5; names: "),
    ("clip(g, 0.01)", r"unsupported clip constant 0.01 at column 9; allowed: 1e-5, 1e-4, 1e-3"),
    ("drop(g, 0.2)", r"unsupported drop constant 0.2 at column 9; allowed: 0.1, 0.3, 0.5"),
    ("clip(g)", r"expected ',' in clip\(x, c\) with c in 1e-5, 1e-4, 1e-3"),
    ("(g + m", r"expected '\)' to close the '\(' at column 1, got the end of the formula "
               r"at column 7"),
    ("exp(g", r"expected '\)' to close exp\( at column 1"),
    ("g + m)", r"unexpected '\)' at column 6"),
    ("", r"empty formula"), ("   ", r"empty formula"),
    ("g +", r"expected an operand at column 4, got the end of the formula"),
    ("g * * m", r"expected an operand at column 5, got '\*'"),
    ("g $ m", r"unexpected character '\$' at column 3"),
    ("exp g", r"exp at column 1 is a function: write exp\(x\)"),
    ("exp(g, m)", r"exp takes one argument"),
    ("3 * g", r"unsupported constant 3 at column 1: the constants are 1 and 2"),
    ("1e-4 + g", r"unsupported constant 1e-4 at column 1"),
    ("w + g", r"w at column 1 must be scaled: c \* w with c in 1e-4, 1e-3, 1e-2, 1e-1"),
    ("abs(g)", r"abs\(x\) at column 1 is allowed only as log\(abs\(x\)\)"),
    ("g / (v + eps)", r"eps at column 10 is allowed only in m / \(sqrt\(v\) \+ eps\)"),
    ("g * m / (sqrt(v) + eps)", r"eps at column 20"),
    ("g + 1e-8", r"1e-8 at column 5 is allowed only in the protected division"),
])
def test_bad_formulas(text, message):
    with pytest.raises(ValueError, match=message):
        parse(text)


@pytest.mark.parametrize("groups, error, message", [
    ([], ValueError, "at least one group"),
    ([grp("g", 1, fn="add"), grp("g", "m", fn="add")], ValueError,
     r"group 0, position 1 \(o2\): reference to group 1; a group reads only earlier groups"),
    ([grp("g", "m", fn="add"), grp(1, "m", fn="add")], ValueError,
     r"group 1, position 0 \(o1\): reference to group 1; .*\(0\.\.0\)"),
    ([grp("g", -1, fn="add")], ValueError, r"reference to group -1"),
    ([grp("g", "sgn_m", fn="add")], ValueError,
     r"group 0, position 1 \(o2\): unknown operand 'sgn_m' \(did you mean 'sign_m'\?\)"),
    ([grp("g", "m", "exq", fn="add")], ValueError,
     r"group 0, position 2 \(u1\): unknown unary function 'exq' \(did you mean 'exp'\?\)"),
    ([grp("g", "m", fn="plus")], ValueError, r"position 4 \(b\): unknown binary function 'plus'"),
    ([grp("g", True, fn="add")], ValueError, r"unknown operand True"),
    ([("g", "m", "id", "id")], ValueError, r"group 0 has 4 tokens, expected 5"),
    (["g"], TypeError, r"group 0 must be a sequence of 5 tokens"),
    ("g", TypeError, r"groups must be a sequence"),
])
def test_bad_programs(groups, error, message):
    with pytest.raises(error, match=message):
        Program(groups)


def test_bad_trees_and_json():
    with pytest.raises(ValueError, match="unknown operand 'q'"):
        Program.from_tree(Binary("add", Leaf("q"), Leaf("g")))
    with pytest.raises(ValueError, match="unknown unary function 'nope'"):
        formula(Unary("nope", Leaf("g")))
    with pytest.raises(ValueError, match="unknown binary function 'nope'"):
        canonical(Binary("nope", Leaf("g"), Leaf("g")))
    with pytest.raises(ValueError, match="reference to group 3"):
        Program.from_json('[["g", 3, "id", "id", "add"]]')
    with pytest.raises(TypeError, match="Program or a tree node"):
        formula("g")
