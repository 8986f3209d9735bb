"""Neural optimizer search (Bello et al. 2017): the primitive space as programs.

* :mod:`optlab.search.language` — operands, unary and binary functions, expression trees;
* :mod:`optlab.search.program` / :mod:`optlab.search.syntax` — programs of 5-token groups,
  formulas (``parse``, ``formula``), canonical form and hash;
* :mod:`optlab.search.compiler` — a program → an optlab chain (accumulators + one combiner);
* :mod:`optlab.search.population` — programs as int arrays, interpreted in one compiled
  function, so a population trains as one ``optlab.train`` grid;
* :mod:`optlab.search.evaluator` — dedup (hash + functional fingerprint) and rewards;
* :mod:`optlab.search.strategies` — random search and regularized evolution (ask / tell);
* :mod:`optlab.search.controller` — the RNN controller trained by REINFORCE / PPO.
"""

from optlab.search.compiler import compile_program, expression
from optlab.search.controller import Controller
from optlab.search.evaluator import Evaluation, Evaluator
from optlab.search.language import (
    BINARY,
    OPERANDS,
    UNARY,
    Binary,
    Leaf,
    SearchConfig,
    Unary,
)
from optlab.search.program import (
    Program,
    canonical,
    equivalent,
    formula,
    parse,
    program_hash,
    random_program,
)
from optlab.search.strategies import (
    MUTATIONS,
    RandomSearch,
    RegularizedEvolution,
    SearchResult,
    Strategy,
    mutate,
    run_search,
)

compile = compile_program  # the name: optlab.search.compile(program, lr)

__all__ = [
    "BINARY",
    "MUTATIONS",
    "OPERANDS",
    "UNARY",
    "Binary",
    "Controller",
    "Evaluation",
    "Evaluator",
    "Leaf",
    "Program",
    "RandomSearch",
    "RegularizedEvolution",
    "SearchConfig",
    "SearchResult",
    "Strategy",
    "Unary",
    "canonical",
    "compile",
    "compile_program",
    "equivalent",
    "expression",
    "formula",
    "mutate",
    "parse",
    "program_hash",
    "random_program",
    "run_search",
]
