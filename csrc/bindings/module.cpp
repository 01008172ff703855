// fastmlp._core: the only pybind11 code. Each binding checks and views its arrays
// (arrays.hpp), releases the GIL and calls the dispatched kernel (ops.hpp). No math, no
// defaults beyond the Python signature, no allocation policy.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "../cpu_features.hpp"
#include "../dispatch.hpp"
#include "../ops.hpp"
#include "../parallel.hpp"
#include "arrays.hpp"
#include "names.hpp"

namespace py = pybind11;

namespace fastmlp { namespace bind { void register_train(py::module_& m); } }  // train_bindings.cpp

using namespace fastmlp;
using namespace fastmlp::bind;

namespace {

void gemm_binding(py::array a, py::array b, py::array c, bool ta, bool tb, double alpha, double beta) {
    const char* k = "gemm";
    with_dtype(a, k, "a", [&](auto tag) {
        using T = decltype(tag);
        const T* pa = input<T>(a, k, "a", 2);
        const T* pb = input<T>(b, k, "b", 2);
        T* pc = output<T>(c, k, "c", 2);
        no_overlap(k, c, "c", a, "a");
        no_overlap(k, c, "c", b, "b");
        const fastmlp::index m = ta ? a.shape(1) : a.shape(0), ka = ta ? a.shape(0) : a.shape(1);
        const fastmlp::index kb = tb ? b.shape(1) : b.shape(0), n = tb ? b.shape(0) : b.shape(1);
        if (ka != kb || c.shape(0) != m || c.shape(1) != n)
            fail_value(k, "shape mismatch: a" + std::string(ta ? ".T" : "") + " is (" + std::to_string(m) + ", " +
                              std::to_string(ka) + "), b" + (tb ? ".T" : "") + " is (" + std::to_string(kb) +
                              ", " + std::to_string(n) + "), c is " + shape_of(c) + " (expected (" +
                              std::to_string(m) + ", " + std::to_string(n) + ") with equal inner sizes)");
        py::gil_scoped_release nogil;
        gemm<T>(ta, tb, m, n, ka, T(alpha), pa, a.shape(1), pb, b.shape(1), T(beta), pc, n);
    });
}

void gemm_bias_act_binding(py::array a, py::array b, py::array bias, py::array z, py::array out, bool ta,
                           bool tb, const std::string& act, double param) {
    const char* k = "gemm_bias_act";
    const Activation f = activation_of(k, act);
    with_dtype(a, k, "a", [&](auto tag) {
        using T = decltype(tag);
        const T* pa = input<T>(a, k, "a", 2);
        const T* pb = input<T>(b, k, "b", 2);
        const T* pbias = input<T>(bias, k, "bias", 1);
        T* pz = output<T>(z, k, "z", 2);
        T* po = output<T>(out, k, "out", 2);
        const fastmlp::index m = ta ? a.shape(1) : a.shape(0), ka = ta ? a.shape(0) : a.shape(1);
        const fastmlp::index kb = tb ? b.shape(1) : b.shape(0), n = tb ? b.shape(0) : b.shape(1);
        if (ka != kb || z.shape(0) != m || z.shape(1) != n)
            fail_value(k, "shape mismatch: a" + std::string(ta ? ".T" : "") + " is (" + std::to_string(m) + ", " +
                              std::to_string(ka) + "), b" + (tb ? ".T" : "") + " is (" + std::to_string(kb) +
                              ", " + std::to_string(n) + "), z is " + shape_of(z) + " (expected (" +
                              std::to_string(m) + ", " + std::to_string(n) + ") with equal inner sizes)");
        same_shape(k, z, "z", out, "out");
        if (bias.shape(0) != n)
            fail_value(k, "shape mismatch: bias is " + shape_of(bias) + ", z is " + shape_of(z) +
                              " (bias must have z.shape[1] elements)");
        no_overlap(k, z, "z", a, "a");
        no_overlap(k, z, "z", b, "b");
        no_overlap(k, z, "z", bias, "bias");
        no_overlap(k, out, "out", a, "a");
        no_overlap(k, out, "out", b, "b");
        no_overlap(k, out, "out", bias, "bias");
        if (po != pz && overlaps(out, z)) fail_value(k, "out overlaps z");
        if (po == pz && f != Activation::linear) fail_value(k, "out may be z only for the linear activation");
        py::gil_scoped_release nogil;
        gemm_bias_act<T>(ta, tb, m, n, ka, pa, a.shape(1), pb, b.shape(1), pbias, pz, n, po, n, f, T(param));
    });
}

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
        if (pa == pz && f != Activation::linear) fail_value(k, "a may be z only for the linear activation");
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

double loss_binding(const std::string& name, py::array z, py::array y, py::object grad, double scale,
                    py::object weights) {
    const char* k = "loss";
    const Loss kind = loss_of(k, name);
    return with_dtype(z, k, "logits", [&](auto tag) {
        using T = decltype(tag);
        const T* pz = input<T>(z, k, "logits", 2);
        const T* py_ = input<T>(y, k, "y", 2);
        same_shape(k, z, "logits", y, "y");
        if (z.shape(1) == 0) fail_value(k, "logits must have at least one column, got shape " + shape_of(z));
        T* pg = nullptr;
        py::array g;
        if (!grad.is_none()) {
            if (!py::isinstance<py::array>(grad))
                throw py::type_error("loss: grad must be a numpy array or None");
            g = grad.cast<py::array>();
            pg = output<T>(g, k, "grad", 2);
            same_shape(k, z, "logits", g, "grad");
            if (pg != pz) no_overlap(k, g, "grad", z, "logits");
            no_overlap(k, g, "grad", y, "y");
        }
        const T* pw = nullptr;
        py::array w;
        if (!weights.is_none()) {
            if (!py::isinstance<py::array>(weights))
                throw py::type_error("loss: weights must be a numpy array or None");
            w = weights.cast<py::array>();
            pw = input<T>(w, k, "weights", 1);
            if (w.shape(0) != z.shape(0))
                fail_value(k, "shape mismatch: logits is " + shape_of(z) + ", weights is " + shape_of(w) +
                                  " (weights must have logits.shape[0] elements)");
            if (pg) no_overlap(k, g, "grad", w, "weights");
        }
        py::gil_scoped_release nogil;
        return loss<T>(kind, pz, py_, pg, z.shape(0), z.shape(1), T(scale), pw);
    });
}

void output_binding(const std::string& name, py::array z, py::array out) {
    const char* k = "output";
    const Loss kind = loss_of(k, name);
    with_dtype(z, k, "logits", [&](auto tag) {
        using T = decltype(tag);
        const T* pz = input<T>(z, k, "logits", 2);
        T* po = output<T>(out, k, "out", 2);
        same_shape(k, z, "logits", out, "out");
        if (z.shape(1) == 0) fail_value(k, "logits must have at least one column, got shape " + shape_of(z));
        no_overlap(k, out, "out", z, "logits");
        py::gil_scoped_release nogil;
        output<T>(kind, pz, po, z.shape(0), z.shape(1));
    });
}

template <class T>
T* state_array(const py::object& obj, bool needed, const py::array& param, const char* name) {
    const char* k = "optimizer_update";
    if (!needed) return nullptr;
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(k) + ": " + name + " must be a numpy array for this optimizer");
    py::array a = obj.cast<py::array>();
    T* p = output<T>(a, k, name, 1);
    same_shape(k, param, "param", a, name);
    no_overlap(k, a, name, param, "param");
    return p;
}

void optimizer_binding(const std::string& name, py::array p, py::array g, py::object m, py::object v,
                       double lr, double grad_scale, double b1, double b2, double eps, double weight_decay,
                       long long step) {
    const char* k = "optimizer_update";
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
        const OptimizerHyper h{kind, lr, grad_scale, b1, b2, eps, weight_decay, step};
        py::gil_scoped_release nogil;
        optimizer_update<T>(h, pp, pg, pm, pv, p.size());
    });
}

void sgd_binding(py::array p, py::array g, double lr) {
    optimizer_binding("sgd", p, g, py::none(), py::none(), lr, 1.0, 0.0, 0.0, 0.0, 0.0, 1);
}

double sum_squares_binding(py::array x) {
    return with_dtype(x, "sum_squares", "x", [&](auto tag) {
        using T = decltype(tag);
        const T* px = input<T>(x, "sum_squares", "x", 1);
        py::gil_scoped_release nogil;
        return sum_squares<T>(px, x.size());
    });
}

void math_binding(const std::string& name, py::array x, py::array out) {
    const char* k = "math";
    const MathFn fn = parse_name<MathFn>(k, "function", name, kMathFns);
    with_dtype(x, k, "x", [&](auto tag) {
        using T = decltype(tag);
        const T* px = input<T>(x, k, "x", 1);
        T* po = output<T>(out, k, "out", 1);
        same_shape(k, x, "x", out, "out");
        if (po != px) no_overlap(k, out, "out", x, "x");
        py::gil_scoped_release nogil;
        math<T>(fn, px, po, x.size());
    });
}

// ---- Layers: dropout, maxout, batch normalization, weight penalties ----

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

// out may be exactly `in` (same data and shape) but must not partly overlap it.
void same_or_disjoint(const char* k, const py::array& out, const char* on, const py::array& in, const char* in_name) {
    if (out.data() != in.data()) no_overlap(k, out, on, in, in_name);
}

// Every output disjoint from every other array given (inputs and outputs).
void all_disjoint(const char* k, std::initializer_list<std::pair<const py::array*, const char*>> outputs,
                  std::initializer_list<std::pair<const py::array*, const char*>> inputs) {
    for (auto o = outputs.begin(); o != outputs.end(); ++o) {
        for (auto p = o + 1; p != outputs.end(); ++p) no_overlap(k, *o->first, o->second, *p->first, p->second);
        for (const auto& in : inputs) no_overlap(k, *o->first, o->second, *in.first, in.second);
    }
}

// a is 1-D with x.shape[1] elements (a per-feature vector of x).
void feature_vector(const char* k, const py::array& a, const char* an, const py::array& x, const char* xn) {
    if (a.shape(0) != x.shape(1))
        fail_value(k, std::string("shape mismatch: ") + xn + " is " + shape_of(x) + ", " + an + " is " +
                          shape_of(a) + " (" + an + " must have " + xn + ".shape[1] elements)");
}

void dropout_binding(py::array x, py::array y, py::array mask, double rate, py::object seed, py::object layer,
                     py::object step) {
    const char* k = "dropout_forward";
    const std::uint64_t s = uint64_arg(k, "seed", seed), l = uint64_arg(k, "layer", layer),
                        t = uint64_arg(k, "step", step);
    if (!(rate >= 0.0 && rate < 1.0)) fail_value(k, "rate must satisfy 0 <= rate < 1, got " + std::to_string(rate));
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
        dropout_forward<T>(px, py_, pm, x.size(), rate, s, l, t);
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
fastmlp::index maxout_pieces(const char* k, const py::array& z, const char* zn, const py::array& a, const char* an) {
    const fastmlp::index units = a.shape(1), width = z.shape(1);
    if (z.shape(0) != a.shape(0) || (units == 0 ? width != 0 : (width == 0 || width % units != 0)))
        fail_value(k, std::string("shape mismatch: ") + zn + " is " + shape_of(z) + ", " + an + " is " + shape_of(a) +
                          " (expected equal rows and " + zn + ".shape[1] = pieces * " + an +
                          ".shape[1] with pieces >= 1)");
    const fastmlp::index pieces = units == 0 ? 1 : width / units;
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
        const fastmlp::index pieces = maxout_pieces(k, z, "z", a, "a");
        all_disjoint(k, {{&a, "a"}, {&argmax, "argmax"}}, {{&z, "z"}});
        py::gil_scoped_release nogil;
        maxout_forward<T>(pz, pa, pi, a.shape(0), a.shape(1), pieces);
    });
}

void maxout_backward_binding(py::array da, py::array argmax, py::array dz) {
    const char* k = "maxout_backward";
    with_dtype(da, k, "da", [&](auto tag) {
        using T = decltype(tag);
        const T* pda = input<T>(da, k, "da", 2);
        const std::int32_t* pi = input<std::int32_t>(argmax, k, "argmax", 2);
        T* pdz = output<T>(dz, k, "dz", 2);
        same_shape(k, da, "da", argmax, "argmax");
        const fastmlp::index pieces = maxout_pieces(k, dz, "dz", da, "da");
        all_disjoint(k, {{&dz, "dz"}}, {{&da, "da"}, {&argmax, "argmax"}});
        for (py::ssize_t i = 0; i < argmax.size(); ++i)  // dz is written at argmax: check it
            if (pi[i] < 0 || pi[i] >= pieces)
                fail_value(k, "argmax holds " + std::to_string(pi[i]) + " at flat index " + std::to_string(i) +
                                  ", expected 0 <= argmax < pieces = " + std::to_string(pieces));
        py::gil_scoped_release nogil;
        maxout_backward<T>(pda, pi, pdz, da.shape(0), da.shape(1), pieces);
    });
}

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

std::vector<std::string> isa_list(bool (*pred)(Isa)) {
    std::vector<std::string> out;
    for (int i = 0; i < kIsaCount; ++i)
        if (pred(Isa(i))) out.push_back(isa_name(Isa(i)));
    return out;
}

std::string set_isa_binding(const std::string& name) {
    Isa isa = best_isa();
    if (name != "auto" && !parse_isa(name.c_str(), isa))
        throw py::value_error("set_isa: unknown ISA '" + name + "' (expected generic, avx2, avx512 or auto)");
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
    d["threads"] = num_threads();
    d["openmp"] = openmp_enabled();
    d["serial_after_fork"] = serial_after_fork();
    return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "fastmlp's C++ kernels; use them through fastmlp.backends.native";
    init_dispatch();
    using py::arg;
    m.def("gemm", &gemm_binding, arg("a").noconvert(), arg("b").noconvert(), arg("c").noconvert(),
          arg("trans_a") = false, arg("trans_b") = false, arg("alpha") = 1.0, arg("beta") = 0.0);
    m.def("gemm_bias_act", &gemm_bias_act_binding, arg("a").noconvert(), arg("b").noconvert(),
          arg("bias").noconvert(), arg("z").noconvert(), arg("out").noconvert(), arg("trans_a") = false,
          arg("trans_b") = false, arg("activation") = "linear", arg("param") = 0.0,
          "z = op(a) @ op(b) + bias (row broadcast), out = act(z), in one pass; bit-identical to gemm "
          "then bias_act_forward. z and out are never read; out may be z only for 'linear'.");
    m.def("bias_act_forward", &bias_act_binding, arg("z").noconvert(), arg("bias").noconvert(),
          arg("a").noconvert(), arg("activation"), arg("param"));
    m.def("act_backward", &act_backward_binding, arg("z").noconvert(), arg("a").noconvert(),
          arg("da").noconvert(), arg("dz").noconvert(), arg("activation"), arg("param"));
    m.def("col_sum", &col_sum_binding, arg("x").noconvert(), arg("out").noconvert());
    m.def("loss", &loss_binding, arg("name"), arg("logits").noconvert(), arg("y").noconvert(), arg("grad"),
          arg("scale"), arg("weights") = py::none());
    m.def("output", &output_binding, arg("name"), arg("logits").noconvert(), arg("out").noconvert());
    m.def("optimizer_update", &optimizer_binding, arg("name"), arg("param").noconvert(), arg("grad").noconvert(),
          arg("m"), arg("v"), arg("lr"), arg("grad_scale") = 1.0, arg("b1") = 0.0, arg("b2") = 0.0,
          arg("eps") = 0.0, arg("weight_decay") = 0.0, arg("step") = 1);
    m.def("sgd_update", &sgd_binding, arg("param").noconvert(), arg("grad").noconvert(), arg("lr"));
    m.def("sum_squares", &sum_squares_binding, arg("x").noconvert());
    m.def("math", &math_binding, arg("name"), arg("x").noconvert(), arg("out").noconvert());
    m.def("dropout_forward", &dropout_binding, arg("x").noconvert(), arg("y").noconvert(),
          arg("mask").noconvert(), arg("rate"), arg("seed"), arg("layer"), arg("step"));
    m.def("mul", &mul_binding, arg("a").noconvert(), arg("b").noconvert(), arg("out").noconvert());
    m.def("maxout_forward", &maxout_forward_binding, arg("z").noconvert(), arg("a").noconvert(),
          arg("argmax").noconvert());
    m.def("maxout_backward", &maxout_backward_binding, arg("da").noconvert(), arg("argmax").noconvert(),
          arg("dz").noconvert());
    m.def("batchnorm_forward_train", &batchnorm_train_binding, arg("x").noconvert(), arg("gamma").noconvert(),
          arg("beta").noconvert(), arg("y").noconvert(), arg("xhat").noconvert(), arg("mean").noconvert(),
          arg("inv_std").noconvert(), arg("eps"));
    m.def("batchnorm_forward_infer", &batchnorm_infer_binding, arg("x").noconvert(), arg("gamma").noconvert(),
          arg("beta").noconvert(), arg("mean").noconvert(), arg("var").noconvert(), arg("eps"),
          arg("y").noconvert());
    m.def("batchnorm_backward", &batchnorm_backward_binding, arg("dy").noconvert(), arg("xhat").noconvert(),
          arg("gamma").noconvert(), arg("inv_std").noconvert(), arg("dx").noconvert(), arg("dgamma").noconvert(),
          arg("dbeta").noconvert());
    m.def("regularize", &regularize_binding, arg("w").noconvert(), arg("dw").noconvert(), arg("l1"), arg("l2"));
    m.def("set_isa", &set_isa_binding, arg("name"));
    m.def("backend_info", &backend_info);
    m.def("enum_names", &enum_names);
    m.def("set_num_threads", &set_num_threads, arg("n"));
    m.def("get_num_threads", &num_threads);
    m.def("push_threads", &push_threads, arg("n"));
    m.def("pop_threads", &pop_threads, arg("previous"));
    m.def("last_team_size", &last_team_size);
    register_train(m);
}
