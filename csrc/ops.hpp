// The kernels as the bindings call them: pick the active table, split the work over
// threads (fixed partitions, so results never depend on the thread count), call the
// serial chunks. Baseline code, compiled once.
#pragma once
#include <cmath>
#include <vector>

#include "dispatch.hpp"
#include "parallel.hpp"

namespace fastmlp {

// Elementwise work per thread below which one thread is faster (BUILD-NOTES §2).
constexpr index kElementGrain = 32 * 1024;
// GEMM multiply-adds per thread below which one thread is faster.
constexpr index kGemmGrain = 64 * 64 * 64;
// Rows per partial sum of a loss; fixed so the sum's order is fixed.
constexpr index kLossBlockRows = 64;

template <class T>
void gemm(bool ta, bool tb, index m, index n, index k, T alpha, const T* a, index lda,
          const T* b, index ldb, T beta, T* c, index ldc) {
    const int threads = threads_for(m * n * k, kGemmGrain);
    kernels().get<T>().gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, threads);
}

template <class T>
void bias_act_forward(const T* bias, T* z, T* a, index rows, index cols, Activation act, T param) {
    const auto f = kernels().get<T>().bias_act_forward;
    parallel_for(rows, threads_for(rows * cols, kElementGrain), [&](index r0, index r1) {
        f(bias, z + r0 * cols, a + r0 * cols, r1 - r0, cols, act, param);
    });
}

template <class T>
void act_backward(const T* z, const T* a, const T* da, T* dz, index n, Activation act, T param) {
    const auto f = kernels().get<T>().act_backward;
    parallel_for(n, threads_for(n, kElementGrain), [&](index i0, index i1) {
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

template <class T>
double loss(Loss kind, const T* z, const T* y, T* grad, index rows, index cols, T scale) {
    const auto f = kernels().get<T>().loss;
    const index blocks = (rows + kLossBlockRows - 1) / kLossBlockRows;
    thread_local std::vector<double> partial;  // grows once, reused
    if (index(partial.size()) < blocks) partial.resize(blocks);
    double* p = partial.data();
    parallel_for(blocks, threads_for(rows * cols * 8, kElementGrain), [&](index b0, index b1) {
        for (index b = b0; b < b1; ++b) {
            const index r0 = b * kLossBlockRows;
            const index r1 = r0 + kLossBlockRows < rows ? r0 + kLossBlockRows : rows;
            p[b] = f(kind, z + r0 * cols, y + r0 * cols, grad ? grad + r0 * cols : nullptr,
                     r1 - r0, cols, scale);
        }
    });
    double total = 0;
    for (index b = 0; b < blocks; ++b) total += p[b];
    return total;
}

template <class T>
void output(Loss kind, const T* z, T* out, index rows, index cols) {
    const auto f = kernels().get<T>().output;
    parallel_for(rows, threads_for(rows * cols * 8, kElementGrain), [&](index r0, index r1) {
        f(kind, z + r0 * cols, out + r0 * cols, r1 - r0, cols);
    });
}

// An optimizer step as the caller states it, in double.
struct OptimizerHyper {
    Optimizer kind;
    double lr, grad_scale, b1, b2, eps, weight_decay;
    long long step;  // t, counted from 1 (Adam's bias correction)
};

template <class T>
OptimizerStep<T> step_constants(const OptimizerHyper& h) {
    const double t = double(h.step);
    return OptimizerStep<T>{h.kind, T(h.lr), T(h.grad_scale), T(h.eps),
                            T(h.b1), T(1 - h.b1), T(1 + h.b1), T(h.b2), T(1 - h.b2),
                            T(1 - std::pow(h.b1, t)), T(1 - std::pow(h.b2, t)),
                            T(h.lr * h.weight_decay)};
}

template <class T>
void optimizer_update(const OptimizerHyper& h, T* p, const T* g, T* m, T* v, index n) {
    const auto f = kernels().get<T>().optimizer_update;
    const OptimizerStep<T> s = step_constants<T>(h);
    parallel_for(n, threads_for(n, kElementGrain), [&](index i0, index i1) {
        f(s, p + i0, g + i0, m ? m + i0 : nullptr, v ? v + i0 : nullptr, i1 - i0);
    });
}

// Elements per partial sum of squares; fixed so the sum's order is fixed.
constexpr index kNormBlock = 16 * 1024;

// sum of g^2: Sum16 within fixed blocks, blocks added in ascending order in double.
template <class T>
double sum_squares(const T* g, index n) {
    const auto f = kernels().get<T>().sum_squares;
    const index blocks = (n + kNormBlock - 1) / kNormBlock;
    thread_local std::vector<double> partial;  // grows once, reused
    if (index(partial.size()) < blocks) partial.resize(blocks);
    double* p = partial.data();
    parallel_for(blocks, threads_for(n, kElementGrain), [&](index b0, index b1) {
        for (index b = b0; b < b1; ++b) {
            const index i0 = b * kNormBlock;
            p[b] = f(g + i0, (i0 + kNormBlock < n ? i0 + kNormBlock : n) - i0);
        }
    });
    double total = 0;
    for (index b = 0; b < blocks; ++b) total += p[b];
    return total;
}

template <class T>
void math(MathFn fn, const T* x, T* y, index n) {
    const auto f = kernels().get<T>().math;
    parallel_for(n, threads_for(n * 8, kElementGrain), [&](index i0, index i1) { f(fn, x + i0, y + i0, i1 - i0); });
}

}  // namespace fastmlp
