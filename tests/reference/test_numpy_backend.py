"""The oracle's GEMM, column sums and SGD step against hand-worked numbers, and its
enforcement of the protocol's dtype/layout contract."""
import numpy as np
import pytest

from fastmlp.nn import activations
from fastmlp.backends import NumPyBackend

backend = NumPyBackend()
A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])     # (3, 2)
B = np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])      # (2, 3)
AB = np.array([[5.0, 2.0, -1.0], [11.0, 4.0, -3.0], [17.0, 6.0, -5.0]])   # A @ B by hand


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True),
                                              (True, True)])
def test_gemm_transposes(trans_a, trans_b):
    a = np.ascontiguousarray(A.T) if trans_a else A
    b = np.ascontiguousarray(B.T) if trans_b else B
    c = np.full((3, 3), np.nan)                              # beta == 0: c is never read
    backend.gemm(a, b, c, trans_a=trans_a, trans_b=trans_b)
    np.testing.assert_array_equal(c, AB)


def test_gemm_alpha_and_beta():
    c = np.ones((3, 3))
    backend.gemm(A, B, c, alpha=2.0, beta=-1.0)
    np.testing.assert_array_equal(c, 2.0 * AB - 1.0)
    c = np.full((3, 3), np.nan)
    backend.gemm(A, B, c, alpha=0.5)
    np.testing.assert_array_equal(c, 0.5 * AB)


def test_col_sum_and_sgd_update():
    out = np.empty(2)
    backend.col_sum(A, out)
    np.testing.assert_array_equal(out, [9.0, 12.0])
    param = np.array([1.0, 2.0, 3.0])
    backend.optimizer_update("sgd", param, np.array([10.0, -10.0, 0.0]), None, None, lr=0.5)
    np.testing.assert_array_equal(param, [-4.0, 7.0, 3.0])


def test_mixed_dtypes_are_refused():
    c = np.empty((3, 3), np.float32)
    with pytest.raises(TypeError, match="one dtype"):
        backend.gemm(A, B, c)


def test_non_contiguous_arrays_are_refused():
    with pytest.raises(TypeError, match="C-contiguous"):
        backend.col_sum(A.T, np.empty(3))


def test_integer_arrays_are_refused():
    with pytest.raises(TypeError, match="float32 or float64"):
        backend.optimizer_update("sgd", np.zeros(3, np.int64), np.zeros(3, np.int64), None,
                                 None, lr=0.1)


def test_edge_values_take_the_limits_the_native_kernels_take():
    """The oracle follows the kernels' edge conventions (tests/kernels/test_edge_values.py):
    NaN through relu's and leaky_relu's kink, softmax one-hot at a +inf logit, no
    0 * inf in the cross-entropies."""
    inf, nan = np.inf, np.nan
    z = np.array([[nan, -1.0, 2.0]])
    for name, slope in (("relu", 0.0), ("leaky_relu", 0.01)):
        dz = np.empty_like(z)
        backend.act_backward(z, z, np.ones_like(z), dz, activations.kind(name), slope)
        assert np.isnan(dz[0, 0]) and dz[0, 1] == slope and dz[0, 2] == 1.0
    logits = np.array([[inf, 0.0, -inf], [1.0, -inf, 2.0]])
    out = np.empty_like(logits)
    backend.output("softmax_cross_entropy", logits, out)
    np.testing.assert_array_equal(out[0], [1.0, 0.0, 0.0])
    assert np.isfinite(out[1]).all() and out[1, 1] == 0.0
    labels = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])     # -inf off the label: finite
    grad = np.empty_like(logits)
    value = backend.loss("softmax_cross_entropy", logits, labels, grad, 1.0)
    # row 0: the label holds the +inf logit, loss 0; row 1: -log softmax([1, -inf, 2])_0
    assert value == pytest.approx(1.0 + np.log1p(np.exp(-1.0)), rel=1e-12)
    np.testing.assert_allclose(grad[0], [0.0, 0.0, 0.0])
    assert np.isfinite(grad).all()
    bce = np.array([[inf, -inf, inf]]), np.array([[1.0, 0.0, 0.0]])
    assert backend.loss("binary_cross_entropy", *bce, None, 1.0) == inf   # wrong side: +inf
    right = np.array([[inf, -inf]]), np.array([[1.0, 0.0]])
    assert backend.loss("binary_cross_entropy", *right, None, 1.0) == 0.0
