// Inverted dropout with a counter-based mask (docs/conventions.md), and the elementwise product
// its backward pass uses.
//
//   splitmix64 (random.hpp)
//   key  = splitmix64(splitmix64(splitmix64(seed) ^ layer) ^ step)
//   h_i  = splitmix64(key ^ i)   for the flat (row-major) index i of the layer's output
//   u_i  = (h_i >> 40) * 2^-24;  keep iff u_i >= rate
//          (in integers: (h_i >> 40) >= threshold = ceil(rate * 2^24), exact)
//   mask = keep ? scale : 0,  scale = T(1 / (1 - rate)) computed in double
//   y    = x * mask          (so NaN in x stays NaN, dropped or not)
//
// The mask depends on nothing but (seed, layer, step, i): not on the ISA, the thread
// count or the chunking. The hash runs on 64-bit integer vector lanes of the unit's
// width (multiplication emulated with 32-bit multiplies on SSE2/AVX2, vpmullq on
// AVX-512DQ). The NumPy backend computes the same with np.uint64 arithmetic.
//
//   mul:  out = a * b   (dropout's backward: dx = dy * mask)
#pragma once
#include "../random.hpp"
#include "../simd/vec.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

typedef std::uint64_t U64 __attribute__((vector_size(kVecBytes)));
constexpr index kU64Lanes = kVecBytes / 8;

inline std::uint64_t dropout_key(std::uint64_t seed, std::uint64_t layer, std::uint64_t step) {
    return splitmix64<std::uint64_t>(splitmix64<std::uint64_t>(splitmix64<std::uint64_t>(seed) ^ layer) ^ step);
}

// (h >> 40) for the kU64Lanes consecutive indices starting at `first`.
inline U64 dropout_bits(std::uint64_t key, std::uint64_t first) {
    U64 idx;
    for (index l = 0; l < kU64Lanes; ++l) idx[l] = first + std::uint64_t(l);
    return splitmix64<U64>(idx ^ key) >> 40;
}

// Keep flags (all ones = keep) for the lanes<T> indices starting at `first`.
template <class T>
inline Mask<T> dropout_keep(std::uint64_t key, std::uint64_t first, std::uint64_t threshold) {
    if constexpr (sizeof(T) == 8) {
        // 2^52 + k as a double, exactly (k < 2^24): a double comparison, which every ISA
        // has, instead of an unsigned 64-bit one (emulated lane by lane on SSE2).
        const Vec<T> k = from_bits<T>((Mask<T>)(dropout_bits(key, first) | 0x4330000000000000ull));
        return k >= splat<T>(T(4503599627370496.0) + T(threshold));
    } else {
        // Two 64-bit vectors give the lanes<float> 24-bit values; narrow them to 32-bit
        // lanes (the low halves: even 32-bit lanes of the concatenation).
        typedef std::uint32_t U32 __attribute__((vector_size(kVecBytes)));
        const U32 lo = (U32)dropout_bits(key, first);
        const U32 hi = (U32)dropout_bits(key, first + kU64Lanes);
        Mask<T> even;
        for (index l = 0; l < lanes<T>; ++l) even[l] = std::int32_t(2 * l);
        const Mask<T> k = (Mask<T>)__builtin_shuffle(lo, hi, (U32)even);
        return k >= std::int32_t(threshold);  // threshold <= 2^24
    }
}

template <class T>
void dropout_forward(const DropoutParams<T>& p, const T* x, T* y, T* mask, index offset, index n) {
    constexpr index W = lanes<T>;
    const std::uint64_t key = dropout_key(p.seed, p.layer, p.step);
    const Vec<T> scale = splat<T>(p.scale), zero{};
    for (index i = 0; i < n; i += W) {
        const index w = n - i < W ? n - i : W;
        const Vec<T> m = select<T>(dropout_keep<T>(key, std::uint64_t(offset + i), p.threshold), scale, zero);
        if (w == W) {
            store<T>(mask + i, m);
            store<T>(y + i, load<T>(x + i) * m);
        } else {
            store_part<T>(mask + i, m, w);
            store_part<T>(y + i, load_part<T>(x + i, w, T(0)) * m, w);
        }
    }
}

template <class T>
void mul(const T* a, const T* b, T* out, index n) {
    constexpr index W = lanes<T>;
    index i = 0;
    for (; i + W <= n; i += W) store<T>(out + i, load<T>(a + i) * load<T>(b + i));
    if (i < n) store_part<T>(out + i, load_part<T>(a + i, n - i, T(0)) * load_part<T>(b + i, n - i, T(0)), n - i);
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
