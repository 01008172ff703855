"""Shared set-up of the property and fuzz tests (hypothesis).

The kernel properties import the tolerance tables of tests/kernels (the one place each
bound is stated) and its oracle, and tests/tolerances.py: both folders go on sys.path
here, so this folder also runs on its own. Every test leaves the ISA on "auto" and the
global thread count at its default. Each fuzz module counts the generated inputs it ran
to a verdict in its module-level Counter ``FUZZ_EXAMPLES`` (by property); their total is
reported at the end of the run.
"""
from __future__ import annotations

import collections
import pathlib
import sys

import pytest

import fastmlp

_TESTS = pathlib.Path(__file__).resolve().parents[1]
for _folder in (_TESTS, _TESTS / "kernels"):
    if str(_folder) not in sys.path:
        sys.path.append(str(_folder))



@pytest.fixture(autouse=True)
def _restore_runtime_state():
    yield
    fastmlp.set_isa("auto")
    fastmlp.set_num_threads(0)


def pytest_terminal_summary(terminalreporter):
    counters = [module.FUZZ_EXAMPLES for module in list(sys.modules.values())
                if isinstance(getattr(module, "FUZZ_EXAMPLES", None), collections.Counter)]
    for counter in counters:
        terminalreporter.write_line(f"fuzz: {sum(counter.values())} generated inputs: "
                                    + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())))
