// Batch normalization over the batch rows, per feature (column j), in the dtype T with
// m = T(rows). The exact evaluation order (the NumPy backend mirrors it):
//
//   train     mean_j    = (sum_i x_ij) / m
//             var_j     = (sum_i (x_ij - mean_j)^2) / m          (biased, two passes)
//             inv_std_j = 1 / sqrt(var_j + eps)
//             xhat_ij   = (x_ij - mean_j) * inv_std_j
//             y_ij      = gamma_j * xhat_ij + beta_j
//   infer     inv_j     = 1 / sqrt(var_j + eps)                   (running mean and var)
//             y_ij      = gamma_j * ((x_ij - mean_j) * inv_j) + beta_j
//             (so with the batch's own mean and var it reproduces train's y bit for bit)
//   backward  dbeta_j   = sum_i dy_ij
//             dgamma_j  = sum_i dy_ij * xhat_ij
//             c_j       = (gamma_j * inv_std_j) / m
//             dx_ij     = c_j * ((m * dy_ij - dbeta_j) - xhat_ij * dgamma_j)
//
// Every sum over i runs over the rows in ascending order, one accumulator per column
// (like col_sum), so each column's result is the same on every ISA and for any split of
// the columns over threads. A NaN in a column makes that column's statistics NaN.
// Columns are walked in groups of up to 4 vectors, rows innermost.
#pragma once
#include "../simd/vec.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <int N> struct Int {};

// A group of NV column vectors; the last one has wl (1..W) lanes in use.
template <class T, int NV>
struct ColGroup {
    static constexpr index W = lanes<T>;
    index wl;
    bool partial(int v) const { return v == NV - 1 && wl < W; }
    Vec<T> ld(const T* p, int v) const {
        return partial(v) ? load_part<T>(p + v * W, wl, T(0)) : load<T>(p + v * W);
    }
    void st(T* p, int v, Vec<T> x) const {
        if (partial(v)) store_part<T>(p + v * W, x, wl); else store<T>(p + v * W, x);
    }
};

// f(j, Int<NV>, wl) for each group of columns [j, j + (NV - 1) W + wl).
template <class T, class F>
inline void for_column_groups(index cols, F f) {
    constexpr index W = lanes<T>, G = 4;
    for (index j = 0; j < cols; j += G * W) {
        const index width = cols - j < G * W ? cols - j : G * W;
        const index nv = (width + W - 1) / W, wl = width - (nv - 1) * W;
        switch (nv) {
            case 1: f(j, Int<1>{}, wl); break;
            case 2: f(j, Int<2>{}, wl); break;
            case 3: f(j, Int<3>{}, wl); break;
            default: f(j, Int<4>{}, wl); break;
        }
    }
}

template <class T, int NV>
void batchnorm_train_group(const T* x, const T* gamma, const T* beta, T* y, T* xhat, T* mean,
                           T* inv_std, index ld, index rows, index wl, T eps, Int<NV>) {
    const ColGroup<T, NV> g{wl};
    const Vec<T> m = splat<T>(T(rows));
    Vec<T> s[NV] = {}, q[NV] = {}, mu[NV], inv[NV];
    for (index i = 0; i < rows; ++i)
        for (int v = 0; v < NV; ++v) s[v] += g.ld(x + i * ld, v);
    for (int v = 0; v < NV; ++v) mu[v] = s[v] / m;
    for (index i = 0; i < rows; ++i)
        for (int v = 0; v < NV; ++v) {
            const Vec<T> d = g.ld(x + i * ld, v) - mu[v];
            q[v] += d * d;
        }
    for (int v = 0; v < NV; ++v) {
        inv[v] = splat<T>(T(1)) / sqrt(q[v] / m + splat<T>(eps));
        g.st(mean, v, mu[v]);
        g.st(inv_std, v, inv[v]);
    }
    Vec<T> ga[NV], be[NV];
    for (int v = 0; v < NV; ++v) { ga[v] = g.ld(gamma, v); be[v] = g.ld(beta, v); }
    for (index i = 0; i < rows; ++i)
        for (int v = 0; v < NV; ++v) {
            const Vec<T> xh = (g.ld(x + i * ld, v) - mu[v]) * inv[v];
            g.st(xhat + i * ld, v, xh);
            g.st(y + i * ld, v, ga[v] * xh + be[v]);
        }
}

template <class T>
void batchnorm_train(const T* x, const T* gamma, const T* beta, T* y, T* xhat, T* mean,
                     T* inv_std, index ld, index rows, index cols, T eps) {
    for_column_groups<T>(cols, [&](index j, auto nv, index wl) {
        batchnorm_train_group<T>(x + j, gamma + j, beta + j, y + j, xhat + j, mean + j,
                                 inv_std + j, ld, rows, wl, eps, nv);
    });
}

template <class T, int NV>
void batchnorm_infer_group(const T* x, const T* gamma, const T* beta, const T* mean,
                           const T* var, T* y, index ld, index rows, index wl, T eps,
                           Int<NV>) {
    const ColGroup<T, NV> g{wl};
    Vec<T> mu[NV], inv[NV], ga[NV], be[NV];
    for (int v = 0; v < NV; ++v) {
        mu[v] = g.ld(mean, v);
        inv[v] = splat<T>(T(1)) / sqrt(g.ld(var, v) + splat<T>(eps));
        ga[v] = g.ld(gamma, v);
        be[v] = g.ld(beta, v);
    }
    for (index i = 0; i < rows; ++i)
        for (int v = 0; v < NV; ++v)  // y may be x: each element is read before it is written
            g.st(y + i * ld, v, ga[v] * ((g.ld(x + i * ld, v) - mu[v]) * inv[v]) + be[v]);
}

template <class T>
void batchnorm_infer(const T* x, const T* gamma, const T* beta, const T* mean, const T* var,
                     T* y, index ld, index rows, index cols, T eps) {
    for_column_groups<T>(cols, [&](index j, auto nv, index wl) {
        batchnorm_infer_group<T>(x + j, gamma + j, beta + j, mean + j, var + j, y + j, ld,
                                 rows, wl, eps, nv);
    });
}

template <class T, int NV>
void batchnorm_backward_group(const T* dy, const T* xhat, const T* gamma, const T* inv_std,
                              T* dx, T* dgamma, T* dbeta, index ld, index rows, index wl,
                              Int<NV>) {
    const ColGroup<T, NV> g{wl};
    const Vec<T> m = splat<T>(T(rows));
    Vec<T> db[NV] = {}, dg[NV] = {}, c[NV];
    for (index i = 0; i < rows; ++i)
        for (int v = 0; v < NV; ++v) {
            const Vec<T> d = g.ld(dy + i * ld, v);
            db[v] += d;
            dg[v] += d * g.ld(xhat + i * ld, v);
        }
    for (int v = 0; v < NV; ++v) {
        g.st(dbeta, v, db[v]);
        g.st(dgamma, v, dg[v]);
        c[v] = (g.ld(gamma, v) * g.ld(inv_std, v)) / m;
    }
    for (index i = 0; i < rows; ++i)
        for (int v = 0; v < NV; ++v) {
            const Vec<T> d = g.ld(dy + i * ld, v), xh = g.ld(xhat + i * ld, v);
            g.st(dx + i * ld, v, c[v] * ((m * d - db[v]) - xh * dg[v]));
        }
}

template <class T>
void batchnorm_backward(const T* dy, const T* xhat, const T* gamma, const T* inv_std, T* dx,
                        T* dgamma, T* dbeta, index ld, index rows, index cols) {
    for_column_groups<T>(cols, [&](index j, auto nv, index wl) {
        batchnorm_backward_group<T>(dy + j, xhat + j, gamma + j, inv_std + j, dx + j,
                                    dgamma + j, dbeta + j, ld, rows, wl, nv);
    });
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
