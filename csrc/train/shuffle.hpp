// The epoch's shuffled order of the rows: a Fisher-Yates shuffle whose draws come from
// splitmix64 (random.hpp), counter-style, so it depends on nothing but (seed, n):
//
//   key = splitmix64(seed)
//   order = 0, 1, ..., n - 1
//   for i = n - 1 down to 1:
//       z_i = splitmix64(key ^ i)
//       j_i = floor(z_i * (i + 1) / 2^64)    (the high word of the 128-bit product: 0..i)
//       swap order[i], order[j_i]
//
// The multiply-shift maps 2^64 values onto i + 1 slots, so a slot's probability is within
// (i + 1) / 2^64 of 1 / (i + 1) (Lemire, "Fast random integer generation in an interval",
// 2019, without the rejection step): below 1e-9 relative for any n under 10^10. fit draws
// the seed from the model's shuffle generator once an epoch (train/loop.py); the NumPy
// backend computes the same order (docs/conventions.md, "Shuffling").
#pragma once
#include <cstdint>

#include "../common.hpp"

namespace fastmlp { namespace train {

// order[0, n) = the shuffled 0 .. n - 1 for `seed`.
void shuffled_order(std::uint64_t seed, std::int64_t* order, index n);

}}  // namespace fastmlp::train
