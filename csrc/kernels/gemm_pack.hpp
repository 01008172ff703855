// The GEMM driver's packing (gemm.hpp, "Packed layouts"): op(A) blocks with a padded row
// stride, op(B) micro-panels of NR (or one vector of) columns; the transposes are done here,
// in registers, so the microkernel never sees them.
#pragma once
#include <cstdlib>
#include <cstring>
#include <new>

#include "../simd/vec.hpp"
#include "gemm_microkernel.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

inline index imin(index x, index y) { return x < y ? x : y; }
inline index round_up(index x, index to) { return (x + to - 1) / to * to; }

constexpr index kKC = 256;                 // longest K block
// Row stride of a packed A block: a K block plus one cache line, so the MR rows a
// microkernel broadcasts from do not all fall in the same few L1 sets.
template <class T>
constexpr index kAStride = kKC + 64 / index(sizeof(T));

// dst[c * ldd + r] = r < valid ? src[r * lds + c] : 0 for r < rows (a multiple of W) and
// c < cols: W x W tiles transposed in registers, a scalar loop for the last cols % W.
// Source rows past `valid` are never read; every W-row group has a valid row (valid > r0).
template <class T>
inline void transpose_into(const T* src, index lds, index rows, index valid, index cols, T* dst,
                           index ldd) {
    constexpr index W = lanes<T>;
    const Vec<T> zero = splat<T>(T(0));
    index c = 0;
    for (; c + W <= cols; c += W)
        for (index r0 = 0; r0 < rows; r0 += W) {
            Vec<T> v[W];
#pragma GCC unroll 16
            for (index i = 0; i < W; ++i) {
                const index r = imin(r0 + i, valid - 1);   // in bounds even if not used
                v[i] = r0 + i < valid ? load<T>(src + r * lds + c) : zero;
            }
            transpose<T>(v);
#pragma GCC unroll 16
            for (index l = 0; l < W; ++l) store<T>(dst + (c + l) * ldd + r0, v[l]);
        }
    for (; c < cols; ++c)
        for (index r = 0; r < rows; ++r) dst[c * ldd + r] = r < valid ? src[r * lds + c] : T(0);
}

// op(A)[i0 : i0+rows, p0 : p0+kc] -> row r at dst + r * kAStride<T> (kc values; an
// untransposed row may be followed by zeros up to round_up(kc, W)), rows rounded up to a
// multiple of MR with zeros. Untransposed A (the forward pass and dX):
// one copy per row. Transposed A (dW = dZ.T @ X): a transpose.
template <class T>
void pack_a(bool ta, const T* a, index lda, index i0, index rows, index p0, index kc, T* dst) {
    constexpr index AS = kAStride<T>, MR = GemmTile<T>::MR, W = lanes<T>;
    if (!ta) {
        for (index r = 0; r < rows; ++r) {
            const T* s = a + (i0 + r) * lda + p0;
            T* d = dst + r * AS;
            index p = 0;
            for (; p + W <= kc; p += W) store<T>(d + p, load<T>(s + p));
            if (p < kc) store<T>(d + p, load_part<T>(s + p, kc - p, T(0)));  // AS >= round_up(kc, W)
        }
    } else {  // rows of the source are p; p in [kc, round_up(kc, W)) is written as 0
        transpose_into<T>(a + p0 * lda + i0, lda, round_up(kc, W), kc, rows, dst, AS);
    }
    for (index r = rows; r < round_up(rows, MR); ++r)
        std::memset(dst + r * AS, 0, sizeof(T) * std::size_t(kc));
}

// Micro-panel `jp` of op(B)[p0 : p0+kc, j0 : j0+cols] -> dst[p * R + j], j < R, columns
// past the matrix zero. R = NR, or W (one vector) for a last panel of at most W columns.
// Untransposed B (dX = dZ @ W, dW): row copies. Transposed B (the forward pass X @ W.T):
// a transpose.
template <class T, int R>
inline void pack_b_rows(bool tb, const T* b, index ldb, index valid, index kc, T* dst) {
    constexpr index W = lanes<T>;
    if (tb) return transpose_into<T>(b, ldb, R, valid, kc, dst, R);
    const Vec<T> zero = splat<T>(T(0));
    for (index p = 0; p < kc; ++p) {
        const T* s = b + p * ldb;
        T* d = dst + p * R;
#pragma GCC unroll 4
        for (index j = 0; j < R; j += W)
            store<T>(d + j, j + W <= valid ? load<T>(s + j) : j < valid ? load_part<T>(s + j, valid - j, T(0)) : zero);
    }
}

template <class T>
void pack_b_panel(bool tb, const T* b, index ldb, index p0, index kc, index j0, index cols,
                  index jp, T* dst) {
    constexpr index W = lanes<T>, NR = GemmTile<T>::NR;
    const index j = j0 + jp * NR, valid = imin(NR, cols - jp * NR);
    const T* src = tb ? b + j * ldb + p0 : b + p0 * ldb + j;
    if (valid <= W) pack_b_rows<T, int(W)>(tb, src, ldb, valid, kc, dst);
    else pack_b_rows<T, int(NR)>(tb, src, ldb, valid, kc, dst);
}

// Where compute_block finds the B micro-panels of one K block (kc rows): panel q (columns
// q * NR .. q * NR + NR of the rectangle) packed at packed + q * NR * kc, its rows NR apart
// (W for a last panel of at most W columns), or, when `direct` is set (op(B) read in place,
// gemm.hpp "Direct B"), every full panel at direct + q * NR with rows ld apart and only a
// last panel of fewer than NR columns packed in its slot.
template <class T>
struct BPanels {
    const T* packed;
    const T* direct;
    index ld, kc;
    const T* at(index q, index nr) const {
        return direct && nr == GemmTile<T>::NR ? direct + q * nr : packed + q * GemmTile<T>::NR * kc;
    }
    index row_stride(index nr) const {
        return direct && nr == GemmTile<T>::NR ? ld : nr <= lanes<T> ? lanes<T> : GemmTile<T>::NR;
    }
};

// The packing buffers (gemm.hpp, "Buffers"): one workspace per calling thread.
struct Workspace {
    void* data = nullptr;
    std::size_t bytes = 0;
    Workspace() = default;
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;
    ~Workspace() { std::free(data); }
    // At least `need` bytes, 64-byte aligned; contents are not kept when it grows.
    char* reserve(std::size_t need) {
        if (need > bytes) {
            std::free(data);
            data = nullptr;
            bytes = 0;
            const std::size_t grown = (need + need / 4 + 4095) / 4096 * 4096;
            if (posix_memalign(&data, 64, grown) != 0) {
                data = nullptr;
                throw std::bad_alloc();
            }
            bytes = grown;
        }
        return static_cast<char*>(data);
    }
};

thread_local Workspace tl_workspace;

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
