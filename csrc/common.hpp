// Types shared by the dispatch units and the baseline code: an index type, the enums the
// bindings translate names into, and the kernel table each ISA unit fills.
//
// Only types and declarations live here. Anything with a body compiled into several ISA
// units would become one weak symbol, and the linker could keep the AVX-512 copy for the
// generic path (docs/build-notes.md, SIMD dispatch). Kernel bodies sit in anonymous namespaces.
#pragma once
#include <cstddef>
#include <cstdint>

namespace fastmlp {

using index = std::ptrdiff_t;

// Levels in ascending order; a level runs everything below it. avx512_bf16 adds the bfloat16
// dot product (VDPBF16PS) to avx512 and shares avx512's float32 and float64 kernels; amx
// multiplies the bfloat16 products in AMX tiles (TDPBF16PS) and shares avx512_bf16's other
// kernels. amx is never chosen automatically (dispatch.cpp, best_isa).
enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2, avx512_bf16 = 3, amx = 4 };
constexpr int kIsaCount = 5;

// Each named enum with its names table k<Enum>Names right below it (index = enum value):
// the bindings parse names through the tables, _core's enum_names() hands them to Python,
// whose registries are tested against them (tests/kernels/test_registries.py,
// tests/api/test_activation_registry.py); the static_asserts keep each table as long as
// its enum (through the enum's last member: add a member at the end and name it there).
// No code depends on the order.
enum class Activation : int { linear, sigmoid, tanh, relu, leaky_relu, elu, gelu, silu, softplus };
constexpr const char* kActivationNames[] = {"linear", "sigmoid", "tanh",  "relu",    "leaky_relu",
                                            "elu",    "gelu",    "silu",  "softplus"};
// Whether act's derivative comes out the same with a = act(z) given in place of z: relu
// (act(z) > 0 exactly where z > 0, and NaN stays NaN), sigmoid and tanh (taken from a
// alone). A fused trainer then keeps only a (program.hpp, keep_outputs_only).
constexpr bool derivative_from_output(Activation act) {
    return act == Activation::relu || act == Activation::sigmoid || act == Activation::tanh;
}

enum class Loss : int { softmax_cross_entropy, binary_cross_entropy, mse, poisson };
constexpr const char* kLossNames[] = {"softmax_cross_entropy", "binary_cross_entropy", "mse", "poisson"};
// Whether a loss's prediction is a value per output (mse: z, poisson: exp z), not a class.
constexpr bool is_regression(Loss loss) { return loss == Loss::mse || loss == Loss::poisson; }

enum class MathFn : int { exp, expm1, log, log1p, tanh, sigmoid };
constexpr const char* kMathFnNames[] = {"exp", "expm1", "log", "log1p", "tanh", "sigmoid"};

enum class Optimizer : int { sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw };
constexpr const char* kOptimizerNames[] = {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"};

// The operations of a layer plan (python/fastmlp/nn/plans.py OPS, docs/plans.md): the
// fused paths run them from op records (train/program.hpp).
enum class OpCode : int {
    gemm_bias_act, act_backward, gemm_weight_grad, col_sum, gemm_input_grad, maxout_forward,
    maxout_backward, dropout_forward, mul, batchnorm_forward_train, batchnorm_running_update,
    batchnorm_forward_infer, batchnorm_backward, scale_columns, add_to, regularize
};
constexpr const char* kOpCodeNames[] = {
    "gemm_bias_act",   "act_backward",   "gemm_weight_grad",        "col_sum",
    "gemm_input_grad", "maxout_forward", "maxout_backward",         "dropout_forward",
    "mul",             "batchnorm_forward_train", "batchnorm_running_update",
    "batchnorm_forward_infer", "batchnorm_backward", "scale_columns", "add_to", "regularize"};

template <auto Last, std::size_t N>
constexpr bool names_every(const char* const (&)[N]) { return N == std::size_t(Last) + 1; }
static_assert(names_every<Activation::softplus>(kActivationNames), "one name per Activation");
static_assert(names_every<Loss::poisson>(kLossNames), "one name per Loss");
static_assert(names_every<MathFn::sigmoid>(kMathFnNames), "one name per MathFn");
static_assert(names_every<Optimizer::adamw>(kOptimizerNames), "one name per Optimizer");
static_assert(names_every<OpCode::regularize>(kOpCodeNames), "one name per OpCode");

// One optimizer step's constants in the kernel's dtype, each combination computed in
// double first (ops.hpp). b1 doubles as Momentum/Nesterov's mu, b2 as RMSProp's rho.
template <class T>
struct OptimizerStep {
    Optimizer kind;
    T lr, grad_scale, eps;
    T b1, one_minus_b1, one_plus_b1, b2, one_minus_b2;
    T bc1, bc2;  // Adam's bias corrections 1 - b1^t, 1 - b2^t
    T lr_wd;     // AdamW's lr * weight_decay
    T lr_t;      // Adam's rate with the corrections folded in: lr * sqrt(1 - b2^t) / (1 - b1^t)
    bool eps_before_correction;  // Adam: eps added to sqrt(v), the correction in lr_t
};

// One dropout call's constants (dropout.hpp): the mask of flat element i is a pure
// function of (seed, layer, step, i); keep iff (h >> 40) >= threshold, where threshold =
// ceil(rate * 2^24), so that u = (h >> 40) * 2^-24 >= rate exactly; kept units are
// multiplied by scale = T(1 / (1 - rate)) (computed in double).
template <class T>
struct DropoutParams {
    std::uint64_t seed, layer, step;
    std::uint64_t threshold;
    T scale;
};

// The products of one ISA for one dtype (gemm.hpp; the bfloat16 ones: gemm_bf16.hpp). The
// GEMM driver runs its own OpenMP regions on `threads` threads (or shares the caller's team).
template <class T>
struct GemmTable {
    // C = alpha * op(A) @ op(B) + beta * C, row-major, BLAS argument order. beta == 0
    // never reads C. Identical results for any thread count.
    void (*gemm)(bool trans_a, bool trans_b, index m, index n, index k, T alpha,
                 const T* a, index lda, const T* b, index ldb, T beta, T* c, index ldc,
                 int threads);
    // z = op(A) @ op(B) + bias (row broadcast), out = act(z): alpha = 1, beta = 0 (z and
    // out never read), the bias and activation applied in the epilogue of each tile's last
    // K block; bit-identical to gemm then bias_act_forward. out may be z (then it holds act(z) alone).
    void (*gemm_bias_act)(bool trans_a, bool trans_b, index m, index n, index k, const T* a,
                          index lda, const T* b, index ldb, const T* bias, T* z, index ldz,
                          T* out, index ldo, Activation act, T param, int threads);
    // dx = op(A) @ op(B) (alpha 1, beta 0), dz = dx * act'(z) (a = act(z); z and a with
    // row stride ldz): act_backward applied in the epilogue of each tile's last K block,
    // bit-identical to gemm then act_backward. dx may be dz (then only dz is written);
    // neither is read before written.
    void (*gemm_act_backward)(bool trans_a, bool trans_b, index m, index n, index k, const T* a, index lda,
                              const T* b, index ldb, const T* z, const T* act_z, index ldz, T* dx,
                              index lddx, T* dz, index lddz, Activation act, T param, int threads);
    // Pre-packed weights (gemm.hpp): packed_b_size(n, k) elements hold op(B) (k x n) as
    // pack_b lays it out for this ISA; gemm_bias_act_packed is gemm_bias_act with A
    // untransposed and that B, the same bits. The layout differs between ISAs.
    index (*packed_b_size)(index n, index k);
    void (*pack_b)(bool trans_b, index n, index k, const T* b, index ldb, T* packed);
    void (*gemm_bias_act_packed)(index m, index n, index k, const T* a, index lda,
                                 const T* packed_b, const T* bias, T* z, index ldz, T* out,
                                 index ldo, Activation act, T param, int threads);
};

// Function pointers of one ISA for one dtype: the products (GemmTable) and the rest.
// Entries marked "chunk" are serial and work on the slice they are given; the baseline code
// (ops.hpp) splits work over threads.
template <class T>
struct KernelTable : GemmTable<T> {
    // chunk over rows: z[i, :] += bias; a[i, :] = act(z[i, :]).
    void (*bias_act_forward)(const T* bias, T* z, T* a, index rows, index cols,
                             Activation act, T param);
    // chunk over elements: dz = da * act'(z) (sigmoid and tanh use a = act(z)).
    void (*act_backward)(const T* z, const T* a, const T* da, T* dz, index n,
                         Activation act, T param);
    // chunk over columns: out[j] = sum_i x[i, j] (i ascending), x with leading dim ld.
    void (*col_sum)(const T* x, index ld, index rows, index cols, T* out);
    // chunk over rows: returns sum of the rows' losses (ascending, in double); writes
    // grad = scale * d loss / d logits unless grad is null. With row weights w (null:
    // unweighted) it returns sum_i w_i loss_i and row i's grad uses scale * w_i. Softmax
    // cross-entropy with labels (null: none) also writes row i's argmax_rows of logits and
    // of y into labels[2i], labels[2i + 1].
    double (*loss)(Loss loss, const T* logits, const T* y, T* grad, index rows, index cols,
                   T scale, const T* weights, std::int64_t* labels);
    // chunk over rows: softmax rows, sigmoid or identity.
    void (*output)(Loss loss, const T* logits, T* out, index rows, index cols);
    // chunk over elements: one fused optimizer step (optimizers.hpp); m, v may be null
    // when the optimizer keeps no such state.
    void (*optimizer_update)(const OptimizerStep<T>& step, T* p, const T* g, T* m, T* v, index n);
    // chunk over elements: sum of g^2 in the Sum16 order.
    T (*sum_squares)(const T* g, index n);
    // chunk over elements: whether every x is finite (no NaN, no infinity).
    bool (*all_finite)(const T* x, index n);
    // chunk over rows: out[i] = np.argmax(z[i, :]) for z (rows, k), k >= 1: the first
    // maximum, or the first NaN of a row that has one.
    void (*argmax_rows)(const T* z, index rows, index k, std::int64_t* out);
    // chunk over elements: y = f(x), the polynomial transcendentals (tested for ulps).
    void (*math)(MathFn fn, const T* x, T* y, index n);

    // Layers (dropout.hpp, maxout.hpp, batchnorm.hpp, regularization.hpp).
    // chunk over elements [offset, offset + n) of the flat output: the counter-based mask
    // and y = x * mask (y may be x). x, y, mask point at element `offset`.
    void (*dropout_forward)(const DropoutParams<T>& p, const T* x, T* y, T* mask,
                            index offset, index n);
    // chunk over elements: out = a * b (out may be a or b).
    void (*mul)(const T* a, const T* b, T* out, index n);
    // chunk over rows: a[i, u] = max_p z[i, u*pieces + p], argmax = the lowest winning p
    // (the first NaN piece for a NaN).
    void (*maxout_forward)(const T* z, T* a, std::int32_t* argmax, index rows, index units,
                           index pieces);
    // chunk over rows: dz[i, u*pieces + p] = p == argmax[i, u] ? da[i, u] : 0.
    void (*maxout_backward)(const T* da, const std::int32_t* argmax, T* dz, index rows,
                            index units, index pieces);
    // chunk over columns (all rows, leading dimension ld): batch statistics and the
    // normalized outputs of a training step.
    void (*batchnorm_train)(const T* x, const T* gamma, const T* beta, T* y, T* xhat,
                            T* mean, T* inv_std, index ld, index rows, index cols, T eps);
    // chunk over rows and columns (leading dimension ld): y from running statistics.
    void (*batchnorm_infer)(const T* x, const T* gamma, const T* beta, const T* mean,
                            const T* var, T* y, index ld, index rows, index cols, T eps);
    // chunk over columns (all rows): dgamma, dbeta and dx.
    void (*batchnorm_backward)(const T* dy, const T* xhat, const T* gamma, const T* inv_std,
                               T* dx, T* dgamma, T* dbeta, index ld, index rows, index cols);
    // chunk over elements: dw += the penalty's gradient; sums[0] = sum |w|,
    // sums[1] = sum w^2, each in the Sum16 order.
    void (*regularize)(const T* w, T* dw, index n, T l1, T l2, T* sums);
};

struct Kernels {
    KernelTable<float> f32;
    KernelTable<double> f64;
    // The products with float32 operands rounded to bfloat16 and float32 sums
    // (gemm_bf16.hpp): the float32 entries' contracts with that rounding, their own
    // arithmetic (docs/bfloat16.md) and their own packed layout.
    GemmTable<float> bf16;

    template <class T>
    const KernelTable<T>& get() const {
        if constexpr (sizeof(T) == sizeof(float)) return f32; else return f64;
    }
};

// Each dispatch unit, compiled once per ISA, defines the specialisation for its ISA.
template <Isa isa> void register_gemm(Kernels& k);
template <Isa isa> void register_elementwise(Kernels& k);
template <Isa isa> void register_gemm_bf16(Kernels& k);
// The amx level's products on emulated tiles (gemm_amx.hpp): the tests' way to run them.
template <Isa isa> void register_gemm_bf16_emulated(Kernels& k);

}  // namespace fastmlp
