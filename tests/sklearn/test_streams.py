"""The estimators on streamed sources (fastmlp/sklearn/streams.py): fit and partial_fit on
a source train exactly as on the same arrays when nothing is shuffled (classifier:
multiclass with string labels, binary, class weights; regressor with 2 outputs), Dask
and Parquet through fit's (X, y), validation data and early stopping (validation sources
score as their arrays), and the refusals."""
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler

from fastmlp import sources
from fastmlp.sklearn import MLPClassifier, MLPRegressor

X_IRIS, Y_IRIS = load_iris(return_X_y=True)
X_IRIS = StandardScaler().fit_transform(X_IRIS)
NAMES = np.array(["setosa", "versicolor", "virginica"])[Y_IRIS]
X_REG, Y_REG = make_regression(150, 4, n_targets=2, noise=0.5, random_state=0)
Y_REG = Y_REG / Y_REG.std()
QUICK = dict(hidden_layer_sizes=(16,), max_iter=8, random_state=0, batch_size=16,
             shuffle=False)


def fitted(estimator, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(*args, **kwargs)


def assert_same_fit(ours, theirs):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_,
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert ours.loss_curve_ == theirs.loss_curve_
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert ours.n_features_in_ == theirs.n_features_in_


@pytest.mark.parametrize("labels", [Y_IRIS, NAMES, (Y_IRIS > 0).astype(int)],
                         ids=["multiclass", "strings", "binary"])
@pytest.mark.parametrize("class_weight", [None, "balanced", "dict"])
def test_a_classifier_fit_on_a_stream_equals_the_fit_on_its_arrays(labels, class_weight):
    if class_weight == "dict":
        class_weight = {labels[0]: 2.0, labels[-1]: 0.5}
    kwargs = dict(QUICK, class_weight=class_weight)
    order = np.argsort(labels, kind="stable")      # the first chunks hold one class
    X, y = X_IRIS[order], labels[order]
    ours = fitted(MLPClassifier(**kwargs), sources.Npy(X, y, chunk_rows=20))
    theirs = fitted(MLPClassifier(**kwargs), X, y)
    assert_same_fit(ours, theirs)
    assert ours.classes_.tolist() == theirs.classes_.tolist()
    assert ours.predict(X).tolist() == theirs.predict(X).tolist()


def test_a_regressor_fit_on_a_stream_equals_the_fit_on_its_arrays(tmp_path):
    np.save(tmp_path / "X.npy", X_REG)
    np.save(tmp_path / "y.npy", Y_REG)
    ours = fitted(MLPRegressor(**QUICK), str(tmp_path / "X.npy"), str(tmp_path / "y.npy"))
    theirs = fitted(MLPRegressor(**QUICK), X_REG, Y_REG)
    assert_same_fit(ours, theirs)
    assert ours.model_.dtype == np.float64


def test_partial_fit_on_a_stream_is_an_epoch_each_call():
    ours, theirs = MLPClassifier(**QUICK), MLPClassifier(**QUICK)
    for _ in range(3):
        ours.partial_fit(sources.Npy(X_IRIS, NAMES, chunk_rows=32), None,
                         classes=np.unique(NAMES))
        theirs.partial_fit(X_IRIS, NAMES, classes=np.unique(NAMES))
    assert_same_fit(ours, theirs)


def test_a_label_outside_partial_fits_classes_is_named():
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        MLPClassifier(**QUICK).partial_fit(sources.Npy(X_IRIS, Y_IRIS), None, classes=[0, 1])


def test_a_float32_stream_trains_a_float32_network():
    X = X_IRIS.astype(np.float32)
    ours = fitted(MLPClassifier(**QUICK), sources.Npy(X, Y_IRIS))
    assert ours.model_.dtype == np.float32 and ours.coefs_[0].dtype == np.float32


def test_dask_parquet_and_csv_sources_go_through_fit(tmp_path):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    frame = pd.DataFrame(X_IRIS, columns=["a", "b", "c", "d"]).assign(species=NAMES)
    theirs = fitted(MLPClassifier(**QUICK), X_IRIS, NAMES)
    ours = fitted(MLPClassifier(**QUICK), dd.from_pandas(frame, npartitions=3), "species")
    assert_same_fit(ours, theirs)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "iris.parquet",
                   row_group_size=40)
    ours = fitted(MLPClassifier(**QUICK), str(tmp_path), "species")
    assert_same_fit(ours, theirs)
    frame.to_csv(tmp_path / "iris.csv", index=False)       # float64 repr: read back exactly
    ours = fitted(MLPClassifier(**QUICK), str(tmp_path / "iris.csv"), "species")
    assert_same_fit(ours, theirs)
    np.testing.assert_array_equal(ours.predict(sources.Csv(tmp_path / "iris.csv",
                                                           "species")), theirs.predict(X_IRIS))


def test_early_stopping_on_a_stream_uses_the_given_validation_data():
    kwargs = dict(QUICK, early_stopping=True, max_iter=30, n_iter_no_change=3)
    ours = fitted(MLPClassifier(**kwargs), sources.Npy(X_IRIS[:120], Y_IRIS[:120]),
                  X_val=X_IRIS[120:], y_val=Y_IRIS[120:])
    theirs = fitted(MLPClassifier(**kwargs), X_IRIS[:120], Y_IRIS[:120],
                    X_val=X_IRIS[120:], y_val=Y_IRIS[120:])
    assert_same_fit(ours, theirs)
    assert ours.validation_scores_ == theirs.validation_scores_


def assert_same_validation(ours, theirs):
    assert_same_fit(ours, theirs)
    assert ours.validation_scores_ == theirs.validation_scores_
    np.testing.assert_allclose(ours.validation_loss_curve_, theirs.validation_loss_curve_,
                               rtol=1e-12)     # the losses are summed by other pieces


# The validation rows (the last 60 of iris, shuffled so that each class is in each chunk),
# string labels and weights that change which epoch scores best.
VAL = np.random.default_rng(0).permutation(np.arange(90, 150))
W_VAL = np.random.default_rng(1).uniform(0.2, 3.0, len(VAL))


@pytest.mark.parametrize("early_stopping", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_validation_source_scores_as_its_arrays(early_stopping, weighted):
    kwargs = dict(QUICK, early_stopping=early_stopping, max_iter=30, n_iter_no_change=3)
    w = W_VAL if weighted else None
    val = sources.Npy(X_IRIS[VAL], NAMES[VAL], sample_weight=w, chunk_rows=16)
    ours = fitted(MLPClassifier(**kwargs), X_IRIS, NAMES, X_val=val)
    theirs = fitted(MLPClassifier(**kwargs), X_IRIS, NAMES, X_val=X_IRIS[VAL],
                    y_val=NAMES[VAL], sample_weight_val=w)
    assert_same_validation(ours, theirs)
    assert len(ours.validation_loss_curve_) == ours.n_iter_ > 1


def test_a_regressor_validates_on_npy_paths_as_on_arrays(tmp_path):
    np.save(tmp_path / "X_val.npy", X_REG[100:])
    np.save(tmp_path / "y_val.npy", Y_REG[100:])
    kwargs = dict(QUICK, early_stopping=True, max_iter=30, n_iter_no_change=3)
    ours = fitted(MLPRegressor(**kwargs), X_REG[:100], Y_REG[:100],
                  X_val=str(tmp_path / "X_val.npy"), y_val=str(tmp_path / "y_val.npy"))
    theirs = fitted(MLPRegressor(**kwargs), X_REG[:100], Y_REG[:100], X_val=X_REG[100:],
                    y_val=Y_REG[100:])
    assert_same_validation(ours, theirs)


def test_a_streamed_fit_validates_on_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    frame = pd.DataFrame(X_IRIS[VAL], columns=["a", "b", "c", "d"]).assign(species=NAMES[VAL])
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "val.parquet",
                   row_group_size=25)
    kwargs = dict(QUICK, early_stopping=True, max_iter=30, n_iter_no_change=3)
    ours = fitted(MLPClassifier(**kwargs), sources.Npy(X_IRIS, NAMES, chunk_rows=50),
                  X_val=str(tmp_path / "val.parquet"), y_val="species")
    theirs = fitted(MLPClassifier(**kwargs), X_IRIS, NAMES, X_val=X_IRIS[VAL],
                    y_val=NAMES[VAL])
    assert_same_validation(ours, theirs)


def _bad_label():
    y = NAMES[VAL].copy()
    y[40] = "rose"
    return sources.Npy(X_IRIS[VAL], y, chunk_rows=16)


@pytest.mark.parametrize("estimator, X_val, kwargs, error, message", [
    (MLPClassifier(), lambda: sources.Npy(X_IRIS, NAMES), {"sample_weight_val": np.ones(150)},
     ValueError, "a validation source holds its sample weights"),
    (MLPClassifier(solver="lbfgs"), lambda: sources.Npy(X_IRIS, NAMES), {}, ValueError,
     "solver='lbfgs' has no epochs to validate"),
    (MLPClassifier(), lambda: "val_X.npy", {}, TypeError,
     r"X_val, y_val \(read as fit reads X, y\): X is an \.npy path: give y too"),
    (MLPClassifier(**QUICK), _bad_label, {}, ValueError,
     r"y_val has labels \['rose'\] not in classes_ .* of the \.npy source's chunk 2"),
    (MLPClassifier(**QUICK), lambda: sources.Npy(X_IRIS[:, :3], NAMES), {}, ValueError,
     r"X_val must have the shape \(n_val, 4\) of X's 4 features; got shape \(150, 3\)"),
])
def test_what_is_wrong_with_a_validation_source_is_named(estimator, X_val, kwargs, error,
                                                         message):
    with pytest.raises(error, match=message):
        fitted(estimator, X_IRIS, NAMES, X_val=X_val(), **kwargs)


@pytest.mark.parametrize("estimator, kwargs, message", [
    (MLPClassifier(solver="lbfgs"), {}, "solver='lbfgs' evaluates the whole data"),
    (MLPClassifier(), {"sample_weight": np.ones(150)}, "takes its sample weights from the "
                                                        "source"),
    (MLPClassifier(early_stopping=True), {}, "early_stopping=True with a streamed X needs "
                                             "validation data: X_val and y_val"),
])
def test_what_a_streamed_fit_cannot_do_is_refused(estimator, kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimator.fit(sources.Npy(X_IRIS, Y_IRIS), None, **kwargs)


def test_a_warm_start_fit_weighs_balanced_classes_by_the_whole_stream():
    kwargs = dict(QUICK, class_weight="balanced", warm_start=True)
    y = Y_IRIS.copy()
    y[:30] = 2                                   # unbalanced: 20, 50, 80
    ours, theirs = MLPClassifier(**kwargs), MLPClassifier(**kwargs)
    for _ in range(2):
        fitted(ours, sources.Npy(X_IRIS, y, chunk_rows=40))
        fitted(theirs, X_IRIS, y)
    assert_same_fit(ours, theirs)


def test_partial_fit_refuses_balanced_class_weights_on_a_stream():
    with pytest.raises(ValueError, match="class_weight='balanced' .* partial_fit does not see"):
        MLPClassifier(**QUICK, class_weight="balanced").partial_fit(
            sources.Npy(X_IRIS, Y_IRIS), None, classes=[0, 1, 2])


class Pieces:
    """The chunk iterator protocol over a list of chunk tuples."""

    def __init__(self, chunks):
        self.chunks = chunks

    def reset(self):
        self.left = list(self.chunks)

    def next(self):
        return self.left.pop(0) if self.left else None


@pytest.mark.parametrize("labels", [NAMES, (Y_IRIS > 0).astype(int)], ids=["names", "binary"])
def test_a_classifier_predicts_and_scores_a_source_as_its_arrays(tmp_path, labels):
    """predict, predict_proba and predict_log_proba of a source are the arrays' bit for bit
    (rows are predicted alone); score gathers every chunk's predictions, with the
    source's weights."""
    clf = fitted(MLPClassifier(**QUICK), X_IRIS, labels)
    np.save(tmp_path / "X.npy", X_IRIS)
    w = np.linspace(0.5, 2.0, len(X_IRIS))
    for source in (str(tmp_path / "X.npy"), sources.Npy(X_IRIS, chunk_rows=16),
                   Pieces([(X_IRIS[:70], None), (X_IRIS[70:], None)])):
        np.testing.assert_array_equal(clf.predict(source), clf.predict(X_IRIS))
        np.testing.assert_array_equal(clf.predict_proba(source), clf.predict_proba(X_IRIS))
        np.testing.assert_array_equal(clf.predict_log_proba(source),
                                      clf.predict_log_proba(X_IRIS))
    assert clf.score(sources.Npy(X_IRIS, labels, chunk_rows=16)) == clf.score(X_IRIS, labels)
    assert clf.score(sources.Npy(X_IRIS, labels, w, chunk_rows=16)) == \
        clf.score(X_IRIS, labels, sample_weight=w)


def test_a_regressor_predicts_and_scores_a_source_as_its_arrays(tmp_path):
    reg = fitted(MLPRegressor(**QUICK), X_REG, Y_REG)
    source = sources.Npy(X_REG, Y_REG, chunk_rows=32)
    np.testing.assert_array_equal(reg.predict(source), reg.predict(X_REG))
    assert reg.score(source) == pytest.approx(reg.score(X_REG, Y_REG), rel=1e-12)
    np.testing.assert_array_equal(reg.predict(np.load(_saved(tmp_path, X_REG), mmap_mode="r")),
                                  reg.predict(X_REG))      # a memmap: an array here


def _saved(tmp_path, X):
    np.save(tmp_path / "X.npy", X)
    return tmp_path / "X.npy"


def test_predicting_from_a_source_names_what_is_wrong():
    clf = fitted(MLPClassifier(**QUICK), X_IRIS, NAMES)
    with pytest.raises(ValueError, match=r"X has 3 features, but MLPClassifier is expecting 4 "
                                         r"features as input.* of the iterator source's "
                                         r"chunk 1"):
        clf.predict(Pieces([(X_IRIS, None), (X_IRIS[:, :3], None)]))
    with pytest.raises(ValueError, match="the iterator source holds no rows"):
        clf.predict_proba(Pieces([]))
    with pytest.raises(ValueError, match=r"the \.npy source holds no targets"):
        clf.score(sources.Npy(X_IRIS))
    with pytest.raises(ValueError, match="a source holds its sample weights"):
        clf.score(sources.Npy(X_IRIS, NAMES), sample_weight=np.ones(len(X_IRIS)))
