"""Fixtures of the kernel tests: every ISA level, both dtypes, thread control.

The ISA is switched here and nowhere else in tests/kernels, through the public
``fastmlp.set_isa``, which also retires predictors packed for another
level. A level the CPU or the build lacks is
skipped with its name in the reason, so ``pytest -ra`` lists every path that did not run.
"""
from __future__ import annotations

import contextlib
import pathlib
import sys
from typing import Callable, Iterator, List

import numpy as np
import pytest

# tests/ holds activation_cases.py, which the oracle reads, and helpers.py
_TESTS = str(pathlib.Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

import fastmlp
from fastmlp import _core
from helpers import emulate_amx_where_the_cpu_lacks_it


ISA_LEVELS = ("generic", "avx2", "avx512")
# Every level, those that add bfloat16 instructions included: avx512_bf16 runs avx512's
# float32 and float64 kernels (tests/kernels/test_gemm_bf16.py checks that), so the float
# kernels are tested on ISA_LEVELS and the bfloat16 ones on these.
BF16_LEVELS = ISA_LEVELS + ("avx512_bf16", "amx")

emulate_amx_where_the_cpu_lacks_it()
# The level selected at import (FASTMLP_ISA or the CPU's best): what every test leaves
# active again, so `FASTMLP_ISA=generic pytest tests/kernels` runs on generic throughout.
SESSION_ISA = _core.backend_info()["isa"]


def usable_isas() -> List[str]:
    return list(_core.backend_info()["usable_isas"])


def set_isa(name: str) -> str:
    """Switch the kernel table in process; returns the active level."""
    return fastmlp.set_isa(name)


def active_isa() -> str:
    return _core.backend_info()["isa"]


@contextlib.contextmanager
def using_isa(name: str) -> Iterator[str]:
    set_isa(name)
    try:
        assert active_isa() == name, f"set_isa({name!r}) left {active_isa()!r} active"
        yield name
    finally:
        set_isa(SESSION_ISA)


def reset_team_size() -> None:
    """Make last_team_size() read 1 with a call too small to go parallel, so a later
    reading of 2 proves that the call in between ran on two threads."""
    x = np.zeros((1, 1), np.float32)
    _core.col_sum(x, np.zeros(1, np.float32))
    assert _core._testing.last_team_size() == 1


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """n threads for kernels called from this Python thread (the per-call override);
    last_team_size() is reset to 1 on entry."""
    reset_team_size()
    previous = _core.push_threads(n)
    try:
        yield
    finally:
        _core.pop_threads(previous)


def on_every_isa(f: Callable[[], object]) -> dict:
    """{level: f()} with f run once on each usable level (for bitwise cross-ISA checks);
    skips, naming the missing levels, when fewer than two levels can run here."""
    levels = usable_isas()
    if len(levels) < 2:
        missing = [lv for lv in ISA_LEVELS if lv not in levels]
        pytest.skip(f"cross-ISA comparison needs two levels; only {levels} usable "
                    f"(not usable: {missing})")
    results = {}
    for name in levels:
        with using_isa(name):
            results[name] = f()
    return results


def _activate(name: str) -> Iterator[str]:
    info = _core.backend_info()
    if name not in info["usable_isas"]:
        why = "not compiled into this build" if name not in info["compiled_isas"] else \
              "not supported by this CPU"
        pytest.skip(f"ISA level {name!r} {why} (usable: {info['usable_isas']})")
    with using_isa(name):
        yield name


@pytest.fixture(params=ISA_LEVELS)
def isa(request) -> Iterator[str]:
    """Each ISA level of the float kernels in turn, active for the test; the session's
    level restored afterwards."""
    yield from _activate(request.param)


@pytest.fixture(params=BF16_LEVELS)
def bf16_isa(request) -> Iterator[str]:
    """Each level of the bfloat16 kernels in turn (the portable path on generic, avx2 and
    avx512; VDPBF16PS on avx512_bf16; the tiles on amx, emulated where the CPU has no
    AMX), active for the test."""
    yield from _activate(request.param)


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture
def every_isa() -> Callable[[Callable[[], object]], dict]:
    """on_every_isa: {level: f()} over the usable levels (cross-ISA bit checks)."""
    return on_every_isa


@pytest.fixture
def nthreads() -> Callable[[int], "contextlib.AbstractContextManager[None]"]:
    """nthreads(n): a context manager running this thread's kernels on n threads."""
    return threads


@pytest.fixture(autouse=True)
def _restore_runtime_state():
    """Leave the ISA on the session's level and the global thread count at its default,
    whatever a test did."""
    yield
    set_isa(SESSION_ISA)
    _core.set_num_threads(0)
