#include "shuffle.hpp"

#include "../random.hpp"

namespace fastmlp { namespace train {

void shuffled_order(std::uint64_t seed, std::int64_t* order, index n) {
    for (index i = 0; i < n; ++i) order[i] = i;
    const std::uint64_t key = splitmix64<std::uint64_t>(seed);
    for (index i = n - 1; i > 0; --i) {
        const std::uint64_t z = splitmix64<std::uint64_t>(key ^ std::uint64_t(i));
        const index j = index((unsigned __int128)z * std::uint64_t(i + 1) >> 64);
        const std::int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

}}  // namespace fastmlp::train
