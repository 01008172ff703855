// Activations: forward fused with the bias add, and backward.
//
//   forward   z[i, :] += b;  a = act(z)
//   backward  dz = da * act'(z)
//     sigmoid   a (1 - a)         tanh   1 - a^2
//     relu      z > 0 ? 1 : 0     leaky  z > 0 ? 1 : slope     elu  z > 0 ? 1 : a + alpha
//   Kinks take the left branch at exactly 0 (docs/conventions.md). Every select is written so a
//   NaN input gives a NaN output: relu(z) = z < 0 ? 0 : z keeps NaN, a max() would not.
//
// Scalar reference: the NumPy backend (python/fastmlp/backends/numpy.py).
#pragma once
#include "../simd/math.hpp"

namespace fastmlp { namespace FASTMLP_ISA_NS { namespace {

template <class T>
inline Vec<T> activate(Activation act, Vec<T> z, T param) {
    const Vec<T> zero{};
    switch (act) {
        case Activation::sigmoid: return sigmoid<T>(z);
        case Activation::tanh: return tanh<T>(z);
        case Activation::relu: return select<T>(z < zero, zero, z);
        case Activation::leaky_relu: return select<T>(z < zero, splat<T>(param) * z, z);
        case Activation::elu: return select<T>(z < zero, splat<T>(param) * expm1<T>(z), z);
        case Activation::linear: break;
    }
    return z;
}

template <class T>
inline Vec<T> derivative(Activation act, Vec<T> z, Vec<T> a, T param) {
    const Vec<T> zero{}, one = splat<T>(1);
    switch (act) {
        case Activation::sigmoid: return a * (one - a);
        case Activation::tanh: return one - a * a;
        // NaN in z gives NaN (z == z is false only for NaN): the kink select would drop it.
        case Activation::relu: return select<T>(z == z, select<T>(z > zero, one, zero), z);
        case Activation::leaky_relu: return select<T>(z == z, select<T>(z > zero, one, splat<T>(param)), z);
        case Activation::elu: return select<T>(z > zero, one, a + splat<T>(param));
        case Activation::linear: break;
    }
    return one;
}

template <class T>
void bias_act_forward(const T* bias, T* z, T* a, index rows, index cols, Activation act,
                      T param) {
    constexpr index W = lanes<T>;
    for (index i = 0; i < rows; ++i) {
        T* zr = z + i * cols;
        T* ar = a + i * cols;
        index j = 0;
        for (; j + W <= cols; j += W) {
            const Vec<T> v = load<T>(zr + j) + load<T>(bias + j);
            store<T>(zr + j, v);
            store<T>(ar + j, activate<T>(act, v, param));
        }
        if (j < cols) {
            const index w = cols - j;
            const Vec<T> v = load_part<T>(zr + j, w, T(0)) + load_part<T>(bias + j, w, T(0));
            store_part<T>(zr + j, v, w);
            store_part<T>(ar + j, activate<T>(act, v, param), w);
        }
    }
}

template <class T>
void act_backward(const T* z, const T* a, const T* da, T* dz, index n, Activation act,
                  T param) {
    constexpr index W = lanes<T>;
    index i = 0;
    for (; i + W <= n; i += W)
        store<T>(dz + i, load<T>(da + i) * derivative<T>(act, load<T>(z + i), load<T>(a + i), param));
    if (i < n) {
        const index w = n - i;
        const Vec<T> d = derivative<T>(act, load_part<T>(z + i, w, T(0)), load_part<T>(a + i, w, T(0)), param);
        store_part<T>(dz + i, load_part<T>(da + i, w, T(0)) * d, w);
    }
}

}}}  // namespace fastmlp::FASTMLP_ISA_NS::(anonymous)
