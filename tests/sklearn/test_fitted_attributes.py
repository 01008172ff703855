"""fastmlp.sklearn's dtype rule and fitted attributes against scikit-learn's: float32 or
float64 input fits and predicts in its dtype, other input in float64, ``dtype`` forces one;
coefs_ and intercepts_ are writable arrays whose edits reach the next predict or
partial_fit; loss_curve_ & co. have scikit-learn's types. Two of scikit-learn's own tests
(test_mlp_param_dtypes, test_fit) run here on our estimators: their bodies, imported from
the installed scikit-learn, with the module's estimator names swapped for ours."""
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn import neural_network
from sklearn.datasets import load_iris
from sklearn.neural_network.tests import test_mlp as sklearn_tests
from sklearn.preprocessing import StandardScaler

from fastmlp.sklearn import MLPClassifier, MLPRegressor

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)
SMALL = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0)
quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture
def ours_in_sklearn_tests(monkeypatch):
    """scikit-learn's test module with MLPClassifier and MLPRegressor meaning ours."""
    monkeypatch.setattr(sklearn_tests, "MLPClassifier", MLPClassifier)
    monkeypatch.setattr(sklearn_tests, "MLPRegressor", MLPRegressor)
    return sklearn_tests


@quiet
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("estimator", [MLPClassifier, MLPRegressor])
def test_sklearn_mlp_param_dtypes(ours_in_sklearn_tests, estimator, dtype):
    ours_in_sklearn_tests.test_mlp_param_dtypes(dtype, estimator)


def test_sklearn_fit_with_coefs_set_by_hand(ours_in_sklearn_tests):
    ours_in_sklearn_tests.test_fit()


# ------------------------------------------------------------------ dtype rule
@quiet
@pytest.mark.parametrize("data, dtype", [
    (X_IRIS, np.float64), (X_IRIS.astype(np.float32), np.float32),
    (np.rint(X_IRIS * 4).astype(np.int64), np.float64), (X_IRIS.tolist(), np.float64),
    (pd.DataFrame(X_IRIS.astype(np.float32)), np.float32), (pd.DataFrame(X_IRIS), np.float64)])
@pytest.mark.parametrize("module", [neural_network, "ours"])
def test_input_dtype_decides_like_scikit_learn(module, data, dtype):
    cls = MLPClassifier if module == "ours" else module.MLPClassifier
    clf = cls(**SMALL).fit(data, Y_IRIS)
    assert {a.dtype for a in [*clf.coefs_, *clf.intercepts_]} == {np.dtype(dtype)}
    assert clf.predict_proba(data).dtype == dtype


@quiet
@pytest.mark.parametrize("forced", ["float32", "float64"])
@pytest.mark.parametrize("given", [np.float32, np.float64])
def test_dtype_argument_forces_the_network_dtype(forced, given):
    reg = MLPRegressor(**SMALL, dtype=forced).fit(X_IRIS.astype(given), Y_IRIS)
    assert reg.model_.dtype == forced == reg.coefs_[0].dtype
    assert reg.predict(X_IRIS.astype(given)).dtype == forced


@quiet
@pytest.mark.parametrize("fitted, later", [(np.float64, np.float32), (np.float32, np.float64)])
@pytest.mark.parametrize("how", ["partial_fit", "warm_start"])
def test_continuing_keeps_the_fitted_dtype_like_scikit_learn(fitted, later, how):
    results = []
    for cls in (neural_network.MLPClassifier, MLPClassifier):
        clf = cls(**SMALL, solver="sgd", warm_start=how == "warm_start")
        clf.fit(X_IRIS.astype(fitted), Y_IRIS)
        if how == "partial_fit":
            clf.partial_fit(X_IRIS.astype(later), Y_IRIS)
        else:
            clf.fit(X_IRIS.astype(later), Y_IRIS)
        results.append({a.dtype for a in [*clf.coefs_, *clf.intercepts_]})
    assert results[0] == results[1] == {np.dtype(fitted)}


def test_forcing_another_dtype_on_a_fitted_network_is_refused():
    reg = MLPRegressor(**SMALL, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X_IRIS, Y_IRIS)
    reg.set_params(dtype="float32")
    with pytest.raises(ValueError, match="dtype changed from 'float64' to 'float32'"):
        reg.fit(X_IRIS, Y_IRIS)


# --------------------------------------------------------- writable coefs_
@pytest.fixture
def fitted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MLPClassifier(**SMALL).fit(X_IRIS, Y_IRIS)


def predict_proba_of(coefs, intercepts, X):
    """scikit-learn's forward pass (relu hidden layers, softmax output)."""
    a = X
    for i, (W, b) in enumerate(zip(coefs, intercepts)):
        a = a @ W + b
        a = np.maximum(a, 0) if i < len(coefs) - 1 else a
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_coefs_are_plain_writable_arrays(fitted):
    for array in [*fitted.coefs_, *fitted.intercepts_]:
        assert type(array) is np.ndarray and array.flags.writeable and array.flags.owndata


@pytest.mark.parametrize("edit", ["in place", "element", "new lists"])
def test_edited_coefs_change_predictions(fitted, edit):
    coefs = [c * 2 for c in fitted.coefs_]
    intercepts = [b - 1 for b in fitted.intercepts_]
    if edit == "in place":
        for mine, new in zip([*fitted.coefs_, *fitted.intercepts_], [*coefs, *intercepts]):
            mine[...] = new
    elif edit == "element":
        fitted.coefs_[1], fitted.intercepts_[0] = coefs[1], intercepts[0]
        coefs[0], intercepts[1] = fitted.coefs_[0], fitted.intercepts_[1]
    else:
        fitted.coefs_, fitted.intercepts_ = coefs, intercepts
    np.testing.assert_allclose(fitted.predict_proba(X_IRIS),
                               predict_proba_of(coefs, intercepts, X_IRIS), rtol=1e-12)
    np.testing.assert_array_equal(fitted.model_.get_weights()[0], coefs[0].T)


def test_a_held_reference_stays_live_across_partial_fit(fitted):
    first = fitted.coefs_[0]
    first[...] = 0
    fitted.partial_fit(X_IRIS, Y_IRIS)
    assert fitted.coefs_[0] is first
    np.testing.assert_array_equal(first, fitted.model_.get_weights()[0].T)
    assert np.abs(first).max() < 0.1      # one epoch from zero, not from the fitted weights


@pytest.mark.parametrize("name, index, wrong, message", [
    ("coefs_", 1, np.zeros((5, 2)), r"coefs_\[1\] must have shape \(5, 3\); got \(5, 2\)"),
    ("intercepts_", 0, np.zeros(4), r"intercepts_\[0\] must have shape \(5,\); got \(4,\)"),
    ("coefs_", 0, np.full((4, 5), np.nan), r"coefs_\[0\] holds non-finite values")])
def test_wrong_coefs_are_refused_naming_them(fitted, name, index, wrong, message):
    before = fitted.model_.get_weights()
    getattr(fitted, name)[index] = wrong
    with pytest.raises(ValueError, match=message):
        fitted.predict(X_IRIS)
    with pytest.raises(ValueError, match=message):
        fitted.partial_fit(X_IRIS, Y_IRIS)
    for now, then in zip(fitted.model_.get_weights(), before):
        np.testing.assert_array_equal(now, then)


def test_a_list_of_the_wrong_length_is_refused(fitted):
    fitted.coefs_ = fitted.coefs_[:1]
    with pytest.raises(ValueError, match=r"coefs_ must be a list of 2 arrays, one per layer; "
                                         r"got 1 arrays"):
        fitted.predict(X_IRIS)


def test_unfitted_estimator_has_no_coefs():
    assert not hasattr(MLPClassifier(), "coefs_")
    assert not hasattr(MLPRegressor(), "intercepts_")


# ---------------------------------------------------- other fitted attributes
def attribute_kinds(clf) -> dict:
    def kind(value):
        if isinstance(value, list):
            return ("list", len(value), {type(v) for v in value})
        return type(value)
    names = ["loss_", "loss_curve_", "best_loss_", "validation_scores_",
             "best_validation_score_", "t_", "n_iter_", "out_activation_"]
    return {name: kind(getattr(clf, name)) for name in names}


@quiet
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("early_stopping", [False, True])
@pytest.mark.parametrize("kind", ["MLPClassifier", "MLPRegressor"])
def test_fitted_attributes_have_scikit_learn_types(kind, early_stopping, dtype):
    params = dict(SMALL, max_iter=4, early_stopping=early_stopping)
    ours = {"MLPClassifier": MLPClassifier, "MLPRegressor": MLPRegressor}[kind]
    fits = [cls(**params).fit(X_IRIS.astype(dtype), Y_IRIS)
            for cls in (getattr(neural_network, kind), ours)]
    assert attribute_kinds(fits[1]) == attribute_kinds(fits[0])
    assert fits[1].out_activation_ == fits[0].out_activation_
