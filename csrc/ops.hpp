// The kernels as the bindings call them: pick the active table, split the work over
// threads (fixed partitions, so results never depend on the thread count), call the
// serial chunks. Baseline code, compiled once.
#pragma once
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "dispatch.hpp"
#include "kernels/sparse.hpp"
#include "parallel.hpp"

namespace fastmlp {

// Work per thread below which fewer threads are faster (docs/build-notes.md, "Grains",
// bench/grains.py): kElementGrain units of about one cheap pass over an element (bias +
// ReLU forward: 1 unit; a kernel that costs more per element counts more units), and
// kGemmGrain multiply-adds. Measured at 2 threads, a second thread paid from 16-45 K
// elements of bias + ReLU, 8-32 K of ReLU's backward, 4-10 K Adam parameters and 110-250 K
// multiply-adds: each grain is the slower run's crossover or above, so a second thread
// never slows a kernel down.
constexpr index kElementGrain = 32 * 1024;
constexpr index kGemmGrain = 64 * 64 * 64;
// Rows per partial sum of a loss; fixed so the sum's order is fixed.
constexpr index kLossBlockRows = 64;

// `count` partial sums of type V that every thread of the caller's team writes into and
// reads (the team's buffer), or the calling thread's own outside a team; grown once.
template <class V>
V* partial_sums(index count) {
    if (Team* team = current_team())
        return reinterpret_cast<V*>(team_buffer(team->partials, std::size_t(count) * sizeof(V)));
    thread_local std::vector<V> own;
    if (index(own.size()) < count) own.resize(std::size_t(count));
    return own.data();
}

// The team's threads have read the partial sums: the next reduction may write them.
inline void partial_sums_read() { team_barrier(); }

// The products a call runs on: the dtype's, or with bf16 (float32 operands only) the ones
// that round the operands to bfloat16 and sum in float32 (gemm_bf16.hpp).
template <class T>
const GemmTable<T>& products(bool bf16) {
    if constexpr (std::is_same_v<T, float>) {
        if (bf16) return kernels().bf16;
    } else if (bf16) {
        throw std::invalid_argument("bfloat16 products take float32 operands");
    }
    return kernels().get<T>();
}

template <class T>
void gemm(bool ta, bool tb, index m, index n, index k, T alpha, const T* a, index lda,
          const T* b, index ldb, T beta, T* c, index ldc, bool bf16 = false) {
    const int threads = threads_for(m * n * k, kGemmGrain);
    products<T>(bf16).gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
}

// z = op(A) @ op(B) + bias, out = act(z) in one pass (the Dense forward); the same
// threads as gemm and bit-identical to gemm then bias_act_forward.
template <class T>
void gemm_bias_act(bool ta, bool tb, index m, index n, index k, const T* a, index lda,
                   const T* b, index ldb, const T* bias, T* z, index ldz, T* out, index ldo,
                   Activation act, T param, bool bf16 = false) {
    const int threads = threads_for(m * n * k, kGemmGrain);
    products<T>(bf16).gemm_bias_act(ta, tb, m, n, k, a, lda, b, ldb, bias, z, ldz, out, ldo, act, param,
                                    threads);
}

// dx = op(A) @ op(B), dz = dx * act'(z) in one pass (the input gradient's GEMM with the
// backward of the layer below, fused trainer): the same threads as gemm, bit-identical to
// gemm then act_backward. dx may be dz: then dx is not kept. Counted for the tests
// (fused_act_backwards, parallel.hpp).
template <class T>
void gemm_act_backward(bool ta, bool tb, index m, index n, index k, const T* a, index lda, const T* b,
                       index ldb, const T* z, const T* act_z, index ldz, T* dx, index lddx, T* dz, index lddz,
                       Activation act, T param, bool bf16 = false) {
    const int threads = threads_for(m * n * k, kGemmGrain);
    note_fused_act_backward();
    products<T>(bf16).gemm_act_backward(ta, tb, m, n, k, a, lda, b, ldb, z, act_z, ldz, dx, lddx, dz, lddz, act,
                                        param, threads);
}

template <class T>
void bias_act_forward(const T* bias, T* z, T* a, index rows, index cols, Activation act, T param) {
    const auto f = kernels().get<T>().bias_act_forward;
    parallel_for(rows, threads_for(rows * cols, kElementGrain), [&](index r0, index r1) {
        f(bias, z + r0 * cols, a + r0 * cols, r1 - r0, cols, act, param);
    });
}

// x's entries by column (ColumnEntries), sorted once: on the calling thread into its own
// scratch (grown once), or in a team on the leader into the leader's, which every thread
// then reads (a thread_local names each thread's own: the leader's address is shared).
template <class T, class I>
const ColumnEntries<T>& column_entries(const CsrRows<T, I>& x) {
    thread_local ColumnEntries<T> scratch;
    Team* const team = current_team();
    if (!team) {
        scratch.assign(x);
        return scratch;
    }
    team_serial([&] {
        scratch.assign(x);
        team->published = &scratch;
    });
    return *static_cast<const ColumnEntries<T>*>(team->published);
}

// The Dense forward on sparse rows: z = x W^T + bias, out = act(z); x (rows, k) CSR, W
// (n, k). The entries sorted by column (column_entries), the product split over the
// outputs (each sum whole on one thread), then bias_act_forward: the bits do not depend
// on the thread count.
template <class T, class I>
void csr_gemm_bias_act(const CsrRows<T, I>& x, const T* w, const T* bias, T* z, T* out, index n,
                       Activation act, T param) {
    const ColumnEntries<T>& e = column_entries(x);
    parallel_for(n, threads_for(x.entries() * n, kGemmGrain), [&](index o0, index o1) {
        csr_times_wt_outputs(e, x.rows, x.cols, w, z, n, o0, o1);
    });
    bias_act_forward<T>(bias, z, out, x.rows, n, act, param);
}

// dW = dz^T x for sparse rows x (rows, k), dz (rows, n), dW (n, k) overwritten; split over
// the outputs.
template <class T, class I>
void csr_weight_grad(const T* dz, const CsrRows<T, I>& x, T* dw, index n) {
    const ColumnEntries<T>& e = column_entries(x);
    parallel_for(n, threads_for(x.entries() * n + n * x.cols, kGemmGrain), [&](index o0, index o1) {
        csr_weight_grad_outputs(e, x.cols, dz, dw, n, o0, o1);
    });
}

template <class T>
void act_backward(const T* z, const T* a, const T* da, T* dz, index n, Activation act, T param) {
    const auto f = kernels().get<T>().act_backward;
    parallel_for(n, threads_for(n * 2, kElementGrain), [&](index i0, index i1) {   // 4 arrays
        f(z + i0, a + i0, da + i0, dz + i0, i1 - i0, act, param);
    });
}

template <class T>
void col_sum(const T* x, index rows, index cols, T* out) {
    const auto f = kernels().get<T>().col_sum;
    // Split over column blocks of 64: each column is summed whole, rows ascending.
    const index blocks = (cols + 63) / 64;
    parallel_for(blocks, threads_for(rows * cols, kElementGrain), [&](index b0, index b1) {
        const index c0 = b0 * 64, c1 = b1 * 64 < cols ? b1 * 64 : cols;
        f(x + c0, cols, rows, c1 - c0, out + c0);
    });
}

// weights: (rows,) row weights or null (unweighted). labels: (rows, 2) or null, written
// for softmax cross-entropy only: each row's argmax_rows of z and of y.
template <class T>
double loss(Loss kind, const T* z, const T* y, T* grad, index rows, index cols, T scale,
            const T* weights = nullptr, std::int64_t* labels = nullptr) {
    const auto f = kernels().get<T>().loss;
    const index blocks = (rows + kLossBlockRows - 1) / kLossBlockRows;
    double* p = partial_sums<double>(blocks);
    parallel_for(blocks, threads_for(rows * cols * 8, kElementGrain), [&](index b0, index b1) {
        for (index b = b0; b < b1; ++b) {
            const index r0 = b * kLossBlockRows;
            const index r1 = r0 + kLossBlockRows < rows ? r0 + kLossBlockRows : rows;
            p[b] = f(kind, z + r0 * cols, y + r0 * cols, grad ? grad + r0 * cols : nullptr,
                     r1 - r0, cols, scale, weights ? weights + r0 : nullptr,
                     labels ? labels + 2 * r0 : nullptr);
        }
    });
    double total = 0;
    for (index b = 0; b < blocks; ++b) total += p[b];
    partial_sums_read();
    return total;
}

template <class T>
void output(Loss kind, const T* z, T* out, index rows, index cols) {
    const auto f = kernels().get<T>().output;
    parallel_for(rows, threads_for(rows * cols * 8, kElementGrain), [&](index r0, index r1) {
        f(kind, z + r0 * cols, out + r0 * cols, r1 - r0, cols);
    });
}

// The state arrays each optimizer keeps, stated per optimizer: m (velocity or first
// moment), v (second moment or squared-gradient sum). Python's registry
// (fastmlp/optim/optimizers.py) states the same; tests/kernels/test_registries.py checks.
struct OptimizerState {
    bool m, v;
};
constexpr OptimizerState state_of(Optimizer o) {
    switch (o) {
        case Optimizer::sgd: return {false, false};
        case Optimizer::momentum: return {true, false};
        case Optimizer::nesterov: return {true, false};
        case Optimizer::adagrad: return {false, true};
        case Optimizer::rmsprop: return {false, true};
        case Optimizer::adam: return {true, true};
        case Optimizer::adamw: return {true, true};
    }
    return {false, false};  // not reached: every enum value has its case
}
inline bool uses_m(Optimizer o) { return state_of(o).m; }
inline bool uses_v(Optimizer o) { return state_of(o).v; }

// An optimizer step as the caller states it, in double.
struct OptimizerHyper {
    Optimizer kind;
    double lr, grad_scale, b1, b2, eps, weight_decay;
    long long step;               // t, counted from 1 (Adam's bias correction)
    bool eps_before_correction;   // Adam's eps placement (optimizers.hpp)
};

template <class T>
OptimizerStep<T> step_constants(const OptimizerHyper& h) {
    const double t = double(h.step);
    const double bc1 = 1 - std::pow(h.b1, t), bc2 = 1 - std::pow(h.b2, t);
    return OptimizerStep<T>{h.kind, T(h.lr), T(h.grad_scale), T(h.eps),
                            T(h.b1), T(1 - h.b1), T(1 + h.b1), T(h.b2), T(1 - h.b2),
                            T(bc1), T(bc2), T(h.lr * h.weight_decay),
                            // only Adam's second form reads lr_t (bc1 is 0 for Momentum's mu = 1)
                            h.eps_before_correction ? T(h.lr * std::sqrt(bc2) / bc1) : T(0),
                            h.eps_before_correction};
}

template <class T>
void optimizer_update(const OptimizerHyper& h, T* p, const T* g, T* m, T* v, index n) {
    const auto f = kernels().get<T>().optimizer_update;
    const OptimizerStep<T> s = step_constants<T>(h);
    parallel_for(n, threads_for(n * 4, kElementGrain), [&](index i0, index i1) {   // Adam: 4 units
        f(s, p + i0, g + i0, m ? m + i0 : nullptr, v ? v + i0 : nullptr, i1 - i0);
    });
}

// Elements per partial sum of squares; fixed so the sum's order is fixed.
constexpr index kNormBlock = 16 * 1024;

// Whether every x in [0, n) is finite, on the calling thread (a chunk the caller is about
// to read anyway, so it is in cache).
template <class T>
bool all_finite(const T* x, index n) {
    return kernels().get<T>().all_finite(x, n);
}

// out[i] = np.argmax(z[i, :]) for z (rows, k), on the calling thread.
template <class T>
void argmax_rows(const T* z, index rows, index k, std::int64_t* out) {
    kernels().get<T>().argmax_rows(z, rows, k, out);
}

// sum of g^2: Sum16 within fixed blocks, blocks added in ascending order in double.
template <class T>
double sum_squares(const T* g, index n) {
    const auto f = kernels().get<T>().sum_squares;
    const index blocks = (n + kNormBlock - 1) / kNormBlock;
    double* p = partial_sums<double>(blocks);
    parallel_for(blocks, threads_for(n, kElementGrain), [&](index b0, index b1) {
        for (index b = b0; b < b1; ++b) {
            const index i0 = b * kNormBlock;
            p[b] = f(g + i0, (i0 + kNormBlock < n ? i0 + kNormBlock : n) - i0);
        }
    });
    double total = 0;
    for (index b = 0; b < blocks; ++b) total += p[b];
    partial_sums_read();
    return total;
}

template <class T>
void math(MathFn fn, const T* x, T* y, index n) {
    const auto f = kernels().get<T>().math;
    parallel_for(n, threads_for(n * 8, kElementGrain), [&](index i0, index i1) { f(fn, x + i0, y + i0, i1 - i0); });
}

// ---- Layers: dropout, maxout, batch normalization, weight penalties ----

// Inverted dropout over n flat elements (dropout.hpp); 0 <= rate < 1 (checked by the
// binding). The mask of element i depends only on (seed, layer, step, first + i): `first`
// is x[0]'s index in the whole batch (a shard of a data-parallel step starts past 0).
template <class T>
void dropout_forward(const T* x, T* y, T* mask, index n, double rate, std::uint64_t seed,
                     std::uint64_t layer, std::uint64_t step, index first = 0) {
    const auto f = kernels().get<T>().dropout_forward;
    // keep iff (h >> 40) * 2^-24 >= rate  <=>  (h >> 40) >= ceil(rate * 2^24): exact in double
    const DropoutParams<T> p{seed, layer, step, std::uint64_t(std::ceil(rate * 16777216.0)),
                             T(1.0 / (1.0 - rate))};
    parallel_for(n, threads_for(n * 4, kElementGrain), [&](index i0, index i1) {
        f(p, x + i0, y + i0, mask + i0, first + i0, i1 - i0);
    });
}

template <class T>
void mul(const T* a, const T* b, T* out, index n) {
    const auto f = kernels().get<T>().mul;
    parallel_for(n, threads_for(n, kElementGrain), [&](index i0, index i1) {
        f(a + i0, b + i0, out + i0, i1 - i0);
    });
}

template <class T>
void maxout_forward(const T* z, T* a, std::int32_t* argmax, index rows, index units, index pieces) {
    const auto f = kernels().get<T>().maxout_forward;
    parallel_for(rows, threads_for(rows * units * pieces, kElementGrain), [&](index r0, index r1) {
        f(z + r0 * units * pieces, a + r0 * units, argmax + r0 * units, r1 - r0, units, pieces);
    });
}

// dz is written at argmax: a value outside [0, pieces) would write outside the unit's
// pieces, so it is refused (std::invalid_argument) before anything is written.
inline void check_argmax(const std::int32_t* argmax, index n, index pieces) {
    for (index i = 0; i < n; ++i)
        if (argmax[i] < 0 || argmax[i] >= pieces)
            throw std::invalid_argument("maxout_backward: argmax holds " + std::to_string(argmax[i]) +
                                        " at flat index " + std::to_string(i) +
                                        ", expected 0 <= argmax < pieces = " + std::to_string(pieces));
}

template <class T>
void maxout_backward(const T* da, const std::int32_t* argmax, T* dz, index rows, index units,
                     index pieces) {
    check_argmax(argmax, rows * units, pieces);
    const auto f = kernels().get<T>().maxout_backward;
    parallel_for(rows, threads_for(rows * units * pieces, kElementGrain), [&](index r0, index r1) {
        f(da + r0 * units, argmax + r0 * units, dz + r0 * units * pieces, r1 - r0, units, pieces);
    });
}

// Columns per batch-norm work item: each column is reduced whole (rows ascending), so
// any split of the columns gives the same bits.
constexpr index kBatchnormBlockCols = 64;

template <class T>
void batchnorm_forward_train(const T* x, const T* gamma, const T* beta, T* y, T* xhat, T* mean,
                             T* inv_std, index rows, index cols, T eps) {
    const auto f = kernels().get<T>().batchnorm_train;
    const index blocks = (cols + kBatchnormBlockCols - 1) / kBatchnormBlockCols;
    parallel_for(blocks, threads_for(rows * cols * 4, kElementGrain), [&](index b0, index b1) {
        const index c0 = b0 * kBatchnormBlockCols;
        const index c1 = b1 * kBatchnormBlockCols < cols ? b1 * kBatchnormBlockCols : cols;
        f(x + c0, gamma + c0, beta + c0, y + c0, xhat + c0, mean + c0, inv_std + c0, cols, rows,
          c1 - c0, eps);
    });
}

template <class T>
void batchnorm_forward_infer(const T* x, const T* gamma, const T* beta, const T* mean, const T* var,
                             T* y, index rows, index cols, T eps) {
    const auto f = kernels().get<T>().batchnorm_infer;
    parallel_for(rows, threads_for(rows * cols * 2, kElementGrain), [&](index r0, index r1) {
        f(x + r0 * cols, gamma, beta, mean, var, y + r0 * cols, cols, r1 - r0, cols, eps);
    });
}

template <class T>
void batchnorm_backward(const T* dy, const T* xhat, const T* gamma, const T* inv_std, T* dx,
                        T* dgamma, T* dbeta, index rows, index cols) {
    const auto f = kernels().get<T>().batchnorm_backward;
    const index blocks = (cols + kBatchnormBlockCols - 1) / kBatchnormBlockCols;
    parallel_for(blocks, threads_for(rows * cols * 3, kElementGrain), [&](index b0, index b1) {
        const index c0 = b0 * kBatchnormBlockCols;
        const index c1 = b1 * kBatchnormBlockCols < cols ? b1 * kBatchnormBlockCols : cols;
        f(dy + c0, xhat + c0, gamma + c0, inv_std + c0, dx + c0, dgamma + c0, dbeta + c0, cols,
          rows, c1 - c0);
    });
}

// dw += l1 sign(w) + l2 w (only the nonzero terms, regularization.hpp); returns
// l1 * sum|w| + (l2 / 2) * sum w^2, each sum Sum16 within blocks of kNormBlock elements and
// the blocks added in ascending order in double; a term is added only if its coefficient
// is nonzero.
template <class T>
double regularize(const T* w, T* dw, index n, double l1, double l2) {
    const auto f = kernels().get<T>().regularize;
    const index blocks = (n + kNormBlock - 1) / kNormBlock;
    T* p = partial_sums<T>(2 * blocks);  // 2 per block: sum |w|, sum w^2
    const T t1 = T(l1), t2 = T(l2);
    parallel_for(blocks, threads_for(n, kElementGrain), [&](index b0, index b1) {
        for (index b = b0; b < b1; ++b) {
            const index i0 = b * kNormBlock;
            f(w + i0, dw + i0, (i0 + kNormBlock < n ? i0 + kNormBlock : n) - i0, t1, t2, p + 2 * b);
        }
    });
    double abs_sum = 0, sq_sum = 0;
    for (index b = 0; b < blocks; ++b) {
        abs_sum += double(p[2 * b]);
        sq_sum += double(p[2 * b + 1]);
    }
    partial_sums_read();
    double penalty = 0;
    if (l1 != 0) penalty += l1 * abs_sum;
    if (l2 != 0) penalty += (l2 / 2) * sq_sum;
    return penalty;
}

}  // namespace fastmlp
