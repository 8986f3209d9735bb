"""The identity of a training run: canonical descriptions of its configuration
(:func:`describe`), the digest of its data set, and the fingerprint stored with its
checkpoints (:func:`_identity`)."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import types
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
import optax

from optlab.grid import Grid


class _UndescribableError(Exception):
    """An object whose behaviour cannot be told from a canonical description."""


def describe(obj: Any) -> Any:
    """A canonical, JSON-able description of a configuration value, equal for equal settings.

    Numbers, strings, ``None``, lists, dicts, numpy / JAX arrays (by content hash), module-level
    functions and classes (by module and qualified name), ``functools.partial`` (recursively)
    and objects with an ``__optlab_spec__ = (name, kwargs)`` attribute (optlab's schedules) are
    described. Lambdas, closures, built ``optax`` transforms and other objects raise
    :class:`_UndescribableError`: their settings cannot be inspected.
    """
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"float": repr(obj)}
    if isinstance(obj, np.generic):
        return {"numpy": str(obj.dtype), "value": describe(obj.item())}
    if isinstance(obj, np.ndarray | jax.Array):
        a = np.ascontiguousarray(np.asarray(obj))
        return {"array": str(a.dtype), "shape": list(a.shape),
                "sha256": hashlib.sha256(a.tobytes()).hexdigest()}
    spec = getattr(obj, "__optlab_spec__", None)
    if spec is not None:
        name, kwargs = spec
        return {"spec": name, "kwargs": describe(dict(kwargs))}
    if isinstance(obj, functools.partial):
        return {"partial": describe(obj.func), "args": describe(list(obj.args)),
                "keywords": describe(dict(obj.keywords))}
    if isinstance(obj, Mapping):
        if not all(isinstance(k, str) for k in obj):
            raise _UndescribableError(f"a dict with non-string keys {list(obj)!r}")
        return {k: describe(obj[k]) for k in sorted(obj)}
    if isinstance(obj, optax.GradientTransformation):
        raise _UndescribableError("a built GradientTransformation (its hyperparameters are hidden "
                             "in closures)")
    if isinstance(obj, list | tuple):
        return [describe(v) for v in obj]
    if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
        qualname = getattr(obj, "__qualname__", "")
        if "<lambda>" in qualname:
            raise _UndescribableError(f"a lambda ({qualname})")
        if "<locals>" in qualname:
            raise _UndescribableError(f"a closure ({qualname}), whose captured values are hidden")
        return {"function": f"{obj.__module__}:{qualname}"}
    raise _UndescribableError(f"a {type(obj).__name__} object")


def _label(obj: Any) -> Any:
    """``describe(obj)`` where possible, else a short text for results.json."""
    if obj is None or isinstance(obj, str):
        return obj
    try:
        return describe(obj)
    except _UndescribableError as e:
        return f"<{e}>"


def _dataset_digest(dataset) -> str:
    h = hashlib.sha256(f"{dataset.name}/{dataset.num_classes}".encode())
    for split in ("train", "val", "test"):
        for part in ("x", "y"):
            a = np.ascontiguousarray(np.asarray(getattr(dataset, f"{part}_{split}")))
            h.update(f"{part}_{split}{a.dtype}{a.shape}".encode())
            if a.size:  # (an empty split, val_fraction=0, has no bytes to view)
                h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def _identity(dataset, model, optimizer, schedule, grid: Grid, settings: dict[str, Any],
              config: Mapping[str, Any] | None, run_name: str | None, parallel: Any = None
              ) -> tuple[dict[str, Any], list[str]]:
    """The fingerprint stored with checkpoints, and the arguments it could not describe."""
    unknown = []
    ident: dict[str, Any] = {}
    described = [("model", model), ("optimizer", optimizer), ("schedule", schedule)]
    for name, obj in described + ([("parallel", parallel)] if parallel is not None else []):
        try:
            ident[name] = describe(obj)
        except _UndescribableError as e:
            unknown.append(f"{name} is {e}")
            ident[name] = "<not described>"
    ident.update({
        "dataset": _dataset_digest(dataset),
        "hyperparams": {k: describe(list(v)) for k, v in zip(grid.names, grid.values,
                                                             strict=True)},
        "seeds": list(grid.seeds), **settings,
        "config": json.loads(json.dumps(dict(config))) if config is not None else None,
        "run_name": run_name})
    return ident, unknown

