// Types shared by the dispatch units and the baseline code: an index type, the enums the
// bindings translate names into, and the kernel table each ISA unit fills.
//
// Only types and declarations live here. Anything with a body compiled into several ISA
// units would become one weak symbol, and the linker could keep the AVX-512 copy for the
// generic path (BUILD-NOTES.md, trap 1). Kernel bodies sit in anonymous namespaces.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastmlp {

using index = std::ptrdiff_t;

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };
constexpr int kIsaCount = 3;

enum class Activation : int { linear, sigmoid, tanh, relu, leaky_relu, elu };
enum class Loss : int { softmax_cross_entropy, binary_cross_entropy, mse };
enum class MathFn : int { exp, expm1, log, log1p, tanh, sigmoid };
enum class Optimizer : int { sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw };

// One optimizer step's constants in the kernel's dtype, each combination computed in
// double first (ops.hpp). b1 doubles as Momentum/Nesterov's mu, b2 as RMSProp's rho.
template <class T>
struct OptimizerStep {
    Optimizer kind;
    T lr, grad_scale, eps;
    T b1, one_minus_b1, one_plus_b1, b2, one_minus_b2;
    T bc1, bc2;  // Adam's bias corrections 1 - b1^t, 1 - b2^t
    T lr_wd;     // AdamW's lr * weight_decay
};

// Function pointers of one ISA for one dtype. Entries marked "chunk" are serial and
// work on the slice they are given; the baseline code (ops.hpp) splits work over
// threads. The GEMM driver runs its own OpenMP regions on `threads` threads.
template <class T>
struct KernelTable {
    // C = alpha * op(A) @ op(B) + beta * C, row-major, BLAS argument order. beta == 0
    // never reads C. Identical results for any thread count.
    void (*gemm)(bool trans_a, bool trans_b, index m, index n, index k, T alpha,
                 const T* a, index lda, const T* b, index ldb, T beta, T* c, index ldc,
                 int threads);
    // chunk over rows: z[i, :] += bias; a[i, :] = act(z[i, :]).
    void (*bias_act_forward)(const T* bias, T* z, T* a, index rows, index cols,
                             Activation act, T param);
    // chunk over elements: dz = da * act'(z) (sigmoid and tanh use a = act(z)).
    void (*act_backward)(const T* z, const T* a, const T* da, T* dz, index n,
                         Activation act, T param);
    // chunk over columns: out[j] = sum_i x[i, j] (i ascending), x with leading dim ld.
    void (*col_sum)(const T* x, index ld, index rows, index cols, T* out);
    // chunk over rows: returns sum of the rows' losses (ascending, in double); writes
    // grad = scale * d loss / d logits unless grad is null.
    double (*loss)(Loss loss, const T* logits, const T* y, T* grad, index rows, index cols,
                   T scale);
    // chunk over rows: softmax rows, sigmoid or identity.
    void (*output)(Loss loss, const T* logits, T* out, index rows, index cols);
    // chunk over elements: one fused optimizer step (optimizers.hpp); m, v may be null
    // when the optimizer keeps no such state.
    void (*optimizer_update)(const OptimizerStep<T>& step, T* p, const T* g, T* m, T* v, index n);
    // chunk over elements: sum of g^2 in the Sum16 order.
    T (*sum_squares)(const T* g, index n);
    // chunk over elements: y = f(x), the polynomial transcendentals (tested for ulps).
    void (*math)(MathFn fn, const T* x, T* y, index n);
};

struct Kernels {
    KernelTable<float> f32;
    KernelTable<double> f64;

    template <class T>
    const KernelTable<T>& get() const {
        if constexpr (sizeof(T) == sizeof(float)) return f32; else return f64;
    }
};

// Each dispatch unit, compiled once per ISA, defines the specialisation for its ISA.
template <Isa isa> void register_gemm(Kernels& k);
template <Isa isa> void register_elementwise(Kernels& k);

}  // namespace fastmlp
