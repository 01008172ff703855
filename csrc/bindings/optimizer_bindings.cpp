// fastmlp._core.optimizer_update, sum_squares (the gradient norm for clipping) and
// regularize (a weight penalty's gradient) (ops.hpp). _testing.sgd_update: plain SGD,
// the tests' smallest parallel elementwise call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "../ops.hpp"
#include "arrays.hpp"
#include "names.hpp"
#include "register.hpp"

namespace fastmlp { namespace bind {

namespace {

constexpr const char* kUpdate = "optimizer_update";

// The optimizer's state array `name` (m or v) shaped as param, or null when the optimizer
// keeps no such state.
template <class T>
T* state_array(const py::object& obj, bool needed, const py::array& param, const char* name) {
    if (!needed) return nullptr;
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(kUpdate) + ": " + name + " must be a numpy array for this optimizer");
    py::array a = obj.cast<py::array>();
    T* p = output<T>(a, kUpdate, name, 1);
    same_shape(kUpdate, param, "param", a, name);
    no_overlap(kUpdate, a, name, param, "param");
    return p;
}

void optimizer_binding(const std::string& name, py::array p, py::array g, py::object m, py::object v,
                       double lr, double grad_scale, double b1, double b2, double eps, double weight_decay,
                       long long step, bool eps_before_correction) {
    const char* k = kUpdate;
    const Optimizer kind = optimizer_of(k, name);
    if (step < 1) fail_value(k, "step must be >= 1, got " + std::to_string(step));
    with_dtype(p, k, "param", [&](auto tag) {
        using T = decltype(tag);
        T* pp = output<T>(p, k, "param", 1);
        const T* pg = input<T>(g, k, "grad", 1);
        same_shape(k, p, "param", g, "grad");
        no_overlap(k, p, "param", g, "grad");
        T* pm = state_array<T>(m, uses_m(kind), p, "m");
        T* pv = state_array<T>(v, uses_v(kind), p, "v");
        if (pm && pv && pm == pv) fail_value(k, "m and v must be different arrays");
        const OptimizerHyper h{kind, lr, grad_scale, b1, b2, eps, weight_decay, step, eps_before_correction};
        py::gil_scoped_release nogil;
        optimizer_update<T>(h, pp, pg, pm, pv, p.size());
    });
}

void sgd_binding(py::array p, py::array g, double lr) {
    optimizer_binding("sgd", p, g, py::none(), py::none(), lr, 1.0, 0.0, 0.0, 0.0, 0.0, 1, false);
}

// kernel(x, n) over the flat array x of either dtype, without the GIL (the reductions).
template <class Kernel>
auto flat_reduction(const py::array& x, const char* k, Kernel kernel) {
    return with_dtype(x, k, "x", [&](auto tag) {
        using T = decltype(tag);
        const T* px = input<T>(x, k, "x", 1);
        py::gil_scoped_release nogil;
        return kernel(px, x.size());
    });
}

bool all_finite_binding(py::array x) {
    return flat_reduction(x, "all_finite", [](const auto* p, index n) { return all_finite(p, n); });
}

double sum_squares_binding(py::array x) {
    return flat_reduction(x, "sum_squares", [](const auto* p, index n) { return sum_squares(p, n); });
}

double regularize_binding(py::array w, py::array dw, double l1, double l2) {
    const char* k = "regularize";
    return with_dtype(w, k, "w", [&](auto tag) {
        using T = decltype(tag);
        const T* pw = input<T>(w, k, "w", 1);
        T* pdw = output<T>(dw, k, "dw", 1);
        same_shape(k, w, "w", dw, "dw");
        no_overlap(k, dw, "dw", w, "w");
        py::gil_scoped_release nogil;
        return regularize<T>(pw, pdw, w.size(), l1, l2);
    });
}

}  // namespace

void register_optimizers(py::module_& m, py::module_& testing) {
    using py::arg;
    m.def("optimizer_update", &optimizer_binding, arg("name"), arg("param").noconvert(), arg("grad").noconvert(),
          arg("m"), arg("v"), arg("lr"), arg("grad_scale") = 1.0, arg("b1") = 0.0, arg("b2") = 0.0,
          arg("eps") = 0.0, arg("weight_decay") = 0.0, arg("step") = 1,
          arg("eps_before_correction") = false);
    m.def("sum_squares", &sum_squares_binding, arg("x").noconvert());
    m.def("all_finite", &all_finite_binding, arg("x").noconvert());
    m.def("regularize", &regularize_binding, arg("w").noconvert(), arg("dw").noconvert(), arg("l1"), arg("l2"));
    testing.def("sgd_update", &sgd_binding, arg("param").noconvert(), arg("grad").noconvert(), arg("lr"));
}

}}  // namespace fastmlp::bind
