// fastmlp._core.Predictor: the fused inference path (train/predictor.hpp) over a model's
// flat parameter buffer, which it keeps alive. Checks the program's arrays once at
// creation (program_bindings.hpp) and X and the outputs at every run, then releases the
// GIL for the whole call. No math here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../train/predictor.hpp"
#include "arrays.hpp"
#include "guard_bindings.hpp"
#include "names.hpp"
#include "program_bindings.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace fastmlp { namespace bind {

namespace {

constexpr const char* kRun = "Predictor.run";

// Immutable after creation, per-call scratch: run() may be entered from several threads
// at once. Built without the GIL (it waits for the model's lock, whose holder may need
// the GIL).
class PyPredictor {
public:
    PyPredictor(py::array params, py::object program, py::object loss, py::object lock)
        : params_(std::move(params)) {
        constexpr const char* k = "Predictor";
        with_dtype(params_, k, "params", [&](auto tag) {
            using T = decltype(tag);
            const T* p = input<T>(params_, k, "params", 1);
            train::Program<T> compiled = program_of<T>(ProgramArrays{k, params_, nullptr, keep_}, program, loss);
            const LockPtr weights = lock_or_new(lock);
            const index n_params = params_.size();
            try {
                std::unique_ptr<train::Predictor<T>> pred;
                {
                    py::gil_scoped_release nogil;
                    pred = std::make_unique<train::Predictor<T>>(std::move(compiled), p, n_params, *weights);
                }
                features_ = pred->features();
                for (std::size_t h = 0; h < pred->heads().size(); ++h) {
                    losses_.push_back(pred->heads()[h].loss);
                    outputs_.push_back(pred->outputs(h));
                }
                if constexpr (sizeof(T) == sizeof(float)) f32_ = std::move(pred); else f64_ = std::move(pred);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
        });
    }

    index features() const { return features_; }
    const std::vector<index>& head_outputs() const { return outputs_; }
    std::vector<std::string> head_losses() const {
        std::vector<std::string> names;
        for (const Loss loss : losses_) names.emplace_back(kLossNames[int(loss)]);
        return names;
    }

    // Into the caller's `out`: an array for a one-head program, else a list with one entry
    // per head (an array, or None: not written). Mode 0 logits (n, k); 1 probabilities
    // (n, k); 2 predict's labels (int64 (n,) for softmax cross-entropy, int64 (n, k) for
    // binary cross-entropy, values (n, k) for mse and poisson). False when X holds a NaN or an infinity
    // (the Python layer words the error, as for any input).
    bool run(const py::array& x, int mode, index chunk, const py::object& out) const {
        return f32_ ? run_as<float>(*f32_, x, mode, chunk, out) : run_as<double>(*f64_, x, mode, chunk, out);
    }

private:
    static py::array as_array(const py::handle& item, const std::string& name) {
        if (!py::isinstance<py::array>(item)) throw py::type_error(std::string(kRun) + ": " + name + " must be a numpy array");
        return py::reinterpret_borrow<py::array>(item);
    }

    // Head h's entry as run() fills it for `mode`: T (n, k), or int64 labels; disjoint from
    // X and from the state arrays read at every call.
    template <class T>
    train::HeadOut<T> head_out(py::array& out, const std::string& name, std::size_t h, train::PredictMode mode,
                               const py::array& x) const {
        const Loss loss = losses_[h];
        const index n = x.shape(0), k = outputs_[h];
        if (mode == train::PredictMode::proba && is_regression(loss))
            fail_value(kRun, name + ": probabilities need a classification loss");
        const bool labels = mode == train::PredictMode::labels && !is_regression(loss);
        const bool one_column = labels && loss == Loss::softmax_cross_entropy;
        train::HeadOut<T> result;
        if (labels) result.out_i = output<std::int64_t>(out, kRun, name.c_str(), one_column ? 1 : 2);
        else result.out_t = output<T>(out, kRun, name.c_str(), 2);
        if (out.shape(0) != n || (!one_column && out.shape(1) != k))
            fail_value(kRun, name + " has shape " + shape_of(out) + ", expected (" + std::to_string(n) +
                                 (one_column ? ",)" : ", " + std::to_string(k) + ")"));
        no_overlap(kRun, out, name.c_str(), x, "X");
        for (const py::handle state : keep_)
            no_overlap(kRun, out, name.c_str(), py::reinterpret_borrow<py::array>(state), "a layer's state array");
        return result;
    }

    template <class T>
    bool run_as(const train::Predictor<T>& pred, const py::array& x, int mode, index chunk,
                const py::object& out) const {
        const T* px = input<T>(x, kRun, "X", 2);
        if (x.shape(1) != features_)
            fail_value(kRun, "X has shape " + shape_of(x) + ", expected (n, " + std::to_string(features_) + ")");
        if (mode < 0 || mode > 2) fail_value(kRun, "mode must be 0 (logits), 1 (proba) or 2 (labels)");
        if (chunk < 1) fail_value(kRun, "chunk must be >= 1, got " + std::to_string(chunk));
        const auto m = train::PredictMode(mode);
        const index n = x.shape(0);
        if (!py::isinstance<py::list>(out)) {     // a one-head program's lone array: no tables
            if (losses_.size() != 1)
                throw py::type_error(std::string(kRun) + ": out must be a list of one array (or None) per head");
            py::array array = as_array(out, "out");
            const train::HeadOut<T> one = head_out<T>(array, "out", 0, m, x);
            py::gil_scoped_release nogil;
            return pred.run(px, n, chunk, m, &one);
        }
        const py::list items = out.cast<py::list>();
        if (items.size() != losses_.size())
            fail_value(kRun, "out has " + std::to_string(items.size()) + " entries, expected one per head (" +
                                 std::to_string(losses_.size()) + ")");
        std::vector<py::array> arrays(items.size());
        std::vector<train::HeadOut<T>> outs(items.size());
        for (std::size_t h = 0; h < items.size(); ++h) {
            if (items[h].is_none()) continue;
            const std::string name = "out[" + std::to_string(h) + "]";
            arrays[h] = as_array(items[h], name);
            outs[h] = head_out<T>(arrays[h], name, h, m, x);
            for (std::size_t g = 0; g < h; ++g)
                if (arrays[g]) no_overlap(kRun, arrays[h], name.c_str(), arrays[g], ("out[" + std::to_string(g) + "]").c_str());
        }
        py::gil_scoped_release nogil;
        return pred.run(px, n, chunk, m, outs.data());
    }

    py::array params_;
    py::list keep_;                           // the program's state and constant arrays
    std::unique_ptr<train::Predictor<float>> f32_;
    std::unique_ptr<train::Predictor<double>> f64_;
    std::vector<Loss> losses_;                // per head
    std::vector<index> outputs_;              // per head: its width
    index features_ = 0;
};

}  // namespace

void register_predictor(py::module_& m) {
    using py::arg;
    py::class_<PyPredictor>(m, "Predictor",
                            "The fused inference path over a model's flat parameters (train/predictor.hpp)")
        .def(py::init<py::array, py::object, py::object, py::object>(), arg("params").noconvert(), arg("program"),
             arg("loss") = py::none(), arg("lock") = py::none())
        .def_property_readonly("features", &PyPredictor::features)
        .def_property_readonly("head_outputs", &PyPredictor::head_outputs)
        .def_property_readonly("head_losses", &PyPredictor::head_losses)
        .def("run", &PyPredictor::run, arg("X").noconvert(), arg("mode"), arg("chunk"), arg("out"));
}

}}  // namespace fastmlp::bind
