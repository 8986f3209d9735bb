"""Names → objects: the optimizers and schedules the command line and experiments accept.

Values on the command line are literals (``0.99``, ``true``, ``none``) or a schedule call
such as ``cosine_decay(decay_steps=2000)`` — parsed with :mod:`ast`, never evaluated.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import optax

import optlab
from optlab import schedules
from optlab._checks import unknown_name


def momentum(learning_rate: float, momentum: float = 0.9, nesterov: bool = False):
    """SGD with heavy-ball momentum 0.9 (Polyak 1964): optlab.sgd(lr, momentum=0.9)."""
    return optlab.sgd(learning_rate, momentum=momentum, nesterov=nesterov)


OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    **{name: getattr(optlab, name) for name in optlab.OPTIMIZERS},
    "momentum": momentum,
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


def describe(obj: Callable) -> str:
    """First line of a docstring."""
    doc = inspect.getdoc(obj) or ""
    line = doc.splitlines()[0] if doc else ""
    line = re.sub(r":\w+:`([^`]*)`", r"\1", line)  # :math:`x` → x
    return line.replace("``", "").replace("\\,", " ").replace("\\mathrm", "").rstrip(",")


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
