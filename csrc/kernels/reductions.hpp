// Reductions with a fixed order, identical on every ISA and thread count.
//
// Sum16 keeps 16 partial sums, lane l holding the elements whose index is l mod 16, in
// ascending order (16/W vectors on a W-lane ISA), and combines them by halving:
// l += l + 8, then + 4, + 2, + 1. col_sum adds rows in ascending order per column.
#pragma once
#include <cstdint>
#include <type_traits>
#include <utility>

#include "../simd/vec.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <class T>
struct Sum16 {
    static constexpr index W = lanes<T>;
    static constexpr index NV = W >= 16 ? 1 : 16 / W;
    static_assert(W <= 16, "Sum16 assumes at most 16 lanes");
    Vec<T> acc[NV] = {};

    T total() const {
        T l[16];
        for (index v = 0; v < NV; ++v) store<T>(l + v * W, acc[v]);
        for (index h = 8; h >= 1; h /= 2)
            for (index j = 0; j < h; ++j) l[j] += l[j + h];
        return l[0];
    }
};

// The chunk of w <= W lanes at p (for_lanes): a plain vector load or store when the chunk
// is full, load_part/store_part for a tail; the same values either way.
template <class T> inline Vec<T> load_lanes(const T* p, index w, T fill) {
    return w == lanes<T> ? load<T>(p) : load_part<T>(p, w, fill);
}
template <class T> inline void store_lanes(T* p, Vec<T> v, index w) {
    if (w == lanes<T>) store<T>(p, v); else store_part<T>(p, v, w);
}

// Lanes [0, w) set, the rest clear.
template <class T> inline Mask<T> first_lanes(index w) {
    Mask<T> lane;
    for (index l = 0; l < lanes<T>; ++l) lane[l] = l;
    return lane < (Mask<T>{} + int(w));
}

// Visit [0, n) W lanes at a time: f(j, w) handles elements j .. j + w - 1, w <= W.
// Full vectors get the constant W, so that once f is inlined its load_part/store_part
// become plain vector loads and stores instead of variable-length copies.
template <class T, class F>
inline void for_lanes(index n, F f) {
    index j = 0;
    for (; j + lanes<T> <= n; j += lanes<T>) f(j, lanes<T>);
    if (j < n) f(j, n - j);
}

template <class F, index... V>
inline void each_slot(F f, std::integer_sequence<index, V...>) {
    (f(std::integral_constant<index, V>{}), ...);
}

// Visit [0, n) as for_lanes does, f(j, w, slot) with slot = (j / W) mod NV, the Sum16
// partial the chunk adds into, as a constant: NV chunks per pass. (The slot computed at
// run time kept the partials in memory, each add waiting on the store before it: sum of
// squares of 7,510 doubles 2.3 us instead of about 0.5.)
template <class T, class F>
inline void for_sum16_lanes(index n, F f) {
    constexpr index W = lanes<T>, NV = Sum16<T>::NV;
    const auto slots = std::make_integer_sequence<index, NV>{};
    index j = 0;
    for (; j + NV * W <= n; j += NV * W) each_slot([&](auto v) { f(j + v * W, W, v); }, slots);
    each_slot([&](auto v) {
        const index at = j + v * W;
        if (at < n) f(at, n - at < W ? n - at : W, v);
    }, slots);
}

// sum over [0, n) of the vectors f(j, w), in the Sum16 order; lanes >= w are dropped.
template <class T, class F>
inline T sum16(index n, F f) {
    Sum16<T> s;
    for_sum16_lanes<T>(n, [&](index j, index w, auto slot) {
        const Vec<T> v = f(j, w);
        s.acc[slot] += w == lanes<T> ? v : select<T>(first_lanes<T>(w), v, Vec<T>{});
    });
    return s.total();
}

template <class T>
void col_sum(const T* x, index ld, index rows, index cols, T* out) {
    constexpr index W = lanes<T>;
    index j = 0;
    for (; j + 4 * W <= cols; j += 4 * W) {
        Vec<T> a0{}, a1{}, a2{}, a3{};
        for (index i = 0; i < rows; ++i) {
            const T* r = x + i * ld + j;
            a0 += load<T>(r); a1 += load<T>(r + W); a2 += load<T>(r + 2 * W); a3 += load<T>(r + 3 * W);
        }
        store<T>(out + j, a0); store<T>(out + j + W, a1);
        store<T>(out + j + 2 * W, a2); store<T>(out + j + 3 * W, a3);
    }
    for (; j < cols; j += W) {
        const index w = cols - j < W ? cols - j : W;
        Vec<T> a{};
        for (index i = 0; i < rows; ++i) a += load_part<T>(x + i * ld + j, w, T(0));
        store_part<T>(out + j, a, w);
    }
}

// chunk: whether every x in [0, n) is finite: x - x is 0 for a finite x and NaN for NaN
// or an infinity, so the Sum16 total of x - x is 0 exactly when all are finite (no
// overflow: unlike x * x, a huge finite x adds nothing).
template <class T>
bool all_finite(const T* x, index n) {
    return sum16<T>(n, [&](index j, index w) {
        const Vec<T> v = load_lanes<T>(x + j, w, T(0));
        return v - v;
    }) == T(0);
}

// One column of np.argmax along rows kept one row per lane: column j's values v update
// every lane's running (top, best) with
//
//     take = top is not NaN and (v > top or v is NaN);  best = take ? j : best
//
// so each row keeps its first maximum, or its first NaN where it has one (-0 and +0 tie,
// so the first of them wins). Start with top = column 0, best = 0.
template <class T>
inline void argmax_take(Vec<T> v, index j, Vec<T>& top, Mask<T>& best) {
    using Lane = std::remove_reference_t<decltype(best[0])>;
    const Mask<T> take = (top == top) & ((v > top) | (v != v));
    best = select_mask(take, Mask<T>{} + Lane(j), best);
    top = select<T>(take, v, top);
}

// np.argmax(z, axis=1) of a (rows, k) matrix, k >= 1, into out[i * stride]: W rows at a
// time, one per lane (argmax_take): 16 columns of the W rows are transposed into a
// buffer, then each column updates every lane, so the chain of selects of one row runs
// beside the others' (a row alone waits on each compare's latency, and a branch per
// element mispredicts on data).
template <class T>
void argmax_rows_strided(const T* z, index rows, index k, std::int64_t* out, index stride) {
    constexpr index W = lanes<T>, C = 16;
    alignas(64) T zt[C * W];
    for (index i0 = 0; i0 < rows; i0 += W) {
        const index n = rows - i0 < W ? rows - i0 : W;
        const T* zi = z + i0 * k;
        Vec<T> top{};
        Mask<T> best{};
        for (index j0 = 0; j0 < k; j0 += C) {
            const index cols = k - j0 < C ? k - j0 : C;
            for (index j = 0; j < cols; ++j)
                for (index r = 0; r < W; ++r) zt[j * W + r] = r < n ? zi[r * k + j0 + j] : T(0);
            index j = 0;
            if (j0 == 0) top = load<T>(zt), j = 1;
            for (; j < cols; ++j) argmax_take<T>(load<T>(zt + j * W), j0 + j, top, best);
        }
        for (index r = 0; r < n; ++r) out[(i0 + r) * stride] = std::int64_t(best[r]);
    }
}

// out[i] = np.argmax(z[i, :]) (argmax_rows_strided).
template <class T>
void argmax_rows(const T* z, index rows, index k, std::int64_t* out) {
    argmax_rows_strided<T>(z, rows, k, out, 1);
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
