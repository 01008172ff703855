"""Where a second thread starts to pay, per kind of kernel: the grains of csrc/ops.hpp.

    python bench/grains.py

Each kernel is timed at sizes around its grain on one thread (``fastmlp.threads(1)``) and
on two with the grains switched off (``_testing.set_grain_override(1)``: every kernel then
takes every thread it is given), the least of 300 calls each (the machine may be shared:
the least is the call nothing interrupted). ``2t/1t`` above 1 means two threads are
faster at that size. ops.hpp counts a kernel's work in units of about one cheap pass over
an element (bias + ReLU forward) and gives each thread at least kElementGrain of them, or
kGemmGrain multiply-adds for a GEMM; a kernel that costs more per element counts more
units per element (Adam: 4).
"""
from __future__ import annotations

import time

import numpy as np

import fastmlp
from fastmlp.backends import get_backend
from fastmlp.backends import native as native_module
from fastmlp.nn.activations import kind

REPEATS = 300
rng = np.random.default_rng(0)
native = get_backend("native")
relu = kind("relu")


def least_us(call) -> float:
    call()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - start)
    return min(times) / 1e3


def rows_of(n: int, cols: int = 256) -> int:
    return max(1, n // cols)


def relu_forward(n: int):
    z = rng.standard_normal((rows_of(n), 256), dtype=np.float32)
    bias, a = np.zeros(256, np.float32), np.empty_like(z)
    return lambda: native.bias_act_forward(z, bias, a, relu, 0.0)


def relu_backward(n: int):
    z = rng.standard_normal((rows_of(n), 256), dtype=np.float32)
    a, da, dz = np.maximum(z, 0), rng.standard_normal(z.shape, dtype=np.float32), np.empty_like(z)
    return lambda: native.act_backward(z, a, da, dz, relu, 0.0)


def adam(n: int):
    p, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
    m, v = np.zeros(n, np.float32), np.zeros(n, np.float32)
    return lambda: native.optimizer_update("adam", p, g, m, v, lr=1e-3, b1=0.9, b2=0.999,
                                           eps=1e-8)


def gemm(macs: int):
    s = max(1, round(macs ** (1 / 3)))
    a, b = rng.standard_normal((s, s), dtype=np.float32), rng.standard_normal((s, s), dtype=np.float32)
    c = np.empty((s, s), np.float32)
    return lambda: native.gemm(a, b, c, trans_b=True)


KERNELS = {   # name: (setup, sizes, what a size counts)
    "bias + relu": (relu_forward, [8192, 16384, 32768, 65536, 131072], "elements"),
    "relu backward": (relu_backward, [8192, 16384, 32768, 65536, 131072], "elements"),
    "adam": (adam, [4096, 8192, 16384, 32768, 65536], "parameters"),
    "gemm (s x s x s)": (gemm, [32 ** 3, 48 ** 3, 64 ** 3, 80 ** 3, 100 ** 3], "multiply-adds"),
}


def main() -> None:
    print("| kernel | size | 1 thread (µs) | 2 threads (µs) | 2t/1t |\n|---|---|---|---|---|")
    for name, (setup, sizes, unit) in KERNELS.items():
        for n in sizes:
            call = setup(n)
            with fastmlp.threads(1):
                one = least_us(call)
            native_module.testing.set_grain_override(1)
            try:
                with fastmlp.threads(2):
                    two = least_us(call)
            finally:
                native_module.testing.set_grain_override(0)
            print(f"| {name} | {n:,} {unit} | {one:.2f} | {two:.2f} | {one / two:.2f} |")


if __name__ == "__main__":
    main()
