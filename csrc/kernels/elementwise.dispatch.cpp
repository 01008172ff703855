// Dispatch unit for every kernel but GEMM, compiled once per ISA (CMake sets
// FASTMLP_ISA_NS and the -march level). Exports only register_elementwise<isa>.
#include "../common.hpp"
#include "activations.hpp"
#include "batchnorm.hpp"
#include "dropout.hpp"
#include "losses.hpp"
#include "maxout.hpp"
#include "optimizers.hpp"
#include "regularization.hpp"

namespace fastmlp {
namespace FASTMLP_ISA_NS { namespace {

template <class T>
void math_map(MathFn fn, const T* x, T* y, index n) {
    switch (fn) {
        case MathFn::exp: return map_lanes<T>(x, y, n, T(0), [](Vec<T> v) { return exp<T>(v); });
        case MathFn::expm1: return map_lanes<T>(x, y, n, T(0), [](Vec<T> v) { return expm1<T>(v); });
        case MathFn::log: return map_lanes<T>(x, y, n, T(1), [](Vec<T> v) { return log<T>(v); });
        case MathFn::log1p: return map_lanes<T>(x, y, n, T(0), [](Vec<T> v) { return log1p<T>(v); });
        case MathFn::tanh: return map_lanes<T>(x, y, n, T(0), [](Vec<T> v) { return tanh<T>(v); });
        case MathFn::sigmoid: return map_lanes<T>(x, y, n, T(0), [](Vec<T> v) { return sigmoid<T>(v); });
    }
}

template <class T>
void fill(KernelTable<T>& t) {
    t.bias_act_forward = &bias_act_forward<T>;
    t.act_backward = &act_backward<T>;
    t.col_sum = &col_sum<T>;
    t.loss = &loss_rows<T>;
    t.output = &output_rows<T>;
    t.optimizer_update = &optimizer_update<T>;
    t.sum_squares = &sum_squares<T>;
    t.all_finite = &all_finite<T>;
    t.argmax_rows = &argmax_rows<T>;
    t.math = &math_map<T>;
    t.dropout_forward = &dropout_forward<T>;
    t.mul = &mul<T>;
    t.maxout_forward = &maxout_forward<T>;
    t.maxout_backward = &maxout_backward<T>;
    t.batchnorm_train = &batchnorm_train<T>;
    t.batchnorm_infer = &batchnorm_infer<T>;
    t.batchnorm_backward = &batchnorm_backward<T>;
    t.regularize = &regularize<T>;
}

}}  // namespace FASTMLP_ISA_NS::(anonymous)

template <>
void register_elementwise<Isa::FASTMLP_ISA_NS>(Kernels& k) {
    FASTMLP_ISA_NS::fill(k.f32);
    FASTMLP_ISA_NS::fill(k.f64);
}

}  // namespace fastmlp
