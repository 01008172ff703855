// exp, expm1, log, log1p, tanh and sigmoid: one polynomial implementation, written once
// against the vector wrapper and compiled into every ISA unit, the generic one included.
// Only IEEE +, -, *, / and exact bit manipulation are used (no FMA: -ffp-contract=off),
// so every ISA gives bit-identical results. Accuracy against float64/long double is
// stated in README.md and tested in tests/kernels/test_math.py.
//
// exp/expm1: x = n ln2 + r, |r| <= ln2/2, n = round(x / ln2) with ln2 split into a hi
//   part exact in n*ln2_hi and a lo part; e^r - 1 = r + r^2 (1/2! + r/3! + ... ) by Taylor
//   (degree 7 in float, 13 in double: truncation below 2^-27 / 2^-57 relative);
//   2^n is built in the exponent bits, in two factors so subnormal results and n = 128
//   (float) / 1024 (double) stay exact.
// log: x = 2^e m, m in (sqrt(2)/2, sqrt(2)], f = m - 1, s = f / (2 + f), z = s^2;
//   log(1+f) = f - hfsq + s (hfsq + R(z)), hfsq = f^2/2, R(z) = sum_k 2 z^k / (2k+1)
//   (fdlibm's arrangement with Taylor coefficients, 4 terms in float, 10 in double).
// tanh(x) = sign(x) t / (t + 2), t = expm1(2|x|); 1 for |x| >= 22.
// sigmoid(x) = 1 / (1 + e) for x >= 0, e / (1 + e) otherwise, e = exp(-|x|).
// log1p(u) = u if 1 + u == 1, else log(w) * u / (w - 1), w = 1 + u (Goldberg).
#pragma once
#include <cstdint>

#include "vec.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <class T> struct MathConst;
template <> struct MathConst<float> {
    static constexpr int mant_bits = 23, exp_bias = 127, exp_terms = 7, log_terms = 4;
    static constexpr float exp_max = 88.72283905206835f;   // ln(FLT_MAX): above, +inf
    static constexpr float exp_min = -103.97207708f;       // ln(2^-150): below, 0
    static constexpr float exp_ln2_hi = 0.693359375f, exp_ln2_lo = -2.12194440e-4f;
    static constexpr float log_ln2_hi = 6.9313812256e-01f, log_ln2_lo = 9.0580006145e-06f;
    static constexpr float round_magic = 12582912.0f;      // 1.5 * 2^23
    static constexpr float min_normal = 1.17549435e-38f, subnormal_scale = 33554432.0f;  // 2^25
    static constexpr int subnormal_shift = 25;
};
template <> struct MathConst<double> {
    static constexpr int mant_bits = 52, exp_bias = 1023, exp_terms = 13, log_terms = 10;
    static constexpr double exp_max = 709.782712893384;     // ln(DBL_MAX)
    static constexpr double exp_min = -745.1332191019412;   // ln(2^-1075)
    static constexpr double exp_ln2_hi = 6.93145751953125e-1, exp_ln2_lo = 1.42860682030941723212e-6;
    static constexpr double log_ln2_hi = 6.93147180369123816490e-01, log_ln2_lo = 1.90821492927058770002e-10;
    static constexpr double round_magic = 6755399441055744.0;  // 1.5 * 2^52
    static constexpr double min_normal = 2.2250738585072014e-308, subnormal_scale = 18014398509481984.0;  // 2^54
    static constexpr int subnormal_shift = 54;
};

// 2^n for n in the normal exponent range, from the exponent bits.
template <class T> FASTMLP_VECTOR_INLINE Vec<T> pow2(Mask<T> n) {
    using C = MathConst<T>;
    return from_bits<T>((n + C::exp_bias) << C::mant_bits);
}

// Shared by exp and expm1: x (already clamped) = n ln2 + r; returns e^r - 1, sets n.
template <class T> FASTMLP_VECTOR_INLINE Vec<T> exp_reduce(Vec<T> x, Mask<T>& n) {
    using C = MathConst<T>;
    const Vec<T> magic = splat<T>(C::round_magic);
    const Vec<T> nf = (x * splat<T>(T(1.4426950408889634)) + magic) - magic;
    n = __builtin_convertvector(nf, Mask<T>);
    const Vec<T> r = (x - nf * splat<T>(C::exp_ln2_hi)) - nf * splat<T>(C::exp_ln2_lo);
    // Horner from the highest Taylor term 1/d! down to 1/2!.
    T coef = 1;
    for (int k = 2; k <= C::exp_terms; ++k) coef /= T(k);
    Vec<T> p = splat<T>(coef);
    for (int k = C::exp_terms; k > 2; --k) {
        coef *= T(k);
        p = p * r + splat<T>(coef);
    }
    return r + (r * r) * p;
}

// Clamp x into [lo, hi] without touching NaN (a comparison with NaN is false).
template <class T> FASTMLP_VECTOR_INLINE Vec<T> clamp_keep_nan(Vec<T> x, T lo, T hi) {
    x = select<T>(x > splat<T>(hi), splat<T>(hi), x);
    return select<T>(x < splat<T>(lo), splat<T>(lo), x);
}

template <class T> FASTMLP_VECTOR_INLINE Vec<T> exp(Vec<T> x) {
    using C = MathConst<T>;
    const Vec<T> nan_free = select<T>(x == x, x, splat<T>(0));
    Mask<T> n;
    const Vec<T> em = exp_reduce<T>(clamp_keep_nan<T>(nan_free, C::exp_min, C::exp_max), n);
    const Mask<T> n1 = n >> 1;
    Vec<T> y = ((splat<T>(1) + em) * pow2<T>(n1)) * pow2<T>(n - n1);
    y = select<T>(x > splat<T>(C::exp_max), splat<T>(__builtin_huge_val()), y);
    y = select<T>(x < splat<T>(C::exp_min), splat<T>(0), y);
    return select<T>(x == x, y, x);
}

template <class T> FASTMLP_VECTOR_INLINE Vec<T> expm1(Vec<T> x) {
    using C = MathConst<T>;
    const Vec<T> nan_free = select<T>(x == x, x, splat<T>(0));
    Mask<T> n;
    const Vec<T> em = exp_reduce<T>(clamp_keep_nan<T>(nan_free, C::exp_min, C::exp_max), n);
    const Mask<T> n1 = n >> 1;
    const Vec<T> s1 = pow2<T>(n1), s2 = pow2<T>(n - n1);
    const Vec<T> scale = s1 * s2;                                  // 2^n, exact or 0
    const Vec<T> near = (em * s1) * s2 + (scale - splat<T>(1));    // 2^n em + (2^n - 1)
    const Vec<T> far = ((splat<T>(1) + em) * s1) * s2 - splat<T>(1);  // e^x - 1, 2^n >> 1
    Vec<T> y = select<T>(n > C::mant_bits + 1, far, near);
    y = select<T>(x > splat<T>(C::exp_max), splat<T>(__builtin_huge_val()), y);
    y = select<T>(x < splat<T>(C::exp_min), splat<T>(-1), y);
    y = select<T>(x == splat<T>(0), x, y);  // expm1(-0) = -0 (the reduction yields +0)
    return select<T>(x == x, y, x);
}

template <class T> FASTMLP_VECTOR_INLINE Vec<T> log(Vec<T> x) {
    using C = MathConst<T>;
    // Subnormals: scale into the normal range first.
    const Mask<T> tiny = x < splat<T>(C::min_normal);
    const Vec<T> xs = select<T>(tiny, x * splat<T>(C::subnormal_scale), x);
    const Mask<T> xb = bits<T>(xs);
    const Mask<T> mant_mask = ((Mask<T>{} + 1) << C::mant_bits) - 1;
    Mask<T> e = ((xb >> C::mant_bits) & (2 * C::exp_bias + 1)) - C::exp_bias;
    e = select_mask(tiny, e - C::subnormal_shift, e);
    Vec<T> m = from_bits<T>((xb & mant_mask) | (Mask<T>{} + C::exp_bias) << C::mant_bits);  // [1, 2)
    const Mask<T> big = m > splat<T>(T(1.4142135623730951));
    m = select<T>(big, m * splat<T>(T(0.5)), m);
    e = select_mask(big, e + 1, e);
    const Vec<T> f = m - splat<T>(1);
    const Vec<T> s = f / (splat<T>(2) + f);
    const Vec<T> z = s * s;
    Vec<T> r = splat<T>(T(2) / T(2 * C::log_terms + 1));
    for (int k = C::log_terms - 1; k >= 1; --k) r = r * z + splat<T>(T(2) / T(2 * k + 1));
    r = r * z;
    const Vec<T> hfsq = splat<T>(T(0.5)) * f * f;
    const Vec<T> dk = __builtin_convertvector(e, Vec<T>);
    Vec<T> y = dk * splat<T>(C::log_ln2_hi) -
               ((hfsq - (s * (hfsq + r) + dk * splat<T>(C::log_ln2_lo))) - f);
    const Vec<T> inf = splat<T>(__builtin_huge_val());
    y = select<T>(x == splat<T>(0), -inf, y);
    y = select<T>(x == inf, inf, y);
    return select<T>((x < splat<T>(0)) | (x != x), splat<T>(__builtin_nan("")), y);
}

template <class T> FASTMLP_VECTOR_INLINE Vec<T> log1p(Vec<T> u) {
    const Vec<T> w = splat<T>(1) + u;
    const Vec<T> y = select<T>(w == splat<T>(1), u, log<T>(w) * (u / (w - splat<T>(1))));
    return select<T>(u == splat<T>(__builtin_huge_val()), u, y);
}

template <class T> FASTMLP_VECTOR_INLINE Vec<T> tanh(Vec<T> x) {
    const Vec<T> ax = abs<T>(x);
    const Vec<T> t = expm1<T>(splat<T>(2) * select<T>(ax < splat<T>(22), ax, splat<T>(0)));
    const Vec<T> y = select<T>(ax < splat<T>(22), t / (t + splat<T>(2)), splat<T>(1));
    return select<T>(x == x, copysign<T>(y, x), x);
}

template <class T> FASTMLP_VECTOR_INLINE Vec<T> sigmoid(Vec<T> x) {
    const Vec<T> e = exp<T>(-abs<T>(x));
    const Vec<T> one = splat<T>(1);
    return select<T>(x >= splat<T>(0), one / (one + e), e / (one + e));
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
