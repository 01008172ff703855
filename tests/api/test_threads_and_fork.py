"""Native training is bitwise independent of the thread count, and a process forked after
multi-threaded training trains and predicts (serially) instead of hanging."""
import multiprocessing
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Sequential
from fastmlp.backends import native as native_backend

# 784 -> 256 -> 10 has 203,530 parameters: the SGD update (32Ki elements per thread) and
# every GEMM of a 256-row batch are above their parallel thresholds.
N_IN, N_HIDDEN, N_ROWS = 784, 256, 1024


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N_ROWS, N_IN)).astype(np.float32)
    return X, rng.integers(0, 10, size=N_ROWS)


def _train(threads: int):
    X, y = _data()
    model = Sequential([Dense(N_HIDDEN, "relu"), Dense(10)], input_dim=N_IN, seed=3)
    with fastmlp.threads(threads):
        model.fit(X, y, epochs=2, batch_size=256, learning_rate=0.05)
        team = native_backend.testing.last_team_size()  # the last SGD update's team
    return model.get_weights(), team


def test_training_is_bitwise_identical_with_one_and_two_threads(native):
    one, team_one = _train(1)
    two, team_two = _train(2)
    assert (team_one, team_two) == (1, 2), "the two-thread run did not run two threads"
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def _child(queue):
    X, y = _data(1)
    model = Sequential([Dense(N_HIDDEN, "relu"), Dense(10)], input_dim=N_IN, seed=4)
    model.fit(X, y, epochs=1, batch_size=256)
    queue.put((fastmlp.backend_info()["serial_after_fork"], model.predict(X[:5]).tolist()))


def test_fork_after_training_does_not_hang(native):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform has no fork start method")
    X, y = _data()
    model = Sequential([Dense(N_HIDDEN, "relu"), Dense(10)], input_dim=N_IN, seed=3)
    with fastmlp.threads(2):
        model.fit(X, y, epochs=1, batch_size=256)
        assert native_backend.testing.last_team_size() == 2
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    with warnings.catch_warnings():
        # Python >= 3.12 warns that forking a multi-threaded process may deadlock: the
        # very case this test shows we handle.
        warnings.simplefilter("ignore", DeprecationWarning)
        child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
        child.join()
        pytest.fail("the child forked after multi-threaded training hung")
    assert child.exitcode == 0
    serial, predictions = queue.get(timeout=5)
    assert serial is True
    assert len(predictions) == 5


_SPIN_PROBE = ("import json, os, fastmlp; fastmlp.Sequential([fastmlp.Dense(2)], input_dim=2); "
               "print(json.dumps([os.environ.get('GOMP_SPINCOUNT'), "
               "fastmlp.backend_info()['omp_spin']]))")


@pytest.mark.parametrize("env, expected", [
    ({}, [native_backend.OMP_SPIN, native_backend.OMP_SPIN]),   # unset: a bounded spin
    ({"GOMP_SPINCOUNT": "5"}, ["5", "user"]),                   # the user's value wins
    ({"OMP_WAIT_POLICY": "active"}, [None, "user"]),            # and so does their policy
])
def test_bounded_omp_spin_in_fresh_process(env, expected):
    """Importing the native backend in a fresh process sets GOMP_SPINCOUNT before libgomp
    loads when the user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT, and leaves the
    environment alone when they did."""
    import json
    import os
    import subprocess
    import sys
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", _SPIN_PROBE], env={**base, **env},
                         capture_output=True, text=True, timeout=300, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected
