"""Every public entry point rejects bad input with a message naming the argument, what
was expected and what was given."""
import importlib

import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, Sequential

X = np.arange(24, dtype=float).reshape(6, 4)
LABELS = np.array([0, 1, 2, 0, 1, 2])


def model(loss="softmax_cross_entropy", units=3, **kwargs):
    kwargs.setdefault("input_dim", 4)
    return Sequential([Dense(5, "relu"), Dense(units)], loss=loss, backend="numpy", seed=0,
                      **kwargs)


@pytest.mark.parametrize("args, error, match", [
    ((0,), ValueError, r"units must be an integer >= 1; got 0"),
    ((-3,), ValueError, r"units must be an integer >= 1; got -3"),
    ((2.5,), TypeError, r"units must be an integer >= 1; got 2.5 of type float"),
    ((True,), TypeError, r"units must be an integer >= 1; got True of type bool"),
    (("8",), TypeError, r"units .* got '8' of type str"),
    ((3, "softmax"), ValueError, r"unknown activation 'softmax'; expected one of \['linear'"),
    ((3, "ReLU"), ValueError, r"unknown activation 'ReLU'"),
    ((3, 1), TypeError, r"activation must be a string"),
    ((3, "relu", "xavier"), ValueError, r"unknown init 'xavier'; expected one of"),
])
def test_dense_rejects(args, error, match):
    with pytest.raises(error, match=match):
        Dense(*args)


def sequential(**overrides):
    kwargs = dict(input_dim=4, loss="softmax_cross_entropy", backend="numpy", seed=0)
    kwargs.update(overrides)
    layers = kwargs.pop("layers", None)
    return Sequential([Dense(5), Dense(3)] if layers is None else layers, **kwargs)


@pytest.mark.parametrize("overrides, error, match", [
    (dict(input_dim=0), ValueError, r"input_dim must be an integer >= 1; got 0"),
    (dict(input_dim=True), TypeError, r"input_dim .* got True of type bool"),
    (dict(input_dim=4.0), TypeError, r"input_dim .* got 4.0 of type float"),
    (dict(loss="hinge"), ValueError, r"unknown loss 'hinge'; expected one of"),
    (dict(dtype="float16"), ValueError, r"dtype must be one of \['float32', 'float64'\]; "
                                        r"got 'float16'"),
    (dict(dtype=int), ValueError, r"dtype must be one of"),
    (dict(dtype="nonsense"), ValueError, r"dtype must be one of"),
    (dict(backend="torch"), ValueError, r"backend must be one of \['native', 'numpy'\] or a "
                                        r"Backend instance; got 'torch'"),
    (dict(backend=3), ValueError, r"backend must be one of .* got 3"),
    (dict(seed=-1), ValueError, r"seed must be an integer >= 0; got -1"),
    (dict(seed=1.5), TypeError, r"seed must be an integer"),
    (dict(seed=True), TypeError, r"seed .* bool"),
    (dict(layers=[]), ValueError, r"layers must hold at least one layer"),
    (dict(layers=Dense(3)), TypeError,
     r"layers must be a list of layers \(fastmlp.layers.Layer\); got Dense"),
    (dict(layers=[Dense(3), "relu"]), TypeError,
     r"layers\[1\] must be a layer \(fastmlp.layers.Layer, e.g. Dense\); got str"),
    (dict(layers=[Dense(5), Dense(1, "sigmoid")], loss="binary_cross_entropy"), ValueError,
     r"last layer's activation is 'sigmoid' but binary_cross_entropy applies the "
     r"sigmoid/softmax itself"),
    (dict(layers=[Dense(5), Dense(3, "sigmoid")]), ValueError,
     r"softmax_cross_entropy applies the sigmoid/softmax itself"),
    (dict(layers=[Dense(5), Dense(1)]), ValueError,
     r"softmax_cross_entropy needs an output layer of at least 2 units"),
])
def test_sequential_rejects(overrides, error, match):
    with pytest.raises(error, match=match):
        sequential(**overrides)


def test_a_layer_belongs_to_one_model():
    shared = Dense(3)
    Sequential([shared], input_dim=2, backend="numpy", seed=0)
    with pytest.raises(ValueError, match=r"layers\[0\] already belongs to a model"):
        Sequential([shared], input_dim=2, backend="numpy", seed=0)
    twice = Dense(4)
    with pytest.raises(ValueError, match=r"layers\[1\] already belongs to a model \(or appears "
                                         r"twice\)"):
        Sequential([twice, twice, Dense(2)], input_dim=4, backend="numpy", seed=0)


def test_final_sigmoid_is_allowed_with_mse():
    m = sequential(layers=[Dense(5), Dense(1, "sigmoid")], loss="mse")
    assert m.layers[-1].activation == "sigmoid"


def test_unavailable_native_backend_says_how_to_proceed():
    try:
        importlib.import_module("fastmlp.backends.native")
    except ImportError:
        with pytest.raises(ImportError, match=r"backend='native' is unavailable.*backend='numpy'"):
            sequential(backend="native")
    else:
        assert sequential(backend="native").backend.name == "native"


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=0), ValueError, r"epochs must be an integer >= 1; got 0"),
    (dict(epochs=2.0), TypeError, r"epochs must be an integer >= 1; got 2.0 of type float"),
    (dict(epochs=None), TypeError, r"epochs must be an integer"),
    (dict(epochs=1, batch_size=0), ValueError, r"batch_size must be an integer >= 1; got 0"),
    (dict(epochs=1, batch_size=2.5), TypeError, r"batch_size .* got 2.5 of type float"),
    (dict(epochs=1, batch_size=True), TypeError, r"batch_size .* got True of type bool"),
    (dict(epochs=1, learning_rate=0), ValueError,
     r"learning_rate must be a positive finite number; got 0"),
    (dict(epochs=1, learning_rate=-0.1), ValueError, r"learning_rate .* got -0.1"),
    (dict(epochs=1, learning_rate=float("nan")), ValueError, r"learning_rate .* got nan"),
    (dict(epochs=1, learning_rate=float("inf")), ValueError, r"learning_rate .* got inf"),
    (dict(epochs=1, learning_rate="0.1"), TypeError, r"learning_rate .* got '0.1' of type str"),
    (dict(epochs=1, learning_rate=True), TypeError, r"learning_rate .* of type bool"),
    (dict(epochs=1, shuffle="yes"), TypeError, r"shuffle must be True or False; got 'yes'"),
    (dict(epochs=1, verbose=-1), ValueError, r"verbose must be an integer >= 0; got -1"),
    (dict(epochs=1, validation_data=X), TypeError,
     r"validation_data must be a pair \(X_val, y_val\) or a source; got ndarray"),
    (dict(epochs=1, validation_data=(X[:, :3], LABELS)), ValueError,
     r"validation_data\[0\] has 3 features per sample .* input_dim=4"),
    (dict(epochs=1, validation_data=(X, LABELS[:5])), ValueError,
     r"validation_data\[0\] and validation_data\[1\] must have the same number of samples; "
     r"got 6 and 5"),
])
def test_fit_rejects_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        model().fit(X, LABELS, **kwargs)


BAD_DATA = [
    # (loss, X, y, error, match)
    ("softmax_cross_entropy", X[0], LABELS, ValueError,
     r"X must have shape \(n_samples, n_columns\); got an array of shape \(4,\)"),
    ("softmax_cross_entropy", X[None], LABELS, ValueError,
     r"X must have shape .* got an array of shape \(1, 6, 4\)"),
    ("softmax_cross_entropy", X[:, :3], LABELS, ValueError,
     r"X has 3 features per sample \(shape \(6, 3\)\); the model expects input_dim=4"),
    ("softmax_cross_entropy", X, LABELS[:4], ValueError,
     r"X and y must have the same number of samples; got 6 and 4"),
    ("softmax_cross_entropy", np.where(X == 5, np.nan, X), LABELS, ValueError,
     r"X must be finite; it holds nan at index \(1, 1\)"),
    ("softmax_cross_entropy", np.where(X == 9, np.inf, X), LABELS, ValueError,
     r"X must be finite; it holds inf at index \(2, 1\)"),
    ("softmax_cross_entropy", np.full((2, 4), 1e39), [0, 1], ValueError,
     r"X holds 1e\+39 at index \(0, 0\), beyond the range of float32"),
    ("softmax_cross_entropy", np.empty((0, 4)), [], ValueError,
     r"X is empty \(shape \(0, 4\)\); at least one sample is needed"),
    ("softmax_cross_entropy", [["a"] * 4], [0], TypeError,
     r"X must hold real numbers; got dtype <U1"),
    ("softmax_cross_entropy", [[1, 2, 3, 4], [1, 2]], [0, 1], ValueError,
     r"X could not be converted to a numeric array"),
    ("softmax_cross_entropy", X, [0, 1, 2, 3, 1, 0], ValueError,
     r"y holds 4 classes \[0, 1, 2, 3\] but the model has 3 for softmax_cross_entropy: give "
     r"the output layer one unit per class"),
    ("softmax_cross_entropy", X, [0, 1, -1, 0, 1, 5], ValueError,
     r"y holds 4 classes \[-1, 0, 1, 5\] but the model has 3"),
    ("softmax_cross_entropy", X, [0, 1, 0.5, 0, 1, 0], ValueError,
     r"y holds 0.5 at index 2, not a class label: labels for softmax_cross_entropy are whole "
     r"numbers or strings \(for real-valued targets use loss='mse'\)"),
    ("softmax_cross_entropy", X, ["a", "b", None, "a", "b", "c"], ValueError,
     r"y holds a missing label \(None\) at index 2; fill or drop it first"),
    ("softmax_cross_entropy", X, ["a", "b", " ", "a", "b", "c"], ValueError,
     r"y holds an empty label ' ' at index 2; class labels must not be empty"),
    ("softmax_cross_entropy", X, ["a", "b", 1, "a", "b", "c"], TypeError,
     r"y must hold class labels of one kind, all numbers or all strings; got \['int', 'str'\]"),
    ("softmax_cross_entropy", X, np.array([b"a"] * 6), TypeError,
     r"y must hold class labels, numbers or strings; got dtype \|S1"),
    ("softmax_cross_entropy", X, [0, 1, np.nan, 0, 1, 0], ValueError,
     r"y must be finite; it holds nan at index 2"),
    ("softmax_cross_entropy", X, np.eye(3)[LABELS][:, :2], ValueError,
     r"y has 2 columns \(shape \(6, 2\)\) but the output layer has 3 units"),
    ("softmax_cross_entropy", X, np.eye(3)[LABELS] * 2, ValueError,
     r"y must hold 0/1 targets for softmax_cross_entropy; got 2.0 at index \(0, 0\)"),
    ("softmax_cross_entropy", X, np.ones((6, 3)), ValueError,
     r"y of shape \(n_samples, k\) must be one-hot for softmax_cross_entropy \(exactly one 1 "
     r"per row\); row 0 is \[1.0, 1.0, 1.0\]"),
    ("softmax_cross_entropy", X, LABELS[:, None, None], ValueError,
     r"y must have shape \(n_samples,\) or \(n_samples, n_columns\); got an array of shape "
     r"\(6, 1, 1\)"),
    ("binary_cross_entropy", X, np.array([[0, 1, 2]] * 6), ValueError,
     r"y must hold 0/1 targets for binary_cross_entropy; got 2 at index \(0, 2\)"),
    ("binary_cross_entropy", X, [0, 1, 0, 1, 0, 1], ValueError,
     r"y of shape \(n_samples,\) needs an output layer of 1 unit; the model's has 3: pass y "
     r"of shape \(n_samples, 3\)"),
    ("mse", X, np.ones(6), ValueError, r"y of shape \(n_samples,\) needs an output layer of 1"),
    ("mse", X, np.ones((6, 2)), ValueError, r"y has 2 columns .* output layer has 3 units"),
    ("mse", X, np.full((6, 3), 1e300), ValueError,
     r"y holds 1e\+300 at index \(0, 0\), beyond the range of float32"),
    ("mse", X, np.full((6, 3), "x"), TypeError, r"y must hold real numbers"),
]


@pytest.mark.parametrize("loss, X_, y, error, match", BAD_DATA)
@pytest.mark.parametrize("method", ["fit", "evaluate", "score"])
def test_data_is_checked(method, loss, X_, y, error, match):
    m = model(loss)
    call = getattr(m, method)
    with pytest.raises(error, match=match):
        call(X_, y, epochs=1) if method == "fit" else call(X_, y)


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
@pytest.mark.parametrize("X_, kwargs, error, match", [
    (X[:, :2], {}, ValueError, r"X has 2 features per sample .* input_dim=4"),
    (np.where(X == 1, np.nan, X), {}, ValueError, r"X must be finite"),
    (X, dict(batch_size=0), ValueError, r"batch_size must be an integer >= 1; got 0"),
    (X, dict(batch_size=1.0), TypeError, r"batch_size must be an integer"),
])
def test_inference_input_is_checked(method, X_, kwargs, error, match):
    with pytest.raises(error, match=match):
        getattr(model(), method)(X_, **kwargs)


def test_predict_proba_needs_a_classification_loss():
    with pytest.raises(ValueError, match=r"predict_proba needs a classification loss; this "
                                         r"model's loss is 'mse': use predict"):
        model("mse").predict_proba(X)


@pytest.mark.parametrize("weights, error, match", [
    ("abc", TypeError, r"weights must be a list \[W1, b1, ...\]; got str"),
    ([np.zeros((5, 4))], ValueError, r"weights must hold 4 arrays \[W1, b1, ...\] for 2 layers; "
                                     r"got 1"),
    ([np.zeros((4, 5)), np.zeros(5), np.zeros((3, 5)), np.zeros(3)], ValueError,
     r"weights\[0\] must have shape \(5, 4\); got \(4, 5\)"),
    ([np.zeros((5, 4)), np.zeros(5), np.zeros((3, 5)), np.full(3, np.nan)], ValueError,
     r"weights\[3\] must be finite; it holds nan at index 0"),
])
def test_set_weights_is_checked_and_changes_nothing_on_error(weights, error, match):
    m = model()
    before = m._params.copy()
    with pytest.raises(error, match=match):
        m.set_weights(weights)
    np.testing.assert_array_equal(m._params, before)


def test_failed_fit_keeps_the_optimizer_unchanged():
    m = model()
    m.fit(X, LABELS, epochs=1, learning_rate=0.5)
    with pytest.raises(ValueError, match="features per sample"):
        m.fit(X[:, :2], LABELS, epochs=1, learning_rate=0.1)
    assert m._optimizer.learning_rate == 0.5


def test_get_backend_names_and_instances():
    assert isinstance(fastmlp.get_backend("numpy"), fastmlp.NumPyBackend)
    instance = fastmlp.NumPyBackend()
    assert fastmlp.get_backend(instance) is instance
    assert isinstance(instance, fastmlp.Backend)
    with pytest.raises(ValueError, match=r"backend must be one of \['native', 'numpy'\]"):
        fastmlp.get_backend("NumPy")
