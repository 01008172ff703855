"""Results do not depend on the thread count: training (fused and per-op), prediction,
the GEMM and sparse input give the same bits at 1, 2, 3, 4, 8 and 16 threads. On a machine
with fewer cores the larger teams are oversubscribed, which correctness does not mind;
each case asserts that the largest team really ran more than one thread."""
import numpy as np
import pytest

import fastmlp
import fastmlp.train.loop as training_loop
from fastmlp import BatchNorm, Dense, Dropout, Sequential

THREADS = (1, 2, 3, 4, 8, 16)


@pytest.fixture(autouse=True)
def _native(native):
    """Every case here runs the native backend (skipped only if it cannot import)."""


def _team():
    from fastmlp.backends.native import testing
    return testing.last_team_size()


def _data(rows=1024, features=784, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(rows, features)), rng.integers(0, 10, size=rows)


def _model(dtype):
    return Sequential([Dense(256, "relu"), BatchNorm(), Dropout(0.1), Dense(64, "tanh"),
                       Dense(10)], input_dim=784, dtype=dtype, seed=3)


def _same_bits(results):
    first = results[THREADS[0]]
    for threads, arrays in results.items():
        for a, b in zip(first, arrays):
            np.testing.assert_array_equal(a, b, err_msg=f"{threads} threads")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "per-op"])
def test_training_and_prediction(dtype, fused, monkeypatch):
    if not fused:
        monkeypatch.setattr(training_loop, "_FUSED", False)
    X, y = _data()
    results, teams = {}, {}
    for threads in THREADS:
        model = _model(dtype)
        with fastmlp.threads(threads):
            model.fit(X, y, epochs=2, batch_size=256, optimizer="adam", verbose=0)
            teams[threads] = _team()                  # the last Adam update's team
            proba = model.predict_proba(X)
        results[threads] = [*model.get_weights(), proba]
    _same_bits(results)
    assert teams[1] == 1 and teams[16] > 1, teams


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm(dtype):
    rng = np.random.default_rng(1)
    shapes = [(1024, 1024, 256), (128, 256, 784), (32, 256, 784), (256, 10, 1024)]
    results = {}
    for threads in THREADS:
        outputs = []
        with fastmlp.threads(threads):
            for m, n, k in shapes:
                a = rng.standard_normal((m, k)).astype(dtype)
                b = rng.standard_normal((n, k)).astype(dtype)
                c = np.empty((m, n), dtype)
                fastmlp.backends.get_backend("native").gemm(a, b, c, trans_b=True)
                outputs.append(c)
            if threads == 16:
                assert _team() > 1
        rng = np.random.default_rng(1)                # the same operands for every count
        results[threads] = outputs
    _same_bits(results)


def test_sparse_input_training():
    sparse = pytest.importorskip("scipy.sparse")
    X = sparse.random(2000, 5000, density=0.01, format="csr", random_state=0)
    y = np.random.default_rng(0).integers(0, 2, 2000)
    results = {}
    for threads in THREADS:
        model = Sequential([Dense(512, "relu"), Dense(2)], input_dim=5000, seed=0)
        with fastmlp.threads(threads):
            model.fit(X, y, epochs=1, batch_size=500, optimizer="adam", verbose=0)
            results[threads] = [*model.get_weights(), model.predict_proba(X)]
    _same_bits(results)
