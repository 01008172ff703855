// Optimizer updates, in place over a flat parameter buffer.
//   sgd   p -= lr * g
#pragma once
#include "../simd/vec.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <class T>
void sgd_update(T* p, const T* g, index n, T lr) {
    constexpr index W = lanes<T>;
    const Vec<T> vlr = splat<T>(lr);
    index i = 0;
    for (; i + W <= n; i += W) store<T>(p + i, load<T>(p + i) - vlr * load<T>(g + i));
    if (i < n) store_part<T>(p + i, load_part<T>(p + i, n - i, T(0)) - vlr * load_part<T>(g + i, n - i, T(0)), n - i);
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
