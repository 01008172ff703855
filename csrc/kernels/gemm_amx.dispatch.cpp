// The amx level's bfloat16 products (gemm_amx.hpp), compiled in the amx unit alone (CMake adds
// -mamx-tile -mamx-bf16 and FASTMLP_ISA_AMX to it). Exports register_gemm_bf16<amx> (the
// tile instructions) and register_gemm_bf16_emulated<amx> (the same engine on EmulatedTiles,
// for the tests on CPUs without AMX).
#include "../common.hpp"
#include "gemm_amx.hpp"

namespace fastmlp {

template <>
void register_gemm_bf16<Isa::FASTMLP_ISA_NS>(Kernels& k) {
    FASTMLP_ISA_NS::fill_bf16_products<FASTMLP_ISA_NS::AmxEngine<FASTMLP_ISA_NS::AmxTiles>>(k.bf16);
}

template <>
void register_gemm_bf16_emulated<Isa::FASTMLP_ISA_NS>(Kernels& k) {
    FASTMLP_ISA_NS::fill_bf16_products<FASTMLP_ISA_NS::AmxEngine<FASTMLP_ISA_NS::EmulatedTiles>>(k.bf16);
}

}  // namespace fastmlp
