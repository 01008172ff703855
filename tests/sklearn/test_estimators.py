"""fastmlp.sklearn's estimators: parameters, fitted attributes, targets, partial_fit,
warm_start, sample weights, our extras, and the scikit-learn tools they must work in
(Pipeline, GridSearchCV, RandomizedSearchCV, cross_val_score, clone, pickle)."""
import pickle

import numpy as np
import pytest
from scipy import sparse
from sklearn.base import clone
from sklearn.datasets import load_digits, load_iris, make_multilabel_classification, \
    make_regression
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_val_score, \
    train_test_split
from sklearn.neural_network import _multilayer_perceptron as sklearn_mlp
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastmlp
import fastmlp.sklearn.stopping
from fastmlp.nn.layers import Dropout
from fastmlp.optim.optimizers import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp
from fastmlp.sklearn import MLPClassifier, MLPRegressor

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)
X_REG, Y_REG = make_regression(150, 4, n_targets=2, noise=0.5, random_state=0)
Y_REG = Y_REG / Y_REG.std()
QUICK = dict(hidden_layer_sizes=(16,), max_iter=30, random_state=0, batch_size=32,
             learning_rate_init=0.01)
converging = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def quick_classifier(**params):
    return MLPClassifier(**{**QUICK, **params})


def quick_regressor(**params):
    return MLPRegressor(**{**QUICK, **params})


# ----------------------------------------------------------------- validation
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize("param, value, error", [
    ("solver", "newton", ValueError),
    ("alpha", -1.0, ValueError), ("hidden_layer_sizes", 0, ValueError),
    ("hidden_layer_sizes", (8, 0), ValueError), ("hidden_layer_sizes", (8, 2.5), TypeError),
    ("activation", "sigmoid", ValueError), ("batch_size", 0, ValueError),
    ("learning_rate", "cosine", ValueError), ("learning_rate_init", 0.0, ValueError),
    ("max_iter", 0, ValueError), ("momentum", 1.5, ValueError),
    ("validation_fraction", 1.0, ValueError), ("n_iter_no_change", 0, ValueError),
    ("epsilon", 0.0, ValueError), ("dropout", 1.0, ValueError),
    ("backend", "gpu", ValueError), ("dtype", "float16", ValueError),
    ("n_threads", 0, ValueError), ("shuffle", "yes", ValueError),
])
def test_bad_parameter_fails_at_fit_naming_it(cls, param, value, error):
    estimator = cls(**{param: value})               # __init__ only stores
    assert estimator.get_params()[param] == value
    with pytest.raises(error, match=param):
        estimator.fit(X_IRIS[:20], Y_IRIS[:20])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_poisson_regressor_fits_counts():
    """loss="poisson": a log link (out_activation_ "exp"), positive predictions, a
    reasonable R^2 on Poisson counts; negative targets are refused naming y."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 5))
    means = np.exp(X @ np.array([0.6, -0.4, 0.3, 0.0, 0.2]) + 0.5)
    y = rng.poisson(means).astype(float)
    model = MLPRegressor(loss="poisson", hidden_layer_sizes=(16,), max_iter=60,
                         random_state=0).fit(X, y)
    assert model.out_activation_ == "exp" and model.model_.loss == "poisson"
    predicted = model.predict(X)
    assert predicted.shape == (600,) and (predicted > 0).all()
    assert model.score(X, y) > 0.4             # the noise-free means score about 0.6
    assert r2_score(y, means) - model.score(X, y) < 0.1
    with pytest.raises(ValueError, match="y must be >= 0 for poisson"):
        MLPRegressor(loss="poisson", max_iter=2).fit(X, y - 1)


def test_parameters_match_scikit_learn_names_and_defaults():
    from sklearn import neural_network
    for ours, theirs in [(MLPClassifier, neural_network.MLPClassifier),
                         (MLPRegressor, neural_network.MLPRegressor)]:
        mine, reference = ours().get_params(), theirs().get_params()
        extras = {"dropout": 0.0, "backend": "native", "dtype": None, "n_threads": None,
                  "precision": None}
        if ours is MLPClassifier:
            extras["class_weight"] = None
        assert mine == {**reference, **extras}


def test_unfitted_estimator_raises_not_fitted():
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X_IRIS)


@converging
def test_sparse_input_fits_and_predicts_as_dense():
    """CSR and CSC X: the same fit as the dense X (float64: the products sum in the
    same order up to the GEMM's blocking, so to rounding), the same predictions."""
    dense = quick_classifier(dtype="float64").fit(X_IRIS, Y_IRIS)
    for convert in (sparse.csr_matrix, sparse.csc_matrix):
        clf = quick_classifier(dtype="float64").fit(convert(X_IRIS), Y_IRIS)
        for a, b in zip(clf.coefs_, dense.coefs_):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        np.testing.assert_array_equal(clf.predict(convert(X_IRIS)), dense.predict(X_IRIS))
        assert clf.score(convert(X_IRIS), Y_IRIS) == dense.score(X_IRIS, Y_IRIS)


@converging
@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_sparse_partial_fit_validation_and_regression(solver):
    """partial_fit, X_val, early stopping's hold-out and the regressor take sparse X as
    they take dense X (float64: the same fits to rounding)."""
    X = sparse.csr_matrix(X_IRIS)
    kw = dict(solver=solver, dtype="float64")
    if solver != "lbfgs":
        dense = quick_classifier(**kw)
        dense.partial_fit(X_IRIS, Y_IRIS, classes=np.unique(Y_IRIS))
        ours = quick_classifier(**kw)
        ours.partial_fit(X, Y_IRIS, classes=np.unique(Y_IRIS))
        ours.partial_fit(X.tocsc(), Y_IRIS)
        dense.partial_fit(X_IRIS, Y_IRIS)
        np.testing.assert_allclose(ours.predict_proba(X), dense.predict_proba(X_IRIS),
                                   rtol=1e-9, atol=1e-12)
        rows = np.random.default_rng(0).permutation(len(Y_IRIS))
        fit, val = rows[:100], rows[100:]
        with_val = quick_classifier(**kw, early_stopping=True).fit(
            X[fit], Y_IRIS[fit], X_val=X[val], y_val=Y_IRIS[val])
        dense_val = quick_classifier(**kw, early_stopping=True).fit(
            X_IRIS[fit], Y_IRIS[fit], X_val=X_IRIS[val], y_val=Y_IRIS[val])
        np.testing.assert_allclose(with_val.validation_loss_curve_,
                                   dense_val.validation_loss_curve_, rtol=1e-9)
        held_out = quick_classifier(**kw, early_stopping=True).fit(X, Y_IRIS)
        assert held_out.validation_scores_ == quick_classifier(
            **kw, early_stopping=True).fit(X_IRIS, Y_IRIS).validation_scores_
    target = X_IRIS[:, 0]
    regressor = quick_regressor(**kw).fit(X, target)
    np.testing.assert_allclose(regressor.predict(X),
                               quick_regressor(**kw).fit(X_IRIS, target).predict(X_IRIS),
                               rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------ fitted attributes
@converging
def test_classifier_attributes_in_scikit_learn_layout():
    clf = quick_classifier(hidden_layer_sizes=(16, 8)).fit(X_IRIS, Y_IRIS)
    assert [c.shape for c in clf.coefs_] == [(4, 16), (16, 8), (8, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (8,), (3,)]
    weights = clf.model_.get_weights()
    for coef, W in zip(clf.coefs_, weights[0::2]):
        np.testing.assert_array_equal(coef, W.T)
    assert clf.coefs_[0].dtype == np.float64         # float64 input: scikit-learn's rule
    assert isinstance(clf.model_, fastmlp.Sequential)
    assert (clf.n_layers_, clf.n_outputs_, clf.out_activation_) == (4, 3, "softmax")
    assert clf.n_features_in_ == 4
    assert clf.n_iter_ == 30 == len(clf.loss_curve_)
    assert clf.t_ == 30 * len(X_IRIS)
    assert clf.loss_ == clf.loss_curve_[-1]
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert not hasattr(clf, "feature_names_in_")


@converging
def test_string_labels_binary_one_logistic_output_two_proba_columns():
    y = np.where(Y_IRIS == 0, "setosa", "other")
    clf = quick_classifier().fit(X_IRIS, y)
    assert list(clf.classes_) == ["other", "setosa"]
    assert (clf.n_outputs_, clf.out_activation_, clf.model_.loss) == \
        (1, "logistic", "binary_cross_entropy")
    proba = clf.predict_proba(X_IRIS)
    assert proba.shape == (150, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(X_IRIS), clf.classes_[proba.argmax(axis=1)])
    np.testing.assert_allclose(clf.predict_log_proba(X_IRIS), np.log(proba), rtol=1e-6)
    assert clf.score(X_IRIS, y) > 0.95


@converging
def test_negative_integer_labels_multiclass():
    y = Y_IRIS * 3 - 5                                   # -5, -2, 1
    clf = quick_classifier().fit(X_IRIS, y)
    np.testing.assert_array_equal(clf.classes_, [-5, -2, 1])
    assert set(clf.predict(X_IRIS)) <= {-5, -2, 1}
    assert clf.predict_proba(X_IRIS).shape == (150, 3)
    assert clf.score(X_IRIS, y) > 0.9


@converging
def test_multilabel_indicator_targets():
    X, Y = make_multilabel_classification(200, 8, n_classes=4, random_state=0)
    clf = quick_classifier(max_iter=60).fit(StandardScaler().fit_transform(X), Y)
    assert (clf.n_outputs_, clf.out_activation_) == (4, "logistic")
    predicted = clf.predict(StandardScaler().fit_transform(X))
    assert predicted.shape == (200, 4) and set(np.unique(predicted)) <= {0, 1}
    assert clf.predict_proba(X).shape == (200, 4)


@converging
def test_regressor_1d_and_2d_targets():
    two = quick_regressor().fit(X_REG, Y_REG)
    assert two.predict(X_REG).shape == (150, 2)
    assert (two.n_outputs_, two.out_activation_, two.model_.loss) == (2, "identity", "mse")
    one = quick_regressor().fit(X_REG, Y_REG[:, 0])
    assert one.predict(X_REG).shape == (150,)
    assert one.score(X_REG, Y_REG[:, 0]) > 0.9


@converging
def test_regressor_loss_is_half_squared_error_plus_penalty():
    """loss_ of an epoch is scikit-learn's ((y - y_pred)**2).mean() / 2 + alpha/(2m) ΣW²;
    with one full batch and SGD at a tiny rate it equals that of the weights it started
    from, up to the rate's effect."""
    reg = MLPRegressor(hidden_layer_sizes=(8,), solver="sgd", momentum=0.0,
                       learning_rate_init=1e-9, batch_size=150, max_iter=1, alpha=0.5,
                       random_state=0, dtype="float64").fit(X_REG, Y_REG)
    residual = reg.predict(X_REG) - Y_REG
    penalty = 0.5 * sum((c ** 2).sum() for c in reg.coefs_) / 150
    assert reg.loss_ == pytest.approx((residual ** 2).mean() / 2 + 0.5 * penalty, rel=1e-6)


# ------------------------------------------------------------- stopping rules
def test_convergence_warning_at_max_iter_only():
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(5\\)"):
        quick_classifier(max_iter=5).fit(X_IRIS, Y_IRIS)
    converged = quick_classifier(max_iter=200, tol=10.0, n_iter_no_change=2)
    converged.fit(X_IRIS, Y_IRIS)                        # no warning (filterwarnings=error)
    # epoch 1 sets best_loss_; epochs 2-4 miss it by tol: count 3 > n_iter_no_change
    assert converged.n_iter_ == 4


@converging
def test_early_stopping_restores_best_weights_and_reports_scores():
    clf = quick_classifier(early_stopping=True, n_iter_no_change=3, max_iter=100)
    clf.fit(X_IRIS, Y_IRIS)
    assert clf.best_loss_ is None
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    best_epoch = int(np.argmax(clf.validation_scores_))
    assert clf.n_iter_ <= best_epoch + 1 + 3 + 1


def _targets(kind):
    X_digits, y_digits = load_digits(return_X_y=True)
    return {"iris": (X_IRIS, Y_IRIS), "digits": (X_digits / 16, y_digits),
            "binary": (X_IRIS, Y_IRIS == 1),
            "multilabel": (X_IRIS, np.stack([Y_IRIS == 1, X_IRIS[:, 0] > 0], axis=1))}[kind]


@converging
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["iris", "digits", "binary", "multilabel"])
def test_early_stopping_holds_out_scikit_learns_rows(kind, weighted, monkeypatch):
    """The same random_state holds out the same rows as scikit-learn, in the same order:
    stratified by the binarized target for two classes only (scikit-learn 1.9 tests the
    binarized width), multiclass and multilabel hold-outs drawn plainly."""
    X, y = _targets(kind)
    w = np.random.default_rng(0).uniform(0.5, 2, len(X)) if weighted else None
    held_out = {}
    for name, module in [("theirs", sklearn_mlp), ("ours", fastmlp.sklearn.stopping)]:
        def spy(*arrays, _name=name, **kwargs):
            parts = train_test_split(*arrays, **kwargs)
            held_out[_name] = parts[1]
            return parts
        monkeypatch.setattr(module, "train_test_split", spy)
    for cls in (sklearn_mlp.MLPClassifier, MLPClassifier):
        cls(early_stopping=True, hidden_layer_sizes=(5,), max_iter=1,
            random_state=0).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(held_out["ours"], held_out["theirs"])


@converging
def test_adaptive_rate_divides_by_five_on_plateau():
    clf = quick_classifier(solver="sgd", learning_rate="adaptive", tol=10.0,
                           n_iter_no_change=1, max_iter=6)
    clf.fit(X_IRIS, Y_IRIS)
    # epoch 1 sets best_loss_; the count passes 1 at epochs 3 and 5 (reset after each
    # drop): the rate drops twice and training goes on.
    assert clf.n_iter_ == 6
    assert clf.model_.optimizer.scale == pytest.approx(1 / 25)


def test_adaptive_rate_stops_below_1e6():
    clf = quick_classifier(solver="sgd", learning_rate="adaptive", learning_rate_init=2e-6,
                           tol=10.0, n_iter_no_change=1, max_iter=50)
    clf.fit(X_IRIS, Y_IRIS)     # epoch 3: 2e-6 -> 4e-7; epoch 5: 4e-7 <= 1e-6, stop
    assert clf.n_iter_ == 5


DIVERGING = dict(hidden_layer_sizes=(20,), activation="identity", solver="sgd",
                 learning_rate_init=1.0, max_iter=12, n_iter_no_change=3, random_state=0)
NON_FINITE = "Solver produced non-finite parameter weights. The input data may contain"


@converging
@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # scikit-learn's overflows
@pytest.mark.parametrize("how", ["fit", "partial_fit"])
def test_divergence_without_early_stopping_raises_scikit_learns_error(how):
    """scikit-learn trains on with NaN weights (NaN resets its no-improvement count), then
    refuses them; ours stops at the diverging step with scikit-learn's error alone (not
    fastmlp's DivergenceError nor its rate in fastmlp's units), the weights finite."""
    X, y = load_iris(return_X_y=True)
    for cls in (sklearn_mlp.MLPRegressor, MLPRegressor):
        reg = cls(**DIVERGING, batch_size=10)
        with pytest.raises(ValueError, match=NON_FINITE) as raised:
            getattr(reg, how)(X * 1e60, y)
        assert type(raised.value) is ValueError and raised.value.__context__ is None
    assert all(np.isfinite(w).all() for w in [*reg.coefs_, *reg.intercepts_])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_with_early_stopping_runs_out_like_scikit_learn():
    """scikit-learn's fit completes: every epoch to max_iter, NaN losses and validation
    scores from the diverged one on (NaN never counts as no improvement), the best
    weights kept, its ConvergenceWarning."""
    X, y = load_iris(return_X_y=True)
    fits = []
    for cls in (sklearn_mlp.MLPRegressor, MLPRegressor):
        with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
            fits.append(cls(**DIVERGING, early_stopping=True).fit(X, y))
    for reg in fits:
        assert reg.n_iter_ == len(reg.validation_scores_) == len(reg.loss_curve_) == 12
        assert reg.t_ == 12 * 135
        assert np.isnan(reg.validation_scores_[-1]) and np.isnan(reg.loss_curve_[-1])
        assert type(reg.validation_scores_[-1]) is float
        assert reg.best_validation_score_ == np.nanmax(reg.validation_scores_)
        assert all(np.isfinite(w).all() for w in [*reg.coefs_, *reg.intercepts_])
    diverged = [int(np.argmax(np.isnan(reg.validation_scores_))) for reg in fits]
    assert diverged[1] <= diverged[0]       # ours stops at the first non-finite loss


# ---------------------------------------------------- partial_fit, warm_start
def test_partial_fit_needs_classes_first_then_continues():
    clf = quick_classifier()
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X_IRIS, Y_IRIS)
    clf.partial_fit(X_IRIS[Y_IRIS < 2], Y_IRIS[Y_IRIS < 2], classes=[0, 1, 2])
    assert clf.n_outputs_ == 3 and clf.n_iter_ == 1
    optimizer = clf.model_.optimizer
    for _ in range(3):
        clf.partial_fit(X_IRIS, Y_IRIS)
    assert clf.model_.optimizer is optimizer
    assert optimizer.iterations == 4 + 3 * 5          # steps of 32 rows: 100, then 150
    assert clf.t_ == 100 + 3 * 150 and len(clf.loss_curve_) == 4
    with pytest.raises(ValueError, match="not in `self.classes_`"):
        clf.partial_fit(X_IRIS, Y_IRIS + 1)
    with pytest.raises(ValueError, match="classes="):
        clf.partial_fit(X_IRIS, Y_IRIS, classes=[0, 1])


def test_partial_fit_refuses_early_stopping():
    with pytest.raises(ValueError, match="early_stopping"):
        quick_regressor(early_stopping=True).partial_fit(X_REG, Y_REG)


@converging
def test_warm_start_continues_the_curve_and_checks_the_network():
    reg = quick_regressor(warm_start=True, max_iter=10).fit(X_REG, Y_REG)
    model, curve = reg.model_, list(reg.loss_curve_)
    reg.fit(X_REG, Y_REG)
    assert reg.model_ is model and reg.n_iter_ == 10
    assert reg.loss_curve_[:10] == curve and len(reg.loss_curve_) == 20
    assert reg.loss_curve_[10] < curve[0]
    reg.set_params(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="layer units changed"):
        reg.fit(X_REG, Y_REG)
    cold = clone(reg).set_params(warm_start=False, hidden_layer_sizes=(16,)).fit(X_REG, Y_REG)
    assert len(cold.loss_curve_) == 10


# ------------------------------------------------------------ sample weights
@converging
def test_sample_weights_zero_equals_dropping_rows():
    weights = np.ones(150)
    weights[::3] = 0
    keep = weights > 0
    params = dict(batch_size="auto", shuffle=False, dtype="float64", max_iter=10)
    weighted = quick_classifier(**params).fit(X_IRIS, Y_IRIS, sample_weight=weights)
    dropped = quick_classifier(**params).fit(X_IRIS[keep], Y_IRIS[keep])
    np.testing.assert_allclose(weighted.loss_curve_, dropped.loss_curve_, rtol=1e-12)
    unweighted = quick_classifier(**params).fit(X_IRIS, Y_IRIS)
    assert not np.allclose(weighted.loss_curve_, unweighted.loss_curve_)


def test_sample_weight_checked():
    with pytest.raises(ValueError, match="sample_weight"):
        quick_regressor().fit(X_REG, Y_REG, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight must be >= 0"):
        quick_regressor().fit(X_REG, Y_REG, sample_weight=-np.ones(150))


# ---------------------------------------------------------------- our extras
@converging
@pytest.mark.parametrize("solver, kind, rate", [
    ("sgd", Nesterov, 0.01), ("momentum", Momentum, 0.01), ("nesterov", Nesterov, 0.01),
    ("adam", Adam, 0.01), ("adagrad", AdaGrad, 0.1), ("rmsprop", RMSProp, 0.01),
    ("adamw", AdamW, 0.01)])
def test_every_solver_trains(solver, kind, rate):
    clf = quick_classifier(solver=solver, learning_rate_init=rate).fit(X_IRIS, Y_IRIS)
    assert type(clf.model_.optimizer) is kind
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.score(X_IRIS, Y_IRIS) > 0.8


@converging
def test_sgd_without_momentum_is_plain_sgd_and_invscaling_is_power_decay():
    clf = quick_classifier(solver="sgd", momentum=0.0, learning_rate="invscaling").fit(
        X_IRIS, Y_IRIS)
    optimizer = clf.model_.optimizer
    assert type(optimizer) is SGD
    # epoch e trains at lr0 / (n (e - 1) + 1) ** 0.5 (scikit-learn's t_ before the epoch)
    assert optimizer.current_learning_rate == pytest.approx(0.01 / (150 * 30 + 1) ** 0.5)


@converging
def test_dropout_layers_and_coefs():
    clf = quick_classifier(hidden_layer_sizes=(16, 8), dropout=0.25).fit(X_IRIS, Y_IRIS)
    dropouts = [layer for layer in clf.model_.layers if isinstance(layer, Dropout)]
    assert [d.rate for d in dropouts] == [0.25, 0.25]
    assert [c.shape for c in clf.coefs_] == [(4, 16), (16, 8), (8, 3)]
    again = quick_classifier(hidden_layer_sizes=(16, 8), dropout=0.25).fit(X_IRIS, Y_IRIS)
    np.testing.assert_array_equal(again.coefs_[0], clf.coefs_[0])
    plain = quick_classifier(hidden_layer_sizes=(16, 8)).fit(X_IRIS, Y_IRIS)
    assert not np.array_equal(plain.coefs_[0], clf.coefs_[0])


@converging
def test_backends_agree_in_float64():
    native = quick_regressor(dtype="float64").fit(X_REG, Y_REG)
    numpy = quick_regressor(dtype="float64", backend="numpy").fit(X_REG, Y_REG)
    assert native.coefs_[0].dtype == np.float64
    np.testing.assert_allclose(native.loss_curve_, numpy.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(native.predict(X_REG), numpy.predict(X_REG), rtol=1e-9)


@converging
def test_thread_count_does_not_change_results():
    one = quick_classifier(n_threads=1).fit(X_IRIS, Y_IRIS)
    two = quick_classifier(n_threads=2).fit(X_IRIS, Y_IRIS)
    for a, b in zip(one.coefs_, two.coefs_):
        np.testing.assert_array_equal(a, b)


@converging
def test_verbose_prints_scikit_learn_lines(capsys):
    quick_classifier(max_iter=2, verbose=True).fit(X_IRIS, Y_IRIS)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["Iteration 1", "Iteration 2"]


@converging
def test_feature_names_from_a_dataframe():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(X_IRIS, columns=["a", "b", "c", "d"])
    clf = quick_classifier().fit(frame, Y_IRIS)
    np.testing.assert_array_equal(clf.feature_names_in_, ["a", "b", "c", "d"])


# ------------------------------------------------------ the scikit-learn tools
@converging
def test_pipeline_and_cross_val_score():
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(**QUICK))
    scores = cross_val_score(pipeline, *load_iris(return_X_y=True), cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.85


@converging
def test_grid_search_sets_our_parameters():
    search = GridSearchCV(quick_classifier(), {"alpha": [1e-4, 1e-2], "solver": ["adam", "sgd"]},
                          cv=3).fit(X_IRIS, Y_IRIS)
    assert set(search.best_params_) == {"alpha", "solver"}
    assert search.best_estimator_.solver == search.best_params_["solver"]
    assert search.best_score_ > 0.8


@converging
def test_randomized_search():
    search = RandomizedSearchCV(quick_regressor(), {"hidden_layer_sizes": [(8,), (16,)],
                                                    "learning_rate_init": [0.003, 0.01]},
                                n_iter=3, cv=3, random_state=0).fit(X_REG, Y_REG)
    assert search.best_score_ > 0.8


@converging
def test_clone_copies_parameters_not_fit():
    clf = quick_classifier(dropout=0.1, n_threads=1).fit(X_IRIS, Y_IRIS)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert not hasattr(copy, "model_")


@converging
@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_pickle_round_trip_and_training_continues(backend):
    clf = quick_classifier(backend=backend).fit(X_IRIS, Y_IRIS)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X_IRIS), clf.predict_proba(X_IRIS))
    before = clf.coefs_[0].copy()    # the live array: partial_fit updates it in place
    clf.partial_fit(X_IRIS, Y_IRIS)
    restored.partial_fit(X_IRIS, Y_IRIS)
    assert not np.array_equal(clf.coefs_[0], before)
    np.testing.assert_array_equal(restored.coefs_[0], clf.coefs_[0])
    np.testing.assert_array_equal(restored.predict_proba(X_IRIS), clf.predict_proba(X_IRIS))


@pytest.mark.parametrize("early_stopping", [False, True])
def test_an_estimator_pickled_before_the_subpackages_loads_and_trains_on(early_stopping):
    """A pickle written under the flat package names ``fastmlp.estimators`` and keeps the
    stopping rule's state as ``_no_improvement_count`` and ``_best_weights``: it loads,
    predicts the same and trains on as the estimator it was."""
    X, y = load_iris(return_X_y=True)
    est = MLPClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0,
                        early_stopping=early_stopping, n_iter_no_change=50)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    old = pickle.loads(pickle.dumps(est))
    improvement = old.__dict__.pop("_improvement")
    old._no_improvement_count, old._best_weights = improvement.count, improvement.best_weights
    flat = pickle.dumps(old, protocol=0).replace(b"fastmlp.sklearn.estimators\n",
                                                 b"fastmlp.estimators\n")
    assert b"fastmlp.estimators\n" in flat and b"_no_improvement_count" in flat
    loaded = pickle.loads(flat)
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    for model in (est, loaded):       # a warm-start fit carries the rule's state on
        model.set_params(warm_start=True)
        with pytest.warns(ConvergenceWarning):
            model.fit(X, y)
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    assert loaded._improvement.count == est._improvement.count


@pytest.mark.parametrize("class_weight", [{0: 3.0, 2: 0.5}, "balanced"])
def test_class_weight_is_sample_weight_by_class(class_weight):
    """class_weight multiplies each row's weight by its class's (scikit-learn's
    compute_sample_weight): the same fit, bit for bit, as those row weights passed in."""
    from sklearn.utils.class_weight import compute_sample_weight
    X, y = X_IRIS[20:140], Y_IRIS[20:140]           # unequal class counts
    given = np.linspace(0.5, 1.5, len(y))
    kwargs = dict(hidden_layer_sizes=(5,), max_iter=3, random_state=0, shuffle=False)
    with pytest.warns(ConvergenceWarning):
        weighted = MLPClassifier(class_weight=class_weight, **kwargs).fit(X, y, sample_weight=given)
    with pytest.warns(ConvergenceWarning):
        plain = MLPClassifier(**kwargs).fit(
            X, y, sample_weight=given * compute_sample_weight(class_weight, y))
    with pytest.warns(ConvergenceWarning):
        unweighted = MLPClassifier(**kwargs).fit(X, y, sample_weight=given)
    np.testing.assert_array_equal(weighted.predict_proba(X), plain.predict_proba(X))
    assert not np.array_equal(weighted.predict_proba(X), unweighted.predict_proba(X))


def test_class_weight_balanced_is_refused_by_partial_fit_and_a_dict_works():
    with pytest.raises(ValueError, match="class_weight='balanced'.*partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X_IRIS, Y_IRIS, classes=[0, 1, 2])
    est = MLPClassifier(class_weight={1: 2.0}, random_state=0).partial_fit(
        X_IRIS, Y_IRIS, classes=[0, 1, 2])
    assert est.predict(X_IRIS).shape == (150,)
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="heavy").fit(X_IRIS, Y_IRIS)


@pytest.mark.parametrize("y", [
    np.array([3, 1, 3, 2, 1]), np.array([0, 1, 1, 0]), np.array([7, 7, 7]),
    np.array(["b", "a", "c", "a"]), np.array(["yes", "no", "no"], dtype=object),
    np.array([True, False, True]), np.array([1.0, -2.0, 1.0, 3.0]),
    np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0]]),
])
def test_binarize_gives_the_label_binarizers_rows(y):
    """heldout.binarize computes binary and multiclass targets itself: the same values
    and shape as LabelBinarizer.transform, on the fitted labels and on a subset of them."""
    from sklearn.preprocessing import LabelBinarizer
    from fastmlp.sklearn.heldout import binarize
    binarizer = LabelBinarizer().fit(y)
    for labels in (y, y[:2]):
        expected = binarizer.transform(labels)
        got = binarize(binarizer, labels)
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)


def test_sparse_x_val_is_converted_once_per_fit(monkeypatch):
    """A sparse X_val becomes CSR rows once per fit, not at each epoch's validation."""
    import fastmlp._validation as validation
    from fastmlp._sparse import CsrRows
    calls = []
    convert = validation.as_csr_rows
    def counted(X, name, *args):       # CsrRows pass through: checked already
        if type(X) is not CsrRows:
            calls.append(name)
        return convert(X, name, *args)
    monkeypatch.setattr(validation, "as_csr_rows", counted)
    rows = np.random.default_rng(0).permutation(len(Y_IRIS))
    X, y = sparse.csr_matrix(X_IRIS[rows]), Y_IRIS[rows]
    clf = quick_classifier(max_iter=6, tol=0, n_iter_no_change=99, early_stopping=True)
    with pytest.warns(ConvergenceWarning):
        clf.fit(X[:100], y[:100], X_val=X[100:], y_val=y[100:])
    assert len(clf.validation_loss_curve_) == 6
    assert calls == ["X", "X_val"]
