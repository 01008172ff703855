"""The Sequential model's public behaviour: outputs, weights, summary (NumPy backend)."""
import numpy as np
import pytest

from fastmlp import BatchNorm, Dense, Dropout, MultiTask, Normalization, Sequential
from fastmlp.nn.losses import LOSSES, get_loss
from helpers import assert_close, make_data


def model(loss="softmax_cross_entropy", k=3, dtype="float32", seed=0, input_dim=4):
    return Sequential([Dense(8, "tanh"), Dense(6, "relu"), Dense(k)], input_dim=input_dim,
                      loss=loss, backend="numpy", dtype=dtype, seed=seed)


# (loss, outputs k, y of shape, predict shape, predict_proba shape) for n = 10 samples
SHAPES = [
    ("softmax_cross_entropy", 3, (10,), (10,), (10, 3)),
    ("softmax_cross_entropy", 3, (10, 3), (10,), (10, 3)),
    ("binary_cross_entropy", 1, (10,), (10,), (10,)),
    ("binary_cross_entropy", 1, (10, 1), (10,), (10,)),
    ("binary_cross_entropy", 4, (10, 4), (10, 4), (10, 4)),
    ("mse", 1, (10,), (10,), None),
    ("mse", 2, (10, 2), (10, 2), None),
]


def targets(loss, shape, rng):
    if loss == "softmax_cross_entropy":
        labels = rng.integers(0, 3, shape[0])
        return labels if len(shape) == 1 else np.eye(3)[labels]
    if loss == "binary_cross_entropy":
        return rng.integers(0, 2, shape)
    return rng.normal(size=shape)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, k, y_shape, predict_shape, proba_shape", SHAPES)
def test_output_shapes_and_types(loss, k, y_shape, predict_shape, proba_shape, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10, 4))
    y = targets(loss, y_shape, rng)
    m = model(loss, k, dtype)
    prediction = m.predict(X)
    assert prediction.shape == predict_shape
    if loss == "mse":
        assert prediction.dtype == dtype
    else:
        assert prediction.dtype.kind == "i"
        assert set(np.unique(prediction)) <= set(range(k if loss != "binary_cross_entropy" else 2))
    if proba_shape is not None:
        proba = m.predict_proba(X)
        assert proba.shape == proba_shape and proba.dtype == dtype
        assert ((proba > 0) & (proba < 1)).all()
        if loss == "softmax_cross_entropy":
            assert_close(proba.sum(axis=1), np.ones(10), "literal", dtype)
            np.testing.assert_array_equal(prediction, proba.argmax(axis=1))
        else:
            np.testing.assert_array_equal(prediction, (proba > 0.5).astype(int))
    result = m.evaluate(X, y)
    metric = "r2" if loss == "mse" else "accuracy"
    assert list(result) == ["loss", metric]
    assert all(isinstance(v, float) for v in result.values())
    assert m.score(X, y) == result[metric]


def test_accuracy_and_loss_match_independent_formulas():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 3, 50)
    m = model(dtype="float64")
    proba = m.predict_proba(X)
    result = m.evaluate(X, y, batch_size=7)
    assert result["accuracy"] == np.mean(m.predict(X) == y)
    assert_close(result["loss"], -np.mean(np.log(proba[np.arange(50), y])), "same_math", "float64")


def test_multilabel_accuracy_counts_samples_with_every_label_right():
    m = model("binary_cross_entropy", k=2, dtype="float64")
    X = np.random.default_rng(2).normal(size=(40, 4))
    predicted = m.predict(X)
    y = predicted.copy()
    y[:10, 0] = 1 - y[:10, 0]                         # 10 samples with one label wrong
    assert m.score(X, y) == 30 / 40


def test_r2_matches_its_definition():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(30, 4)), rng.normal(loc=5.0, size=(30, 2))
    m = model("mse", k=2, dtype="float64")
    p = m.predict(X)
    r2 = np.mean(1 - ((y - p) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0))
    assert_close(m.score(X, y, batch_size=4), r2, "same_math", "float64")


def test_r2_of_a_constant_target_follows_scikit_learn():
    m = model("mse", k=1, dtype="float64")
    X = np.random.default_rng(4).normal(size=(8, 4))
    assert m.score(X, np.full(8, 3.0)) == 0.0              # not predicted exactly
    m.set_weights([np.zeros_like(w) for w in m.get_weights()])
    assert m.score(X, np.zeros(8)) == 1.0                  # predicted exactly


@pytest.mark.parametrize("loss", LOSSES)
def test_chunked_inference_equals_whole(loss):
    X, y = make_data(loss, n=45)
    m = model(loss, dtype="float64")
    whole = m.predict(X)
    for batch_size in (1, 7, 45, 1000):
        chunked = m.predict(X, batch_size=batch_size)
        if not get_loss(loss).classifier:
            assert_close(chunked, whole, "same_math", "float64")
        else:
            np.testing.assert_array_equal(chunked, whole)
    assert_close(m.evaluate(X, y, batch_size=4)["loss"], m.evaluate(X, y)["loss"],
                 "same_math", "float64")


def test_lists_are_accepted_and_converted_once():
    m = model()
    X = np.random.default_rng(5).normal(size=(6, 4))
    np.testing.assert_array_equal(m.predict(X.tolist()), m.predict(X))
    assert m.evaluate(X.tolist(), [0, 1, 2, 0, 1, 2]) == m.evaluate(X, np.array([0, 1, 2, 0, 1, 2]))


def test_bool_targets_are_zero_one():
    m = model("binary_cross_entropy", k=1)
    X = np.random.default_rng(6).normal(size=(6, 4))
    y = np.array([True, False, True, True, False, False])
    assert m.evaluate(X, y) == m.evaluate(X, y.astype(int))


# ---------------------------------------------------------------------- weights
def test_parameters_live_in_one_flat_buffer():
    m = model()
    assert m._params.flags.c_contiguous and m._params.ndim == 1
    assert m._params.dtype == np.float32 and m._grads.shape == m._params.shape
    offset = 0
    for layer in m.layers:
        for view, grad in ((layer.W, layer.dW), (layer.b, layer.db)):
            assert view.base is m._params or np.shares_memory(view, m._params)
            assert np.shares_memory(grad, m._grads)
            np.testing.assert_array_equal(view.ravel(), m._params[offset:offset + view.size])
            offset += view.size
    assert offset == m._params.size == m.n_params
    with m.writing_params():
        m._params[0] = 42.0
    assert m.layers[0].W[0, 0] == 42.0


def test_parameter_views_are_read_only_and_writes_bump_the_version():
    m = model()
    X, y = make_data("softmax_cross_entropy", n=20, n_features=m.input_dim)
    for layer in m.layers:
        for view in layer.parameters():
            with pytest.raises(ValueError, match="read-only"):
                view[...] = 0
    with pytest.raises(ValueError, match="read-only"):
        m._params[0] = 0
    version = m.weights_version
    m.set_weights(m.get_weights())
    m.fit(X, y, epochs=2, batch_size=8)
    assert m.weights_version >= version + 3        # set_weights and at least one per epoch
    assert not m._params.flags.writeable and not m.layers[0].W.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        m.layers[0].W[0, 0] = 0


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_predictions_follow_every_weight_change(backend):
    """The fused predictor keeps packed weights: fit and set_weights must reach it."""
    def model(seed=0):
        return Sequential([Dense(8, "tanh"), Dense(6, "relu"), Dense(3)], input_dim=4,
                          backend=backend, seed=seed)
    m = model()
    X, y = make_data("softmax_cross_entropy", n=40, n_features=m.input_dim)
    before = m.predict_proba(X)
    m.fit(X, y, epochs=1, batch_size=8, learning_rate=0.5)
    after_fit = m.predict_proba(X)
    assert not np.array_equal(before, after_fit)
    fresh = model(seed=7)
    fresh.set_weights(m.get_weights())
    np.testing.assert_array_equal(fresh.predict_proba(X), after_fit)
    m.set_weights([np.zeros_like(w) for w in m.get_weights()])
    np.testing.assert_array_equal(m.predict_proba(X), np.full_like(after_fit, 1 / m.n_outputs))


def test_get_set_weights_round_trip():
    a, b = model(seed=1), model(seed=2)
    weights = a.get_weights()
    assert [w.shape for w in weights] == [(8, 4), (8,), (6, 8), (6,), (3, 6), (3,)]
    weights[0][...] = 0.0                                 # copies: the model is unchanged
    assert a.layers[0].W.any()
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(b._params, a._params)
    X = np.random.default_rng(7).normal(size=(5, 4))
    np.testing.assert_array_equal(b.predict_proba(X), a.predict_proba(X))


def test_set_weights_converts_to_the_model_dtype():
    m = model(dtype="float32")
    weights = [np.full(w.shape, 0.1, np.float64) for w in m.get_weights()]
    m.set_weights(weights)
    assert m._params.dtype == np.float32
    np.testing.assert_array_equal(m._params, np.float32(0.1))


def test_copy_as_converts_weights_state_and_step_and_leaves_the_model_alone():
    m = Sequential([Normalization(), Dense(8, "tanh"), BatchNorm(), Dropout(0.2), Dense(3)],
                   input_dim=4, backend="native", seed=5)
    X, y = make_data("softmax_cross_entropy", n=30, n_features=4)
    m.fit(X, y, epochs=2, batch_size=8)
    before = m.get_weights()
    c = m.copy_as("float64", "numpy")
    assert type(c) is Sequential and c.dtype == np.float64 and c.backend.name == "numpy"
    assert c.training_step == m.training_step > 0 and c.seed == m.seed
    for copied, original in zip(c.get_weights(), before):
        assert copied.dtype == np.float64
        np.testing.assert_array_equal(copied, original.astype(np.float64))
    assert c.flat_grads.dtype == np.float64 and not c.flat_grads.any()
    W = c.layers[1].W
    assert np.shares_memory(W, c.flat_params) and not W.flags.writeable
    c.fit(X, y, epochs=1, batch_size=8)                 # the copy is independent
    for now, then in zip(m.get_weights(), before):
        np.testing.assert_array_equal(now, then)
    assert not np.array_equal(c.layers[1].W, m.layers[1].W)


def test_copy_as_in_the_same_dtype_and_backend_predicts_the_same_bits():
    m = model()
    X, _ = make_data("softmax_cross_entropy", n=10, n_features=m.input_dim)
    np.testing.assert_array_equal(m.copy_as("float32", "numpy").predict_proba(X),
                                  m.predict_proba(X))


def test_copy_as_copies_a_multitask_with_its_heads():
    m = MultiTask([Dense(6, "relu")], {"a": [Dense(3)], "b": [Dense(1)]},
                  {"a": "softmax_cross_entropy", "b": "mse"}, input_dim=4, backend="numpy")
    c = m.copy_as(np.float64, "numpy")
    assert type(c) is MultiTask and c.dtype == np.float64
    for copied, original in zip(c.get_weights(), m.get_weights()):
        np.testing.assert_array_equal(copied, original.astype(np.float64))
    X = np.random.default_rng(1).normal(size=(5, 4))
    same = m.copy_as("float32", "numpy").predict(X)
    for head, values in m.predict(X).items():
        np.testing.assert_array_equal(same[head], values)


def test_training_loss_is_loss_and_grads_loss_without_the_gradient():
    m = Sequential([Dense(8, "tanh"), BatchNorm(), Dense(3)], input_dim=4, backend="numpy",
                   dtype="float64", seed=2)
    X, Y = m.prepare_data(*make_data("softmax_cross_entropy", n=12, n_features=4))
    weights = np.linspace(0.5, 2.0, len(X))
    for w in (None, weights):
        loss = m.training_loss(X, Y, w)
        assert not m.flat_grads.any()                 # no backward pass
        assert loss == m.loss_and_grad(X, Y, w)[0]
        m.flat_grads[...] = 0


def test_biases_start_at_zero_and_initializers_follow_activations():
    m = Sequential([Dense(4, "relu"), Dense(4, "tanh"), Dense(4, "elu", init="lecun_normal"),
                    Dense(2)], input_dim=3, backend="numpy", seed=0)
    assert [layer.init for layer in m.layers] == ["he_normal", "glorot_uniform", "lecun_normal",
                                                  "glorot_uniform"]
    assert not any(layer.b.any() for layer in m.layers)


def test_summary_counts_parameters():
    m = model()
    summary = m.describe()
    assert [row.params for row in summary.layers] == [8 * 5, 6 * 9, 3 * 7]
    assert [row.output_shape for row in summary.layers] == [(None, 8), (None, 6), (None, 3)]
    assert summary.total_params == 40 + 54 + 21 == m.n_params
    text = str(summary)
    assert "total params: 115" in text and "dense_1 (relu)" in text
    assert repr(summary) == text


def test_seed_none_is_drawn_and_recorded():
    a = Sequential([Dense(3)], input_dim=2, backend="numpy")
    b = Sequential([Dense(3)], input_dim=2, backend="numpy")
    assert isinstance(a.seed, int) and a.seed != b.seed
    again = Sequential([Dense(3)], input_dim=2, backend="numpy", seed=a.seed)
    np.testing.assert_array_equal(again._params, a._params)


def test_float32_and_float64_models_start_from_the_same_draws():
    a, b = model(dtype="float32"), model(dtype="float64")
    np.testing.assert_array_equal(a._params, b._params.astype(np.float32))


def test_repr_names_the_configuration():
    text = repr(model())
    assert "Dense(8, activation='tanh', init='glorot_uniform')" in text
    assert "backend='numpy'" in text and "seed=0" in text
