"""Experiments that reproduce published claims: the framework behind ``optlab reproduce``.

An experiment is a script ``experiments/NAME.py`` in the repository that defines ``EXPERIMENT =
Experiment(...)``: the claim it tests, its source, and ``run(ctx) -> Outcome``. ``run``
measures, draws its figures with :meth:`Context.save_figure` and returns the measurements with
a verdict computed from them (``reproduced``: True, False, or None where the size of the run
cannot decide). The framework writes ``results.json`` (settings, environment, measurements,
verdict) and ``REPORT.md`` beside the PNG figures, atomically, into the experiment's folder.

Every experiment has a *quick* mode (CI: seconds) and a *full* mode (the reproduction).
Training runs resume after an interruption: :meth:`Context.checkpoint_dir` gives each
``optlab.train`` call a folder of its own under ``out/checkpoints``.

Run one with ``optlab reproduce NAME [--quick] [--out DIR]`` or ``python experiments/NAME.py``
(the same flags); ``optlab reproduce --list`` names them with their claims.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = "results.json"
REPORT = "REPORT.md"


@dataclass(frozen=True)
class Experiment:
    """A published claim and the code that tests it.

    Attributes:
      name: the command-line name (the script's file name without ``.py``).
      title: a few words, e.g. "AMSGrad counterexample".
      claim: the published claim, one or two sentences.
      source: the paper(s), e.g. "Reddi, Kale & Kumar, ICLR 2018".
      run: ``run(ctx) -> Outcome``.
      quick_asserts: the parts of the claim (keys of :attr:`Outcome.checks`) that the quick
        mode is large enough to decide, chosen before measuring: the test suite asserts that
        they hold there. The other checks of a quick run are reported, not asserted.
      seeds: default number of seeds (≥ 3 wherever randomness enters).
      accelerator: what ``--accelerator`` changes (the parts of the claim whose paper-scale
        run needs a GPU or TPU), or "" when the full mode is the whole reproduction.
    """

    name: str
    title: str
    claim: str
    source: str
    run: Callable[[Context], Outcome]
    quick_asserts: tuple[str, ...] = ()
    seeds: int = 3
    accelerator: str = ""


@dataclass
class Outcome:
    """What an experiment measured.

    ``checks`` are the parts of the claim, each decided from the measurements (e.g.
    ``{"online": True, "stochastic": False}``; None: this run cannot decide that part, see
    :func:`decide`); ``reproduced`` is the verdict on the whole claim (None: undecided, see
    :func:`verdict_of`); ``summary`` is Markdown that puts our numbers beside
    the paper's; ``results`` is the raw measurements (JSON-able: numbers, lists, dicts, numpy
    arrays).
    """

    reproduced: bool | None
    summary: str
    results: dict[str, Any]
    checks: dict[str, bool | None] = field(default_factory=dict)


@dataclass
class Context:
    """Where an experiment runs: its folder, mode and seeds, and helpers to save figures and
    checkpoints there."""

    experiment: Experiment
    out: Path
    quick: bool
    seeds: list[int]
    progress: bool = False
    figures: list[str] = field(default_factory=list)
    accelerator: bool = False

    def checkpoint_dir(self, key: str) -> Path:
        """A folder for one ``optlab.train`` call's checkpoints (resumes after a kill)."""
        path = self.out / "checkpoints" / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_figure(self, fig: Any, stem: str, *, dpi: int = 110) -> str:
        """Saves a matplotlib figure as ``out/STEM.png`` (atomically), closes it, and
        returns the file name."""
        import matplotlib.pyplot as plt

        from optlab.io import atomic_save_figure

        name = f"{stem}.png"
        try:
            atomic_save_figure(self.out / name,
                               lambda f: fig.savefig(f, format="png", dpi=dpi,
                                                     bbox_inches="tight"))
        finally:
            plt.close(fig)
        if name not in self.figures:
            self.figures.append(name)
        return name

    def save_file(self, name: str, write: Callable[[Any], None], mode: str = "wb") -> str:
        """Writes ``out/NAME`` atomically with ``write(file)`` (an animation, a table)."""
        from optlab.io import atomic_open

        with atomic_open(self.out / name, mode) as f:
            write(f)
        if name not in self.figures:
            self.figures.append(name)
        return name

    def cached(self, key: str, ident: Mapping[str, Any], compute: Callable[[], Any], *,
               folder: str = "pieces") -> Any:
        """``compute()`` once per configuration ``(key, ident)``: its JSON result is kept
        under ``out/checkpoints/FOLDER``, so an interrupted full run resumes after the last
        finished piece."""
        from optlab.io import atomic_write_json

        text = json.dumps({"key": key, **ident}, sort_keys=True, default=str)
        path = (self.checkpoint_dir(folder)
                / f"{key}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.json")
        if path.exists():
            self.log(f"{key}: loaded from {path}")
            return json.loads(path.read_text())
        value = compute()
        atomic_write_json(path, value)
        return value

    def log(self, message: str) -> None:
        """A progress line on stderr."""
        print(f"[{self.experiment.name}] {message}", file=sys.stderr, flush=True)


def figure(nrows: int = 1, ncols: int = 1, *, width: float = 4.6, height: float = 3.6,
           **kwargs: Any):
    """A headless matplotlib figure and its axes (``squeeze=False``: a 2-D array)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False,
                        **kwargs)


def mean_std(values: Any, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample standard deviation (ddof = 1) over ``axis``, ignoring NaN; the std is
    NaN where fewer than two values are finite."""
    a = np.asarray(values, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice gives NaN
        return np.nanmean(a, axis=axis), np.nanstd(a, axis=axis, ddof=1)


def significant(a: Any, b: Any) -> tuple[float, float]:
    """(mean(a) − mean(b), that difference over its standard error √(s_a²/n_a + s_b²/n_b)).

    The ratio is NaN when either side has fewer than two values (no error to measure), and
    ±inf when both sides are constant but differ."""
    diff, se = _diff_se(a, b)
    if np.isnan(se):
        return diff, float("nan")
    return diff, (diff / se if se > 0 else float(np.sign(diff)) * float("inf"))


def _diff_se(a: Any, b: Any) -> tuple[float, float]:
    """mean(a) − mean(b) and its standard error (NaN with fewer than two values a side)."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    diff = float(a.mean() - b.mean())
    if min(a.size, b.size) < 2:
        return diff, float("nan")
    return diff, float(np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size))


Z = 2.0
"""Standard errors a difference must exceed to be decided (about 95 % two-sided)."""


def decide(a: Any, b: Any, *, margin: float = 0.0, higher_is_better: bool = True) -> bool | None:
    """Whether ``a`` (values over seeds) beats ``b`` by more than ``margin``, decided or not.

    True when the advantage ``a − b`` (``b − a`` with ``higher_is_better=False``) exceeds
    ``margin`` by more than :data:`Z` standard errors; False when it is below ``margin`` by more
    than Z standard errors (an advantage of ``margin`` or more is ruled out); None otherwise,
    and when either side has fewer than two values. ``margin`` < 0 asks "is ``a`` at least as
    good, within ``-margin``?" (e.g. ``margin=-0.01`` for "matches within one point").
    """
    diff, se = _diff_se(a, b)
    if not (np.isfinite(diff) and np.isfinite(se)):
        return None
    if not higher_is_better:
        diff = -diff
    if diff - Z * se > margin:
        return True
    if diff + Z * se < margin:
        return False
    return None


def verdict_of(checks: Mapping[str, bool | None], parts: Sequence[str] | None = None
               ) -> bool | None:
    """The verdict on a claim from its parts (``parts``: the keys that make up the claim,
    default all): False if any part failed, True if all held, else None (undecided)."""
    values = [checks[k] for k in (checks if parts is None else parts)]
    if any(v is False for v in values):
        return False
    if values and all(v is True for v in values):
        return True
    return None


TIE = 1e-6
"""Mean validation accuracies closer than this are a tie in :func:`select`."""


def select(val_accuracy: Any, val_loss: Any, tie: float = TIE) -> int:
    """The selection rule of every experiment that tunes: the index (axis 0) with the
    highest mean validation accuracy over seeds (axis 1); a setting at which any seed
    diverged (NaN, see :func:`masked`) cannot be selected; means within ``tie`` of the best
    are tied and go to the lowest mean validation loss. 0 when every setting diverged."""
    acc = np.asarray(val_accuracy, float).mean(axis=1)
    loss = np.asarray(val_loss, float).mean(axis=1)
    ok = np.isfinite(acc)
    if not ok.any():
        return 0
    tied = ok & (acc >= np.max(acc[ok]) - tie)
    return int(np.argmin(np.where(tied, np.nan_to_num(loss, nan=np.inf), np.inf)))


def masked(values: Any, diverged: Any) -> np.ndarray:
    """``values`` with NaN where the run diverged (``optlab.train`` freezes a diverged run,
    so its accuracies stay finite)."""
    return np.where(np.asarray(diverged, bool), np.nan, np.asarray(values, float))


def fmt_pm(values: Any, scale: float = 1.0, digits: int = 1) -> str:
    """``"mean ± std"`` of ``values`` (times ``scale``, e.g. 100 for percent; sample std)
    over the finite ones, or the single value with "(1 run)"; runs that are not finite
    (diverged) are counted: ``"0.5 (1 of 3 runs finite)"``."""
    a = np.asarray(values, dtype=float).ravel() * scale
    finite = int(np.count_nonzero(np.isfinite(a)))
    if finite == 0:
        return f"nan ({a.size} run{'s' if a.size != 1 else ''}, none finite)"
    m, s = mean_std(a[np.isfinite(a)])
    text = f"{float(m):.{digits}f}" + (f" ± {float(s):.{digits}f}" if finite > 1 else "")
    if finite < a.size:
        return f"{text} ({finite} of {a.size} runs finite)"
    return text if finite > 1 else f"{text} (1 run)"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Running one experiment
# ------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    """Versions and the device, recorded with every result."""
    import jax

    from optlab import __version__

    return {"optlab": __version__, "jax": jax.__version__, "python": platform.python_version(),
            "device": str(jax.devices()[0].device_kind), "devices": jax.device_count(),
            "platform": jax.default_backend(), "cpu_count": os.cpu_count()}


def run(experiment: Experiment, out: str | os.PathLike, *, quick: bool = False,
        seeds: int | None = None, progress: bool = False,
        accelerator: bool = False) -> dict[str, Any]:
    """Runs ``experiment`` into ``out`` and returns the record written to ``results.json``.

    ``out`` is created if needed; the record and ``REPORT.md`` are written atomically at the
    end (each figure atomically when drawn), so an interrupted run leaves the previous
    results.json intact. ``accelerator`` runs the paper-scale configuration of the parts that
    need a GPU or TPU (:attr:`Experiment.accelerator`).
    """
    n_seeds = experiment.seeds if seeds is None else seeds
    if n_seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {n_seeds!r}")
    if accelerator and (quick or not experiment.accelerator):
        raise ValueError(f"accelerator: {experiment.name} has no accelerator configuration"
                         if not experiment.accelerator else
                         "accelerator and quick exclude each other")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(experiment, out, quick, list(range(n_seeds)), progress,
                  accelerator=accelerator)
    start = time.perf_counter()
    outcome = experiment.run(ctx)
    record = {
        "experiment": experiment.name, "title": experiment.title, "claim": experiment.claim,
        "source": experiment.source, "quick": quick, "accelerator": accelerator,
        "seeds": n_seeds,
        "reproduced": outcome.reproduced, "checks": outcome.checks,
        "summary": outcome.summary,
        "figures": ctx.figures, "wall_time_s": time.perf_counter() - start,
        "accelerator_part": experiment.accelerator,
        "environment": environment(), "results": outcome.results,
    }
    from optlab.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / RESULTS, record)
    atomic_write_text(out / REPORT, report(record))
    return record


def verdict(reproduced: bool | None) -> str:
    return {True: "reproduced", False: "did not reproduce", None: "undecided"}[reproduced]


def report(record: Mapping[str, Any]) -> str:
    """The Markdown section of one result: claim, verdict, our numbers, figures."""
    mode = ("quick mode" if record["quick"] else
            "accelerator mode" if record.get("accelerator") else "full mode")
    env = record["environment"]
    seeds = f"{record['seeds']} seed" + ("s" if record["seeds"] != 1 else "")
    lines = [f"## {record['title']} (`{record['experiment']}`)", "",
             f"**Claim** ({record['source']}): {record['claim']}", "",
             f"**Verdict: {verdict(record['reproduced'])}** ({mode}, {seeds}, "
             f"{record['wall_time_s']:.0f} s on {env['device']}, {env['cpu_count']} CPU cores).",
             "", record["summary"].strip(), ""]
    lines += [f"![{name}]({name})" for name in record["figures"] if name.endswith(".png")]
    accelerator = record.get("accelerator_part", "")
    if accelerator and not record.get("accelerator"):
        lines += ["", f"**Accelerator-only** (not run here): {accelerator} Command: "
                  f"`optlab reproduce {record['experiment']} --accelerator`."]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------
# Finding experiments
# ------------------------------------------------------------------------------------------


def experiments_dir() -> Path:
    """The repository's ``experiments/`` folder (``$OPTLAB_EXPERIMENTS`` overrides)."""
    env = os.environ.get("OPTLAB_EXPERIMENTS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "experiments"


def names(folder: Path | None = None) -> list[str]:
    """The experiments' names: the scripts in ``experiments/`` not starting with ``_``."""
    folder = experiments_dir() if folder is None else folder
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def load(name: str, folder: Path | None = None) -> Experiment:
    """Imports ``experiments/NAME.py`` and returns its ``EXPERIMENT``."""
    folder = experiments_dir() if folder is None else folder
    path = folder / f"{name}.py"
    if not path.is_file():
        known = names(folder)
        raise ValueError(f"no experiment {name!r} in {folder}; choose from "
                         f"{', '.join(known) or '(none: is this a checkout of optlab?)'}")
    module_name = f"optlab_experiments.{name}"
    module = sys.modules.get(module_name)
    if module is not None and Path(module.__file__).resolve() != path.resolve():
        # another folder's experiment of the same name (a second checkout) is its own module
        module_name += f"_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]}"
        module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    experiment = getattr(module, "EXPERIMENT", None)
    if not isinstance(experiment, Experiment) or experiment.name != name:
        raise ValueError(f"{path} must define EXPERIMENT = Experiment(name={name!r}, ...)")
    return experiment


# ------------------------------------------------------------------------------------------
# Command line: `optlab reproduce` and `python experiments/NAME.py`
# ------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser, with_name: bool) -> None:
    if with_name:
        p.add_argument("name", nargs="?", metavar="NAME",
                       help="the experiment (see --list; default: none, with --list)")
        p.add_argument("--list", action="store_true",
                       help="name every experiment with the claim it tests (default: off)")
    p.add_argument("--quick", action="store_true",
                   help="the small configuration (seconds; CI), not the reproduction "
                   "(default: off, the full reproduction)")
    p.add_argument("--accelerator", action="store_true",
                   help="the paper-scale configuration of the parts that need a GPU or TPU "
                   "(experiments that have one; default: off)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="results folder (default: runs/reproduce/NAME, or NAME-quick, "
                   "NAME-accelerator)")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="seeds 0..N-1 (default: the experiment's, at least 3 where "
                   "randomness enters)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: when stderr is a terminal)")


def _claim_folder(out: Path, config: dict[str, Any]) -> None:
    from optlab.cli import _claim, _writable

    _writable(str(out))
    _claim(out, "reproduce", config)


def execute(experiment: Experiment, args: argparse.Namespace) -> int:
    """Checks the flags, runs the experiment and prints its report (the CLI's work)."""
    from optlab.cli import CLIError

    name = experiment.name
    if args.seeds is not None and args.seeds < 1:
        raise CLIError(f"--seeds must be >= 1, got {args.seeds}")
    if args.accelerator and not experiment.accelerator:
        raise CLIError(f"--accelerator: {name} has no accelerator-only part (its full mode is "
                       "the whole reproduction); experiments with one: "
                       + ", ".join(n for n in names() if load(n).accelerator))
    if args.accelerator and args.quick:
        raise CLIError("--accelerator and --quick exclude each other")
    suffix = "-quick" if args.quick else "-accelerator" if args.accelerator else ""
    out = Path(args.out or Path("runs", "reproduce", name + suffix))
    seeds = experiment.seeds if args.seeds is None else args.seeds
    config = {"experiment": name, "quick": args.quick, "seeds": seeds}
    if args.accelerator:  # (not in the key otherwise: existing result folders stay valid)
        config["accelerator"] = True
    _claim_folder(out, config)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    record = run(experiment, out, quick=args.quick, seeds=seeds, progress=progress,
                 accelerator=args.accelerator)
    print(report(record))
    print(f"results: {out / RESULTS}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from optlab.cli import CLIError

    if args.list:
        if args.name:
            raise CLIError("--list takes no NAME")
        folder = experiments_dir()
        found = names(folder)
        if not found:
            raise CLIError(f"no experiments in {folder}: `optlab reproduce` needs a checkout "
                           "of the optlab repository (pip install -e .)")
        for n in found:
            e = load(n, folder)
            print(f"{n:26s} {e.title}: {e.claim} ({e.source})")
        return 0
    if not args.name:
        raise CLIError("name an experiment (`optlab reproduce --list` shows them)")
    try:
        experiment = load(args.name)
    except ValueError as e:
        raise CLIError(str(e)) from None
    return execute(experiment, args)


def add_parser(sub: Any) -> None:
    """Adds ``optlab reproduce`` to the CLI's subparsers."""
    p = sub.add_parser("reproduce", help="run an experiment that reproduces a published claim",
                       description="Runs one of the experiments in experiments/ (a published "
                       "claim, measured): writes results.json, REPORT.md and figures.")
    add_arguments(p, with_name=True)
    p.set_defaults(func=cmd_reproduce)


def main(experiment: Experiment, argv: Sequence[str] | None = None) -> int:
    """``python experiments/NAME.py [--quick] [--out DIR] [--seeds N]``."""
    from optlab.cli import CLIError

    parser = argparse.ArgumentParser(prog=f"experiments/{experiment.name}.py",
                                     description=f"{experiment.title}: {experiment.claim} "
                                     f"({experiment.source})")
    add_arguments(parser, with_name=False)
    args = parser.parse_args(argv)
    try:
        return execute(experiment, args)
    except CLIError as e:
        print(f"optlab: error: {e}", file=sys.stderr)
        return 2
