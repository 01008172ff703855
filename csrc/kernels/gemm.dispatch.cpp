// GEMM dispatch unit, compiled once per ISA (CMake sets FASTMLP_ISA_NS and the -march
// level). Exports only register_gemm<isa>; the driver, the packing and the microkernel
// (gemm.hpp, gemm_microkernel.hpp) live in this unit's anonymous namespace. The tile is
// GemmTile<T>: avx512 12x32 float / 12x16 double, avx2 6x16 / 6x8, generic 4x8 / 4x4.
#include "../common.hpp"
#include "activations.hpp"  // activate<T>, act_backward_rows: the fused epilogues
#include "gemm.hpp"

namespace fastmlp {

template <>
void register_gemm<Isa::FASTMLP_ISA_NS>(Kernels& k) {
    k.f32.gemm = &FASTMLP_ISA_NS::gemm_packed<float>;
    k.f64.gemm = &FASTMLP_ISA_NS::gemm_packed<double>;
    k.f32.gemm_bias_act = &FASTMLP_ISA_NS::gemm_bias_act<float>;
    k.f64.gemm_bias_act = &FASTMLP_ISA_NS::gemm_bias_act<double>;
    k.f32.gemm_act_backward = &FASTMLP_ISA_NS::gemm_act_backward<float>;
    k.f64.gemm_act_backward = &FASTMLP_ISA_NS::gemm_act_backward<double>;
    k.f32.packed_b_size = &FASTMLP_ISA_NS::packed_b_size<float>;
    k.f64.packed_b_size = &FASTMLP_ISA_NS::packed_b_size<double>;
    k.f32.pack_b = &FASTMLP_ISA_NS::pack_b<float>;
    k.f64.pack_b = &FASTMLP_ISA_NS::pack_b<double>;
    k.f32.gemm_bias_act_packed = &FASTMLP_ISA_NS::gemm_bias_act_packed<float>;
    k.f64.gemm_bias_act_packed = &FASTMLP_ISA_NS::gemm_bias_act_packed<double>;
}

}  // namespace fastmlp
