"""Programs of Bello et al.'s search space: token groups ↔ trees ↔ formulas, canonical form.

A :class:`Program` is a tuple of 5-token groups ``(o₁, o₂, u₁, u₂, b)`` computing
``b(u₁(o₁), u₂(o₂))``. An operand token is an operand name (:data:`~optlab.search.OPERANDS`)
or the int ``k`` of an earlier group, whose result it reads; the last group is the update
direction. :meth:`Program.tree` expands it into an expression tree, :func:`formula` prints the
tree and :func:`parse` reads the formula back (both in :mod:`optlab.search.syntax`).

Semantics are the tree's (as the compiler evaluates it): a subtree that occurs twice has one
value per step, random or not, so a group referenced twice and two identical groups are the
same program. :func:`canonical` rewrites a tree with exact identities only (listed there) so
that programs computing the same function hash alike (:func:`program_hash`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from optlab._checks import closest
from optlab.search.language import (
    BINARY,
    OPERANDS,
    UNARY,
    Binary,
    Leaf,
    Node,
    Unary,
    binary,
    operand,
    unary,
)
from optlab.search.syntax import as_tree, formula, parse_tree

__all__ = [
    "Program",
    "canonical",
    "equivalent",
    "formula",
    "parse",
    "parse_tree",
    "program_hash",
    "random_program",
]

Token = str | int
Group = tuple[Token, Token, str, str, str]
_POSITIONS = ("o1", "o2", "u1", "u2", "b")
_OPERAND_NAMES = tuple(o.name for o in OPERANDS)
_UNARY_NAMES = tuple(u.name for u in UNARY)
_BINARY_NAMES = tuple(b.name for b in BINARY)


def _unknown(kind: str, name: Any, valid: Iterable[str]) -> str:
    hint = closest(name, valid, cutoff=0.5)
    return f"unknown {kind} {name!r}" + (f" (did you mean {hint!r}?)" if hint else "")


def _check_group(i: int, group: Any) -> Group:
    if isinstance(group, str | bytes) or not isinstance(group, Sequence):
        raise TypeError(f"group {i} must be a sequence of 5 tokens (o1, o2, u1, u2, b), "
                        f"got {type(group).__name__} {group!r}")
    if len(group) != 5:
        raise ValueError(f"group {i} has {len(group)} tokens, expected 5 (o1, o2, u1, u2, b): "
                         f"{list(group)!r}")
    out: list[Token] = []
    for j, tok in enumerate(group):
        where = f"group {i}, position {j} ({_POSITIONS[j]})"
        if j < 2:
            if isinstance(tok, int | np.integer) and not isinstance(tok, bool | np.bool_):
                if not 0 <= tok < i:
                    earlier = f"0..{i - 1}" if i else "none: group 0 reads operands only"
                    raise ValueError(f"{where}: reference to group {int(tok)}; a group reads "
                                     f"only earlier groups ({earlier})")
                out.append(int(tok))
                continue
            kind, valid = "operand", _OPERAND_NAMES
        else:
            kind, valid = ("unary function", _UNARY_NAMES) if j < 4 else ("binary function",
                                                                          _BINARY_NAMES)
        if not isinstance(tok, str) or tok not in valid:
            also = " or an earlier group's index" if j < 2 else ""
            raise ValueError(f"{where}: {_unknown(kind, tok, valid)}; valid: "
                             f"{', '.join(valid)}{also}")
        out.append(tok)
    return tuple(out)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class Program:
    """A program: groups ``(o₁, o₂, u₁, u₂, b)``, validated on construction (lists are fine).

    Equality and hash are structural; :func:`equivalent` compares canonical forms.
    """

    groups: tuple[Group, ...]

    def __post_init__(self) -> None:
        groups = self.groups
        if isinstance(groups, str | bytes) or not isinstance(groups, Sequence):
            raise TypeError(f"groups must be a sequence of groups, got {type(groups).__name__}")
        if not groups:
            raise ValueError("a program needs at least one group")
        object.__setattr__(self, "groups",
                           tuple(_check_group(i, g) for i, g in enumerate(groups)))

    def __len__(self) -> int:
        return len(self.groups)

    def __str__(self) -> str:
        return formula(self)

    def tree(self) -> Node:
        """The expression tree of the last group (references expanded; ``id`` and ``keep``
        kept as they are). Trees of shared groups are shared objects."""
        trees: list[Node] = []
        for o1, o2, u1, u2, b in self.groups:
            x, y = (trees[o] if isinstance(o, int) else Leaf(o) for o in (o1, o2))
            trees.append(Binary(b, Unary(u1, x), Unary(u2, y)))
        return trees[-1]

    @classmethod
    def from_tree(cls, node: Node) -> Program:
        """The program of a tree; ``Program.from_tree(p.tree()) == p`` for programs without
        duplicate groups, and ``from_tree(t).tree()`` is ``t`` with ``id`` inserted.

        Rule: every distinct Binary subtree is a group (children first; identical subtrees
        share one group). A Binary's child ``Unary(u, z)`` gives the tokens ``u`` and the
        operand of ``z``; any other child ``c`` gives ``"id"`` and the operand of ``c``. The
        operand of a Leaf is its name; of a Binary, its group's index; of a Unary ``u(z)``
        that is not a Binary's child (a chain ``u(v(z))`` or the root), the index of a group
        ``(o, o, u, "id", "keep")`` with ``o`` the operand of ``z``. A Leaf root ``a`` is the
        group ``(a, a, "id", "id", "keep")``.
        """
        groups: list[Group] = []
        memo: dict[Node, int] = {}

        def add(group: Group, key: Node) -> int:
            groups.append(group)
            memo[key] = len(groups) - 1
            return memo[key]

        def side(c: Node) -> tuple[str, Token]:
            if isinstance(c, Unary):
                unary(c.fn)
                return c.fn, ref(c.x)
            return "id", ref(c)

        def ref(n: Node) -> Token:
            if isinstance(n, Leaf):
                return operand(n.operand).name
            if n in memo:
                return memo[n]
            if isinstance(n, Binary):
                binary(n.fn)
                (u1, o1), (u2, o2) = side(n.x), side(n.y)
                return add((o1, o2, u1, u2, n.fn), n)
            if isinstance(n, Unary):
                unary(n.fn)
                o = ref(n.x)
                return add((o, o, n.fn, "id", "keep"), n)
            raise TypeError(f"expected a Leaf, Unary or Binary node, got {type(n).__name__}")

        root = ref(node)
        if not isinstance(root, int):
            groups.append((root, root, "id", "id", "keep"))
        return cls(tuple(groups))

    def to_json(self) -> list[list[Token]]:
        """A JSON-ready value: a list of groups, each a list of 5 tokens (str or int)."""
        return [list(g) for g in self.groups]

    @classmethod
    def from_json(cls, data: str | Sequence[Sequence[Token]]) -> Program:
        """The program of :meth:`to_json`'s value or of its JSON text."""
        return cls(json.loads(data) if isinstance(data, str) else data)


def parse(text: str) -> Program:
    """Reads a formula (anything :func:`formula` prints, and natural spellings) as a program:
    ``Program.from_tree(parse_tree(text))``; the grammar is :func:`parse_tree`'s."""
    return Program.from_tree(parse_tree(text))


# ------------------------------------------------------------------------------------------
# Canonical form
# ------------------------------------------------------------------------------------------


def _data(n: Node) -> Any:
    if isinstance(n, Leaf):
        return n.operand
    if isinstance(n, Unary):
        return [n.fn, _data(n.x)]
    return [n.fn, _data(n.x), _data(n.y)]


def _key(n: Node) -> str:
    return json.dumps(_data(n), separators=(",", ":"))


def _is_neg(n: Node) -> bool:
    return isinstance(n, Unary) and n.fn == "neg"


def _rules(n: Node) -> Node:
    """One node whose children are canonical → canonical (each rule is exact in IEEE
    arithmetic and compares no two subtrees for equality)."""
    if isinstance(n, Unary):
        x = n.x
        if n.fn == "id":  # id(x) → x
            return x
        if n.fn == "neg" and _is_neg(x):  # −(−x) → x
            return x.x  # type: ignore[union-attr]
        if n.fn == "sign":
            if x in (Leaf("g"), Leaf("m")):  # sign(g) → operand sign_g; sign(m) → sign_m
                return Leaf(f"sign_{x.operand}")  # type: ignore[union-attr]
            if (isinstance(x, Unary) and x.fn == "sign") or x in (Leaf("sign_g"),
                                                                  Leaf("sign_m")):
                return x  # sign(sign(x)) → sign(x)
        return n
    if not isinstance(n, Binary):
        return n
    x, y = n.x, n.y
    if n.fn == "keep":  # keep(x, y) → x
        return x
    if n.fn == "mul":
        if _is_neg(x) or _is_neg(y):  # (−x)·y, x·(−y) → −(x·y); (−x)·(−y) → x·y
            inner = _rules(Binary("mul", x.x if _is_neg(x) else x,  # type: ignore[union-attr]
                                  y.x if _is_neg(y) else y))  # type: ignore[union-attr]
            return inner if _is_neg(x) and _is_neg(y) else _rules(Unary("neg", inner))
        if y == Leaf("one"):  # x·1 → x
            return x
        if x == Leaf("one"):  # 1·x → x
            return y
    if n.fn == "sub":
        if _is_neg(y):  # x − (−y) → x + y
            return _rules(Binary("add", x, y.x))  # type: ignore[union-attr]
        if _is_neg(x):  # (−x) − y → −(x + y)
            return _rules(Unary("neg", _rules(Binary("add", x.x, y))))  # type: ignore
    if binary(n.fn).commutative and _key(y) < _key(x):  # x + y, x·y: sorted arguments
        x, y = y, x
        n = Binary(n.fn, x, y)
    if n.fn == "add":
        if _is_neg(y):  # x + (−y) → x − y
            return _rules(Binary("sub", x, y.x))  # type: ignore[union-attr]
        if _is_neg(x):  # (−x) + y → y − x
            return _rules(Binary("sub", y, x.x))  # type: ignore[union-attr]
    return n


def canonical(x: Program | Node) -> Node:
    """The canonical tree of a program or tree: bottom-up, until no rule applies,

    * ``id(x)`` → ``x``; ``keep(x, y)`` → ``x``;
    * ``sign(g)`` → the operand ``sign_g``, ``sign(m)`` → ``sign_m``; ``sign(sign(x))`` →
      ``sign(x)`` (also for the sign operands);
    * ``−(−x)`` → ``x``; ``(−x)·y`` and ``x·(−y)`` → ``−(x·y)``, ``(−x)·(−y)`` → ``x·y``;
      ``x − (−y)`` → ``x + y``;
      ``(−x) − y`` → ``−(x + y)``; ``x + (−y)`` → ``x − y``; ``(−x) + y`` → ``y − x``;
    * ``x·1`` and ``1·x`` → ``x``;
    * the arguments of ``+`` and ``·`` sorted by their canonical JSON text.

    All are exact in floating point (negation is exact, rounding is symmetric, IEEE ``+``
    and ``·`` commute), so the program's update is unchanged (with random operands or
    dropout: unchanged in distribution). No rule equates two subtrees (no ``x − x``,
    ``x / x``, ``x·x``): with noise or dropout two occurrences need not be the same draw,
    ``x − x`` is NaN for infinite x, and there is no zero operand. Dead groups (not read by
    the last) vanish. Associativity is not used (floating point is not associative).
    """
    memo: dict[int, Node] = {}

    def canon(n: Node) -> Node:
        if id(n) in memo:
            return memo[id(n)]
        if isinstance(n, Unary):
            out = _rules(Unary(unary(n.fn).name, canon(n.x)))
        elif isinstance(n, Binary):
            out = _rules(Binary(binary(n.fn).name, canon(n.x), canon(n.y)))
        else:
            out = Leaf(operand(n.operand).name)
        memo[id(n)] = out
        return out

    return canon(as_tree(x))


def program_hash(x: Program | Node) -> str:
    """sha256 (hex) of the canonical tree's JSON: equal for :func:`equivalent` programs."""
    return hashlib.sha256(_key(canonical(x)).encode()).hexdigest()


def equivalent(a: Program | Node, b: Program | Node) -> bool:
    """Whether two programs (or trees) have the same canonical form."""
    return canonical(a) == canonical(b)


# ------------------------------------------------------------------------------------------
# Random programs
# ------------------------------------------------------------------------------------------


def _rng(key_or_seed: Any) -> np.random.Generator:
    if isinstance(key_or_seed, np.random.Generator):
        return key_or_seed
    if isinstance(key_or_seed, int | np.integer) and not isinstance(key_or_seed, bool):
        return np.random.default_rng(int(key_or_seed))
    import jax

    if isinstance(key_or_seed, jax.Array):
        data = key_or_seed
        if jax.dtypes.issubdtype(data.dtype, jax.dtypes.prng_key):
            data = jax.random.key_data(data)
        return np.random.default_rng(np.asarray(data).astype(np.uint32).ravel().tolist())
    raise TypeError("key_or_seed must be an int, a numpy Generator or a JAX PRNG key, got "
                    f"{type(key_or_seed).__name__}")


def random_program(key_or_seed: Any, num_groups: int, *,
                   operands: Sequence[str] | None = None,
                   unaries: Sequence[str] | None = None,
                   binaries: Sequence[str] | None = None) -> Program:
    """A uniformly random valid program of ``num_groups`` groups: each token uniform over its
    choices (operands: the operand names, or a subset, and every earlier group). A numpy
    Generator is advanced; an int seed or a JAX key gives a reproducible program."""
    if isinstance(num_groups, bool) or not isinstance(num_groups, int | np.integer) \
            or num_groups < 1:
        raise ValueError(f"num_groups must be an int >= 1, got {num_groups!r}")
    rng = _rng(key_or_seed)
    ops = list(_OPERAND_NAMES if operands is None else operands)
    us = list(_UNARY_NAMES if unaries is None else unaries)
    bs = list(_BINARY_NAMES if binaries is None else binaries)
    if not (ops and us and bs):
        raise ValueError("operands, unaries and binaries must not be empty")
    groups = []
    for i in range(int(num_groups)):
        choices: list[Token] = [*ops, *range(i)]
        o1, o2 = (choices[k] for k in rng.integers(len(choices), size=2))
        u1, u2 = (us[k] for k in rng.integers(len(us), size=2))
        groups.append((o1, o2, u1, u2, bs[rng.integers(len(bs))]))
    return Program(tuple(groups))  # validates a given subset's names
