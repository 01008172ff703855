// The first layer's products with sparse input rows (CSR), serial over a range of the
// layer's outputs (ops.hpp splits the outputs over threads). Baseline code, compiled once:
// every ISA runs these loops, so every ISA gives the same bits (docs/sparse.md).
//
// Both products walk the batch's entries column by column (ColumnEntries), so each row of
// W and of dW is read or written in ascending address order. Each sum runs in scipy's order
// for rows with sorted indices (the input conversion sorts them: python/fastmlp/_sparse.py),
// from 0, one product then one add per entry (no FMA: -ffp-contract=off), so the NumPy
// backend's scipy products are bit for bit the same.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>
#include <stdexcept>
#include <string>

#include "../common.hpp"

namespace fastmlp {

// `rows` rows of a CSR matrix with `cols` columns: row i holds values[k] at column
// indices[k] for k in [indptr[i], indptr[i + 1]); I is the index type (int32 or int64,
// indptr and indices alike). indptr need not start at 0 (a slice of a larger matrix).
// The caller has checked every index: 0 <= indices[k] < cols, indptr non-decreasing.
// Entries may come in any order within a row; duplicates add.
template <class T, class I>
struct CsrRows {
    const I* indptr = nullptr;
    const I* indices = nullptr;
    const T* values = nullptr;
    index rows = 0, cols = 0;

    index entries() const { return rows > 0 ? index(indptr[rows] - indptr[0]) : 0; }
};

// The checks that keep the products inside their arrays; each throws std::invalid_argument
// (message starting with `who`). check_csr_indptr: x's rows lie inside arrays of `length`
// entries (0 <= indptr[0] <= ... <= indptr[rows] <= length), O(rows).
template <class T, class I>
void check_csr_indptr(const CsrRows<T, I>& x, index length, const std::string& who) {
    auto fail = [&](const std::string& msg) { throw std::invalid_argument(who + ": " + msg); };
    if (x.rows < 0) fail("sparse X has a negative row count");
    if (x.rows == 0) return;
    if (x.indptr[0] < 0 || index(x.indptr[x.rows]) > length)
        fail("sparse X's indptr runs from " + std::to_string(x.indptr[0]) + " to " +
             std::to_string(x.indptr[x.rows]) + ", outside its " + std::to_string(length) + " entries");
    for (index i = 0; i < x.rows; ++i)
        if (x.indptr[i + 1] < x.indptr[i])
            fail("sparse X's indptr decreases at row " + std::to_string(i) + " (" +
                 std::to_string(x.indptr[i]) + " then " + std::to_string(x.indptr[i + 1]) + ")");
}

// Row i's column indices lie in [0, cols) (its indptr checked by check_csr_indptr).
template <class T, class I>
void check_csr_row(const CsrRows<T, I>& x, index i, const std::string& who) {
    for (I k = x.indptr[i]; k < x.indptr[i + 1]; ++k)
        if (x.indices[k] < 0 || index(x.indices[k]) >= x.cols)
            throw std::invalid_argument(who + ": sparse X holds column index " + std::to_string(x.indices[k]) +
                                        " at entry " + std::to_string(k) + ", expected 0 <= index < " +
                                        std::to_string(x.cols) + " (its columns)");
}

// Both, for every row: what a kernel needs before it reads x.
template <class T, class I>
void check_csr(const CsrRows<T, I>& x, index length, const std::string& who) {
    check_csr_indptr(x, length, who);
    for (index i = 0; i < x.rows; ++i) check_csr_row(x, i, who);
}

// The entries of CSR rows by column: column used[u] holds values[k] of rows row[k] for k
// in [start[u], start[u + 1]), rows ascending (a stable counting sort of the entries by
// column). Only the columns that hold entries are listed, ascending. Its vectors grow and
// are then reused (the caller keeps one per thread).
template <class T>
struct ColumnEntries {
    std::vector<index> used, start, row, count;
    std::vector<T> values;

    template <class I>
    void assign(const CsrRows<T, I>& x) {
        count.assign(std::size_t(x.cols), 0);
        for (I k = x.indptr[0]; k < x.indptr[x.rows]; ++k) ++count[std::size_t(x.indices[k])];
        used.clear();
        start.assign(1, 0);
        for (index j = 0; j < x.cols; ++j) {
            if (count[j] == 0) continue;
            used.push_back(j);
            start.push_back(start.back() + count[j]);
            count[j] = start[start.size() - 2];     // now the column's next free slot
        }
        row.resize(std::size_t(x.entries()));
        values.resize(std::size_t(x.entries()));
        for (index i = 0; i < x.rows; ++i)
            for (I k = x.indptr[i]; k < x.indptr[i + 1]; ++k) {
                const index at = count[std::size_t(x.indices[k])]++;
                row[at] = i;
                values[at] = x.values[k];
            }
    }
};

// z[:, o] = x w[o]^T for o in [o0, o1): z[i][o] = sum of values * w[o][j] over row i's
// entries (i, j), columns ascending (entries of one column in the row's order), from 0.
// That is scipy's csr @ dense order for rows whose indices are sorted. z is (rows, n)
// row-major, w (n, cols); x's entries by column in `e`.
template <class T>
void csr_times_wt_outputs(const ColumnEntries<T>& e, index rows, index cols, const T* w, T* z,
                          index n, index o0, index o1) {
    for (index o = o0; o < o1; ++o) {
        const T* wo = w + o * cols;
        for (index i = 0; i < rows; ++i) z[i * n + o] = T(0);
        for (std::size_t u = 0; u < e.used.size(); ++u) {
            const T wj = wo[e.used[u]];
            for (index k = e.start[u]; k < e.start[u + 1]; ++k) z[e.row[k] * n + o] += e.values[k] * wj;
        }
    }
}

// dw[o] = dz[:, o]^T x for o in [o0, o1): dw[o][j] = sum of values * dz[i][o] over the
// entries (i, j) of column j, rows ascending (scipy's x.T @ dz order), from 0; columns
// with no entry get 0. dz is (rows, n), dw (n, cols); x's entries by column in `e`.
template <class T>
void csr_weight_grad_outputs(const ColumnEntries<T>& e, index cols, const T* dz, T* dw, index n,
                             index o0, index o1) {
    for (index o = o0; o < o1; ++o) {
        T* dwo = dw + o * cols;
        std::fill(dwo, dwo + cols, T(0));
        for (std::size_t u = 0; u < e.used.size(); ++u) {
            T sum = T(0);
            for (index k = e.start[u]; k < e.start[u + 1]; ++k) sum += e.values[k] * dz[e.row[k] * n + o];
            dwo[e.used[u]] = sum;
        }
    }
}

}  // namespace fastmlp
