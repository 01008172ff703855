"""The classifier's label binarizer: fitted_label_binarizer sets, for 1-D integer labels,
the fitted attributes LabelBinarizer.fit would (and leaves every other y to fit)."""
import numpy as np
import pytest
from sklearn.preprocessing import LabelBinarizer

from fastmlp.sklearn.heldout import fitted_label_binarizer


@pytest.mark.parametrize("y", [
    np.array([3, 1, 3, 2, 1]), np.array([0, 1, 1, 0]), np.array([7, 7, 7]),
    np.array([-5, 2, -5], np.int8), np.array([200, 3, 7, 3], np.uint8),
    np.array([1, 0], np.int32), np.array([2 ** 40, 1, 2 ** 40], np.uint64),
    np.array(["b", "a", "c", "a"]), np.array(["yes", "no", "no"], dtype=object),
    np.array([True, False, True]), np.array([1.0, -2.0, 1.0, 3.0]),
    np.array([[1, 0, 1], [0, 1, 1], [0, 0, 0]]), [1, 2, 2],
])
def test_fitted_label_binarizer_is_label_binarizers_fit(y):
    expected, got = LabelBinarizer().fit(y), fitted_label_binarizer(y)
    assert list(vars(got)) == list(vars(expected))        # the same attributes, in order
    assert got.y_type_ == expected.y_type_
    assert got.sparse_input_ == expected.sparse_input_
    assert got.classes_.dtype == expected.classes_.dtype
    np.testing.assert_array_equal(got.classes_, expected.classes_)
    np.testing.assert_array_equal(got.transform(y), expected.transform(y))


@pytest.mark.parametrize("y, message", [
    (np.array([], np.int64), "0 samples"),
    (np.array([[1, 2], [2, 3]]), "Multioutput"),
])
def test_fitted_label_binarizer_refuses_what_fit_refuses(y, message):
    with pytest.raises(ValueError, match=message):
        fitted_label_binarizer(y)
