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
#include "rows.hpp"

namespace fastmlp { namespace train {

namespace {

constexpr std::size_t kAlign = 64;

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("Trainer: " + msg); }

// The gather reads X's rows at order: every entry must lie in [0, n).
template <class T>
void check_order(const EpochData<T>& d) {
    for (index i = 0; i < d.n; ++i)
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

Totals::Totals(index k) : outputs(k), shift(k), sse(k), sum(k), sum_sq(k) {}

void Totals::reset() {
    steps = 0;
    loss_sum = weight_sum = penalty_sum = 0;
    correct = count = 0;
    has_shift = false;
    for (index j = 0; j < outputs; ++j) shift[j] = sse[j] = sum[j] = sum_sq[j] = 0;
    diverged_step = -1;
    diverged = Divergence::none;
    diverged_value = 0;
    diverged_rows = 0;
    interrupted = false;
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
Trainer<T>::Trainer(TrainerSpec spec, Buffers<T> buffers, std::shared_ptr<WeightsLock> lock)
    : spec_(std::move(spec)), buf_(std::move(buffers)), lock_(std::move(lock)) {
    const auto& layers = spec_.layers;
    if (!lock_) fail("a weights lock is required");
    if (spec_.batch < 1) fail("batch must be >= 1, got " + std::to_string(spec_.batch));
    if (!buf_.params || !buf_.grads) fail("params and grads are required");
    if (uses_m(spec_.optimizer.kind) && !buf_.m) fail("this optimizer needs its state m");
    if (uses_v(spec_.optimizer.kind) && !buf_.v) fail("this optimizer needs its state v");
    if (!uses_m(spec_.optimizer.kind)) buf_.m = nullptr;
    if (!uses_v(spec_.optimizer.kind)) buf_.v = nullptr;
    check_layers(layers, buf_.states, spec_.params, "Trainer");
    features_ = layers.front().inputs;
    outputs_ = layers.back().outputs;
    const index b = spec_.batch;
    x_ = Workspace<T>(b * features_);
    y_ = Workspace<T>(b * outputs_);
    w_ = Workspace<T>(b);
    grad_ = Workspace<T>(b * outputs_);
    work_.resize(layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i) allocate(i);
    scratch_.assign(3 * std::size_t(outputs_), 0.0);
}

// The workspaces layer i needs for `batch` rows (the per-op layer's workspace arrays).
template <class T>
void Trainer<T>::allocate(std::size_t i) {
    const LayerSpec& l = spec_.layers[i];
    LayerWork& w = work_[i];
    const index b = spec_.batch, n = l.outputs;
    // dx for every layer but the first; batchnorm's kernel writes it there too.
    if (i > 0 || l.kind == LayerKind::batchnorm) w.dx = Workspace<T>(b * l.inputs);
    switch (l.kind) {
        case LayerKind::dense:
            w.out = Workspace<T>(b * n);
            if (l.activation != Activation::linear) {
                w.act = Workspace<T>(b * n);
                w.dz = Workspace<T>(b * n);
            }
            break;
        case LayerKind::maxout:
            w.out = Workspace<T>(b * affine_rows(l));
            w.act = Workspace<T>(b * n);
            w.dz = Workspace<T>(b * affine_rows(l));
            w.argmax.assign(std::size_t(b * n), 0);
            break;
        case LayerKind::dropout:
            w.out = Workspace<T>(b * n);
            w.mask = Workspace<T>(b * n);
            break;
        case LayerKind::batchnorm:
            w.out = Workspace<T>(b * n);
            w.xhat = Workspace<T>(b * n);
            w.mean = Workspace<T>(n);
            w.inv_std = Workspace<T>(n);
            break;
        case LayerKind::normalization:
            w.out = Workspace<T>(b * n);
            w.ones = Workspace<T>(n);
            w.zeros = Workspace<T>(n);
            for (index j = 0; j < n; ++j) {
                w.ones.data()[j] = T(1);
                w.zeros.data()[j] = T(0);
            }
            break;
    }
}

// BatchNorm.forward's running averages (layers.py), in its NumPy arithmetic: the batch
// variance var = max(1 / inv_std^2 - eps, 0) in double; running = momentum * running +
// (1 - momentum) * batch, with momentum * running in double and (1 - momentum) * mean in
// T (NumPy multiplies a Python float and a T array in T), the sum in double, stored in T.
template <class T>
void Trainer<T>::update_running_averages(const LayerSpec& l, const LayerState<T>& s, const LayerWork& w) {
    const double m = l.momentum;
    const T keep_new = T(1 - m);
    for (index j = 0; j < l.outputs; ++j) {
        const double inv = double(w.inv_std.data()[j]);
        const double var = std::max(1.0 / (inv * inv) - l.eps, 0.0);
        s.mean[j] = T(m * double(s.mean[j]) + double(keep_new * w.mean.data()[j]));
        s.var[j] = T(m * double(s.var[j]) + (1 - m) * var);
    }
}

template <class T>
void Trainer<T>::gather(const EpochData<T>& d, index start, index rows) {
    const std::int64_t* idx = d.order + start;
    T* x = x_.data();
    T* y = y_.data();
    for (index i = 0; i < rows; ++i) {
        const index r = index(idx[i]);
        std::memcpy(x + i * features_, d.x + r * features_, sizeof(T) * features_);
        std::memcpy(y + i * outputs_, d.y + r * outputs_, sizeof(T) * outputs_);
    }
    if (d.w)
        for (index i = 0; i < rows; ++i) w_.data()[i] = d.w[idx[i]];
}

// Layer.forward(training=True) of every layer (layers.py): returns the logits.
template <class T>
const T* Trainer<T>::forward(index rows, std::uint64_t model_step) {
    const T* in = x_.data();
    for (std::size_t i = 0; i < spec_.layers.size(); ++i) {
        const LayerSpec& l = spec_.layers[i];
        LayerWork& w = work_[i];
        w.input = in;
        const T* gamma = buf_.params + l.weights_offset;   // batchnorm
        const T* beta = buf_.params + l.bias_offset;
        const LayerState<T>& s = buf_.states[i];
        switch (l.kind) {
            case LayerKind::dense:
            case LayerKind::maxout: {
                const index R = affine_rows(l);
                T* z = w.out.data();
                const Activation act = l.kind == LayerKind::dense ? l.activation : Activation::linear;
                T* a = act == Activation::linear ? z : w.act.data();
                // z = x W^T + b, a = act(z): the bias and activation in the GEMM's epilogue.
                gemm_bias_act<T>(false, true, rows, R, l.inputs, in, l.inputs, buf_.params + l.weights_offset,
                                 l.inputs, buf_.params + l.bias_offset, z, R, a, R, act, T(l.param));
                w.output = a;
                if (l.kind == LayerKind::maxout) {
                    maxout_forward<T>(z, w.act.data(), w.argmax.data(), rows, l.outputs, l.pieces);
                    w.output = w.act.data();
                }
                break;
            }
            case LayerKind::dropout:
                dropout_forward<T>(in, w.out.data(), w.mask.data(), rows * l.outputs, l.rate, l.seed,
                                   l.layer_index, model_step);
                w.output = w.out.data();
                break;
            case LayerKind::batchnorm:
                batchnorm_forward_train<T>(in, gamma, beta, w.out.data(), w.xhat.data(), w.mean.data(),
                                           w.inv_std.data(), rows, l.outputs, T(l.eps));
                update_running_averages(l, s, w);
                w.output = w.out.data();
                break;
            case LayerKind::normalization:
                batchnorm_forward_infer<T>(in, w.ones.data(), w.zeros.data(), s.mean, s.var, w.out.data(), rows,
                                           l.outputs, T(0));
                w.output = w.out.data();
                break;
        }
        in = w.output;
    }
    return in;
}

// Layer.backward of every layer, last first, from the loss gradient in grad_.
template <class T>
void Trainer<T>::backward(index rows) {
    const T* d = grad_.data();
    for (std::size_t i = spec_.layers.size(); i-- > 0;) {
        const LayerSpec& l = spec_.layers[i];
        LayerWork& w = work_[i];
        const index n = l.outputs;
        switch (l.kind) {
            case LayerKind::dense:
            case LayerKind::maxout: {
                const index R = affine_rows(l);
                const T* dz = d;
                if (l.kind == LayerKind::maxout) {
                    maxout_backward<T>(d, w.argmax.data(), w.dz.data(), rows, n, l.pieces);
                    dz = w.dz.data();
                } else if (l.activation != Activation::linear) {
                    act_backward<T>(w.out.data(), w.act.data(), d, w.dz.data(), rows * n, l.activation,
                                    T(l.param));
                    dz = w.dz.data();
                }
                gemm<T>(true, false, R, l.inputs, rows, T(1.0), dz, R, w.input, l.inputs, T(0.0),
                        buf_.grads + l.weights_offset, l.inputs);
                col_sum<T>(dz, rows, R, buf_.grads + l.bias_offset);
                if (i == 0) return;
                gemm<T>(false, false, rows, l.inputs, R, T(1.0), dz, R, buf_.params + l.weights_offset, l.inputs,
                        T(0.0), w.dx.data(), l.inputs);
                break;
            }
            case LayerKind::dropout:
                if (i == 0) return;
                mul<T>(d, w.mask.data(), w.dx.data(), rows * n);
                break;
            case LayerKind::batchnorm:
                batchnorm_backward<T>(d, w.xhat.data(), buf_.params + l.weights_offset, w.inv_std.data(),
                                      w.dx.data(), buf_.grads + l.weights_offset, buf_.grads + l.bias_offset,
                                      rows, n);
                break;
            case LayerKind::normalization: {
                if (i == 0) return;
                const T* inv = buf_.states[i].inv;       // NumPy's dy * inv, one product each
                T* dx = w.dx.data();
                for (index r = 0; r < rows; ++r)
                    for (index j = 0; j < n; ++j) dx[r * n + j] = d[r * n + j] * inv[j];
                break;
            }
        }
        d = w.dx.data();
    }
}

// Sequential._penalty (network.py) with Regularizer.apply (regularizers.py).
template <class T>
double Trainer<T>::penalty(index rows, index n) {
    double total = 0.0;
    for (const LayerSpec& l : spec_.layers) {
        if (!has_weights(l)) continue;
        const double d = double(l.per_batch ? rows : n);
        const double l1 = l.l1 / d, l2 = l.l2 / d;
        if (l1 == 0 && l2 == 0) continue;
        total += regularize<T>(buf_.params + l.weights_offset, buf_.grads + l.weights_offset,
                               l.inputs * affine_rows(l), l1, l2);
    }
    return total;
}

// The metric's running sums (metrics.py, losses.py), from the batch's logits and targets.
template <class T>
void Trainer<T>::add_metrics(const T* z, index rows, Totals& t) const {
    const index k = outputs_;
    const T* y = y_.data();
    t.count += rows;
    switch (spec_.loss) {
        case Loss::softmax_cross_entropy:
            for (index i = 0; i < rows; ++i)
                t.correct += argmax_row(z + i * k, k) == argmax_row(y + i * k, k);
            return;
        case Loss::binary_cross_entropy:
            for (index i = 0; i < rows; ++i) {
                bool right = true;
                for (index j = 0; j < k && right; ++j)
                    right = (z[i * k + j] > T(0)) == (y[i * k + j] > T(0.5));
                t.correct += right;
            }
            return;
        case Loss::mse: {
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
                    const double e = double(z[i * k + j]) - yv, c = yv - t.shift[j];
                    sse[j] += e * e;
                    sum[j] += c;
                    sq[j] += c * c;
                }
            for (index j = 0; j < k; ++j) {
                t.sse[j] += sse[j];
                t.sum[j] += sum[j];
                t.sum_sq[j] += sq[j];
            }
            return;
        }
    }
}

template <class T>
void Trainer<T>::run(const EpochData<T>& data, index step_begin, index step_end, const double* lrs, long long t0,
                     std::uint64_t model_step0, Totals& totals, const std::atomic<bool>* stop) {
    check_order(data);
    const Running running(running_);
    const index b = spec_.batch, n = data.n, k = outputs_;
    const OptimizerSpec& opt = spec_.optimizer;
    for (index s = step_begin; s < step_end; ++s) {
        if (stop && stop->load(std::memory_order_relaxed)) {
            totals.interrupted = true;
            return;
        }
        const std::lock_guard<WeightsLock> whole_step(*lock_);
        const index start = s * b;
        const index rows = start + b < n ? b : n - start;
        const index i = s - step_begin;
        gather(data, start, rows);
        const T* logits = forward(rows, model_step0 + std::uint64_t(i));

        // Sequential._loss_and_grad: the weight sum in ascending order in double.
        const T* w = data.w ? w_.data() : nullptr;
        double weight = double(rows), scale = 1.0 / double(rows);
        if (w) {
            weight = double(w[0]);
            for (index r = 1; r < rows; ++r) weight += double(w[r]);
            scale = weight > 0 ? 1.0 / weight : 0.0;
        }
        const double loss_sum = loss<T>(spec_.loss, logits, y_.data(), grad_.data(), rows, k, T(scale), w);
        if (!std::isfinite(loss_sum)) {
            totals.diverged_step = s;
            totals.diverged = Divergence::loss;
            totals.diverged_value = loss_sum;
            totals.diverged_rows = rows;
            return;
        }
        backward(rows);
        const double pen = penalty(rows, n);

        // Optimizer.step (optimizers.py): the finite check, clipping, one fused update.
        const double norm2 = sum_squares<T>(buf_.grads, spec_.params);
        if (!std::isfinite(norm2)) {
            totals.diverged_step = s;
            totals.diverged = Divergence::gradient;
            totals.diverged_value = norm2;
            totals.diverged_rows = rows;
            return;
        }
        double grad_scale = 1.0;
        if (opt.clipnorm > 0) {
            const double norm = std::sqrt(norm2);
            if (norm > opt.clipnorm) grad_scale = opt.clipnorm / norm;
        }
        // The running totals (the per-op loop's, train/loop.py) from the logits before the update.
        totals.penalty_sum += pen * double(rows);
        totals.loss_sum += loss_sum;
        totals.weight_sum += weight;
        add_metrics(logits, rows, totals);

        const OptimizerHyper h{opt.kind, lrs[i], grad_scale, opt.b1, opt.b2, opt.eps, opt.weight_decay,
                               t0 + i};
        optimizer_update<T>(h, buf_.params, buf_.grads, buf_.m, buf_.v, spec_.params);
        ++totals.steps;
    }
}

template class Workspace<float>;
template class Workspace<double>;
template class Trainer<float>;
template class Trainer<double>;

}}  // namespace fastmlp::train
