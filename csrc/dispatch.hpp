// The kernel tables: one per compiled ISA, the active one chosen once at import (the best
// this CPU runs, or FASTMLP_ISA=generic|avx2|avx512|avx512_bf16|auto, capped at what the CPU has) and
// switchable in process with select_isa (fastmlp.set_isa).
#pragma once
#include "common.hpp"

namespace fastmlp {

void init_dispatch();            // fill the tables, honour FASTMLP_ISA; call once at import
const Kernels& kernels();        // the active table
Isa active_isa();
bool isa_compiled(Isa isa);
bool isa_usable(Isa isa);        // compiled and supported by this CPU
Isa best_isa();
void select_isa(Isa isa);        // throws std::invalid_argument if not usable

}  // namespace fastmlp
