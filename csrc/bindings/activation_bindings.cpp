// fastmlp._core.bias_act_forward, act_backward and col_sum (ops.hpp): a Dense layer's
// elementwise work outside the fused GEMM. _testing.math: the polynomial transcendentals
// the activations and losses are built from, for the tests of their accuracy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "../ops.hpp"
#include "arrays.hpp"
#include "names.hpp"
#include "register.hpp"

namespace fastmlp { namespace bind {

namespace {

void bias_act_binding(py::array z, py::array bias, py::array a, const std::string& act, double param) {
    const char* k = "bias_act_forward";
    const Activation f = activation_of(k, act);
    with_dtype(z, k, "z", [&](auto tag) {
        using T = decltype(tag);
        T* pz = output<T>(z, k, "z", 2);
        const T* pb = input<T>(bias, k, "bias", 1);
        T* pa = output<T>(a, k, "a", 2);
        same_shape(k, z, "z", a, "a");
        if (bias.shape(0) != z.shape(1))
            fail_value(k, "shape mismatch: bias is " + shape_of(bias) + ", z is " + shape_of(z) +
                              " (bias must have z.shape[1] elements)");
        no_overlap(k, z, "z", bias, "bias");
        no_overlap(k, a, "a", bias, "bias");
        if (pa != pz && overlaps(a, z)) fail_value(k, "a overlaps z");
        py::gil_scoped_release nogil;
        bias_act_forward<T>(pb, pz, pa, z.shape(0), z.shape(1), f, T(param));
    });
}

void act_backward_binding(py::array z, py::array a, py::array da, py::array dz, const std::string& act,
                          double param) {
    const char* k = "act_backward";
    const Activation f = activation_of(k, act);
    with_dtype(z, k, "z", [&](auto tag) {
        using T = decltype(tag);
        const T* pz = input<T>(z, k, "z", 2);
        const T* pa = input<T>(a, k, "a", 2);
        const T* pda = input<T>(da, k, "da", 2);
        T* pdz = output<T>(dz, k, "dz", 2);
        same_shape(k, z, "z", a, "a");
        same_shape(k, z, "z", da, "da");
        same_shape(k, z, "z", dz, "dz");
        no_overlap(k, dz, "dz", z, "z");
        no_overlap(k, dz, "dz", a, "a");
        if (pdz != pda && overlaps(dz, da)) fail_value(k, "dz overlaps da");
        py::gil_scoped_release nogil;
        act_backward<T>(pz, pa, pda, pdz, z.size(), f, T(param));
    });
}

void col_sum_binding(py::array x, py::array out) {
    const char* k = "col_sum";
    with_dtype(x, k, "x", [&](auto tag) {
        using T = decltype(tag);
        const T* px = input<T>(x, k, "x", 2);
        T* po = output<T>(out, k, "out", 1);
        if (out.shape(0) != x.shape(1))
            fail_value(k, "shape mismatch: x is " + shape_of(x) + ", out is " + shape_of(out) +
                              " (out must have x.shape[1] elements)");
        no_overlap(k, out, "out", x, "x");
        py::gil_scoped_release nogil;
        col_sum<T>(px, x.shape(0), x.shape(1), po);
    });
}

void math_binding(const std::string& name, py::array x, py::array out) {
    const char* k = "math";
    const MathFn fn = parse_name<MathFn>(k, "function", name, kMathFnNames);
    with_dtype(x, k, "x", [&](auto tag) {
        using T = decltype(tag);
        const T* px = input<T>(x, k, "x", 1);
        T* po = output<T>(out, k, "out", 1);
        same_shape(k, x, "x", out, "out");
        same_or_disjoint(k, out, "out", x, "x");
        py::gil_scoped_release nogil;
        math<T>(fn, px, po, x.size());
    });
}

}  // namespace

void register_activations(py::module_& m, py::module_& testing) {
    using py::arg;
    m.def("bias_act_forward", &bias_act_binding, arg("z").noconvert(), arg("bias").noconvert(),
          arg("a").noconvert(), arg("activation"), arg("param"));
    m.def("act_backward", &act_backward_binding, arg("z").noconvert(), arg("a").noconvert(),
          arg("da").noconvert(), arg("dz").noconvert(), arg("activation"), arg("param"));
    m.def("col_sum", &col_sum_binding, arg("x").noconvert(), arg("out").noconvert());
    testing.def("math", &math_binding, arg("name"), arg("x").noconvert(), arg("out").noconvert());
}

}}  // namespace fastmlp::bind
