// Row helpers shared by the fused trainer and predictor (baseline code only).
#pragma once
#include "../common.hpp"

namespace fastmlp { namespace train {

// np.argmax of one row: the first maximum, a NaN counting as the maximum (the first one).
// Written without branches (selects): which entry wins is data, rarely predictable.
template <class T>
index argmax_row(const T* z, index k) {
    index best = 0;
    T top = z[0];
    for (index j = 1; j < k; ++j) {
        const T v = z[j];
        const bool take = top == top && (v > top || v != v);    // a NaN best stays best
        best = take ? j : best;
        top = take ? v : top;
    }
    return best;
}

}}  // namespace fastmlp::train
