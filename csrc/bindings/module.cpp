// fastmlp._core: the only pybind11 module. Each binding family (register.hpp) checks and
// views its arrays (arrays.hpp), releases the GIL and calls the dispatched kernel
// (ops.hpp) or the fused paths (train/). No math, no defaults beyond the Python
// signature, no allocation policy, no value checks: those are Python's or the kernels'.
#include <pybind11/pybind11.h>

#include "../dispatch.hpp"
#include "register.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_core, m) {
    using namespace fastmlp::bind;
    m.doc() = "fastmlp's C++ kernels; use them through fastmlp.backends.native";
    fastmlp::init_dispatch();
    py::module_ testing = m.def_submodule("_testing", "Hooks only the tests call (fastmlp.backends.native.testing)");
    register_gemm(m, testing);
    register_activations(m, testing);
    register_losses(m, testing);
    register_optimizers(m, testing);
    register_layers(m);
    register_batchnorm(m);
    register_runtime(m, testing);
    register_guards(m);
    register_train(m);
    register_predictor(m);
}
