"""MultiTask on the fused inference path (train/fused.py inference_program, csrc/train/
predictor.hpp): the trunk and every head in one program with one output head per model
head, run in one GIL-released C++ call. predict, predict_proba and evaluate equal the
per-op path (MultiTask._logits) bit for bit, in the same dtypes, shapes and dicts; the
predictor is rebuilt when the weights change; a custom layer keeps the model per-op."""
import re

import numpy as np
import pytest

import fastmlp
from fastmlp import BatchNorm, Dense, Dropout, Maxout, MultiTask, Normalization
from fastmlp.backends import native
from fastmlp.train import fused

from .test_fused_predict import MyDense, Scale, _assert_same, _per_op

FEATURES = 6


@pytest.fixture(autouse=True)
def _native(native):
    """Every test here needs the native backend."""


def one_head(dtype):
    return MultiTask([Dense(9, "relu")], {"only": [Dense(4)]},
                     {"only": "softmax_cross_entropy"}, input_dim=FEATURES, dtype=dtype, seed=2)


def three_heads(dtype):
    """Heads of different widths, losses and activations, one of a single output; a trunk
    with Normalization, Dropout, BatchNorm and Maxout (inference mode)."""
    trunk = [Normalization(), Dense(12, "elu"), Dropout(0.3), BatchNorm(momentum=0.5),
             Maxout(7, pieces=2)]
    heads = {"kind": [Dense(5, "tanh"), Dropout(0.2), BatchNorm(), Dense(3)],
             "tags": [Dense(2)],
             "size": [Dense(4, "sigmoid"), Dense(1)]}
    losses = {"kind": "softmax_cross_entropy", "tags": "binary_cross_entropy", "size": "mse"}
    return MultiTask(trunk, heads, losses, input_dim=FEATURES, dtype=dtype, seed=5)


def no_trunk(dtype):
    heads = {"a": [Dense(8, "relu"), Dense(1)], "b": [Dense(3)]}
    losses = {"a": "binary_cross_entropy", "b": "mse"}
    return MultiTask([], heads, losses, input_dim=FEATURES, dtype=dtype, seed=8)


MODELS = {"one_head": one_head, "three_heads": three_heads, "no_trunk": no_trunk}


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, FEATURES)) * [1.0, 3.0, 0.5, 2.0, 1.0, 4.0] + 1.0


def targets(model, n, seed=1):
    rng = np.random.default_rng(seed)
    made = {}
    for name, loss in model.losses.items():
        k = model.n_outputs[name]
        if loss == "softmax_cross_entropy":            # string labels: classes_ map them
            made[name] = np.array(list("pqrstu"))[:k][rng.integers(0, k, n)]
        elif loss == "binary_cross_entropy":
            made[name] = rng.integers(0, 2, (n, k)) if k > 1 else rng.integers(0, 2, n)
        else:
            made[name] = rng.normal(size=(n, k)) if k > 1 else rng.normal(size=n)
    return made


def trained(kind, dtype):
    model = MODELS[kind](dtype)
    X = data(60)
    model.fit(X, targets(model, 60), epochs=2, batch_size=16)   # adapts, moves BatchNorm
    return model


def assert_same_heads(a, b):
    assert isinstance(a, dict) and list(a) == list(b)
    for name in a:
        _assert_same(a[name], b[name])


def calls(model, X, batch_size):
    made = [lambda: model.predict(X, batch_size=batch_size)]
    if any(loss != "mse" for loss in model.losses.values()):
        made.append(lambda: model.predict_proba(X, batch_size=batch_size))
    return made


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("rows", [1, 7, 257])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_equals_per_op(monkeypatch, kind, dtype, rows, batch_size):
    model = trained(kind, dtype)
    assert isinstance(model._predictor(), native.FusedPredictor)
    assert model._predictor().n_heads == len(model.head_names)
    X = data(rows, seed=rows)
    for call in calls(model, X, batch_size):
        assert_same_heads(call(), _per_op(monkeypatch, call))
    Y = targets(model, rows, seed=3)
    evaluate = lambda: model.evaluate(X, Y, batch_size=batch_size)   # noqa: E731
    _assert_same(evaluate(), _per_op(monkeypatch, evaluate))


def test_fused_predictor_is_the_one_called(monkeypatch):
    """The comparisons above cannot pass on the per-op path: predict, predict_proba and
    evaluate each make one run_heads call."""
    model = trained("three_heads", "float32")
    runs, run = [], native.FusedPredictor.run_heads

    def counting(self, X, mode, chunk, heads=None):
        runs.append((mode, list(heads)))
        return run(self, X, mode, chunk, heads)

    monkeypatch.setattr(native.FusedPredictor, "run_heads", counting)
    X = data(5)
    model.predict(X)
    model.predict_proba(X)
    model.evaluate(X, targets(model, 5))
    assert runs == [(2, [0, 1, 2]), (1, [0, 1]), (0, [0, 1, 2])]


def test_zero_rows_are_refused_as_on_the_per_op_path(monkeypatch):
    model = trained("three_heads", "float32")
    X = data(0)
    message = re.escape("X is empty (shape (0, 6)); at least one sample is needed")
    for call in calls(model, X, None):
        with pytest.raises(ValueError, match=message):
            call()
        with pytest.raises(ValueError, match=message):
            _per_op(monkeypatch, call)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_give_the_per_op_bits(monkeypatch, threads):
    model = MultiTask([Dense(300, "relu")], {"a": [Dense(200, "tanh"), Dense(3)],
                                            "b": [Dense(2)]},
                      {"a": "softmax_cross_entropy", "b": "binary_cross_entropy"},
                      input_dim=FEATURES, seed=1)       # 300 x 6 x 257: above GEMM's grain
    X = data(257, seed=4)
    with fastmlp.threads(threads):
        for call in calls(model, X, None):
            assert_same_heads(call(), _per_op(monkeypatch, call))


def test_rebuilt_when_the_weights_change(monkeypatch):
    model = trained("three_heads", "float32")
    X = data(20)
    before = model.predict_proba(X)
    built = model._predictor()
    model.set_weights([w * 0.5 for w in model.get_weights()])
    assert model._predictor() is not built
    after = model.predict_proba(X)
    assert not np.array_equal(before["kind"], after["kind"])
    assert_same_heads(after, _per_op(monkeypatch, lambda: model.predict_proba(X)))
    built = model._predictor()
    model.fit(X, targets(model, 20), epochs=1, batch_size=8)
    assert model._predictor() is not built
    fitted = model.predict_proba(X)
    assert not np.array_equal(after["kind"], fitted["kind"])
    assert_same_heads(fitted, _per_op(monkeypatch, lambda: model.predict_proba(X)))
    assert model._predictor() is model._predictor()          # kept while nothing changes


def test_pickled_model_predicts_alike():
    import pickle
    model = trained("three_heads", "float64")
    X = data(9)
    clone = pickle.loads(pickle.dumps(model))
    assert_same_heads(clone.predict(X), model.predict(X))
    assert fused.predictor(clone) is not model._predictor()


@pytest.mark.parametrize("where", ["trunk", "head"])
@pytest.mark.parametrize("extra", [Scale, lambda: MyDense(4)])
def test_a_custom_layer_falls_back_to_per_op(monkeypatch, where, extra):
    trunk = [Dense(5, "relu")] + ([extra()] if where == "trunk" else [])
    heads = {"a": [Dense(3)], "b": ([extra()] if where == "head" else []) + [Dense(2)]}
    model = MultiTask(trunk, heads, {"a": "softmax_cross_entropy", "b": "mse"},
                      input_dim=FEATURES, seed=0)
    assert model._predictor() is None
    X = data(10)
    for call in calls(model, X, None):
        assert_same_heads(call(), _per_op(monkeypatch, call))
    numpy_model = MultiTask([], {"a": [Dense(3)]}, {"a": "mse"}, input_dim=FEATURES,
                            backend="numpy", seed=0)
    assert numpy_model._predictor() is None


def test_non_finite_X_is_refused_as_on_the_per_op_path(monkeypatch):
    model = trained("three_heads", "float32")
    X = data(9).astype(np.float32)
    X[2, 3] = np.nan
    for call in calls(model, X, None):
        with pytest.raises(ValueError, match=r"X must be finite; it holds nan at index \(2, 3\)"):
            call()
        with pytest.raises(ValueError, match=r"X must be finite; it holds nan at index \(2, 3\)"):
            _per_op(monkeypatch, call)
