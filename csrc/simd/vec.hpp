// The vector wrapper every kernel is written against, once. The unit's ISA (a define set
// by CMake) picks the width and the fused multiply-add; the operations themselves are
// GCC/Clang vector extensions, which the compiler lowers to that ISA's instructions.
// This header and vec_<isa>.hpp hold the only architecture conditionals in the core.
//
//   Vec<T>    W lanes of T;  Mask<T> the matching integer lanes (all ones = true)
//   load/store(p)            W elements, unaligned
//   load_part/store_part     the first n < W elements (a loop tail); lanes >= n = fill
//   select(m, a, b)          m ? a : b per lane (no NaN is ever dropped: no max/min)
//   zip_lo/zip_hi(a, b)      a0 b0 a1 b1 ... from the low or the high halves of a and b
#pragma once
#include <cstdint>
#include <cstring>

#include "../common.hpp"

// The math and activation functions a kernel applies per vector (math.hpp,
// kernels/activations.hpp) are always inlined: an out-of-line call per vector, with the
// activation's switch inside the loop, costs more than the arithmetic it wraps.
#define FASTMLP_VECTOR_INLINE inline __attribute__((always_inline))

#if defined(FASTMLP_ISA_AVX512)
#include "vec_avx512.hpp"
#elif defined(FASTMLP_ISA_AVX2)
#include "vec_avx2.hpp"
#else
#include "vec_generic.hpp"
#endif

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <class T> struct VecTypes;
template <> struct VecTypes<float> {
    typedef float vec __attribute__((vector_size(kVecBytes)));
    typedef std::int32_t mask __attribute__((vector_size(kVecBytes)));
};
template <> struct VecTypes<double> {
    typedef double vec __attribute__((vector_size(kVecBytes)));
    typedef std::int64_t mask __attribute__((vector_size(kVecBytes)));
};

template <class T> using Vec = typename VecTypes<T>::vec;
// A vector of B < kVecBytes bytes: the GEMM microkernel's narrow last columns (fma takes
// 32-byte ones on the 64-byte level only, gemm_microkernel.hpp).
template <class T, int B> struct NarrowVec { typedef T vec __attribute__((vector_size(B))); };
template <class T, int B> using VecBytes = typename NarrowVec<T, B>::vec;
template <class T> using Mask = typename VecTypes<T>::mask;
template <class T> constexpr index lanes = kVecBytes / sizeof(T);

// x in every lane. x - 0 keeps -0 and NaN (Vec{} + x would turn -0 into +0) and compiles
// to one broadcast; a lane-by-lane loop became several masked broadcasts in unrolled code.
template <class T> inline Vec<T> splat(T x) { return x - Vec<T>{}; }
template <class T> inline Vec<T> load(const T* p) { Vec<T> v; std::memcpy(&v, p, sizeof v); return v; }
template <class T> inline void store(T* p, Vec<T> v) { std::memcpy(p, &v, sizeof v); }

#if defined(FASTMLP_MASKED_PARTS)
template <class T> inline Vec<T> load_part(const T* p, index n, T fill) {
    return masked_load<Vec<T>>(p, n, splat<T>(fill));
}
template <class T> inline void store_part(T* p, Vec<T> v, index n) { masked_store<Vec<T>>(p, v, n); }
#else
template <class T> inline Vec<T> load_part(const T* p, index n, T fill) {
    Vec<T> v = splat<T>(fill);
    std::memcpy(&v, p, sizeof(T) * n);
    return v;
}
template <class T> inline void store_part(T* p, Vec<T> v, index n) { std::memcpy(p, &v, sizeof(T) * n); }
#endif

template <class T> inline Vec<T> select(Mask<T> m, Vec<T> a, Vec<T> b) { return m ? a : b; }
template <class M> inline M select_mask(M m, M a, M b) { return m ? a : b; }
// Interleave the low halves of a and b (a0 b0 a1 b1 ...): zip_lo; the high halves: zip_hi.
// log2(W) rounds of zips transpose W vectors (the GEMM packing). __builtin_shufflevector
// (GCC >= 12, Clang) takes the lane indices as constants, generated here from a pack.
template <int... L> struct LaneSeq {};
template <int N, int... L> struct MakeLanes : MakeLanes<N - 1, N - 1, L...> {};
template <int... L> struct MakeLanes<0, L...> { using type = LaneSeq<L...>; };
template <int Half, class V, int... L> inline V zip_lanes(V a, V b, LaneSeq<L...>) {
    return __builtin_shufflevector(a, b, ((L % 2) * int(sizeof...(L)) + Half + L / 2)...);
}
template <class T> inline Vec<T> zip_lo(Vec<T> a, Vec<T> b) {
    return zip_lanes<0>(a, b, typename MakeLanes<int(lanes<T>)>::type{});
}
template <class T> inline Vec<T> zip_hi(Vec<T> a, Vec<T> b) {
    return zip_lanes<int(lanes<T>) / 2>(a, b, typename MakeLanes<int(lanes<T>)>::type{});
}
// W x W transpose in registers: v[i][l] -> v[l][i], log2(W) rounds of zips.
template <class T>
inline void transpose(Vec<T> (&v)[lanes<T>]) {
    constexpr index W = lanes<T>;
#pragma GCC unroll 8
    for (index round = 1; round < W; round *= 2) {
        Vec<T> t[W];
#pragma GCC unroll 16
        for (index i = 0; i < W / 2; ++i) {
            t[2 * i] = zip_lo<T>(v[i], v[i + W / 2]);
            t[2 * i + 1] = zip_hi<T>(v[i], v[i + W / 2]);
        }
#pragma GCC unroll 16
        for (index i = 0; i < W; ++i) v[i] = t[i];
    }
}
template <class T> inline Mask<T> bits(Vec<T> v) { return (Mask<T>)v; }
template <class T> inline Vec<T> from_bits(Mask<T> m) { return (Vec<T>)m; }
template <class T> inline Vec<T> abs(Vec<T> v) {
    return from_bits<T>(bits<T>(v) & ~bits<T>(splat<T>(T(-0.0))));
}
// Magnitude of `mag` with the sign bit of `sgn`.
template <class T> inline Vec<T> copysign(Vec<T> mag, Vec<T> sgn) {
    const Mask<T> sign = bits<T>(splat<T>(T(-0.0)));
    return from_bits<T>((bits<T>(mag) & ~sign) | (bits<T>(sgn) & sign));
}

// Apply f to x[0, n) -> y, W lanes at a time; the tail goes through load_part with
// `fill` in the unused lanes. y may equal x.
template <class T, class F>
inline void map_lanes(const T* x, T* y, index n, T fill, F f) {
    constexpr index W = lanes<T>;
    index i = 0;
    for (; i + W <= n; i += W) store<T>(y + i, f(load<T>(x + i)));
    if (i < n) store_part<T>(y + i, f(load_part<T>(x + i, n - i, fill)), n - i);
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
