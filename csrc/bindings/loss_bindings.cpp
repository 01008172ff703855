// fastmlp._core.loss, output and argmax_rows (ops.hpp): a loss's value and gradient, the
// output transform (softmax, sigmoid, identity) of the logits, and their rows' argmax.
// _testing.loss_with_labels: loss with the labels softmax cross-entropy writes for the
// fused trainer's accuracy ((rows, 2) int64: each row's argmax of logits and of y).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <string>

#include "../ops.hpp"
#include "arrays.hpp"
#include "names.hpp"
#include "register.hpp"

namespace fastmlp { namespace bind {

namespace {

// `obj` as an array, or None: TypeError naming `name` for anything else.
std::optional<py::array> optional_array(const char* k, const py::object& obj, const char* name) {
    if (obj.is_none()) return std::nullopt;
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(k) + ": " + name + " must be a numpy array or None");
    return obj.cast<py::array>();
}

void at_least_one_column(const char* k, const py::array& z) {
    if (z.shape(1) == 0) fail_value(k, "logits must have at least one column, got shape " + shape_of(z));
}

double loss_with_labels(const std::string& name, py::array z, py::array y, py::object grad, double scale,
                        py::object weights, py::object labels) {
    const char* k = "loss";
    const Loss kind = loss_of(k, name);
    return with_dtype(z, k, "logits", [&](auto tag) {
        using T = decltype(tag);
        const T* pz = input<T>(z, k, "logits", 2);
        const T* py_ = input<T>(y, k, "y", 2);
        same_shape(k, z, "logits", y, "y");
        at_least_one_column(k, z);
        std::optional<py::array> grad_array = optional_array(k, grad, "grad");
        T* pg = nullptr;
        if (grad_array) {
            py::array& g = *grad_array;
            pg = output<T>(g, k, "grad", 2);
            same_shape(k, z, "logits", g, "grad");
            same_or_disjoint(k, g, "grad", z, "logits");
            no_overlap(k, g, "grad", y, "y");
        }
        std::optional<py::array> weight_array = optional_array(k, weights, "weights");
        const T* pw = nullptr;
        if (weight_array) {
            const py::array& w = *weight_array;
            pw = input<T>(w, k, "weights", 1);
            if (w.shape(0) != z.shape(0))
                fail_value(k, "shape mismatch: logits is " + shape_of(z) + ", weights is " + shape_of(w) +
                                  " (weights must have logits.shape[0] elements)");
            if (grad_array) no_overlap(k, *grad_array, "grad", w, "weights");
        }
        std::optional<py::array> label_array = optional_array(k, labels, "labels");
        std::int64_t* pl = nullptr;
        if (label_array) {
            py::array& l = *label_array;
            pl = output<std::int64_t>(l, k, "labels", 2);
            if (l.shape(0) != z.shape(0) || l.shape(1) != 2)
                fail_value(k, "shape mismatch: logits is " + shape_of(z) + ", labels is " + shape_of(l) +
                                  " (labels must be (logits.shape[0], 2))");
            all_disjoint(k, {{&l, "labels"}}, {{&z, "logits"}, {&y, "y"}});
        }
        py::gil_scoped_release nogil;
        return loss<T>(kind, pz, py_, pg, z.shape(0), z.shape(1), T(scale), pw, pl);
    });
}

double loss_binding(const std::string& name, py::array z, py::array y, py::object grad, double scale,
                    py::object weights) {
    return loss_with_labels(name, z, y, grad, scale, weights, py::none());
}

void output_binding(const std::string& name, py::array z, py::array out) {
    const char* k = "output";
    const Loss kind = loss_of(k, name);
    with_dtype(z, k, "logits", [&](auto tag) {
        using T = decltype(tag);
        const T* pz = input<T>(z, k, "logits", 2);
        T* po = output<T>(out, k, "out", 2);
        same_shape(k, z, "logits", out, "out");
        at_least_one_column(k, z);
        no_overlap(k, out, "out", z, "logits");
        py::gil_scoped_release nogil;
        output<T>(kind, pz, po, z.shape(0), z.shape(1));
    });
}

void argmax_rows_binding(py::array z, py::array out) {
    const char* k = "argmax_rows";
    with_dtype(z, k, "logits", [&](auto tag) {
        using T = decltype(tag);
        const T* pz = input<T>(z, k, "logits", 2);
        std::int64_t* po = output<std::int64_t>(out, k, "out", 1);
        if (out.shape(0) != z.shape(0))
            fail_value(k, "shape mismatch: logits is " + shape_of(z) + ", out is " + shape_of(out) +
                              " (out must have logits.shape[0] elements)");
        at_least_one_column(k, z);
        py::gil_scoped_release nogil;
        argmax_rows<T>(pz, z.shape(0), z.shape(1), po);
    });
}

}  // namespace

void register_losses(py::module_& m, py::module_& testing) {
    using py::arg;
    m.def("loss", &loss_binding, arg("name"), arg("logits").noconvert(), arg("y").noconvert(), arg("grad"),
          arg("scale"), arg("weights") = py::none());
    testing.def("loss_with_labels", &loss_with_labels, arg("name"), arg("logits").noconvert(),
                arg("y").noconvert(), arg("grad"), arg("scale"), arg("weights"), arg("labels"));
    m.def("output", &output_binding, arg("name"), arg("logits").noconvert(), arg("out").noconvert());
    m.def("argmax_rows", &argmax_rows_binding, arg("logits").noconvert(), arg("out").noconvert());
}

}}  // namespace fastmlp::bind
