// The parser of the names the bindings accept for the core's enums (their tables sit beside
// the enums in common.hpp): ValueError naming the kernel and listing the valid names.
#pragma once
#include <cstddef>
#include <string>

#include "arrays.hpp"

namespace fastmlp { namespace bind {

template <class E, std::size_t N>
E parse_name(const char* kernel, const char* what, const std::string& name, const char* const (&names)[N]) {
    for (std::size_t i = 0; i < N; ++i)
        if (name == names[i]) return E(i);
    std::string valid;
    for (std::size_t i = 0; i < N; ++i) valid += (i ? ", " : "") + std::string(names[i]);
    fail_value(kernel, "unknown " + std::string(what) + " '" + name + "' (expected one of " + valid + ")");
}

inline Activation activation_of(const char* kernel, const std::string& s) {
    return parse_name<Activation>(kernel, "activation", s, kActivationNames);
}
inline Loss loss_of(const char* kernel, const std::string& s) { return parse_name<Loss>(kernel, "loss", s, kLossNames); }
inline Optimizer optimizer_of(const char* kernel, const std::string& s) {
    return parse_name<Optimizer>(kernel, "optimizer", s, kOptimizerNames);
}

template <std::size_t N>
py::tuple names_tuple(const char* const (&names)[N]) {
    py::tuple t(N);
    for (std::size_t i = 0; i < N; ++i) t[i] = names[i];
    return t;
}

// {"activation": names, "loss": ..., "math": ..., "optimizer": ...}, each in enum order.
inline py::dict enum_names() {
    py::dict d;
    d["activation"] = names_tuple(kActivationNames);
    d["loss"] = names_tuple(kLossNames);
    d["math"] = names_tuple(kMathFnNames);
    d["optimizer"] = names_tuple(kOptimizerNames);
    return d;
}

}}  // namespace fastmlp::bind
