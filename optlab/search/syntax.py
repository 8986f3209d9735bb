"""Formulas of programs: printing (:func:`formula`) and reading (:func:`parse_tree`).

:func:`optlab.search.program.parse` is ``Program.from_tree(parse_tree(text))``. The parser is a
hand-written tokenizer and precedence climber; errors are ``ValueError`` naming the column.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from optlab._checks import closest
from optlab.search.language import (
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

__all__ = ["formula", "parse_tree"]

_OPERAND_NAMES = tuple(o.name for o in OPERANDS)
_UNARY_NAMES = tuple(u.name for u in UNARY)

# ------------------------------------------------------------------------------------------
# Printing
# ------------------------------------------------------------------------------------------

ADD, MUL, NEG, POW, ATOM = 1, 2, 3, 4, 5  # precedence, lowest first


def _leaf_precedence(text: str) -> int:
    if " * " in text or " / " in text:
        return MUL
    return POW if "^" in text else ATOM


def as_tree(x: Any) -> Node:
    """The tree of a node or of a :class:`~optlab.search.program.Program` (its ``tree()``)."""
    if isinstance(x, Leaf | Unary | Binary):
        return x
    if callable(getattr(x, "tree", None)):
        return x.tree()
    raise TypeError(f"expected a Program or a tree node, got {type(x).__name__}")


def formula(x: Any) -> str:
    """Readable text of a program or tree, from the operands' formulas and the functions'
    templates, with parentheses only where needed (precedence, lowest first: ``+ -``,
    ``* /``, unary minus, ``^``; a right operand of the same precedence is parenthesized;
    unary minus and an exponent take a parenthesized argument unless it is atomic).
    ``keep(x, y)`` prints ``x``, ``id(x)`` prints ``x``. :func:`parse_tree` reads it back."""
    memo: dict[int, tuple[str, int]] = {}

    def fmt(n: Node) -> tuple[str, int]:
        if id(n) not in memo:
            memo[id(n)] = _fmt(n, fmt)
        return memo[id(n)]

    return fmt(as_tree(x))[0]


def _fmt(n: Node, fmt: Callable[[Node], tuple[str, int]]) -> tuple[str, int]:
    def wrap(child: Node, parens: bool) -> str:
        text, _ = fmt(child)
        return f"({text})" if parens else text

    if isinstance(n, Leaf):
        text = operand(n.operand).formula
        return text, _leaf_precedence(text)
    if isinstance(n, Unary):
        fn = unary(n.fn)
        if fn.name == "id":
            return fmt(n.x)
        if fn.name == "neg":
            return fn.template.format(x=wrap(n.x, fmt(n.x)[1] not in (NEG, ATOM))), NEG
        return fn.template.format(x=fmt(n.x)[0]), ATOM
    if isinstance(n, Binary):
        fn = binary(n.fn)
        if fn.name == "keep":
            return fmt(n.x)
        px, py = fmt(n.x)[1], fmt(n.y)[1]
        prec = {"add": ADD, "sub": ADD, "mul": MUL, "div": MUL, "pow": POW}[fn.name]
        if fn.name == "pow":  # abs(x) ^ y
            x, y = fmt(n.x)[0], wrap(n.y, py != ATOM)
        elif fn.name == "div":  # x / (y + 1e-8)
            x, y = wrap(n.x, px < MUL), fmt(n.y)[0]
        else:
            x, y = wrap(n.x, px < prec), wrap(n.y, py <= prec)
        return fn.template.format(x=x, y=y), prec
    raise TypeError(f"expected a Leaf, Unary or Binary node, got {type(n).__name__}")


# ------------------------------------------------------------------------------------------
# Parsing
# ------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z_0-9]*)|(?P<op>\*\*|[-+*/^(),]))")
_VARIABLES = {"g": "g", "m": "m", "v": "v", "gamma": "gamma", "noise": "noise",
              "anneal": "anneal", "ld": "ld", "cd": "cd", "rd": "rd"}
_ALIASES = {n: n for n in _OPERAND_NAMES if n.isidentifier()}  # token names: adam, sign_g...
_FUNCTIONS = ("exp", "log", "sqrt", "sign", "abs", "clip", "drop")
_KNOWN = sorted({*_VARIABLES, *_ALIASES, *_FUNCTIONS, "w", "eps"})
_WEIGHTS = {float(n[1:]): n for n in _OPERAND_NAMES if re.fullmatch(r"w\d.*", n)}
_CLIPS = {float(u[4:]): u for u in _UNARY_NAMES if u.startswith("clip")}
_DROPS = {float(u[4:]): u for u in _UNARY_NAMES if u.startswith("drop")}
_CONSTANTS = {1.0: "one", 2.0: "two"}


@dataclasses.dataclass(frozen=True)
class _Tok:
    kind: str  # "num", "name", "op", "end"
    text: str
    col: int  # 1-based


@dataclasses.dataclass(frozen=True)
class _Marker:
    """A piece that is valid only inside a larger pattern: ``abs(x)``, ``1e-8``, ``eps``."""

    kind: str
    col: int
    x: Any = None


_MARKER_ERRORS = {
    "abs": "abs(x) at column {col} is allowed only as log(abs(x)), sqrt(abs(x)) or "
           "abs(x) ^ y",
    "1e-8": "1e-8 at column {col} is allowed only in the protected division x / (y + 1e-8)",
    "eps": "eps at column {col} is allowed only in m / (sqrt(v) + eps) (adam) and "
           "g / (sqrt(v) + eps) (rmsprop), written as a unit (parenthesize it in a product)",
}


def _fmt_consts(values: Iterable[float], names: dict[float, str], cut: int) -> str:
    return ", ".join(names[v][cut:] for v in sorted(values))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks: list[_Tok] = []
        pos = 0
        while True:
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos == len(text):
                break
            m = _TOKEN.match(text, pos)
            if m is None:
                self.fail(f"unexpected character {text[pos]!r} at column {pos + 1}", pos + 1)
            kind = m.lastgroup or "op"
            tok = m.group(kind)
            self.toks.append(_Tok(kind, "^" if tok == "**" else tok, m.start(kind) + 1))
            pos = m.end()
        self.toks.append(_Tok("end", "", len(text) + 1))
        self.i = 0

    def fail(self, message: str, col: int) -> NoReturn:
        raise ValueError(f"{message}\n  {self.text}\n  {' ' * (col - 1)}^")

    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def at(self, text: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind == "op" and tok.text == text

    def expect(self, text: str, what: str) -> _Tok:
        tok = self.peek()
        if not self.at(text):
            got = "the end of the formula" if tok.kind == "end" else repr(tok.text)
            self.fail(f"expected {text!r} {what}, got {got} at column {tok.col}", tok.col)
        return self.take()

    def parse(self) -> Node:
        if self.peek().kind == "end":
            self.fail("empty formula", 1)
        node = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            self.fail(f"unexpected {tok.text!r} at column {tok.col}", tok.col)
        self.check(node)
        return node

    def check(self, node: Any) -> None:
        if isinstance(node, _Marker):
            self.fail(_MARKER_ERRORS[node.kind].format(col=node.col), node.col)
        if isinstance(node, Unary):
            self.check(node.x)
        if isinstance(node, Binary):
            self.check(node.x)
            self.check(node.y)

    def expr(self) -> Any:
        left = self.term()
        while self.at("+") or self.at("-"):
            fn = "add" if self.take().text == "+" else "sub"
            left = Binary(fn, left, self.term())
        return left

    def term(self) -> Any:
        left = self.signed()
        while self.at("*") or self.at("/"):
            tok = self.take()
            right = self.signed()
            left = Binary("mul", left, right) if tok.text == "*" else self.divide(left, right)
        return left

    def divide(self, x: Any, y: Any) -> Any:
        if not (isinstance(y, Binary) and y.fn == "add" and isinstance(y.y, _Marker)
                and y.y.kind in ("1e-8", "eps")):
            return Binary("div", x, y)  # x / y
        if y.y.kind == "1e-8":
            return Binary("div", x, y.x)  # x / (y + 1e-8)
        if y.x == Unary("sqrt", Leaf("v")) and x in (Leaf("m"), Leaf("g")):
            return Leaf("adam" if x == Leaf("m") else "rmsprop")
        return Binary("div", x, y)  # the marker is reported by check()

    def signed(self) -> Any:
        if self.at("-"):
            self.take()
            return Unary("neg", self.signed())
        return self.power()

    def power(self) -> Any:
        base = self.primary()
        if not self.at("^"):
            return base
        nxt = self.peek(1)
        if (base == Leaf("g") and nxt.kind == "num" and float(nxt.text) in (2.0, 3.0)
                and not self.at("^", 2)):
            self.i += 2
            return Leaf("g2" if float(nxt.text) == 2.0 else "g3")  # g^2, g^3: operands
        self.take()
        exponent = self.signed()
        if isinstance(base, _Marker) and base.kind == "abs":
            base = base.x
        return Binary("pow", base, exponent)

    def primary(self) -> Any:
        tok = self.take()
        if tok.kind == "num":
            return self.number(tok)
        if tok.kind == "name":
            return self.name(tok)
        if tok.kind == "op" and tok.text == "(":
            node = self.expr()
            self.expect(")", f"to close the '(' at column {tok.col}")
            return node
        got = "the end of the formula" if tok.kind == "end" else repr(tok.text)
        self.fail(f"expected an operand at column {tok.col}, got {got}", tok.col)

    def number(self, tok: _Tok) -> Any:
        value = float(tok.text)
        if value in _WEIGHTS:
            if self.at("*") and self.peek(1).kind == "name" and self.peek(1).text == "w":
                self.i += 2
                return Leaf(_WEIGHTS[value])
        elif value in _CONSTANTS:
            return Leaf(_CONSTANTS[value])
        elif value == 1e-8:
            return _Marker("1e-8", tok.col)
        weights = _fmt_consts(_WEIGHTS, _WEIGHTS, 1)
        self.fail(f"unsupported constant {tok.text} at column {tok.col}: the constants are 1 "
                  f"and 2; also c * w with c in {weights}, g^2, g^3, clip(x, c), drop(x, p) "
                  f"and x / (y + 1e-8)", tok.col)

    def name(self, tok: _Tok) -> Any:
        name = tok.text
        if name in _FUNCTIONS:
            return self.call(tok)
        if name in _VARIABLES or name in _ALIASES:
            return Leaf(_VARIABLES.get(name) or _ALIASES[name])
        if name == "eps":
            return _Marker("eps", tok.col)
        if name == "w":
            nxt = self.peek(1)
            if self.at("*") and nxt.kind == "num" and float(nxt.text) in _WEIGHTS:
                self.i += 2
                return Leaf(_WEIGHTS[float(nxt.text)])
            weights = _fmt_consts(_WEIGHTS, _WEIGHTS, 1)
            self.fail(f"w at column {tok.col} must be scaled: c * w with c in {weights}",
                      tok.col)
        hint = closest(name, _KNOWN)
        suggestion = f" (did you mean {hint!r}?)" if hint else f"; names: {', '.join(_KNOWN)}"
        self.fail(f"unknown name {name!r} at column {tok.col}{suggestion}", tok.col)

    def call(self, tok: _Tok) -> Any:
        fn = tok.text
        consts = {"clip": _CLIPS, "drop": _DROPS}.get(fn)
        usage = f"{fn}(x, {'c' if fn == 'clip' else 'p'})" if consts else f"{fn}(x)"
        if not self.at("("):
            self.fail(f"{fn} at column {tok.col} is a function: write {usage}", tok.col)
        self.take()
        x = self.expr()
        if consts is not None:
            allowed = _fmt_consts(consts, consts, 4)
            self.expect(",", f"in {usage} with {usage[-2]} in {allowed}")
            c = self.take()
            if c.kind != "num" or float(c.text) not in consts:
                self.fail(f"unsupported {fn} constant {c.text or '(none)'} at column {c.col}; "
                          f"allowed: {allowed}", c.col)
            self.expect(")", f"to close {fn}( at column {tok.col}")
            return Unary(consts[float(c.text)], x)
        self.expect(")", f"to close {fn}( at column {tok.col} ({fn} takes one argument)")
        if fn == "abs":
            return _Marker("abs", tok.col, x)
        if fn in ("log", "sqrt") and isinstance(x, _Marker) and x.kind == "abs":
            x = x.x  # log(abs(x)), sqrt(abs(x))
        if fn == "sign" and x in (Leaf("g"), Leaf("m")):
            return Leaf(f"sign_{x.operand}")  # the operands sign(g), sign(m)
        return Unary(fn, x)


def parse_tree(text: str) -> Node:
    """The tree of a formula (anything :func:`formula` prints, and natural spellings).

    Grammar (lowest precedence first; ``+ - * /`` left-associative, ``^`` right)::

        expr   := term (("+" | "-") term)*
        term   := signed (("*" | "/") signed)*          x / y and x / (y + 1e-8): div
        signed := "-" signed | power                     unary minus: neg
        power  := primary ["^" signed]                  x ^ y, abs(x) ^ y: pow; ** = ^
        primary:= "(" expr ")" | NAME | NUMBER | FN "(" expr ["," NUMBER] ")"

    Operands: ``g m v gamma noise anneal ld cd rd``, ``1`` and ``2``, ``c * w`` or ``w * c``
    (c in 1e-4, 1e-3, 1e-2, 1e-1), ``g^2`` and ``g^3`` (when the base is g and the exponent
    the literal 2 or 3), ``sign(g)`` and ``sign(m)`` (when the argument is exactly g or m),
    ``m / (sqrt(v) + eps)`` (adam) and ``g / (sqrt(v) + eps)`` (rmsprop), and the operand
    tokens that are identifiers (``adam``, ``sign_g``, ``g2``, ``one``...). Functions:
    ``exp``, ``log(abs(x))`` or ``log(x)``, ``sqrt(abs(x))`` or ``sqrt(x)``, ``sign``,
    ``clip(x, c)`` (c in 1e-5, 1e-4, 1e-3), ``drop(x, p)`` (p in 0.1, 0.3, 0.5). ``abs``,
    ``1e-8`` and ``eps`` exist only inside those patterns. Numbers compare by value
    (``0.0001 * w`` is ``1e-4 * w``). Errors are ``ValueError`` naming the column.
    """
    if not isinstance(text, str):
        raise TypeError(f"a formula must be a str, got {type(text).__name__}")
    return _Parser(text).parse()
