"""Sphinx configuration of optlab's documentation site.

Sphinx with MyST-NB, as JAX, optax and Flax build their documentation: pages are MyST
Markdown, the API reference is autodoc of optlab's docstrings (Google style, read by napoleon;
formulas in ``:math:``), and the tutorial notebooks (``notebooks/``, reached through the
``docs/notebooks`` link) are rendered as committed, without executing them
(``nb_execution_mode = "off"``). The theme is sphinx-book-theme, optax's and Flax's.

Build: ``make docs`` (``sphinx-build -W --keep-going -b html docs docs/_build/html``: any
warning fails the build). The experiments page is generated here at each build from
``experiments/*.py`` and the committed results (``experiments/RESULTS.md`` when present, else
each ``experiments/results/NAME/REPORT.md``), into ``docs/_build/generated/``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "_build" / "generated"
sys.path.insert(0, str(ROOT))

import optlab  # noqa: E402

# -- project ---------------------------------------------------------------------------------

project = "optlab"
author = "the optlab authors"
copyright = "the optlab authors"
release = version = optlab.__version__

# -- general ---------------------------------------------------------------------------------

extensions = [
    "myst_nb",  # MyST Markdown pages and .ipynb notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style "Args:" / "Returns:" sections
    "sphinx.ext.mathjax",
]
exclude_patterns = ["_build", "README.md", "notebooks/README.md", "**.ipynb_checkpoints",
                    "notebooks/*.py"]
root_doc = "index"

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # notebooks are executed by tests/test_notebooks.py, not here

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True  # defaults as written (math.e, not 2.718281828459045)
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# -- html ------------------------------------------------------------------------------------

html_theme = "sphinx_book_theme"
html_title = f"optlab {version}"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_static_path: list[str] = []


# -- generated content -----------------------------------------------------------------------

_LINK = re.compile(r"(!?)\[([^\]]*)\]\(([^)\s]+)(\s+\"[^\"]*\")?\)")
_IMG_TAG = re.compile(r"<img\b[^>]*?\bsrc=\"([^\"]+)\"[^>]*>", re.IGNORECASE)
_HEADING = re.compile(r"^(#{1,6})(\s)", re.MULTILINE)
_IMAGE_SUFFIXES = {".png", ".gif", ".jpg", ".jpeg", ".svg"}


def _relocate(text: str, source: Path) -> str:
    """Markdown from ``source`` made to work when included from a page in ``docs/``:
    images point at the file in the repository; links to local files, which are not
    pages of this site, keep their text only; ``<img>`` tags become Markdown images."""
    text = _IMG_TAG.sub(lambda m: f"![]({m.group(1)})", text)

    def fix(m: re.Match) -> str:
        bang, label, target = m.group(1), m.group(2), m.group(3)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            return m.group(0)  # a URL or an anchor
        path = (source.parent / target.split("#")[0]).resolve()
        if bang and path.suffix.lower() in _IMAGE_SUFFIXES:
            return f"![{label}]({os.path.relpath(path, DOCS)})"
        return label if not bang else f"({label}: {target})"

    return _LINK.sub(fix, text)


def _shift_headings(text: str, top: int) -> str:
    """Shifts the Markdown headings (outside code fences) so the highest becomes ``top``."""
    parts = re.split(r"(^```.*?^```)", text, flags=re.MULTILINE | re.DOTALL)
    levels = [len(h) for i, part in enumerate(parts) if i % 2 == 0
              for h, _ in _HEADING.findall(part)]
    if not levels:
        return text
    shift = top - min(levels)
    return "".join(part if i % 2 else _HEADING.sub(
        lambda m: "#" * min(6, len(m.group(1)) + shift) + m.group(2), part)
        for i, part in enumerate(parts))


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def experiments_page() -> str:
    """The experiments (``optlab reproduce --list``) and their committed results."""
    from optlab import reproduce

    folder = ROOT / "experiments"
    names = reproduce.names(folder)
    rows = ["| experiment | claim | source | committed result |", "|---|---|---|---|"]
    # "not run yet": no results.json committed in experiments/results/NAME/
    for name in names:
        e = reproduce.load(name, folder)
        record_path = folder / "results" / name / reproduce.RESULTS
        result = "not run yet"
        if record_path.is_file():
            record = json.loads(record_path.read_text())
            mode = "quick mode" if record.get("quick") else "full mode"
            result = f"{reproduce.verdict(record.get('reproduced'))} ({mode})"
        rows.append(f"| `{name}`: {_cell(e.title)} | {_cell(e.claim)} | {_cell(e.source)} "
                    f"| {result} |")
    out = ["## The experiments", "",
           "`optlab reproduce --list` names them; `optlab reproduce NAME` runs one (`--quick` "
           "for the small configuration CI runs) and writes `results.json`, `REPORT.md` and "
           "its figures.", "", *rows, ""]
    results = folder / "RESULTS.md"
    if results.is_file():
        out += [_shift_headings(_relocate(results.read_text(), results), 2)]
    else:
        reports = [folder / "results" / n / reproduce.REPORT for n in names]
        reports = [r for r in reports if r.is_file()]
        out += ["## Results", ""]
        if not reports:
            out += ["No results are committed yet."]
        for report in reports:
            text = report.read_text()
            # REPORT.md embeds the PNG figures; the animations are listed in results.json
            record = report.parent / reproduce.RESULTS
            figures = json.loads(record.read_text()).get("figures", []) \
                if record.is_file() else []
            text += "".join(f"\n![{name}]({name})\n" for name in figures
                            if not name.endswith(".png") and f"]({name})" not in text)
            out += [_shift_headings(_relocate(text, report), 3), ""]
    return "\n".join(out).rstrip() + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


def tasks_page() -> str:
    """Tables of the data sets and models, from the registries the command line reads."""
    from optlab.tasks import DATASETS, MODELS

    out = ["| data set (`load_dataset(name)`, `--task`) | description |", "|---|---|"]
    out += [f"| `{name}` | {_cell(text)} |" for name, text in DATASETS.items()]
    out += ["", "| model (`make_model(name, ...)`, `--model`) | class | description |",
            "|---|---|---|"]
    out += [f"| `{name}` | {{class}}`~{cls.__module__}.{cls.__name__}` | {_cell(text)} |"
            for name, (cls, text) in MODELS.items()]
    return "\n".join(out) + "\n"


def zoo_primitives_page() -> str:
    """The primitives the zoo's modules add to the vocabulary: each module's public
    callables (``__all__``) less the optimizers and what zoo.md documents already."""
    zoo = (DOCS / "zoo.md").read_text()
    modules = sorted({getattr(optlab, n).__module__ for n in optlab.OPTIMIZERS}
                     | {"optlab.lipschitz", "optlab.kronecker"})
    out = []
    for name in modules:
        module = sys.modules[name]
        members = [m for m in getattr(module, "__all__", ())
                   if callable(getattr(module, m)) and m not in optlab.OPTIMIZERS
                   and f"optlab.{m}\n" not in zoo]
        if members:
            out += [f"### `{name}`", "", "```{eval-rst}", f".. automodule:: {name}",
                    f"   :members: {', '.join(members)}", "```", ""]
    return "\n".join(out)


_write_if_changed(GENERATED / "experiments.md", experiments_page())
_write_if_changed(GENERATED / "zoo_primitives.md", zoo_primitives_page())
_write_if_changed(GENERATED / "tasks.md", tasks_page())


# -- checks ----------------------------------------------------------------------------------

def _check_zoo(app) -> None:
    """Every optimizer of optlab.OPTIMIZERS has its entry on the zoo page."""
    from sphinx.util import logging

    zoo = (DOCS / "zoo.md").read_text()
    missing = [n for n in optlab.OPTIMIZERS if f"optlab.{n}\n" not in zoo]
    if missing:
        logging.getLogger(__name__).warning(
            "docs/zoo.md lacks an autofunction entry for: %s", ", ".join(missing))


# Docstrings are written to read well as plain text too (``help()``, ``optlab list``), where
# |x| is an absolute value; in reStructuredText it would be a substitution reference. A bar
# outside inline literals and math is therefore escaped before the docstring is parsed.
_VERBATIM = re.compile(r"(``[\s\S]+?``|:math:`[^`]*`)")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _escape_bars(app, what, name, obj, options, lines) -> None:
    verbatim = [False] * len(lines)  # literal, math and doctest blocks are left alone
    block = None  # indentation of the line that opened a literal / math block
    doctest = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if block is not None:
            if not stripped or _indent(line) > block:
                verbatim[i] = True
                continue
            block = None
        if doctest:
            if stripped:
                verbatim[i] = True
                continue
            doctest = False
        if stripped.startswith(">>>"):
            verbatim[i] = doctest = True
        elif stripped.startswith(".. math::") or stripped.endswith("::"):
            verbatim[i] = stripped.startswith("..")
            block = _indent(line)
    i = 0
    while i < len(lines):
        if verbatim[i]:
            i += 1
            continue
        j = i
        while j < len(lines) and not verbatim[j]:
            j += 1
        text = "\n".join(lines[i:j])
        if "|" in text:
            parts = _VERBATIM.split(text)
            text = "".join(p if k % 2 else re.sub(r"(?<!\\)\|", r"\\|", p)
                           for k, p in enumerate(parts))
            lines[i:j] = text.split("\n")
        i = j


# Signatures name optax's type aliases instead of spelling out their unions (the annotations
# are evaluated, so autodoc_type_aliases cannot see the names).
def _aliases() -> list[tuple[str, str]]:
    from collections.abc import Callable
    from typing import Any

    import optax
    from sphinx.util.typing import stringify_annotation

    out = []
    for annotation, alias in [(optax.ScalarOrSchedule, "optax.ScalarOrSchedule"),
                              (Any | Callable[[Any], Any] | None, "optax.MaskOrFn")]:
        for mode in ("smart", "fully-qualified-except-typing"):
            out.append((stringify_annotation(annotation, mode), alias))
    return out


_ALIASES = _aliases()


def _shorten_signature(app, what, name, obj, options, signature, return_annotation):
    if signature:
        for spelled, alias in _ALIASES:
            signature = signature.replace(spelled, alias)
    return signature, return_annotation


def setup(app):
    app.connect("builder-inited", _check_zoo)
    app.connect("autodoc-process-docstring", _escape_bars)
    app.connect("autodoc-process-signature", _shorten_signature)
