// The fused training path: one call runs a range of mini-batch steps of an epoch (gather
// the batch rows, forward, loss, backward, weight penalty, gradient check, optimizer
// update), over workspaces allocated once when the trainer is created.
//
// It runs the model's program (program.hpp: the layers' plans compiled into op records,
// python/fastmlp/train/fused.py) through the kernels of ops.hpp and holds no math of its
// own: every step makes the same calls, in the same order, with the same arguments as the
// Python per-op loop (the plans run through the Backend: python/fastmlp/nn/plans.py,
// model/sequential.py, optim/optimizers.py), so both paths give the same parameters bit
// for bit. Per step, with m the step's rows:
//
//   gather    the step's rows of X (the program's batch buffer), Y and the row weights
//   forward   the program's forward ops, at the model's step counter (Dropout's mask)
//   loss      per loss head (program.hpp LossHead), its weight w: scale w/m, or w/sum(w_i)
//             (0 if the sum is 0) with row weights, the weight sum taken in ascending
//             row order in double, the gradient into its loss_grad buffer; the step's
//             loss is sum_h w_h * loss sum_h in double, in head order; a non-finite one
//             stops the run before the backward pass
//   backward  the program's backward ops (the first layer's dx-only ops left out), each
//             input gradient's GEMM with the act_backward after it in its epilogue
//             (program.hpp, fuse_act_backward; the same bits)
//   penalty   the program's regularize ops in order, coefficients lambda / n (or / m for
//             scale "batch", / the step's weight sum for "weight"), each run when either
//             coefficient is nonzero
//   update    sum_squares of the whole gradient; a non-finite sum stops the run before
//             the update; global-norm clipping; one optimizer_update over all parameters
//
// Parameters, gradients and the optimizer state are flat buffers owned by the caller
// (the model's and the optimizer's numpy arrays); nothing is allocated after creation,
// except the gathered batch of sparse X, which a run grows before its first step when its
// steps hold more entries than any run before.
// Each step runs holding the model's WeightsLock exclusively (weights_lock.hpp), so a
// reader in another thread sees the weights and layer state between steps only; a run
// asked to watch a stop flag (SIGINT: interrupt.hpp) reads it before each step and ends
// there when it is set.
// A run's first step runs on the calling thread, its kernels forking as they need; when
// they used more than one thread, the other steps run in one parallel region of the
// widest team they used, every thread calling the same kernels, which work-share over it
// (parallel.hpp, Teams): the same calls, the same bits, one fork and join per run.
// Baseline code, compiled once; the kernels are dispatched per ISA inside ops.hpp.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "../common.hpp"
#include "../kernels/sparse.hpp"
#include "program.hpp"
#include "weights_lock.hpp"

namespace fastmlp { namespace train {

// The optimizer's constants (ops.hpp OptimizerHyper without the per-step lr and t).
struct OptimizerSpec {
    Optimizer kind = Optimizer::sgd;
    double b1 = 0, b2 = 0, eps = 0, weight_decay = 0;
    bool eps_before_correction = false;      // Adam's eps placement (optimizers.hpp)
    double clipnorm = 0;                     // <= 0: no clipping
};

template <class T>
struct TrainerSpec {
    Program<T> program;                       // with its loss heads
    OptimizerSpec optimizer;
    index batch = 0;                          // rows per step (the last step may have fewer)
    index params = 0;                         // length of the flat buffers
};

// The caller's flat buffers: parameters, gradients and the optimizer state (m and v may
// be null when the optimizer keeps no such state).
template <class T>
struct Buffers {
    T* params = nullptr;
    T* grads = nullptr;
    T* m = nullptr;
    T* v = nullptr;
};

// One epoch's training data and the order its rows are visited in. X is dense (x) or
// sparse rows (x32 or x64, with n rows and the first layer's inputs as columns; indptr
// checked by the caller (check_csr_indptr), the column indices of the rows a run reads by
// the trainer before its first step); exactly one is set.
template <class T>
struct EpochData {
    const T* x = nullptr;                     // (n, inputs of the first layer)
    CsrRows<T, std::int32_t> x32;
    CsrRows<T, std::int64_t> x64;
    const T* y = nullptr;                     // (n, the heads' widths summed), dense targets
    const T* w = nullptr;                     // (n,) row weights, or null
    const std::int64_t* order = nullptr;      // (visits,) row indices in [0, n)
    index n = 0;
    index visits = 0;                         // the rows the epoch visits, in order: n for a
                                              // whole epoch of X; a streamed block's, fewer
    index n_samples = 0;                      // the training set's rows, the penalty's n:
                                              // visits, or the whole stream's for a block
};

// One step's loss and gradient (Trainer::gradient): the step's loss sum_h w_h * loss
// sum_h, the weight behind it (rows, or the row weights' sum) and the penalty; after a
// non-finite loss the gradient buffer is left as it was and the penalty is 0.
struct StepGradient {
    double loss_sum = 0, weight = 0, penalty = 0;
};

enum class Divergence : int { none = 0, loss = 1, gradient = 2 };

// A step's rows as a data-parallel shard of a global batch: the global batch's divisor
// of the loss (its rows or weight sum; 0: the step's own) and the shard's first row in it.
struct Shard {
    double divisor = 0;
    index first_row = 0;
};

// Running totals of the steps that completed, in the per-op path's definitions
// (python/fastmlp/nn/metrics.py): the step losses and penalties summed in step order in
// double, the weight behind the losses (rows, or the row weights' sums), and per loss
// head its loss sums and its metric's sums. For r2, per output j in double: sse_j =
// sum (z - y)^2, sum_j = sum (y - c_j), sum_sq_j = sum (y - c_j)^2 with c the mean of
// the first batch added (each batch summed over its rows in ascending order, then added
// to the total).
struct HeadTotals {
    explicit HeadTotals(index outputs = 0);
    void reset();

    index outputs;
    double loss_sum = 0;                      // the head's unweighted loss sums
    long long correct = 0, count = 0;         // accuracy (classification losses)
    bool has_shift = false;
    std::vector<double> shift, sse, sum, sum_sq;   // r2 (mse, poisson), one entry per output
};

struct Totals {
    explicit Totals(const std::vector<index>& head_outputs);
    void reset();

    std::vector<HeadTotals> heads;
    long long steps = 0;                      // steps completed (updates applied)
    double weight_sum = 0, penalty_sum = 0;
    // Set when a step stopped the run before its update: its index in the epoch, what
    // was not finite, that value (the step's loss or the squared gradient norm) and its rows.
    long long diverged_step = -1;
    Divergence diverged = Divergence::none;
    double diverged_value = 0;
    index diverged_rows = 0;
    bool interrupted = false;                 // the stop flag ended the run before a step
    // After the run: whether the parameters and the optimizer's m and v are all finite
    // (fit's check after each step range, train/rollback.py; layer state is checked there).
    bool state_finite = true;
};

// A buffer of T aligned to 64 bytes, allocated once.
template <class T>
class Workspace {
public:
    Workspace() = default;
    explicit Workspace(index n);
    ~Workspace();
    Workspace(Workspace&& other) noexcept;
    Workspace& operator=(Workspace&& other) noexcept;
    Workspace(const Workspace&) = delete;
    Workspace& operator=(const Workspace&) = delete;
    T* data() const { return data_; }

private:
    T* data_ = nullptr;
};

// What a run's steps read (Trainer::run's arguments).
template <class T>
struct RunArgs {
    const EpochData<T>* data;
    index step_begin;
    const double* lrs;
    long long t0;
    std::uint64_t model_step0;
    Totals* totals;
    const std::atomic<bool>* stop;
};

template <class T>
class Trainer {
public:
    // Checks the spec (the program: check_program; batch >= 1, the state the optimizer
    // needs, a lock); throws std::invalid_argument naming the problem.
    Trainer(TrainerSpec<T> spec, Buffers<T> buffers, std::shared_ptr<WeightsLock> lock);

    const TrainerSpec<T>& spec() const { return spec_; }
    index steps_per_epoch(index n) const { return (n + spec_.batch - 1) / spec_.batch; }

    // Steps [step_begin, step_end) of an epoch over `data` (step s covers the rows
    // order[s * batch, min(n, (s + 1) * batch))). lrs[s - step_begin] is step s's rate,
    // t0 the optimizer step number (from 1) of step_begin, model_step0 the model's
    // training-step counter at step_begin (Dropout's masks). Adds the completed steps to
    // `totals`; a divergence, or `stop` (null: none) found set before a step, ends the run
    // early and is recorded there; totals.state_finite says whether the parameters and
    // m and v are finite afterwards. Throws std::invalid_argument, before any step, for an
    // order entry outside [0, n) (the gather would read outside X) and while another call
    // runs this trainer (the workspaces are the trainer's). The caller has checked the
    // shapes and the step range.
    // With save_first, the parameters and m and v are saved before the first step, for
    // restore_saved() (fit's roll-back to the start of an epoch, train/rollback.py).
    void run(const EpochData<T>& data, index step_begin, index step_end, const double* lrs,
             long long t0, std::uint64_t model_step0, Totals& totals,
             const std::atomic<bool>* stop = nullptr, bool save_first = false);

    // The parameters and the optimizer's m and v put back as the latest run with
    // save_first found them (holding the weights lock). Throws std::logic_error when no run
    // saved them, std::invalid_argument while a run is in progress.
    void restore_saved();

    // Step `step`'s gather, forward, loss, backward and penalty as run() computes them,
    // without the update: the gradient (of the mean loss plus the penalty) in the grads
    // buffer, at model_step (Dropout's masks). One step over all rows (batch >= n, step 0)
    // is the whole-batch objective scipy's L-BFGS minimizes (python/fastmlp/train/gradient.py).
    // Throws as run() does; the caller has checked the shapes and the step.
    // A data-parallel shard (python/fastmlp/train/distributed.py) gives its global batch's
    // `shard.divisor` (rows or weight sum: the loss scale's) and its first row there
    // (Dropout's masks); the defaults are the step's own.
    StepGradient gradient(const EpochData<T>& data, index step, std::uint64_t model_step,
                          const Shard& shard = Shard{});

    // After gradient(): head h's loss sum and its logits of the step's rows (row-major,
    // the head's width per row).
    double head_loss(std::size_t h) const { return head_loss_[h]; }
    const T* head_logits(std::size_t h) const;

private:
    void allocate();
    StepGradient step_gradient(const EpochData<T>& data, index start, index rows, std::uint64_t model_step,
                               const Shard& shard = Shard{});
    double penalty(index rows, index n, double weight) const;

    void run_steps(const RunArgs<T>& r, index step_end, std::unique_lock<WeightsLock>& lock);
    template <class F>
    void for_state(F f);
    void save_state();
    bool state_finite();
    bool run_step(const RunArgs<T>& r, index s, std::unique_lock<WeightsLock>& lock);
    void run_in_team(const RunArgs<T>& r, index s0, index s1, int threads);
    void gather(const EpochData<T>& data, index start, index rows);
    void gather_rows(const EpochData<T>& data, const std::int64_t* idx, index r0, index r1);
    template <class I>
    void gather_sparse(const CsrRows<T, I>& x, const std::int64_t* idx, index rows);
    template <class I>
    void reserve_sparse(const CsrRows<T, I>& x, const EpochData<T>& data, index step_begin, index step_end);
    void prepare(const EpochData<T>& data, index step_begin, index step_end);
    void forward(index rows, std::uint64_t model_step, index first_row = 0);
    double losses(index rows, const T* w, double weight, double divisor = 0);
    index head_labels(std::size_t head) const { return 2 * spec_.batch * index(head); }  // in labels_
    void backward(index rows);
    void add_metrics(std::size_t head, index rows, HeadTotals& totals) const;
    void add_r2(const T* predictions, const T* y, index rows, HeadTotals& totals) const;

    TrainerSpec<T> spec_;
    Buffers<T> buf_;
    std::shared_ptr<WeightsLock> lock_;
    index features_ = 0, targets_ = 0;
    std::vector<Workspace<T>> y_;                      // per head: its targets of the step
    std::vector<double> head_loss_;                    // per head: the step's loss sum
    Workspace<T> w_;
    std::vector<Workspace<T>> caches_;                 // the program's float buffers we own
    std::vector<std::vector<std::int32_t>> int_caches_;  // its int32 caches
    Bound<T> bound_;                                   // every buffer's address
    mutable std::vector<double> scratch_;     // 3 * the widest head: one batch's r2 sums
    Workspace<T> predicted_;                  // a poisson head's batch predictions exp(z)
    // Per head, (batch, 2): each row's argmax of z and of y, a softmax head's (losses()).
    std::vector<std::int64_t> labels_;
    // Sparse X: the step's rows gathered as CSR (bound_.csr), grown by a run that needs more.
    std::vector<std::int64_t> batch_indptr_, batch_indices_;
    std::vector<T> batch_values_;
    CsrRows<T, std::int64_t> batch_csr_;
    std::atomic<bool> running_{false};        // a run() is in progress
    // The parameters, m and v a run saved (save_first), allocated at the first save.
    Workspace<T> saved_params_, saved_m_, saved_v_;
    bool saved_ = false;
    bool stop_now_ = false;                   // the stop flag as the step's leader read it
};

extern template class Trainer<float>;
extern template class Trainer<double>;

}}  // namespace fastmlp::train
