"""ONNX export of a model's inference graph: ``model.to_onnx(path, opset=None)``.

The graph takes ``X`` (N, input_dim) in the model's dtype (float32 or float64, N dynamic)
and returns what the model's own inference returns: ``probabilities`` (predict_proba:
softmax rows for softmax cross-entropy, sigmoids for binary cross-entropy) or, for mse,
``predictions`` (predict's values). Like predict_proba and predict, a single-output model
returns shape (N,), otherwise (N, k). The graph works in class indices and does not hold
the model's ``classes_``: probability column j is the class ``model.classes_[j]`` (one
sigmoid output: the probability of ``classes_[1]``), so the argmax of a row is an output
index; map it through ``model.classes_`` (saved in the model file) for the labels
``predict`` returns. Layer by layer, with the formulas of :mod:`fastmlp.layers`:

- Dense: ``Gemm(X, W, b, transB=1)`` (W is (n_out, n_in), as in ONNX) then the activation,
  as its row in :mod:`fastmlp.nn.activations` writes it: Relu, Sigmoid, Tanh,
  LeakyRelu(slope), Elu(alpha), nothing for linear.
- Maxout: Gemm with W viewed as (units * k, n_in), Reshape to (N, units, k), ReduceMax over
  the pieces.
- Dropout: omitted (the identity at inference).
- BatchNorm: ``gamma * ((x - running_mean) * inv) + beta`` with
  ``inv = 1 / sqrt(running_var + eps)`` computed in the model's dtype at export, as
  ``backend.batchnorm_forward_infer`` computes it (Sub, Mul, Mul, Add).
- Normalization: ``(x - mean) * (1 / sqrt(std * std))``, the same form with gamma = 1,
  beta = 0, eps = 0 (Sub, Mul).

onnxruntime (1.31) has no float64 kernel for Elu, and float64 LeakyRelu only from opset
16, so float64 graphs write those two as ``Where(x > 0, x, slope * x)`` and
``Where(x > 0, x, alpha * (Exp(x) - 1))``, the same functions in ops every runtime has
(the activation rows say which ops they use).

A :class:`fastmlp.MultiTask` (a model with ``trunk`` and ``heads``) exports the trunk once
and one output per head, named by the head, in ``heads`` order: the head's
probabilities (classification) or predictions (mse), as its ``predict_proba``/``predict``
entry.

Needs the ``onnx`` package (``pip install 'fastmlp[onnx]'``), imported only on export.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..nn import activations
from .._files import check_path, write_atomically
from .._validation import check_int
from .._version import __version__
from ..nn.layers import BatchNorm, Dense, Dropout, Maxout, Normalization, layers_of
from ..nn.losses import get_loss

__all__ = ["DEFAULT_OPSET", "INPUT_NAME", "MIN_OPSET", "export_onnx", "layer_converters"]

#: Softmax-13 is the first to normalize over exactly the given axis (earlier versions
#: flatten the trailing axes; the same for our 2-D logits, but we state the newer meaning).
MIN_OPSET = 13
#: The default: ReduceMax takes its axes as an input from opset 18 on; onnxruntime >= 1.14
#: runs it.
DEFAULT_OPSET = 18
INPUT_NAME = "X"


def layer_converters(model, table: Dict[type, Callable], target: str) -> List[Callable]:
    """The converter of every layer of ``model``, looked up by the layer's exact type in
    ``table`` (a subclass may compute something else, so it is not assumed to convert).
    Shared by the ONNX and PyTorch exports; ``target`` names the format in messages.

    TypeError if ``model`` is not a :class:`fastmlp.Sequential`; ValueError naming the
    first layer without a converter."""
    layers = layers_of(model)
    supported = ", ".join(kind.__name__ for kind in table)
    converters = []
    for i, layer in enumerate(layers):
        converter = table.get(type(layer))
        if converter is None:
            raise ValueError(f"layers[{i}] ({type(layer).__name__}) cannot be converted to "
                             f"{target}: the supported layers are {supported}")
        converters.append(converter)
    return converters


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx package: pip install 'fastmlp[onnx]' "
                          "(or pip install onnx; onnxruntime runs the exported file)") from exc
    return onnx


def _check_opset(opset, onnx) -> int:
    """None means DEFAULT_OPSET; else an int in [MIN_OPSET, the installed onnx's newest]."""
    if opset is None:
        return DEFAULT_OPSET
    newest = onnx.defs.onnx_opset_version()
    opset = check_int(opset, "opset")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be between {MIN_OPSET} (the oldest this export "
                         f"writes) and {newest} (the newest the installed onnx "
                         f"{onnx.__version__} knows); got {opset}")
    return opset


class _GraphBuilder:
    """Collects nodes and initializers; every value gets a unique name under a prefix."""

    def __init__(self, onnx, dtype: np.dtype, opset: int):
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def constant(self, name: str, value, dtype: Optional[np.dtype] = None) -> str:
        """An initializer holding ``value`` in ``dtype`` (the model's by default)."""
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op: str, inputs: List[str], prefix: str, output: Optional[str] = None,
             **attributes) -> str:
        """Append one node; returns its output's name (``output`` or a fresh one)."""
        self._count += 1
        output = output or f"{prefix}{op.lower()}_{self._count}"
        self.nodes.append(self.onnx.helper.make_node(
            op, inputs, [output], name=f"{prefix}{op}_{self._count}", **attributes))
        return output


# ----------------------------------------------------------------------- layers
def _gemm(g: _GraphBuilder, x: str, W2: np.ndarray, b2: np.ndarray, prefix: str) -> str:
    """``Gemm(x, W2, b2, transB=1)`` = ``x @ W2.T + b2``."""
    return g.node("Gemm", [x, g.constant(f"{prefix}W", W2), g.constant(f"{prefix}b", b2)],
                  prefix, transB=1)


def _dense(g: _GraphBuilder, layer: Dense, x: str, prefix: str) -> str:
    z = _gemm(g, x, layer.W2, layer.b2, prefix)
    return activations.kind(layer.activation).onnx(g, z, layer.param, prefix)


def _maxout(g: _GraphBuilder, layer: Maxout, x: str, prefix: str) -> str:
    """Gemm over all units * k pieces, Reshape (N, units, k), ReduceMax over the pieces."""
    z = _gemm(g, x, layer.W2, layer.b2, prefix)
    shape = g.constant(f"{prefix}pieces_shape", [-1, layer.units, layer.pieces], np.int64)
    pieces = g.node("Reshape", [z, shape], prefix)
    if g.opset >= 18:   # ReduceMax-18 takes the axes as an input
        return g.node("ReduceMax", [pieces, g.constant(f"{prefix}axes", [2], np.int64)],
                      prefix, keepdims=0)
    return g.node("ReduceMax", [pieces], prefix, axes=[2], keepdims=0)


def _standardize(g: _GraphBuilder, x: str, mean: np.ndarray, inv: np.ndarray,
                 prefix: str) -> str:
    """``(x - mean) * inv``."""
    centered = g.node("Sub", [x, g.constant(f"{prefix}mean", mean)], prefix)
    return g.node("Mul", [centered, g.constant(f"{prefix}inv_std", inv)], prefix)


def _inverse_std(var: np.ndarray, eps: float) -> np.ndarray:
    """``1 / sqrt(var + eps)`` in var's dtype, as ``batchnorm_forward_infer`` computes it."""
    T = var.dtype.type
    return T(1) / np.sqrt(var + T(eps))


def _batch_norm(g: _GraphBuilder, layer: BatchNorm, x: str, prefix: str) -> str:
    """``gamma * ((x - running_mean) * inv) + beta``, inv = 1 / sqrt(running_var + eps)."""
    xhat = _standardize(g, x, layer.running_mean,
                        _inverse_std(layer.running_var, layer.eps), prefix)
    scaled = g.node("Mul", [xhat, g.constant(f"{prefix}gamma", layer.gamma)], prefix)
    return g.node("Add", [scaled, g.constant(f"{prefix}beta", layer.beta)], prefix)


def _normalization(g: _GraphBuilder, layer: Normalization, x: str, prefix: str) -> str:
    """``(x - mean) * (1 / sqrt(std * std))`` (the layer's forward: var = std**2, eps 0)."""
    return _standardize(g, x, layer.mean, _inverse_std(layer.std * layer.std, 0.0), prefix)


_LAYERS: Dict[type, Callable] = {
    Dense: _dense,
    Maxout: _maxout,
    Dropout: lambda g, layer, x, prefix: x,
    BatchNorm: _batch_norm,
    Normalization: _normalization,
}


# The ONNX node of each loss's output activation (Loss.output_activation), and its attributes.
_OUTPUT_NODES = {"softmax": ("Softmax", {"axis": 1}), "sigmoid": ("Sigmoid", {}),
                 "identity": ("Identity", {}), "exp": ("Exp", {})}


def _output(g: _GraphBuilder, loss: str, logits: str, n_outputs: int, name: str,
            prefix: str) -> str:
    """predict_proba's (or, for a regression loss, predict's) output of the logits, named
    ``name``; a single column is flattened to (N,)."""
    loss = get_loss(loss)
    flatten = n_outputs == 1
    final = None if flatten else name
    op, attributes = _OUTPUT_NODES[loss.output_activation]
    out = g.node(op, [logits], prefix, final, **attributes)
    if flatten:
        out = g.node("Reshape", [out, g.constant(f"{prefix}shape", [-1], np.int64)],
                     prefix, name)
    return out


def _outputs_of(model) -> Tuple[int, List[Tuple[str, int, str, int, str]]]:
    """The trunk's layer count and, per output, (name, its layers' count, loss, width,
    node prefix): a MultiTask's heads (``trunk``, ``heads``, ``losses``, ``n_outputs``),
    else the Sequential's one output, "probabilities" or "predictions"."""
    heads = getattr(model, "heads", None)
    if heads is None:
        name = "probabilities" if get_loss(model.loss).classifier else "predictions"
        return 0, [(name, len(model.layers), model.loss, model.n_outputs, "output/")]
    return len(model.trunk), [(name, len(layers), model.losses[name], model.n_outputs[name],
                               f"outputs.{name}/") for name, layers in heads.items()]


def _value_info(onnx, name: str, dtype: np.dtype, shape: list):
    """A graph input/output of ``dtype`` and ``shape`` ("N": the dynamic batch)."""
    return onnx.helper.make_tensor_value_info(
        name, onnx.helper.np_dtype_to_tensor_dtype(dtype), shape)


def build_onnx_model(model, *, opset: Optional[int] = None):
    """The checked ``onnx.ModelProto`` of ``model``'s inference graph (module docstring)."""
    converters = layer_converters(model, _LAYERS, "ONNX")
    onnx = _import_onnx()
    opset = _check_opset(opset, onnx)
    g = _GraphBuilder(onnx, model.dtype, opset)

    def chain(x: str, first: int, stop: int) -> str:    # layers[first:stop] from x
        for i in range(first, stop):
            x = converters[i](g, model.layers[i], x, f"layers.{i}/")
        return x

    n_trunk, heads = _outputs_of(model)
    features, start, outputs = chain(INPUT_NAME, 0, n_trunk), n_trunk, []
    for name, n_layers, loss, width, prefix in heads:
        logits = chain(features, start, start + n_layers)
        start += n_layers
        outputs.append(_value_info(onnx, _output(g, loss, logits, width, name, prefix),
                                   model.dtype, ["N"] if width == 1 else ["N", width]))
    graph = onnx.helper.make_graph(
        g.nodes, "fastmlp",
        [_value_info(onnx, INPUT_NAME, model.dtype, ["N", model.input_dim])],
        outputs, g.initializers)
    names = ", ".join(output.name for output in outputs)
    losses = ", ".join(loss for _, _, loss, _, _ in heads)
    proto = onnx.helper.make_model_gen_version(   # the oldest IR version the opset allows
        graph, opset_imports=[onnx.helper.make_opsetid("", opset)],
        producer_name="fastmlp", producer_version=__version__,
        doc_string=f"fastmlp {type(model).__name__}, loss {losses}: {INPUT_NAME} -> {names}")
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export_onnx(model, path, *, opset: Optional[int] = None) -> None:
    """Write ``model``'s inference graph (module docstring) to ``path`` as ONNX, atomically.

    ``opset`` (default DEFAULT_OPSET = 18) is the ai.onnx opset, from MIN_OPSET = 13 to
    the newest the installed onnx knows. The graph is checked with
    ``onnx.checker.check_model(full_check=True)`` before anything is written. TypeError
    for a path that is not a str or os.PathLike or a model that is not a Sequential or
    MultiTask; ValueError for a layer without an ONNX form (naming it) or an opset out of
    range."""
    path = check_path(path)
    data = build_onnx_model(model, opset=opset).SerializeToString()
    write_atomically(path, lambda file: file.write(data))
