#include "cpu_features.hpp"

#include <cstring>

namespace fastmlp {

bool cpu_supports(Isa isa) {
    switch (isa) {
        case Isa::generic: return true;
#if defined(__x86_64__) || defined(_M_X64)
        case Isa::avx2: __builtin_cpu_init(); return __builtin_cpu_supports("x86-64-v3");
        case Isa::avx512: __builtin_cpu_init(); return __builtin_cpu_supports("x86-64-v4");
        case Isa::avx512_bf16:
            __builtin_cpu_init();
            return __builtin_cpu_supports("x86-64-v4") && __builtin_cpu_supports("avx512bf16");
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
