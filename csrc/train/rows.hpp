// Row helpers shared by the fused trainer and predictor (baseline code only).
#pragma once
#include "../common.hpp"

namespace fastmlp { namespace train {

// np.argmax of one row: the first maximum, a NaN counting as the maximum (the first one).
template <class T>
index argmax_row(const T* z, index k) {
    index best = 0;
    for (index j = 1; j < k; ++j) {
        if (z[best] != z[best]) break;
        if (z[j] > z[best] || z[j] != z[j]) best = j;
    }
    return best;
}

}}  // namespace fastmlp::train
