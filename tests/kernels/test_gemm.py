"""GEMM, C = alpha * op(A) @ op(B) + beta * C, against the NumPy oracle on every ISA and
both dtypes, plus its reproducibility contract (csrc/kernels/gemm.hpp, docs/conventions.md):

* avx2 and avx512 agree bit for bit (same K blocks, same FMA order); generic (no FMA) is
  within the oracle tolerance of them;
* the result does not depend on the thread count, bit for bit;
* a row's result does not depend on the batch it comes in, bit for bit;
* beta == 0 never reads C; k == 0 gives beta * C.

The oracle computes op(A) @ op(B) in float64. The error of an element is measured in units
of the dtype's eps relative to scale = |alpha| (|op(A)| @ |op(B)|) + |beta| |C|, the
magnitude of the terms the kernel rounds (oracle.eps_error), and must stay below
gemm_tolerance(k): a k-term dot product rounds at most ~k times.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from fastmlp import _core

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl is a test dependency
    threadpool_limits = None

TRANS = [(False, False), (False, True), (True, False), (True, True)]
TRANS_IDS = ["NN", "NT", "TN", "TT"]


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """The oracle's BLAS on one thread: its spinning pool and our OpenMP team, interleaved
    on few cores, slow each other down by an order of magnitude (docs/build-notes.md, "Two spinning thread pools")."""
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


# ---------------------------------------------------------------------------------
# Tolerance, one place (tests/tolerances.py)
# ---------------------------------------------------------------------------------

def gemm_tolerance(k: int) -> float:
    """Max error in eps * scale for a k-term product: the worst-case bound, about k/2 eps
    with FMA (one rounding per step) and k eps without (the generic path rounds product and
    sum), plus a few epilogue roundings (alpha, beta, one add per K block); for float64 the
    float64 oracle adds its own k/2. Random data stays far below it (errors grow like
    sqrt(k) while scale grows like k): measured at most 1.5 eps for k = 257..2000 on every
    ISA and dtype, while a dropped term at k = 257 is ~3e4 eps off in float32."""
    return 1.5 * k + 8


def oracle_gemm(a, b, c0, ta, tb, alpha, beta):
    """(reference, scale) in float64. c0 is the C passed in (ignored when beta == 0)."""
    A = (a.T if ta else a).astype(np.float64)
    B = (b.T if tb else b).astype(np.float64)
    ref = alpha * (A @ B)
    scale = abs(alpha) * (np.abs(A) @ np.abs(B))
    if beta != 0:
        ref = ref + beta * c0.astype(np.float64)
        scale = scale + abs(beta) * np.abs(c0.astype(np.float64))
    return ref, scale


def assert_gemm_close(got, a, b, c0, ta, tb, alpha, beta, what=""):
    ref, scale = oracle_gemm(a, b, c0, ta, tb, alpha, beta)
    k = a.shape[0] if ta else a.shape[1]
    assert got.shape == ref.shape
    oracle.assert_within_eps(got, ref, scale, got.dtype, gemm_tolerance(k), what)


def operands(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def run_gemm(a, b, c, ta, tb, alpha=1.0, beta=0.0):
    _core.gemm(a, b, c, trans_a=ta, trans_b=tb, alpha=alpha, beta=beta)
    return c


def _product64(a, b):
    return a.astype(np.float64) @ b.astype(np.float64)


def test_tolerance_rejects_wrong_results():
    """The comparison passes the oracle rounded to float32 and fails on plausible bugs."""
    rng = np.random.default_rng(0)
    m, n, k = 9, 11, 257
    a, b = operands(rng, m, n, k, False, False, np.float32)
    zeros = np.zeros((m, n), np.float32)
    exact = _product64(a, b)
    assert_gemm_close(exact.astype(np.float32), a, b, zeros, False, False, 1.0, 0.0, "rounded")
    wrong = {  # what: (result, alpha)
        "all zeros": (zeros, 1.0),
        "one k term dropped": (_product64(a[:, 1:], b[1:]), 1.0),
        "the second K block dropped": (_product64(a[:, :129], b[:129]), 1.0),
        "alpha ignored": (exact, 0.5),
        "one NaN": (np.where(np.arange(m * n).reshape(m, n) == 5, np.nan, exact), 1.0),
    }
    for what, (got, alpha) in wrong.items():
        with pytest.raises(AssertionError):
            assert_gemm_close(got.astype(np.float32), a, b, zeros, False, False, alpha, 0.0, what)
    c1 = rng.standard_normal((m, n)).astype(np.float32)
    with pytest.raises(AssertionError):
        assert_gemm_close(exact.astype(np.float32), a, b, c1, False, False, 1.0, 0.5, "no beta")
    sq_a, sq_b = operands(rng, 17, 17, 17, False, False, np.float32)
    with pytest.raises(AssertionError):  # op(A) transposed by mistake
        assert_gemm_close(_product64(sq_a.T, sq_b).astype(np.float32), sq_a, sq_b,
                          np.zeros((17, 17), np.float32), False, False, 1.0, 0.0, "op(A)")


# ---------------------------------------------------------------------------------
# Against the oracle
# ---------------------------------------------------------------------------------

# Each of m, n, k takes every value of {0, 1, 7, 17, 33, 257} in several combinations;
# 257 crosses a K block (2 x 129/128), the 144-row A block and the tile edges.
SHAPES = [
    (0, 7, 17), (7, 0, 17), (7, 17, 0), (0, 0, 0),
    (1, 1, 1), (1, 7, 33), (7, 1, 257), (1, 257, 17), (257, 1, 7),
    (7, 7, 7), (17, 33, 1), (33, 17, 7), (17, 17, 17), (33, 33, 33),
    (33, 257, 17), (257, 33, 33), (17, 7, 257), (257, 17, 257), (33, 257, 257),
    (257, 257, 1),
]


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matches_oracle_beta0_never_reads_c(shape, ta, tb, dtype, isa):
    m, n, k = shape
    rng = np.random.default_rng([m, n, k, ta, tb])
    a, b = operands(rng, m, n, k, ta, tb, dtype)
    c = np.full((m, n), np.nan, dtype)          # beta == 0: C must not be read
    run_gemm(a, b, c, ta, tb)
    assert np.isfinite(c).all()
    assert_gemm_close(c, a, b, c, ta, tb, 1.0, 0.0, f"{isa} {dtype} {shape}")


ALPHA_BETA = [(1.0, 1.0), (1.0, 0.5), (-0.75, 0.5), (2.0, 0.0), (0.5, -1.0)]


@pytest.mark.parametrize("alpha,beta", ALPHA_BETA)
@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize("shape", [(7, 17, 33), (33, 40, 257), (150, 70, 300)],
                         ids=lambda s: "x".join(map(str, s)))
def test_alpha_beta(shape, ta, tb, alpha, beta, dtype, isa):
    m, n, k = shape
    rng = np.random.default_rng(7)
    a, b = operands(rng, m, n, k, ta, tb, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c = c0.copy() if beta != 0 else np.full((m, n), np.nan, dtype)
    run_gemm(a, b, c, ta, tb, alpha, beta)
    assert_gemm_close(c, a, b, c0, ta, tb, alpha, beta, f"{isa} alpha={alpha} beta={beta}")


@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
def test_k_zero_gives_beta_c(beta, dtype, isa):
    c0 = np.arange(12, dtype=dtype).reshape(3, 4) - 5
    c = c0.copy() if beta != 0 else np.full((3, 4), np.nan, dtype)
    run_gemm(np.empty((3, 0), dtype), np.empty((0, 4), dtype), c, False, False, 2.0, beta)
    np.testing.assert_array_equal(c, beta * c0 if beta != 0 else np.zeros((3, 4), dtype))


# The three products of a dense layer (samples are rows, W is (n_out, n_in)):
# forward Z = X @ W.T (NT), dW = dZ.T @ X (TN), dX = dZ @ W (NN).
# Batch 200 on 64-100-10: scikit-learn's default network on digits, whose 100 and 10
# columns end in the 32-byte narrow tiles of the 64-byte level (gemm_microkernel, TB).
MLP = [(batch, nin, nout) for batch in (32, 128)
       for nin, nout in ((784, 256), (256, 128), (128, 10))] + [(200, 64, 100), (200, 100, 10)]


def mlp_products(batch, nin, nout):
    """(label, m, n, k, ta, tb) for the three products of one layer."""
    return [("forward", batch, nout, nin, False, True),
            ("dW", nout, nin, batch, True, False),
            ("dX", batch, nin, nout, False, False)]


@pytest.mark.parametrize("layer", MLP, ids=lambda s: "b{}-{}x{}".format(*s))
def test_mlp_shapes(layer, dtype, isa):
    rng = np.random.default_rng(1)
    for label, m, n, k, ta, tb in mlp_products(*layer):
        a, b = operands(rng, m, n, k, ta, tb, dtype)
        c = np.full((m, n), np.nan, dtype)
        run_gemm(a, b, c, ta, tb)
        assert_gemm_close(c, a, b, c, ta, tb, 1.0, 0.0, f"{isa} {label} {layer}")


def test_nan_and_inf_propagate(dtype, isa):
    """A NaN in A poisons its row of C, an Inf in B its column (times a nonzero)."""
    rng = np.random.default_rng(3)
    m, n, k = 40, 50, 300
    a, b = operands(rng, m, n, k, False, False, dtype)
    a[5, 260] = np.nan
    b[7, 33] = np.inf
    c = np.zeros((m, n), dtype)
    run_gemm(a, b, c, False, False)
    assert np.isnan(c[5]).all()
    col = c[np.arange(m) != 5, 33]
    assert np.isinf(col).all()
    rest = np.delete(np.delete(c, 5, axis=0), 33, axis=1)
    assert np.isfinite(rest).all()


# ---------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------

CROSS_SHAPES = [(1, 1, 1), (7, 17, 33), (33, 257, 257), (150, 70, 784), (13, 300, 600)]


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
def test_avx2_and_avx512_identical_generic_close(ta, tb, dtype, every_isa):
    usable = _core.backend_info()["usable_isas"]
    if "avx2" not in usable or "avx512" not in usable:
        pytest.skip(f"needs avx2 and avx512 (usable: {usable})")
    rng = np.random.default_rng(11)
    for m, n, k in CROSS_SHAPES:
        a, b = operands(rng, m, n, k, ta, tb, dtype)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        results = every_isa(lambda: run_gemm(a, b, c0.copy(), ta, tb, -1.25, 0.5))
        oracle.assert_same_bits({"avx2": results["avx2"], "avx512": results["avx512"]})
        for name, got in results.items():
            assert_gemm_close(got, a, b, c0, ta, tb, -1.25, 0.5, f"{name} {(m, n, k)}")


# Well above the parallel threshold (64^3 multiply-adds per thread), with K split into
# blocks and edges in m and n. The team splits the rows of C for the first three and the
# columns for (3, 1024, 200) on every ISA (csrc/kernels/gemm.hpp, choose_grid).
THREAD_SHAPES = [(300, 270, 600), (40, 700, 500), (1000, 33, 257), (3, 1024, 200), (32, 256, 784)]


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
def test_thread_count_does_not_change_bits(ta, tb, dtype, isa, nthreads):
    if not _core.backend_info()["openmp"]:
        pytest.skip("built without OpenMP")
    rng = np.random.default_rng(5)
    for m, n, k in THREAD_SHAPES:
        a, b = operands(rng, m, n, k, ta, tb, dtype)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        out = {}
        for t in (1, 2):
            with nthreads(t):
                out[t] = run_gemm(a, b, c0.copy(), ta, tb, 0.5, 1.0)
            assert _core._testing.last_team_size() == t, f"{t} threads asked, {_core._testing.last_team_size()} ran"
        oracle.assert_same_bits({"1 thread": out[1], "2 threads": out[2]})


# (n_in, n_out): an MLP layer, a tiny one (3 x 7: the plain-loop path for one row) and one
# with edges everywhere.
ROW_LAYERS = [(784, 256), (7, 3), (300, 10)]


@pytest.mark.parametrize("layer", ROW_LAYERS, ids=lambda s: "{}x{}".format(*s))
@pytest.mark.parametrize("tb", [True, False], ids=["X@W.T", "X@W"])
def test_row_alone_equals_row_in_batch(layer, tb, dtype, isa):
    """Inference gives the same bits for a sample whatever batch it comes in."""
    nin, nout = layer
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1024, nin)).astype(dtype)
    w = rng.standard_normal((nout, nin) if tb else (nin, nout)).astype(dtype)
    batch = run_gemm(x, w, np.empty((1024, nout), dtype), False, tb)
    for i in (0, 1, 11, 12, 143, 144, 500, 1023):
        row = run_gemm(x[i:i + 1].copy(), w, np.empty((1, nout), dtype), False, tb)
        oracle.assert_same_bits({"alone": row[0], f"row {i} of 1024": batch[i]})
    for lo, hi in ((5, 37), (1000, 1024)):
        part = run_gemm(x[lo:hi].copy(), w, np.empty((hi - lo, nout), dtype), False, tb)
        oracle.assert_same_bits({f"rows {lo}:{hi} alone": part, "in the batch": batch[lo:hi]})


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
@pytest.mark.parametrize("k", [1, 7, 17, 257, 600])
def test_one_column_keeps_the_bits_of_its_rows_alone(k, ta, tb, dtype, isa):
    """A C of one column (a single-output layer) is computed as the row C^T (gemm.hpp, "One
    column"); each element must keep the bits of the tile path, which a row alone still
    takes (700 rows: past the plain-loop size even at k = 1)."""
    m = 700
    rng = np.random.default_rng([k, ta, tb])
    a, b = operands(rng, m, 1, k, ta, tb, dtype)
    c0 = rng.standard_normal((m, 1)).astype(dtype)
    for alpha, beta in [(1.0, 0.0), (-0.75, 0.5)]:
        column = run_gemm(a, b, c0.copy(), ta, tb, alpha, beta)
        assert_gemm_close(column, a, b, c0, ta, tb, alpha, beta, f"{isa} {dtype} k={k}")
        for i in (0, 1, 11, 12, 143, 144, 699):
            ai = (a[:, i:i + 1] if ta else a[i:i + 1]).copy()
            row = run_gemm(ai, b, c0[i:i + 1].copy(), ta, tb, alpha, beta)
            oracle.assert_same_bits({"alone": row[0], f"row {i} of the column": column[i]})


# ---------------------------------------------------------------------------------
# Argument checks (the binding's; the kernel is never reached)
# ---------------------------------------------------------------------------------

def _f32(*shape):
    return np.ones(shape, np.float32)


def test_valid_call_and_in_place_write():
    c = np.zeros((2, 4), np.float32)
    _core.gemm(_f32(2, 3), _f32(3, 4), c)
    assert (c == 3).all()


def test_wrong_dtype_is_type_error():
    for args in [(_f32(2, 3).astype(np.float64), _f32(3, 4), _f32(2, 4)),
                 (_f32(2, 3), _f32(3, 4).astype(np.float64), _f32(2, 4)),
                 (_f32(2, 3), _f32(3, 4), _f32(2, 4).astype(np.float64)),
                 (_f32(2, 3).astype(np.int32), _f32(3, 4), _f32(2, 4)),
                 (_f32(2, 3).tolist(), _f32(3, 4), _f32(2, 4))]:
        with pytest.raises(TypeError):
            _core.gemm(*args)


def test_non_contiguous_is_value_error():
    strided = np.ones((2, 6), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="a must be C-contiguous"):
        _core.gemm(strided, _f32(3, 4), _f32(2, 4))
    with pytest.raises(ValueError, match="b must be C-contiguous"):
        _core.gemm(_f32(2, 3), np.asfortranarray(_f32(3, 4)), _f32(2, 4))
    with pytest.raises(ValueError, match="c must be C-contiguous"):
        _core.gemm(_f32(2, 3), _f32(3, 4), np.ones((2, 8), np.float32)[:, ::2])


def test_read_only_output_is_value_error():
    c = _f32(2, 4)
    c.setflags(write=False)
    with pytest.raises(ValueError, match="c is read-only"):
        _core.gemm(_f32(2, 3), _f32(3, 4), c)


def test_overlapping_output_is_value_error():
    buf = np.ones(64, np.float32)
    a = buf[:12].reshape(4, 3)
    with pytest.raises(ValueError, match="c overlaps a"):
        _core.gemm(a, _f32(3, 3), buf[6:18].reshape(4, 3))
    b = buf[20:29].reshape(3, 3)
    with pytest.raises(ValueError, match="c overlaps b"):
        _core.gemm(_f32(3, 3), b, buf[26:35].reshape(3, 3))


@pytest.mark.parametrize("args,trans,pattern", [
    ((_f32(2, 3), _f32(4, 5), _f32(2, 5)), {}, "shape mismatch"),
    ((_f32(2, 3), _f32(3, 5), _f32(2, 4)), {}, r"c is \(2, 4\)"),
    ((_f32(3, 2), _f32(3, 5), _f32(2, 5)), {"trans_a": False}, "shape mismatch"),
    ((_f32(3, 2), _f32(5, 3), _f32(2, 5)), {"trans_a": True}, "shape mismatch"),
    ((_f32(6), _f32(3, 5), _f32(2, 5)), {}, "a must be 2-D"),
])
def test_shape_mismatch_is_value_error(args, trans, pattern):
    with pytest.raises(ValueError, match=pattern):
        _core.gemm(*args, **trans)
