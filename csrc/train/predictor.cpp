// The fused inference path (predictor.hpp): the per-op inference forward's calls.
#include "predictor.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <shared_mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "../ops.hpp"
#include "rows.hpp"

namespace fastmlp { namespace train {

namespace {

constexpr std::size_t kAlign = 64;
// Scratch kept per thread between calls (bytes); a call that needs more allocates its own.
constexpr std::size_t kKeepScratch = std::size_t(1) << 20;

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("Predictor: " + msg); }

struct AlignedFree {
    void operator()(void* p) const { ::operator delete(p, std::align_val_t(kAlign)); }
};

// Per-thread grow-only scratch of at most kKeepScratch bytes.
struct ThreadScratch {
    void* data = nullptr;
    std::size_t bytes = 0;
    ~ThreadScratch() {
        if (data) ::operator delete(data, std::align_val_t(kAlign));
    }
};
thread_local ThreadScratch tl_scratch;

// `bytes` of 64-byte aligned scratch for this call: the thread's kept buffer when small
// enough, otherwise a buffer owned by `owned` and freed when the call ends.
void* scratch(std::size_t bytes, std::unique_ptr<void, AlignedFree>& owned) {
    if (bytes > kKeepScratch) {
        owned.reset(::operator new(bytes, std::align_val_t(kAlign)));
        return owned.get();
    }
    ThreadScratch& s = tl_scratch;
    if (s.bytes < bytes) {
        if (s.data) ::operator delete(s.data, std::align_val_t(kAlign));
        s.data = nullptr;
        s.bytes = 0;
        s.data = ::operator new(bytes, std::align_val_t(kAlign));
        s.bytes = bytes;
    }
    return s.data;
}

// W (rows x inputs) packed as op(B) = W^T for `table`'s ISA, and b copied; BatchNorm's
// gamma, beta and running statistics copied; Normalization's gamma 1 and beta 0.
template <class T>
InferenceLayer<T> pack_layer(const KernelTable<T>& table, const LayerSpec& l, const LayerState<T>& state,
                             const T* params) {
    InferenceLayer<T> layer;
    layer.spec = l;
    layer.state = state;
    const std::size_t n = std::size_t(l.outputs);
    if (l.kind == LayerKind::normalization) {
        layer.gamma.assign(n, T(1));
        layer.beta.assign(n, T(0));
    }
    if (l.kind == LayerKind::batchnorm) {
        layer.gamma.assign(params + l.weights_offset, params + l.weights_offset + n);
        layer.beta.assign(params + l.bias_offset, params + l.bias_offset + n);
        layer.mean.assign(state.mean, state.mean + n);
        layer.var.assign(state.var, state.var + n);
    }
    if (!has_weights(l)) return layer;
    const index rows = affine_rows(l);
    const std::size_t count = std::size_t(table.packed_b_size(rows, l.inputs));
    layer.packed_weights.reset(static_cast<T*>(::operator new(sizeof(T) * count, std::align_val_t(kAlign))),
                               [](T* p) { ::operator delete(p, std::align_val_t(kAlign)); });
    table.pack_b(true, rows, l.inputs, params + l.weights_offset, l.inputs, layer.packed_weights.get());
    layer.bias.assign(params + l.bias_offset, params + l.bias_offset + rows);
    return layer;
}

// A buffer other than the input's (cur) and `other`.
int free_buffer(int cur, int other) {
    for (int i = 0; i < 3; ++i)
        if (i != cur && i != other) return i;
    return -1;
}

}  // namespace

template <class T>
Predictor<T>::Predictor(const std::vector<LayerSpec>& layers, const std::vector<LayerState<T>>& states, Loss loss,
                        const T* params, index n_params, WeightsLock& lock)
    : loss_(loss) {
    if (!params) fail("params is required");
    check_layers(layers, states, n_params, "Predictor");
    const KernelTable<T>& table = kernels().get<T>();
    gemm_bias_act_packed_ = table.gemm_bias_act_packed;
    const std::shared_lock<WeightsLock> reading(lock);
    for (std::size_t i = 0; i < layers.size(); ++i) {
        if (layers[i].kind == LayerKind::dropout) fail("Dropout is the identity at inference: leave it out");
        layers_.push_back(pack_layer(table, layers[i], states[i], params));
        widest_ = std::max({widest_, affine_rows(layers[i]), layers[i].outputs});
        if (layers[i].kind == LayerKind::maxout) widest_maxout_ = std::max(widest_maxout_, layers[i].outputs);
    }
}

// One layer's inference forward of `rows` rows from `in` into the rotating buffers (cur:
// the one holding `in`, or -1; updated to the one holding the result, which is returned).
template <class T>
const T* Predictor<T>::forward(const InferenceLayer<T>& layer, const T* in, index rows, T* const buf[3], int& cur,
                               std::int32_t* argmax) const {
    const LayerSpec& l = layer.spec;
    const int zi = free_buffer(cur, -1);
    T* z = buf[zi];
    if (l.kind == LayerKind::batchnorm || l.kind == LayerKind::normalization) {
        const bool kept = l.kind == LayerKind::batchnorm;     // the snapshot, else live state
        batchnorm_forward_infer<T>(in, layer.gamma.data(), layer.beta.data(),
                                   kept ? layer.mean.data() : layer.state.mean,
                                   kept ? layer.var.data() : layer.state.var, z, rows, l.outputs,
                                   T(kept ? l.eps : 0));
        cur = zi;
        return z;
    }
    const index R = affine_rows(l);
    const Activation act = l.kind == LayerKind::dense ? l.activation : Activation::linear;
    const int ai = act == Activation::linear ? zi : free_buffer(cur, zi);
    // z = x W^T + b, a = act(z): the bias and activation in the GEMM's epilogue.
    gemm_bias_act_packed_(rows, R, l.inputs, in, l.inputs, layer.packed_weights.get(), layer.bias.data(), z, R,
                          buf[ai], R, act, T(l.param), threads_for(rows * R * l.inputs, kGemmGrain));
    cur = ai;
    if (l.kind == LayerKind::maxout) {
        const int mi = free_buffer(zi, -1);
        maxout_forward<T>(z, buf[mi], argmax, rows, l.outputs, l.pieces);
        cur = mi;
    }
    return buf[cur];
}

template <class T>
void Predictor<T>::run(const T* x, index n, index chunk, PredictMode mode, T* out_t, std::int64_t* out_i) const {
    if (n < 1) return;
    if (chunk < 1 || chunk > n) chunk = n;
    const index k = outputs();
    // Three rotating buffers of chunk * widest (a layer's input, z, and a when not linear),
    // then Maxout's argmax.
    const std::size_t per = std::size_t(chunk) * std::size_t(widest_);
    const std::size_t stride = (per * sizeof(T) + kAlign - 1) / kAlign * kAlign;
    const std::size_t argmax_bytes = std::size_t(chunk) * std::size_t(widest_maxout_) * sizeof(std::int32_t);
    std::unique_ptr<void, AlignedFree> owned;
    char* base = static_cast<char*>(scratch(3 * stride + argmax_bytes, owned));
    T* const buf[3] = {reinterpret_cast<T*>(base), reinterpret_cast<T*>(base + stride),
                       reinterpret_cast<T*>(base + 2 * stride)};
    std::int32_t* argmax = reinterpret_cast<std::int32_t*>(base + 3 * stride);
    for (index start = 0; start < n; start += chunk) {
        const index rows = start + chunk < n ? chunk : n - start;
        const T* in = x + start * features();
        int cur = -1;                                  // the buffer holding `in`, or none
        for (const InferenceLayer<T>& layer : layers_) in = forward(layer, in, rows, buf, cur, argmax);
        const T* z = in;                               // the chunk's logits (rows, k)
        switch (mode) {
            case PredictMode::logits:
                std::memcpy(out_t + start * k, z, sizeof(T) * std::size_t(rows * k));
                break;
            case PredictMode::proba:
                output<T>(loss_, z, out_t + start * k, rows, k);
                break;
            case PredictMode::labels:
                if (loss_ == Loss::softmax_cross_entropy) {
                    for (index i = 0; i < rows; ++i) out_i[start + i] = argmax_row(z + i * k, k);
                } else if (loss_ == Loss::binary_cross_entropy) {
                    std::int64_t* o = out_i + start * k;
                    for (index i = 0; i < rows * k; ++i) o[i] = z[i] > T(0);
                } else {
                    std::memcpy(out_t + start * k, z, sizeof(T) * std::size_t(rows * k));
                }
                break;
        }
    }
}

template class Predictor<float>;
template class Predictor<double>;

}}  // namespace fastmlp::train
