// Activations: forward fused with the bias add, and backward.
//
//   forward   z[i, :] += b;  a = act(z)
//   backward  dz = da * act'(z)
//     sigmoid   a (1 - a)         tanh   1 - a^2
//     relu      z > 0 ? 1 : 0     leaky  z > 0 ? 1 : slope     elu  z > 0 ? 1 : a + alpha
//     gelu      s + 2 z s (1 - s) u'(z)     s = sigmoid(2u), u = sqrt(2/pi) (z + 0.044715 z^3)
//     silu      s + z s (1 - s)             s = sigmoid(z)
//     softplus  sigmoid(z)    softplus(z) = max(z, 0) + log1p(e^-|z|)
//   Kinks take the left branch at exactly 0 (docs/conventions.md). Every select is written so a
//   NaN input gives a NaN output: relu(z) = z < 0 ? 0 : z keeps NaN, a max() would not.
//   gelu(z) = 0.5 z (1 + tanh(u)) is computed as z sigmoid(2u) (the same function, without
//   the cancellation of 1 + tanh(u) for z < 0), with u of z clamped to [-30, 30], where
//   sigmoid(2u) is already exactly 0 or 1 in both dtypes (no overflow of z^3). 1 - s is
//   sigmoid(-x), not 1 - s, so it keeps its relative accuracy as s nears 1. At -inf, gelu
//   and silu give their limit -0 (z * s would be -inf * 0).
//
// Scalar reference: the NumPy backend (python/fastmlp/backends/numpy.py).
#pragma once
#include <type_traits>

#include "../simd/math.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

// s = sigmoid(x) and sc = sigmoid(-x) = 1 - s, each as math.hpp's sigmoid computes it.
template <class T>
FASTMLP_VECTOR_INLINE void sigmoid_pair(Vec<T> x, Vec<T>& s, Vec<T>& sc) {
    const Vec<T> e = exp<T>(-abs<T>(x)), one = splat<T>(1);
    const Vec<T> big = one / (one + e), small = e / (one + e);
    const auto positive = x >= splat<T>(0);
    s = select<T>(positive, big, small);
    sc = select<T>(positive, small, big);
}

// GELU's 2u(z) and u'(z) for z clamped to [-30, 30] (NaN kept).
template <class T>
FASTMLP_VECTOR_INLINE Vec<T> gelu_2u(Vec<T> z, Vec<T>* du) {
    const T k0 = T(0.7978845608028654), k1 = T(0.044715);  // sqrt(2/pi), the cubic's weight
    const Vec<T> zc = clamp_keep_nan<T>(z, T(-30), T(30));
    const Vec<T> z2 = zc * zc;
    if (du) *du = splat<T>(k0) * (splat<T>(1) + splat<T>(3 * k1) * z2);
    return splat<T>(2 * k0) * (zc + splat<T>(k1) * (z2 * zc));
}

// z * s, with s = 0 giving -0 (the limit at -inf; a finite z gives -0 there anyway).
template <class T>
FASTMLP_VECTOR_INLINE Vec<T> times_gate(Vec<T> z, Vec<T> s) {
    return select<T>(s == Vec<T>{}, splat<T>(T(-0.0)), z) * s;
}

template <class T>
FASTMLP_VECTOR_INLINE Vec<T> activate(Activation act, Vec<T> z, T param) {
    const Vec<T> zero{};
    Vec<T> s, sc;
    switch (act) {
        case Activation::sigmoid: return sigmoid<T>(z);
        case Activation::tanh: return tanh<T>(z);
        case Activation::relu: return select<T>(z < zero, zero, z);
        case Activation::leaky_relu: return select<T>(z < zero, splat<T>(param) * z, z);
        case Activation::elu: return select<T>(z < zero, splat<T>(param) * expm1<T>(z), z);
        case Activation::gelu: sigmoid_pair<T>(gelu_2u<T>(z, nullptr), s, sc); return times_gate<T>(z, s);
        case Activation::silu: return times_gate<T>(z, sigmoid<T>(z));
        case Activation::softplus: return select<T>(z < zero, zero, z) + log1p<T>(exp<T>(-abs<T>(z)));
        case Activation::linear: break;
    }
    return z;
}

template <class T>
FASTMLP_VECTOR_INLINE Vec<T> derivative(Activation act, Vec<T> z, Vec<T> a, T param) {
    const Vec<T> zero{}, one = splat<T>(1);
    Vec<T> s, sc, du;
    switch (act) {
        case Activation::sigmoid: return a * (one - a);
        case Activation::tanh: return one - a * a;
        // NaN in z gives NaN (z == z is false only for NaN): the kink select would drop it.
        case Activation::relu: return select<T>(z == z, select<T>(z > zero, one, zero), z);
        case Activation::leaky_relu: return select<T>(z == z, select<T>(z > zero, one, splat<T>(param)), z);
        case Activation::elu: return select<T>(z > zero, one, a + splat<T>(param));
        // z enters clamped where s (1 - s) is already exactly 0 (gelu: [-30, 30]; silu:
        // [-800, 800], past exp's underflow in both dtypes), so +-inf give 1 and 0
        case Activation::gelu: {
            sigmoid_pair<T>(gelu_2u<T>(z, &du), s, sc);
            const Vec<T> zc = clamp_keep_nan<T>(z, T(-30), T(30));
            return s + splat<T>(2) * zc * (s * sc) * du;
        }
        case Activation::silu: {
            sigmoid_pair<T>(z, s, sc);
            return s + clamp_keep_nan<T>(z, T(-800), T(800)) * (s * sc);
        }
        case Activation::softplus: return sigmoid<T>(z);
        case Activation::linear: break;
    }
    return one;
}

// Whether act's derivative is a select or a product of z or a, without exp: cheap enough
// for the GEMM to inline into every microkernel (gemm_microkernel.hpp, the backward epilogue).
constexpr bool cheap_derivative(Activation act) {
    return act != Activation::gelu && act != Activation::silu && act != Activation::softplus;
}

// f(std::integral_constant<Activation, A>{}) for A = act: the loop f runs is compiled
// once per activation, so activate and derivative fold to straight-line code inside it
// instead of a switch per vector (relu's backward then reads neither a nor a jump table).
template <class F>
FASTMLP_VECTOR_INLINE void with_activation(Activation act, F&& f) {
    using A = Activation;
    switch (act) {
        case A::linear: return f(std::integral_constant<A, A::linear>{});
        case A::sigmoid: return f(std::integral_constant<A, A::sigmoid>{});
        case A::tanh: return f(std::integral_constant<A, A::tanh>{});
        case A::relu: return f(std::integral_constant<A, A::relu>{});
        case A::leaky_relu: return f(std::integral_constant<A, A::leaky_relu>{});
        case A::elu: return f(std::integral_constant<A, A::elu>{});
        case A::gelu: return f(std::integral_constant<A, A::gelu>{});
        case A::silu: return f(std::integral_constant<A, A::silu>{});
        case A::softplus: return f(std::integral_constant<A, A::softplus>{});
    }
}

template <class T>
void bias_act_forward(const T* bias, T* z, T* a, index rows, index cols, Activation act,
                      T param) {
    constexpr index W = lanes<T>;
    with_activation(act, [&](auto kind) {
        for (index i = 0; i < rows; ++i) {
            T* zr = z + i * cols;
            T* ar = a + i * cols;
            index j = 0;
            for (; j + W <= cols; j += W) {
                const Vec<T> v = load<T>(zr + j) + load<T>(bias + j);
                store<T>(zr + j, v);
                store<T>(ar + j, activate<T>(kind, v, param));
            }
            if (j < cols) {
                const index w = cols - j;
                const Vec<T> v = load_part<T>(zr + j, w, T(0)) + load_part<T>(bias + j, w, T(0));
                store_part<T>(zr + j, v, w);
                store_part<T>(ar + j, activate<T>(kind, v, param), w);
            }
        }
    });
}

// Rows [0, rows) x columns [0, cols) of dz = da * act'(z) (a = act(z)), each array with
// its own row stride (z and a share one). The one definition of the backward's arithmetic:
// act_backward is its one-row case, and the GEMM's fused backward epilogue
// (gemm_microkernel.hpp) runs it on a finished tile of C (da, rounded to T); the lanes are
// independent, so where a row is cut into vectors (or rows stored back to back are taken
// as one) does not change a bit. dz may be da.
template <class T>
void act_backward_rows(const T* z, const T* a, index ldz, const T* da, index ldda, T* dz, index lddz,
                       index rows, index cols, Activation act, T param) {
    constexpr index W = lanes<T>;
    if (rows > 1 && ldz == cols && ldda == cols && lddz == cols) {   // contiguous rows: one row
        cols *= rows;
        rows = 1;
    }
    with_activation(act, [&](auto kind) {
        for (index r = 0; r < rows; ++r) {
            const T* zr = z + r * ldz;
            const T* ar = a + r * ldz;
            const T* dar = da + r * ldda;
            T* dzr = dz + r * lddz;
            index i = 0;
            for (; i + W <= cols; i += W)
                store<T>(dzr + i, load<T>(dar + i) * derivative<T>(kind, load<T>(zr + i), load<T>(ar + i), param));
            if (i < cols) {
                const index w = cols - i;
                const Vec<T> d = derivative<T>(kind, load_part<T>(zr + i, w, T(0)), load_part<T>(ar + i, w, T(0)), param);
                store_part<T>(dzr + i, load_part<T>(dar + i, w, T(0)) * d, w);
            }
        }
    });
}

template <class T>
void act_backward(const T* z, const T* a, const T* da, T* dz, index n, Activation act, T param) {
    act_backward_rows<T>(z, a, n, da, n, dz, n, 1, n, act, param);
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
