// Checks of the fused paths' layer descriptions (layers.hpp).
#include "layers.hpp"

#include <stdexcept>

namespace fastmlp { namespace train {

namespace {

std::string str(index v) { return std::to_string(v); }

// The parameters a layer reads lie inside the buffer.
void check_offsets(const LayerSpec& l, index n_params, const std::string& name) {
    index weights = 0, biases = 0;
    if (has_weights(l)) {
        weights = affine_rows(l) * l.inputs;
        biases = affine_rows(l);
    } else if (l.kind == LayerKind::batchnorm) {
        weights = biases = l.outputs;                 // gamma, beta
    }
    if (weights == 0) return;
    if (l.weights_offset < 0 || l.weights_offset + weights > n_params || l.bias_offset < 0 ||
        l.bias_offset + biases > n_params)
        throw std::invalid_argument(name + "'s parameters lie outside the " + str(n_params) + " parameters");
}

}  // namespace

template <class T>
void check_layers(const std::vector<LayerSpec>& layers, const std::vector<LayerState<T>>& states,
                  index n_params, const std::string& who) {
    if (layers.empty()) throw std::invalid_argument(who + ": the model has no layers");
    if (states.size() != layers.size()) throw std::invalid_argument(who + ": one state entry per layer is needed");
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const LayerSpec& l = layers[i];
        const std::string name = who + ": layers[" + std::to_string(i) + "]";
        auto fail = [&](const std::string& what) { throw std::invalid_argument(name + " " + what); };
        if (l.inputs < 1 || l.outputs < 1) fail("must have widths >= 1");
        if (i > 0 && l.inputs != layers[i - 1].outputs)
            fail("takes " + str(l.inputs) + " inputs but layers[" + std::to_string(i - 1) + "] gives " +
                 str(layers[i - 1].outputs));
        if (!has_weights(l) && l.inputs != l.outputs) fail("must keep its width");
        if (l.kind == LayerKind::maxout && l.pieces < 1) fail("(maxout) needs pieces >= 1");
        if (has_weights(l) && !(l.l1 >= 0 && l.l2 >= 0)) fail("has regularizer coefficients < 0");
        if (l.kind == LayerKind::dropout && !(l.rate >= 0 && l.rate < 1)) fail("(dropout) needs 0 <= rate < 1");
        if (l.kind == LayerKind::batchnorm && !(l.momentum >= 0 && l.momentum < 1 && l.eps > 0))
            fail("(batchnorm) needs 0 <= momentum < 1 and eps > 0");
        const LayerState<T>& s = states[i];
        if (l.kind == LayerKind::batchnorm && (!s.mean || !s.var)) fail("(batchnorm) needs its running statistics");
        if (l.kind == LayerKind::normalization && (!s.mean || !s.var || !s.inv))
            fail("(normalization) needs its mean, variance and inverse deviation");
        check_offsets(l, n_params, name);
    }
}

template void check_layers<float>(const std::vector<LayerSpec>&, const std::vector<LayerState<float>>&, index,
                                  const std::string&);
template void check_layers<double>(const std::vector<LayerSpec>&, const std::vector<LayerState<double>>&, index,
                                   const std::string&);

}}  // namespace fastmlp::train
