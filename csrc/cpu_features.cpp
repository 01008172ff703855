#include "cpu_features.hpp"

#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace fastmlp {

namespace {

// AMX-TILE and AMX-BF16 (CPUID.7.0:EDX bits 24 and 22) and the OS saving the tile state
// (XCR0 bits 17 and 18).
bool amx_in_cpu() {
#if defined(__x86_64__) && defined(__linux__)
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    if (!(edx & (1u << 24)) || !(edx & (1u << 22))) return false;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) return false;   // OSXSAVE
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    constexpr unsigned kTileState = (1u << 17) | (1u << 18);
    return (xcr0_lo & kTileState) == kTileState;
#else
    return false;
#endif
}

}  // namespace

bool request_amx_tiles() {
#if defined(__x86_64__) && defined(__linux__)
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    static const bool granted = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
    return granted;
#else
    return false;
#endif
}

bool cpu_supports(Isa isa) {
    switch (isa) {
        case Isa::generic: return true;
#if defined(__x86_64__) || defined(_M_X64)
        case Isa::avx2: __builtin_cpu_init(); return __builtin_cpu_supports("x86-64-v3");
        case Isa::avx512: __builtin_cpu_init(); return __builtin_cpu_supports("x86-64-v4");
        case Isa::avx512_bf16:
            __builtin_cpu_init();
            return __builtin_cpu_supports("x86-64-v4") && __builtin_cpu_supports("avx512bf16");
        case Isa::amx: return cpu_supports(Isa::avx512_bf16) && amx_in_cpu();
#else
        default: return false;
#endif
    }
    return false;
}

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::generic: return "generic";
        case Isa::avx2: return "avx2";
        case Isa::avx512: return "avx512";
        case Isa::avx512_bf16: return "avx512_bf16";
        case Isa::amx: return "amx";
    }
    return "?";
}

bool parse_isa(const char* name, Isa& out) {
    for (int i = 0; i < kIsaCount; ++i) {
        if (std::strcmp(name, isa_name(Isa(i))) == 0) {
            out = Isa(i);
            return true;
        }
    }
    return false;
}

}  // namespace fastmlp
