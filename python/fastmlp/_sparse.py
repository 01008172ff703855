"""Sparse input rows: a scipy.sparse matrix checked and held as CSR arrays in the model's
dtype (docs/sparse.md). fit, predict, evaluate and score take it where they take X; only
the first layer's products read it (Dense, Maxout: the backends' ``gemm_bias_act`` and
``weight_grad``), so the matrix is never made dense.

scipy is imported only here and only when a sparse matrix arrives (a user who has one has
scipy); nothing else in the package imports it for sparse input."""
from __future__ import annotations

import sys
from typing import Tuple

import numpy as np

__all__ = ["CsrRows", "is_sparse", "as_csr_rows"]

_INDEX_TYPES = (np.dtype(np.int32), np.dtype(np.int64))


def is_sparse(X) -> bool:
    """Whether X is a scipy.sparse matrix or array (without importing scipy)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(X)


class CsrRows:
    """Rows of a CSR matrix: row i holds ``data[k]`` at column ``indices[k]`` for k in
    ``[indptr[i], indptr[i + 1])``. indptr and indices share one index dtype (int32 or
    int64); indptr need not start at 0 (a slice shares its matrix's arrays)."""

    __slots__ = ("indptr", "indices", "data", "shape")

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray,
                 shape: Tuple[int, int]):
        self.indptr, self.indices, self.data, self.shape = indptr, indices, data, shape

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return (f"CsrRows(shape={self.shape}, entries={self.entries}, "
                f"dtype={self.dtype.name})")

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def entries(self) -> int:
        return int(self.indptr[-1] - self.indptr[0])

    @property
    def arrays(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(indptr, indices, data): what the native core reads."""
        return self.indptr, self.indices, self.data

    def __getitem__(self, rows: slice) -> "CsrRows":
        """Rows ``start:stop`` (step 1), sharing this matrix's arrays."""
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise ValueError(f"sparse rows take slices with step 1; got {rows}")
        stop = max(start, stop)
        return CsrRows(self.indptr[start:stop + 1], self.indices, self.data,
                       (stop - start, self.shape[1]))

    def take(self, rows: np.ndarray) -> "CsrRows":
        """The given rows (indices into this matrix), copied in that order, their entries
        in this matrix's order."""
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        indptr = np.zeros(len(rows) + 1, dtype=self.indptr.dtype)
        np.cumsum(lengths, out=indptr[1:])
        at = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1],
                                                                  dtype=self.indptr.dtype)
        return CsrRows(indptr, self.indices[at], self.data[at], (len(rows), self.shape[1]))

    def column_mean_std(self) -> Tuple[np.ndarray, np.ndarray]:
        """Each column's mean and standard deviation over the rows (zeros included), in
        float64, without making the rows dense."""
        first, last = self.indptr[0], self.indptr[-1]
        columns = self.indices[first:last]
        values = self.data[first:last].astype(np.float64)
        rows = max(len(self), 1)
        mean = np.bincount(columns, weights=values, minlength=self.shape[1]) / rows
        square = np.bincount(columns, weights=values * values, minlength=self.shape[1]) / rows
        return mean, np.sqrt(np.maximum(square - mean * mean, 0.0))

    def to_scipy(self):
        """These rows as a scipy.sparse.csr_matrix sharing the entries (indptr rebased to
        0 when this is a slice): the NumPy backend multiplies it with scipy."""
        from scipy import sparse
        first, last = self.indptr[0], self.indptr[-1]
        indptr = self.indptr - first if first else self.indptr
        return sparse.csr_matrix((self.data[first:last], self.indices[first:last], indptr),
                                 shape=self.shape, copy=False)


def as_csr_rows(X, name: str, n_features: int, dtype: np.dtype) -> CsrRows:
    """The scipy.sparse matrix X as checked :class:`CsrRows` of ``dtype``: any other
    format is converted to CSR and rows with unsorted indices sorted (copies of the
    entries, never dense), values of another
    dtype converted once, index arrays of two dtypes (or not int32/int64) to int64; the
    values must be finite and every index inside the matrix. CsrRows (checked already)
    come back as they are, their values converted to ``dtype`` if needed."""
    if type(X) is CsrRows:
        _check_width(X, name, n_features)
        return X if X.dtype == dtype else CsrRows(X.indptr, X.indices, X.data.astype(dtype),
                                                 X.shape)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got sparse shape {X.shape}")
    _check_width(X, name, n_features)
    csr = X.tocsr()
    if not csr.has_sorted_indices:       # the kernels' sums run by column (docs/sparse.md)
        csr = csr.sorted_indices()
    data = np.ascontiguousarray(csr.data)
    if data.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers; got sparse values of dtype {data.dtype}")
    data = data.astype(dtype, copy=False)
    if not np.isfinite(data).all():
        raise ValueError(f"{name} holds non-finite values (NaN or inf) among its stored "
                         f"entries (sparse shape {X.shape}); remove or impute them")
    indptr, indices = np.ascontiguousarray(csr.indptr), np.ascontiguousarray(csr.indices)
    if indptr.dtype != indices.dtype or indptr.dtype not in _INDEX_TYPES:
        indptr, indices = indptr.astype(np.int64), indices.astype(np.int64)
    _check_structure(indptr, indices, len(data), X.shape, name)
    return CsrRows(indptr, indices, data, X.shape)


def is_sparse_input(X) -> bool:
    """Whether X takes the sparse path: a scipy.sparse matrix, or CSR rows made already."""
    return is_sparse(X) or type(X) is CsrRows


def _check_width(X, name: str, n_features: int) -> None:
    if X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features per sample (sparse shape "
                         f"{X.shape}); the model expects input_dim={n_features}")


def _check_structure(indptr, indices, entries: int, shape, name: str) -> None:
    if len(indptr) != shape[0] + 1 or indptr[0] != 0 or indptr[-1] > entries \
            or (np.diff(indptr) < 0).any():
        raise ValueError(f"{name} is not a valid CSR matrix (sparse shape {shape}): its indptr "
                         f"must run from 0 up to at most {entries} without decreasing")
    used = indices[:indptr[-1]]
    if len(used) and (used.min() < 0 or used.max() >= shape[1]):
        raise ValueError(f"{name} holds column indices outside [0, {shape[1]}) (sparse shape "
                         f"{shape})")
