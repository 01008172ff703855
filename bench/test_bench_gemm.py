"""GEMM GFLOP/s: fastmlp's GEMM (the native backend) against numpy.matmul (OpenBLAS).

float32 and float64; square 256, 512, 1024 (C = A @ B) and the products of a Dense
layer in -> out at batch 32, 128 and 1024 for 784->256, 256->128, 128->10 and
1024->1024: forward Z = X @ W.T, dW = dZ.T @ X and dX = dZ @ W (neither side copies a
transpose); 1 and 2 threads. Each benchmark then checks C against the float64 product.

In one pytest process the two thread pools (OpenMP and OpenBLAS) take turns, so these
numbers are indicative; ``bench/report.py`` times each side in its own process.
"""
import pytest

import benchlib as bl

CASES = bl.gemm_cases()


@pytest.mark.parametrize("threads", bl.THREADS, ids=lambda n: f"{n}t")
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("impl", bl.GEMM_IMPLS)
def test_gemm(benchmark, impl, dtype, case, threads):
    run, error = bl.gemm_setup(impl, case, dtype)
    benchmark.group = f"gemm {dtype} {case.label} {threads}t"
    with bl.threads(impl, threads):
        benchmark(run)
    median = bl.median_seconds(benchmark)
    if median:
        benchmark.extra_info["gflops"] = case.flops / median / 1e9
    assert error() < bl.GEMM_TOLERANCE[dtype]
