"""The poisson loss through the model: predictions are the means e^z (log link) on both
backends, per-op and fused alike; negative targets are refused; predict_proba is not
offered; model files, ONNX and torch exports and MultiTask heads carry it."""
from __future__ import annotations

import numpy as np
import pytest

import fastmlp
from fastmlp import Dense, MultiTask, Sequential
from helpers import make_data


def poisson_model(backend="native", dtype="float64", k=1, seed=0):
    model = Sequential([Dense(6, "tanh"), Dense(k)], input_dim=4, loss="poisson",
                       backend=backend, dtype=dtype, seed=seed)
    X, y = make_data("poisson", n=64, k=k)
    model.fit(X, y[:, 0] if k == 1 else y, epochs=3, batch_size=16, learning_rate=0.05,
              verbose=0)
    return model, X, y


def per_op_logits(model, X):
    return np.concatenate([logits for _, logits in model._logits(np.asarray(X, model.dtype), None)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("k", [1, 3])
def test_predict_is_exp_of_the_logits(backend_name, dtype, k):
    """predict = e^(logits): np.exp on the NumPy backend; on the native one the fused
    predictor's values equal the output kernel's exp of the per-op logits, bit for bit."""
    model, X, _ = poisson_model(backend_name, dtype, k)
    logits = per_op_logits(model, X)
    predicted = model.predict(X)
    means = np.empty_like(logits)
    model.backend.output("poisson", logits, means)
    np.testing.assert_array_equal(predicted, means[:, 0] if k == 1 else means)
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(means, np.exp(logits.astype(np.float64)), rtol=4 * eps)
    assert (predicted > 0).all()


def test_backends_agree(native):
    oracle, _, _ = poisson_model("numpy")
    core, X, _ = poisson_model(native)
    np.testing.assert_allclose(core.predict(X), oracle.predict(X), rtol=1e-12)


@pytest.mark.parametrize("bad", [[-1.0], [[0.0, 2.0, -0.5]]])
def test_negative_targets_are_refused(bad):
    k = len(np.atleast_2d(bad)[0])
    model = Sequential([Dense(k)], input_dim=2, loss="poisson")
    y = np.array([[1.0] * k] * 3 + [np.atleast_1d(np.squeeze(bad)).tolist()])
    with pytest.raises(ValueError, match=r"y must be >= 0 for poisson .* at row 3"):
        model.fit(np.zeros((4, 2)), y[:, 0] if k == 1 else y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"y must be >= 0"):
        model.evaluate(np.zeros((4, 2)), y[:, 0] if k == 1 else y)


def test_zero_targets_are_counts_like_any_other():
    model = Sequential([Dense(1)], input_dim=2, loss="poisson", seed=0)
    model.fit(np.ones((8, 2)), np.zeros(8), epochs=3, verbose=0)
    assert np.isfinite(model.evaluate(np.ones((8, 2)), np.zeros(8))["loss"])


def test_no_probabilities_and_r2_on_the_means(backend_name):
    model, X, y = poisson_model(backend_name)
    with pytest.raises(ValueError, match="predict_proba needs a classification loss"):
        model.predict_proba(X)
    predicted = model.predict(X)
    r2 = 1 - np.sum((predicted - y[:, 0]) ** 2) / np.sum((y[:, 0] - y[:, 0].mean()) ** 2)
    assert model.score(X, y[:, 0]) == pytest.approx(r2, rel=1e-12)


def test_model_file_round_trip(backend_name, tmp_path):
    model, X, _ = poisson_model(backend_name)
    model.save(tmp_path / "m.fmlp")
    loaded = fastmlp.load(tmp_path / "m.fmlp")
    assert loaded.loss == "poisson"
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_onnx_exports_the_means(tmp_path, dtype):
    onnxruntime = pytest.importorskip("onnxruntime")
    model, X, _ = poisson_model(dtype=dtype, k=2)
    model.to_onnx(tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"),
                                           providers=["CPUExecutionProvider"])
    (name,) = [o.name for o in session.get_outputs()]
    actual = session.run(None, {"X": X.astype(dtype)})[0]
    assert name == "predictions"
    np.testing.assert_allclose(actual, model.predict(X), rtol={"float32": 1e-5, "float64": 1e-12}[dtype])


def test_torch_outputs_the_log_means_both_ways():
    torch = pytest.importorskip("torch")
    model, X, _ = poisson_model(k=2)
    net = model.to_torch()
    with torch.no_grad():
        logits = net(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(np.exp(logits), model.predict(X), rtol=1e-12)
    back = fastmlp.from_torch(net, loss="poisson")
    np.testing.assert_allclose(back.predict(X), model.predict(X), rtol=1e-12)


def test_a_multitask_head_may_be_poisson(backend_name):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(48, 4))
    y = {"counts": rng.poisson(np.exp(X[:, :2] / 2)).astype(float), "kind": (X[:, 0] > 0).astype(int)}
    model = MultiTask([Dense(8, "tanh")], {"counts": [Dense(2)], "kind": [Dense(2)]},
                      {"counts": "poisson", "kind": "softmax_cross_entropy"}, input_dim=4,
                      backend=backend_name, dtype="float64", seed=1)
    history = model.fit(X, y, epochs=3, batch_size=16, verbose=0)
    assert "counts_r2" in history.history
    predicted = model.predict(X)["counts"]
    assert predicted.shape == (48, 2) and (predicted > 0).all()
    assert list(model.predict_proba(X)) == ["kind"]
