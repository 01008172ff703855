// x86-64-v4: 64-byte vectors (AVX-512F/BW/DQ/VL) with FMA.
#pragma once
#include <immintrin.h>
namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {
constexpr int kVecBytes = 64;
template <class V> inline V fma(V a, V b, V c) {
    if constexpr (sizeof(a[0]) == 4) return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
    else return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
}
template <class V> inline V sqrt(V a) {
    if constexpr (sizeof(a[0]) == 4) return (V)_mm512_sqrt_ps((__m512)a);
    else return (V)_mm512_sqrt_pd((__m512d)a);
}
}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
