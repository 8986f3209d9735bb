"""The optimizer of a run from the command line: ``--optimizer`` / ``--optimizers`` with
``--opt-arg`` and ``--grid`` (:class:`_Spec`), ``--program``, ``--schedule``, and the
optimizer factory handed to training."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optlab import registry
from optlab._checks import unknown_name
from optlab.cli.flags import CLIError, _key_values
from optlab.learned import cli as learned_cli

# --------------------------------------------------------------------------------------------
# optimizer options: --opt-arg / --grid, plain (every optimizer) or OPTIMIZER.NAME (one)


@dataclass
class _Spec:
    """One optimizer of a run: its options as given, parsed, and its hyperparameter grid."""

    name: str
    opt_args: dict[str, str]
    grid: dict[str, str]
    static: dict[str, Any]
    hyperparams: dict[str, list[float]]
    program: str | None = None  # --program: the canonical formula (then name is "program")


def _scoped(options: dict[str, str], name: str, names: Sequence[str], flag: str,
            names_flag: str) -> dict[str, str]:
    """The options of ``options`` that apply to optimizer ``name``: plain ``key`` (every
    optimizer) and ``name.key`` (this one; it wins over a plain ``key``)."""
    plain, own = {}, {}
    for key, value in options.items():
        prefix, dot, rest = key.partition(".")
        if not dot:
            plain[key] = value
            continue
        if not prefix or not rest:
            raise CLIError(f"{flag} {key}={value}: expected NAME=VALUE or "
                           "OPTIMIZER.NAME=VALUE")
        if prefix not in names:
            raise CLIError(f"{flag} {key}={value}: {prefix!r} is not among {names_flag} "
                           f"({', '.join(names)})")
        if prefix == name:
            own[rest] = value
    return {**plain, **own}


def _reads_layers(fn: Any) -> bool:
    """Whether the optimizer is K-FAC, which needs the model's layer statistics."""
    from optlab.fisher import kfac

    return getattr(fn, "func", fn) is kfac


def _spec(name: str, names: Sequence[str], args, lrs: list[float], total_steps: int,
          names_flag: str, num_classes: int | None = None) -> _Spec:
    """Parses and checks ``--opt-arg`` / ``--grid`` for optimizer ``name``; builds it at every
    grid point, so a bad value fails here, before any training. An optimizer that reads the
    number of classes (``lipschitz_sgd``) gets the data set's ``num_classes``."""
    fn = _optimizer_fn(name)
    if learned_cli.is_learned(name):  # used as meta-trained: its learning rate is 1
        lrs = [1.0]
    if num_classes is None and _reads_layers(fn):
        raise CLIError(f"{names_flag}: {name} needs a data set and its model (K-FAC reads the "
                       "layers' inputs and output gradients), not a synthetic problem")
    if "num_classes" in registry.parameters(fn):
        if num_classes is None:
            raise CLIError(f"{names_flag}: {name} needs a classification data set (it reads the "
                           "model's penultimate activations), not a synthetic problem")
        fn = functools.partial(fn, num_classes=num_classes)
    opt_args = _scoped(_key_values(args.opt_arg, "--opt-arg"), name, names, "--opt-arg",
                       names_flag)
    grid = _scoped(_key_values(args.grid, "--grid"), name, names, "--grid", names_flag)
    for flag, options in (("--opt-arg", opt_args), ("--grid", grid)):
        try:
            registry.check_arguments(f"optimizer {name}", fn, options)
        except ValueError as e:
            hint = ""
            if len(names) > 1:
                key = next(k for k in options if k not in registry.parameters(fn))
                takes = [n for n in names if key in registry.parameters(_optimizer_fn(n))]
                hint = (f"; to pass an option to one optimizer only, write {flag} "
                        f"OPTIMIZER.{key}=..., e.g. {flag} {(takes or names)[0]}.{key}="
                        f"{options[key]}")
            raise CLIError(f"{flag}: {e}{hint}") from None
    for key in ("learning_rate", *grid):
        if key in opt_args:
            raise CLIError(f"--opt-arg {key}: use --lr/--lrs for learning rates"
                           if key == "learning_rate" else
                           f"--grid {key} and --opt-arg {key} both set {key} of {name}")
    static = {}
    for key, text in opt_args.items():
        try:
            static[key] = registry.parse_value(text, total_steps=total_steps)
        except ValueError as e:
            raise CLIError(f"--opt-arg {key}={text} ({name}): {e}") from None
    swept = {}
    for key, text in grid.items():
        if key == "learning_rate":
            raise CLIError("--grid learning_rate: use --lr/--lrs for learning rates")
        try:
            swept[key] = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise CLIError(f"--grid {key}={text}: expected comma-separated numbers") from None
        if not swept[key]:
            raise CLIError(f"--grid {key} is empty")
    hyperparams = {"learning_rate": list(lrs), **swept}
    for values in itertools.product(*hyperparams.values()):
        point = dict(zip(hyperparams, values, strict=True))
        try:
            fn(**static, **point)
        except (ValueError, TypeError) as e:
            text = str(e)
            flag = ("--lr" if "learning_rate" in text else
                    "--grid" if any(k in text for k in swept) else "--opt-arg")
            raise CLIError(f"{flag} ({name}): {text}") from None
    if swept:
        _check_traceable(name, fn, static, swept)
    return _Spec(name, opt_args, grid, static, hyperparams)


def _check_traceable(name: str, fn, static: dict[str, Any],
                     swept: dict[str, list[float]]) -> None:
    """A ``--grid`` option is a traced scalar in the compiled program: one the optimizer
    needs as a Python value (a flag such as ``nesterov``) is refused here."""
    import jax
    import jax.numpy as jnp

    def step(point):
        tx = fn(learning_rate=1e-3, **static, **point)
        x = jnp.ones(2)
        return tx.update(x, tx.init(x), x)[0]

    for key, values in swept.items():
        try:
            jax.eval_shape(step, {key: jnp.float32(values[0])})
        except (jax.errors.ConcretizationTypeError, TypeError):
            raise CLIError(f"--grid {key}: {name} needs {key} as a fixed value, which a "
                           f"compiled grid cannot sweep; give one value with --opt-arg "
                           f"{key}=...") from None


def _schedule(text: str | None, total_steps: int):
    if not text:
        return None
    try:
        name, kwargs = registry.parse_call(text)
        return registry.schedule(name, kwargs, total_steps=total_steps, unit=True)
    except ValueError as e:
        raise CLIError(f"--schedule: {e}") from None


def _program_spec(args, lrs: list[float]) -> _Spec:
    """``--program``: the formula parsed (errors name the flag and the column) and put in
    canonical form (:func:`optlab.search.canonical`, exact rewrites only: equivalent writings
    are one run); ``--opt-arg`` sets fields of its :class:`~optlab.search.SearchConfig`
    (moment decays, ``decay_steps`` of ld/cd/rd, ...); ``--grid`` is refused (those fields are
    fixed Python values of the compiled program, not traced grid values)."""
    import dataclasses

    from optlab.search import SearchConfig, canonical, compile_program, formula, parse

    try:
        program = parse(args.program)
    except (ValueError, TypeError) as e:
        raise CLIError(f"--program {args.program!r}: {e}") from None
    text = formula(canonical(program))
    if args.grid:
        raise CLIError("--grid: not available with --program (the program's settings are "
                       "fixed values of its SearchConfig, set with --opt-arg NAME=VALUE; "
                       "sweep learning rates with --lr)")
    fields = {f.name: f for f in dataclasses.fields(SearchConfig)}
    opt_args = _key_values(args.opt_arg, "--opt-arg")
    static: dict[str, Any] = {}
    for key, value in opt_args.items():
        if key == "learning_rate":
            raise CLIError("--opt-arg learning_rate: use --lr/--lrs for learning rates")
        if key not in fields:
            raise CLIError(f"--opt-arg {key}={value}: with --program, options are fields of "
                           f"SearchConfig: {unknown_name('option', key, fields)}")
        try:
            parsed = registry.parse_value(value)
        except ValueError as e:
            raise CLIError(f"--opt-arg {key}={value}: {e}") from None
        default = fields[key].default
        kind = type(default)
        ok = (isinstance(parsed, bool) if kind is bool else
              isinstance(parsed, int) and not isinstance(parsed, bool) if kind is int else
              isinstance(parsed, int | float) and not isinstance(parsed, bool))
        if not ok:
            raise CLIError(f"--opt-arg {key}={value}: expected {kind.__name__} (default "
                           f"{default!r})")
        static[key] = float(parsed) if kind is float else parsed
    try:
        for lr in lrs:
            compile_program(text, lr, config=SearchConfig(**static))
    except (ValueError, TypeError) as e:
        raise CLIError(f"--program / --opt-arg: {e}") from None
    return _Spec("program", opt_args, {}, static, {"learning_rate": list(lrs)}, program=text)


def _optimizer_fn(name: str):
    """A registered optimizer, or a saved learned one (``learned:PATH``)."""
    if learned_cli.is_learned(name):
        return learned_cli.optimizer_fn(name)
    return registry.optimizer(name)


def _factory(spec: _Spec):
    import functools

    if spec.program is not None:
        from optlab.search import SearchConfig, compile_program

        kwargs = {"config": SearchConfig(**spec.static)} if spec.static else {}
        optimizer = functools.partial(compile_program, spec.program, **kwargs)
        optimizer.__name__ = "program"  # type: ignore[attr-defined]
        return optimizer
    optimizer = functools.partial(_optimizer_fn(spec.name), **spec.static)
    optimizer.__name__ = spec.name  # type: ignore[attr-defined]
    return optimizer
