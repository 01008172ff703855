"""NumPy oracle activations: literal values, finite-difference derivatives, kinks, and
stability for extreme finite inputs."""
import numpy as np
import pytest

from activation_cases import CASES, Z
from fastmlp.nn.activations import ACTIVATIONS, ELU_ALPHA, LEAKY_RELU_SLOPE, kind, param
from fastmlp.backends import NumPyBackend
from helpers import assert_close, assert_gradient_close

backend = NumPyBackend()
# act(z) at Z: CASES[name].literals (tests/activation_cases.py), from the math module,
# independent of the backend's formulas.


def forward(z: np.ndarray, activation: str, bias=None) -> np.ndarray:
    """act(z + bias) through bias_act_forward, on a copy of z."""
    z = z.copy()
    a = np.empty_like(z)
    bias = np.zeros(z.shape[1], z.dtype) if bias is None else bias
    backend.bias_act_forward(z, bias, a, kind(activation), param(activation))
    return a


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_matches_literal_values(activation, dtype):
    z = np.array([Z], dtype)
    a = forward(z, activation)
    assert a.dtype == dtype
    if activation in ("relu", "leaky_relu", "linear") and dtype == "float64":
        np.testing.assert_array_equal(a[0], CASES[activation].literals)
    else:
        assert_close(a[0], CASES[activation].literals, "literal", dtype)


def test_bias_is_added_to_every_row_before_the_activation():
    z = np.array([[0.0, 1.0], [-1.0, 2.0]])
    bias = np.array([1.0, -3.0])
    a = forward(z, "relu", bias)
    np.testing.assert_array_equal(a, [[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_backward_matches_finite_differences(activation):
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=(6, 5))
    z[np.abs(z) < 1e-3] = 0.5                                  # stay away from the kinks
    bias = rng.normal(size=5)
    da = rng.normal(size=z.shape)
    z_biased = z + bias
    a = forward(z, activation, bias)
    dz = np.empty_like(z)
    backend.act_backward(z_biased, a, da, dz, kind(activation), param(activation))
    # elementwise, so one centered difference per entry gives every derivative at once
    eps = 1e-7
    upper, lower = forward(z + eps, activation, bias), forward(z - eps, activation, bias)
    derivative = (upper - lower) / (2 * eps)
    assert_gradient_close(da * derivative, dz)


def test_kinks_take_the_left_branch_at_zero():
    z = np.zeros((1, 1))
    da = np.full((1, 1), 3.0)
    expected = {"relu": 0.0, "leaky_relu": 3.0 * LEAKY_RELU_SLOPE, "elu": 3.0 * ELU_ALPHA}
    for activation, value in expected.items():
        a = forward(z, activation)
        dz = np.empty_like(z)
        backend.act_backward(z, a, da, dz, kind(activation), param(activation))
        assert dz[0, 0] == value, activation


@pytest.mark.parametrize("dtype, big", [("float32", 1e4), ("float64", 1e6)])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_extreme_inputs_do_not_overflow(activation, dtype, big):
    z = np.array([[-big, -100.0, 100.0, big]], dtype)
    with np.errstate(all="raise"):
        a = forward(z, activation)
        dz = np.empty_like(z)
        backend.act_backward(z, a, np.ones_like(z), dz, kind(activation), param(activation))
    assert np.isfinite(a).all() and np.isfinite(dz).all()
    if activation == "sigmoid":
        np.testing.assert_array_equal(a[0, [0, 3]], [0.0, 1.0])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_nan_in_gives_nan_out(activation):
    z = np.array([[np.nan, 1.0]])
    with np.errstate(invalid="ignore"):
        a = forward(z, activation)
    assert np.isnan(a[0, 0]) and np.isfinite(a[0, 1])
