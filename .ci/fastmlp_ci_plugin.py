"""pytest plugin of the CI stages (.ci/*), loaded with ``-p fastmlp_ci_plugin``.

Two checks, each switched on by an environment variable the stage sets:

``FASTMLP_CI_EXPECT_IN=<dir>``
    The session stops at once unless ``fastmlp`` and ``fastmlp._core`` are imported from
    below ``<dir>``: the build under test, not the source tree nor another install.

``FASTMLP_CI_ISA=<level>`` (with ``FASTMLP_ISA=<level>``)
    Every kernel test runs on that level. The kernel conftest's autouse fixture calls
    ``set_isa("auto")`` after each test, and "auto" is the CPU's best level, not
    FASTMLP_ISA's, so without this plugin only the first test would run on the forced
    level. So: items parametrised by the ``isa`` fixture (or ``bf16_isa``, the bfloat16
    kernels' levels) over another level are deselected
    (the run for that level covers them), the level is selected again before each test,
    and each test checks at call time that it is the active one.
"""
from __future__ import annotations

import os

import pytest


def _forced_isa():
    return os.environ.get("FASTMLP_CI_ISA") or None


def _active_isa() -> str:
    from fastmlp import _core
    return _core.backend_info()["isa"]


def imported_from(where: str) -> str:
    """The directory fastmlp was imported from; ValueError unless fastmlp and its _core
    both lie below ``where``."""
    import fastmlp
    from fastmlp import _core
    root = os.path.realpath(where) + os.sep
    for path in (fastmlp.__file__, _core.__file__):
        if not os.path.realpath(path).startswith(root):
            raise ValueError(f"{path} is not under {where}")
    return os.path.dirname(fastmlp.__file__)


def pytest_sessionstart(session):
    where = os.environ.get("FASTMLP_CI_EXPECT_IN")
    if where:
        try:
            imported_from(where)
        except ValueError as error:
            raise pytest.UsageError(f"fastmlp_ci_plugin: FASTMLP_CI_EXPECT_IN: {error}") from None


def pytest_collection_modifyitems(config, items):
    level = _forced_isa()
    if level is None:
        return
    keep, other_level = [], []
    for item in items:
        param = getattr(item, "callspec", None)
        chosen = None if param is None else param.params.get("isa", param.params.get("bf16_isa"))
        (other_level if chosen not in (None, level) else keep).append(item)
    if other_level:
        config.hook.pytest_deselected(items=other_level)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    level = _forced_isa()
    if level is not None:
        import fastmlp
        fastmlp.set_isa(level)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    level = _forced_isa()
    if level is not None:
        active = _active_isa()
        if active != level:
            pytest.fail(f"{item.nodeid} would run on ISA {active!r}, not the forced {level!r}")
    yield
