// The built-in layers as the fused paths (trainer.hpp, predictor.hpp) see them: a kind, the
// widths, offsets into the model's flat parameter buffer (the gradients sit at the same
// offsets) and, for the normalizing layers, pointers to their state arrays.
//
//   kind           parameters (offsets)                 state
//   dense          W (outputs, inputs), b (outputs)     -
//   maxout         W (outputs*pieces, inputs), b (..)   -
//   dropout        -                                    -
//   batchnorm      gamma (n), beta (n)                  running mean and variance (n): written
//                                                       by training, read by inference
//   normalization  -                                    mean, var = std^2 and 1/sqrt(var) (n)
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "../common.hpp"

namespace fastmlp { namespace train {

enum class LayerKind : int { dense, dropout, maxout, batchnorm, normalization };

struct LayerSpec {
    LayerKind kind = LayerKind::dense;
    index inputs = 0, outputs = 0;           // widths; equal for dropout and the normalizers
    // Dense and Maxout: activation (Dense) and its parameter; W and b as offsets (gamma and
    // beta for batchnorm); the regularizer's lambdas (both 0: none), divided per step by
    // the training set's size or, with per_batch, by the step's rows.
    Activation activation = Activation::linear;
    double param = 0;
    index pieces = 1;                         // Maxout's linear pieces per output
    index weights_offset = 0, bias_offset = 0;
    double l1 = 0, l2 = 0;
    bool per_batch = false;
    // Dropout: the rate, the model's seed (mod 2^64) and the layer's index in the model.
    double rate = 0;
    std::uint64_t seed = 0, layer_index = 0;
    // BatchNorm: running = momentum * running + (1 - momentum) * batch; eps.
    double momentum = 0, eps = 0;
};

// A normalizing layer's state arrays (null for the other kinds).
template <class T>
struct LayerState {
    T* mean = nullptr;        // batchnorm: running mean; normalization: mean
    T* var = nullptr;         // batchnorm: running variance; normalization: std^2
    const T* inv = nullptr;   // normalization: 1 / sqrt(var), its backward's factor
};

inline bool has_weights(const LayerSpec& l) {
    return l.kind == LayerKind::dense || l.kind == LayerKind::maxout;
}

// Rows of W (and entries of b) of a Dense or Maxout layer: the pre-activation width.
inline index affine_rows(const LayerSpec& l) {
    return l.kind == LayerKind::maxout ? l.outputs * l.pieces : l.outputs;
}

// Checks every layer (widths >= 1 and chained, parameters inside the n_params buffer,
// each kind's constants, the state the kind needs); throws std::invalid_argument whose
// message starts with `who`.
template <class T>
void check_layers(const std::vector<LayerSpec>& layers, const std::vector<LayerState<T>>& states,
                  index n_params, const std::string& who);

}}  // namespace fastmlp::train
