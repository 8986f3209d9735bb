"""The tutorial notebooks: each runs top to bottom in its quick configuration, and each
``notebooks/NAME.ipynb`` is its jupytext script ``notebooks/NAME.py`` (the reviewed source),
committed without outputs."""

from __future__ import annotations

import time
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SCRIPTS = sorted(NOTEBOOKS.glob("*.py"))
NAMES = [p.stem for p in SCRIPTS]


def test_notebooks_are_found():
    assert {"compose_optimizer", "train_flax", "search_space", "amsgrad_counterexample"} \
        <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_paired_and_stripped(name):
    """The .ipynb has the script's cells (``jupytext --sync notebooks/*.py`` after editing
    the script) and no outputs."""
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.is_file(), f"{path.name} is missing: run `jupytext --sync notebooks/{name}.py`"
    script = jupytext.read(NOTEBOOKS / f"{name}.py")
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    cells = lambda nb: [(c.cell_type, c.source) for c in nb.cells]  # noqa: E731
    assert cells(notebook) == cells(script), (
        f"{path.name} differs from {name}.py: run `jupytext --sync notebooks/{name}.py`")
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{path.name} has outputs: commit it stripped")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, monkeypatch):
    """Executes the notebook in a fresh kernel with OPTLAB_NOTEBOOK_QUICK=1 (its small
    configuration); any exception in a cell fails the test."""
    monkeypatch.setenv("OPTLAB_NOTEBOOK_QUICK", "1")
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    start = time.perf_counter()
    client.execute()
    print(f"{name}: {time.perf_counter() - start:.1f} s")
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors
