"""The README's zoo table lists every optimizer optlab has."""

from __future__ import annotations

from pathlib import Path

import optlab

README = Path(__file__).resolve().parents[1] / "README.md"


def test_zoo_table_lists_every_optimizer():
    text = README.read_text()
    zoo = text[text.index("### The zoo"):text.index("## Optimizer search")]
    missing = [n for n in optlab.OPTIMIZERS if f"`{n}`" not in zoo]
    assert not missing, missing
    assert f"{len(optlab.OPTIMIZERS)} optimizers" in zoo
