"""Regularizers (L1, L2, L1L2) and sample/class weights in fit (docs/conventions.md)."""
import numpy as np
import pytest

from fastmlp import L1, L1L2, L2, Dense, Sequential
from helpers import assert_close, make_data


def mlp(backend="numpy", loss="softmax_cross_entropy", k=3, regularizer=None, dtype="float64",
        seed=0, **dense):
    return Sequential([Dense(6, "tanh", **dense), Dense(k)], input_dim=4, loss=loss,
                      backend=backend, dtype=dtype, seed=seed, regularizer=regularizer)


# ------------------------------------------------------------------ regularizers
def lasso_ratio(lam):
    """||W informative|| / ||W noise|| of a linear model on 3 informative + 20 noise
    features (50 noisy samples) trained with L1(lam)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 23))
    y = X[:, :3] @ np.array([1.5, -2.0, 1.0]) + rng.normal(size=50)
    m = Sequential([Dense(1, regularizer=L1(lam) if lam else None)], input_dim=23, loss="mse",
                   backend="numpy", dtype="float64", seed=0)
    m.fit(X, y, epochs=500, batch_size=None, learning_rate=0.05, shuffle=False)
    W = m.layers[0].W
    return np.linalg.norm(W[:, :3]) / np.linalg.norm(W[:, 3:])


def test_l1_drives_the_weights_of_noise_features_towards_zero():
    assert lasso_ratio(0.0) < 10                 # without L1 the noise weights are not small
    assert lasso_ratio(30.0) >= 10


def test_l2_shrinks_the_weight_norm_as_lambda_grows():
    X, y = make_data("softmax_cross_entropy", n=60)
    norms = []
    for lam in (0.0, 0.3, 3.0, 30.0):
        m = mlp(regularizer=L2(lam))
        m.fit(X, y, epochs=100, batch_size=None, learning_rate=0.2, shuffle=False)
        norms.append(np.sqrt(sum(np.sum(layer.W ** 2) for layer in m.layers)))
    assert all(a > b for a, b in zip(norms, norms[1:])), norms


@pytest.mark.parametrize("regularizer, l1, l2", [
    (L1(0.3), 0.3, 0.0), (L2(0.7), 0.0, 0.7), (L1L2(l1=0.3, l2=0.7), 0.3, 0.7)])
def test_penalty_in_history_is_the_hand_computed_value(regularizer, l1, l2):
    X, y = make_data("softmax_cross_entropy", n=30)
    m = mlp(regularizer=regularizer)
    m.set_weights([w + 0.5 for w in m.get_weights()])    # biases nonzero: not penalized
    before = m.get_weights()
    data_loss = m.evaluate(X, y)["loss"]
    history = m.fit(X, y, epochs=1, batch_size=None, shuffle=False).history
    weights = before[0::2]                                 # W1, W2
    expected = sum(l1 / 30 * np.abs(W).sum() + l2 / (2 * 30) * (W ** 2).sum() for W in weights)
    assert_close(history["penalty"][0], expected, "literal", "float64")
    assert_close(history["loss"][0], data_loss + expected, "same_math", "float64")
    assert_close(history["data_loss"][0], data_loss, "same_math", "float64")


def test_penalty_is_a_batch_weighted_mean_and_scale_batch_divides_by_the_batch():
    X, y = make_data("softmax_cross_entropy", n=30)
    m = mlp(regularizer=L2(1.0, scale="batch"))
    W = [layer.W.copy() for layer in m.layers]
    # SGD with a tiny rate: the weights barely move within the epoch
    history = m.fit(X, y, epochs=1, batch_size=20, shuffle=False, learning_rate=1e-12).history
    squares = sum((w ** 2).sum() for w in W)
    expected = (20 * squares / (2 * 20) + 10 * squares / (2 * 10)) / 30
    assert_close(history["penalty"][0], expected, "same_math", "float64")


@pytest.mark.parametrize("backend", ["numpy", "native"])
def test_scale_weight_divides_by_the_batch_weight_sum(backend):
    """scale="weight": each step's penalty is l2 / (2 w_b) sum(W^2), w_b the batch's
    sample-weight sum (scikit-learn's alpha with sample_weight); without sample weights
    it is scale="batch"."""
    X, y = make_data("softmax_cross_entropy", n=30)
    w = np.linspace(0.2, 3.0, 30)
    m = mlp(regularizer=L2(1.0, scale="weight"), backend=backend)
    W = [layer.W.copy() for layer in m.layers]
    history = m.fit(X, y, epochs=1, batch_size=20, shuffle=False, learning_rate=1e-12,
                    sample_weight=w).history
    squares = sum((v ** 2).sum() for v in W)
    expected = (20 * squares / (2 * w[:20].sum()) + 10 * squares / (2 * w[20:].sum())) / 30
    assert_close(history["penalty"][0], expected, "same_math", "float64")
    assert L2(0.3, scale="weight").coefficients(100, 10) == (0.0, 0.03)
    assert L2(0.3, scale="weight").coefficients(100, 10, 0.0) == (0.0, 0.0)
    assert repr(L2(0.3, scale="weight")) == "L2(0.3, scale='weight')"


def test_a_layer_regularizer_overrides_the_model_one():
    X, y = make_data("softmax_cross_entropy", n=30)
    m = Sequential([Dense(6, "tanh", regularizer=L2(0.0)), Dense(3)], input_dim=4,
                   backend="numpy", dtype="float64", seed=0, regularizer=L2(2.0))
    W2 = m.layers[1].W.copy()
    history = m.fit(X, y, epochs=1, batch_size=None, shuffle=False).history
    assert_close(history["penalty"][0], 2.0 / 60 * (W2 ** 2).sum(), "literal", "float64")


def test_regularizer_arguments_are_checked():
    with pytest.raises(ValueError, match=r"l2 must be a finite number >= 0; got -1"):
        L2(-1)
    with pytest.raises(ValueError, match=r"unknown scale 'epoch'"):
        L1(0.1, scale="epoch")
    with pytest.raises(TypeError, match=r"regularizer must be None or a fastmlp.regularizers"):
        Dense(3, regularizer=0.1)
    with pytest.raises(TypeError, match=r"regularizer must be None"):
        mlp(regularizer="l2")


# ------------------------------------------------------------- sample weights
@pytest.mark.parametrize("loss", ["softmax_cross_entropy", "binary_cross_entropy", "mse"])
def test_a_weight_of_two_equals_the_row_twice(backend_name, loss):
    X, y = make_data(loss, n=20)
    weights = np.ones(20)
    weights[[3, 11]] = 2.0
    rows = np.concatenate([np.arange(20), [3, 11]])
    a, b = mlp(backend_name, loss), mlp(backend_name, loss)
    ha = a.fit(X, y, epochs=1, batch_size=None, shuffle=False, learning_rate=0.5,
               sample_weight=weights).history
    hb = b.fit(X[rows], y[rows], epochs=1, batch_size=None, shuffle=False,
               learning_rate=0.5).history
    assert_close(a._grads, b._grads, "same_math", "float64")
    assert_close(a._params, b._params, "same_math", "float64")
    assert_close(ha["data_loss"], hb["data_loss"], "same_math", "float64")


def test_unit_weights_change_nothing():
    X, y = make_data("softmax_cross_entropy", n=30)
    a, b = mlp(), mlp()
    a.fit(X, y, epochs=2, batch_size=7, sample_weight=np.ones(30))
    b.fit(X, y, epochs=2, batch_size=7)
    np.testing.assert_array_equal(a._params, b._params)


def test_balanced_class_weights_are_scikit_learns():
    X, _ = make_data("softmax_cross_entropy", n=10)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
    hand = np.array([10 / 18] * 6 + [10 / 9] * 3 + [10 / 3])   # n / (classes * count)
    a, b, c = mlp(), mlp(), mlp()
    a.fit(X, y, epochs=2, batch_size=4, class_weight="balanced")
    b.fit(X, y, epochs=2, batch_size=4, sample_weight=hand)
    c.fit(X, y, epochs=2, batch_size=4, class_weight={0: 10 / 18, 1: 10 / 9, 2: 10 / 3})
    np.testing.assert_array_equal(a._params, b._params)
    np.testing.assert_array_equal(c._params, b._params)


def test_class_and_sample_weights_multiply():
    X, y = make_data("binary_cross_entropy", n=12, k=1)
    y = y[:, 0]
    sample = np.linspace(0.5, 2.0, 12)
    a, b = mlp(loss="binary_cross_entropy", k=1), mlp(loss="binary_cross_entropy", k=1)
    a.fit(X, y, epochs=1, batch_size=5, sample_weight=sample, class_weight={1: 3.0})
    b.fit(X, y, epochs=1, batch_size=5, sample_weight=sample * np.where(y == 1, 3.0, 1.0))
    np.testing.assert_array_equal(a._params, b._params)


def test_evaluate_takes_sample_weights():
    X, y = make_data("softmax_cross_entropy", n=9)
    m = mlp()
    w = np.arange(1.0, 10.0)
    rows = [m.evaluate(X[i:i + 1], y[i:i + 1])["loss"] for i in range(9)]
    result = m.evaluate(X, y, sample_weight=w, batch_size=4)
    assert_close(result["loss"], np.dot(w, rows) / w.sum(), "same_math", "float64")
    assert result["accuracy"] == m.evaluate(X, y)["accuracy"]        # metrics unweighted


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(sample_weight=np.ones(5)), ValueError, r"sample_weight must have one weight per "
                                                 r"sample, shape \(6,\); got shape \(5,\)"),
    (dict(sample_weight=np.ones((6, 1))), ValueError, r"sample_weight must have shape"),
    (dict(sample_weight=[1, 1, -1, 1, 1, 1]), ValueError, r"sample_weight must be >= 0; got -1"),
    (dict(sample_weight=np.zeros(6)), ValueError, r"must not be all zeros"),
    (dict(sample_weight=[1, np.nan, 1, 1, 1, 1]), ValueError, r"sample_weight must be finite"),
    (dict(class_weight="auto"), ValueError, r"class_weight must be a dict .* or 'balanced'"),
    (dict(class_weight=[1, 2]), TypeError, r"class_weight must be a dict"),
    (dict(class_weight={3: 1.0}), ValueError, r"class_weight has key 3, not one of the "
                                              r"model's classes_ \[0, 1, 2\]"),
    (dict(class_weight={True: 1.0}), ValueError, r"class_weight has key True"),
    (dict(class_weight={0: -1.0}), ValueError, r"class_weight\[0\] must be a finite number >= 0"),
])
def test_weights_are_validated(kwargs, error, match):
    X, y = make_data("softmax_cross_entropy", n=6)
    with pytest.raises(error, match=match):
        mlp().fit(X, y, epochs=1, **kwargs)


def test_class_weight_needs_single_label_classification():
    X, y = make_data("mse", n=6)
    with pytest.raises(ValueError, match=r"class_weight needs a classification loss"):
        mlp(loss="mse").fit(X, y, epochs=1, class_weight="balanced")
    X, y = make_data("binary_cross_entropy", n=6)
    with pytest.raises(ValueError, match=r"multilabel\) use sample_weight"):
        mlp(loss="binary_cross_entropy").fit(X, y, epochs=1, class_weight={1: 2.0})
