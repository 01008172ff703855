"""ONNX export (fastmlp/interop/onnx.py): onnxruntime runs the exported file and gives
predict_proba's probabilities (predict's values for mse and poisson) for every layer type, activation,
loss and dtype, at the oldest and the default opset, for 1 row and many; the file passes
onnx.checker, declares input "X" (N, input_dim) in the model's dtype, and is written
atomically; bad arguments raise TypeError/ValueError naming what is wrong."""
import os
import sys

import numpy as np
import onnx
import onnxruntime
import pytest

from fastmlp import BatchNorm, Dense, Dropout, Layer, Maxout, Normalization, Sequential
from fastmlp.nn.activations import ACTIVATIONS as ACTIVATION_NAMES, ELU, LeakyReLU
from fastmlp.io.onnx import DEFAULT_OPSET, MIN_OPSET, export_onnx
from fastmlp.nn.losses import get_loss
from helpers import make_data, relative_error
from layer_cases import EXAMPLES

#: onnxruntime vs the model's own inference, relative error (helpers.relative_error):
#: different GEMM blocking and transcendental functions, a few roundings per layer
#: (measured: 1.1e-7 float32, 2.2e-16 float64 on the every-layer model).
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}

DTYPES = ["float32", "float64"]
ACTIVATIONS = [*ACTIVATION_NAMES, LeakyReLU(0.2), ELU(0.5)]
# (loss, outputs): single outputs come back as (N,), like predict_proba and predict
LOSSES = [("softmax_cross_entropy", 3), ("binary_cross_entropy", 1),
          ("binary_cross_entropy", 2), ("mse", 1), ("mse", 2), ("poisson", 1), ("poisson", 2)]
N_FEATURES = 5


def every_layer_model(loss="softmax_cross_entropy", k=3, dtype="float32", backend="native",
                      seed=0):
    """Every built-in layer type and activation, trained for two epochs so that
    Normalization is adapted and BatchNorm's running statistics are not the defaults."""
    model = Sequential([Normalization(), Dense(8, "relu"), Dropout(0.2),
                        BatchNorm(momentum=0.8, eps=1e-2), Maxout(6, pieces=3),
                        Dense(7, LeakyReLU(0.2)), Dense(7, ELU(0.5)), Dense(7, "tanh"),
                        Dense(7, "sigmoid"), Dense(7), Dense(k)],
                       input_dim=N_FEATURES, loss=loss, dtype=dtype, backend=backend,
                       seed=seed)
    X, y = make_data(loss, n=64, n_features=N_FEATURES, k=k, seed=seed)
    model.fit(3 * X + 1, y[:, 0] if k == 1 else y, epochs=2, batch_size=16)
    return model


def inputs(dtype, n=50, seed=1):
    """Shifted, widened inputs: every activation sees both signs."""
    return (3 * np.random.default_rng(seed).normal(size=(n, N_FEATURES)) + 1).astype(dtype)


def expected(model, X):
    return model.predict_proba(X) if get_loss(model.loss).classifier else model.predict(X)


def run_onnx(path, X):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})[0]


def assert_runtime_matches(model, path, opset=None):
    model.to_onnx(path, opset=opset)
    for X in (inputs(model.dtype), inputs(model.dtype, n=1)):
        actual, wanted = run_onnx(path, X), expected(model, X)
        assert actual.dtype == model.dtype and actual.shape == wanted.shape
        error = relative_error(actual, wanted)
        assert error <= TOLERANCE[model.dtype.name], f"relative error {error:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss,k", LOSSES)
@pytest.mark.parametrize("opset", [MIN_OPSET, DEFAULT_OPSET])
def test_every_layer_and_loss_matches_the_model(tmp_path, loss, k, dtype, opset):
    assert_runtime_matches(every_layer_model(loss, k, dtype), tmp_path / "model.onnx", opset)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ACTIVATIONS, ids=repr)
def test_each_activation_alone(tmp_path, activation, dtype):
    model = Sequential([Dense(6, activation), Dense(3)], input_dim=N_FEATURES, dtype=dtype,
                       seed=2)
    assert_runtime_matches(model, tmp_path / "model.onnx")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("example", list(EXAMPLES))
def test_each_layer_case_alone(tmp_path, example, dtype):
    """Each example of the layer table (tests/layer_cases.py), then the logits."""
    model = Sequential([EXAMPLES[example](), Dense(3)], input_dim=N_FEATURES, dtype=dtype,
                       seed=3)
    X, y = make_data("softmax_cross_entropy", n=64, n_features=N_FEATURES)
    model.fit(3 * X + 1, y, epochs=2, batch_size=16)
    assert_runtime_matches(model, tmp_path / "model.onnx")


def test_both_backends_export_the_same_graph(tmp_path, backend_name):
    assert_runtime_matches(every_layer_model(backend=backend_name), tmp_path / "model.onnx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_graph_declares_its_input_output_and_opset(tmp_path, dtype):
    path = tmp_path / "model.onnx"
    model = every_layer_model("binary_cross_entropy", 2, dtype)
    model.to_onnx(str(path), opset=15)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    elem_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    (graph_input,), (graph_output,) = proto.graph.input, proto.graph.output
    assert graph_input.name == "X" and graph_output.name == "probabilities"
    for value, size in ((graph_input, N_FEATURES), (graph_output, 2)):
        tensor = value.type.tensor_type
        assert tensor.elem_type == elem_type
        assert [d.dim_param or d.dim_value for d in tensor.shape.dim] == ["N", size]
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", 15)]
    assert proto.producer_name == "fastmlp"


def test_mse_output_is_named_predictions_and_dropout_is_omitted(tmp_path):
    path = tmp_path / "model.onnx"
    Sequential([Dropout(0.5), Dense(1)], input_dim=3, loss="mse", seed=0).to_onnx(path)
    graph = onnx.load(path).graph
    assert graph.output[0].name == "predictions"
    assert [node.op_type for node in graph.node] == ["Gemm", "Identity", "Reshape"]


# -------------------------------------------------------------------- the file
def test_export_replaces_the_file_atomically(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    every_layer_model().to_onnx(path)
    assert onnx.load(path).graph.input[0].name == "X"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")

    def failing_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        every_layer_model().to_onnx(path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]


# ---------------------------------------------------------------- bad arguments
class Doubler(Layer):
    """A custom layer: y = 2 x (no ONNX form)."""

    def forward(self, backend, x, workspace, training):
        return 2 * x


class MyDense(Dense):
    """A subclass may compute something else: not exported as a Dense."""


@pytest.mark.parametrize("layer,name", [(Doubler, "Doubler"), (lambda: MyDense(4), "MyDense")])
def test_a_layer_without_an_onnx_form_is_named(tmp_path, layer, name):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"old")
    model = Sequential([Dense(4), layer(), Dense(2)], input_dim=3, seed=0)
    with pytest.raises(ValueError, match=rf"layers\[1\] \({name}\) cannot be converted to "
                                         r"ONNX: the supported layers are Dense, Maxout"):
        model.to_onnx(path)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["model.onnx"]


@pytest.mark.parametrize("path", [123, None, b"model.onnx"])
def test_path_must_be_a_str_or_pathlike(path):
    model = Sequential([Dense(2)], input_dim=3, seed=0)
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        model.to_onnx(path)


@pytest.mark.parametrize("opset,error,message", [
    (MIN_OPSET - 1, ValueError, f"opset must be between {MIN_OPSET}"),
    (onnx.defs.onnx_opset_version() + 1, ValueError, "the newest the installed onnx"),
    ("18", TypeError, "opset must be an integer"),
    (True, TypeError, "opset must be an integer"),
])
def test_bad_opsets(tmp_path, opset, error, message):
    model = Sequential([Dense(2)], input_dim=3, seed=0)
    with pytest.raises(error, match=message):
        model.to_onnx(tmp_path / "model.onnx", opset=opset)
    assert not os.listdir(tmp_path)


def test_the_model_must_be_a_sequential(tmp_path):
    with pytest.raises(TypeError, match="model must be a fastmlp.Sequential; got list"):
        export_onnx([Dense(2)], tmp_path / "model.onnx")


def test_missing_onnx_raises_an_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)   # what "import onnx" sees when absent
    with pytest.raises(ImportError, match=r"pip install 'fastmlp\[onnx\]'"):
        Sequential([Dense(2)], input_dim=3, seed=0).to_onnx(tmp_path / "model.onnx")
