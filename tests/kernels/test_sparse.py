"""The first layer's products with sparse input rows (csrc/kernels/sparse.hpp):
``csr_gemm_bias_act`` (z = x W^T + bias, out = act(z)) and ``csr_weight_grad``
(dW = dz^T x), x given as CSR arrays (indptr, indices, values).

The oracle sums in the order the kernels document (docs/sparse.md): z[i, o] over row i's
entries by ascending column (a column's duplicates in the row's order), dW[o, j] over
column j's entries by ascending row, each from 0 with one product then one add per entry
in the dtype. That is scipy's order for rows with sorted indices (tests/api/test_sparse.py
checks the NumPy backend's scipy products against these kernels bit for bit; this file
runs where scipy is not installed). Every ISA, both dtypes, both index dtypes, odd
shapes, empty rows and matrices, unsorted and duplicate indices, 1 and 2 threads.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import oracle
from fastmlp import _core

# (rows, columns, outputs): single entries, tails of the vector width, empty rows and
# matrices, more outputs than one thread's share
SHAPES = [(1, 1, 1), (7, 17, 33), (17, 257, 7), (33, 7, 257), (0, 5, 3), (4, 0, 3), (5, 9, 0),
          (64, 1000, 40)]
INDEX_TYPES = [np.int32, np.int64]
ACTIVATIONS = [("linear", 0.0), ("relu", 0.0), ("tanh", 0.0), ("leaky_relu", 0.01)]


def random_csr(rng, rows, cols, dtype, index_type, density=0.3, sorted_rows=True,
               duplicates=False):
    """(indptr, indices, values): some rows empty, columns sorted per row or shuffled, and
    with ``duplicates`` some columns twice in a row."""
    indices, indptr = [], [0]
    for _ in range(rows):
        count = rng.binomial(cols, density) if cols else 0
        row = np.sort(rng.choice(cols, size=count, replace=False)) if count else np.zeros(0, int)
        if duplicates and count:
            row = np.sort(np.concatenate([row, rng.choice(row, size=max(1, count // 3))]))
        if not sorted_rows:
            row = rng.permutation(row)
        indices.extend(row)
        indptr.append(len(indices))
    values = rng.standard_normal(len(indices)).astype(dtype)
    return (np.array(indptr, dtype=index_type), np.array(indices, dtype=index_type), values)


def entries_by_column(indptr, indices):
    """Each row's entry positions sorted by column, stable (a column's duplicates keep the
    row's order)."""
    return [indptr[i] + np.argsort(indices[indptr[i]:indptr[i + 1]], kind="stable")
            for i in range(len(indptr) - 1)]


def oracle_product(indptr, indices, values, w):
    """z = x w^T, each z[i, :] summed over row i's entries by ascending column from 0."""
    z = np.zeros((len(indptr) - 1, w.shape[0]), w.dtype)
    for i, order in enumerate(entries_by_column(indptr, indices)):
        for k in order:
            z[i] = z[i] + values[k] * w[:, indices[k]]
    return z


def oracle_weight_grad(indptr, indices, values, dz, cols):
    """dW = dz^T x, each dW[:, j] summed over column j's entries by ascending row from 0."""
    dw = np.zeros((dz.shape[1], cols), dz.dtype)
    for i in range(len(indptr) - 1):          # rows ascending: each column's order
        for k in range(indptr[i], indptr[i + 1]):
            j = indices[k]
            dw[:, j] = dw[:, j] + values[k] * dz[i]
    return dw


def product_case(rng, shape, dtype, index_type, **kw):
    rows, cols, outputs = shape
    x = random_csr(rng, rows, cols, dtype, index_type, **kw)
    w = rng.standard_normal((outputs, cols)).astype(dtype)
    bias = rng.standard_normal(outputs).astype(dtype)
    return x, w, bias


def forward(x, w, bias, act, param):
    z = np.full((len(x[0]) - 1, w.shape[0]), np.nan, w.dtype)
    out = np.full_like(z, np.nan)
    _core.csr_gemm_bias_act(*x, w, bias, z, out, act, param)
    return z, out


def oracle_forward(x, w, bias, act, param):
    z = oracle_product(*x, w)
    out = np.full_like(z, np.nan)
    _core.bias_act_forward(z, bias, out, act, param)   # the dense path's epilogue, in place
    return z, out


def weight_grad(x, dz, cols):
    dw = np.full((dz.shape[1], cols), np.nan, dz.dtype)
    _core.csr_weight_grad(dz, *x, dw)
    return dw


@pytest.mark.parametrize("index_type", INDEX_TYPES, ids=["int32", "int64"])
@pytest.mark.parametrize("layout", ["sorted", "unsorted", "duplicates"])
def test_forward_matches_the_oracle_bit_for_bit(dtype, isa, index_type, layout):
    rng = np.random.default_rng(31)
    for shape, (act, param) in itertools.product(SHAPES, ACTIVATIONS):
        x, w, bias = product_case(rng, shape, dtype, index_type, sorted_rows=layout == "sorted",
                                  duplicates=layout == "duplicates")
        got, want = forward(x, w, bias, act, param), oracle_forward(x, w, bias, act, param)
        oracle.assert_same_bits({f"z {isa} {shape} {act}": got[0], "oracle z": want[0]})
        oracle.assert_same_bits({f"out {isa} {shape} {act}": got[1], "oracle out": want[1]})


@pytest.mark.parametrize("index_type", INDEX_TYPES, ids=["int32", "int64"])
@pytest.mark.parametrize("layout", ["sorted", "unsorted", "duplicates"])
def test_weight_grad_matches_the_oracle_bit_for_bit(dtype, isa, index_type, layout):
    rng = np.random.default_rng(32)
    for rows, cols, outputs in SHAPES:
        x = random_csr(rng, rows, cols, dtype, index_type, sorted_rows=layout == "sorted",
                       duplicates=layout == "duplicates")
        dz = rng.standard_normal((rows, outputs)).astype(dtype)
        oracle.assert_same_bits({f"dw {isa} {(rows, cols, outputs)}": weight_grad(x, dz, cols),
                                 "oracle dw": oracle_weight_grad(*x, dz, cols)})


def test_dense_rows_agree_with_the_dense_gemm_within_rounding(dtype):
    """A CSR matrix with every entry stored is the dense product up to the summation
    order: within k eps of sum |x||w| (the GEMM blocks its sums differently)."""
    rng = np.random.default_rng(33)
    rows, cols, outputs = 9, 70, 13
    dense = rng.standard_normal((rows, cols)).astype(dtype)
    x = (np.arange(0, rows * cols + 1, cols, dtype=np.int32),
         np.tile(np.arange(cols, dtype=np.int32), rows), dense.ravel().copy())
    w = rng.standard_normal((outputs, cols)).astype(dtype)
    bias = np.zeros(outputs, dtype)
    z, _ = forward(x, w, bias, "linear", 0.0)
    scale = np.abs(dense) @ np.abs(w.T)
    assert np.all(np.abs(z - dense @ w.T) <= cols * np.finfo(dtype).eps * scale)


@pytest.mark.parametrize("kernel", ["forward", "weight_grad"])
def test_thread_count_does_not_change_bits(dtype, isa, nthreads, kernel):
    if not _core.backend_info()["openmp"]:
        pytest.skip("built without OpenMP")
    rng = np.random.default_rng(34)
    # 400 outputs: the forward's last region (the epilogue, 80,000 elements) also splits
    x, w, bias = product_case(rng, (200, 3000, 400), dtype, np.int32, density=0.01)
    dz = rng.standard_normal((200, 400)).astype(dtype)
    run = (lambda: forward(x, w, bias, "relu", 0.0)[1]) if kernel == "forward" \
        else (lambda: weight_grad(x, dz, 3000))
    got = {}
    for t in (1, 2):
        with nthreads(t):
            got[t] = run()
        assert _core._testing.last_team_size() == t
    oracle.assert_same_bits({"1 thread": got[1], "2 threads": got[2]})


def test_a_slice_of_rows_reads_its_own_entries(dtype):
    """indptr may start past 0 (a slice of a larger matrix sharing its arrays)."""
    rng = np.random.default_rng(35)
    indptr, indices, values = random_csr(rng, 20, 30, dtype, np.int64)
    w, bias = rng.standard_normal((4, 30)).astype(dtype), np.zeros(4, dtype)
    part = (indptr[5:12], indices, values)
    rebased = (indptr[5:12] - indptr[5], indices[indptr[5]:indptr[11]], values[indptr[5]:indptr[11]])
    oracle.assert_same_bits({"slice": forward(part, w, bias, "linear", 0.0)[0],
                             "rebased": forward(rebased, w, bias, "linear", 0.0)[0]})


# ---- bad input: a clear error before anything is read or written outside the arrays ----

def _small(dtype=np.float32):
    indptr, indices = np.array([0, 2, 3], np.int32), np.array([0, 4, 1], np.int32)
    return indptr, indices, np.ones(3, dtype)


@pytest.mark.parametrize("edit,pattern", [
    (lambda p, i, v: (p, np.array([0, 5, 1], np.int32), v), r"column index 5 at entry 1, expected 0 <= index < 5"),
    (lambda p, i, v: (p, np.array([0, -1, 1], np.int32), v), r"column index -1"),
    (lambda p, i, v: (np.array([0, 3, 2], np.int32), i, v), r"indptr decreases at row 1"),
    (lambda p, i, v: (np.array([0, 2, 4], np.int32), i, v), r"outside its 3 entries"),
    (lambda p, i, v: (p, i, v[:2]), r"one entry each"),
])
def test_bad_structure_is_value_error(edit, pattern):
    x = edit(*_small())
    w, dz = np.ones((3, 5), np.float32), np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=pattern):
        _core.csr_gemm_bias_act(*x, w, np.zeros(3, np.float32), np.empty((2, 3), np.float32),
                                np.empty((2, 3), np.float32), "linear", 0.0)
    with pytest.raises(ValueError, match=pattern):
        _core.csr_weight_grad(dz, *x, np.empty((3, 5), np.float32))


def test_mixed_index_dtypes_are_type_error():
    indptr, indices, values = _small()
    with pytest.raises(TypeError, match="both int32 or both int64"):
        _core.csr_weight_grad(np.ones((2, 3), np.float32), indptr.astype(np.int64), indices,
                              values, np.empty((3, 5), np.float32))


def test_values_of_another_dtype_are_type_error():
    indptr, indices, values = _small(np.float64)
    with pytest.raises(TypeError, match="values has dtype float64, expected float32"):
        _core.csr_weight_grad(np.ones((2, 3), np.float32), indptr, indices, values,
                              np.empty((3, 5), np.float32))


def test_shape_mismatch_is_value_error():
    with pytest.raises(ValueError, match=r"shape mismatch: x has 2 rows"):
        _core.csr_gemm_bias_act(*_small(), np.ones((3, 5), np.float32), np.zeros(3, np.float32),
                                np.empty((4, 3), np.float32), np.empty((4, 3), np.float32))
