"""The bindings' own contract: test hooks live in ``_core._testing``; value checks are the
kernels' (or Python's), so a bad value still gives a ValueError before anything is
written; results are allocated by the caller (the native backend)."""
from __future__ import annotations

import numpy as np
import pytest

import oracle
from fastmlp import _core
from fastmlp.backends import native
from fastmlp.nn.losses import get_loss

TEST_HOOKS = ("last_team_size", "math", "sgd_update")


def test_the_test_hooks_live_in_the_testing_submodule():
    assert native.testing is _core._testing
    for name in TEST_HOOKS:
        assert callable(getattr(_core._testing, name)), name
        assert not hasattr(_core, name), f"_core.{name} should be in _core._testing only"


def test_maxout_backward_refuses_an_out_of_range_argmax_before_writing():
    """dz is written at argmax: the kernel's check (ops.hpp), through the backend too."""
    da = np.ones((4, 3), np.float32)
    argmax = np.zeros((4, 3), np.int32)
    argmax[3, 2] = 5
    dz = np.full((4, 6), 7.0, np.float32)
    with pytest.raises(ValueError, match=r"maxout_backward: argmax holds 5 at flat index 11, "
                                         r"expected 0 <= argmax < pieces = 2"):
        native.NativeBackend().maxout_backward(da, argmax, dz)
    np.testing.assert_array_equal(dz, 7.0)


def _predictor(loss="mse", units=3, features=4):
    params = np.arange(units * features + units, dtype=np.float32) / 10
    return _core.Predictor(params, oracle.dense_program(params, units, features), loss)


def test_predictor_run_fills_the_callers_out_and_checks_it():
    core = _predictor("softmax_cross_entropy")
    X = np.ones((5, 4), np.float32)
    logits = np.empty((5, 3), np.float32)
    assert core.run(X, 0, 2, logits) is True
    labels = np.empty(5, np.int64)
    core.run(X, 2, 2, labels)
    np.testing.assert_array_equal(labels, logits.argmax(axis=1))
    with pytest.raises(TypeError, match="Predictor.run: out has dtype float32, expected int64"):
        core.run(X, 2, 2, np.empty(5, np.float32))
    with pytest.raises(ValueError, match=r"out has shape \(5, 2\), expected \(5, 3\)"):
        core.run(X, 0, 2, np.empty((5, 2), np.float32))
    with pytest.raises(ValueError, match=r"out has shape \(4,\), expected \(5,\)"):
        core.run(X, 2, 2, np.empty(4, np.int64))
    with pytest.raises(ValueError, match="out is read-only"):
        frozen = np.empty((5, 3), np.float32)
        frozen.flags.writeable = False
        core.run(X, 0, 2, frozen)
    buf = np.ones(40, np.float32)
    with pytest.raises(ValueError, match="out overlaps X"):
        core.run(buf[:20].reshape(5, 4), 0, 2, buf[5:20].reshape(5, 3))


@pytest.mark.parametrize("loss,mode,shape,dtype", [
    ("softmax_cross_entropy", 2, (5,), np.int64), ("binary_cross_entropy", 2, (5, 3), np.int64),
    ("mse", 2, (5, 3), np.float32), ("binary_cross_entropy", 1, (5, 3), np.float32),
    ("softmax_cross_entropy", 0, (5, 3), np.float32)])
def test_the_native_predictor_allocates_the_result(loss, mode, shape, dtype):
    predictor = native.FusedPredictor(_predictor(loss), np.dtype(np.float32),
                                      [get_loss(loss).labels_layout])
    result = predictor.run(np.ones((5, 4), np.float32), mode, 2)
    assert result.shape == shape and result.dtype == dtype


def test_a_bad_X_is_named_by_the_core_not_the_allocation():
    predictor = native.FusedPredictor(_predictor(), np.dtype(np.float32),
                                      [get_loss("softmax_cross_entropy").labels_layout])
    with pytest.raises(ValueError, match=r"X must be 2-D, got shape \(\)"):
        predictor.run(np.array(1, np.float32), 0, 2)
    with pytest.raises(TypeError, match="X has dtype float64, expected float32"):
        predictor.run(np.ones((2, 4)), 0, 2)
    with pytest.raises(TypeError, match="incompatible function arguments"):
        predictor.run([[1.0, 2.0, 3.0, 4.0]], 0, 2)     # never a converting copy


@pytest.mark.parametrize("features", [1, 7, 17, 33, 257])
@pytest.mark.parametrize("bad", [None, "first", "middle", "last"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, "max"])
def test_the_predictor_reads_x_finite_chunk_by_chunk(features, bad, value, dtype, isa):
    """Predictor.run's finiteness check (the all_finite kernel over each chunk it reads):
    False at a NaN or an infinity anywhere, on every ISA, the vector tails included; True
    for finite X, the dtype's largest values too (x - x cannot overflow)."""
    params = np.zeros(2 * features + 2, dtype)
    core = _core.Predictor(params, oracle.dense_program(params, 2, features), "mse")
    X = np.ones((5, features), dtype)
    where = {"first": 0, "middle": X.size // 2, "last": X.size - 1}.get(bad)
    if where is not None:
        X.flat[where] = np.finfo(dtype).max if value == "max" else value
    finite = bool(np.isfinite(X).all())
    assert core.run(X, 0, 2, np.empty((5, 2), dtype)) is finite


def _two_head_program(params, units, features):
    """dense_program's Dense layer read as two heads: its z for softmax cross-entropy and
    for mse."""
    program = oracle.dense_program(params, units, features)
    output = program.pop("output")
    program["heads"] = [{"loss": "softmax_cross_entropy", "output": output},
                        {"loss": "mse", "output": output}]
    return program


def test_a_predictor_of_several_heads_fills_one_out_per_head():
    params = np.arange(3 * 4 + 3, dtype=np.float32) / 10
    core = _core.Predictor(params, _two_head_program(params, 3, 4))
    assert core.head_losses == ["softmax_cross_entropy", "mse"] and core.head_outputs == [3, 3]
    X = np.ones((5, 4), np.float32)
    logits, values, labels = (np.empty((5, 3), np.float32), np.full((5, 3), 7, np.float32),
                              np.empty(5, np.int64))
    assert core.run(X, 0, 2, [logits, None]) is True
    assert core.run(X, 2, 2, [labels, values]) is True
    np.testing.assert_array_equal(values, logits)
    np.testing.assert_array_equal(labels, logits.argmax(axis=1))
    with pytest.raises(ValueError, match=r"out has 1 entries, expected one per head \(2\)"):
        core.run(X, 0, 2, [logits])
    with pytest.raises(TypeError, match="out must be a list of one array"):
        core.run(X, 0, 2, logits)
    with pytest.raises(ValueError, match=r"out\[1\]: probabilities need a classification loss"):
        core.run(X, 1, 2, [None, values])
    with pytest.raises(ValueError, match=r"out\[1\] overlaps out\[0\]"):
        core.run(X, 0, 2, [logits, logits])
    with pytest.raises(ValueError, match="loss must be None"):
        _core.Predictor(params, _two_head_program(params, 3, 4), "mse")
    with pytest.raises(ValueError, match=r"heads\[0\] needs an output"):
        program = _two_head_program(params, 3, 4)
        program["heads"][0]["output"] = 1                   # W: not a per-row buffer
        _core.Predictor(params, program)
