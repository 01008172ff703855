"""Direct B (csrc/kernels/gemm.hpp, "Direct B"): an untransposed op(B) read in place by the
microkernel instead of packed into micro-panels, all but a last panel of fewer than NR
columns. Its contract is the packed driver's: the same bits, on every ISA, dtype, shape,
epilogue and thread count, and the rule (a rectangle of at most 288 rows) only picks which.

_testing.set_gemm_direct_override forces the path (> 0 in place wherever B is
untransposed, < 0 packed, 0 the rule) and _testing.last_gemm_direct says which the latest
GEMM took (1: B in place, 0: packed), so every test knows both paths ran.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from fastmlp import _core
from test_gemm import assert_gemm_close, operands

RULE_ROWS = 288                      # kDirectBRows: 2 * kMC, a multiple of every MR
ODD = (1, 7, 17, 33, 257)
TRANS_A = [False, True]             # B untransposed: NN and TN


@pytest.fixture(autouse=True)
def _rule_and_grain_restored():
    yield
    _core._testing.set_gemm_direct_override(0)
    _core._testing.set_grain_override(0)


def gemm_path(mode, a, b, c0, ta, tb, alpha=1.0, beta=0.0):
    """(C, the path taken) with the path forced (mode > 0 direct, < 0 packed, 0 the rule)."""
    _core._testing.set_gemm_direct_override(mode)
    c = c0.copy()
    _core.gemm(a, b, c, ta, tb, alpha, beta)
    return c, _core._testing.last_gemm_direct()


def both_paths(a, b, c0, ta, alpha, beta, label):
    """The direct and the packed C, the same bits; both paths must have run."""
    direct, took_direct = gemm_path(1, a, b, c0, ta, False, alpha, beta)
    packed, took_packed = gemm_path(-1, a, b, c0, ta, False, alpha, beta)
    assert (took_direct, took_packed) == (1, 0), f"{label}: paths taken {took_direct}, {took_packed}"
    oracle.assert_same_bits({f"direct {label}": direct, "packed": packed})
    return direct


@pytest.mark.parametrize("ta", TRANS_A, ids=["NN", "TN"])
def test_direct_b_same_bits_as_packed(ta, dtype, isa, nthreads):
    """Odd shapes (a last panel of 1..NR-1 columns packed, the rest in place; one row, the
    one-row multi-panel path; 257 rows, several tile rows; k = 257, two K blocks) on 1 and
    2 threads (the grid splits columns, so B's rows are longer than a rectangle's)."""
    rng = np.random.default_rng(7)
    _core._testing.set_grain_override(1)
    for t in (1, 2):
        for m, n, k in [(m, n, k) for m in ODD for n in ODD for k in (7, 257) if m * n * k > 512]:
            a, b = operands(rng, m, n, k, ta, False, dtype)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            with nthreads(t):
                got = both_paths(a, b, c0, ta, 0.5, 2.0, f"{isa} {t} threads {(m, n, k)}")
            assert_gemm_close(got, a, b, c0, ta, False, 0.5, 2.0, f"{(m, n, k)}")


@pytest.mark.parametrize("ta", TRANS_A, ids=["NN", "TN"])
def test_direct_b_in_the_k_split(ta, dtype, isa, nthreads):
    """Small C over 4 K blocks on 4 threads: the K split's groups read B in place too."""
    rng = np.random.default_rng(3)
    _core._testing.set_grain_override(1)
    for m, n in [(10, 128), (7, 17), (33, 10)]:
        a, b = operands(rng, m, n, 1024, ta, False, dtype)
        c0 = np.zeros((m, n), dtype)
        with nthreads(4):
            both_paths(a, b, c0, ta, 1.0, 0.0, f"{isa} K split {(m, n)}")
            assert _core._testing.last_gemm_k_groups() > 1, "no K split"


def test_direct_b_with_the_fused_epilogue(dtype, isa):
    """gemm_bias_act with B untransposed: the epilogue sees the same accumulators."""
    rng = np.random.default_rng(5)
    for m, n, k in [(1, 257, 33), (33, 17, 257), (200, 100, 10)]:
        a, b = operands(rng, m, n, k, False, False, dtype)
        bias = rng.standard_normal(n).astype(dtype)
        runs = {}
        for mode in (1, -1):
            _core._testing.set_gemm_direct_override(mode)
            z, out = np.full((m, n), np.nan, dtype), np.full((m, n), np.nan, dtype)
            _core.gemm_bias_act(a, b, bias, z, out, False, False, "relu", 0.0)
            assert _core._testing.last_gemm_direct() == (mode > 0)
            runs[mode] = (z, out)
        oracle.assert_same_bits({f"direct {(m, n, k)}": runs[1], "packed": runs[-1]})


@pytest.mark.parametrize("ta", TRANS_A, ids=["NN", "TN"])
def test_the_rule_reads_b_in_place_up_to_288_rows(ta, dtype, isa):
    """One thread: 288 rows in place, 289 packed; the bits are the forced path's."""
    rng = np.random.default_rng(11)
    for m, want in [(RULE_ROWS, 1), (RULE_ROWS + 1, 0), (200, 1), (10, 1)]:
        a, b = operands(rng, m, 33, 40, ta, False, dtype)
        c0 = np.zeros((m, 33), dtype)
        by_rule, took = gemm_path(0, a, b, c0, ta, False)
        assert took == want, f"{m} rows: direct {took}, want {want}"
        forced, _ = gemm_path(1 if want else -1, a, b, c0, ta, False)
        oracle.assert_same_bits({f"rule {m} rows": by_rule, "forced": forced})


def test_transposed_b_and_tiny_products_never_direct(dtype):
    rng = np.random.default_rng(2)
    for ta in (False, True):
        a, b = operands(rng, 33, 17, 40, ta, True, dtype)
        _, took = gemm_path(1, a, b, np.zeros((33, 17), dtype), ta, True)
        assert took == 0, "a transposed B is packed (transposed) even when forced"
    a, b = operands(rng, 2, 3, 4, False, False, dtype)
    _, took = gemm_path(1, a, b, np.zeros((2, 3), dtype), False, False)
    assert took == 0, "a tiny product runs gemm_reference"


def test_the_hooks_live_in_testing():
    for name in ("last_gemm_direct", "set_gemm_direct_override"):
        assert callable(getattr(_core._testing, name)), name
        assert not hasattr(_core, name), f"_core.{name} should be in _core._testing only"
