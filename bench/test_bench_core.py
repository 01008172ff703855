"""Side-by-side timings: native vs NumPy backend (and numpy.matmul for GEMM).

Run:  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest bench -q
      (``--benchmark-disable`` makes it a quick smoke run). Each benchmark checks its
      result after timing. The full suite with PyTorch/scikit-learn comparisons and a
      report generator belongs to the speed work (bench/report.py).
"""
import numpy as np
import pytest

import fastmlp
from fastmlp.backends import get_backend

def _median(benchmark):
    """Median seconds, or None under --benchmark-disable."""
    return benchmark.stats.stats.median if benchmark.stats else None


GEMM_SHAPES = [(256, 256, 256), (128, 784, 256), (32, 784, 256), (1024, 256, 128)]


@pytest.mark.parametrize("m,k,n", GEMM_SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_gemm_nt(benchmark, backend, m, k, n):
    """Forward product Z = X @ W.T in float32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((n, k), dtype=np.float32)
    z = np.empty((m, n), np.float32)
    bk = get_backend(backend)
    benchmark(bk.gemm, x, w, z, trans_b=True)
    if _median(benchmark):
        benchmark.extra_info["gflops"] = 2 * m * n * k / _median(benchmark) / 1e9
    ref = x.astype(np.float64) @ w.T.astype(np.float64)
    assert np.allclose(z, ref, rtol=1e-4, atol=1e-3 * np.sqrt(k))


def _digits_like(n=4096, d=64, k=10, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    y = rng.integers(0, k, size=n)
    X = (centers[y] + rng.normal(scale=2.0, size=(n, d))).astype(np.float32)
    return X, y


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_train_epoch_small(benchmark, backend):
    """Config C of the speed plan: 64-32-10 ReLU, batch 32, one epoch of 4096 rows."""
    X, y = _digits_like()
    model = fastmlp.Sequential([fastmlp.Dense(32, activation="relu"), fastmlp.Dense(10)],
                               input_dim=64, backend=backend, seed=0)
    benchmark.pedantic(model.fit, args=(X, y), kwargs=dict(epochs=1, batch_size=32,
                       learning_rate=0.05), rounds=5, warmup_rounds=1)
    if _median(benchmark):
        benchmark.extra_info["samples_per_s"] = len(X) / _median(benchmark)
    assert model.score(X, y) > 0.8
