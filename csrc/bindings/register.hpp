// The binding families of fastmlp._core, one file each; module.cpp calls them. `testing`
// is the fastmlp._core._testing submodule: hooks only the tests call.
#pragma once
#include <pybind11/pybind11.h>

namespace fastmlp { namespace bind {

void register_gemm(pybind11::module_& m, pybind11::module_& testing);          // gemm_bindings.cpp
void register_activations(pybind11::module_& m, pybind11::module_& testing);   // activation_bindings.cpp
void register_losses(pybind11::module_& m, pybind11::module_& testing);        // loss_bindings.cpp
void register_optimizers(pybind11::module_& m, pybind11::module_& testing);    // optimizer_bindings.cpp
void register_layers(pybind11::module_& m);                                    // layer_bindings.cpp
void register_batchnorm(pybind11::module_& m);                                 // batchnorm_bindings.cpp
void register_runtime(pybind11::module_& m, pybind11::module_& testing);       // runtime_bindings.cpp
void register_guards(pybind11::module_& m);                                    // guard_bindings.cpp
void register_train(pybind11::module_& m);                                     // train_bindings.cpp
void register_predictor(pybind11::module_& m);                                 // predictor_bindings.cpp

}}  // namespace fastmlp::bind
