// The fused training path (trainer.hpp): the per-op loop's calls, in its order.
#include "trainer.hpp"

#include <cmath>
#include <cstring>
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
Trainer<T>::Trainer(TrainerSpec spec, Buffers<T> buffers) : spec_(std::move(spec)), buf_(buffers) {
    const auto& layers = spec_.layers;
    if (layers.empty()) fail("the model has no layers");
    if (spec_.batch < 1) fail("batch must be >= 1, got " + std::to_string(spec_.batch));
    if (!buf_.params || !buf_.grads) fail("params and grads are required");
    if (uses_m(spec_.optimizer.kind) && !buf_.m) fail("this optimizer needs its state m");
    if (uses_v(spec_.optimizer.kind) && !buf_.v) fail("this optimizer needs its state v");
    if (!uses_m(spec_.optimizer.kind)) buf_.m = nullptr;
    if (!uses_v(spec_.optimizer.kind)) buf_.v = nullptr;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const LayerSpec& l = layers[i];
        const std::string name = "layers[" + std::to_string(i) + "]";
        if (l.inputs < 1 || l.outputs < 1) fail(name + " must have widths >= 1");
        if (i > 0 && l.inputs != layers[i - 1].outputs)
            fail(name + " takes " + std::to_string(l.inputs) + " inputs but layers[" + std::to_string(i - 1) +
                 "] gives " + std::to_string(layers[i - 1].outputs));
        if (l.kind == LayerKind::dense) {
            const index nw = l.inputs * l.outputs;
            if (l.weights_offset < 0 || l.weights_offset + nw > spec_.params || l.bias_offset < 0 ||
                l.bias_offset + l.outputs > spec_.params)
                fail(name + "'s weights or biases lie outside the " + std::to_string(spec_.params) +
                     " parameters");
            if (!(l.l1 >= 0 && l.l2 >= 0)) fail(name + "'s regularizer coefficients must be >= 0");
        } else {
            if (l.inputs != l.outputs) fail(name + " (dropout) must keep its width");
            if (!(l.rate >= 0 && l.rate < 1)) fail(name + " (dropout) needs 0 <= rate < 1");
        }
    }
    features_ = layers.front().inputs;
    outputs_ = layers.back().outputs;
    const index b = spec_.batch;
    x_ = Workspace<T>(b * features_);
    y_ = Workspace<T>(b * outputs_);
    w_ = Workspace<T>(b);
    grad_ = Workspace<T>(b * outputs_);
    work_.resize(layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const LayerSpec& l = layers[i];
        LayerWork& w = work_[i];
        if (i > 0) w.dx = Workspace<T>(b * l.inputs);
        if (l.kind == LayerKind::dense) {
            w.out = Workspace<T>(b * l.outputs);
            if (l.activation != Activation::linear) {
                w.act = Workspace<T>(b * l.outputs);
                w.dz = Workspace<T>(b * l.outputs);
            }
        } else {
            w.out = Workspace<T>(b * l.outputs);
            w.mask = Workspace<T>(b * l.outputs);
        }
    }
    scratch_.assign(3 * std::size_t(outputs_), 0.0);
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
        if (l.kind == LayerKind::dense) {
            T* z = w.out.data();
            const T* W = buf_.params + l.weights_offset;
            T* a = l.activation == Activation::linear ? z : w.act.data();
            // z = x W^T + b, a = act(z): the bias and activation in the GEMM's epilogue.
            gemm_bias_act<T>(false, true, rows, l.outputs, l.inputs, in, l.inputs, W, l.inputs,
                             buf_.params + l.bias_offset, z, l.outputs, a, l.outputs, l.activation,
                             T(l.param));
            w.output = a;
        } else {
            dropout_forward<T>(in, w.out.data(), w.mask.data(), rows * l.outputs, l.rate, l.seed, l.layer_index,
                               model_step);
            w.output = w.out.data();
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
        if (l.kind == LayerKind::dense) {
            const T* dz = d;
            if (l.activation != Activation::linear) {
                act_backward<T>(w.out.data(), w.act.data(), d, w.dz.data(), rows * l.outputs, l.activation,
                                T(l.param));
                dz = w.dz.data();
            }
            gemm<T>(true, false, l.outputs, l.inputs, rows, T(1.0), dz, l.outputs, w.input, l.inputs, T(0.0),
                    buf_.grads + l.weights_offset, l.inputs);
            col_sum<T>(dz, rows, l.outputs, buf_.grads + l.bias_offset);
            if (i == 0) break;
            gemm<T>(false, false, rows, l.inputs, l.outputs, T(1.0), dz, l.outputs, buf_.params + l.weights_offset,
                    l.inputs, T(0.0), w.dx.data(), l.inputs);
        } else {
            if (i == 0) break;
            mul<T>(d, w.mask.data(), w.dx.data(), rows * l.outputs);
        }
        d = w.dx.data();
    }
}

// Sequential._penalty (network.py) with Regularizer.apply (regularizers.py).
template <class T>
double Trainer<T>::penalty(index rows, index n) {
    double total = 0.0;
    for (const LayerSpec& l : spec_.layers) {
        if (l.kind != LayerKind::dense) continue;
        const double d = double(l.per_batch ? rows : n);
        const double l1 = l.l1 / d, l2 = l.l2 / d;
        if (l1 == 0 && l2 == 0) continue;
        total += regularize<T>(buf_.params + l.weights_offset, buf_.grads + l.weights_offset,
                               l.inputs * l.outputs, l1, l2);
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
                     std::uint64_t model_step0, Totals& totals) {
    const index b = spec_.batch, n = data.n, k = outputs_;
    const OptimizerSpec& opt = spec_.optimizer;
    for (index s = step_begin; s < step_end; ++s) {
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
        // The running totals (training.py _train_epoch) from the logits before the update.
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
