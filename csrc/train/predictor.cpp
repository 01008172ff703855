// The fused inference path (predictor.hpp): the per-op inference forward's calls.
#include "predictor.hpp"

#include <cstring>
#include <memory>
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

// Checks one layer against the previous one and the parameter buffer.
void check_spec(const DenseSpec& l, const DenseSpec* previous, std::size_t i, index n_params) {
    const std::string name = "layers[" + std::to_string(i) + "]";
    if (l.inputs < 1 || l.outputs < 1) fail(name + " must have widths >= 1");
    if (previous && l.inputs != previous->outputs)
        fail(name + " takes " + std::to_string(l.inputs) + " inputs but the previous Dense layer gives " +
             std::to_string(previous->outputs));
    if (l.weights_offset < 0 || l.weights_offset + l.inputs * l.outputs > n_params || l.bias_offset < 0 ||
        l.bias_offset + l.outputs > n_params)
        fail(name + "'s weights or biases lie outside the " + std::to_string(n_params) + " parameters");
}

// W (outputs x inputs) packed as op(B) = W^T for `table`'s ISA, and b copied.
template <class T>
PackedDense<T> pack_layer(const KernelTable<T>& table, const DenseSpec& l, const T* params) {
    PackedDense<T> packed;
    packed.spec = l;
    const std::size_t count = std::size_t(table.packed_b_size(l.outputs, l.inputs));
    packed.packed_weights.reset(static_cast<T*>(::operator new(sizeof(T) * count, std::align_val_t(kAlign))),
                                [](T* p) { ::operator delete(p, std::align_val_t(kAlign)); });
    table.pack_b(true, l.outputs, l.inputs, params + l.weights_offset, l.inputs, packed.packed_weights.get());
    packed.bias.assign(params + l.bias_offset, params + l.bias_offset + l.outputs);
    return packed;
}

}  // namespace

template <class T>
Predictor<T>::Predictor(std::vector<DenseSpec> layers, Loss loss, const T* params, index n_params)
    : loss_(loss) {
    if (layers.empty()) fail("the model has no Dense layers");
    if (!params) fail("params is required");
    const KernelTable<T>& table = kernels().get<T>();
    gemm_bias_act_packed_ = table.gemm_bias_act_packed;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        check_spec(layers[i], i ? &layers[i - 1] : nullptr, i, n_params);
        layers_.push_back(pack_layer(table, layers[i], params));
        if (layers[i].outputs > widest_) widest_ = layers[i].outputs;
    }
}

template <class T>
void Predictor<T>::run(const T* x, index n, index chunk, PredictMode mode, T* out_t, std::int64_t* out_i) const {
    if (n < 1) return;
    if (chunk < 1 || chunk > n) chunk = n;
    const index k = outputs();
    // Three rotating buffers of chunk * widest: the layer's input, z, and a (when not linear).
    const std::size_t per = std::size_t(chunk) * std::size_t(widest_);
    const std::size_t stride = (per * sizeof(T) + kAlign - 1) / kAlign * kAlign;
    std::unique_ptr<void, AlignedFree> owned;
    char* base = static_cast<char*>(scratch(3 * stride, owned));
    T* buf[3] = {reinterpret_cast<T*>(base), reinterpret_cast<T*>(base + stride),
                 reinterpret_cast<T*>(base + 2 * stride)};
    for (index start = 0; start < n; start += chunk) {
        const index rows = start + chunk < n ? chunk : n - start;
        const T* in = x + start * features();
        int cur = -1;                                  // the buffer holding `in`, or none
        for (const PackedDense<T>& layer : layers_) {
            const DenseSpec& l = layer.spec;
            const int zi = cur == 0 ? 1 : 0;               // a buffer other than the input's
            const int ai = (cur == 2 || zi == 2) ? (3 - cur - zi) : 2;  // neither of them
            T* z = buf[zi];
            const bool linear = l.activation == Activation::linear;
            T* a = linear ? z : buf[ai];
            // z = x W^T + b, a = act(z): the bias and activation in the GEMM's epilogue.
            gemm_bias_act_packed_(rows, l.outputs, l.inputs, in, l.inputs, layer.packed_weights.get(),
                                  layer.bias.data(), z, l.outputs, a, l.outputs, l.activation, T(l.param),
                                  threads_for(rows * l.outputs * l.inputs, kGemmGrain));
            in = a;
            cur = linear ? zi : ai;
        }
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
