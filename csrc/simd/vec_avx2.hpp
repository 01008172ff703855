// x86-64-v3: 32-byte vectors with FMA3.
#pragma once
#include <immintrin.h>
namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {
constexpr int kVecBytes = 32;
template <class V> inline V fma(V a, V b, V c) {
    if constexpr (sizeof(a[0]) == 4) return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
    else return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
}
template <class V> inline V sqrt(V a) {
    if constexpr (sizeof(a[0]) == 4) return (V)_mm256_sqrt_ps((__m256)a);
    else return (V)_mm256_sqrt_pd((__m256d)a);
}
}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
