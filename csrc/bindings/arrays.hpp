// Array checks for the bindings: the exact dtype (never a converting copy), C order, the
// write flag for outputs, no overlap between outputs and inputs. Messages name the kernel,
// the argument and the shapes.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>

#include "../common.hpp"
#include "../kernels/sparse.hpp"

namespace fastmlp { namespace bind {

namespace py = pybind11;

inline std::string shape_of(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

inline std::string strides_of(const py::array& a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.strides(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

[[noreturn]] inline void fail_value(const std::string& kernel, const std::string& msg) {
    throw py::value_error(kernel + ": " + msg);
}

template <class T> const char* dtype_name() {
    if (std::is_integral<T>::value) return sizeof(T) == 4 ? "int32" : "int64";
    return sizeof(T) == 4 ? "float32" : "float64";
}

// Checks dtype T, C order and ndim of a; returns its data.
template <class T>
const T* input(const py::array& a, const char* kernel, const char* name, int ndim) {
    if (!py::array_t<T>::check_(a))
        throw py::type_error(std::string(kernel) + ": " + name + " has dtype " +
                             std::string(py::str(a.dtype())) + ", expected " + dtype_name<T>());
    if (a.ndim() != ndim)
        fail_value(kernel, std::string(name) + " must be " + std::to_string(ndim) + "-D, got shape " + shape_of(a));
    if (!(a.flags() & py::array::c_style))
        fail_value(kernel, std::string(name) + " must be C-contiguous (got strides " + strides_of(a) + ")");
    return static_cast<const T*>(a.data());
}

template <class T>
T* output(py::array& a, const char* kernel, const char* name, int ndim) {
    input<T>(a, kernel, name, ndim);
    if (!a.writeable()) fail_value(kernel, std::string(name) + " is read-only");
    return static_cast<T*>(a.mutable_data());
}

inline bool overlaps(const py::array& a, const py::array& b) {
    const char* a0 = static_cast<const char*>(a.data());
    const char* b0 = static_cast<const char*>(b.data());
    return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

inline void no_overlap(const char* kernel, const py::array& out, const char* out_name,
                       const py::array& in, const char* in_name) {
    if (overlaps(out, in)) fail_value(kernel, std::string(out_name) + " overlaps " + in_name);
}

inline void same_shape(const char* kernel, const py::array& a, const char* an,
                       const py::array& b, const char* bn) {
    bool same = a.ndim() == b.ndim();
    for (py::ssize_t i = 0; same && i < a.ndim(); ++i) same = a.shape(i) == b.shape(i);
    if (!same)
        fail_value(kernel, std::string("shape mismatch: ") + an + " is " + shape_of(a) + ", " + bn +
                               " is " + shape_of(b) + " (they must be equal)");
}

// out may be exactly `in` (same data and shape) but must not partly overlap it.
inline void same_or_disjoint(const char* kernel, const py::array& out, const char* out_name,
                             const py::array& in, const char* in_name) {
    if (out.data() != in.data()) no_overlap(kernel, out, out_name, in, in_name);
}

using Named = std::pair<const py::array*, const char*>;

// Every output disjoint from every other array given (inputs and outputs).
inline void all_disjoint(const char* kernel, std::initializer_list<Named> outputs, std::initializer_list<Named> inputs) {
    for (auto o = outputs.begin(); o != outputs.end(); ++o) {
        for (auto p = o + 1; p != outputs.end(); ++p) no_overlap(kernel, *o->first, o->second, *p->first, p->second);
        for (const auto& in : inputs) no_overlap(kernel, *o->first, o->second, *in.first, in.second);
    }
}

// a is 1-D with x.shape[1] elements (a per-feature vector of x).
inline void feature_vector(const char* kernel, const py::array& a, const char* an, const py::array& x,
                           const char* xn) {
    if (a.shape(0) != x.shape(1))
        fail_value(kernel, std::string("shape mismatch: ") + xn + " is " + shape_of(x) + ", " + an + " is " +
                               shape_of(a) + " (" + an + " must have " + xn + ".shape[1] elements)");
}

// Calls f(T{}) with T the float type of `a`'s dtype; TypeError for any other dtype.
template <class F>
auto with_dtype(const py::array& a, const char* kernel, const char* name, F f) {
    if (py::array_t<float>::check_(a)) return f(float{});
    if (py::array_t<double>::check_(a)) return f(double{});
    throw py::type_error(std::string(kernel) + ": " + name + " has dtype " +
                         std::string(py::str(a.dtype())) + ", expected float32 or float64");
}

// Calls f(I{}) with I the index type of a CSR matrix's indptr and indices (both int32 or
// both int64); TypeError otherwise.
template <class F>
auto with_index_dtype(const py::array& indptr, const py::array& indices, const char* kernel, F f) {
    if (py::array_t<std::int32_t>::check_(indptr) && py::array_t<std::int32_t>::check_(indices))
        return f(std::int32_t{});
    if (py::array_t<std::int64_t>::check_(indptr) && py::array_t<std::int64_t>::check_(indices))
        return f(std::int64_t{});
    throw py::type_error(std::string(kernel) + ": sparse X's indptr and indices have dtypes " +
                         std::string(py::str(indptr.dtype())) + " and " + std::string(py::str(indices.dtype())) +
                         ", expected both int32 or both int64");
}

// The CSR rows (indptr, indices, values) with `cols` columns, every array checked (1-D,
// C order, values of dtype T, indices of type I) and every index checked (check_csr), or
// with `columns` false only indptr (check_csr_indptr: the caller checks the column
// indices of the rows it reads).
template <class T, class I>
CsrRows<T, I> csr_input(const py::array& indptr, const py::array& indices, const py::array& values, index cols,
                        const char* kernel, bool columns = true) {
    CsrRows<T, I> x;
    x.indptr = input<I>(indptr, kernel, "indptr", 1);
    x.indices = input<I>(indices, kernel, "indices", 1);
    x.values = input<T>(values, kernel, "values", 1);
    if (indices.shape(0) != values.shape(0))
        fail_value(kernel, "sparse X's indices " + shape_of(indices) + " and values " + shape_of(values) +
                               " must have one entry each");
    if (indptr.shape(0) < 1) fail_value(kernel, "sparse X's indptr must hold rows + 1 >= 1 entries");
    x.rows = indptr.shape(0) - 1;
    x.cols = cols;
    // std::invalid_argument reaches Python as ValueError
    if (columns) check_csr(x, values.shape(0), kernel);
    else check_csr_indptr(x, values.shape(0), kernel);
    return x;
}

}}  // namespace fastmlp::bind
