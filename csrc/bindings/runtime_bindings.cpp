// fastmlp._core's settings: the SIMD level (set_isa, backend_info) and the thread count
// (parallel.hpp). _testing.last_team_size: how many threads the latest parallel region
// ran, last_gemm_k_groups: over how many K groups the latest GEMM split its K blocks, and
// set_grain_override: every kernel's grain replaced, for the tests of the thread policy;
// last_gemm_direct / set_gemm_direct_override: which operands the latest GEMM read in
// place, and forcing that on or off (gemm.hpp, "Direct B"); fused_act_backwards: how many
// GEMMs ran with the activation's backward in their epilogue (the fused trainer's);
// outputs_only_layers: how many layers fused trainers made keep their activations alone;
// emulate_amx: the amx level's products on emulated tiles (dispatch.hpp).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "../cpu_features.hpp"
#include "../dispatch.hpp"
#include "../parallel.hpp"
#include "names.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace fastmlp { namespace bind {

namespace {

std::vector<std::string> isa_list(bool (*pred)(Isa)) {
    std::vector<std::string> out;
    for (int i = 0; i < kIsaCount; ++i)
        if (pred(Isa(i))) out.push_back(isa_name(Isa(i)));
    return out;
}

std::string set_isa_binding(const std::string& name) {
    Isa isa = best_isa();
    if (name != "auto" && !parse_isa(name.c_str(), isa))
        throw py::value_error("set_isa: unknown ISA '" + name + "' (expected generic, avx2, avx512, avx512_bf16, amx or auto)");
    try {
        select_isa(isa);
    } catch (const std::invalid_argument& e) {
        throw py::value_error(std::string("set_isa: ") + e.what());
    }
    return isa_name(active_isa());
}

py::dict backend_info() {
    py::dict d;
    d["version"] = FASTMLP_VERSION;
    d["compiled_isas"] = isa_list(&isa_compiled);
    d["supported_isas"] = isa_list(&cpu_supports);
    d["usable_isas"] = isa_list(&isa_usable);
    d["isa"] = isa_name(active_isa());
    d["amx_emulated"] = amx_emulated();
    d["threads"] = num_threads();
    d["openmp"] = openmp_enabled();
    d["serial_after_fork"] = serial_after_fork();
    return d;
}

}  // namespace

void register_runtime(py::module_& m, py::module_& testing) {
    using py::arg;
    m.def("set_isa", &set_isa_binding, arg("name"));
    m.def("backend_info", &backend_info);
    m.def("enum_names", &enum_names);
    m.def("set_num_threads", &set_num_threads, arg("n"));
    m.def("get_num_threads", &num_threads);
    m.def("push_threads", &push_threads, arg("n"));
    m.def("pop_threads", &pop_threads, arg("previous"));
    testing.def("last_team_size", &last_team_size);
    testing.def("last_gemm_k_groups", &last_gemm_k_groups);
    testing.def("parallel_regions", &parallel_regions);
    testing.def("set_grain_override", &set_grain_override, arg("grain"));
    testing.def("last_gemm_direct", &last_gemm_direct);
    testing.def("set_gemm_direct_override", &set_gemm_direct_override, arg("mode"));
    testing.def("fused_act_backwards", &fused_act_backwards);
    testing.def("outputs_only_layers", &outputs_only_layers);
    testing.def("emulate_amx", [](bool on) {
        try {
            emulate_amx(on);
        } catch (const std::invalid_argument& e) {
            throw py::value_error(std::string("emulate_amx: ") + e.what());
        }
    }, arg("on"));
}

}}  // namespace fastmlp::bind
