// Losses from logits, one row (sample) at a time; k = cols outputs.
//
//   softmax cross-entropy  d_j = z_j - max (0 where z_j == max, so a +inf logit gives 0,
//                          not inf - inf), s = sum_j exp(d_j)
//                          loss = sum_{j: y_j != 0} y_j (log s - d_j)
//                          grad = scale * (p_j sum_j y_j - y_j),  p_j = exp(d_j) / s
//   binary cross-entropy   loss = mean_j [l(z, y) + log1p(exp(-|z|))] with
//                          l = max(z, 0) - z y, written max(z, 0) for y = 0 and
//                          max(-z, 0) for y = 1 (the same bits for finite z; the limits
//                          0 and +inf, not NaN, at infinite z)
//                          grad = scale / k * (sigmoid(z) - y)
//   mse                    loss = mean_j (z - y)^2,   grad = scale * 2/k * (z - y)
//   poisson                log link, mu = exp(z): half the Poisson deviance, summed
//                          over the outputs as scikit-learn's poisson_loss,
//                          loss = sum_j [(y log y - y z) - y + mu], y log y - y z
//                          written 0 for y = 0 (xlogy(0, .) = 0, so the term is mu)
//                          grad = scale * (mu - y)
//   row weights w_i        total = sum_i w_i loss_i,  row i's grad with scale * w_i
//   labels (softmax only)  optional: row i's np.argmax of z and of y into labels[2i],
//                          labels[2i + 1] (the fused trainer's accuracy)
//
// Every sum over j uses Sum16, so all ISAs agree bit for bit; rows' losses are added in
// ascending order in double. The outputs (softmax rows, sigmoid, exp) share this code.
// Scalar reference: the NumPy backend (python/fastmlp/backends/numpy.py).
#pragma once
#include "reductions.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <class T> inline Vec<T> part(const T* p, index j, index w, T fill = T(0)) {
    return load_part<T>(p + j, w, fill);
}

// max_j z_j and sum_j exp(d_j) of one row.
template <class T> struct SoftmaxRow { T max, sum_exp; };

// d = z - max, 0 where z == max (an infinite max: no inf - inf); NaN stays NaN.
template <class T> inline Vec<T> shifted(Vec<T> z, Vec<T> vm) {
    return select<T>(z == vm, Vec<T>{}, z - vm);
}

template <class T>
inline SoftmaxRow<T> softmax_row(const T* z, index k) {
    T m = z[0];
    for (index j = 1; j < k; ++j) m = z[j] > m ? z[j] : m;  // a NaN propagates through exp below
    const Vec<T> vm = splat<T>(m);
    return {m, sum16<T>(k, [&](index j, index w) { return exp<T>(shifted<T>(part(z, j, w), vm)); })};
}

template <class T>
inline void softmax_out_row(const T* z, T* p, index k) {
    const SoftmaxRow<T> r = softmax_row(z, k);
    const Vec<T> vm = splat<T>(r.max), vs = splat<T>(r.sum_exp);
    for_lanes<T>(k, [&](index j, index w) {
        store_part<T>(p + j, exp<T>(shifted<T>(part(z, j, w), vm)) / vs, w);
    });
}

template <class T>
T softmax_xent_row(const T* z, const T* y, T* grad, index k, T scale) {
    const SoftmaxRow<T> r = softmax_row(z, k);
    const Vec<T> vm = splat<T>(r.max), log_s = log<T>(splat<T>(r.sum_exp)), zero{};
    const T loss = sum16<T>(k, [&](index j, index w) {
        const Vec<T> yj = part(y, j, w);   // a zero target adds nothing, even at d = -inf
        return select<T>(yj == zero, zero, yj * (log_s - shifted<T>(part(z, j, w), vm)));
    });
    if (grad) {
        const T ysum = sum16<T>(k, [&](index j, index w) { return part(y, j, w); });
        const Vec<T> vs = splat<T>(r.sum_exp);
        const Vec<T> c1 = splat<T>(scale * ysum), c2 = splat<T>(scale);
        for_lanes<T>(k, [&](index j, index w) {
            const Vec<T> p = exp<T>(shifted<T>(part(z, j, w), vm)) / vs;
            store_part<T>(grad + j, p * c1 - part(y, j, w) * c2, w);
        });
    }
    return loss;
}

// Binary cross-entropy's terms l(z, y) + log1p(exp(-|z|)), lane by lane.
template <class T>
inline Vec<T> bce_terms(Vec<T> v, Vec<T> yv) {
    const Vec<T> zero{}, one = splat<T>(1);
    const Vec<T> pos = select<T>(v > zero, v, zero), neg = select<T>(-v > zero, -v, zero);
    const Vec<T> l = select<T>(yv == zero, pos, select<T>(yv == one, neg, pos - v * yv));
    return l + log1p<T>(exp<T>(-abs<T>(v)));
}

template <class T>
T bce_row(const T* z, const T* y, T* grad, index k, T scale) {
    const T sum = sum16<T>(k, [&](index j, index w) { return bce_terms<T>(part(z, j, w), part(y, j, w)); });
    if (grad) {
        const Vec<T> c = splat<T>(scale / T(k));
        for_lanes<T>(k, [&](index j, index w) {
            store_part<T>(grad + j, c * (sigmoid<T>(part(z, j, w)) - part(y, j, w)), w);
        });
    }
    return sum / T(k);
}

template <class T>
T mse_row(const T* z, const T* y, T* grad, index k, T scale) {
    const T sum = sum16<T>(k, [&](index j, index w) {
        const Vec<T> d = part(z, j, w) - part(y, j, w);
        return d * d;
    });
    if (grad) {
        const Vec<T> c = splat<T>(scale * T(2) / T(k));
        for_lanes<T>(k, [&](index j, index w) { store_part<T>(grad + j, c * (part(z, j, w) - part(y, j, w)), w); });
    }
    return sum / T(k);
}

template <class T>
T poisson_row(const T* z, const T* y, T* grad, index k, T scale) {
    const Vec<T> zero{};
    const T sum = sum16<T>(k, [&](index j, index w) {
        const Vec<T> v = part(z, j, w), yv = part(y, j, w, T(1));   // log(1) = 0 in unused lanes
        const Vec<T> xlogy = select<T>(yv == zero, zero, yv * (log<T>(yv) - v));
        return xlogy - yv + exp<T>(v);
    });
    if (grad) {
        const Vec<T> c = splat<T>(scale);
        for_lanes<T>(k, [&](index j, index w) {
            store_part<T>(grad + j, c * (exp<T>(part(z, j, w)) - part(y, j, w)), w);
        });
    }
    return sum;
}

// Binary cross-entropy with one output (k = 1) of rows [i, i + n), n <= W, in one vector:
// each lane is one row's bce_row, the same arithmetic (a one-element Sum16 is 0 + x, then
// / k is / 1), so every row's loss (into `row`) and gradient are bce_row's bits. One
// output per row would leave W - 1 lanes of bce_row's vectors idle.
template <class T>
void bce_single_output_rows(const T* z, const T* y, T* grad, index n, T scale, const T* w, T* row) {
    const Vec<T> zero{}, one = splat<T>(1);
    const Vec<T> v = load_lanes<T>(z, n, T(0)), yv = load_lanes<T>(y, n, T(0));
    store<T>(row, (zero + bce_terms<T>(v, yv)) / one);
    if (grad) {
        const Vec<T> s = w ? splat<T>(scale) * load_lanes<T>(w, n, T(0)) : splat<T>(scale);
        store_lanes<T>(grad, (s / one) * (sigmoid<T>(v) - yv), n);
    }
}

// Sum16's total of one element per partial, lane by lane: partial e holds 0 + element(e)
// for e < k <= 16 and 0 beyond, then the halving (l += l + 8, + 4, + 2, + 1).
template <class T, class Element>
inline Vec<T> sum16_by_lanes(index k, Element element) {
    Vec<T> x[16];
    for (index e = 0; e < 16; ++e) x[e] = e < k ? Vec<T>{} + element(e) : Vec<T>{};
    for (index h = 8; h >= 1; h /= 2)
        for (index j = 0; j < h; ++j) x[j] += x[j + h];
    return x[0];
}

// Columns [0, k) of rows [0, n) (row stride k), n <= W, k <= 16, one row per lane:
// lane r of col[j] is x[r * k + j] (0 for r >= n). W x W blocks transposed in registers,
// each stored whole: col holds 16 vectors, and those from k on are never read.
template <class T>
inline void rows_to_lanes(const T* x, index n, index k, Vec<T>* col) {
    constexpr index W = lanes<T>;
    for (index c0 = 0; c0 < k; c0 += W) {
        const index w = k - c0 < W ? k - c0 : W;
        Vec<T> v[W];
        for (index r = 0; r < W; ++r)
            v[r] = r >= n ? Vec<T>{} : w == W ? load<T>(x + r * k + c0) : load_part<T>(x + r * k + c0, w, T(0));
        transpose<T>(v);
        for (index l = 0; l < W; ++l) col[c0 + l] = v[l];
    }
}

// The inverse: x[r * k + j] = lane r of col[j] for r < n.
template <class T>
inline void lanes_to_rows(const Vec<T>* col, index n, index k, T* x) {
    constexpr index W = lanes<T>;
    for (index c0 = 0; c0 < k; c0 += W) {
        const index w = k - c0 < W ? k - c0 : W;
        Vec<T> v[W];
        for (index l = 0; l < W; ++l) v[l] = l < w ? col[c0 + l] : Vec<T>{};
        transpose<T>(v);
        for (index r = 0; r < n; ++r) {
            if (w == W) store<T>(x + r * k + c0, v[r]);
            else store_part<T>(x + r * k + c0, v[r], w);
        }
    }
}

// The argmax of the rows held one per lane in columns c[0, k), lane by lane.
template <class T>
inline Mask<T> argmax_by_lanes(const Vec<T>* c, index k) {
    Vec<T> top = c[0];
    Mask<T> best{};
    for (index j = 1; j < k; ++j) argmax_take<T>(c[j], j, top, best);
    return best;
}

// softmax_xent_row of rows [0, n), n <= W, k <= 16 outputs, one row per lane: output j of
// every row in one vector (rows_to_lanes), each step softmax_xent_row's with its scalar
// row values in vectors, so every row's loss (into `row`) and gradient are its bits.
// A row alone keeps only a few lanes busy and waits on each step's latency. With labels,
// the rows' argmax of z and y (argmax_take on the columns already in lanes).
template <class T>
void softmax_xent_by_lanes(const T* z, const T* y, T* grad, index n, index k, T scale,
                           const T* w, T* row, std::int64_t* labels) {
    Vec<T> zc[16], yc[16];
    rows_to_lanes<T>(z, n, k, zc);
    rows_to_lanes<T>(y, n, k, yc);
    if (labels) {
        const Mask<T> zl = argmax_by_lanes<T>(zc, k), yl = argmax_by_lanes<T>(yc, k);
        for (index r = 0; r < n; ++r) labels[2 * r] = zl[r], labels[2 * r + 1] = yl[r];
    }
    Vec<T> vm = zc[0];
    for (index j = 1; j < k; ++j) vm = select<T>(zc[j] > vm, zc[j], vm);
    const Vec<T> zero{};
    Vec<T> d[16], e[16];
    for (index j = 0; j < k; ++j) {
        d[j] = shifted<T>(zc[j], vm);
        e[j] = exp<T>(d[j]);
    }
    const Vec<T> vs = sum16_by_lanes<T>(k, [&](index j) { return e[j]; }), log_s = log<T>(vs);
    store<T>(row, sum16_by_lanes<T>(k, [&](index j) {
        return select<T>(yc[j] == zero, zero, yc[j] * (log_s - d[j]));
    }));
    if (!grad) return;
    const Vec<T> s = w ? splat<T>(scale) * load_lanes<T>(w, n, T(0)) : splat<T>(scale);
    const Vec<T> c1 = s * sum16_by_lanes<T>(k, [&](index j) { return yc[j]; });
    Vec<T> g[16];
    for (index j = 0; j < k; ++j) g[j] = (e[j] / vs) * c1 - yc[j] * s;
    lanes_to_rows<T>(g, n, k, grad);
}

// Row weights w (null: unweighted): row i's loss enters as double(w_i) * double(loss_i)
// (exact) and its gradient is taken with scale_i = scale * w_i (one rounding in T), so
// w_i = 1 reproduces the unweighted result bit for bit and w_i = 2 gives exactly twice
// the gradient row. labels (null: none; other losses ignore it): see the top.
template <class T>
double loss_rows(Loss loss, const T* z, const T* y, T* grad, index rows, index k, T scale,
                 const T* w, std::int64_t* labels) {
    const bool single_bce = loss == Loss::binary_cross_entropy && k == 1;
    const bool softmax_lanes = loss == Loss::softmax_cross_entropy && k <= 16;
    if (labels && loss == Loss::softmax_cross_entropy && !softmax_lanes) {
        argmax_rows_strided<T>(z, rows, k, labels, 2);
        argmax_rows_strided<T>(y, rows, k, labels + 1, 2);
    }
    T single_rows[lanes<T>];
    double total = 0;
    for (index i = 0; i < rows; ++i) {
        const T* zi = z + i * k;
        const T* yi = y + i * k;
        T* gi = grad ? grad + i * k : nullptr;
        const T s = w ? scale * w[i] : scale;
        T row = 0;
        if (single_bce || softmax_lanes) {          // W rows at a time
            if (i % lanes<T> == 0) {
                const index n = rows - i < lanes<T> ? rows - i : lanes<T>;
                if (single_bce) bce_single_output_rows(zi, yi, gi, n, scale, w ? w + i : nullptr, single_rows);
                else softmax_xent_by_lanes(zi, yi, gi, n, k, scale, w ? w + i : nullptr, single_rows,
                                           labels ? labels + 2 * i : nullptr);
            }
            row = single_rows[i % lanes<T>];
        } else switch (loss) {
            case Loss::softmax_cross_entropy: row = softmax_xent_row(zi, yi, gi, k, s); break;
            case Loss::binary_cross_entropy: row = bce_row(zi, yi, gi, k, s); break;
            case Loss::mse: row = mse_row(zi, yi, gi, k, s); break;
            case Loss::poisson: row = poisson_row(zi, yi, gi, k, s); break;
        }
        total += w ? double(w[i]) * double(row) : double(row);
    }
    return total;
}

template <class T>
void output_rows(Loss loss, const T* z, T* out, index rows, index k) {
    switch (loss) {
        case Loss::softmax_cross_entropy:
            for (index i = 0; i < rows; ++i) softmax_out_row(z + i * k, out + i * k, k);
            return;
        case Loss::binary_cross_entropy:
            map_lanes<T>(z, out, rows * k, T(0), [](Vec<T> v) { return sigmoid<T>(v); });
            return;
        case Loss::mse:
            map_lanes<T>(z, out, rows * k, T(0), [](Vec<T> v) { return v; });
            return;
        case Loss::poisson:
            map_lanes<T>(z, out, rows * k, T(0), [](Vec<T> v) { return exp<T>(v); });
            return;
    }
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
