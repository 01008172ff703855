// The library's one pseudo-random mixer, SplitMix64 (Steele, Lea and Flood, "Fast
// splittable pseudorandom number generators", OOPSLA 2014), used counter-style: an output
// is splitmix64 of a key combined with an index, so any output is computed without the
// ones before it (dropout masks, kernels/dropout.hpp; the epoch's shuffled order,
// train/shuffle.hpp). The NumPy backend computes the same with np.uint64 arithmetic.
//
//   splitmix64(x): z = x + 0x9E3779B97F4A7C15
//                  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
//                  z = (z ^ (z >> 27)) * 0x94D049BB133111EB
//                  return z ^ (z >> 31)                        (uint64, wrapping)
//
// In an anonymous namespace: every unit (the ISA units included) compiles its own copy
// with its own flags, so no ISA's copy is ever linked into another's code.
#pragma once
#include <cstdint>

namespace fastmlp { namespace {

// Scalar (V = std::uint64_t) or a vector of uint64 lanes: the same expression.
template <class V>
inline V splitmix64(V x) {
    V z = x + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

}}  // namespace fastmlp::(anonymous)
