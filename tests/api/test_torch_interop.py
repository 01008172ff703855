"""PyTorch interchange (fastmlp/io/torch.py): to_torch builds the matching
nn.Sequential with the same weights (bit for bit) and the same logits; from_torch reads it
back to the same model, and reads a model trained in torch to the same predictions; bad
modules raise ValueError naming their position and type; importing fastmlp never imports
torch."""
import pickle
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is in no extra: pip install torch")
from torch import nn  # noqa: E402

import fastmlp
from fastmlp import BatchNorm, Dense, Sequential
from fastmlp.io import torch as interop
from fastmlp import from_torch
from fastmlp.io.torch import to_torch
from activation_cases import CASES
from helpers import relative_error
from layer_cases import EXAMPLES, stack

from .test_onnx import Doubler, N_FEATURES, every_layer_model, inputs

#: torch (eval mode) vs fastmlp logits, relative error (helpers.relative_error): torch's
#: own GEMM and transcendental functions (measured: 1.1e-7 float32, 2.2e-16 float64).
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}
DTYPES = ["float32", "float64"]
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_outputs(module, X):
    with torch.no_grad():
        return module(torch.from_numpy(X)).numpy()


def assert_close(actual, wanted, dtype):
    error = relative_error(actual, wanted)
    assert error <= TOLERANCE[dtype], f"relative error {error:.3g} ({dtype})"


def layer_config(layer):
    """What defines a layer's computation besides its weights."""
    names = ("units", "activation", "param", "pieces", "rate", "momentum", "eps")
    return type(layer), {name: getattr(layer, name, None) for name in names}


# ------------------------------------------------------------------ to_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_to_torch_builds_the_matching_modules(dtype):
    model = every_layer_model("mse", 2, dtype)
    module = model.to_torch()
    assert [type(m).__name__ for m in module] == [
        "Normalization", "Linear", "ReLU", "Dropout", "BatchNorm1d", "Maxout", "Linear",
        "LeakyReLU", "Linear", "ELU", "Linear", "Tanh", "Linear", "Sigmoid", "Linear",
        "Linear"]
    assert module[3].p == 0.2 and module[7].negative_slope == 0.2 and module[9].alpha == 0.5
    assert module[4].eps == 1e-2 and module[4].momentum == 1 - 0.8
    assert not module.training
    assert {t.dtype for t in (*module.parameters(), *module.buffers())
            if t.is_floating_point()} == {TORCH_DTYPES[dtype]}


def test_to_torch_copies_the_weights_in_the_same_layout():
    model = every_layer_model("mse", 2)
    module = model.to_torch()
    dense, maxout, batch_norm, normalization = (model.layers[i] for i in (1, 4, 3, 0))
    pairs = [(module[1].weight, dense.W), (module[1].bias, dense.b),
             (module[5].weight, maxout.W), (module[5].bias, maxout.b),
             (module[4].weight, batch_norm.gamma), (module[4].bias, batch_norm.beta),
             (module[4].running_mean, batch_norm.running_mean),
             (module[4].running_var, batch_norm.running_var),
             (module[0].mean, normalization.mean), (module[0].std, normalization.std)]
    for tensor, array in pairs:
        assert np.array_equal(tensor.detach().numpy(), array)
    with torch.no_grad():
        module[1].weight.zero_()                       # a copy: the model is untouched
    assert np.abs(dense.W).sum() > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_outputs_the_model_logits(dtype):
    model = every_layer_model("mse", 2, dtype)
    module = model.to_torch()
    for X in (inputs(dtype), inputs(dtype, n=1)):
        assert_close(torch_outputs(module, X), model.predict(X).reshape(len(X), -1), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_running_mean_moves_alike_in_torch(dtype):
    """One training step from the same state: ours running = m * running + (1 - m) * batch,
    torch's with 1 - m; the first layer's batch mean does not depend on the weights."""
    model = Sequential([BatchNorm(momentum=0.8), Dense(2)], input_dim=N_FEATURES,
                       loss="mse", dtype=dtype, seed=0)
    module = model.to_torch().train()
    X = inputs(dtype, n=32)
    model.fit(X, np.zeros((32, 2)), epochs=1, batch_size=32, shuffle=False)
    torch_outputs(module, X)
    assert_close(module[0].running_mean.numpy(), model.layers[0].running_mean, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", [name for name in fastmlp.nn.activations.ACTIVATIONS
                                        if name != "linear"])
def test_each_activation_round_trips(activation, dtype):
    """Every registry activation: its torch module after the Linear, the same logits, and
    from_torch reads it back to the same layer."""
    model = Sequential([Dense(6, activation), Dense(3)], input_dim=N_FEATURES, loss="mse",
                       dtype=dtype, seed=2)
    module = model.to_torch()
    assert type(module[1]).__name__ == fastmlp.nn.activations.kind(activation).torch
    X = 3 * inputs(dtype)
    assert_close(torch_outputs(module, X), model.predict(X).reshape(len(X), -1), dtype)
    back = from_torch(module, loss=model.loss, seed=model.seed)
    assert [layer_config(layer) for layer in back.layers] == \
        [layer_config(layer) for layer in model.layers]


@pytest.mark.parametrize("make,message", [refused for case in CASES.values()
                                          for refused in case.torch_refused])
def test_activation_modules_of_another_function_are_refused(make, message):
    module = make(nn)
    with pytest.raises(ValueError, match=rf"module \[0\] \(Linear\): the "
                                         rf"{type(module).__name__} after it: {message}"):
        from_torch(nn.Sequential(nn.Linear(3, 4), module))


def test_softmax_of_the_torch_logits_is_predict_proba():
    model = every_layer_model()
    X = inputs("float32")
    proba = torch.softmax(torch.from_numpy(torch_outputs(model.to_torch(), X)), dim=1)
    assert_close(proba.numpy(), model.predict_proba(X), "float32")


def test_to_torch_refuses_custom_layers_and_non_models():
    model = Sequential([Dense(4), Doubler(), Dense(2)], input_dim=3, seed=0)
    with pytest.raises(ValueError, match=r"layers\[1\] \(Doubler\) cannot be converted to "
                                         r"PyTorch: the supported layers are Dense"):
        model.to_torch()
    with pytest.raises(TypeError, match="model must be a fastmlp.Sequential; got Linear"):
        to_torch(nn.Linear(2, 2))


def test_our_torch_modules_pickle_by_name():
    module = every_layer_model().to_torch()
    copy = pickle.loads(pickle.dumps(module))
    X = torch.from_numpy(inputs("float32"))
    with torch.no_grad():
        assert torch.equal(copy(X), module(X))
    assert type(copy[5]) is interop.Maxout and type(copy[0]) is interop.Normalization


# ---------------------------------------------------------------- from_torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_bitwise(dtype):
    model = every_layer_model("mse", 2, dtype)
    back = from_torch(model.to_torch(), loss="mse", seed=model.seed)
    assert back.dtype == model.dtype and back.input_dim == model.input_dim
    assert [layer_config(layer) for layer in back.layers] == \
        [layer_config(layer) for layer in model.layers]
    for original, copy in zip(model.get_weights(), back.get_weights(), strict=True):
        assert copy.dtype == original.dtype and np.array_equal(copy, original)
    X = inputs(dtype)
    assert np.array_equal(back.predict(X), model.predict(X))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("example", list(EXAMPLES))
def test_each_layer_case_round_trips(example, dtype):
    """Each example of the layer table (tests/layer_cases.py) in its stack, trained (an
    adapted Normalization, moved running statistics): torch gives its logits, and
    from_torch reads the module back to the same layers and weights, bit for bit."""
    model = Sequential(stack(EXAMPLES[example](), 2), input_dim=N_FEATURES, loss="mse",
                       dtype=dtype, seed=2)
    model.fit(inputs(dtype, n=64), np.ones((64, 2)), epochs=2, batch_size=16)
    module = model.to_torch()
    X = inputs(dtype)
    assert_close(torch_outputs(module, X), model.predict(X), dtype)
    back = from_torch(module, loss="mse", seed=model.seed)
    assert [layer_config(layer) for layer in back.layers] == \
        [layer_config(layer) for layer in model.layers]
    for original, copy in zip(model.get_weights(), back.get_weights(), strict=True):
        assert copy.dtype == original.dtype and np.array_equal(copy, original)
    assert np.array_equal(back.predict(X), model.predict(X))


def torch_stack(dtype):
    """Every module from_torch reads, in torch's own order of habits."""
    torch.manual_seed(0)
    kwargs = {"dtype": TORCH_DTYPES[dtype]}
    return nn.Sequential(
        interop.Normalization(N_FEATURES, **kwargs), nn.Linear(N_FEATURES, 16, **kwargs),
        nn.ReLU(), nn.Dropout(0.1), nn.BatchNorm1d(16, momentum=0.3, **kwargs),
        interop.Maxout(16, 8, pieces=3, **kwargs), nn.Linear(8, 8, **kwargs),
        nn.LeakyReLU(0.2), nn.Identity(), nn.Linear(8, 8, bias=False, **kwargs),
        nn.ELU(0.5), nn.Linear(8, 8, **kwargs), nn.Tanh(), nn.Linear(8, 8, **kwargs),
        nn.Sigmoid(), nn.Linear(8, 3, **kwargs))


def train_in_torch(module, dtype, steps=5):
    """A few SGD steps of cross-entropy on random data (updating BatchNorm's statistics)."""
    generator = np.random.default_rng(0)
    X = torch.from_numpy(inputs(dtype, n=64))
    y = torch.from_numpy(generator.integers(0, 3, size=64))
    with torch.no_grad():
        module[0].mean.copy_(torch.full((N_FEATURES,), 1.0))
        module[0].std.copy_(torch.full((N_FEATURES,), 3.0))
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    module.train()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(module(X), y).backward()
        optimizer.step()
    return module.eval()


@pytest.mark.parametrize("dtype", DTYPES)
def test_a_model_trained_in_torch_predicts_the_same(dtype):
    module = train_in_torch(torch_stack(dtype), dtype)
    model = from_torch(module, seed=0)
    assert model.dtype == np.dtype(dtype)
    assert [layer.kind for layer in model.layers] == [
        "normalization", "dense", "dropout", "batch_norm", "maxout", "dense", "dense",
        "dense", "dense", "dense"]
    assert model.layers[3].momentum == 1 - 0.3 and model.layers[3].eps == 1e-5
    assert np.all(model.layers[6].b == 0)                  # Linear(bias=False)
    X = inputs(dtype)
    logits = torch.from_numpy(torch_outputs(module, X))
    assert_close(model.predict_proba(X), torch.softmax(logits, dim=1).numpy(), dtype)
    assert np.array_equal(model.predict(X), logits.argmax(dim=1).numpy())


def test_dtype_argument_rounds_the_weights():
    module = nn.Sequential(nn.Linear(3, 2, dtype=torch.float64))
    model = from_torch(module, dtype="float32", seed=0)
    assert model.dtype == np.float32
    rounded = module[0].weight.detach().numpy().astype(np.float32)
    assert np.array_equal(model.layers[0].W, rounded)


def test_batch_norm_without_affine_has_unit_scale():
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False), nn.Linear(4, 2))
    gamma, beta = from_torch(module, seed=0).layers[1].parameters()
    assert np.all(gamma == 1) and np.all(beta == 0)


# ------------------------------------------------------------- bad modules
@pytest.mark.parametrize("modules,message", [
    ([nn.Linear(3, 4), nn.Conv1d(1, 1, 1)], r"module \[1\] \(Conv1d\): it is not supported"),
    ([nn.Linear(3, 4), nn.Softmax(dim=1)], r"module \[1\] \(Softmax\): .* drop it"),
    ([nn.ReLU(), nn.Linear(3, 4)], r"module \[0\] \(ReLU\): it does not follow a Linear"),
    ([nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU()],
     r"module \[2\] \(ReLU\): it does not follow a Linear"),
    ([nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 2)],
     r"module \[2\] \(Linear\): its input width is 5 but the previous layers output 4"),
    ([nn.Linear(3, 4), nn.BatchNorm1d(6)], r"module \[1\] \(BatchNorm1d\): its input width "
                                           r"is 6"),
    ([nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=None)],
     r"module \[1\] \(BatchNorm1d\): .*momentum not None"),
    ([nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False)],
     r"module \[1\] \(BatchNorm1d\): .*track_running_stats=True"),
    ([nn.Linear(3, 4), nn.Dropout(1.0)], r"module \[1\] \(Dropout\): rate must satisfy"),
    ([nn.Linear(3, 4), nn.Sequential(nn.ReLU())], r"module \[1\] \(Sequential\)"),
    ([nn.Dropout(0.5), nn.Identity()], "its input width is unknown"),
])
def test_unsupported_modules_are_named_with_their_position(modules, message):
    with pytest.raises(ValueError, match=message):
        from_torch(nn.Sequential(*modules), seed=0)


@pytest.mark.parametrize("module,message", [
    (nn.Linear(3, 4), "module must be a torch.nn.Sequential; got Linear"),
    ([nn.Linear(3, 4)], "module must be a torch.nn.Sequential; got list"),
])
def test_from_torch_needs_a_sequential(module, message):
    with pytest.raises(TypeError, match=message):
        from_torch(module)


def test_from_torch_dtypes_must_be_one_float32_or_float64():
    mixed = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"got \['float32', 'float64'\]: pass dtype="):
        from_torch(mixed)
    half = nn.Sequential(nn.Linear(3, 2, dtype=torch.float16))
    with pytest.raises(ValueError, match=r"got \['float16'\]"):
        from_torch(half)
    assert from_torch(half, dtype="float32", seed=0).dtype == np.float32


def test_the_loss_contract_holds_for_converted_models():
    with pytest.raises(ValueError, match="the last layer must output logits"):
        from_torch(nn.Sequential(nn.Linear(3, 1), nn.Sigmoid()), loss="binary_cross_entropy")


# ------------------------------------------------------------ lazy imports
def test_importing_fastmlp_never_imports_torch_or_onnx():
    code = ("import sys, fastmlp, fastmlp.io.torch, fastmlp.io.onnx\n"
            "assert 'torch' not in sys.modules and 'onnx' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_missing_torch_raises_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # what "import torch" sees when absent
    model = Sequential([Dense(2)], input_dim=3, seed=0)
    for call in (model.to_torch, lambda: from_torch(None)):
        with pytest.raises(ImportError, match="pip install torch"):
            call()


def test_the_module_classes_are_attributes_made_on_first_use():
    assert issubclass(interop.Maxout, nn.Module)
    assert issubclass(interop.Normalization, nn.Module)
    with pytest.raises(AttributeError, match="has no attribute 'Conv'"):
        interop.Conv
    assert fastmlp.io.torch is interop
