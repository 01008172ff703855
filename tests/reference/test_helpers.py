"""The comparison helpers must be able to fail: a tolerance that lets zeros pass is a bug."""
import numpy as np
import pytest

from helpers import assert_close, assert_gradient_close, gradient_difference, relative_error
from tolerances import TOLERANCES

ENTRIES = [(kind, dtype) for kind, by_dtype in TOLERANCES.items() for dtype in by_dtype]
EXPECTED = np.array([[1.0, -2.0], [3.0, 0.5]])


@pytest.mark.parametrize("kind, dtype", ENTRIES)
def test_all_zeros_fails_every_tolerance(kind, dtype):
    with pytest.raises(AssertionError, match="relative error"):
        assert_close(np.zeros_like(EXPECTED), EXPECTED, kind, dtype)


@pytest.mark.parametrize("kind, dtype", ENTRIES)
def test_every_tolerance_passes_a_result_within_it(kind, dtype):
    tolerance = TOLERANCES[kind][dtype]
    assert_close(EXPECTED * (1 + tolerance / 2), EXPECTED, kind, dtype)
    with pytest.raises(AssertionError):
        assert_close(EXPECTED * (1 + tolerance * 2), EXPECTED, kind, dtype)


def test_zero_reference_is_refused():
    with pytest.raises(AssertionError, match="all zeros"):
        relative_error(np.zeros(3), np.zeros(3))


@pytest.mark.parametrize("bad", [np.array([np.nan, 1.0]), np.array([1.0, np.inf])])
def test_non_finite_is_refused(bad):
    with pytest.raises(AssertionError, match="non-finite"):
        relative_error(bad, np.ones(2))


def test_shape_mismatch_is_refused():
    with pytest.raises(AssertionError, match="shapes differ"):
        relative_error(np.ones(4), np.ones((2, 2)))


def test_zero_gradient_fails_the_gradient_check():
    assert gradient_difference(np.zeros(3), np.ones(3)) == 1.0
    with pytest.raises(AssertionError, match="gradient difference"):
        assert_gradient_close(np.zeros(3), np.ones(3))
    with pytest.raises(AssertionError, match="both gradients"):
        gradient_difference(np.zeros(3), np.zeros(3))
