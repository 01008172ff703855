// The parser of the names the bindings accept for the core's enums (their tables sit beside
// the enums in common.hpp): ValueError naming the kernel and listing the valid names.
#pragma once
#include <cstddef>
#include <string>

#include "../ops.hpp"
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
inline OpCode op_code_of(const char* kernel, const std::string& s) {
    return parse_name<OpCode>(kernel, "op code", s, kOpCodeNames);
}
inline Optimizer optimizer_of(const char* kernel, const std::string& s) {
    return parse_name<Optimizer>(kernel, "optimizer", s, kOptimizerNames);
}

// The names of the core's enums in enum order (losses, optimizers, activations, plan op
// codes) and each
// optimizer's state (m, v), read only: Python checks its registries against them
// (tests/kernels/test_registries.py, tests/api/test_activation_registry.py).
inline pybind11::dict enum_names() {
    pybind11::list losses, optimizers, state, activations, op_codes;
    for (const char* name : kLossNames) losses.append(name);
    for (std::size_t i = 0; i < sizeof kOptimizerNames / sizeof kOptimizerNames[0]; ++i) {
        optimizers.append(kOptimizerNames[i]);
        state.append(pybind11::make_tuple(uses_m(Optimizer(i)), uses_v(Optimizer(i))));
    }
    for (const char* name : kActivationNames) activations.append(name);
    for (const char* name : kOpCodeNames) op_codes.append(name);
    pybind11::dict tables;
    tables["losses"] = losses;
    tables["optimizers"] = optimizers;
    tables["optimizer_state"] = state;
    tables["activations"] = activations;
    tables["op_codes"] = op_codes;
    return tables;
}

}}  // namespace fastmlp::bind
