"""Direct B and direct A (csrc/kernels/gemm.hpp): an untransposed op(B), or op(A) either
way, read in place by the microkernel instead of packed, all but a last B panel of fewer
than NR columns and a last A tile row of fewer than MR rows. Its contract is the packed
driver's: the same bits, on every ISA, dtype, shape, epilogue and thread count; the rules
(B: a rectangle of at most 288 rows; A^T: always; A: at most 64 columns, K blocks of at
least 16, rows not a multiple of 2 KiB apart) only pick which.

_testing.set_gemm_direct_override forces the path (a mask: 1 B, 2 A, 3 both in place
wherever the operand can be; < 0 both packed; 0 the rules) and
_testing.last_gemm_direct says which the latest GEMM took (the same mask, 0: packed), so
every test knows each path ran.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from fastmlp import _core
from test_gemm import assert_gemm_close, operands

RULE_ROWS = 288                     # kDirectBRows: 2 * kMC, a multiple of every MR
RULE_COLS = 64                      # kDirectACols, a multiple of every NR
RULE_K = 16                         # kDirectAMinK
ODD = (1, 7, 17, 33, 257)
TRANS = [(False, False), (False, True), (True, False), (True, True)]
TRANS_IDS = ["NN", "NT", "TN", "TT"]
MODES = (1, 2, 3)


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


def available(ta, tb):
    """The mask of operands that can be read in place: B untransposed, A either way."""
    return (0 if tb else 1) | 2


def every_path(a, b, c0, ta, tb, alpha, beta, label):
    """C with each operand forced in place (where it can be) and packed: the same bits;
    each path must have run."""
    packed, took = gemm_path(-1, a, b, c0, ta, tb, alpha, beta)
    assert took == 0, f"{label}: forced packed, took {took}"
    runs = {"packed": packed}
    for mode in MODES:
        runs[f"direct {mode} {label}"], took = gemm_path(mode, a, b, c0, ta, tb, alpha, beta)
        assert took == mode & available(ta, tb), f"{label}: forced {mode}, took {took}"
    oracle.assert_same_bits(runs)
    return packed


@pytest.mark.parametrize("ta, tb", TRANS, ids=TRANS_IDS)
def test_in_place_same_bits_as_packed(ta, tb, dtype, isa, nthreads):
    """Odd shapes (a last B panel of 1..NR-1 columns and a last A tile row of 1..MR-1 rows
    packed, the rest in place; one row, the one-row multi-panel path; 257 rows, several
    tile rows; k = 257, two K blocks) on 1 and 2 threads (the grid splits C, so B's and A's
    rows are longer than a rectangle's). A one-column C of several rows is left to
    test_gemm.py: the driver computes it as its transposed row (gemm.hpp, "One column"),
    a problem with the operands swapped."""
    rng = np.random.default_rng(7)
    _core._testing.set_grain_override(1)
    shapes = [(m, n, k) for m in ODD for n in ODD for k in (7, 257)
              if m * n * k > 512 and (n > 1 or m == 1)]
    for t in (1, 2):
        for m, n, k in shapes:
            a, b = operands(rng, m, n, k, ta, tb, dtype)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            with nthreads(t):
                got = every_path(a, b, c0, ta, tb, 0.5, 2.0, f"{isa} {t} threads {(m, n, k)}")
            assert_gemm_close(got, a, b, c0, ta, tb, 0.5, 2.0, f"{(m, n, k)}")


@pytest.mark.parametrize("ta, tb", TRANS, ids=TRANS_IDS)
def test_in_place_in_the_k_split(ta, tb, dtype, isa, nthreads):
    """Small C over 4 K blocks on 4 threads: the K split's groups read in place too."""
    rng = np.random.default_rng(3)
    _core._testing.set_grain_override(1)
    for m, n in [(10, 128), (7, 17), (33, 10)]:
        a, b = operands(rng, m, n, 1024, ta, tb, dtype)
        c0 = np.zeros((m, n), dtype)
        with nthreads(4):
            every_path(a, b, c0, ta, tb, 1.0, 0.0, f"{isa} K split {(m, n)}")
            assert _core._testing.last_gemm_k_groups() > 1, "no K split"


@pytest.mark.parametrize("tb", [False, True], ids=["NN", "NT"])
def test_in_place_with_the_fused_epilogue(tb, dtype, isa):
    """gemm_bias_act (the forward pass is NT): the epilogue sees the same accumulators."""
    rng = np.random.default_rng(5)
    for m, n, k in [(1, 257, 33), (33, 17, 257), (200, 100, 10), (200, 10, 100)]:
        a, b = operands(rng, m, n, k, False, tb, dtype)
        bias = rng.standard_normal(n).astype(dtype)
        runs = {}
        for mode in (-1,) + MODES:
            _core._testing.set_gemm_direct_override(mode)
            z, out = np.full((m, n), np.nan, dtype), np.full((m, n), np.nan, dtype)
            _core.gemm_bias_act(a, b, bias, z, out, False, tb, "relu", 0.0)
            assert _core._testing.last_gemm_direct() == max(mode, 0) & available(False, tb)
            runs[f"mode {mode} {(m, n, k)}"] = (z, out)
        oracle.assert_same_bits(runs)


def rule_case(m, n, k, ta, tb, dtype, want):
    """One thread, the rules: the path taken is `want`, the bits the forced path's."""
    a, b = operands(np.random.default_rng(m + n + k), m, n, k, ta, tb, dtype)
    c0 = np.zeros((m, n), dtype)
    by_rule, took = gemm_path(0, a, b, c0, ta, tb)
    assert took == want, f"{(m, n, k)} {ta, tb}: took {took}, want {want}"
    forced, _ = gemm_path(want or -1, a, b, c0, ta, tb)
    oracle.assert_same_bits({f"rule {(m, n, k)}": by_rule, "forced": forced})


def test_the_rule_reads_b_in_place_up_to_288_rows_and_a_transposed_always(dtype, isa):
    for m, want in [(RULE_ROWS, 3), (RULE_ROWS + 1, 2), (200, 3), (10, 3)]:
        rule_case(m, 33, 40, True, False, dtype, want)
    k_4kib = 4096 // dtype.itemsize
    rule_case(k_4kib, 300, 40, True, True, dtype, 2)    # A^T rows 4 KiB apart, 300 columns


def test_the_rule_reads_a_in_place_up_to_64_columns_and_k_16_unless_rows_2kib_apart(dtype, isa):
    k_2kib = 2048 // dtype.itemsize
    for n, k, want in [(RULE_COLS, 40, 2), (RULE_COLS + 1, 40, 0), (10, 100, 2), (33, RULE_K, 2),
                       (33, RULE_K - 1, 0), (33, k_2kib, 0), (33, 2 * k_2kib, 0), (33, k_2kib + 1, 2)]:
        rule_case(33, n, k, False, True, dtype, want)
    rule_case(200, 100, 10, False, False, dtype, 1)     # dX of the default MLP: B only


def test_transposed_b_and_tiny_products_never_in_place(dtype):
    rng = np.random.default_rng(2)
    a, b = operands(rng, 33, 17, 40, True, True, dtype)
    _, took = gemm_path(1, a, b, np.zeros((33, 17), dtype), True, True)
    assert took == 0, "a transposed B is packed (transposed) even when forced"
    a, b = operands(rng, 2, 3, 4, False, False, dtype)
    _, took = gemm_path(3, a, b, np.zeros((2, 3), dtype), False, False)
    assert took == 0, "a tiny product runs gemm_reference"


def test_the_hooks_live_in_testing():
    for name in ("last_gemm_direct", "set_gemm_direct_override"):
        assert callable(getattr(_core._testing, name)), name
        assert not hasattr(_core, name), f"_core.{name} should be in _core._testing only"
