"""fit warns (DataScaleWarning) when input columns are far from unit scale and the model
does not normalize them, naming the columns and suggesting Normalization; it says nothing
for scaled data, a Normalization or BatchNorm first layer, or the scikit-learn estimators."""
import threading
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import BatchNorm, DataScaleWarning, Dense, Normalization, Sequential

RNG = np.random.default_rng(0)
SCALED = RNG.normal(size=(200, 5))
Y = (SCALED[:, 0] > 0).astype(int)


def _unscaled(columns=(1, 3)):
    X = SCALED.copy()
    for column in columns:
        X[:, column] = 5e4 + 1e3 * X[:, column]
    return X


def _model(first=None):
    layers = ([first] if first is not None else []) + [Dense(4, "relu"), Dense(2)]
    return Sequential(layers, input_dim=5, backend="numpy", seed=0)


def test_unscaled_columns_are_named_with_the_fix():
    with pytest.warns(DataScaleWarning) as record:
        _model().fit(_unscaled(), Y, epochs=1, verbose=0)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("2 input column(s) are far from unit scale: 1 (mean 4.99e+04, "
                              "std 941), 3 (mean 4.98e+04, std 1.07e+03). ")
    assert "make fastmlp.Normalization() the model's first layer" in message
    assert record[0].filename == __file__                 # points at the caller's fit


def test_a_dataframe_names_its_columns_and_at_most_three():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(_unscaled(columns=(0, 1, 2, 3)), columns=list("abcde"))
    with pytest.warns(DataScaleWarning, match=r"4 input column\(s\) are far from unit scale: "
                      r"'a' \(mean .*\), 'b' \(.*\), 'c' \(.*\) and 1 more\."):
        _model().fit(frame, Y, epochs=1, verbose=0)


def test_a_large_spread_alone_warns():
    X = SCALED.copy()
    X[:, 4] *= 500                                        # mean near 0, std about 500
    with pytest.warns(DataScaleWarning, match=r"1 input column\(s\) .*: 4 \(mean"):
        _model().fit(X, Y, epochs=1, verbose=0)


@pytest.mark.parametrize("first", [Normalization, BatchNorm])
def test_normalizing_first_layers_silence_it(first):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model(first()).fit(_unscaled(), Y, epochs=1, verbose=0)


def test_unit_scale_and_moderate_columns_do_not_warn():
    X = SCALED.copy()
    X[:, 2] = 40 + 20 * X[:, 2]                          # ages: mean 40, std 20
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _model().fit(X, Y, epochs=1, verbose=0)


def test_the_estimators_do_not_warn():
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning
    from fastmlp.sklearn.estimators import MLPClassifier
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataScaleWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)        # 2 iterations
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(_unscaled(), Y)


def test_the_estimators_silence_their_own_fits_only():
    """An estimator training in one thread does not silence a model's fit in another (a
    warnings filter would: it is process-wide)."""
    from fastmlp.train.preflight import no_scale_warning
    inside, checked = threading.Event(), threading.Event()

    def quiet_fit():
        with no_scale_warning():
            inside.set()
            assert checked.wait(30)

    worker = threading.Thread(target=quiet_fit)
    worker.start()
    try:
        assert inside.wait(30)
        with pytest.warns(DataScaleWarning):
            _model().fit(_unscaled(), Y, epochs=1, verbose=0)
    finally:
        checked.set()
        worker.join()


def test_exported():
    assert fastmlp.DataScaleWarning is fastmlp.errors.DataScaleWarning
    assert issubclass(DataScaleWarning, UserWarning)
