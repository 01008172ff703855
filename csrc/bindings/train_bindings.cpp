// fastmlp._core.Trainer and TrainTotals: the fused training path's binding (train/trainer.hpp).
// Checks and views the arrays once at creation (the model's flat parameter and gradient
// buffers, the optimizer's state, the program compiled from the layers' plans) and the epoch's arrays at
// every run, then releases the GIL for the whole step range. No math here. Also the
// Predictor (train/predictor.hpp), a model's WeightsLock (train/weights_lock.hpp) and the
// SigintWatch (train/interrupt.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

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
using train::BufferRole;
using train::OpRecord;
using train::Program;
using train::HeadTotals;
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
// is a 1-D C-contiguous array of `width` elements lying wholly inside `base`.
template <class T>
index offset_in(const char* who, const py::array& base, const py::object& obj, const std::string& name, index width) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(who) + ": " + name + " must be a numpy array");
    py::array view = obj.cast<py::array>();
    const T* p = input<T>(view, who, name.c_str(), 1);
    if (view.shape(0) != width)
        fail_value(who, name + " has shape " + shape_of(view) + ", expected (" + std::to_string(width) + ",)");
    const T* b = static_cast<const T*>(base.data());
    if (view.size() > 0 && (p < b || p + view.size() > b + base.size()))
        fail_value(who, name + " is not a view into the flat buffer it belongs to");
    return index(p - b);
}

// A program's arrays: the flat parameter buffer, the gradient buffer (training only), and
// the state and constant arrays, kept alive in `keep`.
struct ProgramArrays {
    const char* who;
    const py::array& params;
    const py::array* grads;     // null for inference
    py::list& keep;
};

// A state or constant buffer's array: (width,) of T, kept alive; a state array the
// trainer writes is disjoint from the flat buffers.
template <class T>
T* buffer_array(const ProgramArrays& arrays, const py::object& obj, index width, const std::string& name,
                bool written) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(arrays.who) + ": " + name + " must be a numpy array");
    py::array a = obj.cast<py::array>();
    T* p = written ? output<T>(a, arrays.who, name.c_str(), 1) : const_cast<T*>(input<T>(a, arrays.who, name.c_str(), 1));
    if (a.shape(0) != width)
        fail_value(arrays.who, name + " has shape " + shape_of(a) + ", expected (" + std::to_string(width) + ",)");
    if (written) {
        no_overlap(arrays.who, a, name.c_str(), arrays.params, "params");
        if (arrays.grads) no_overlap(arrays.who, a, name.c_str(), *arrays.grads, "grads");
    }
    arrays.keep.append(a);
    return p;
}

// The buffers of a program dict: "roles" (names), "shapes" int64 (n, 3) of (width,
// per_row, int32), "arrays" (the views and arrays the roles need, else None).
template <class T>
void program_buffers(const ProgramArrays& arrays, const py::dict& d, Program<T>& p) {
    const py::list roles = d["roles"].cast<py::list>(), items = d["arrays"].cast<py::list>();
    py::array shapes_array = d["shapes"].cast<py::array>();
    const std::int64_t* shapes = input<std::int64_t>(shapes_array, arrays.who, "program['shapes']", 2);
    const std::size_t n = roles.size();
    if (items.size() != n || shapes_array.shape(0) != py::ssize_t(n) || shapes_array.shape(1) != 3)
        fail_value(arrays.who, "the program's roles, shapes (n, 3) and arrays must describe one set of buffers");
    for (std::size_t i = 0; i < n; ++i) {
        const std::string name = "buffers[" + std::to_string(i) + "]";
        train::BufferSpec b;
        b.role = parse_name<BufferRole>(arrays.who, "buffer role", roles[i].cast<std::string>(), train::kBufferRoleNames);
        b.width = index(shapes[3 * i]);
        b.per_row = shapes[3 * i + 1] != 0;
        b.int32 = shapes[3 * i + 2] != 0;
        const py::object item = items[i];
        T* array = nullptr;
        if (b.role == BufferRole::parameter) b.offset = offset_in<T>(arrays.who, arrays.params, item, name, b.width);
        if (b.role == BufferRole::gradient) {
            if (!arrays.grads) fail_value(arrays.who, name + ": an inference program has no gradients");
            b.offset = offset_in<T>(arrays.who, *arrays.grads, item, name, b.width);
        }
        if (b.role == BufferRole::state || b.role == BufferRole::constant)
            array = buffer_array<T>(arrays, item, b.width, name, b.role == BufferRole::state && arrays.grads);
        p.buffers.push_back(b);
        p.arrays.push_back(array);
    }
}

// One phase's op records: "codes" (names), "args" int64 (n, 7) of buffer ids (-1: none),
// "constants" float64 (n, 3), "keys" uint64 (n, 2) (the layer's seed and index),
// "activations" (names).
std::vector<OpRecord> op_records(const char* who, const py::dict& d, const char* phase) {
    const py::list codes = d["codes"].cast<py::list>(), acts = d["activations"].cast<py::list>();
    py::array args_a = d["args"].cast<py::array>(), consts_a = d["constants"].cast<py::array>(),
              keys_a = d["keys"].cast<py::array>();
    const std::int64_t* args = input<std::int64_t>(args_a, who, "args", 2);
    const double* consts = input<double>(consts_a, who, "constants", 2);
    const std::uint64_t* keys = input<std::uint64_t>(keys_a, who, "keys", 2);
    const py::ssize_t n = py::ssize_t(codes.size());
    if (py::ssize_t(acts.size()) != n || args_a.shape(0) != n || args_a.shape(1) != train::kMaxArgs ||
        consts_a.shape(0) != n || consts_a.shape(1) != 3 || keys_a.shape(0) != n || keys_a.shape(1) != 2)
        fail_value(who, std::string("the ") + phase + " records must have one row per op: codes, activations, args (n, " +
                            std::to_string(train::kMaxArgs) + "), constants (n, 3), keys (n, 2)");
    std::vector<OpRecord> ops(static_cast<std::size_t>(n));
    for (py::ssize_t i = 0; i < n; ++i) {
        OpRecord& op = ops[std::size_t(i)];
        op.code = op_code_of(who, codes[std::size_t(i)].cast<std::string>());
        op.activation = activation_of(who, acts[std::size_t(i)].cast<std::string>());
        for (int j = 0; j < train::kMaxArgs; ++j) op.args[j] = int(args[i * train::kMaxArgs + j]);
        for (int j = 0; j < 3; ++j) op.constants[j] = consts[i * 3 + j];
        op.seed = keys[i * 2];
        op.layer = keys[i * 2 + 1];
    }
    return ops;
}

// A program dict (python/fastmlp/train/fused.py compile) as a train::Program: the
// buffers, the phases' op records, the input, output and loss gradient buffer ids.
template <class T>
Program<T> program_of(const ProgramArrays& arrays, const py::object& obj) {
    if (!py::isinstance<py::dict>(obj)) throw py::type_error(std::string(arrays.who) + ": program must be a dict");
    const py::dict d = py::reinterpret_borrow<py::dict>(obj);
    Program<T> p;
    program_buffers<T>(arrays, d, p);
    p.forward = op_records(arrays.who, d["forward"].cast<py::dict>(), "forward");
    if (arrays.grads) {
        p.backward = op_records(arrays.who, d["backward"].cast<py::dict>(), "backward");
        p.penalty = op_records(arrays.who, d["penalty"].cast<py::dict>(), "penalty");
    }
    p.input = d["input"].cast<int>();
    p.output = d["output"].cast<int>();
    return p;
}

// A training program's loss heads: the dict's "heads" (a list of dicts: "loss" (a name),
// "output" and "loss_grad" (buffer ids), "weight"), or without it one head of `loss`
// (None when the program lists its heads) over "output" and "loss_grad", weight 1.
std::vector<train::LossHead> loss_heads(const char* who, const py::dict& d, const py::object& loss) {
    std::vector<train::LossHead> heads;
    if (!d.contains("heads")) {
        if (loss.is_none()) fail_value(who, "loss is needed for a program without heads");
        train::LossHead head;
        head.loss = loss_of(who, loss.cast<std::string>());
        head.output = d["output"].cast<int>();
        head.loss_grad = d["loss_grad"].cast<int>();
        heads.push_back(head);
        return heads;
    }
    if (!loss.is_none()) fail_value(who, "the program lists its heads' losses: loss must be None");
    for (const py::handle item : d["heads"].cast<py::list>()) {
        const py::dict h = item.cast<py::dict>();
        train::LossHead head;
        head.loss = loss_of(who, h["loss"].cast<std::string>());
        head.output = h["output"].cast<int>();
        head.loss_grad = h["loss_grad"].cast<int>();
        head.weight = h["weight"].cast<double>();
        heads.push_back(head);
    }
    return heads;
}

// The flat buffers and, per dtype, the trainer bound to them. The arrays are kept alive
// here; the trainer refuses a second run() at the same time and an order outside [0, n).
class PyTrainer {
public:
    PyTrainer(py::array params, py::array grads, py::object m, py::object v, py::object program,
              py::object loss, const std::string& optimizer, index batch, double b1, double b2,
              double eps, double weight_decay, py::object clipnorm, py::object lock)
        : params_(std::move(params)), grads_(std::move(grads)) {
        with_dtype(params_, kK, "params", [&](auto tag) {
            using T = decltype(tag);
            TrainerSpec<T> spec;
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
            spec.program = program_of<T>(ProgramArrays{kK, params_, &grads_, keep_}, program);
            spec.program.heads = loss_heads(kK, program.cast<py::dict>(), loss);
            try {
                auto trainer = std::make_unique<train::Trainer<T>>(std::move(spec), std::move(buf),
                                                                   lock_or_new(lock));
                const Program<T>& compiled = trainer->spec().program;
                for (const train::LossHead& h : compiled.heads) head_outputs_.push_back(compiled.width(h.output));
                targets_ = compiled.targets();
                features_ = compiled.features();
                if constexpr (sizeof(T) == sizeof(float)) f32_ = std::move(trainer); else f64_ = std::move(trainer);
            } catch (const std::invalid_argument& e) {
                throw py::value_error(e.what());
            }
            batch_ = batch;
        });
    }

    index batch_size() const { return batch_; }
    const std::vector<index>& head_outputs() const { return head_outputs_; }
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
        if (x.shape(1) != features_ || y.shape(0) != d.n || y.shape(1) != targets_)
            fail_value(k, "shape mismatch: X is " + shape_of(x) + ", Y is " + shape_of(y) + " (expected (n, " +
                              std::to_string(features_) + ") and (n, " + std::to_string(targets_) + "))");
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
        bool same = totals.heads.size() == head_outputs_.size();
        for (std::size_t h = 0; same && h < head_outputs_.size(); ++h) same = totals.heads[h].outputs == head_outputs_[h];
        if (!same) fail_value(k, "totals are not for this trainer's heads: make them with new_totals()");
        written_disjoint(x, "X");
        written_disjoint(y, "Y");
        written_disjoint(order, "order");
        written_disjoint(lrs, "lrs");
        py::gil_scoped_release nogil;
        trainer.run(d, step_begin, step_end, rates, t0, model_step0, totals, stop);
    }

    py::array params_, grads_, m_, v_;
    py::list keep_;                           // the program's state and constant arrays
    std::unique_ptr<train::Trainer<float>> f32_;
    std::unique_ptr<train::Trainer<double>> f64_;
    std::vector<index> head_outputs_;          // each loss head's width
    index batch_ = 0, targets_ = 0, features_ = 0;
};

// fastmlp._core.Predictor: the fused inference path (train/predictor.hpp) over a model's
// flat parameter buffer, which it keeps alive. Immutable after creation, per-call scratch:
// run() may be entered from several threads at once. Built without the GIL (it waits for
// the model's lock, whose holder may need the GIL).
class PyPredictor {
public:
    PyPredictor(py::array params, py::object program, const std::string& loss, py::object lock)
        : params_(std::move(params)) {
        constexpr const char* k = "Predictor";
        with_dtype(params_, k, "params", [&](auto tag) {
            using T = decltype(tag);
            const T* p = input<T>(params_, k, "params", 1);
            Program<T> compiled = program_of<T>(ProgramArrays{k, params_, nullptr, keep_}, program);
            const LockPtr weights = lock_or_new(lock);
            const Loss kind = loss_of(k, loss);
            const index n_params = params_.size();
            try {
                std::unique_ptr<train::Predictor<T>> pred;
                {
                    py::gil_scoped_release nogil;
                    pred = std::make_unique<train::Predictor<T>>(std::move(compiled), kind, p, n_params, *weights);
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
    // values (n, k) for mse). False when X holds a NaN or an infinity (the Python layer
    // words the error, as for any input).
    bool run(const py::array& x, int mode, index chunk, py::array out) const {
        return f32_ ? run_as<float>(*f32_, x, mode, chunk, out) : run_as<double>(*f64_, x, mode, chunk, out);
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
    bool run_as(const train::Predictor<T>& pred, const py::array& x, int mode, index chunk, py::array& out) const {
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
        return pred.run(px, n, chunk, m, out_t, out_i);
    }

    py::array params_;
    py::list keep_;                           // the program's state and constant arrays
    std::unique_ptr<train::Predictor<float>> f32_;
    std::unique_ptr<train::Predictor<double>> f64_;
    Loss loss_ = Loss::softmax_cross_entropy;
    index features_ = 0, outputs_ = 0;
};

py::array_t<double> vector_copy(const std::vector<double>& v) { return py::array_t<double>(v.size(), v.data()); }

}  // namespace

void register_train(py::module_& m) {
    using py::arg;
    py::class_<HeadTotals>(m, "HeadTotals", "One loss head's running totals in a TrainTotals")
        .def_readonly("outputs", &HeadTotals::outputs)
        .def_readonly("loss_sum", &HeadTotals::loss_sum)
        .def_readonly("correct", &HeadTotals::correct)
        .def_readonly("count", &HeadTotals::count)
        .def_property_readonly("sse", [](const HeadTotals& t) { return vector_copy(t.sse); })
        .def_property_readonly("sum", [](const HeadTotals& t) { return vector_copy(t.sum); })
        .def_property_readonly("sum_sq", [](const HeadTotals& t) { return vector_copy(t.sum_sq); });

    // loss_sum, correct, count: the one head's, of a trainer with a single loss head.
    auto one_head = [](const Totals& t) -> const HeadTotals& {
        if (t.heads.size() != 1) throw py::value_error("TrainTotals: several loss heads: read heads[i]");
        return t.heads[0];
    };
    py::class_<Totals>(m, "TrainTotals",
                       "Running totals of a fused training run's completed steps (train/trainer.hpp)")
        .def(py::init<const std::vector<index>&>(), arg("head_outputs"))
        .def("reset", &Totals::reset)
        .def_readonly("heads", &Totals::heads)
        .def_readonly("steps", &Totals::steps)
        .def_property_readonly("loss_sum", [one_head](const Totals& t) { return one_head(t).loss_sum; })
        .def_property_readonly("correct", [one_head](const Totals& t) { return one_head(t).correct; })
        .def_property_readonly("count", [one_head](const Totals& t) { return one_head(t).count; })
        .def_readonly("weight_sum", &Totals::weight_sum)
        .def_readonly("penalty_sum", &Totals::penalty_sum)
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
        .def(py::init<py::array, py::array, py::object, py::object, py::object, py::object,
                      const std::string&, index, double, double, double, double, py::object, py::object>(),
             arg("params").noconvert(), arg("grads").noconvert(), arg("m"), arg("v"), arg("program"), arg("loss"),
             arg("optimizer"), arg("batch_size"), arg("b1") = 0.0, arg("b2") = 0.0, arg("eps") = 0.0,
             arg("weight_decay") = 0.0, arg("clipnorm") = py::none(), arg("lock") = py::none())
        .def_property_readonly("batch_size", &PyTrainer::batch_size)
        .def_property_readonly("head_outputs", &PyTrainer::head_outputs)
        .def("steps_per_epoch", &PyTrainer::steps_per_epoch, arg("n"))
        .def("run", &PyTrainer::run, arg("X").noconvert(), arg("Y").noconvert(), arg("W"),
             arg("order").noconvert(), arg("step_begin"), arg("step_end"), arg("lrs").noconvert(), arg("t0"),
             arg("model_step"), arg("totals"), arg("watch") = py::none());

    py::class_<PyPredictor>(m, "Predictor",
                            "The fused inference path over a model's flat parameters (train/predictor.hpp)")
        .def(py::init<py::array, py::object, const std::string&, py::object>(), arg("params").noconvert(),
             arg("program"), arg("loss"), arg("lock") = py::none())
        .def_property_readonly("features", &PyPredictor::features)
        .def_property_readonly("outputs", &PyPredictor::outputs)
        .def("run", &PyPredictor::run, arg("X").noconvert(), arg("mode"), arg("chunk"), arg("out").noconvert());
}

}}  // namespace fastmlp::bind
