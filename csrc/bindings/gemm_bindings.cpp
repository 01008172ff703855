// fastmlp._core.gemm, gemm_bias_act and gemm_act_backward (ops.hpp; bf16=True: the bfloat16 products): check and view the
// arrays, release the GIL, call the dispatched kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "../ops.hpp"
#include "arrays.hpp"
#include "names.hpp"
#include "register.hpp"

namespace fastmlp { namespace bind {

namespace {

struct ProductShape {
    index m, n, k;
};

// op(a) @ op(b) as (m, k) @ (k, n) into c (m, n); ValueError naming the shapes otherwise.
ProductShape product_shape(const char* k, const py::array& a, bool ta, const py::array& b, bool tb,
                           const py::array& c, const char* cn) {
    const index m = ta ? a.shape(1) : a.shape(0), ka = ta ? a.shape(0) : a.shape(1);
    const index kb = tb ? b.shape(1) : b.shape(0), n = tb ? b.shape(0) : b.shape(1);
    if (ka != kb || c.shape(0) != m || c.shape(1) != n)
        fail_value(k, "shape mismatch: a" + std::string(ta ? ".T" : "") + " is (" + std::to_string(m) + ", " +
                          std::to_string(ka) + "), b" + (tb ? ".T" : "") + " is (" + std::to_string(kb) + ", " +
                          std::to_string(n) + "), " + cn + " is " + shape_of(c) + " (expected (" +
                          std::to_string(m) + ", " + std::to_string(n) + ") with equal inner sizes)");
    return {m, n, ka};
}

// z and out of a product with the bias-and-activation epilogue: each disjoint from the
// inputs, out either z itself (then it holds act(z) alone) or disjoint from it.
void epilogue_outputs(const char* k, const py::array& z, const py::array& out,
                      std::initializer_list<Named> inputs) {
    for (const Named& in : inputs) {
        no_overlap(k, z, "z", *in.first, in.second);
        no_overlap(k, out, "out", *in.first, in.second);
    }
    if (out.data() != z.data() && overlaps(out, z)) fail_value(k, "out overlaps z");
}

// C = alpha * op(a) @ op(b) + beta * c's operands, checked: dtype T, 2-D, C order, c
// writable and disjoint from a and b, the shapes agreeing.
template <class T>
struct Product {
    const T* a;
    const T* b;
    T* c;
    ProductShape s;
};

template <class T>
Product<T> checked_product(const char* k, const py::array& a, const py::array& b, py::array& c, bool ta, bool tb) {
    Product<T> p{input<T>(a, k, "a", 2), input<T>(b, k, "b", 2), output<T>(c, k, "c", 2), {}};
    no_overlap(k, c, "c", a, "a");
    no_overlap(k, c, "c", b, "b");
    p.s = product_shape(k, a, ta, b, tb, c, "c");
    return p;
}

// bf16 = true: the bfloat16 products (ops.hpp, products), which take float32 arrays only.
void check_bf16_operands(const char* k, bool bf16, const py::array& a) {
    if (bf16 && !py::array_t<float>::check_(a))
        throw py::type_error(std::string(k) + ": bf16=True takes float32 arrays; a has dtype " +
                             std::string(py::str(a.dtype())));
}

void gemm_binding(py::array a, py::array b, py::array c, bool ta, bool tb, double alpha, double beta, bool bf16) {
    const char* k = "gemm";
    check_bf16_operands(k, bf16, a);
    with_dtype(a, k, "a", [&](auto tag) {
        using T = decltype(tag);
        const Product<T> p = checked_product<T>(k, a, b, c, ta, tb);
        py::gil_scoped_release nogil;
        gemm<T>(ta, tb, p.s.m, p.s.n, p.s.k, T(alpha), p.a, a.shape(1), p.b, b.shape(1), T(beta), p.c, p.s.n, bf16);
    });
}

void gemm_bias_act_binding(py::array a, py::array b, py::array bias, py::array z, py::array out, bool ta,
                           bool tb, const std::string& act, double param, bool bf16) {
    const char* k = "gemm_bias_act";
    const Activation f = activation_of(k, act);
    check_bf16_operands(k, bf16, a);
    with_dtype(a, k, "a", [&](auto tag) {
        using T = decltype(tag);
        const T* pa = input<T>(a, k, "a", 2);
        const T* pb = input<T>(b, k, "b", 2);
        const T* pbias = input<T>(bias, k, "bias", 1);
        T* pz = output<T>(z, k, "z", 2);
        T* po = output<T>(out, k, "out", 2);
        const ProductShape s = product_shape(k, a, ta, b, tb, z, "z");
        same_shape(k, z, "z", out, "out");
        if (bias.shape(0) != s.n)
            fail_value(k, "shape mismatch: bias is " + shape_of(bias) + ", z is " + shape_of(z) +
                              " (bias must have z.shape[1] elements)");
        epilogue_outputs(k, z, out, {{&a, "a"}, {&b, "b"}, {&bias, "bias"}});
        py::gil_scoped_release nogil;
        gemm_bias_act<T>(ta, tb, s.m, s.n, s.k, pa, a.shape(1), pb, b.shape(1), pbias, pz, s.n, po, s.n, f,
                         T(param), bf16);
    });
}

// Tests: gemm_bias_act(x, w, ..., trans_b=True) with w packed first (pack_b, then
// gemm_bias_act_packed: the predictor's path), to check they give the same bits.
void packed_gemm_bias_act_binding(py::array x, py::array w, py::array bias, py::array z, py::array out,
                                  const std::string& act, double param, bool bf16) {
    const char* k = "packed_gemm_bias_act";
    const Activation f = activation_of(k, act);
    check_bf16_operands(k, bf16, x);
    with_dtype(x, k, "x", [&](auto tag) {
        using T = decltype(tag);
        const Product<T> p = checked_product<T>(k, x, w, z, false, true);
        const T* pbias = input<T>(bias, k, "bias", 1);
        T* po = output<T>(out, k, "out", 2);
        same_shape(k, z, "z", out, "out");
        if (bias.shape(0) != p.s.n)
            fail_value(k, "shape mismatch: bias is " + shape_of(bias) + ", z is " + shape_of(z) +
                              " (bias must have z.shape[1] elements)");
        epilogue_outputs(k, z, out, {{&x, "x"}, {&w, "w"}, {&bias, "bias"}});
        const GemmTable<T>& table = products<T>(bf16);
        std::vector<T> packed(std::size_t(table.packed_b_size(p.s.n, p.s.k)));
        py::gil_scoped_release nogil;
        table.pack_b(true, p.s.n, p.s.k, p.b, w.shape(1), packed.data());
        table.gemm_bias_act_packed(p.s.m, p.s.n, p.s.k, p.a, x.shape(1), packed.data(), pbias, p.c, p.s.n, po, p.s.n, f,
                                   T(param), num_threads());
    });
}

// dx = op(a) @ op(b), dz = dx * act'(z) (act_z = act(z)); dz may be dx itself (dx not kept).
void gemm_act_backward_binding(py::array a, py::array b, py::array z, py::array act_z, py::array dx, py::array dz,
                               bool ta, bool tb, const std::string& act, double param, bool bf16) {
    const char* k = "gemm_act_backward";
    const Activation f = activation_of(k, act);
    check_bf16_operands(k, bf16, a);
    with_dtype(a, k, "a", [&](auto tag) {
        using T = decltype(tag);
        const T* pa = input<T>(a, k, "a", 2);
        const T* pb = input<T>(b, k, "b", 2);
        const T* pz = input<T>(z, k, "z", 2);
        const T* paz = input<T>(act_z, k, "act_z", 2);
        T* pdx = output<T>(dx, k, "dx", 2);
        T* pdz = output<T>(dz, k, "dz", 2);
        const ProductShape s = product_shape(k, a, ta, b, tb, dx, "dx");
        for (const Named& other : {Named{&z, "z"}, Named{&act_z, "act_z"}, Named{&dz, "dz"}})
            same_shape(k, dx, "dx", *other.first, other.second);
        same_or_disjoint(k, dz, "dz", dx, "dx");
        all_disjoint(k, {{&dz, "dz"}}, {{&a, "a"}, {&b, "b"}, {&z, "z"}, {&act_z, "act_z"}});
        all_disjoint(k, {{&dx, "dx"}}, {{&a, "a"}, {&b, "b"}, {&z, "z"}, {&act_z, "act_z"}});
        py::gil_scoped_release nogil;
        gemm_act_backward<T>(ta, tb, s.m, s.n, s.k, pa, a.shape(1), pb, b.shape(1), pz, paz, s.n, pdx, s.n, pdz,
                             s.n, f, T(param), bf16);
    });
}

// z = x W^T + bias, out = act(z) with x sparse rows (indptr, indices, values) of W.shape[1] columns.
void csr_gemm_bias_act_binding(py::array indptr, py::array indices, py::array values, py::array w,
                               py::array bias, py::array z, py::array out, const std::string& act, double param) {
    const char* k = "csr_gemm_bias_act";
    const Activation f = activation_of(k, act);
    with_dtype(values, k, "values", [&](auto tag) {
        using T = decltype(tag);
        const T* pw = input<T>(w, k, "w", 2);
        const T* pbias = input<T>(bias, k, "bias", 1);
        T* pz = output<T>(z, k, "z", 2);
        T* po = output<T>(out, k, "out", 2);
        with_index_dtype(indptr, indices, k, [&](auto itag) {
            const CsrRows<T, decltype(itag)> x = csr_input<T, decltype(itag)>(indptr, indices, values, w.shape(1), k);
            if (z.shape(0) != x.rows || z.shape(1) != w.shape(0) || bias.shape(0) != w.shape(0))
                fail_value(k, "shape mismatch: x has " + std::to_string(x.rows) + " rows, w is " + shape_of(w) +
                                  ", bias " + shape_of(bias) + ", z " + shape_of(z) + " (expected z (rows, w.shape[0]))");
            same_shape(k, z, "z", out, "out");
            epilogue_outputs(k, z, out, {{&w, "w"}, {&bias, "bias"}, {&values, "values"}});
            py::gil_scoped_release nogil;
            csr_gemm_bias_act<T>(x, pw, pbias, pz, po, w.shape(0), f, T(param));
        });
    });
}

// dw = dz^T x with x sparse rows (indptr, indices, values) of dw.shape[1] columns.
void csr_weight_grad_binding(py::array dz, py::array indptr, py::array indices, py::array values, py::array dw) {
    const char* k = "csr_weight_grad";
    with_dtype(dz, k, "dz", [&](auto tag) {
        using T = decltype(tag);
        const T* pdz = input<T>(dz, k, "dz", 2);
        T* pdw = output<T>(dw, k, "dw", 2);
        with_index_dtype(indptr, indices, k, [&](auto itag) {
            const CsrRows<T, decltype(itag)> x = csr_input<T, decltype(itag)>(indptr, indices, values, dw.shape(1), k);
            if (dz.shape(0) != x.rows || dz.shape(1) != dw.shape(0))
                fail_value(k, "shape mismatch: x has " + std::to_string(x.rows) + " rows, dz is " + shape_of(dz) +
                                  ", dw " + shape_of(dw) + " (expected dz (rows, dw.shape[0]))");
            all_disjoint(k, {{&dw, "dw"}}, {{&dz, "dz"}, {&values, "values"}});
            py::gil_scoped_release nogil;
            csr_weight_grad<T>(pdz, x, pdw, dw.shape(0));
        });
    });
}

}  // namespace

void register_gemm(py::module_& m, py::module_& testing) {
    using py::arg;
    testing.def("packed_gemm_bias_act", &packed_gemm_bias_act_binding, arg("x").noconvert(), arg("w").noconvert(),
                arg("bias").noconvert(), arg("z").noconvert(), arg("out").noconvert(), arg("activation"),
                arg("param"), arg("bf16"));
    m.def("gemm", &gemm_binding, arg("a").noconvert(), arg("b").noconvert(), arg("c").noconvert(),
          arg("trans_a") = false, arg("trans_b") = false, arg("alpha") = 1.0, arg("beta") = 0.0,
          arg("bf16") = false,
          "c = alpha * op(a) @ op(b) + beta * c; beta == 0 never reads c. bf16=True (float32 arrays): "
          "op(a) and op(b) rounded to bfloat16 (to nearest even) while packed, float32 sums "
          "(docs/bfloat16.md).");
    m.def("gemm_bias_act", &gemm_bias_act_binding, arg("a").noconvert(), arg("b").noconvert(),
          arg("bias").noconvert(), arg("z").noconvert(), arg("out").noconvert(), arg("trans_a") = false,
          arg("trans_b") = false, arg("activation") = "linear", arg("param") = 0.0, arg("bf16") = false,
          "z = op(a) @ op(b) + bias (row broadcast), out = act(z), in one pass; bit-identical to gemm "
          "then bias_act_forward (with the same bf16). z and out are never read; out may be z (then it "
          "holds act(z) alone).");
    m.def("gemm_act_backward", &gemm_act_backward_binding, arg("a").noconvert(), arg("b").noconvert(),
          arg("z").noconvert(), arg("act_z").noconvert(), arg("dx").noconvert(), arg("dz").noconvert(),
          arg("trans_a") = false, arg("trans_b") = false, arg("activation") = "linear", arg("param") = 0.0,
          arg("bf16") = false,
          "dx = op(a) @ op(b), dz = dx * act'(z) (act_z = act(z)) in one pass; bit-identical to gemm "
          "(with the same bf16) then act_backward. dx and dz are never read; dz may be dx itself (then "
          "dx is not kept).");
    m.def("csr_gemm_bias_act", &csr_gemm_bias_act_binding, arg("indptr").noconvert(), arg("indices").noconvert(),
          arg("values").noconvert(), arg("w").noconvert(), arg("bias").noconvert(), arg("z").noconvert(),
          arg("out").noconvert(), arg("activation") = "linear", arg("param") = 0.0,
          "z = x @ w.T + bias, out = act(z) for sparse rows x (CSR: indptr, indices, values; "
          "w.shape[1] columns), each sum in scipy's order; every index is checked. out may be z "
          "(then it holds act(z) alone).");
    m.def("csr_weight_grad", &csr_weight_grad_binding, arg("dz").noconvert(), arg("indptr").noconvert(),
          arg("indices").noconvert(), arg("values").noconvert(), arg("dw").noconvert(),
          "dw = dz.T @ x for sparse rows x (CSR: indptr, indices, values; dw.shape[1] columns), "
          "each sum in scipy's order (x.T @ dz); every index is checked.");
}

}}  // namespace fastmlp::bind
