"""Threads and processes: training bitwise independent of 1-4 threads for Dense and for
every built-in layer kind; concurrent predict from Python threads; a fork after
threaded training; multiprocessing with the fork, spawn and forkserver start methods;
the OpenMP pool seen and limited by threadpoolctl (docs/conventions.md Threads).

(tests/api/test_threads_and_fork.py covers 1 vs 2 threads on a Dense model and an
in-process fork; these extend it.) Every test that starts a process has a
pytest-timeout marker and its own timeout on the child, so a hang fails the test.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import warnings

import numpy as np
import pytest
import threadpoolctl

import fastmlp
from fastmlp import _core

from . import _process_work as work

CHILD_TIMEOUT = 90          # seconds for any child process or pool result
THREAD_COUNTS = (1, 2, 3, 4)


@pytest.fixture(autouse=True)
def _needs_native(native):
    """Every test here runs the native backend."""


def _assert_same_weights(a, b, what):
    assert len(a) == len(b), what
    for i, (x, y) in enumerate(zip(a, b)):
        assert x.dtype == y.dtype and x.shape == y.shape, (what, i)
        assert np.array_equal(x, y), f"{what}: weight array {i} differs"


# ------------------------------------------------------------------------------------
# Threads inside one process
# ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", work.MODELS)
def test_training_bitwise_identical_with_1_to_4_threads(kind):
    """The same seed gives the same weights with 1, 2, 3 and 4 threads; each run's last
    kernel (the optimizer's flat update over all parameters) really ran on n threads."""
    results = {}
    for n in THREAD_COUNTS:
        with fastmlp.threads(n):
            weights = work.train(kind, seed=5).get_weights()
            team = _core._testing.last_team_size()
        assert team == n, f"{kind}: the {n}-thread fit's last kernel ran on {team} threads"
        results[n] = weights
    for n in THREAD_COUNTS[1:]:
        _assert_same_weights(results[1], results[n], f"{kind}: 1 vs {n} threads")


def test_set_num_threads_also_gives_the_same_bits():
    """The global setting (not only the per-block one) drives the fused trainer."""
    with fastmlp.threads(1):
        want = work.train("mixed", seed=6).get_weights()
    try:
        fastmlp.set_num_threads(3)
        got = work.train("mixed", seed=6).get_weights()
        assert _core._testing.last_team_size() == 3
    finally:
        fastmlp.set_num_threads(0)
    _assert_same_weights(want, got, "set_num_threads(3) vs 1 thread")


@pytest.mark.parametrize("kind", work.MODELS)
def test_concurrent_predict_equals_serial(kind):
    """Six Python threads, each with its own kernel thread count (1-3), call predict,
    predict_proba and evaluate at once on one trained model; every result equals the
    serial one bit for bit."""
    model = work.train(kind, seed=7)
    inputs = [work.data(seed)[0][:rows] for seed, rows in zip(range(6), (1, 7, 64, 300, 1024, 33))]
    y_eval = work.data(0)[1][:64]

    def calls(X):
        return (model.predict(X), model.predict_proba(X), model.predict_proba(X, batch_size=17),
                model.evaluate(inputs[2], y_eval)["loss"])
    serial = [calls(X) for X in inputs]
    results, errors = {}, []
    barrier = threading.Barrier(len(inputs))

    def worker(i):
        try:
            barrier.wait(timeout=30)
            with fastmlp.threads(1 + i % 3):
                results[i] = [calls(inputs[i]) for _ in range(5)]
        except BaseException as exc:   # re-raised below, in the test's thread
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=CHILD_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a predicting thread hung"
    if errors:
        raise errors[0]
    for i, want in enumerate(serial):
        for got in results[i]:
            for a, b in zip(got, want):
                assert np.array_equal(a, b), f"{kind}: thread {i} differs from the serial call"


# ------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------

FORK_SCENARIO = """
import hashlib, json, os, sys, time
import numpy as np
import fastmlp
from fastmlp import _core
sys.path.insert(0, {tests_dir!r})
from api import _process_work as work

TIMEOUT = {timeout}


def digest(weights, proba):   # sha256 of the bits: the pipe carries a few bytes, never blocks
    h = hashlib.sha256()
    for a in list(weights) + [proba]:
        h.update(a.tobytes())
    return h.hexdigest()


with fastmlp.threads(2):
    parent = work.train("mixed", seed=8)
    team = _core._testing.last_team_size()           # 2: the OpenMP pool is running
X = work.data(8)[0][:64]
parent_proba = parent.predict_proba(X)

r, w = os.pipe()
pid = os.fork()
if pid == 0:                                # the child: predict with the inherited
    try:                                    # model, then train a new one
        os.close(r)
        inherited = parent.predict_proba(X)
        weights, proba = work.train_and_predict(("mixed", 9))
        report = {{"inherited_same": bool(np.array_equal(inherited, parent_proba)),
                  "digest": digest(weights, proba),
                  "serial_after_fork": fastmlp.backend_info()["serial_after_fork"]}}
        with os.fdopen(w, "w") as out:
            json.dump(report, out)
    finally:
        os._exit(0)
os.close(w)
deadline, status = time.monotonic() + TIMEOUT, (0, 0)
while status == (0, 0) and time.monotonic() < deadline:
    time.sleep(0.05)
    status = os.waitpid(pid, os.WNOHANG)
if status == (0, 0):
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print(json.dumps({{"hang": True}}))
    sys.exit(0)
with os.fdopen(r) as pipe:
    child = json.loads(pipe.read() or "null")
with fastmlp.threads(2):                    # the parent still trains on two threads
    work.train("dense", 9)
    parent_team_after = _core._testing.last_team_size()
    weights, proba = work.train_and_predict(("mixed", 9))
print(json.dumps({{"hang": False, "team": team, "parent_team_after": parent_team_after,
                  "exit": os.WEXITSTATUS(status[1]), "child": child,
                  "want_digest": digest(weights, proba)}}))
"""


@pytest.mark.timeout(2 * CHILD_TIMEOUT)
def test_fork_after_threaded_training_child_trains_and_predicts():
    """In a fresh interpreter (so a hang fails this test, not the suite): train on two
    threads, os.fork, and in the child predict with the inherited model and train a new
    one. The child runs serially, gives the parent's predictions and the same weights as
    the same training done in the parent on two threads."""
    tests_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = textwrap.dedent(FORK_SCENARIO.format(tests_dir=tests_dir, timeout=CHILD_TIMEOUT))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=2 * CHILD_TIMEOUT - 10)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not out["hang"], "the child forked after threaded training hung"
    assert (out["team"], out["parent_team_after"], out["exit"]) == (2, 2, 0), out
    child = out["child"]
    assert child is not None, "the child wrote no report"
    assert child["serial_after_fork"] is True and child["inherited_same"] is True
    assert child["digest"] == out["want_digest"], "the child's training differs from the parent's"


def _start_methods():
    available = multiprocessing.get_all_start_methods()
    return [pytest.param(m, marks=pytest.mark.skipif(m not in available, reason=f"no {m!r} start method here"))
            for m in ("fork", "spawn", "forkserver")]


@pytest.mark.timeout(2 * CHILD_TIMEOUT)
@pytest.mark.parametrize("method", _start_methods())
def test_multiprocessing_pool(method):
    """A Pool of 2 workers maps train_and_predict over 4 tasks after this process ran
    threaded kernels; every result equals the same call made here, bit for bit."""
    tasks = [("dense", 10), ("mixed", 11), ("dense", 12), ("mixed", 13)]
    with fastmlp.threads(2):
        work.train("dense", 10)
        assert _core._testing.last_team_size() == 2     # the OpenMP pool runs when the workers start
        want = [work.train_and_predict(t) for t in tasks]
    context = multiprocessing.get_context(method)
    with warnings.catch_warnings():
        # Python >= 3.12 warns that fork in a multi-threaded process may deadlock: the
        # case under test.
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*fork.*")
        with context.Pool(2) as pool:
            reports = pool.map_async(work.child_report, tasks).get(timeout=CHILD_TIMEOUT)
    for task, (weights, proba), report in zip(tasks, want, reports):
        _assert_same_weights(weights, report["weights"], f"{method} {task}")
        assert np.array_equal(proba, report["proba"]), (method, task)
        # fork children inherit a started OpenMP pool and run serially; spawn and
        # forkserver children start fresh and keep OpenMP's default
        assert report["serial_after_fork"] is (method == "fork"), (method, report)


# ------------------------------------------------------------------------------------
# threadpoolctl
# ------------------------------------------------------------------------------------

def _core_libgomp() -> str:
    """The real path of the libgomp that fastmlp._core is linked against (ldd)."""
    out = subprocess.run(["ldd", _core.__file__], capture_output=True, text=True, timeout=30,
                         check=True).stdout
    paths = [line.split("=>")[1].split("(")[0].strip() for line in out.splitlines()
             if "libgomp" in line and "=>" in line]
    assert len(paths) == 1, f"fastmlp._core links no single libgomp:\n{out}"
    return os.path.realpath(paths[0])


def _big_kernel_team() -> int:
    """last_team_size() of an SGD update over 300,000 elements (above the parallel
    threshold for up to 9 threads), after a serial call reset it to 1."""
    _core.col_sum(np.zeros((1, 1), np.float32), np.zeros(1, np.float32))
    assert _core._testing.last_team_size() == 1
    x = np.ones(300_000, np.float32)
    _core._testing.sgd_update(x, x.copy(), 0.5)
    return _core._testing.last_team_size()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ldd and libgomp: Linux only")
def test_threadpoolctl_sees_and_limits_our_openmp_pool():
    """threadpool_info() lists the libgomp fastmlp._core loaded as an 'openmp' pool, and
    threadpool_limits(1, user_api="openmp") makes a large kernel run on one thread
    (with no fastmlp setting, which would take priority), then lets it go parallel."""
    fastmlp.set_num_threads(0)
    gomp = _core_libgomp()
    pools = [p for p in threadpoolctl.threadpool_info()
             if p["user_api"] == "openmp" and os.path.realpath(p["filepath"]) == gomp]
    assert len(pools) == 1, (gomp, threadpoolctl.threadpool_info())
    with threadpoolctl.threadpool_limits(2, user_api="openmp"):
        assert _big_kernel_team() == 2
        with threadpoolctl.threadpool_limits(1, user_api="openmp"):
            assert _big_kernel_team() == 1
            with fastmlp.threads(2):       # a fastmlp setting still beats threadpoolctl
                assert _big_kernel_team() == 2
        assert _big_kernel_team() == 2
