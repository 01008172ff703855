// L1/L2 weight penalties (docs/conventions.md; the caller folds lambda/n into l1 and l2). Over a
// flat weight array w and its gradient dw, in the dtype T with l1 = T(l1), l2 = T(l2):
//
//   sign(w) = 1 for w > 0, -1 for w < 0, +0 for w = +-0, NaN for NaN  (np.sign)
//   both nonzero  dw = dw + (l1 * sign(w) + l2 * w)
//   only l1       dw = dw + l1 * sign(w)
//   only l2       dw = dw + l2 * w
//   neither       dw unchanged
//   sums[0] = sum |w|,  sums[1] = sum w^2   (Sum16 order, reductions.hpp)
//
// The caller (ops.hpp) forms the penalty l1 * sum|w| + (l2 / 2) * sum w^2 in double from
// fixed blocks of these sums, each term only when its coefficient is nonzero.
#pragma once
#include "reductions.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <class T>
inline Vec<T> sign_keep_nan(Vec<T> w) {
    const Vec<T> zero{};
    const Vec<T> s = select<T>(w == w, zero, w);  // +0 for zeros, the NaN itself for NaN
    return select<T>(w > zero, splat<T>(T(1)), select<T>(w < zero, splat<T>(T(-1)), s));
}

template <class T>
void regularize(const T* w, T* dw, index n, T l1, T l2, T* sums) {
    const Vec<T> vl1 = splat<T>(l1), vl2 = splat<T>(l2);
    const bool use1 = l1 != T(0), use2 = l2 != T(0);
    Sum16<T> abs_sum, sq_sum;
    for_sum16_lanes<T>(n, [&](index j, index k, auto slot) {
        const bool full = k == lanes<T>;
        // fill 0 in a tail: |0| = 0^2 = +0 adds nothing to a partial sum
        const Vec<T> wv = full ? load<T>(w + j) : load_part<T>(w + j, k, T(0));
        abs_sum.acc[slot] += abs<T>(wv);
        sq_sum.acc[slot] += wv * wv;
        if (!use1 && !use2) return;
        Vec<T> d = full ? load<T>(dw + j) : load_part<T>(dw + j, k, T(0));
        if (use1 && use2) d = d + (vl1 * sign_keep_nan<T>(wv) + vl2 * wv);
        else if (use1) d = d + vl1 * sign_keep_nan<T>(wv);
        else d = d + vl2 * wv;
        if (full) store<T>(dw + j, d); else store_part<T>(dw + j, d, k);
    });
    sums[0] = abs_sum.total();
    sums[1] = sq_sum.total();
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
