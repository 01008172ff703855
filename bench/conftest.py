"""Fixtures of the benchmark suite (``python -m pytest bench``).

Under ``--benchmark-disable`` (the smoke run CI uses) every benchmark runs its code once
on tiny data and still checks the result; without it the training benchmarks use the full
data sizes of the speed plan. ``bench/report.py`` is the tool for measuring: it runs every
measurement in its own process (numpy and fastmlp never share one) and writes the tables.
"""
import json
import os
import subprocess
import sys

import pytest

import benchlib

HERE = os.path.dirname(os.path.abspath(__file__))


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



@pytest.fixture
def report_worker():
    """report_worker(spec): report.py's worker for ``spec`` run in a fresh process, as
    report.py runs it; its result."""
    def run(spec: dict) -> dict:
        done = subprocess.run([sys.executable, os.path.join(HERE, "report.py"), "--worker",
                               json.dumps(spec)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return [json.loads(line.split(" ", 1)[1]) for line in done.stdout.splitlines()
                if line.startswith("BENCH-RESULT ")][-1]
    return run
