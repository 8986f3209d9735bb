"""The parallel methods by name, for the command line (``optlab train --parallel NAME``)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from optlab._checks import unknown_name
from optlab.parallel.aggregate import data_parallel, majority_vote
from optlab.parallel.downpour import downpour
from optlab.parallel.local import diloco, easgd, fedavg
from optlab.parallel.training import Replicas

__all__ = ["METHODS", "make", "options"]

METHODS: dict[str, Callable[..., Any]] = {
    "data_parallel": data_parallel,
    "diloco": diloco,
    "fedavg": fedavg,
    "easgd": easgd,
    "eamsgd": functools.partial(easgd, momentum=0.9),
    "downpour": downpour,
    "majority_vote": majority_vote,
}
"""Name → method ``(tx, replicas, **options) -> Parallel``; ``eamsgd`` is EASGD with
Nesterov momentum δ = 0.9 (the paper's)."""


def options(name: str) -> dict[str, Any]:
    """The method's options (arguments after the optimizer and ``replicas``) with defaults."""
    fn = METHODS[name]
    bound = fn.keywords if isinstance(fn, functools.partial) else {}
    fn = fn.func if isinstance(fn, functools.partial) else fn
    params = list(inspect.signature(fn).parameters.values())[2:]
    return {p.name: bound.get(p.name, p.default) for p in params}


def make(name: str, replicas: int, iid: bool = True,
         options_: Mapping[str, Any] | None = None) -> Replicas:
    """``Replicas`` of method ``name`` with ``replicas`` replicas and ``options_`` (checked:
    an option the method does not take is an error naming the method's options)."""
    if name not in METHODS:
        raise unknown_name("parallel method", name, METHODS)
    allowed = options(name)
    given = dict(options_ or {})
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"{name} takes no option {', '.join(unknown)}; its options: "
                         f"{', '.join(f'{k}={v!r}' for k, v in allowed.items()) or 'none'}")
    spec = Replicas(functools.partial(METHODS[name], replicas=replicas, **given), iid=iid)
    spec.count()  # bad values fail now, with the method's own message
    return spec
