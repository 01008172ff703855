// Optimizer updates, one fused pass in place over flat buffers (parameters p, gradient g,
// state m and v), and the squared gradient norm that serves clipping and the check that
// the gradient is finite before anything is updated. Formulas: docs/conventions.md. The exact
// evaluation order, which the NumPy backend mirrors (hyperparameter combinations such as
// 1 - b1 or lr * weight_decay are computed in double by the caller, trap 10):
//
//   g  = grad_scale * g                                        (global-norm clipping)
//   sgd       p = p - lr * g
//   momentum  m = mu * m - lr * g;                 p = p + m
//   nesterov  m' = mu * m - lr * g;                p = p + (-mu * m + one_plus_mu * m'); m = m'
//   adagrad   v = v + g * g;                       p = p - (lr * g) / (sqrt(v) + eps)
//   rmsprop   v = b2 * v + one_minus_b2 * (g * g); p = p - (lr * g) / (sqrt(v) + eps)
//   adam      m = b1 * m + one_minus_b1 * g;  v = b2 * v + one_minus_b2 * (g * g)
//             p = p - lr * (m / bc1) / (sqrt(v / bc2) + eps),  bc = 1 - b^t
//             or, eps before the correction (scikit-learn's, the paper's section 2 form):
//             p = p - (lr_t * m) / (sqrt(v) + eps),  lr_t = lr * sqrt(bc2) / bc1 in double
//   adamw     p = p - lr_wd * p, then the adam step (lr_wd = lr * weight_decay)
//
// Every new m and v is flushed before anything reads it: an entry whose magnitude is below
// the smallest normal T becomes +0 (NaN and inf stay). A state that decays geometrically
// (Adam's m for a weight whose gradient stays 0) would otherwise fill with subnormals, and
// an operation on one costs about a hundred cycles on many CPUs (docs/conventions.md).
#pragma once
#include <limits>

#include "reductions.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

// The step's constants as vectors, splat once per call: splat is a lane loop, and inside
// the chunk loop the compiler would redo it for every chunk (s may alias p as far as it
// knows, so it reloads the scalars too).
template <class T>
struct StepVecs {
    explicit StepVecs(const OptimizerStep<T>& s)
        : kind(s.kind), lr(splat<T>(s.lr)), eps(splat<T>(s.eps)), grad_scale(splat<T>(s.grad_scale)),
          b1(splat<T>(s.b1)), one_minus_b1(splat<T>(s.one_minus_b1)), one_plus_b1(splat<T>(s.one_plus_b1)),
          b2(splat<T>(s.b2)), one_minus_b2(splat<T>(s.one_minus_b2)), bc1(splat<T>(s.bc1)),
          bc2(splat<T>(s.bc2)), lr_wd(splat<T>(s.lr_wd)), lr_t(splat<T>(s.lr_t)),
          eps_before_correction(s.eps_before_correction) {}
    Optimizer kind;
    Vec<T> lr, eps, grad_scale, b1, one_minus_b1, one_plus_b1, b2, one_minus_b2, bc1, bc2, lr_wd, lr_t;
    bool eps_before_correction;
};

// x, its lanes below the smallest normal T in magnitude set to +0.
template <class T>
inline Vec<T> flush_subnormal(Vec<T> x) {
    return select<T>(abs<T>(x) < splat<T>(std::numeric_limits<T>::min()), Vec<T>{}, x);
}

template <class T>
inline void optimizer_lanes(const StepVecs<T>& s, T* p, const T* g, T* m, T* v, index j, index w) {
    const Vec<T> lr = s.lr, eps = s.eps;
    const Vec<T> gv = s.grad_scale * load_lanes<T>(g + j, w, T(0));
    Vec<T> pv = load_lanes<T>(p + j, w, T(0));
    switch (s.kind) {
        case Optimizer::sgd:
            pv = pv - lr * gv;
            break;
        case Optimizer::momentum: {
            const Vec<T> mv = flush_subnormal<T>(s.b1 * load_lanes<T>(m + j, w, T(0)) - lr * gv);
            pv = pv + mv;
            store_lanes<T>(m + j, mv, w);
            break;
        }
        case Optimizer::nesterov: {
            const Vec<T> prev = load_lanes<T>(m + j, w, T(0));
            const Vec<T> mv = flush_subnormal<T>(s.b1 * prev - lr * gv);
            pv = pv + (-s.b1 * prev + s.one_plus_b1 * mv);
            store_lanes<T>(m + j, mv, w);
            break;
        }
        case Optimizer::adagrad:
        case Optimizer::rmsprop: {
            const Vec<T> old = load_lanes<T>(v + j, w, T(0));
            const Vec<T> vv = flush_subnormal<T>(s.kind == Optimizer::adagrad
                                                     ? old + gv * gv
                                                     : s.b2 * old + s.one_minus_b2 * (gv * gv));
            pv = pv - (lr * gv) / (sqrt(vv) + eps);
            store_lanes<T>(v + j, vv, w);
            break;
        }
        case Optimizer::adam:
        case Optimizer::adamw: {
            if (s.kind == Optimizer::adamw) pv = pv - s.lr_wd * pv;
            const Vec<T> mv = flush_subnormal<T>(s.b1 * load_lanes<T>(m + j, w, T(0)) + s.one_minus_b1 * gv);
            const Vec<T> vv = flush_subnormal<T>(s.b2 * load_lanes<T>(v + j, w, T(0)) + s.one_minus_b2 * (gv * gv));
            pv = pv - (s.eps_before_correction ? (s.lr_t * mv) / (sqrt(vv) + eps)
                                               : lr * (mv / s.bc1) / (sqrt(vv / s.bc2) + eps));
            store_lanes<T>(m + j, mv, w);
            store_lanes<T>(v + j, vv, w);
            break;
        }
    }
    store_lanes<T>(p + j, pv, w);
}

// chunk: one update pass over [0, n).
template <class T>
void optimizer_update(const OptimizerStep<T>& s, T* p, const T* g, T* m, T* v, index n) {
    const StepVecs<T> c(s);
    for_lanes<T>(n, [&](index j, index w) { optimizer_lanes(c, p, g, m, v, j, w); });
}

// chunk: sum of g^2 over [0, n) in the Sum16 order (inf or NaN when g is not finite).
template <class T>
T sum_squares(const T* g, index n) {
    return sum16<T>(n, [&](index j, index w) {
        const Vec<T> x = load_lanes<T>(g + j, w, T(0));
        return x * x;
    });
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
