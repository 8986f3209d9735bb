"""pytest plugin: optax's own test suite, run from the installed wheel with optlab's optimizers
substituted for optax's of the same name.

Used by ``make test`` as ``pytest -p tests.optax_suite.shim --pyargs optax._src.alias_test ...``
(see :data:`MODULES`). Nothing of optax's test code is copied: the plugin patches
``optax._src.alias`` and ``optax`` *before* the test modules are imported (some build their
optimizers at import time), then keeps only the collected tests that exercise an optlab
optimizer; tests of optax-only optimizers, schedules or utilities would test optax, not optlab.

Tests that read optax's own state field names are expected failures, listed with the reason in
:data:`FIELD_NAME_LOOKUPS` (README, "Differences from optax").
"""

from __future__ import annotations

import os
import re
import sys
import types

# sharding_test.py builds an 8-device mesh; the flag must be set before jax starts.
_FLAG = "--xla_force_host_platform_device_count=8"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FLAG).strip()

import jax  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402
from optax._src import alias  # noqa: E402

import optlab  # noqa: E402

MODULES = (
    "optax._src.alias_test",
    "optax._src.float64_test",
    "optax._src.sharding_test",
    "optax.schedules._schedule_test",
    "optax.contrib._common_test",
    "optax.contrib._sam_test",
    "optax.contrib._muon_test",
    "optax.contrib._schedule_free_test",
)

_OURS = {n: getattr(optlab, n) for n in optlab.OPTIMIZERS}
_OURS.update(schedule_free_eval_params=optlab.schedule_free_eval_params,
             schedule_free=optlab.schedule_free.schedule_free)

SUBSTITUTED = tuple(sorted(n for n in _OURS if hasattr(alias, n) or hasattr(optax.contrib, n)))
"""optax aliases and ``optax.contrib`` optimizers replaced by optlab's of the same name."""

for _name in SUBSTITUTED:
    if hasattr(alias, _name):
        setattr(alias, _name, _OURS[_name])
        setattr(optax, _name, _OURS[_name])
    else:  # optax.contrib and the private module defining it (tests call either)
        sys.modules[getattr(optax.contrib, _name).__module__].__dict__[_name] = _OURS[_name]
        setattr(optax.contrib, _name, _OURS[_name])

FIELD_NAME_LOOKUPS: dict[str, str] = {
    r"MuonTest::test_dim_nums_combinations": "reads optax's muon state by position "
    "(state[0]['muon'][0][0][1]); optlab's muon masks the same leaves in its own chain layout",
}
"""Test-id patterns that look up optax's state field names, with the reason they differ."""

_ALL_OPTAX_NAMES = {n for n in dir(alias) if not n.startswith("_")} | {
    n for n in dir(optax.contrib) if not n.startswith("_")}
_NAME = re.compile(r"opt_name='([a-z0-9_]+)'")


def _optimizers_named(item: pytest.Item) -> set[str]:
    """The optimizer names a collected test exercises (from absl's parameter repr or name)."""
    fn = getattr(item, "obj", None)
    text = getattr(fn, "__x_params_repr__", "") or ""
    names = set(_NAME.findall(text))
    if not names:
        # named_parameters (sharding_test, float64_test): the optimizer is the name suffix.
        test_name = item.name
        names = {n for n in _ALL_OPTAX_NAMES if test_name.endswith("_" + n)
                 or re.search(rf"_{n}\d*$", test_name)}
    return names


_WHOLE_MODULES = ("_muon_test", "_schedule_free_test")
"""Test modules of one optimizer family each: every test exercises the substituted one."""


def _exercises_optlab(item: pytest.Item) -> bool:
    module = getattr(getattr(item, "module", None), "__name__", "")
    if module.endswith(_WHOLE_MODULES) or "LBFGSTest" in item.nodeid:
        return True
    names = _optimizers_named(item)
    if names:
        return bool(names & set(SUBSTITUTED))
    # Parameterised without an optimizer name: explicit_dtype (sgd/adam/adamw) and
    # ScheduleAsLearningRate use optlab's aliases; other tests exercise optax only.
    text = getattr(getattr(item, "obj", None), "__x_params_repr__", "") or ""
    return "opt_name=" in text or item.name.startswith("test_explicit_dtype")


class _JaxWithComparableVersion(types.ModuleType):
    """``jax`` as seen by sharding_test.py, whose guard ``jax.__version__ < '0.7.2'`` compares
    strings, so '0.10.2' < '0.7.2' and every sharding test would be skipped on JAX >= 0.10."""

    def __init__(self):
        super().__init__("jax")
        self.__version__ = "99.0.0"

    def __getattr__(self, name):
        return getattr(jax, name)


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.endswith("sharding_test"):
            module.jax = _JaxWithComparableVersion()
    keep, drop = [], []
    for item in items:
        (keep if _exercises_optlab(item) else drop).append(item)
        for pattern, reason in FIELD_NAME_LOOKUPS.items():
            if re.search(pattern, item.nodeid):
                item.add_marker(pytest.mark.xfail(reason=reason, strict=True))
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


def pytest_report_header(config):
    return f"optlab substituted for optax: {', '.join(SUBSTITUTED)}"
