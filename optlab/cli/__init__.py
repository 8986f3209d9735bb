"""The ``optlab`` command line: list, train and compare optimizers.

* ``optlab list [NAME]`` — optimizers, schedules, tasks and models with one-line
  descriptions; with a name, one of them in detail (an optimizer's formula, arguments with
  defaults and chain of primitives).
* ``optlab train --task mnist1d --model mlp --optimizer adam --lr 1e-2 --epochs 20 --seeds 3
  --out runs/x`` — trains (a grid over learning rates × seeds in one compiled program), prints
  a summary, writes ``results.json`` and ``curves.png``; re-running resumes from checkpoints.
  ``--program "exp(sign(g) * sign(m)) * g"`` instead of ``--optimizer`` trains a formula of
  the optimizer-search language (:func:`optlab.search.parse`), compiled with
  :func:`optlab.search.compile_program`.
* ``optlab compare --task mnist1d --optimizers sgd,momentum,adam --lrs 1e-3,1e-2 --seeds 3
  --out runs/cmp`` — per optimizer, the best learning rate on validation and its test accuracy
  (mean ± std over seeds): a table printed and written as ``summary.csv`` / ``summary.json``,
  and one figure of the learning curves. ``--task`` may instead list synthetic problems
  (``rosenbrock,beale``), compared by final loss after ``--steps`` updates.

Every check of the input happens before the first training step; a bad value is reported as
``optlab: error: ...`` naming the flag, with exit status 2. An ``--out`` folder holds one run
or one comparison, marked by ``optlab.json`` (kind and configuration): the same command
resumes there, anything else is refused.

Modules: :mod:`~optlab.cli.flags` (argument types and checks, :class:`CLIError`),
:mod:`~optlab.cli.outputs` (``--out``), :mod:`~optlab.cli.spec` (the optimizer of a run),
:mod:`~optlab.cli.task_setup` (data set, model, training one optimizer),
:mod:`~optlab.cli.results` (grouping a result by hyperparameters), one module per command
(:mod:`~optlab.cli.listing`, :mod:`~optlab.cli.training`, :mod:`~optlab.cli.comparison`) and
:mod:`~optlab.cli.parser` (the parser and :func:`main`). Names used as ``optlab.cli.NAME``
(the commands, constants, :class:`CLIError`, ...) are re-exported here.
"""

from optlab.cli.comparison import cmd_compare
from optlab.cli.flags import (
    DEFAULT_LRS,
    DEFAULT_OPTIMIZERS,
    DEFAULTS,
    PROBLEM_LRS,
    SEEDS,
    TASK_MODELS,
    CLIError,
)
from optlab.cli.flags import _cli_words as _cli_words
from optlab.cli.listing import cmd_list
from optlab.cli.outputs import MARKER
from optlab.cli.outputs import _claim as _claim
from optlab.cli.outputs import _writable as _writable
from optlab.cli.parser import build_parser, main
from optlab.cli.training import cmd_train

__all__ = ["DEFAULTS", "DEFAULT_LRS", "DEFAULT_OPTIMIZERS", "MARKER", "PROBLEM_LRS", "SEEDS",
           "TASK_MODELS", "CLIError", "build_parser", "cmd_compare", "cmd_list", "cmd_train",
           "main"]
