// bfloat16 GEMM dispatch unit (gemm_bf16.hpp), compiled once per ISA like gemm.dispatch.cpp:
// the portable path on generic, avx2 and avx512, VDPBF16PS on avx512_bf16 (CMake adds
// -mavx512bf16 and FASTMLP_ISA_AVX512_BF16 to that unit alone). Exports only
// register_gemm_bf16<isa>.
#include "../common.hpp"
#include "gemm_bf16.hpp"

namespace fastmlp {

template <>
void register_gemm_bf16<Isa::FASTMLP_ISA_NS>(Kernels& k) {
    FASTMLP_ISA_NS::fill_bf16_products<FASTMLP_ISA_NS::VectorEngine>(k.bf16);
}

}  // namespace fastmlp
