// fastmlp._core.Trainer and TrainTotals: the fused training path's binding (train/trainer.hpp).
// Checks and views the arrays once at creation (the model's flat parameter and gradient
// buffers, the optimizer's state, each layer's views into them) and the epoch's arrays at
// every run, then releases the GIL for the whole step range. No math here. Also the
// Predictor (train/predictor.hpp), a model's WeightsLock (train/weights_lock.hpp) and the
// SigintWatch (train/interrupt.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "../ops.hpp"
#include "../train/interrupt.hpp"
#include "../train/predictor.hpp"
#include "../train/trainer.hpp"
#include "../train/weights_lock.hpp"
#include "arrays.hpp"
#include "names.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace fastmlp { namespace bind {

namespace {

using train::Buffers;
using train::Divergence;
using train::EpochData;
using train::LayerKind;
using train::LayerSpec;
using train::LayerState;
using train::Totals;
using train::TrainerSpec;
using train::WeightsLock;
using LockPtr = std::shared_ptr<WeightsLock>;

// The lock a trainer or predictor is given: the model's, or a new one for None.
LockPtr lock_or_new(const py::object& lock) {
    return lock.is_none() ? std::make_shared<WeightsLock>() : lock.cast<LockPtr>();
}

// fastmlp._core.SigintWatch: a train::SigintWatch the caller ends with close().
class PyWatch {
public:
    PyWatch() : watch_(std::in_place) {}
    bool installed() const { return flag() != nullptr; }
    const std::atomic<bool>* flag() const { return watch_ ? watch_->flag() : nullptr; }
    void close() { watch_.reset(); }

private:
    std::optional<train::SigintWatch> watch_;
};

// Takes the lock (exclusive or shared) without the GIL when it has to wait: its holder
// may need the GIL to finish.
template <void (WeightsLock::*Lock)(), bool (WeightsLock::*TryLock)()>
void acquire(WeightsLock& lock) {
    if ((lock.*TryLock)()) return;
    py::gil_scoped_release nogil;
    (lock.*Lock)();
}

constexpr const char* kK = "Trainer";

// The element offset of `view` inside `base` (both of dtype T); ValueError unless `view`
// is a C-contiguous array of `shape` lying wholly inside `base`.
template <class T>
index offset_in(const char* who, const py::array& base, const py::object& obj, const std::string& name,
                std::initializer_list<py::ssize_t> shape) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(who) + ": " + name + " must be a numpy array");
    py::array view = obj.cast<py::array>();
    const T* p = input<T>(view, who, name.c_str(), int(shape.size()));
    py::ssize_t i = 0;
    for (py::ssize_t extent : shape)
        if (view.shape(i++) != extent)
            fail_value(who, name + " has shape " + shape_of(view) + ", which does not match the layer's widths");
    const T* b = static_cast<const T*>(base.data());
    if (view.size() > 0 && (p < b || p + view.size() > b + base.size()))
        fail_value(who, name + " is not a view into the flat buffer it belongs to");
    return index(p - b);
}

double number(const py::dict& d, const char* key) { return d[key].cast<double>(); }
index integer(const py::dict& d, const char* key) { return d[key].cast<index>(); }

// What one layer description (a dict, python/fastmlp/fused.py) refers to: the flat
// parameter buffer, the gradient buffer (training only), and the state arrays it names,
// kept alive in `keep`.
struct LayerArrays {
    const char* who;
    const py::array& params;
    const py::array* grads;     // null for inference
    py::list& keep;
};

// A state array of the layer: (n,) of T, kept alive; disjoint from the flat buffers when
// the trainer writes it.
template <class T>
T* state_array(const LayerArrays& arrays, const py::dict& d, const char* key, index n, const std::string& name,
               bool written) {
    const std::string label = name + "['" + key + "']";
    const py::object obj = d[key];
    if (!py::isinstance<py::array>(obj))
        throw py::type_error(std::string(arrays.who) + ": " + label + " must be a numpy array");
    py::array a = obj.cast<py::array>();
    T* p = written ? output<T>(a, arrays.who, label.c_str(), 1) : const_cast<T*>(input<T>(a, arrays.who, label.c_str(), 1));
    if (a.shape(0) != n)
        fail_value(arrays.who, label + " has shape " + shape_of(a) + ", expected (" + std::to_string(n) + ",)");
    if (written) {
        no_overlap(arrays.who, a, label.c_str(), arrays.params, "params");
        if (arrays.grads) no_overlap(arrays.who, a, label.c_str(), *arrays.grads, "grads");
    }
    arrays.keep.append(a);
    return p;
}

// A layer's parameters (W/b, or gamma/beta) as offsets; the gradients must sit at the
// same offsets when training.
template <class T>
void parameter_offsets(const LayerArrays& arrays, const py::dict& d, LayerSpec& l, const std::string& name,
                       const char* w, const char* b, const char* dw, const char* db,
                       std::initializer_list<py::ssize_t> w_shape, py::ssize_t b_size) {
    l.weights_offset = offset_in<T>(arrays.who, arrays.params, d[w], name + "['" + w + "']", w_shape);
    l.bias_offset = offset_in<T>(arrays.who, arrays.params, d[b], name + "['" + b + "']", {b_size});
    if (!arrays.grads) return;
    if (offset_in<T>(arrays.who, *arrays.grads, d[dw], name + "['" + dw + "']", w_shape) != l.weights_offset ||
        offset_in<T>(arrays.who, *arrays.grads, d[db], name + "['" + db + "']", {b_size}) != l.bias_offset)
        fail_value(arrays.who, name + "'s gradients must sit at its parameters' offsets");
}

// The regularizer's lambdas and whether they are divided by the batch size rather than
// the sample count (training only).
void penalty(const LayerArrays& arrays, const py::dict& d, LayerSpec& l) {
    if (!arrays.grads) return;
    l.l1 = number(d, "l1");
    l.l2 = number(d, "l2");
    l.per_batch = d["per_batch"].cast<bool>();
}

// One layer description as a LayerSpec and its state (the kinds of train/layers.hpp).
template <class T>
LayerSpec layer_spec(const LayerArrays& arrays, const py::handle& item, std::size_t i, LayerState<T>& state) {
    const std::string name = "layers[" + std::to_string(i) + "]";
    if (!py::isinstance<py::dict>(item)) throw py::type_error(std::string(arrays.who) + ": " + name + " must be a dict");
    const py::dict d = py::reinterpret_borrow<py::dict>(item);
    LayerSpec l;
    const std::string kind = d["kind"].cast<std::string>();
    auto widths = [&](const char* in, const char* out) {
        l.inputs = integer(d, in);
        l.outputs = integer(d, out);
        if (l.inputs < 1 || l.outputs < 1) fail_value(arrays.who, name + " must have widths >= 1");
    };
    if (kind == "dense" || kind == "maxout") {
        l.kind = kind == "dense" ? LayerKind::dense : LayerKind::maxout;
        widths("inputs", "units");
        if (l.kind == LayerKind::dense) {
            l.activation = activation_of(arrays.who, d["activation"].cast<std::string>());
            l.param = number(d, "param");
        } else {
            l.pieces = integer(d, "pieces");
            if (l.pieces < 1) fail_value(arrays.who, name + " (maxout) needs pieces >= 1");
        }
        const py::ssize_t rows = affine_rows(l);
        parameter_offsets<T>(arrays, d, l, name, "W", "b", "dW", "db", {rows, l.inputs}, rows);
        penalty(arrays, d, l);
    } else if (kind == "dropout") {
        l.kind = LayerKind::dropout;
        l.inputs = l.outputs = integer(d, "width");
        l.rate = number(d, "rate");
        l.seed = d["seed"].cast<std::uint64_t>();
        l.layer_index = d["index"].cast<std::uint64_t>();
    } else if (kind == "batchnorm") {
        l.kind = LayerKind::batchnorm;
        widths("width", "width");
        l.momentum = number(d, "momentum");
        l.eps = number(d, "eps");
        parameter_offsets<T>(arrays, d, l, name, "gamma", "beta", "dgamma", "dbeta", {l.outputs}, l.outputs);
        const bool training = arrays.grads != nullptr;
        state.mean = state_array<T>(arrays, d, "running_mean", l.outputs, name, training);
        state.var = state_array<T>(arrays, d, "running_var", l.outputs, name, training);
    } else if (kind == "normalization") {
        l.kind = LayerKind::normalization;
        widths("width", "width");
        state.mean = state_array<T>(arrays, d, "mean", l.outputs, name, false);
        state.var = state_array<T>(arrays, d, "var", l.outputs, name, false);
        state.inv = state_array<T>(arrays, d, "inv", l.outputs, name, false);
    } else {
        fail_value(arrays.who, name + " has kind '" + kind +
                                   "'; the fused paths run 'dense', 'maxout', 'dropout', 'batchnorm' and "
                                   "'normalization' layers");
    }
    return l;
}

// The flat buffers and, per dtype, the trainer bound to them. The arrays are kept alive
// here; the trainer refuses a second run() at the same time and an order outside [0, n).
class PyTrainer {
public:
    PyTrainer(py::array params, py::array grads, py::object m, py::object v, py::list layers,
              const std::string& loss, const std::string& optimizer, index batch, double b1, double b2,
              double eps, double weight_decay, py::object clipnorm, py::object lock)
        : params_(std::move(params)), grads_(std::move(grads)) {
        with_dtype(params_, kK, "params", [&](auto tag) {
            using T = decltype(tag);
            TrainerSpec spec;
            spec.loss = loss_of(kK, loss);
            spec.optimizer.kind = optimizer_of(kK, optimizer);
            spec.optimizer.b1 = b1;
            spec.optimizer.b2 = b2;
            spec.optimizer.eps = eps;
            spec.optimizer.weight_decay = weight_decay;
            if (!clipnorm.is_none()) {
                spec.optimizer.clipnorm = clipnorm.cast<double>();
                if (!(spec.optimizer.clipnorm > 0)) fail_value(kK, "clipnorm must be > 0 or None");
            }
            if (batch < 1) fail_value(kK, "batch_size must be >= 1, got " + std::to_string(batch));
            spec.batch = batch;
            Buffers<T> buf;
            buf.params = output<T>(params_, kK, "params", 1);
            buf.grads = output<T>(grads_, kK, "grads", 1);
            same_shape(kK, params_, "params", grads_, "grads");
            no_overlap(kK, params_, "params", grads_, "grads");
            spec.params = params_.size();
            buf.m = state<T>(m, uses_m(spec.optimizer.kind), m_, "m");
            buf.v = state<T>(v, uses_v(spec.optimizer.kind), v_, "v");
            if (buf.m && buf.v) no_overlap(kK, m_, "m", v_, "v");
            const LayerArrays arrays{kK, params_, &grads_, keep_};
            std::size_t i = 0;
            for (const py::handle item : layers) {
                buf.states.emplace_back();
                spec.layers.push_back(layer_spec<T>(arrays, item, i++, buf.states.back()));
            }
            try {
                auto trainer = std::make_unique<train::Trainer<T>>(std::move(spec), std::move(buf),
                                                                   lock_or_new(lock));
                if constexpr (sizeof(T) == sizeof(float)) f32_ = std::move(trainer); else f64_ = std::move(trainer);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
            outputs_ = f32_ ? f32_->spec().layers.back().outputs : f64_->spec().layers.back().outputs;
            features_ = f32_ ? f32_->spec().layers.front().inputs : f64_->spec().layers.front().inputs;
            batch_ = batch;
        });
    }

    index batch_size() const { return batch_; }
    index outputs() const { return outputs_; }
    index steps_per_epoch(index n) const { return n < 1 ? 0 : (n + batch_ - 1) / batch_; }

    void run(py::array x, py::array y, py::object w, py::array order, index step_begin, index step_end,
             py::array lrs, long long t0, std::uint64_t model_step0, Totals& totals, const PyWatch* watch) {
        const std::atomic<bool>* stop = watch ? watch->flag() : nullptr;
        if (f32_) run_as<float>(*f32_, x, y, w, order, step_begin, step_end, lrs, t0, model_step0, totals, stop);
        else run_as<double>(*f64_, x, y, w, order, step_begin, step_end, lrs, t0, model_step0, totals, stop);
    }

private:
    template <class T>
    T* state(const py::object& obj, bool needed, py::array& keep, const char* name) {
        if (!needed) return nullptr;
        if (!py::isinstance<py::array>(obj))
            throw py::type_error(std::string(kK) + ": " + name + " must be a numpy array for this optimizer");
        keep = obj.cast<py::array>();
        T* p = output<T>(keep, kK, name, 1);
        same_shape(kK, params_, "params", keep, name);
        no_overlap(kK, keep, name, params_, "params");
        no_overlap(kK, keep, name, grads_, "grads");
        return p;
    }

    // Every buffer the run writes is disjoint from `in`.
    void written_disjoint(const py::array& in, const char* name) const {
        no_overlap(kK, params_, "params", in, name);
        no_overlap(kK, grads_, "grads", in, name);
        if (m_) no_overlap(kK, m_, "m", in, name);
        if (v_) no_overlap(kK, v_, "v", in, name);
    }

    template <class T>
    void run_as(train::Trainer<T>& trainer, py::array& x, py::array& y, const py::object& wobj, py::array& order,
                index step_begin, index step_end, py::array& lrs, long long t0, std::uint64_t model_step0,
                Totals& totals, const std::atomic<bool>* stop) {
        const char* k = "Trainer.run";
        EpochData<T> d;
        d.x = input<T>(x, k, "X", 2);
        d.y = input<T>(y, k, "Y", 2);
        d.n = x.shape(0);
        if (d.n < 1) fail_value(k, "X must have at least one row");
        if (x.shape(1) != features_ || y.shape(0) != d.n || y.shape(1) != outputs_)
            fail_value(k, "shape mismatch: X is " + shape_of(x) + ", Y is " + shape_of(y) + " (expected (n, " +
                              std::to_string(features_) + ") and (n, " + std::to_string(outputs_) + "))");
        py::array w;
        if (!wobj.is_none()) {
            if (!py::isinstance<py::array>(wobj)) throw py::type_error("Trainer.run: W must be a numpy array or None");
            w = wobj.cast<py::array>();
            d.w = input<T>(w, k, "W", 1);
            if (w.shape(0) != d.n)
                fail_value(k, "shape mismatch: X is " + shape_of(x) + ", W is " + shape_of(w) + " (expected (n,))");
            written_disjoint(w, "W");
        }
        d.order = input<std::int64_t>(order, k, "order", 1);
        if (order.shape(0) != d.n)
            fail_value(k, "order has shape " + shape_of(order) + ", expected (" + std::to_string(d.n) + ",)");
        const index steps = steps_per_epoch(d.n);
        if (step_begin < 0 || step_begin > step_end || step_end > steps)
            fail_value(k, "the step range [" + std::to_string(step_begin) + ", " + std::to_string(step_end) +
                              ") must lie within the epoch's " + std::to_string(steps) + " steps");
        const double* rates = input<double>(lrs, k, "lrs", 1);
        if (lrs.shape(0) != step_end - step_begin)
            fail_value(k, "lrs has shape " + shape_of(lrs) + ", expected one rate per step (" +
                              std::to_string(step_end - step_begin) + ",)");
        if (t0 < 1) fail_value(k, "t0 must be >= 1, got " + std::to_string(t0));
        if (totals.outputs != outputs_)
            fail_value(k, "totals are for " + std::to_string(totals.outputs) + " outputs, the model has " +
                              std::to_string(outputs_));
        written_disjoint(x, "X");
        written_disjoint(y, "Y");
        written_disjoint(order, "order");
        written_disjoint(lrs, "lrs");
        py::gil_scoped_release nogil;
        trainer.run(d, step_begin, step_end, rates, t0, model_step0, totals, stop);
    }

    py::array params_, grads_, m_, v_;
    py::list keep_;                           // the layers' state arrays
    std::unique_ptr<train::Trainer<float>> f32_;
    std::unique_ptr<train::Trainer<double>> f64_;
    index batch_ = 0, outputs_ = 0, features_ = 0;
};

// fastmlp._core.Predictor: the fused inference path (train/predictor.hpp) over a model's
// flat parameter buffer, which it keeps alive. Immutable after creation, per-call scratch:
// run() may be entered from several threads at once. Built without the GIL (it waits for
// the model's lock, whose holder may need the GIL).
class PyPredictor {
public:
    PyPredictor(py::array params, py::list layers, const std::string& loss, py::object lock)
        : params_(std::move(params)) {
        constexpr const char* k = "Predictor";
        with_dtype(params_, k, "params", [&](auto tag) {
            using T = decltype(tag);
            const T* p = input<T>(params_, k, "params", 1);
            const LayerArrays arrays{k, params_, nullptr, keep_};
            std::vector<LayerSpec> specs;
            std::vector<LayerState<T>> states;
            std::size_t i = 0;
            for (const py::handle item : layers) {
                states.emplace_back();
                specs.push_back(layer_spec<T>(arrays, item, i++, states.back()));
            }
            const LockPtr weights = lock_or_new(lock);
            const Loss kind = loss_of(k, loss);
            const index n_params = params_.size();
            try {
                std::unique_ptr<train::Predictor<T>> pred;
                {
                    py::gil_scoped_release nogil;
                    pred = std::make_unique<train::Predictor<T>>(specs, states, kind, p, n_params, *weights);
                }
                features_ = pred->features();
                outputs_ = pred->outputs();
                if constexpr (sizeof(T) == sizeof(float)) f32_ = std::move(pred); else f64_ = std::move(pred);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
        });
        loss_ = loss_of(k, loss);
    }

    index features() const { return features_; }
    index outputs() const { return outputs_; }

    // Into the caller's `out`: mode 0 logits (n, k); 1 probabilities (n, k); 2 predict's
    // labels (int64 (n,) for softmax cross-entropy, int64 (n, k) for binary cross-entropy,
    // values (n, k) for mse).
    void run(const py::array& x, int mode, index chunk, py::array out) const {
        if (f32_) run_as<float>(*f32_, x, mode, chunk, out);
        else run_as<double>(*f64_, x, mode, chunk, out);
    }

private:
    // `out` as run() fills it for `mode`: T (n, k), or int64 labels; disjoint from X and
    // from the state arrays read at every call.
    template <class T>
    void out_arrays(py::array& out, train::PredictMode mode, index n, T*& out_t, std::int64_t*& out_i) const {
        const char* k = "Predictor.run";
        const bool labels = mode == train::PredictMode::labels && loss_ != Loss::mse;
        const bool one_column = labels && loss_ == Loss::softmax_cross_entropy;
        if (labels) out_i = output<std::int64_t>(out, k, "out", one_column ? 1 : 2);
        else out_t = output<T>(out, k, "out", 2);
        if (out.shape(0) != n || (!one_column && out.shape(1) != outputs_))
            fail_value(k, "out has shape " + shape_of(out) + ", expected (" + std::to_string(n) +
                              (one_column ? ",)" : ", " + std::to_string(outputs_) + ")"));
        for (const py::handle state : keep_)
            no_overlap(k, out, "out", py::reinterpret_borrow<py::array>(state), "a layer's state array");
    }

    template <class T>
    void run_as(const train::Predictor<T>& pred, const py::array& x, int mode, index chunk, py::array& out) const {
        const char* k = "Predictor.run";
        const T* px = input<T>(x, k, "X", 2);
        if (x.shape(1) != features_)
            fail_value(k, "X has shape " + shape_of(x) + ", expected (n, " + std::to_string(features_) + ")");
        if (mode < 0 || mode > 2) fail_value(k, "mode must be 0 (logits), 1 (proba) or 2 (labels)");
        if (chunk < 1) fail_value(k, "chunk must be >= 1, got " + std::to_string(chunk));
        if (mode == 1 && loss_ == Loss::mse) fail_value(k, "probabilities need a classification loss");
        const index n = x.shape(0);
        const auto m = train::PredictMode(mode);
        T* out_t = nullptr;
        std::int64_t* out_i = nullptr;
        out_arrays<T>(out, m, n, out_t, out_i);
        no_overlap(k, out, "out", x, "X");
        py::gil_scoped_release nogil;
        pred.run(px, n, chunk, m, out_t, out_i);
    }

    py::array params_;
    py::list keep_;                           // the layers' state arrays
    std::unique_ptr<train::Predictor<float>> f32_;
    std::unique_ptr<train::Predictor<double>> f64_;
    Loss loss_ = Loss::softmax_cross_entropy;
    index features_ = 0, outputs_ = 0;
};

py::array_t<double> vector_copy(const std::vector<double>& v) { return py::array_t<double>(v.size(), v.data()); }

}  // namespace

void register_train(py::module_& m) {
    using py::arg;
    py::class_<Totals>(m, "TrainTotals",
                       "Running totals of a fused training run's completed steps (train/trainer.hpp)")
        .def(py::init<index>(), arg("outputs"))
        .def("reset", &Totals::reset)
        .def_readonly("outputs", &Totals::outputs)
        .def_readonly("steps", &Totals::steps)
        .def_readonly("loss_sum", &Totals::loss_sum)
        .def_readonly("weight_sum", &Totals::weight_sum)
        .def_readonly("penalty_sum", &Totals::penalty_sum)
        .def_readonly("correct", &Totals::correct)
        .def_readonly("count", &Totals::count)
        .def_property_readonly("sse", [](const Totals& t) { return vector_copy(t.sse); })
        .def_property_readonly("sum", [](const Totals& t) { return vector_copy(t.sum); })
        .def_property_readonly("sum_sq", [](const Totals& t) { return vector_copy(t.sum_sq); })
        .def_readonly("diverged_step", &Totals::diverged_step)
        .def_property_readonly("diverged", [](const Totals& t) -> py::object {
            if (t.diverged == Divergence::loss) return py::str("loss");
            if (t.diverged == Divergence::gradient) return py::str("gradient");
            return py::none();
        })
        .def_readonly("diverged_value", &Totals::diverged_value)
        .def_readonly("diverged_rows", &Totals::diverged_rows)
        .def_readonly("interrupted", &Totals::interrupted);

    py::class_<WeightsLock, LockPtr>(m, "WeightsLock",
                                      "A model's readers/writer lock over its weights (train/weights_lock.hpp)")
        .def(py::init<>())
        .def("lock", &acquire<&WeightsLock::lock, &WeightsLock::try_lock>)
        .def("unlock", &WeightsLock::unlock)
        .def("lock_shared", &acquire<&WeightsLock::lock_shared, &WeightsLock::try_lock_shared>)
        .def("unlock_shared", &WeightsLock::unlock_shared);

    py::class_<PyWatch>(m, "SigintWatch", "SIGINT sets a flag fused runs read (train/interrupt.hpp); close() ends it")
        .def(py::init<>())
        .def_property_readonly("installed", &PyWatch::installed)
        .def("close", &PyWatch::close);

    py::class_<PyTrainer>(m, "Trainer", "The fused training path over a model's flat buffers (train/trainer.hpp)")
        .def(py::init<py::array, py::array, py::object, py::object, py::list, const std::string&,
                      const std::string&, index, double, double, double, double, py::object, py::object>(),
             arg("params").noconvert(), arg("grads").noconvert(), arg("m"), arg("v"), arg("layers"), arg("loss"),
             arg("optimizer"), arg("batch_size"), arg("b1") = 0.0, arg("b2") = 0.0, arg("eps") = 0.0,
             arg("weight_decay") = 0.0, arg("clipnorm") = py::none(), arg("lock") = py::none())
        .def_property_readonly("batch_size", &PyTrainer::batch_size)
        .def_property_readonly("outputs", &PyTrainer::outputs)
        .def("steps_per_epoch", &PyTrainer::steps_per_epoch, arg("n"))
        .def("run", &PyTrainer::run, arg("X").noconvert(), arg("Y").noconvert(), arg("W"),
             arg("order").noconvert(), arg("step_begin"), arg("step_end"), arg("lrs").noconvert(), arg("t0"),
             arg("model_step"), arg("totals"), arg("watch") = py::none());

    py::class_<PyPredictor>(m, "Predictor",
                            "The fused inference path over a model's flat parameters (train/predictor.hpp)")
        .def(py::init<py::array, py::list, const std::string&, py::object>(), arg("params").noconvert(),
             arg("layers"), arg("loss"), arg("lock") = py::none())
        .def_property_readonly("features", &PyPredictor::features)
        .def_property_readonly("outputs", &PyPredictor::outputs)
        .def("run", &PyPredictor::run, arg("X").noconvert(), arg("mode"), arg("chunk"), arg("out").noconvert());
}

}}  // namespace fastmlp::bind
