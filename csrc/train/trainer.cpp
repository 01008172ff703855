// The fused training path (trainer.hpp): the per-op loop's calls, in its order.
#include "trainer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "../ops.hpp"

namespace fastmlp { namespace train {

namespace {

constexpr std::size_t kAlign = 64;

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("Trainer: " + msg); }

// The gather reads X's rows at order: every entry must lie in [0, n).
template <class T>
void check_order(const EpochData<T>& d) {
    for (index i = 0; i < d.visits; ++i)
        if (d.order[i] < 0 || d.order[i] >= d.n)
            fail("order holds " + std::to_string(d.order[i]) + " at index " + std::to_string(i) +
                 ", expected 0 <= order < " + std::to_string(d.n));
}

// Marks a trainer running for one run() call; refuses a second call at the same time.
class Running {
public:
    explicit Running(std::atomic<bool>& flag) : flag_(flag) {
        bool expected = false;
        if (!flag_.compare_exchange_strong(expected, true)) fail("this trainer is already running in another thread");
    }
    ~Running() { flag_ = false; }
    Running(const Running&) = delete;
    Running& operator=(const Running&) = delete;

private:
    std::atomic<bool>& flag_;
};

}  // namespace

// ---- Totals ----

HeadTotals::HeadTotals(index k) : outputs(k), shift(k), sse(k), sum(k), sum_sq(k) {}

void HeadTotals::reset() {
    loss_sum = 0;
    correct = count = 0;
    has_shift = false;
    for (index j = 0; j < outputs; ++j) shift[j] = sse[j] = sum[j] = sum_sq[j] = 0;
}

Totals::Totals(const std::vector<index>& head_outputs) : heads(head_outputs.begin(), head_outputs.end()) {}

void Totals::reset() {
    for (HeadTotals& h : heads) h.reset();
    steps = 0;
    weight_sum = penalty_sum = 0;
    diverged_step = -1;
    diverged = Divergence::none;
    diverged_value = 0;
    diverged_rows = 0;
    interrupted = false;
    state_finite = true;
}

// ---- Workspace ----

template <class T>
Workspace<T>::Workspace(index n) {
    if (n > 0) data_ = static_cast<T*>(::operator new(std::size_t(n) * sizeof(T), std::align_val_t(kAlign)));
}

template <class T>
Workspace<T>::~Workspace() {
    if (data_) ::operator delete(data_, std::align_val_t(kAlign));
}

template <class T>
Workspace<T>::Workspace(Workspace&& other) noexcept : data_(std::exchange(other.data_, nullptr)) {}

template <class T>
Workspace<T>& Workspace<T>::operator=(Workspace&& other) noexcept {
    if (this != &other) {
        if (data_) ::operator delete(data_, std::align_val_t(kAlign));
        data_ = std::exchange(other.data_, nullptr);
    }
    return *this;
}

// ---- Trainer ----

template <class T>
Trainer<T>::Trainer(TrainerSpec<T> spec, Buffers<T> buffers, std::shared_ptr<WeightsLock> lock)
    : spec_(std::move(spec)), buf_(std::move(buffers)), lock_(std::move(lock)) {
    if (!lock_) fail("a weights lock is required");
    if (spec_.batch < 1) fail("batch must be >= 1, got " + std::to_string(spec_.batch));
    if (!buf_.params || !buf_.grads) fail("params and grads are required");
    if (uses_m(spec_.optimizer.kind) && !buf_.m) fail("this optimizer needs its state m");
    if (uses_v(spec_.optimizer.kind) && !buf_.v) fail("this optimizer needs its state v");
    if (!uses_m(spec_.optimizer.kind)) buf_.m = nullptr;
    if (!uses_v(spec_.optimizer.kind)) buf_.v = nullptr;
    check_program(spec_.program, spec_.params, true, "Trainer");
    keep_outputs_only(spec_.program);
    fuse_act_backward(spec_.program);
    const Program<T>& p = spec_.program;
    features_ = p.features();
    targets_ = p.targets();
    index widest = 0, widest_exp = 0;
    for (const LossHead& h : p.heads) {
        y_.emplace_back(spec_.batch * p.width(h.output));
        widest = std::max(widest, p.width(h.output));
        if (h.loss == Loss::poisson) widest_exp = std::max(widest_exp, p.width(h.output));
    }
    if (widest_exp > 0) predicted_ = Workspace<T>(spec_.batch * widest_exp);
    head_loss_.assign(p.heads.size(), 0.0);
    w_ = Workspace<T>(spec_.batch);
    allocate();
    scratch_.assign(3 * std::size_t(widest), 0.0);
    labels_.assign(2 * std::size_t(spec_.batch) * p.heads.size(), 0);
}

// Every buffer's address: the batch rows, the loss gradient and the caches in workspaces
// for `batch` rows, allocated once; parameters and gradients in the flat buffers; state
// and constants in the caller's arrays.
template <class T>
void Trainer<T>::allocate() {
    const Program<T>& p = spec_.program;
    const std::size_t n = p.buffers.size();
    bound_.ptr.assign(n, nullptr);
    bound_.ints.assign(n, nullptr);
    caches_.reserve(n);
    int_caches_.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const BufferSpec& b = p.buffers[i];
        const index size = b.per_row ? spec_.batch * b.width : b.width;
        switch (b.role) {
            case BufferRole::parameter: bound_.ptr[i] = buf_.params + b.offset; break;
            case BufferRole::gradient: bound_.ptr[i] = buf_.grads + b.offset; break;
            case BufferRole::state:
            case BufferRole::constant: bound_.ptr[i] = p.arrays[i]; break;
            case BufferRole::batch:
            case BufferRole::loss_grad:
            case BufferRole::cache:
                if (b.int32) {
                    int_caches_.emplace_back(std::size_t(size), 0);
                    bound_.ints[i] = int_caches_.back().data();
                } else {
                    caches_.emplace_back(size);
                    bound_.ptr[i] = caches_.back().data();
                }
                break;
        }
    }
}

// The step's rows of X into the batch buffer, of each head's target columns into its
// targets, of the row weights: dense X split over threads by rows, sparse X (gathered in
// order) on one thread.
template <class T>
void Trainer<T>::gather(const EpochData<T>& d, index start, index rows) {
    const std::int64_t* idx = d.order + start;
    if (d.x32.values || d.x64.values)
        return team_serial([&] {
            if (d.x32.values) gather_sparse(d.x32, idx, rows);
            else gather_sparse(d.x64, idx, rows);
            gather_rows(d, idx, 0, rows);
        });
    parallel_for(rows, threads_for(rows * features_, kElementGrain),
                 [&](index r0, index r1) { gather_rows(d, idx, r0, r1); });
}

// Rows [r0, r1) of the step (X's at idx when dense, the targets, the weights).
template <class T>
void Trainer<T>::gather_rows(const EpochData<T>& d, const std::int64_t* idx, index r0, index r1) {
    const Program<T>& p = spec_.program;
    if (d.x) {
        T* x = bound_.ptr[std::size_t(p.input)];
        for (index i = r0; i < r1; ++i)
            std::memcpy(x + i * features_, d.x + index(idx[i]) * features_, sizeof(T) * features_);
    }
    for (std::size_t h = 0; h < p.heads.size(); ++h) {
        const index k = p.width(p.heads[h].output), offset = p.heads[h].offset;
        T* y = y_[h].data();
        for (index i = r0; i < r1; ++i)
            std::memcpy(y + i * k, d.y + index(idx[i]) * targets_ + offset, sizeof(T) * k);
    }
    if (d.w)
        for (index i = r0; i < r1; ++i) w_.data()[i] = d.w[idx[i]];
}

// Rows idx[0, rows) of sparse X as the batch's CSR rows, their entries in X's order.
template <class T>
template <class I>
void Trainer<T>::gather_sparse(const CsrRows<T, I>& x, const std::int64_t* idx, index rows) {
    std::int64_t* indptr = batch_indptr_.data();
    std::int64_t* indices = batch_indices_.data();
    T* values = batch_values_.data();
    indptr[0] = 0;
    for (index i = 0; i < rows; ++i) {
        const I begin = x.indptr[idx[i]], end = x.indptr[idx[i] + 1];
        std::int64_t at = indptr[i];
        for (I k = begin; k < end; ++k, ++at) {
            indices[at] = std::int64_t(x.indices[k]);
            values[at] = x.values[k];
        }
        indptr[i + 1] = at;
    }
    batch_csr_.rows = rows;
}

// The column indices of the rows steps [step_begin, step_end) read checked (check_csr_row:
// the binding checked indptr), and room for the largest step in the gathered batch.
template <class T>
template <class I>
void Trainer<T>::reserve_sparse(const CsrRows<T, I>& x, const EpochData<T>& d, index step_begin,
                                index step_end) {
    index most = 0;
    for (index s = step_begin; s < step_end; ++s) {
        index entries = 0;
        for (index r = s * spec_.batch; r < std::min(d.visits, (s + 1) * spec_.batch); ++r) {
            check_csr_row(x, d.order[r], "Trainer");
            entries += index(x.indptr[d.order[r] + 1] - x.indptr[d.order[r]]);
        }
        most = std::max(most, entries);
    }
    if (batch_indptr_.size() < std::size_t(spec_.batch + 1)) batch_indptr_.resize(std::size_t(spec_.batch + 1));
    if (batch_indices_.size() < std::size_t(most)) {
        batch_indices_.resize(std::size_t(most));
        batch_values_.resize(std::size_t(most));
    }
    batch_csr_ = {batch_indptr_.data(), batch_indices_.data(), batch_values_.data(), 0, features_};
}

// Before a run's steps: the order checked; with sparse X, the program checked for it
// (check_sparse_input) and the batch buffer bound to the gathered CSR rows.
template <class T>
void Trainer<T>::prepare(const EpochData<T>& d, index step_begin, index step_end) {
    check_order(d);
    const bool sparse = d.x32.values || d.x64.values;
    if (sparse) {
        check_sparse_input(spec_.program, "Trainer");
        if (d.x32.values) reserve_sparse(d.x32, d, step_begin, step_end);
        else reserve_sparse(d.x64, d, step_begin, step_end);
    }
    bound_.csr = sparse ? &batch_csr_ : nullptr;
    bound_.input = spec_.program.input;
}

// The program's forward (Layer.forward(training=True) of every layer).
template <class T>
void Trainer<T>::forward(index rows, std::uint64_t model_step, index first_row) {
    for (const OpRecord& op : spec_.program.forward) run_op(op, bound_, rows, model_step, first_row);
}

// Every head's loss sum into head_loss_ and its gradient into its loss_grad buffer, with
// scale w_h / rows, or w_h / weight (0 if weight is 0) with row weights `w` (weight:
// their sum), or w_h / divisor when one is given (a shard: its global batch's rows or
// weight sum); returns sum_h w_h * loss sum_h (Sequential._loss_and_grad,
// MultiTask.loss_and_grad). A softmax head's loss also writes its rows' labels into
// head_labels(h) for add_metrics (other losses ignore the pointer).
template <class T>
double Trainer<T>::losses(index rows, const T* w, double weight, double divisor) {
    const Program<T>& p = spec_.program;
    double total = 0.0;
    const double d = divisor > 0 ? divisor : w ? weight : double(rows);
    for (std::size_t h = 0; h < p.heads.size(); ++h) {
        const LossHead& head = p.heads[h];
        const double scale = d > 0 ? head.weight / d : 0.0;
        const double sum = loss<T>(head.loss, bound_.ptr[std::size_t(head.output)], y_[h].data(),
                                   bound_.ptr[std::size_t(head.loss_grad)], rows, p.width(head.output), T(scale), w,
                                   labels_.data() + head_labels(h));
        if (team_leader()) head_loss_[h] = sum;    // every thread of a team has the sum
        total += head.weight * sum;
    }
    return total;
}

// The program's backward (Layer.backward of every layer, last first), from the loss
// gradient.
template <class T>
void Trainer<T>::backward(index rows) {
    for (const OpRecord& op : spec_.program.backward) run_op(op, bound_, rows, 0);
}

// Sequential._penalty with Regularizer.apply: lambda / d with d = n, the step's rows or its
// weight sum for scale 0, 1, 2 ("samples", "batch", "weight"; constants: l1, l2, scale);
// no penalty when d is 0.
template <class T>
double Trainer<T>::penalty(index rows, index n, double weight) const {
    double total = 0.0;
    for (const OpRecord& op : spec_.program.penalty) {
        const int scale = int(op.constants[2]);
        const double d = scale == 0 ? double(n) : scale == 1 ? double(rows) : weight;
        if (!(d > 0)) continue;
        const double l1 = op.constants[0] / d, l2 = op.constants[1] / d;
        if (l1 == 0 && l2 == 0) continue;
        total += regularize<T>(bound_.ptr[std::size_t(op.args[0])], bound_.ptr[std::size_t(op.args[1])],
                               op.dims[0], l1, l2);
    }
    return total;
}

// A head's metric's running sums (metrics.py, losses.py), from its logits and targets.
template <class T>
void Trainer<T>::add_metrics(std::size_t head, index rows, HeadTotals& t) const {
    const LossHead& h = spec_.program.heads[head];
    const index k = t.outputs;
    const T* z = bound_.ptr[std::size_t(h.output)];
    const T* y = y_[head].data();
    t.count += rows;
    switch (h.loss) {
        case Loss::softmax_cross_entropy: {     // the labels losses() wrote
            const std::int64_t* l = labels_.data() + head_labels(head);
            for (index i = 0; i < rows; ++i) t.correct += l[2 * i] == l[2 * i + 1];
            return;
        }
        case Loss::binary_cross_entropy:
            for (index i = 0; i < rows; ++i) {
                bool right = true;
                for (index j = 0; j < k && right; ++j)
                    right = (z[i * k + j] > T(0)) == (y[i * k + j] > T(0.5));
                t.correct += right;
            }
            return;
        case Loss::mse:
            add_r2(z, y, rows, t);
            return;
        case Loss::poisson:                     // r2 of the predictions mu = exp(z)
            output<T>(h.loss, z, predicted_.data(), rows, k);
            add_r2(predicted_.data(), y, rows, t);
            return;
    }
}

// r2's running sums (metrics.py R2) of a batch's predictions p against its targets y.
template <class T>
void Trainer<T>::add_r2(const T* p, const T* y, index rows, HeadTotals& t) const {
    const index k = t.outputs;
    if (!t.has_shift) {                  // the first batch's mean of y
        for (index j = 0; j < k; ++j) t.shift[j] = 0;
        for (index i = 0; i < rows; ++i)
            for (index j = 0; j < k; ++j) t.shift[j] += double(y[i * k + j]);
        for (index j = 0; j < k; ++j) t.shift[j] /= double(rows);
        t.has_shift = true;
    }
    double* sse = scratch_.data();
    double* sum = sse + k;
    double* sq = sum + k;
    for (index j = 0; j < 3 * k; ++j) sse[j] = 0;
    for (index i = 0; i < rows; ++i)
        for (index j = 0; j < k; ++j) {
            const double yv = double(y[i * k + j]);
            const double e = double(p[i * k + j]) - yv, c = yv - t.shift[j];
            sse[j] += e * e;
            sum[j] += c;
            sq[j] += c * c;
        }
    for (index j = 0; j < k; ++j) {
        t.sse[j] += sse[j];
        t.sum[j] += sum[j];
        t.sum_sq[j] += sq[j];
    }
}

// Sequential.loss_and_grad then Sequential.penalty for the rows order[start, start + rows):
// the weight sum in ascending order in double; no backward pass or penalty after a
// non-finite loss.
template <class T>
StepGradient Trainer<T>::step_gradient(const EpochData<T>& data, index start, index rows,
                                       std::uint64_t model_step, const Shard& shard) {
    gather(data, start, rows);
    forward(rows, model_step, shard.first_row);
    StepGradient g;
    const T* w = data.w ? w_.data() : nullptr;
    g.weight = double(rows);
    if (w) {
        g.weight = double(w[0]);
        for (index r = 1; r < rows; ++r) g.weight += double(w[r]);
    }
    g.loss_sum = losses(rows, w, g.weight, shard.divisor);
    if (!std::isfinite(g.loss_sum)) return g;
    backward(rows);
    g.penalty = penalty(rows, data.n_samples, g.weight);
    return g;
}

template <class T>
StepGradient Trainer<T>::gradient(const EpochData<T>& data, index step, std::uint64_t model_step,
                                  const Shard& shard) {
    const Running running(running_);
    prepare(data, step, step + 1);
    const std::lock_guard<WeightsLock> whole_step(*lock_);
    const index start = step * spec_.batch;
    const index rows = std::min(spec_.batch, data.visits - start);
    return step_gradient(data, start, rows, model_step, shard);
}

template <class T>
const T* Trainer<T>::head_logits(std::size_t h) const {
    return bound_.ptr[std::size_t(spec_.program.heads[h].output)];
}

namespace {

// A divergence at step s (what, the value, the step's rows) into the totals: the leader's.
void record_divergence(Totals& totals, index s, Divergence what, double value, index rows) {
    if (!team_leader()) return;
    totals.diverged_step = s;
    totals.diverged = what;
    totals.diverged_value = value;
    totals.diverged_rows = rows;
}

}  // namespace

// Step s of a run (see run); false when the run ends there: the stop flag was set before
// it, or it diverged. In a team every thread runs it and returns the same; the leader
// holds `lock` (the weights) for the step and writes the totals.
template <class T>
bool Trainer<T>::run_step(const RunArgs<T>& r, index s, std::unique_lock<WeightsLock>& lock) {
    team_serial([&] {
        stop_now_ = r.stop && r.stop->load(std::memory_order_relaxed);
        if (stop_now_) r.totals->interrupted = true;
        else lock.lock();
    });
    if (stop_now_) return false;
    Totals& totals = *r.totals;
    const OptimizerSpec& opt = spec_.optimizer;
    const index start = s * spec_.batch, i = s - r.step_begin;
    const index rows = std::min(spec_.batch, r.data->visits - start);
    const StepGradient g = step_gradient(*r.data, start, rows, r.model_step0 + std::uint64_t(i));
    auto end_step = [&](bool go) {
        if (lock.owns_lock()) lock.unlock();
        return go;
    };
    if (!std::isfinite(g.loss_sum)) {
        record_divergence(totals, s, Divergence::loss, g.loss_sum, rows);
        return end_step(false);
    }

    // Optimizer.step (optimizers.py): the finite check, clipping, one fused update.
    const double norm2 = sum_squares<T>(buf_.grads, spec_.params);
    if (!std::isfinite(norm2)) {
        record_divergence(totals, s, Divergence::gradient, norm2, rows);
        return end_step(false);
    }
    double grad_scale = 1.0;
    if (opt.clipnorm > 0) {
        const double norm = std::sqrt(norm2);
        if (norm > opt.clipnorm) grad_scale = opt.clipnorm / norm;
    }
    // The running totals (the per-op loop's, train/loop.py) from the logits before the update.
    team_serial([&] {
        totals.penalty_sum += g.penalty * double(rows);
        totals.weight_sum += g.weight;
        for (std::size_t h = 0; h < totals.heads.size(); ++h) {
            totals.heads[h].loss_sum += head_loss_[h];
            add_metrics(h, rows, totals.heads[h]);
        }
        ++totals.steps;
    });
    const OptimizerHyper h{opt.kind, r.lrs[i], grad_scale, opt.b1, opt.b2, opt.eps, opt.weight_decay,
                           r.t0 + i, opt.eps_before_correction};
    optimizer_update<T>(h, buf_.params, buf_.grads, buf_.m, buf_.v, spec_.params);
    return end_step(true);
}

// Steps [s0, s1) in one parallel region of `threads` (parallel.hpp, Teams); every thread
// stops at the same step. An exception of any thread is rethrown after the region.
template <class T>
void Trainer<T>::run_in_team(const RunArgs<T>& r, index s0, index s1, int threads) {
    Team team;
    const int asked = num_threads();   // the calling thread's setting, for every thread
    note_parallel_region();
#pragma omp parallel num_threads(threads)
    {
        const RegionSeat seat = region_seat();
        const TeamMember member(team, seat.id, seat.size, asked);
        std::unique_lock<WeightsLock> lock(*lock_, std::defer_lock);   // the leader's holds a step's
        try {
            for (index s = s0; s < s1 && run_step(r, s, lock); ++s) {
            }
        } catch (const TeamAborted&) {
        } catch (...) {
#pragma omp critical(fastmlp_team_error)
            if (!team.error) team.error = std::current_exception();
        }
    }
    if (team.error) std::rethrow_exception(team.error);
}

// The first step alone, its kernels forking as they need (it finds the widest team they
// use), then, when that is more than one thread, the other steps in one team.
template <class T>
void Trainer<T>::run(const EpochData<T>& data, index step_begin, index step_end, const double* lrs, long long t0,
                     std::uint64_t model_step0, Totals& totals, const std::atomic<bool>* stop,
                     bool save_first) {
    const Running running(running_);
    prepare(data, step_begin, step_end);
    if (save_first) save_state();
    const RunArgs<T> r{&data, step_begin, lrs, t0, model_step0, &totals, stop};
    std::unique_lock<WeightsLock> lock(*lock_, std::defer_lock);
    run_steps(r, step_end, lock);
    totals.state_finite = state_finite();
}

// The steps of run(): the first on the calling thread (it finds the widest team the
// step's kernels use), the rest in that team.
template <class T>
void Trainer<T>::run_steps(const RunArgs<T>& r, index step_end, std::unique_lock<WeightsLock>& lock) {
    reset_widest_team();
    index s = r.step_begin;
    if (s == step_end || !run_step(r, s++, lock)) return;
    const int threads = widest_team();
    if (threads > 1 && s < step_end) return run_in_team(r, s, step_end, threads);
    for (; s < step_end; ++s)
        if (!run_step(r, s, lock)) return;
}

// f(live, saved) for the parameters and, where the optimizer keeps them, m and v: each
// flat buffer of spec_.params values with its saved copy.
template <class T>
template <class F>
void Trainer<T>::for_state(F f) {
    f(buf_.params, saved_params_);
    if (buf_.m) f(buf_.m, saved_m_);
    if (buf_.v) f(buf_.v, saved_v_);
}

// A copy of the parameters and m and v (the caller runs: nothing writes them meanwhile),
// into buffers allocated at the first save.
template <class T>
void Trainer<T>::save_state() {
    const index n = spec_.params;
    for_state([&](const T* live, Workspace<T>& saved) {
        if (!saved.data()) saved = Workspace<T>(n);
        std::memcpy(saved.data(), live, sizeof(T) * std::size_t(n));
    });
    saved_ = true;
}

template <class T>
void Trainer<T>::restore_saved() {
    const Running running(running_);
    if (!saved_) throw std::logic_error("Trainer.restore_saved: no run saved the state (save_first)");
    const std::lock_guard<WeightsLock> writing(*lock_);
    for_state([&](T* live, const Workspace<T>& saved) {
        std::memcpy(live, saved.data(), sizeof(T) * std::size_t(spec_.params));
    });
}

template <class T>
bool Trainer<T>::state_finite() {
    bool finite = true;
    for_state([&](const T* live, const Workspace<T>&) { finite = finite && all_finite<T>(live, spec_.params); });
    return finite;
}

template class Workspace<float>;
template class Workspace<double>;
template class Trainer<float>;
template class Trainer<double>;

}}  // namespace fastmlp::train
