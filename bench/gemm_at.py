"""One GEMM shape, fastmlp against numpy.matmul (OpenBLAS), side by side, on the same threads:
``python bench/gemm_at.py M N K [--dtype float64] [--trans-a] [--trans-b] [--threads T]``
prints the median time of each and its GFLOP/s (C (M, N) = op(A) @ op(B), op(A) = A.T of a
(K, M) A with --trans-a, the weight gradient's layout; op(B) = B.T of an (N, K) B with
--trans-b, the Dense forward's layout; one thread unless --threads). Run it without
OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE when comparing with numpy (README "Benchmarks")."""
import argparse
import time
from statistics import median

import numpy as np

import benchlib as bl


def seconds(run, repeats: int = 2000) -> float:
    run()
    times = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        times.append((time.perf_counter() - start) / repeats)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("m", type=int)
    parser.add_argument("n", type=int)
    parser.add_argument("k", type=int)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--trans-a", action="store_true")
    parser.add_argument("--trans-b", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.k, args.m) if args.trans_a else (args.m, args.k)
                            ).astype(args.dtype)
    b = rng.standard_normal((args.n, args.k) if args.trans_b else (args.k, args.n)
                            ).astype(args.dtype)
    c = np.empty((args.m, args.n), args.dtype)
    flops = 2 * args.m * args.n * args.k
    from fastmlp.backends import get_backend
    native = get_backend("native")
    runs = {"fastmlp": lambda: native.gemm(a, b, c, trans_a=args.trans_a, trans_b=args.trans_b),
            "numpy": lambda: np.matmul(a.T if args.trans_a else a, b.T if args.trans_b else b,
                                       out=c)}
    for impl, run in runs.items():
        with bl.threads("native" if impl == "fastmlp" else "numpy", args.threads):
            s = seconds(run)
        print(f"{impl:>8}: {s * 1e6:8.1f} us  {flops / s / 1e9:6.1f} GFLOP/s")


if __name__ == "__main__":
    main()
