"""The epoch's shuffled order (docs/conventions.md, "Shuffling"): the native backend's
C++ shuffle and the NumPy backend's give the same permutation of (n, seed), its mixer is
SplitMix64, and the orders it draws are uniform."""
from collections import Counter
from itertools import permutations

import numpy as np
import pytest

from fastmlp.backends.native import NativeBackend
from fastmlp.backends.numpy import NumPyBackend, _splitmix64

NATIVE, NUMPY = NativeBackend(), NumPyBackend()
SEEDS = (0, 1, 2 ** 63, 2 ** 64 - 1, 12345678901234567)


def test_splitmix64_gives_the_reference_stream():
    # The first two outputs of Vigna's splitmix64.c from state 0: the state advances by
    # the golden gamma before each mix, which is splitmix64(x) = mix(x + gamma).
    gamma = np.uint64(0x9E3779B97F4A7C15)
    assert int(_splitmix64(np.uint64(0))) == 0xE220A8397B1DCDAF
    assert int(_splitmix64(gamma)) == 0x6E789E6AA1B965F4


@pytest.mark.parametrize("n", [0, 1, 2, 7, 17, 33, 257, 1617])
@pytest.mark.parametrize("seed", SEEDS)
def test_native_and_numpy_give_the_same_permutation(n, seed):
    native, reference = NATIVE.shuffled_order(n, seed), NUMPY.shuffled_order(n, seed)
    assert native.dtype == np.int64 and native.shape == (n,)
    np.testing.assert_array_equal(native, reference)
    np.testing.assert_array_equal(np.sort(native), np.arange(n))


def test_the_order_follows_the_seed():
    orders = {tuple(NATIVE.shuffled_order(257, seed)) for seed in range(50)}
    assert len(orders) == 50


def test_every_order_of_three_rows_is_equally_likely():
    counts = Counter(tuple(NATIVE.shuffled_order(3, seed)) for seed in range(60000))
    assert set(counts) == set(permutations(range(3)))
    # 10,000 expected each, binomial sd ~91: 300 is 3.3 sd (the seeds are fixed).
    assert all(abs(c - 10000) < 300 for c in counts.values()), counts


def test_every_row_lands_in_every_position_equally_often():
    n, draws = 10, 20000
    seen = np.zeros((n, n), np.int64)
    for seed in range(draws):
        seen[NATIVE.shuffled_order(n, seed), np.arange(n)] += 1
    # 2,000 expected per cell, sd ~42: 200 is 4.7 sd.
    assert np.abs(seen - draws // n).max() < 200, seen


def test_the_numpy_backend_refuses_before_allocating_too_many_rows():
    with pytest.raises(ValueError, match=r"fewer than 2\*\*32 rows; got n=4,294,967,296"):
        NUMPY.shuffled_order(2 ** 32, 0)


def test_the_binding_checks_its_output():
    from fastmlp import _core
    with pytest.raises(TypeError, match="shuffled_order: order has dtype int32, expected int64"):
        _core.shuffled_order(0, np.empty(5, np.int32))
    read_only = np.empty(5, np.int64)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="shuffled_order: order is read-only"):
        _core.shuffled_order(0, read_only)
