"""What the estimators offer beyond scikit-learn's MLP: fit's validation data (X_val, y_val,
sample_weight_val, validation_loss_curve_) and fastmlp's other activations; and that
fit's shortcuts (the reseeded RandomState, the prepared training data) change nothing."""
import inspect

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_multilabel_classification, make_regression
from sklearn.metrics import accuracy_score
from sklearn.neural_network import _multilayer_perceptron as sklearn_mlp
from sklearn.preprocessing import LabelBinarizer, StandardScaler

from fastmlp import Dense, Sequential
from fastmlp.sklearn import MLPClassifier, MLPRegressor
from fastmlp.sklearn.network import ESTIMATOR_ACTIVATIONS, fit_random_state
from fastmlp.train.arguments import PreparedData

PREPARE_DATA = Sequential.prepare_data

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)
X_REG, Y_REG = make_regression(150, 4, n_targets=2, noise=0.5, random_state=0)
Y_REG = Y_REG / Y_REG.std()
QUICK = dict(hidden_layer_sizes=(16,), max_iter=12, random_state=0, batch_size=32,
             learning_rate_init=0.01, dtype="float64")
converging = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
WEIGHTS_VAL = np.random.default_rng(0).uniform(0.5, 2.0, 75)


def _iris_halves():
    """(X_train, y_train, X_val, y_val): even rows to train on, odd rows to validate."""
    return X_IRIS[::2], Y_IRIS[::2], X_IRIS[1::2], Y_IRIS[1::2]


# -------------------------------------------------------------- validation data
def _sklearn_loss(estimator, X_val, y_val, weights):
    """scikit-learn's own data loss (its LOSS_FUNCTIONS) of the fitted estimator."""
    if isinstance(estimator, MLPRegressor):
        return sklearn_mlp.LOSS_FUNCTIONS["squared_error"](y_val, estimator.predict(X_val),
                                                           weights)
    Y = LabelBinarizer().fit(estimator.classes_).transform(y_val)
    proba = estimator.predict_proba(X_val)
    name = "log_loss" if Y.shape[1] > 1 else "binary_log_loss"
    return sklearn_mlp.LOSS_FUNCTIONS[name](Y, proba if Y.shape[1] > 1 else proba[:, 1:],
                                            weights)


@converging
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("kind", ["multiclass", "binary", "regression"])
def test_validation_loss_curve_is_scikit_learns_weighted_data_loss(kind, weighted):
    """One entry per epoch, np.float64; the last is scikit-learn's loss function (no
    penalty) of the final weights on (X_val, y_val) weighted by sample_weight_val."""
    X, y, X_val, y_val = _iris_halves()
    if kind == "binary":
        y, y_val = y == 1, y_val == 1
    cls = MLPClassifier
    if kind == "regression":
        cls, X, y, X_val, y_val = MLPRegressor, X_REG[::3], Y_REG[::3], X_REG[1::3], Y_REG[1::3]
    weights = WEIGHTS_VAL[:len(X_val)] if weighted else None
    est = cls(**QUICK, alpha=0.1).fit(X, y, X_val=X_val, y_val=y_val,
                                      sample_weight_val=weights)
    curve = est.validation_loss_curve_
    assert len(curve) == est.n_iter_ == len(est.loss_curve_) == 12
    assert all(type(value) is np.float64 for value in curve)
    assert curve[-1] == pytest.approx(_sklearn_loss(est, X_val, y_val, weights), rel=1e-9)
    assert est.validation_scores_ is None and est.best_loss_ is not None


@converging
def test_given_validation_replaces_the_hold_out_for_early_stopping():
    """early_stopping with X_val: all of X trains (the same curve as without early
    stopping, up to the stop), the scores are X_val's accuracy (weighted), the best
    weights are restored."""
    X, y, X_val, y_val = _iris_halves()
    params = dict(QUICK, max_iter=60, n_iter_no_change=3, tol=0.05)
    given = dict(X_val=X_val, y_val=y_val, sample_weight_val=WEIGHTS_VAL)
    plain = MLPClassifier(**params).fit(X, y, **given)
    early = MLPClassifier(**params, early_stopping=True).fit(X, y, **given)
    assert early.n_iter_ < 60
    np.testing.assert_array_equal(early.loss_curve_, plain.loss_curve_[:early.n_iter_])
    np.testing.assert_array_equal(early.validation_loss_curve_,
                                  plain.validation_loss_curve_[:early.n_iter_])
    assert len(early.validation_scores_) == early.n_iter_
    assert early.best_validation_score_ == max(early.validation_scores_)
    assert accuracy_score(y_val, early.predict(X_val), sample_weight=WEIGHTS_VAL) == \
        early.best_validation_score_


@converging
def test_early_stopping_hold_out_records_its_validation_loss():
    est = MLPClassifier(**QUICK, early_stopping=True).fit(X_IRIS, Y_IRIS)
    assert len(est.validation_loss_curve_) == est.n_iter_
    plain = MLPClassifier(**QUICK).fit(X_IRIS, Y_IRIS)
    assert plain.validation_loss_curve_ is None


@converging
def test_warm_start_continues_the_validation_loss_curve():
    X, y, X_val, y_val = _iris_halves()
    est = MLPClassifier(**QUICK, warm_start=True).fit(X, y, X_val=X_val, y_val=y_val)
    est.fit(X, y, X_val=X_val, y_val=y_val)
    assert len(est.validation_loss_curve_) == len(est.loss_curve_) == 24


def test_partial_fit_takes_no_validation_data():
    for cls in (MLPClassifier, MLPRegressor):
        assert "X_val" not in inspect.signature(cls.partial_fit).parameters
        assert list(inspect.signature(cls.fit).parameters)[-3:] == \
            ["X_val", "y_val", "sample_weight_val"]


def _bad_validation_cases():
    X, y, X_val, y_val = _iris_halves()
    nan = X_val.copy()
    nan[3, 1] = np.nan
    return {
        "X_val alone": (dict(X_val=X_val), "X_val is provided, but y_val"),
        "y_val alone": (dict(y_val=y_val), "y_val is provided, but X_val"),
        "weights alone": (dict(sample_weight_val=np.ones(75)), "sample_weight_val is given"),
        "features": (dict(X_val=X_val[:, :3], y_val=y_val), r"X_val must have the shape "
                     r"\(n_val, 4\).*\(75, 3\)"),
        "1-D": (dict(X_val=X_val[:, 0], y_val=y_val), r"X_val must .*got shape \(75,\)"),
        "NaN": (dict(X_val=nan, y_val=y_val), "X_val: .*NaN"),
        "rows": (dict(X_val=X_val, y_val=y_val[:70]), r"X_val shape \(75, 4\) and y_val "
                 r"shape \(70,\)"),
        "label": (dict(X_val=X_val, y_val=np.where(y_val == 2, 7, y_val)),
                  r"y_val has labels \[7\] not in classes_"),
        "weights": (dict(X_val=X_val, y_val=y_val, sample_weight_val=np.ones(74)),
                    r"sample_weight_val must have one weight per sample, shape \(75,\)"),
    }


@pytest.mark.parametrize("case", sorted(_bad_validation_cases()))
def test_bad_validation_data_is_refused_naming_it(case):
    X, y = X_IRIS[::2], Y_IRIS[::2]
    kwargs, message = _bad_validation_cases()[case]
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**QUICK).fit(X, y, **kwargs)


def test_bad_validation_targets_of_multilabel_and_regression():
    X, Y = make_multilabel_classification(60, 5, n_classes=3, random_state=0)
    with pytest.raises(ValueError, match=r"y_val must be a 0/1 indicator matrix of shape "
                                         r"\(n_val, 3\).*\(20, 2\)"):
        MLPClassifier(**QUICK).fit(X, Y, X_val=X[:20], y_val=Y[:20, :2])
    with pytest.raises(ValueError, match=r"y_val must have y's 2 output\(s\); got shape "
                                         r"\(20,\)"):
        MLPRegressor(**QUICK).fit(X_REG, Y_REG, X_val=X_REG[:20], y_val=Y_REG[:20, 0])


def test_lbfgs_refuses_validation_data():
    X, y, X_val, y_val = _iris_halves()
    with pytest.raises(ValueError, match="solver='lbfgs' has no epochs to validate"):
        MLPClassifier(solver="lbfgs").fit(X, y, X_val=X_val, y_val=y_val)


# ------------------------------------------------------------------ activations
def test_every_fastmlp_activation_is_offered_once():
    """scikit-learn's four names, then fastmlp's others by their own names: linear and
    sigmoid only as scikit-learn's identity and logistic."""
    from fastmlp.nn.activations import ACTIVATIONS
    assert sorted(ESTIMATOR_ACTIVATIONS.values()) == sorted(ACTIVATIONS)
    assert {"identity", "logistic", "tanh", "relu", "gelu", "silu", "softplus", "elu",
            "leaky_relu"} == set(ESTIMATOR_ACTIVATIONS)


@converging
@pytest.mark.parametrize("activation", sorted(ESTIMATOR_ACTIVATIONS))
@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_each_activation_fits_and_predicts_alike_on_both_backends(cls, activation):
    X, y = (X_IRIS, Y_IRIS) if cls is MLPClassifier else (X_REG, Y_REG)
    fitted = {backend: cls(**QUICK, activation=activation, backend=backend).fit(X, y)
              for backend in ("native", "numpy")}
    native, numpy = fitted["native"], fitted["numpy"]
    assert native.model_.layers[0].activation == ESTIMATOR_ACTIVATIONS[activation]
    assert native.loss_curve_[-1] < native.loss_curve_[0]
    np.testing.assert_allclose(native.loss_curve_, numpy.loss_curve_, rtol=1e-9)
    np.testing.assert_allclose(native.predict(X), numpy.predict(X), rtol=1e-9)


@pytest.mark.parametrize("seed", [0, 7, np.int64(42), 2 ** 32 - 1])
def test_fit_random_state_is_a_new_random_state_of_the_seed(seed):
    """The reseeded per-thread RandomState a fit draws from is in the state of
    RandomState(seed), whatever the previous fit drew; None and instances go through
    scikit-learn's check_random_state."""
    used = fit_random_state(3)
    used.uniform(size=5)
    used.standard_normal()            # a cached Gaussian, which reseeding must drop
    state, fresh = fit_random_state(seed).get_state(), np.random.RandomState(seed).get_state()
    assert state[0] == fresh[0] and np.array_equal(state[1], fresh[1])
    assert state[2:] == fresh[2:]
    given = np.random.RandomState(1)
    assert fit_random_state(given) is given
    assert fit_random_state(None) is np.random.mtrand._rand


@converging
def test_two_fits_with_one_random_state_are_equal():
    X, y = load_iris(return_X_y=True)
    fits = [MLPClassifier((8,), max_iter=5, random_state=3, early_stopping=True).fit(X, y)
            for _ in range(2)]
    for a, b in zip(fits[0].coefs_ + fits[0].intercepts_, fits[1].coefs_ + fits[1].intercepts_):
        assert np.array_equal(a, b)


@converging
@pytest.mark.parametrize("targets", ["multiclass", "binary", "multilabel", "one class"])
def test_prepared_training_data_fits_as_checked_data(targets, monkeypatch):
    """The classifier hands model.fit its X and binarized targets as PreparedData (fit
    skips prepare_data's checks): the same fit, bit for bit, classes_ of the network
    included, as through prepare_data."""
    X, y = load_iris(return_X_y=True)
    y = {"multiclass": y, "binary": y == 1, "one class": np.zeros_like(y),
         "multilabel": make_multilabel_classification(150, 4, n_classes=3,
                                                      random_state=0)[1]}[targets]
    fast = MLPClassifier((5,), max_iter=3, random_state=0).fit(X, y)
    checked = []
    monkeypatch.setattr(Sequential, "prepare_data", lambda model, *a, **k: checked.append(1)
                        or PREPARE_DATA(model, *a, **k))
    monkeypatch.setattr(MLPClassifier, "_training_data", lambda self, X, Y: (X, Y))
    slow = MLPClassifier((5,), max_iter=3, random_state=0).fit(X, y)
    assert checked
    assert np.array_equal(fast.model_.classes_, slow.model_.classes_)
    assert fast.model_.classes_.dtype == slow.model_.classes_.dtype
    assert fast.loss_curve_ == slow.loss_curve_
    for a, b in zip(fast.coefs_ + fast.intercepts_, slow.coefs_ + slow.intercepts_):
        assert np.array_equal(a, b)


def test_prepared_data_takes_no_y():
    model = Sequential([Dense(2)], input_dim=2, backend="numpy", seed=0)
    X, Y = np.eye(2), np.eye(2)
    with pytest.raises(TypeError, match="PreparedData as X with y None"):
        model.fit(PreparedData(X, Y), Y, epochs=1)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short fits
@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_precision_bfloat16_trains_float32_masters(solver):
    """precision="bfloat16": the network's products round to bfloat16, its weights are
    float32 whatever the input's dtype (the documented exception to the dtype rule), and
    it learns iris as well as float32 does; warm_start refuses a changed precision."""
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)          # float64 input
    params = dict(hidden_layer_sizes=(16,), solver=solver, max_iter=300, random_state=0,
                  learning_rate_init=0.01)
    b16 = MLPClassifier(precision="bfloat16", **params).fit(X, y)
    f32 = MLPClassifier(dtype="float32", **params).fit(X, y)
    assert b16.model_.precision == "bfloat16"
    assert all(c.dtype == np.float32 for c in b16.coefs_)
    assert not np.array_equal(b16.coefs_[0], f32.coefs_[0])
    assert b16.score(X, y) > 0.95 and abs(b16.score(X, y) - f32.score(X, y)) <= 0.02
    reg = MLPRegressor(precision="bfloat16", hidden_layer_sizes=(8,), max_iter=50,
                       random_state=0).fit(X[:, :3], X[:, 3])
    assert reg.predict(X[:, :3]).dtype == np.float32
    b16.set_params(warm_start=True, precision=None)
    with pytest.raises(ValueError, match="its precision changed from 'bfloat16' to None"):
        b16.fit(X, y)
    with pytest.raises(ValueError, match="precision"):
        MLPClassifier(precision="float16").fit(X, y)
