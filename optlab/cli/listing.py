"""``optlab list [NAME]``: optimizers, schedules, tasks and models, or one of them in
detail."""

from __future__ import annotations

import textwrap

from optlab import registry
from optlab._checks import unknown_name
from optlab.cli.flags import TASK_MODELS, CLIError, _cli_words


def cmd_list(args) -> int:
    from optlab.tasks import DATASETS, MODELS, PROBLEMS

    if args.name:
        return _list_one(args.name)
    sections = {
        "optimizers": {n: registry.describe(f) for n, f in registry.OPTIMIZERS.items()},
        "schedules": {n: registry.describe(f) for n, f in registry.SCHEDULES.items()},
        "tasks (data sets)": {n: _cli_words(d) for n, d in DATASETS.items()},
        "tasks (synthetic problems, compare only)": {
            n: make().description for n, make in PROBLEMS.items()},
        "models": {n: d for n, (_, d) in MODELS.items()},
    }
    for title, entries in sections.items():
        print(f"{title}:")
        width = max(map(len, entries)) + 2
        for name in sorted(entries):
            print(f"  {name:{width}s}{entries[name]}")
    print("\n`optlab list NAME` shows one entry in detail (formula, arguments, primitives).")
    return 0


def _wrap(text: str, indent: str = "  ") -> str:
    return "\n".join(textwrap.fill(line, 92, initial_indent=indent, subsequent_indent=indent)
                     for line in text.splitlines())


def _print_doc_and_arguments(kind: str, name: str, fn, heading: str,
                             notes: dict[str, str]) -> None:
    """Docstring as text, then each argument with its default (``notes[arg]`` formats it)."""
    paragraphs = registry.paragraphs(fn)
    print(f"{kind} {name}: {paragraphs[0] if paragraphs else ''}")
    for p in paragraphs[1:]:
        print(_wrap(p))
    print(heading)
    for arg, default in registry.arguments(fn):
        print(f"  {arg} = {notes.get(arg, '{}').format(default)}")


def _list_one(name: str) -> int:
    from optlab.tasks import DATASETS, MODELS, PROBLEMS
    from optlab.tasks.models import model_options

    if name in registry.OPTIMIZERS:
        fn = registry.OPTIMIZERS[name]
        _print_doc_and_arguments(
            "optimizer", name, fn, "arguments (--opt-arg NAME=VALUE; scalars also --grid "
            "NAME=V1,V2):", {"learning_rate": "{} (--lr)",
                             "num_classes": "the data set's number of classes"})
        chains = registry.primitives(fn)
        if chains:
            print("chain of primitives:")
            for condition, parts in chains:
                if condition:
                    print(f"  if {condition}:")
                pad = "    " if condition else "  "
                print("\n".join(f"{pad}{part}" for part in parts))
        return 0
    if name in registry.SCHEDULES:
        _print_doc_and_arguments("schedule", name, registry.SCHEDULES[name], "arguments:", {})
        return 0
    if name in DATASETS:
        print(f"task {name} (data set): {_cli_words(DATASETS[name])}")
        print(f"  default model: {TASK_MODELS.get(name, 'mlp')}")
        return 0
    if name in PROBLEMS:
        print(f"task {name} (synthetic problem, `optlab compare` only): "
              f"{PROBLEMS[name]().description}")
        return 0
    if name in MODELS:
        print(f"model {name}: {MODELS[name][1]}")
        print("options (--model-arg NAME=VALUE):")
        for arg, default in model_options(name).items():
            print(f"  {arg} = {default!r}")
        return 0
    valid = [*registry.OPTIMIZERS, *registry.SCHEDULES, *DATASETS, *PROBLEMS, *MODELS]
    raise CLIError(f"list: {unknown_name('name', name, valid)}")
