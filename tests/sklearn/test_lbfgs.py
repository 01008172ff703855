"""solver="lbfgs" (fastmlp.sklearn.lbfgs, fastmlp.train.gradient).

Oracles: scikit-learn's own lbfgs tests (their bodies, from the installed
sklearn/neural_network/tests/test_mlp.py, run with that module's MLPClassifier and
MLPRegressor names bound to ours); scikit-learn's estimators in float64 from the same
initial weights (the trajectory after 10 iterations); the per-op path against the fused
whole-batch gradient, bit for bit; central finite differences of the objective.
"""
import numpy as np
import pytest
import sklearn.neural_network as reference
import sklearn.neural_network.tests.test_mlp as sklearn_tests   # the test extra pins its release
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning

import fastmlp
import fastmlp.sklearn as ours
from fastmlp.nn.layers import Dense, Dropout
from fastmlp.nn.regularizers import L2
from fastmlp.sklearn.lbfgs import sklearn_objective
from fastmlp.train import loop as training
from fastmlp.train.gradient import WholeBatch

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
# float64 rounding of the same arithmetic in another order, over 10 L-BFGS iterations
PARITY_RTOL = 1e-10


# ------------------------------------------------------- scikit-learn's own tests
def _cases():
    classification, regression = (sklearn_tests.classification_datasets,
                                  sklearn_tests.regression_datasets)
    for name, datasets in [("test_lbfgs_classification", classification),
                           ("test_lbfgs_regression", regression),
                           ("test_lbfgs_classification_maxfun", classification),
                           ("test_lbfgs_regression_maxfun", regression),
                           ("test_warm_start", [()]), ("test_partial_fit_errors", [()])]:
        for i, data in enumerate(datasets):
            yield pytest.param(name, data, id=f"{name}-{i}")


@pytest.mark.parametrize("name, data", list(_cases()))
def test_scikit_learns_lbfgs_test_passes_against_ours(name, data, monkeypatch):
    monkeypatch.setattr(sklearn_tests, "MLPClassifier", ours.MLPClassifier)
    monkeypatch.setattr(sklearn_tests, "MLPRegressor", ours.MLPRegressor)
    getattr(sklearn_tests, name)(*data)


# ------------------------------------------------------------------- parity
def _fit_both(cls_name, X, y, sample_weight=None, backend="native", **params):
    params = dict(solver="lbfgs", random_state=0, **params)
    theirs = getattr(reference, cls_name)(**params).fit(X, y, sample_weight=sample_weight)
    mine = getattr(ours, cls_name)(dtype="float64", backend=backend, **params).fit(
        X, y, sample_weight=sample_weight)
    return theirs, mine


def _assert_same_fit(theirs, mine):
    assert mine.n_iter_ == theirs.n_iter_
    assert mine.t_ == theirs.t_ == 0
    np.testing.assert_allclose(mine.loss_, theirs.loss_, rtol=PARITY_RTOL, atol=0)
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, mine.coefs_ + mine.intercepts_):
        np.testing.assert_allclose(b, a, rtol=0, atol=PARITY_RTOL * np.abs(a).max())
    assert not hasattr(mine, "loss_curve_") and not hasattr(theirs, "loss_curve_")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("activation", ["relu", "logistic", "tanh", "identity"])
@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_iris_after_10_iterations_matches_scikit_learn(activation, backend):
    _assert_same_fit(*_fit_both("MLPClassifier", X_IRIS, Y_IRIS, hidden_layer_sizes=(10,),
                                max_iter=10, alpha=0.01, activation=activation,
                                backend=backend))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("case", ["binary", "multilabel", "regression-1d", "regression-3"])
def test_other_losses_and_sample_weight_match_scikit_learn(case):
    rng = np.random.default_rng(0)
    w = rng.uniform(0.2, 3.0, len(X_IRIS))
    X = (X_IRIS - X_IRIS.mean(0)) / X_IRIS.std(0)
    targets = {"binary": ("MLPClassifier", Y_IRIS == 1),
               "multilabel": ("MLPClassifier", np.stack([Y_IRIS == 1, X[:, 0] > 0], 1)),
               "regression-1d": ("MLPRegressor", X[:, 0] * X[:, 1]),
               "regression-3": ("MLPRegressor", X[:, :3] * X[:, 1:4])}
    cls_name, y = targets[case]
    _assert_same_fit(*_fit_both(cls_name, X, y.astype(float) if cls_name == "MLPRegressor"
                                else y.astype(int), sample_weight=w, hidden_layer_sizes=(8,),
                                max_iter=10, alpha=0.1, activation="tanh"))


def test_warm_start_continues_like_scikit_learn():
    params = dict(hidden_layer_sizes=(6,), max_iter=5, warm_start=True)
    with pytest.warns(ConvergenceWarning):
        theirs, mine = _fit_both("MLPClassifier", X_IRIS, Y_IRIS, **params)
    with pytest.warns(ConvergenceWarning):
        theirs.fit(X_IRIS, Y_IRIS)
    with pytest.warns(ConvergenceWarning):
        mine.fit(X_IRIS, Y_IRIS)
    _assert_same_fit(theirs, mine)


# ----------------------------------------------------------- the objective
def _model(dtype, backend="native", dropout=0.0):
    layers = [Dense(7, activation="tanh"), Dropout(dropout), Dense(3)]
    return fastmlp.Sequential(layers, input_dim=4, loss="softmax_cross_entropy",
                              backend=backend, dtype=dtype, seed=3,
                              regularizer=L2(0.3, scale="batch"))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_whole_batch_gradient_equals_per_op_bit_for_bit(dtype, weighted, monkeypatch):
    rng = np.random.default_rng(1)
    results = []
    for fused in (True, False):
        monkeypatch.setattr(training, "_FUSED", fused)
        model = _model(dtype, dropout=0.2)
        X, Y = model.prepare_data(X_IRIS, Y_IRIS)
        W = rng.uniform(0.5, 2, len(X)).astype(dtype) if weighted else None
        rng = np.random.default_rng(1)
        objective = WholeBatch(model, X, Y, W)
        assert objective.fused == fused
        params = np.random.default_rng(2).normal(0, 0.5, model.n_params)
        results.append((objective(params), model.flat_grads.copy()))
    (fused_value, fused_grads), (per_op_value, per_op_grads) = results
    assert fused_value == per_op_value
    np.testing.assert_array_equal(fused_grads, per_op_grads)


def test_objective_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    X, y = X_IRIS[::10], Y_IRIS[::10]
    w = rng.uniform(0.5, 2, len(X))
    est = ours.MLPClassifier(solver="lbfgs", hidden_layer_sizes=(4,), activation="logistic",
                             alpha=0.5, max_iter=1, dtype="float64", random_state=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y, sample_weight=w)
    Xp, Y = est.model_.prepare_data(X, y, learn_classes=False)
    objective = sklearn_objective(est, Xp, Y, w)
    x0 = rng.normal(0, 0.5, est.model_.n_params)
    _, grad = objective(x0)
    step = 1e-6
    numeric = np.empty_like(x0)
    for i in range(len(x0)):
        e = np.zeros_like(x0)
        e[i] = step
        numeric[i] = (objective(x0 + e)[0] - objective(x0 - e)[0]) / (2 * step)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------ the estimator
@pytest.mark.parametrize("cls", [ours.MLPClassifier, ours.MLPRegressor])
def test_lbfgs_has_no_partial_fit(cls):
    est = cls(solver="lbfgs")
    assert not hasattr(est, "partial_fit")
    with pytest.raises(AttributeError, match="partial_fit"):
        est.partial_fit
    assert hasattr(cls(solver="adam"), "partial_fit")


def test_max_fun_reached_warns_as_scikit_learn():
    est = ours.MLPClassifier(solver="lbfgs", hidden_layer_sizes=(10,), max_fun=5,
                             random_state=0)
    with pytest.warns(ConvergenceWarning, match=r"lbfgs failed to converge after \d+ "
                      r"iteration\(s\) \(status=1\):\nSTOP: TOTAL NO. OF F,G EVALUATIONS"):
        est.fit(X_IRIS, Y_IRIS)
    assert est.n_iter_ <= 5


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_early_stopping_is_ignored_as_in_scikit_learn():
    params = dict(solver="lbfgs", hidden_layer_sizes=(5,), max_iter=20, random_state=0,
                  dtype="float64", tol=1e-2)
    plain = ours.MLPClassifier(**params).fit(X_IRIS, Y_IRIS)
    early = ours.MLPClassifier(early_stopping=True, **params).fit(X_IRIS, Y_IRIS)
    for a, b in zip(plain.coefs_, early.coefs_):
        np.testing.assert_array_equal(a, b)
    assert not hasattr(early, "validation_scores_")


def test_dropout_is_refused_with_lbfgs():
    with pytest.raises(ValueError, match="dropout must be 0"):
        ours.MLPClassifier(solver="lbfgs", dropout=0.1).fit(X_IRIS, Y_IRIS)
