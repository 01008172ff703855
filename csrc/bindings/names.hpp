// The names the bindings accept for the core's enums (common.hpp), in enum order, and
// their parser: ValueError naming the kernel and listing the valid names.
#pragma once
#include <cstddef>
#include <string>

#include "../ops.hpp"
#include "arrays.hpp"

namespace fastmlp { namespace bind {

constexpr const char* kActivations[] = {"linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu"};
constexpr const char* kLosses[] = {"softmax_cross_entropy", "binary_cross_entropy", "mse"};
constexpr const char* kMathFns[] = {"exp", "expm1", "log", "log1p", "tanh", "sigmoid"};
constexpr const char* kOptimizers[] = {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"};

template <class E, std::size_t N>
E parse_name(const char* kernel, const char* what, const std::string& name, const char* const (&names)[N]) {
    for (std::size_t i = 0; i < N; ++i)
        if (name == names[i]) return E(i);
    std::string valid;
    for (std::size_t i = 0; i < N; ++i) valid += (i ? ", " : "") + std::string(names[i]);
    fail_value(kernel, "unknown " + std::string(what) + " '" + name + "' (expected one of " + valid + ")");
}

inline Activation activation_of(const char* kernel, const std::string& s) {
    return parse_name<Activation>(kernel, "activation", s, kActivations);
}
inline Loss loss_of(const char* kernel, const std::string& s) { return parse_name<Loss>(kernel, "loss", s, kLosses); }
inline Optimizer optimizer_of(const char* kernel, const std::string& s) {
    return parse_name<Optimizer>(kernel, "optimizer", s, kOptimizers);
}

// The loss and optimizer names in enum order and each optimizer's state (m, v), read
// only: Python checks its registries against them (tests/kernels/test_registries.py).
inline pybind11::dict enum_names() {
    pybind11::list losses, optimizers, state;
    for (const char* name : kLosses) losses.append(name);
    for (std::size_t i = 0; i < sizeof kOptimizers / sizeof kOptimizers[0]; ++i) {
        optimizers.append(kOptimizers[i]);
        state.append(pybind11::make_tuple(uses_m(Optimizer(i)), uses_v(Optimizer(i))));
    }
    pybind11::dict tables;
    tables["losses"] = losses;
    tables["optimizers"] = optimizers;
    tables["optimizer_state"] = state;
    return tables;
}

}}  // namespace fastmlp::bind
