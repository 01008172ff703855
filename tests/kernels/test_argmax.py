"""argmax_rows (csrc/kernels/reductions.hpp): np.argmax along the rows, the fused
trainer's accuracy and the fused predictor's labels, against NumPy on every ISA, both
dtypes, widths around the vector width and the 16-column block, and the rows where the
rule matters: ties (the first wins, -0 and +0 included), NaN (the first NaN wins,
wherever the maximum is), infinities, and rows past a multiple of the lane count.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastmlp.backends.native import NativeBackend
from fastmlp.backends.numpy import NumPyBackend

NATIVE, ORACLE = NativeBackend(), NumPyBackend()
ROWS = [0, 1, 7, 17, 33, 257]
WIDTHS = [1, 2, 7, 10, 16, 17, 33, 40]


def _both(z: np.ndarray) -> np.ndarray:
    """The native labels, after checking them against the oracle's (np.argmax)."""
    got = np.full(z.shape[0], -1, np.int64)
    want = np.full(z.shape[0], -1, np.int64)
    NATIVE.argmax_rows(z, got)
    ORACLE.argmax_rows(z, want)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want, np.argmax(z, axis=1))
    return got


@pytest.mark.parametrize("k", WIDTHS)
@pytest.mark.parametrize("m", ROWS)
def test_random_rows(m, k, isa, dtype):
    z = np.random.default_rng(m * 100 + k).standard_normal((m, k)).astype(dtype)
    _both(z)


@pytest.mark.parametrize("k", WIDTHS)
def test_the_first_maximum_nan_and_infinity_win(k, isa, dtype):
    """Each row plants its case at a position that moves along the width, so a case
    lands in every lane of every 16-column block and in the rows' last group."""
    rows = []
    for at in range(k):
        for case in ("tie", "nan", "two nans", "+inf", "-inf row", "zeros"):
            row = np.linspace(-1, 0.5, k).astype(dtype)[::-1].copy()   # max at column 0
            if case == "tie":
                row[at] = row[0]
            elif case == "nan":
                row[at] = np.nan
            elif case == "two nans":
                row[at] = np.nan
                row[-1] = np.nan
            elif case == "+inf":
                row[at] = np.inf
            elif case == "-inf row":
                row[:] = -np.inf
            else:                          # -0 before +0: they tie, so the first wins
                row[:] = -1
                row[at:] = np.where(np.arange(k - at) % 2 == 0, -0.0, 0.0)
            rows.append(row)
    labels = _both(np.array(rows, dtype))
    assert labels.max() < k


def test_arguments_are_checked():
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="argmax_rows: shape mismatch"):
        NATIVE.argmax_rows(z, np.zeros(2, np.int64))
    with pytest.raises(TypeError, match="argmax_rows"):
        NATIVE.argmax_rows(z, np.zeros(3, np.int32))
    with pytest.raises(ValueError, match="argmax_rows: logits must have at least one column"):
        NATIVE.argmax_rows(np.zeros((3, 0), np.float32), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="argmax_rows: out must be int64"):
        ORACLE.argmax_rows(z, np.zeros(2, np.int64))
