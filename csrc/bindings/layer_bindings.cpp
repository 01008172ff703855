// fastmlp._core.dropout_forward, mul (dropout's backward), maxout_forward and
// maxout_backward (ops.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "../ops.hpp"
#include "arrays.hpp"
#include "register.hpp"

namespace fastmlp { namespace bind {

namespace {

// A Python int (or an object with __index__, not a bool) in [0, 2**64).
std::uint64_t uint64_arg(const char* kernel, const char* name, const py::object& v) {
    PyObject* o = v.ptr();
    if (PyBool_Check(o) || PyFloat_Check(o) || !PyIndex_Check(o))
        throw py::type_error(std::string(kernel) + ": " + name + " must be an int, got " +
                             std::string(py::str(py::type::of(v).attr("__name__"))));
    py::int_ i = py::reinterpret_steal<py::int_>(PyNumber_Index(o));
    if (!i) throw py::error_already_set();
    const unsigned long long r = PyLong_AsUnsignedLongLong(i.ptr());
    if (r == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
        PyErr_Clear();
        fail_value(kernel, std::string(name) + " must satisfy 0 <= " + name + " < 2**64, got " +
                               std::string(py::repr(i)));
    }
    return std::uint64_t(r);
}

void dropout_binding(py::array x, py::array y, py::array mask, double rate, py::object seed, py::object layer,
                     py::object step, index first) {
    const char* k = "dropout_forward";
    const std::uint64_t s = uint64_arg(k, "seed", seed), l = uint64_arg(k, "layer", layer),
                        t = uint64_arg(k, "step", step);
    if (!(rate >= 0.0 && rate < 1.0)) fail_value(k, "rate must satisfy 0 <= rate < 1, got " + std::to_string(rate));
    if (first < 0) fail_value(k, "first must be >= 0, got " + std::to_string(first));
    with_dtype(x, k, "x", [&](auto tag) {
        using T = decltype(tag);
        const int nd = int(x.ndim());
        const T* px = input<T>(x, k, "x", nd);
        T* py_ = output<T>(y, k, "y", nd);
        T* pm = output<T>(mask, k, "mask", nd);
        same_shape(k, x, "x", y, "y");
        same_shape(k, x, "x", mask, "mask");
        same_or_disjoint(k, y, "y", x, "x");
        no_overlap(k, mask, "mask", x, "x");
        no_overlap(k, mask, "mask", y, "y");
        py::gil_scoped_release nogil;
        dropout_forward<T>(px, py_, pm, x.size(), rate, s, l, t, first);
    });
}

void mul_binding(py::array a, py::array b, py::array out) {
    const char* k = "mul";
    with_dtype(a, k, "a", [&](auto tag) {
        using T = decltype(tag);
        const int nd = int(a.ndim());
        const T* pa = input<T>(a, k, "a", nd);
        const T* pb = input<T>(b, k, "b", nd);
        T* po = output<T>(out, k, "out", nd);
        same_shape(k, a, "a", b, "b");
        same_shape(k, a, "a", out, "out");
        same_or_disjoint(k, out, "out", a, "a");
        same_or_disjoint(k, out, "out", b, "b");
        py::gil_scoped_release nogil;
        mul<T>(pa, pb, po, a.size());
    });
}

// The pieces per unit of z (m, units * pieces) for a (m, units).
index maxout_pieces(const char* k, const py::array& z, const char* zn, const py::array& a, const char* an) {
    const index units = a.shape(1), width = z.shape(1);
    if (z.shape(0) != a.shape(0) || (units == 0 ? width != 0 : (width == 0 || width % units != 0)))
        fail_value(k, std::string("shape mismatch: ") + zn + " is " + shape_of(z) + ", " + an + " is " + shape_of(a) +
                          " (expected equal rows and " + zn + ".shape[1] = pieces * " + an +
                          ".shape[1] with pieces >= 1)");
    const index pieces = units == 0 ? 1 : width / units;
    if (pieces > 0x7fffffff) fail_value(k, "more than 2**31 - 1 pieces per unit");
    return pieces;
}

void maxout_forward_binding(py::array z, py::array a, py::array argmax) {
    const char* k = "maxout_forward";
    with_dtype(z, k, "z", [&](auto tag) {
        using T = decltype(tag);
        const T* pz = input<T>(z, k, "z", 2);
        T* pa = output<T>(a, k, "a", 2);
        std::int32_t* pi = output<std::int32_t>(argmax, k, "argmax", 2);
        same_shape(k, a, "a", argmax, "argmax");
        const index pieces = maxout_pieces(k, z, "z", a, "a");
        all_disjoint(k, {{&a, "a"}, {&argmax, "argmax"}}, {{&z, "z"}});
        py::gil_scoped_release nogil;
        maxout_forward<T>(pz, pa, pi, a.shape(0), a.shape(1), pieces);
    });
}

// The kernel refuses an argmax outside [0, pieces) (ops.hpp check_argmax: ValueError).
void maxout_backward_binding(py::array da, py::array argmax, py::array dz) {
    const char* k = "maxout_backward";
    with_dtype(da, k, "da", [&](auto tag) {
        using T = decltype(tag);
        const T* pda = input<T>(da, k, "da", 2);
        const std::int32_t* pi = input<std::int32_t>(argmax, k, "argmax", 2);
        T* pdz = output<T>(dz, k, "dz", 2);
        same_shape(k, da, "da", argmax, "argmax");
        const index pieces = maxout_pieces(k, dz, "dz", da, "da");
        all_disjoint(k, {{&dz, "dz"}}, {{&da, "da"}, {&argmax, "argmax"}});
        py::gil_scoped_release nogil;
        maxout_backward<T>(pda, pi, pdz, da.shape(0), da.shape(1), pieces);
    });
}

}  // namespace

void register_layers(py::module_& m) {
    using py::arg;
    m.def("dropout_forward", &dropout_binding, arg("x").noconvert(), arg("y").noconvert(),
          arg("mask").noconvert(), arg("rate"), arg("seed"), arg("layer"), arg("step"), arg("first") = 0);
    m.def("mul", &mul_binding, arg("a").noconvert(), arg("b").noconvert(), arg("out").noconvert());
    m.def("maxout_forward", &maxout_forward_binding, arg("z").noconvert(), arg("a").noconvert(),
          arg("argmax").noconvert());
    m.def("maxout_backward", &maxout_backward_binding, arg("da").noconvert(), arg("argmax").noconvert(),
          arg("dz").noconvert());
}

}}  // namespace fastmlp::bind
