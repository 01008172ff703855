// Maxout (Goodfellow et al. 2013; docs/conventions.md). The layer computes the k = pieces linear
// pieces of every unit with GEMM: z is (m, units * k), piece index fastest, so row i's
// unit u owns z[i, u*k : (u+1)*k].
//
//   forward   a[i, u] = z[i, u*k + p*],  argmax[i, u] = p*, where p* is
//             the first NaN piece if any piece is NaN (so NaN in gives NaN out),
//             else the lowest p with z[i, u*k + p] = max_p z[i, u*k + p] (ties: lowest;
//             -0 and +0 tie). This is np.argmax along the piece axis.
//   backward  dz[i, u*k + p] = p == argmax[i, u] ? da[i, u] : 0
//
// Scalar loops: the pieces of a unit are contiguous but the units are strided by k, so a
// vector over units would need gathers; maxout costs little next to the layer's GEMM.
// Scalar reference: the NumPy backend (python/fastmlp/backends/numpy.py).
#pragma once
#include "../simd/vec.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <class T>
void maxout_forward(const T* z, T* a, std::int32_t* argmax, index rows, index units, index k) {
    const index n = rows * units;
    for (index r = 0; r < n; ++r) {
        const T* zp = z + r * k;
        T best = zp[0];
        std::int32_t arg = 0;
        if (best == best) {
            for (index p = 1; p < k; ++p) {
                const T v = zp[p];
                if (v != v) { best = v; arg = std::int32_t(p); break; }
                if (v > best) { best = v; arg = std::int32_t(p); }
            }
        }
        a[r] = best;
        argmax[r] = arg;
    }
}

template <class T>
void maxout_backward(const T* da, const std::int32_t* argmax, T* dz, index rows, index units, index k) {
    const index n = rows * units;
    for (index r = 0; r < n; ++r) {
        T* dp = dz + r * k;
        for (index p = 0; p < k; ++p) dp[p] = T(0);
        dp[argmax[r]] = da[r];  // 0 <= argmax < k: checked by the binding
    }
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
