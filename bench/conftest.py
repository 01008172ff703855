"""Fixtures of the benchmark suite (``python -m pytest bench``).

Under ``--benchmark-disable`` (the smoke run CI uses) every benchmark runs its code once
on tiny data and still checks the result; without it the training benchmarks use the full
data sizes of the speed plan. ``bench/report.py`` is the tool for measuring: it runs every
measurement in its own process (numpy and fastmlp never share one) and writes the tables.
"""
import pytest

import benchlib


@pytest.fixture
def smoke(request) -> bool:
    """True under --benchmark-disable: use tiny data; the code still runs and is checked."""
    return bool(request.config.getoption("benchmark_disable"))


@pytest.fixture
def require():
    """require(impl): skip the test when an optional comparison is not installed."""
    def check(impl: str) -> None:
        if not benchlib.available(impl):
            pytest.skip(f"{impl} is not installed (optional comparison)")
    return check

