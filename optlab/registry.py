"""Names → objects: the optimizers and schedules the command line and experiments accept.

Values on the command line are literals (``0.99``, ``true``, ``none``) or a schedule call
such as ``cosine_decay(decay_steps=2000)`` — parsed with :mod:`ast`, never evaluated.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import optax

import optlab
from optlab import schedules
from optlab._checks import closest, unknown_name


def momentum(learning_rate: float, momentum: float = 0.9, nesterov: bool = False):
    """SGD with heavy-ball momentum 0.9 (Polyak 1964): optlab.sgd(lr, momentum=0.9)."""
    return optlab.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


def lipschitz_sgd(learning_rate: float = 1.0, momentum: float | None = None,
                  max_learning_rate: float | None = None, *, num_classes: int):
    """SGD with the LipschitzLR step learning_rate / K_t (Yedida & Saha 2019), K_t from the
    penultimate activations each step: --lr scales 1/K (1 is the paper's step)."""
    return optlab.lipschitz_sgd(num_classes, momentum=momentum,
                                max_learning_rate=max_learning_rate, scale=learning_rate)


def polyak_sgd(learning_rate: float = 1.0, scaling: float = 1.0, f_min: float = 0.0,
               eps: float = 0.0, variant: str = "sps"):
    """SGD with the stochastic Polyak step min(η_max, (f − f*)/(c‖g‖² + ε)) (Loizou et al.
    2021): --lr is its maximum step η_max (optax's max_learning_rate)."""
    return optlab.polyak_sgd(max_learning_rate=learning_rate, scaling=scaling, f_min=f_min,
                             eps=eps, variant=variant)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    **{name: getattr(optlab, name) for name in optlab.OPTIMIZERS},
    "momentum": momentum,
    "lipschitz_sgd": lipschitz_sgd,
    "polyak_sgd": polyak_sgd,
    "kfac": optlab.kfac,  # reads kfac_stats= (optlab.train supplies them)
}

# Schedules accepted by name; helpers that return step lists are not schedules.
SCHEDULES: dict[str, Callable[..., schedules.Schedule]] = {
    name: getattr(schedules, name) for name in schedules.__all__
    if name not in ("Schedule", "sgdr_restart_steps", "snapshot_steps")}

# The argument that sets a schedule's scale; a learning-rate schedule given by name is built
# with it = 1 and multiplies the run's learning rate.
_SCALE_ARGS = ("value", "init_value", "eta_max", "schedule_or_value")
# Step-count arguments that default to the run's total number of steps when omitted.
_TOTAL_STEP_ARGS = ("decay_steps", "total_steps")


# LaTeX → plain text for docstrings shown on the command line.
_TEX_WORDS = {r"\quad": "  ", r"\qquad": "  ", r"\,": " ", r"\;": " ", r"\!": "",
              r"\cdot": "·", r"\sim": "~", r"\le": "≤", r"\ge": "≥", r"\sum": "Σ",
              r"\infty": "∞", r"\left": "", r"\right": "", r"\Big": "", r"\big": "",
              r"\_": "_"}


def plain_text(text: str) -> str:
    """Docstring markup (reST roles, ``literals``, LaTeX in :math:) as plain text."""
    text = re.sub(r":math:`([^`]*)`", lambda m: _tex(m.group(1)), text)
    text = re.sub(r":\w+:`~?([^`]*)`", r"\1", text)  # :func:`x` → x
    return text.replace("``", "")


def _group(tex: str, i: int) -> tuple[str, int]:
    """The balanced ``{...}`` group (or single character) at ``tex[i]`` and the index after."""
    while i < len(tex) and tex[i] == " ":
        i += 1
    if i >= len(tex) or tex[i] != "{":
        return tex[i: i + 1], i + 1
    depth = 0
    for j in range(i, len(tex)):
        depth += {"{": 1, "}": -1}.get(tex[j], 0)
        if depth == 0:
            return tex[i + 1: j], j + 1
    return tex[i + 1:], len(tex)


def _commands(tex: str) -> str:
    """Expands the LaTeX commands with arguments, innermost first."""
    pattern = re.compile(r"\\(frac|tfrac|sqrt|mathrm|operatorname|text|mathcal|mathbf|hat|bar)"
                         r"(?![a-zA-Z])")
    m = pattern.search(tex)
    if m is None:
        return tex
    a, i = _group(tex, m.end())
    a = _commands(a)
    name = m.group(1)
    if name in ("frac", "tfrac"):
        b, i = _group(tex, i)
        b = _commands(b)
        a, b = (x if re.fullmatch(r"[\w.^_{}]*", x) else f"({x})" for x in (a, b))
        out = f"{a}/{b}"
    elif name == "sqrt":
        out = f"√{a}" if re.fullmatch(r"\w", a) else f"√({a})"
    elif name in ("hat", "bar"):
        out = a[:1] + ("\u0302" if name == "hat" else "\u0304") + a[1:]
    else:
        out = a
    return tex[: m.start()] + out + _commands(tex[i:])


def _tex(tex: str) -> str:
    for word, plain in _TEX_WORDS.items():
        tex = re.sub(re.escape(word) + r"(?![a-zA-Z])", lambda _, p=plain: p, tex)
    tex = _commands(tex.replace("\\\\", ", "))
    tex = re.sub(r"\\([a-zA-Z]+)", r"\1", tex)  # \max → max
    for _ in range(3):
        tex = re.sub(r"(?<![_^])\{([^{}]*)\}", r"\1", tex)  # braces that only group
    return re.sub(r" {2,}", " ", tex.replace("\\", "")).strip()


# A full stop that ends a sentence: not after "al", "e.g", "i.e", "vs" or a single letter.
_SENTENCE_END = re.compile(r"(?<!\bal)(?<!e\.g)(?<!i\.e)(?<!\bvs)(?<!\b\w)\.(?=\s|$)")


def paragraphs(obj: Callable) -> list[str]:
    """The docstring of ``obj`` as plain-text paragraphs (``.. math::`` blocks included)."""
    doc = inspect.getdoc(obj) or ""
    out = []
    for block in re.split(r"\n\s*\n", doc):
        lines = [line.strip() for line in block.strip().splitlines()]
        if not lines:
            continue
        if lines[0].startswith(".. math::"):
            tex = _tex(" ".join(lines[1:]).replace("\\\\", "\n"))
            out.append("\n".join(line.strip() for line in tex.splitlines()))
        else:
            out.append(plain_text(" ".join(lines)))
    return [p for p in out if p]


def describe(obj: Callable) -> str:
    """The first sentence of a docstring, as plain text."""
    first = next(iter(paragraphs(obj)), "")
    end = _SENTENCE_END.search(first)
    return first[: end.end()] if end else first


def optimizer(name: str) -> Callable[..., optax.GradientTransformation]:
    if name not in OPTIMIZERS:
        raise unknown_name("optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name]


def parameters(fn: Callable) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def check_arguments(fn_name: str, fn: Callable, names: Iterable[str]) -> None:
    """Raises a ValueError for any name that ``fn`` does not accept."""
    valid = parameters(fn)
    for n in names:
        if n not in valid:
            raise unknown_name(f"argument of {fn_name}", n, valid)


_BOOLS = {"true": True, "false": False, "none": None}
_EXPECTED = ("expected a number, true/false/none, a list of numbers or a schedule call like "
             "cosine_decay(decay_steps=1000)")


def _parse(text: str, expected: str) -> ast.AST:
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot parse {text!r}: {expected}") from None


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Name) and node.id.lower() in _BOOLS:
        return _BOOLS[node.id.lower()]
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise ValueError(f"cannot parse {text!r}: {_EXPECTED}") from None


def _call(node: ast.AST, text: str) -> tuple[str, dict[str, Any]]:
    if isinstance(node, ast.Name):
        return node.id, {}
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)) or node.args:
        raise ValueError(f"cannot parse {text!r}: expected name(key=value, ...) with keyword "
                         "arguments only")
    return node.func.id, {k.arg: _literal(k.value, text) for k in node.keywords}


def parse_call(text: str) -> tuple[str, dict[str, Any]]:
    """``"name(a=1, b=2)"`` or ``"name"`` → ``("name", {"a": 1, "b": 2})``."""
    return _call(_parse(text, "expected name or name(key=value, ...)"), text)


def parse_value(text: str, total_steps: int | None = None) -> Any:
    """A literal or a schedule call (the schedule is built with its own arguments)."""
    node = _parse(text, _EXPECTED)
    is_bool = isinstance(node, ast.Name) and node.id.lower() in _BOOLS
    if isinstance(node, ast.Name) and not is_bool and node.id not in SCHEDULES:
        hint = closest(node.id, SCHEDULES, cutoff=0.6)
        raise ValueError(f"cannot parse {text!r}: {_EXPECTED}"
                         + (f" (did you mean the schedule {hint!r}?)" if hint else ""))
    if isinstance(node, ast.Call | ast.Name) and not is_bool:
        name, kwargs = _call(node, text)
        return schedule(name, kwargs, total_steps=total_steps)
    return _literal(node, text)


def schedule(name: str, kwargs: Mapping[str, Any], *, total_steps: int | None = None,
             unit: bool = False) -> schedules.Schedule:
    """Builds schedule ``name``; ``unit=True`` sets its scale argument to 1 (a multiplier)."""
    if name not in SCHEDULES:
        raise unknown_name("schedule", name, SCHEDULES)
    fn = SCHEDULES[name]
    check_arguments(f"schedule {name}", fn, kwargs)
    kwargs = dict(kwargs)
    params = parameters(fn)
    if unit:
        scale = next((p for p in params if p in _SCALE_ARGS), None)
        if scale is not None:
            if scale in kwargs:
                raise ValueError(f"schedule {name}: {scale} is set by the learning rate; "
                                 "leave it out")
            kwargs[scale] = 1.0
    if total_steps is not None:
        for p in _TOTAL_STEP_ARGS:
            if p in params and p not in kwargs:
                kwargs[p] = total_steps
    try:
        return fn(**kwargs)
    except TypeError as e:
        raise ValueError(f"schedule {name}: {e}") from None


# --------------------------------------------------------------------------------------------
# what an optimizer is made of (``optlab list NAME``)


def arguments(fn: Callable) -> list[tuple[str, str]]:
    """``(name, default)`` for every argument of ``fn``; "required" when it has none."""
    out = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            out.append((p.name, "required" if p.default is p.empty else repr(p.default)))
    return out


def primitives(fn: Callable) -> list[tuple[str | None, list[str]]]:
    """The ``chain(...)`` calls in the source of ``fn``: ``(condition, [primitive, ...])``,
    the condition being the ``if`` that selects the chain (None when unconditional). An
    optimizer defined as another one (``momentum`` → ``optlab.sgd(...)``) gives that call.

    Read from the source code, since an ``optax.chain`` does not keep its transforms.
    """
    if isinstance(fn, functools.partial):  # e.g. amsbound = partial(adabound, amsbound=True)
        kwargs = ", ".join(f"{k}={v!r}" for k, v in fn.keywords.items())
        return [(None, [f"{fn.func.__name__}(..., {kwargs})"]), *primitives(fn.func)]
    try:
        tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return []
    found: list[tuple[str | None, list[str]]] = []

    def visit(nodes: list[ast.stmt], condition: str | None) -> None:
        for node in nodes:
            if isinstance(node, ast.If):
                test = ast.unparse(node.test)
                visit(node.body, test)
                visit(node.orelse, f"not ({test})")
            elif isinstance(node, ast.FunctionDef):
                visit(node.body, condition)
            else:
                for call in ast.walk(node):
                    if not isinstance(call, ast.Call):
                        continue
                    callee = ast.unparse(call.func)
                    if callee.split(".")[-1] == "chain":
                        found.append((condition, [ast.unparse(a) for a in call.args]))
                    elif isinstance(node, ast.Return) and call is node.value and (
                            callee.split(".")[-1] in OPTIMIZERS):
                        found.append((condition, [ast.unparse(call)]))
                        other = OPTIMIZERS[callee.split(".")[-1]]
                        if other is not fn:
                            found.extend(primitives(other))

    visit(tree.body, None)
    return found
