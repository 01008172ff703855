// Which ISA levels this CPU runs, detected once. A level counts only when the CPU (and
// the OS, via XCR0, which libgcc checks) supports everything its -march level lets the
// compiler use: x86-64-v3 for "avx2", x86-64-v4 for "avx512", x86-64-v4 and AVX512_BF16 for
// "avx512_bf16"; for "amx" that and AMX-TILE, AMX-BF16, the OS's tile state and Linux's
// permission for the tile data, asked for once (docs/build-notes.md, SIMD dispatch).
#pragma once
#include "common.hpp"

namespace fastmlp {
bool cpu_supports(Isa isa);
const char* isa_name(Isa isa);
// Parses generic|avx2|avx512|avx512_bf16|amx; returns false for anything else ("auto" included).
bool parse_isa(const char* name, Isa& out);
}  // namespace fastmlp
