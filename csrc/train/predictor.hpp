// The fused inference path: predict / predict_proba / evaluate's forward in one call over
// all rows, for models of the built-in layers (Dropout is the identity at inference and is
// left out of the spec by the caller).
//
// It drives the kernels and holds no math of its own: per chunk of rows, per layer, the
// per-op inference forward's calls (layers.py, forward with training=False):
//
//   Dense          gemm_bias_act NT  z = x W^T + b, a = act(z)   (a = z when linear)
//   Maxout         the same, linear, over units * pieces rows; maxout_forward
//   BatchNorm      batchnorm_forward_infer with the running statistics
//   Normalization  batchnorm_forward_infer with gamma 1, beta 0, var = std^2, eps 0
//
// except that W^T comes pre-packed: the constructor snapshots every Dense and Maxout
// layer's weights, packed once for the active ISA (gemm.hpp, "Pre-packed B"), and their
// biases, so a call packs nothing (one row on 784-256-128-10 would otherwise spend most
// of its time packing). The packed product is the same bits as the unpacked one. A
// Predictor is a snapshot of everything training writes (the weights and BatchNorm's
// gamma, beta and running statistics, taken under the model's WeightsLock held shared, so
// between two training steps of another thread): the caller builds a new one when they or
// the ISA change. Normalization's statistics, which training never writes, are read from
// their state arrays at every call.
//
// then, for predict_proba, ops.hpp output() (softmax / sigmoid rows) and, for predict, the
// labels (the first maximum of each row with NaN counting as the maximum, as np.argmax;
// z > 0 for binary cross-entropy; the logits for mse). GEMM's K order does not depend on
// the row count and every other step is row-wise, so a row's result does not depend on
// the chunk or the batch it comes in, bit for bit, and equals the per-op path's.
//
// Thread safety: a Predictor is immutable after construction; the scratch is per call
// (thread_local grow-only buffers up to kKeepScratch bytes per thread, larger ones
// allocated for the call and freed), so several threads may run one Predictor at once.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "../common.hpp"
#include "layers.hpp"
#include "weights_lock.hpp"

namespace fastmlp { namespace train {

// One layer as the predictor keeps it: for Dense and Maxout, W^T packed for the ISA it was
// built on, and b.
template <class T>
struct InferenceLayer {
    LayerSpec spec;
    LayerState<T> state;
    std::shared_ptr<T> packed_weights;   // 64-byte aligned, packed_b_size(rows, inputs)
    std::vector<T> bias;
    // The normalizers' batchnorm_forward_infer arguments: BatchNorm's gamma, beta and
    // running statistics (snapshots); Normalization's gamma 1 and beta 0 (its statistics
    // are read from state).
    std::vector<T> gamma, beta, mean, var;
};

enum class PredictMode : int { logits = 0, proba = 1, labels = 2 };

template <class T>
class Predictor {
public:
    // Checks the layers (std::invalid_argument naming the problem), then, holding `lock`
    // shared, packs the weights and copies the biases and BatchNorm's values out of
    // params and the state arrays.
    Predictor(const std::vector<LayerSpec>& layers, const std::vector<LayerState<T>>& states, Loss loss,
              const T* params, index n_params, WeightsLock& lock);

    index features() const { return layers_.front().spec.inputs; }
    index outputs() const { return layers_.back().spec.outputs; }

    // x (n, features) row-major; chunk >= 1 rows per pass. out: logits and proba (n, k)
    // of T (out_t); labels (n,) int64 for softmax cross-entropy, (n, k) int64 for binary
    // cross-entropy (out_i), or (n, k) of T for mse (out_t).
    void run(const T* x, index n, index chunk, PredictMode mode, T* out_t, std::int64_t* out_i) const;

private:
    const T* forward(const InferenceLayer<T>& layer, const T* in, index rows, T* const buf[3], int& cur,
                     std::int32_t* argmax) const;

    std::vector<InferenceLayer<T>> layers_;
    Loss loss_;
    // The ISA's kernel the weights were packed for (set_isa may switch the table later).
    decltype(KernelTable<T>::gemm_bias_act_packed) gemm_bias_act_packed_;
    index widest_ = 0;        // the widest z or a, over units * pieces for Maxout
    index widest_maxout_ = 0; // Maxout's most units (its argmax scratch)
};

extern template class Predictor<float>;
extern template class Predictor<double>;

}}  // namespace fastmlp::train
