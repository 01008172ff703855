// fastmlp._core.batchnorm_forward_train, batchnorm_forward_infer and batchnorm_backward
// (ops.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "../ops.hpp"
#include "arrays.hpp"
#include "register.hpp"

namespace fastmlp { namespace bind {

namespace {

void at_least_one_row(const char* k, const py::array& x, const char* xn) {
    if (x.shape(0) < 1)
        fail_value(k, std::string(xn) + " must have at least one row (batch statistics of an empty batch are "
                                        "undefined), got shape " + shape_of(x));
}

void batchnorm_train_binding(py::array x, py::array gamma, py::array beta, py::array y, py::array xhat,
                             py::array mean, py::array inv_std, double eps) {
    const char* k = "batchnorm_forward_train";
    with_dtype(x, k, "x", [&](auto tag) {
        using T = decltype(tag);
        const T* px = input<T>(x, k, "x", 2);
        const T* pg = input<T>(gamma, k, "gamma", 1);
        const T* pb = input<T>(beta, k, "beta", 1);
        T* py_ = output<T>(y, k, "y", 2);
        T* pxh = output<T>(xhat, k, "xhat", 2);
        T* pm = output<T>(mean, k, "mean", 1);
        T* ps = output<T>(inv_std, k, "inv_std", 1);
        same_shape(k, x, "x", y, "y");
        same_shape(k, x, "x", xhat, "xhat");
        feature_vector(k, gamma, "gamma", x, "x");
        feature_vector(k, beta, "beta", x, "x");
        feature_vector(k, mean, "mean", x, "x");
        feature_vector(k, inv_std, "inv_std", x, "x");
        at_least_one_row(k, x, "x");
        all_disjoint(k, {{&y, "y"}, {&xhat, "xhat"}, {&mean, "mean"}, {&inv_std, "inv_std"}},
                     {{&x, "x"}, {&gamma, "gamma"}, {&beta, "beta"}});
        py::gil_scoped_release nogil;
        batchnorm_forward_train<T>(px, pg, pb, py_, pxh, pm, ps, x.shape(0), x.shape(1), T(eps));
    });
}

void batchnorm_infer_binding(py::array x, py::array gamma, py::array beta, py::array mean, py::array var,
                             double eps, py::array y) {
    const char* k = "batchnorm_forward_infer";
    with_dtype(x, k, "x", [&](auto tag) {
        using T = decltype(tag);
        const T* px = input<T>(x, k, "x", 2);
        const T* pg = input<T>(gamma, k, "gamma", 1);
        const T* pb = input<T>(beta, k, "beta", 1);
        const T* pm = input<T>(mean, k, "mean", 1);
        const T* pv = input<T>(var, k, "var", 1);
        T* py_ = output<T>(y, k, "y", 2);
        same_shape(k, x, "x", y, "y");
        feature_vector(k, gamma, "gamma", x, "x");
        feature_vector(k, beta, "beta", x, "x");
        feature_vector(k, mean, "mean", x, "x");
        feature_vector(k, var, "var", x, "x");
        same_or_disjoint(k, y, "y", x, "x");
        all_disjoint(k, {{&y, "y"}}, {{&gamma, "gamma"}, {&beta, "beta"}, {&mean, "mean"}, {&var, "var"}});
        py::gil_scoped_release nogil;
        batchnorm_forward_infer<T>(px, pg, pb, pm, pv, py_, x.shape(0), x.shape(1), T(eps));
    });
}

void batchnorm_backward_binding(py::array dy, py::array xhat, py::array gamma, py::array inv_std, py::array dx,
                                py::array dgamma, py::array dbeta) {
    const char* k = "batchnorm_backward";
    with_dtype(dy, k, "dy", [&](auto tag) {
        using T = decltype(tag);
        const T* pdy = input<T>(dy, k, "dy", 2);
        const T* pxh = input<T>(xhat, k, "xhat", 2);
        const T* pg = input<T>(gamma, k, "gamma", 1);
        const T* ps = input<T>(inv_std, k, "inv_std", 1);
        T* pdx = output<T>(dx, k, "dx", 2);
        T* pdg = output<T>(dgamma, k, "dgamma", 1);
        T* pdb = output<T>(dbeta, k, "dbeta", 1);
        same_shape(k, dy, "dy", xhat, "xhat");
        same_shape(k, dy, "dy", dx, "dx");
        feature_vector(k, gamma, "gamma", dy, "dy");
        feature_vector(k, inv_std, "inv_std", dy, "dy");
        feature_vector(k, dgamma, "dgamma", dy, "dy");
        feature_vector(k, dbeta, "dbeta", dy, "dy");
        at_least_one_row(k, dy, "dy");
        all_disjoint(k, {{&dx, "dx"}, {&dgamma, "dgamma"}, {&dbeta, "dbeta"}},
                     {{&dy, "dy"}, {&xhat, "xhat"}, {&gamma, "gamma"}, {&inv_std, "inv_std"}});
        py::gil_scoped_release nogil;
        batchnorm_backward<T>(pdy, pxh, pg, ps, pdx, pdg, pdb, dy.shape(0), dy.shape(1));
    });
}

}  // namespace

void register_batchnorm(py::module_& m) {
    using py::arg;
    m.def("batchnorm_forward_train", &batchnorm_train_binding, arg("x").noconvert(), arg("gamma").noconvert(),
          arg("beta").noconvert(), arg("y").noconvert(), arg("xhat").noconvert(), arg("mean").noconvert(),
          arg("inv_std").noconvert(), arg("eps"));
    m.def("batchnorm_forward_infer", &batchnorm_infer_binding, arg("x").noconvert(), arg("gamma").noconvert(),
          arg("beta").noconvert(), arg("mean").noconvert(), arg("var").noconvert(), arg("eps"),
          arg("y").noconvert());
    m.def("batchnorm_backward", &batchnorm_backward_binding, arg("dy").noconvert(), arg("xhat").noconvert(),
          arg("gamma").noconvert(), arg("inv_std").noconvert(), arg("dx").noconvert(), arg("dgamma").noconvert(),
          arg("dbeta").noconvert());
}

}}  // namespace fastmlp::bind
