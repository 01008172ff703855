// The GEMM contract's arithmetic as plain loops (gemm.hpp, "Arithmetic"): the K blocks,
// one lane of the microkernel's fma, the specification itself (which also serves the
// tiny products) and the k == 0 case.
#pragma once
#include "../simd/vec.hpp"
#include "gemm_microkernel.hpp"
#include "gemm_pack.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

// The K blocks: `count` of them, the first `extra` one longer than `base`.
struct KBlocks {
    index count, base, extra;
    explicit KBlocks(index k)
        : count((k + kKC - 1) / kKC), base(count ? k / count : 0), extra(count ? k % count : 0) {}
    index start(index blk) const { return blk * base + imin(blk, extra); }
    index size(index blk) const { return base + (blk < extra ? 1 : 0); }
};

// One lane of the vector wrapper's fma: the exact rounding the microkernel uses.
template <class T>
inline T madd(T x, T y, T acc) {
    return fma(x - Vec<T>{}, y - Vec<T>{}, acc - Vec<T>{})[0];  // (x - 0 is x, -0 included)
}

// The specification as a plain loop (see the contract above). Same signature as the
// packed driver minus the thread count; bit-identical to it on the same ISA.
template <class T>
void gemm_reference(bool ta, bool tb, index m, index n, index k, T alpha, const T* a,
                    index lda, const T* b, index ldb, T beta, T* c, index ldc) {
    const KBlocks kb(k);
    for (index i = 0; i < m; ++i)
        for (index j = 0; j < n; ++j) {
            T& cij = c[i * ldc + j];
            if (kb.count == 0) cij = beta == T(0) ? T(0) : beta * cij;
            for (index blk = 0; blk < kb.count; ++blk) {
                T acc = T(0);
                for (index p = kb.start(blk), end = p + kb.size(blk); p < end; ++p) {
                    const T x = ta ? a[p * lda + i] : a[i * lda + p];
                    const T y = tb ? b[j * ldb + p] : b[p * ldb + j];
                    acc = madd(x, y, acc);
                }
                const Epilogue e = epilogue_for(blk, beta);
                cij = apply_epilogue(e, acc, e == Epilogue::overwrite ? T(0) : cij, alpha, beta);
            }
        }
}

// C = beta * C (zeros when beta == 0): the k == 0 case.
template <class T>
void scale_c(index m, index n, T beta, T* c, index ldc) {
    for (index i = 0; i < m; ++i)
        for (index j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
