"""The three plan ops without a kernel of their own in csrc/ops.hpp (docs/plans.md):
``batchnorm_running_update``, ``scale_columns`` and ``add_to``. The fused trainer writes
them out in its op loop (csrc/train/program.cpp run_op; tests/api/test_fused.py compares
the two paths bit for bit); both backends run the NumPy backend's methods. Here: the
native backend against the NumPy one on every ISA and both dtypes, the NumPy backend
against an element-by-element definition of base.py's contract, and the argument checks.
"""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from fastmlp.backends import NumPyBackend
from fastmlp.backends.native import NativeBackend

NP, NATIVE = NumPyBackend(), NativeBackend()
SIZES = (0, 1, 7, 17, 33, 257)
SHAPES = [(0, 7), (1, 1), (7, 17), (17, 7), (33, 257), (257, 33), (1, 0)]


def _normal(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _running_inputs(n, dtype, seed=0):
    """mean, inv_std (> 0; some so large that the variance clamps to 0), running mean
    and var (>= 0)."""
    rng = np.random.default_rng(seed)
    mean = _normal(n, dtype, seed)
    inv_std = rng.uniform(0.01, 30, n).astype(dtype)
    inv_std[::5] = dtype.type(1e4)
    return mean, inv_std, _normal(n, dtype, seed + 1), np.abs(_normal(n, dtype, seed + 2))


def _running_update(backend, inputs, momentum, eps):
    mean, inv_std, running_mean, running_var = (x.copy() for x in inputs)
    backend.batchnorm_running_update(mean, inv_std, running_mean, running_var, momentum, eps)
    return running_mean, running_var


def _running_update_by_element(inputs, momentum, eps):
    """base.py's formula one element at a time, Python floats (doubles) and T roundings."""
    mean, inv_std, running_mean, running_var = (x.copy() for x in inputs)
    T, m = mean.dtype.type, momentum
    for j in range(mean.size):
        inv = float(inv_std[j])
        var = max(1.0 / (inv * inv) - eps, 0.0)
        running_mean[j] = T(m * float(running_mean[j]) + float(T(T(1 - m) * mean[j])))
        running_var[j] = T(m * float(running_var[j]) + (1 - m) * var)
    return running_mean, running_var


def _scaled(backend, x, scale):
    y = np.full_like(x, 7.0)
    backend.scale_columns(x, scale, y)
    return y


def _added(backend, x, y):
    y = y.copy()
    backend.add_to(x, y)
    return y


@pytest.mark.parametrize("momentum, eps", [(0.99, 1e-3), (0.9, 1e-5), (0.5, 0.0), (0.0, 0.1)])
@pytest.mark.parametrize("n", SIZES)
def test_running_update_native_matches_numpy(isa, dtype, n, momentum, eps):
    inputs = _running_inputs(n, dtype)
    oracle.assert_same_bits({"native": _running_update(NATIVE, inputs, momentum, eps),
                             "numpy": _running_update(NP, inputs, momentum, eps)})


@pytest.mark.parametrize("momentum, eps", [(0.99, 1e-3), (0.9, 1e-5), (0.5, 0.0), (0.0, 0.1)])
def test_running_update_is_the_contract_formula(dtype, momentum, eps):
    inputs = _running_inputs(257, dtype, seed=4)
    oracle.assert_same_bits({"numpy": _running_update(NP, inputs, momentum, eps),
                             "by element": _running_update_by_element(inputs, momentum, eps)})


@pytest.mark.parametrize("shape", SHAPES)
def test_scale_columns_and_add_to_native_match_numpy(isa, dtype, shape):
    x, y = _normal(shape, dtype, 1), _normal(shape, dtype, 2)
    scale = _normal(shape[1:], dtype, 3)
    oracle.assert_same_bits({"native": _scaled(NATIVE, x, scale), "numpy": _scaled(NP, x, scale)})
    oracle.assert_same_bits({"native": _added(NATIVE, x, y), "numpy": _added(NP, x, y)})


def test_scale_columns_and_add_to_are_one_rounding_per_element(dtype):
    x, y, scale = _normal((33, 17), dtype, 5), _normal((33, 17), dtype, 6), _normal(17, dtype, 7)
    T = dtype.type
    by_element = np.array([[T(x[i, j] * scale[j]) for j in range(17)] for i in range(33)])
    oracle.assert_same_bits({"numpy": _scaled(NP, x, scale), "by element": by_element})
    by_element = np.array([[T(y[i, j] + x[i, j]) for j in range(17)] for i in range(33)])
    oracle.assert_same_bits({"numpy": _added(NP, x, y), "by element": by_element})


def test_scale_columns_in_place(dtype):
    x, scale = _normal((7, 17), dtype, 8), _normal(17, dtype, 9)
    expected = _scaled(NP, x, scale)
    for backend in (NP, NATIVE):
        y = x.copy()
        backend.scale_columns(y, scale, y)
        oracle.assert_same_bits({backend.name: y, "out of place": expected})


@pytest.mark.parametrize("backend", [NP, NATIVE], ids=["numpy", "native"])
def test_plan_op_argument_errors(backend):
    f32, f64 = np.ones((3, 4), np.float32), np.ones((3, 4), np.float64)
    v = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"scale_columns: shape mismatch: x is \(3, 4\)"):
        backend.scale_columns(f32, np.ones(3, np.float32), f32.copy())
    with pytest.raises(ValueError, match=r"add_to: shape mismatch: x is \(3, 4\), y is \(4, 3\)"):
        backend.add_to(f32, np.ones((4, 3), np.float32))
    with pytest.raises(TypeError, match="float32, float64"):
        backend.add_to(f32, f64)
    with pytest.raises(TypeError, match="C-contiguous"):
        backend.scale_columns(f32, v, np.ones((4, 3), np.float32).T)
    with pytest.raises(ValueError, match=r"batchnorm_running_update: shape mismatch: mean is "
                                         r"\(4,\), running_var is \(3,\)"):
        backend.batchnorm_running_update(v, v, v.copy(), np.ones(3, np.float32), 0.9, 1e-3)
