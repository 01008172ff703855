// The kernel tables: one per compiled ISA, the active one chosen once at import (the best
// this CPU runs, or FASTMLP_ISA=generic|avx2|avx512|avx512_bf16|amx|auto, capped at what the CPU has) and
// switchable in process with select_isa (fastmlp.set_isa).
#pragma once
#include "common.hpp"

namespace fastmlp {

void init_dispatch();            // fill the tables, honour FASTMLP_ISA; call once at import
const Kernels& kernels();        // the active table
Isa active_isa();
bool isa_compiled(Isa isa);
bool isa_usable(Isa isa);        // compiled and supported by this CPU (amx: or emulated)
Isa best_isa();                  // the level chosen at import: the best usable below amx
void select_isa(Isa isa);        // throws std::invalid_argument if not usable
// Tests: the amx level's products on emulated tiles (on), or on the CPU's own (off; the
// level is then usable only where the CPU has AMX). Throws where the build lacks amx.
void emulate_amx(bool on);
bool amx_emulated();

}  // namespace fastmlp
