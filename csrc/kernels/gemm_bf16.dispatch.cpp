// bfloat16 GEMM dispatch unit (gemm_bf16.hpp), compiled once per ISA like gemm.dispatch.cpp:
// the portable path on generic, avx2 and avx512, VDPBF16PS on avx512_bf16 (CMake adds
// -mavx512bf16 and FASTMLP_ISA_AVX512_BF16 to that unit alone). Exports only
// register_gemm_bf16<isa>.
#include "../common.hpp"
#include "gemm_bf16.hpp"

namespace fastmlp {

template <>
void register_gemm_bf16<Isa::FASTMLP_ISA_NS>(Kernels& k) {
    k.bf16.gemm = &FASTMLP_ISA_NS::gemm_bf16;
    k.bf16.gemm_bias_act = &FASTMLP_ISA_NS::gemm_bias_act_bf16;
    k.bf16.gemm_act_backward = &FASTMLP_ISA_NS::gemm_act_backward_bf16;
    k.bf16.packed_b_size = &FASTMLP_ISA_NS::packed_b_size_bf16;
    k.bf16.pack_b = &FASTMLP_ISA_NS::pack_b_all_bf16;
    k.bf16.gemm_bias_act_packed = &FASTMLP_ISA_NS::gemm_bias_act_packed_bf16;
}

}  // namespace fastmlp
