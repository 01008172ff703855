// Which ISA levels this CPU runs, detected once. A level counts only when the CPU (and
// the OS, via XCR0, which libgcc checks) supports everything its -march level lets the
// compiler use: x86-64-v3 for "avx2", x86-64-v4 for "avx512", x86-64-v4 and AVX512_BF16 for
// "avx512_bf16"; for "amx" that and AMX-TILE, AMX-BF16 and the OS saving the tile state
// (docs/build-notes.md, SIMD dispatch).
#pragma once
#include "common.hpp"

namespace fastmlp {
bool cpu_supports(Isa isa);
// Linux's permission for this process to use the AMX tile data (arch_prctl
// ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA), asked once, when the amx level is first
// selected: never at import, since a granted permission enlarges every signal frame of the
// process. False where the kernel refuses (before Linux 5.16; an alternate signal stack
// already installed that is too small for the tile state) or on other systems.
bool request_amx_tiles();
const char* isa_name(Isa isa);
// Parses generic|avx2|avx512|avx512_bf16|amx; returns false for anything else ("auto" included).
bool parse_isa(const char* name, Isa& out);
}  // namespace fastmlp
