"""Argument validation shared by every constructor in optlab.

Every check names the argument and the allowed range, and raises at construction time.
Values that are JAX tracers (e.g. hyperparameters injected by ``optax.inject_hyperparams``
inside a jitted update) or schedules (callables) cannot be checked eagerly and are let through.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np


def _concrete_scalar(value: Any) -> float | None:
    """Returns a Python float for a concrete real scalar, or None if it cannot be checked."""
    if callable(value) or isinstance(value, jax.core.Tracer):
        return None
    if isinstance(value, bool):
        raise TypeError(f"expected a number, got the bool {value!r}")
    try:
        arr = np.asarray(value)
    except Exception:
        return None
    if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
        return None
    if np.iscomplexobj(arr):
        raise TypeError(f"expected a real number, got the complex {value!r}")
    return float(arr)


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    allow_schedule: bool = False,
) -> None:
    """Raises ``ValueError`` naming ``name`` unless ``value`` lies in the given interval.

    ``allow_schedule`` permits a callable ``step -> value`` (checked later, if at all).
    """
    if callable(value):
        if not allow_schedule:
            raise TypeError(f"{name} must be a number, got a callable {value!r}")
        return
    if isinstance(value, bool) or not (
        isinstance(value, (int, float, np.number, np.ndarray, jax.Array))
    ):
        kind = "a number or a schedule (callable step -> value)" if allow_schedule else "a number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    try:
        x = _concrete_scalar(value)
    except TypeError as e:
        raise TypeError(f"{name}: {e}") from None
    if x is None:
        if isinstance(value, jax.core.Tracer):
            return
        raise TypeError(f"{name} must be a scalar, got an array of shape {np.shape(value)}")
    lo_ok = low is None or (x >= low if low_inclusive else x > low)
    hi_ok = high is None or (x <= high if high_inclusive else x < high)
    if not (lo_ok and hi_ok) or not np.isfinite(x):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        interval = f"{'[' if low_inclusive and low is not None else '('}{lo}, {hi}" + (
            "]" if high_inclusive and high is not None else ")"
        )
        raise ValueError(f"{name} must be in {interval}, got {x!r}")


def check_learning_rate(value: Any, name: str = "learning_rate") -> None:
    """A learning rate is a non-negative number or a schedule."""
    check_number(name, value, low=0.0, allow_schedule=True)


def check_decay(name: str, value: Any, *, allow_schedule: bool = True) -> None:
    """A decay rate (β, ρ, momentum) lies in [0, 1)."""
    check_number(name, value, low=0.0, high=1.0, high_inclusive=False,
                 allow_schedule=allow_schedule)


def check_nonnegative(name: str, value: Any, *, allow_schedule: bool = False) -> None:
    check_number(name, value, low=0.0, allow_schedule=allow_schedule)


def check_positive(name: str, value: Any, *, allow_schedule: bool = False) -> None:
    check_number(name, value, low=0.0, low_inclusive=False, allow_schedule=allow_schedule)


def check_int(name: str, value: Any, *, low: int | None = None) -> None:
    """Raises unless ``value`` is a Python/numpy integer ≥ ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def closest(value: Any, choices: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The choice closest to ``value`` (difflib), or None when nothing is close."""
    hint = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=cutoff)
    return hint[0] if hint else None


def unknown_name(kind: str, name: Any, valid: Iterable[str]) -> ValueError:
    """``unknown {kind} 'x' (did you mean 'y'?); valid: a, b, c`` as a ValueError."""
    valid = sorted(valid)
    hint = closest(name, valid, cutoff=0.5)
    did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
    return ValueError(f"unknown {kind} {name!r}{did_you_mean}; valid: {', '.join(valid)}")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> None:
    """Raises ``ValueError`` listing the allowed values (and a close match) for an unknown
    option."""
    choices = list(choices)
    if value in choices:
        return
    hint = closest(value, choices)
    suggestion = f"; did you mean {hint!r}?" if hint else ""
    raise ValueError(f"{name} must be one of {choices}, got {value!r}{suggestion}")


def check_callable_or_none(name: str, value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a callable or None, got {type(value).__name__}")


def resolve(value: float | Callable[[jax.Array], jax.Array], count: jax.Array) -> Any:
    """Evaluates a hyperparameter that may be a schedule at ``count``."""
    return value(count) if callable(value) else value
