// fastmlp._core.Trainer and TrainTotals: the fused training path's binding (train/trainer.hpp).
// Checks and views the arrays once at creation (the model's flat parameter and gradient
// buffers, the optimizer's state, the program compiled from the layers' plans:
// program_bindings.hpp) and the epoch's arrays at every run, then releases the GIL for the
// whole step range. No math here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../ops.hpp"
#include "../train/shuffle.hpp"
#include "../train/trainer.hpp"
#include "arrays.hpp"
#include "guard_bindings.hpp"
#include "names.hpp"
#include "program_bindings.hpp"
#include "register.hpp"

namespace py = pybind11;

namespace fastmlp { namespace bind {

namespace {

using train::Buffers;
using train::Divergence;
using train::EpochData;
using train::HeadTotals;
using train::Program;
using train::Totals;
using train::TrainerSpec;

constexpr const char* kK = "Trainer";

// The flat buffers and, per dtype, the trainer bound to them. The arrays are kept alive
// here; the trainer refuses a second run() at the same time and an order outside [0, n).
class PyTrainer {
public:
    PyTrainer(py::array params, py::array grads, py::object m, py::object v, py::object program,
              py::object loss, const std::string& optimizer, index batch, double b1, double b2,
              double eps, double weight_decay, bool eps_before_correction, py::object clipnorm,
              py::object lock)
        : params_(std::move(params)), grads_(std::move(grads)) {
        with_dtype(params_, kK, "params", [&](auto tag) {
            using T = decltype(tag);
            TrainerSpec<T> spec;
            spec.optimizer.kind = optimizer_of(kK, optimizer);
            spec.optimizer.b1 = b1;
            spec.optimizer.b2 = b2;
            spec.optimizer.eps = eps;
            spec.optimizer.weight_decay = weight_decay;
            spec.optimizer.eps_before_correction = eps_before_correction;
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
            spec.program = program_of<T>(ProgramArrays{kK, params_, &grads_, keep_}, program, loss);
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

    void run(py::object x, py::array y, py::object w, py::array order, index step_begin, index step_end,
             py::array lrs, long long t0, std::uint64_t model_step0, Totals& totals, const PyWatch* watch,
             bool save_first, index n_samples) {
        const std::atomic<bool>* stop = watch ? watch->flag() : nullptr;
        const RunArgs a{step_begin, step_end, t0, model_step0, n_samples, stop, save_first};
        if (f32_) run_as<float>(*f32_, x, y, w, order, lrs, a, totals);
        else run_as<double>(*f64_, x, y, w, order, lrs, a, totals);
    }

    void restore_saved() {
        try {
            if (f32_) f32_->restore_saved();
            else f64_->restore_saved();
        } catch (const std::logic_error& e) {
            throw py::value_error(e.what());
        }
    }

    // Step `step`'s loss and gradient without the update (Trainer::gradient), GIL released.
    train::StepGradient gradient(py::object x, py::array y, py::object w, py::array order, index step,
                                 std::uint64_t model_step, const train::Shard& shard) {
        if (f32_) return gradient_as<float>(*f32_, x, y, w, order, step, model_step, shard);
        return gradient_as<double>(*f64_, x, y, w, order, step, model_step, shard);
    }

    // After gradient(): per head, its loss sum and a copy of its logits of `rows` rows.
    py::list outputs(index rows) const {
        py::list heads;
        for (std::size_t h = 0; h < head_outputs_.size(); ++h) {
            if (f32_) heads.append(head_output<float>(*f32_, h, rows));
            else heads.append(head_output<double>(*f64_, h, rows));
        }
        return heads;
    }

private:
    template <class T>
    py::tuple head_output(const train::Trainer<T>& trainer, std::size_t h, index rows) const {
        if (rows < 0 || rows > batch_) fail_value("Trainer.outputs", "rows must lie in [0, batch_size]");
        py::array_t<T> logits({rows, head_outputs_[h]});
        std::copy_n(trainer.head_logits(h), rows * head_outputs_[h], logits.mutable_data());
        return py::make_tuple(trainer.head_loss(h), logits);
    }

    template <class T>
    train::StepGradient gradient_as(train::Trainer<T>& trainer, const py::object& x, py::array& y, const py::object& wobj,
                                    py::array& order, index step, std::uint64_t model_step,
                                    const train::Shard& shard) {
        const char* k = "Trainer.gradient";
        py::array w;
        const EpochData<T> d = epoch_data<T>(k, x, y, wobj, w, order);
        if (step < 0 || step >= steps_per_epoch(d.visits))
            fail_value(k, "step " + std::to_string(step) + " must lie within the epoch's " +
                              std::to_string(steps_per_epoch(d.visits)) + " steps");
        if (shard.divisor < 0 || shard.first_row < 0) fail_value(k, "divisor and first_row must be >= 0");
        py::gil_scoped_release nogil;
        return trainer.gradient(d, step, model_step, shard);
    }

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

    // X viewed into d (d.n its rows): a dense (n, features) array, or sparse rows as the
    // tuple (indptr, indices, values) of a CSR matrix with `features` columns, indptr
    // checked (the trainer checks the column indices of the rows a run reads). Returns X's
    // shape for messages; `arrays` gets X's arrays.
    template <class T>
    std::string x_of(const char* k, const py::object& x, EpochData<T>& d, py::list& arrays) const {
        if (py::isinstance<py::tuple>(x) && py::len(x) == 3) {
            const py::tuple t = x.cast<py::tuple>();
            for (const py::handle a : t) {
                if (!py::isinstance<py::array>(a))
                    throw py::type_error(std::string(k) + ": sparse X must be a tuple of numpy arrays (indptr, indices, values)");
                arrays.append(a);
            }
            const py::array indptr = t[0].cast<py::array>(), indices = t[1].cast<py::array>(), values = t[2].cast<py::array>();
            with_index_dtype(indptr, indices, k, [&](auto itag) {
                using I = decltype(itag);
                const CsrRows<T, I> rows = csr_input<T, I>(indptr, indices, values, features_, k, false);
                if constexpr (sizeof(I) == 4) d.x32 = rows; else d.x64 = rows;
                d.n = rows.rows;
            });
            return "sparse (" + std::to_string(d.n) + ", " + std::to_string(features_) + ")";
        }
        if (!py::isinstance<py::array>(x))
            throw py::type_error(std::string(k) + ": X must be a numpy array or the tuple (indptr, indices, values) of sparse rows");
        const py::array a = x.cast<py::array>();
        arrays.append(a);
        d.x = input<T>(a, k, "X", 2);
        d.n = a.shape(0);
        if (a.shape(1) != features_)
            fail_value(k, "shape mismatch: X is " + shape_of(a) + " (expected (n, " + std::to_string(features_) + "))");
        return shape_of(a);
    }

    // The epoch's arrays checked and viewed (`w` keeps the row weights' array).
    template <class T>
    EpochData<T> epoch_data(const char* k, const py::object& x, py::array& y, const py::object& wobj, py::array& w,
                            py::array& order) const {
        EpochData<T> d;
        py::list x_arrays;
        const std::string x_shape = x_of(k, x, d, x_arrays);
        d.y = input<T>(y, k, "Y", 2);
        if (d.n < 1) fail_value(k, "X must have at least one row");
        if (y.shape(0) != d.n || y.shape(1) != targets_)
            fail_value(k, "shape mismatch: X is " + x_shape + ", Y is " + shape_of(y) + " (expected (n, " +
                              std::to_string(features_) + ") and (n, " + std::to_string(targets_) + "))");
        if (!wobj.is_none()) {
            if (!py::isinstance<py::array>(wobj)) throw py::type_error(std::string(k) + ": W must be a numpy array or None");
            w = wobj.cast<py::array>();
            d.w = input<T>(w, k, "W", 1);
            if (w.shape(0) != d.n)
                fail_value(k, "shape mismatch: X is " + x_shape + ", W is " + shape_of(w) + " (expected (n,))");
            written_disjoint(w, "W");
        }
        d.order = input<std::int64_t>(order, k, "order", 1);
        if (order.shape(0) < 1)
            fail_value(k, "order has shape " + shape_of(order) + ", expected (visits,) with visits >= 1");
        d.visits = order.shape(0);
        d.n_samples = d.visits;
        for (const py::handle a : x_arrays) written_disjoint(a.cast<py::array>(), "X");
        written_disjoint(y, "Y");
        written_disjoint(order, "order");
        return d;
    }

    // run's scalar arguments.
    struct RunArgs {
        index step_begin, step_end;
        long long t0;
        std::uint64_t model_step0;
        index n_samples;                      // the penalty's n; 0: the rows order visits
        const std::atomic<bool>* stop;
        bool save_first;
    };

    template <class T>
    void run_as(train::Trainer<T>& trainer, const py::object& x, py::array& y, const py::object& wobj, py::array& order,
                py::array& lrs, const RunArgs& a, Totals& totals) {
        const char* k = "Trainer.run";
        const index step_begin = a.step_begin, step_end = a.step_end;
        py::array w;
        EpochData<T> d = epoch_data<T>(k, x, y, wobj, w, order);
        if (a.n_samples < 0 || (a.n_samples > 0 && a.n_samples < d.visits))
            fail_value(k, "n_samples must be 0 (the rows order visits) or at least order's " + std::to_string(d.visits) +
                              " rows, got " + std::to_string(a.n_samples));
        if (a.n_samples > 0) d.n_samples = a.n_samples;
        const index steps = steps_per_epoch(d.visits);
        if (step_begin < 0 || step_begin > step_end || step_end > steps)
            fail_value(k, "the step range [" + std::to_string(step_begin) + ", " + std::to_string(step_end) +
                              ") must lie within the epoch's " + std::to_string(steps) + " steps");
        const double* rates = input<double>(lrs, k, "lrs", 1);
        if (lrs.shape(0) != step_end - step_begin)
            fail_value(k, "lrs has shape " + shape_of(lrs) + ", expected one rate per step (" +
                              std::to_string(step_end - step_begin) + ",)");
        if (a.t0 < 1) fail_value(k, "t0 must be >= 1, got " + std::to_string(a.t0));
        bool same = totals.heads.size() == head_outputs_.size();
        for (std::size_t h = 0; same && h < head_outputs_.size(); ++h) same = totals.heads[h].outputs == head_outputs_[h];
        if (!same) fail_value(k, "totals are not for this trainer's heads: make them with new_totals()");
        written_disjoint(lrs, "lrs");
        py::gil_scoped_release nogil;
        trainer.run(d, step_begin, step_end, rates, a.t0, a.model_step0, totals, a.stop, a.save_first);
    }

    py::array params_, grads_, m_, v_;
    py::list keep_;                           // the program's state and constant arrays
    std::unique_ptr<train::Trainer<float>> f32_;
    std::unique_ptr<train::Trainer<double>> f64_;
    std::vector<index> head_outputs_;          // each loss head's width
    index batch_ = 0, targets_ = 0, features_ = 0;
};

py::array_t<double> vector_copy(const std::vector<double>& v) { return py::array_t<double>(v.size(), v.data()); }

}  // namespace

void register_train(py::module_& m) {
    using py::arg;
    m.def("shuffled_order", [](std::uint64_t seed, py::array order) {
              std::int64_t* out = output<std::int64_t>(order, "shuffled_order", "order", 1);
              train::shuffled_order(seed, out, index(order.shape(0)));
          },
          arg("seed"), arg("order").noconvert(),
          "order[:] = 0 .. n - 1 shuffled for seed (train/shuffle.hpp): the epoch's order");
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
        .def_readonly("interrupted", &Totals::interrupted)
        .def_readonly("state_finite", &Totals::state_finite);

    py::class_<PyTrainer>(m, "Trainer", "The fused training path over a model's flat buffers (train/trainer.hpp)")
        .def(py::init<py::array, py::array, py::object, py::object, py::object, py::object,
                      const std::string&, index, double, double, double, double, bool, py::object,
                      py::object>(),
             arg("params").noconvert(), arg("grads").noconvert(), arg("m"), arg("v"), arg("program"), arg("loss"),
             arg("optimizer"), arg("batch_size"), arg("b1") = 0.0, arg("b2") = 0.0, arg("eps") = 0.0,
             arg("weight_decay") = 0.0, arg("eps_before_correction") = false, arg("clipnorm") = py::none(),
             arg("lock") = py::none())
        .def_property_readonly("batch_size", &PyTrainer::batch_size)
        .def_property_readonly("head_outputs", &PyTrainer::head_outputs)
        .def("steps_per_epoch", &PyTrainer::steps_per_epoch, arg("n"))
        .def("gradient", [](PyTrainer& t, py::object x, py::array y, py::object w, py::array order, index step,
                            std::uint64_t model_step, double divisor, index first_row) {
                 const train::StepGradient g = t.gradient(x, y, w, order, step, model_step,
                                                          train::Shard{divisor, first_row});
                 return py::make_tuple(g.loss_sum, g.weight, g.penalty);
             },
             arg("X"), arg("Y").noconvert(), arg("W"), arg("order").noconvert(), arg("step"),
             arg("model_step"), arg("divisor") = 0.0, arg("first_row") = 0)
        .def("outputs", &PyTrainer::outputs, arg("rows"),
             "After gradient(): per loss head, (its loss sum, a copy of its logits of `rows` rows)")
        .def("run", &PyTrainer::run, arg("X"), arg("Y").noconvert(), arg("W"),
             arg("order").noconvert(), arg("step_begin"), arg("step_end"), arg("lrs").noconvert(), arg("t0"),
             arg("model_step"), arg("totals"), arg("watch") = py::none(), arg("save_first") = false,
             arg("n_samples") = 0)
        .def("restore_saved", &PyTrainer::restore_saved,
             "The parameters and m and v back as the latest run with save_first found them");
}

}}  // namespace fastmlp::bind
