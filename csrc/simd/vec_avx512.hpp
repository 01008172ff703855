// x86-64-v4: 64-byte vectors (AVX-512F/BW/DQ/VL) with FMA.
#pragma once
#include <immintrin.h>
namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {
constexpr int kVecBytes = 64;
// 64-byte vectors, and the GEMM's narrow 32-byte ones (VecBytes, vec.hpp).
template <class V> inline V fma(V a, V b, V c) {
    constexpr bool f32 = sizeof(a[0]) == 4;
    if constexpr (sizeof(V) == 32) {
        if constexpr (f32) return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
        else return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
    } else {
        if constexpr (f32) return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
        else return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
    }
}
// The all-lanes masked form: the same vsqrt, but with a defined pass-through operand, so
// GCC 12 does not warn about _mm512_sqrt_ps's _mm512_undefined_ps() (trap 14).
template <class V> inline V sqrt(V a) {
    if constexpr (sizeof(a[0]) == 4) return (V)_mm512_mask_sqrt_ps((__m512)a, (__mmask16)-1, (__m512)a);
    else return (V)_mm512_mask_sqrt_pd((__m512d)a, (__mmask8)-1, (__m512d)a);
}
// The first n < W lanes from p (the rest `fill`) and to p, as masked loads and stores:
// the lanes past n are never touched (the generic wrapper copies n elements through
// memory, which stalls store forwarding: a 10-wide softmax row took 3x longer).
#define FASTMLP_MASKED_PARTS 1
template <class V, class T> inline V masked_load(const T* p, index n, V fill) {
    if constexpr (sizeof(T) == 4)
        return (V)_mm512_mask_loadu_ps((__m512)fill, (__mmask16)((1u << n) - 1), p);
    else
        return (V)_mm512_mask_loadu_pd((__m512d)fill, (__mmask8)((1u << n) - 1), p);
}
template <class V, class T> inline void masked_store(T* p, V v, index n) {
    if constexpr (sizeof(T) == 4) _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
    else _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1), (__m512d)v);
}
}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
