// Baseline vector width: 16 bytes (SSE2 on x86-64, NEON on aarch64; both are the
// architecture's baseline), no FMA: fma(a, b, c) is a separate multiply and add.
#pragma once
namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {
constexpr int kVecBytes = 16;
template <class V> inline V fma(V a, V b, V c) { return a * b + c; }
template <class V> inline V sqrt(V a) {  // IEEE sqrt per lane (-fno-math-errno: no errno call)
    for (unsigned l = 0; l < sizeof(V) / sizeof(a[0]); ++l) {
        if constexpr (sizeof(a[0]) == 4) a[l] = __builtin_sqrtf(a[l]);
        else a[l] = __builtin_sqrt(a[l]);
    }
    return a;
}
}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
