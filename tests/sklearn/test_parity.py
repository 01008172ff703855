"""fastmlp.sklearn against scikit-learn's own MLPClassifier / MLPRegressor.

Two oracles, each its own test:

* the training trajectory: with shuffle=False both take the same mini-batches in the same
  order from the same initial weights (the same random_state draws scikit-learn's
  initialization), so in float64 loss_curve_, n_iter_, the stopping epoch and the
  weights must agree to rounding: this pins the alpha scaling, the loss factors, the
  learning-rate schedules and the stopping rules;
* accuracy (R^2 for regression) averaged over 5-fold cross-validation and 3 seeds, with
  the default float32 and shuffling, inputs standardized in a Pipeline: within 1 point on
  digits and breast cancer, 2 on iris and wine, 0.01 R^2 on Friedman #1.
"""
import numpy as np
import pytest
import sklearn.neural_network as reference
from sklearn.datasets import (load_breast_cancer, load_digits, load_iris, load_wine,
                              make_friedman1, make_multilabel_classification,
                              make_regression)
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastmlp.sklearn as ours

# float64 rounding over a few hundred steps of the same arithmetic in another order.
TRAJECTORY_RTOL = 1e-10
COEF_ATOL = 1e-10


def _trajectory_data():
    iris_X, iris_y = load_iris(return_X_y=True)
    iris_X = StandardScaler().fit_transform(iris_X)
    reg_X, reg_y = make_regression(120, 5, n_targets=3, noise=1.0, random_state=0)
    ml_X, ml_y = make_multilabel_classification(120, 6, n_classes=4, random_state=0)
    return {"multiclass": (iris_X, iris_y, "MLPClassifier"),
            "binary": (iris_X, np.where(iris_y == 1, "yes", "no"), "MLPClassifier"),
            "multilabel": (StandardScaler().fit_transform(ml_X), ml_y, "MLPClassifier"),
            "regression": (reg_X, reg_y / 100, "MLPRegressor"),
            "regression-1d": (reg_X, reg_y[:, 0] / 100, "MLPRegressor")}


def _counts(X):
    """Poisson counts whose log means are linear in X."""
    log_means = StandardScaler().fit_transform(X) @ np.random.default_rng(2).normal(
        scale=0.3, size=(5, 2))
    counts = np.random.default_rng(3).poisson(np.exp(log_means)).astype(float)
    return {"counts": (X, counts, "MLPRegressor"),
            "counts-1d": (X, counts[:, 0], "MLPRegressor")}


DATA = _trajectory_data()
COUNTS = _counts(DATA["regression"][0])
SETTINGS = {
    "sgd-nesterov": dict(solver="sgd"),
    "sgd-momentum": dict(solver="sgd", nesterovs_momentum=False),
    "sgd-plain": dict(solver="sgd", momentum=0.0),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", tol=1e-2, n_iter_no_change=2,
                         max_iter=60),
    "sgd-tol-stop": dict(solver="sgd", tol=1e-2, n_iter_no_change=3, max_iter=60),
    "sgd-full-batch-weighted": dict(solver="sgd", activation="logistic"),
    # scikit-learn's eps placement (before the bias correction) at its default epsilon
    "adam": dict(solver="adam"),
    "adam-beta1-0": dict(solver="adam", beta_1=0.0, beta_2=0.0),
    "sgd-nesterov-1": dict(solver="sgd", momentum=1.0, learning_rate_init=0.001),
    "sgd-momentum-1": dict(solver="sgd", momentum=1.0, nesterovs_momentum=False,
                           learning_rate_init=0.001),
}


def _fit_pair(kind, setting, **extra):
    X, y, name = {**DATA, **COUNTS}[kind]
    params = dict(hidden_layer_sizes=(7, 5), activation="tanh", shuffle=False, batch_size=32,
                  max_iter=20, random_state=1, alpha=0.01, learning_rate_init=0.01)
    params.update(SETTINGS[setting], **extra)
    weights = None
    if setting.endswith("weighted"):
        # One batch: scikit-learn divides alpha by each batch's weight sum, fastmlp by
        # n / sum(w) of the training set; the two agree for a full batch.
        params["batch_size"] = len(X)
        weights = np.random.default_rng(0).integers(0, 4, len(X)).astype(float)
    theirs = getattr(reference, name)(**params).fit(X, y, sample_weight=weights)
    mine = getattr(ours, name)(**params, dtype="float64").fit(X, y, sample_weight=weights)
    return theirs, mine


def _assert_same_trajectory(theirs, mine):
    assert mine.n_iter_ == theirs.n_iter_
    assert mine.t_ == theirs.t_
    np.testing.assert_allclose(mine.loss_curve_, theirs.loss_curve_, rtol=TRAJECTORY_RTOL)
    for a, b in zip(mine.coefs_ + mine.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=COEF_ATOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("setting", sorted(SETTINGS))
@pytest.mark.parametrize("kind", sorted(DATA))
def test_trajectory_matches_scikit_learn(kind, setting):
    theirs, mine = _fit_pair(kind, setting)
    _assert_same_trajectory(theirs, mine)
    assert mine.best_loss_ == pytest.approx(theirs.best_loss_, rel=TRAJECTORY_RTOL)
    X = DATA[kind][0]
    if DATA[kind][2] == "MLPClassifier":
        np.testing.assert_array_equal(mine.predict(X), theirs.predict(X))
        np.testing.assert_allclose(mine.predict_proba(X), theirs.predict_proba(X),
                                   rtol=TRAJECTORY_RTOL)
    else:
        np.testing.assert_allclose(mine.predict(X), theirs.predict(X), rtol=TRAJECTORY_RTOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
# Adam's epsilon placement (see SETTINGS) moves counts-1d's weights by 2e-10 with either
# loss, past COEF_ATOL: the sgd settings pin the poisson loss, its gradient and factors.
@pytest.mark.parametrize("setting", sorted(set(SETTINGS) - {"adam"}))
@pytest.mark.parametrize("kind", sorted(COUNTS))
def test_poisson_trajectory_matches_scikit_learn(kind, setting):
    """loss="poisson": scikit-learn's half Poisson deviance and log link, step for step."""
    theirs, mine = _fit_pair(kind, setting, loss="poisson")
    assert mine.out_activation_ == theirs.out_activation_ == "exp"
    _assert_same_trajectory(theirs, mine)
    X = COUNTS[kind][0]
    np.testing.assert_allclose(mine.predict(X), theirs.predict(X), rtol=TRAJECTORY_RTOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("kind", ["binary", "multilabel", "regression"])
def test_early_stopping_matches_scikit_learn(kind):
    """Same hold-out (drawn after the initial weights from the same random_state), same
    validation scores, same stopping epoch, and the best weights restored."""
    theirs, mine = _fit_pair(kind, "sgd-nesterov", early_stopping=True, max_iter=60,
                             n_iter_no_change=3)
    _assert_same_trajectory(theirs, mine)
    assert mine.n_iter_ < 60
    np.testing.assert_allclose(mine.validation_scores_, theirs.validation_scores_,
                               rtol=TRAJECTORY_RTOL)
    assert mine.best_validation_score_ == pytest.approx(theirs.best_validation_score_)
    assert mine.best_loss_ is None


def _adam_data():
    iris_X, iris_y = load_iris(return_X_y=True)
    digits_X, digits_y = load_digits(return_X_y=True)
    reg_X, reg_y = make_friedman1(n_samples=300, noise=1.0, random_state=0)
    return {"iris": (StandardScaler().fit_transform(iris_X), iris_y, "MLPClassifier"),
            "digits": (digits_X / 16, digits_y, "MLPClassifier"),
            "friedman1": (reg_X, (reg_y - reg_y.mean()) / reg_y.std(), "MLPRegressor")}


def _assert_ten_iterations_match(theirs, mine):
    assert mine.n_iter_ == theirs.n_iter_ == 10
    np.testing.assert_allclose(mine.loss_curve_, theirs.loss_curve_, rtol=TRAJECTORY_RTOL)
    for a, b in zip(mine.coefs_ + mine.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert np.linalg.norm(a - b) <= TRAJECTORY_RTOL * np.linalg.norm(b)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("solver", ["adam", "sgd"])
@pytest.mark.parametrize("name", ["iris", "digits", "friedman1"])
def test_matches_scikit_learn_after_ten_iterations(name, solver):
    """scikit-learn's defaults (one hidden layer of 100; Adam with epsilon 1e-8, or SGD
    with Nesterov momentum) with shuffle=False in float64: loss_curve_ and every weight
    within 1e-10 relative."""
    X, y, cls = _adam_data()[name]
    params = dict(solver=solver, shuffle=False, max_iter=10, random_state=0)
    theirs = getattr(reference, cls)(**params).fit(X, y)
    mine = getattr(ours, cls)(**params, dtype="float64").fit(X, y)
    _assert_ten_iterations_match(theirs, mine)


# scikit-learn's loss_ of an epoch averages each batch's weighted mean loss by batch size,
# where fastmlp's is the epoch's overall weighted mean: with non-uniform weights on several
# batches (digits' 9) the loss_curve_ values differ (about 1e-3 relative); the weights
# agree. Whole-batch lbfgs and one-batch iris agree in both.
_EPOCH_LOSS_OF_BATCH_MEANS = pytest.mark.xfail(
    strict=True, reason="loss_curve_ is the epoch's weighted mean, not the batches' "
                        "weighted means averaged by batch size (see above)")


def _weighted_fits(name, solver):
    X, y, cls = _adam_data()[name]
    weights = np.random.default_rng(0).uniform(0.1, 3.0, len(X))
    params = dict(solver=solver, shuffle=False, max_iter=10, random_state=0, alpha=1e-2)
    theirs = getattr(reference, cls)(**params).fit(X, y, sample_weight=weights)
    mine = getattr(ours, cls)(**params, dtype="float64").fit(X, y, sample_weight=weights)
    return theirs, mine


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", ["iris", "digits"])
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_weighted_penalty_matches_scikit_learn_after_ten_iterations(name, solver):
    """Non-uniform sample_weight with alpha=1e-2: scikit-learn divides each batch's
    penalty (and its gradient) by the batch's weight sum, as L2(scale="weight") does:
    every weight within 1e-10 relative after 10 iterations (digits: 9 mini-batches of
    unequal weight sums; iris: one batch)."""
    theirs, mine = _weighted_fits(name, solver)
    assert mine.n_iter_ == theirs.n_iter_ == 10
    for a, b in zip(mine.coefs_ + mine.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert np.linalg.norm(a - b) <= TRAJECTORY_RTOL * np.linalg.norm(b)
    if solver == "lbfgs":          # no loss_curve_: the final objective
        assert mine.loss_ == pytest.approx(theirs.loss_, rel=TRAJECTORY_RTOL)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name, solver", [
    pytest.param(name, solver, marks=_EPOCH_LOSS_OF_BATCH_MEANS if name == "digits" else ())
    for name in ("iris", "digits") for solver in ("adam", "sgd")])
def test_weighted_loss_curve_matches_scikit_learn(name, solver):
    theirs, mine = _weighted_fits(name, solver)
    np.testing.assert_allclose(mine.loss_curve_, theirs.loss_curve_, rtol=TRAJECTORY_RTOL)


PARITY = {
    # name: (loader, parameters, tolerance on the mean score)
    "digits": (lambda: load_digits(return_X_y=True), dict(max_iter=40), 0.01),
    "breast_cancer": (lambda: load_breast_cancer(return_X_y=True), dict(max_iter=100), 0.01),
    "iris": (lambda: load_iris(return_X_y=True),
             dict(max_iter=300, learning_rate_init=0.01), 0.02),
    "wine": (lambda: load_wine(return_X_y=True),
             dict(max_iter=200, learning_rate_init=0.01), 0.02),
    "friedman1": (lambda: make_friedman1(n_samples=1000, noise=1.0, random_state=0),
                  dict(max_iter=200, learning_rate_init=0.01), 0.01),
}


def _mean_cv_score(module, name, X, y, params) -> float:
    regression = name == "friedman1"
    scores = []
    for seed in range(3):
        cls = module.MLPRegressor if regression else module.MLPClassifier
        folds = (KFold if regression else StratifiedKFold)(5, shuffle=True, random_state=seed)
        pipeline = make_pipeline(StandardScaler(), cls(random_state=seed, **params))
        scores.append(cross_val_score(pipeline, X, y, cv=folds).mean())
    return float(np.mean(scores))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(PARITY))
def test_cross_validated_score_matches_scikit_learn(name):
    loader, params, tolerance = PARITY[name]
    X, y = loader()
    if name == "friedman1":
        y = (y - y.mean()) / y.std()      # both train on a standardized target
    theirs = _mean_cv_score(reference, name, X, y, params)
    mine = _mean_cv_score(ours, name, X, y, {**params, "n_threads": 1})
    assert theirs > (0.9 if name != "friedman1" else 0.85)    # both really learned
    assert abs(mine - theirs) <= tolerance, f"{name}: ours {mine:.4f}, scikit-learn {theirs:.4f}"
