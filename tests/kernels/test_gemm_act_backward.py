"""The fused backward epilogue, _core.gemm_act_backward: dx = op(A) @ op(B), dz = dx *
act'(z) (csrc/kernels/gemm.hpp, gemm_microkernel.hpp FusedEpilogue; the fused trainer's
input gradient with the layer below's act_backward).

Its contract is bit-identity with the unfused pair it replaces, _core.gemm (alpha 1, beta
0) then _core.act_backward, on every ISA, dtype, activation, shape, transpose, operand
path (packed, read in place: forced through _testing.set_gemm_direct_override and
asserted with last_gemm_direct), thread count and K split (asserted with
last_gemm_k_groups); with dx kept, and with dz given as dx (dx not kept). dx and dz start
as NaN: never read before written.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import oracle
from fastmlp import _core
from test_gemm_epilogue import ACT_IDS, ACTIVATIONS, TRANS

SIZES = (1, 7, 17, 33, 257)
TRANS_IDS = ["NN", "NT", "TN", "TT"]


@pytest.fixture(autouse=True)
def _overrides_restored():
    yield
    _core._testing.set_gemm_direct_override(0)
    _core._testing.set_grain_override(0)


def operands(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    z = rng.standard_normal((m, n)).astype(dtype)
    flat = z.reshape(-1)
    flat[::5] = 0.0                                     # the kinks' left branch
    flat[3::11] = np.resize(np.array([np.nan, np.inf, -np.inf], dtype), flat[3::11].size)
    return a, b, z


def activated(z, act, param):
    """act(z) as the forward computes it (the a that sigmoid and tanh differentiate from)."""
    z = z.copy()
    out = np.full_like(z, np.nan)
    _core.bias_act_forward(z, np.zeros(z.shape[1], z.dtype), out, act, param)
    return out


def unfused(a, b, z, az, ta, tb, act, param):
    """gemm then act_backward: the reference the fused kernel must equal bit for bit."""
    dx = np.full(z.shape, np.nan, z.dtype)
    _core.gemm(a, b, dx, ta, tb, 1.0, 0.0)
    dz = np.full_like(dx, np.nan)
    _core.act_backward(z, az, dx, dz, act, param)
    return dx, dz


def fused(a, b, z, az, ta, tb, act, param, keep_dx=True):
    """(dx, dz); without keep_dx, dz is passed as dx too and dx is not returned."""
    dz = np.full(z.shape, np.nan, z.dtype)
    dx = np.full_like(dz, np.nan) if keep_dx else dz
    _core.gemm_act_backward(a, b, z, az, dx, dz, ta, tb, act, param)
    return (dx if keep_dx else None), dz


def assert_fused_equal(a, b, z, az, ta, tb, act, param, want, label):
    dx, dz = fused(a, b, z, az, ta, tb, act, param)
    oracle.assert_same_bits({f"fused dx {label}": dx, "gemm dx": want[0]})
    oracle.assert_same_bits({f"fused dz {label}": dz, "gemm + act_backward dz": want[1]})
    _, dz_only = fused(a, b, z, az, ta, tb, act, param, keep_dx=False)
    oracle.assert_same_bits({f"fused dz, dx not kept {label}": dz_only, "gemm + act_backward dz": want[1]})


def test_bitwise_equal_to_gemm_then_act_backward(dtype, isa):
    """Every activation, every (m, n, k) from SIZES (edge tiles, one row, short tile rows,
    two K blocks at k = 257) and every transpose (the largest products NN only, the
    trainer's)."""
    rng = np.random.default_rng(31)
    for (m, n, k), (ta, tb) in itertools.product(itertools.product(SIZES, repeat=3), TRANS):
        if m * n * k > 33 * 257 * 257 and (ta, tb) != (False, False):
            continue
        a, b, z = operands(rng, m, n, k, ta, tb, dtype)
        for act, param in ACTIVATIONS:
            az = activated(z, act, param)
            want = unfused(a, b, z, az, ta, tb, act, param)
            assert_fused_equal(a, b, z, az, ta, tb, act, param, want, f"{isa} {act} {(m, n, k, ta, tb)}")


# (batch, n_out of the layer above, n_in of it): the fused trainer's products dZ' @ W.
TRAINER = [(200, 10, 100), (200, 100, 64), (128, 10, 256), (64, 256, 784), (37, 3, 1)]


@pytest.mark.parametrize("act,param", ACTIVATIONS, ids=ACT_IDS)
@pytest.mark.parametrize("mode", (-1, 1, 2, 3), ids=["packed", "direct-b", "direct-a", "direct-ab"])
def test_every_operand_path(act, param, mode, dtype, isa):
    """The trainer's shapes (a one-column dx last) with each operand packed or read in place,
    forced; the path taken asserted (a one-column C runs transposed: no path to assert)."""
    rng = np.random.default_rng(32)
    for m, k, n in TRAINER:
        a, b, z = operands(rng, m, n, k, False, False, dtype)
        az = activated(z, act, param)
        want = unfused(a, b, z, az, False, False, act, param)
        _core._testing.set_gemm_direct_override(mode)
        label = f"{isa} {act} mode {mode} {(m, n, k)}"
        assert_fused_equal(a, b, z, az, False, False, act, param, want, label)
        if n > 1 and m * n * k > 512:
            assert _core._testing.last_gemm_direct() == (0 if mode < 0 else mode), label


# Small C over long K (the K split: 2-4 K blocks), and a C the grid splits.
SPLIT = [(10, 128, 1024), (1, 7, 784), (7, 17, 513), (33, 10, 257), (200, 100, 300)]


@pytest.mark.parametrize("ta, tb", TRANS, ids=TRANS_IDS)
def test_k_split_and_threads(ta, tb, dtype, isa, nthreads):
    """1, 2, 3, 4, 8 and 16 threads with every product parallel (the grain override): the
    bits of one thread, the K split taken on 16 threads where C is small and K has 4
    blocks, and the fused epilogue then applied after the reduction."""
    if not _core.backend_info()["openmp"]:
        pytest.skip("built without OpenMP")
    rng = np.random.default_rng(33)
    _core._testing.set_grain_override(1)
    for (m, n, k), (act, param) in itertools.product(SPLIT, [("relu", 0.0), ("tanh", 0.0), ("elu", 0.5)]):
        a, b, z = operands(rng, m, n, k, ta, tb, dtype)
        az = activated(z, act, param)
        with nthreads(1):
            want = unfused(a, b, z, az, ta, tb, act, param)
        groups = {}
        for t in (1, 2, 3, 4, 8, 16):
            with nthreads(t):
                assert_fused_equal(a, b, z, az, ta, tb, act, param, want, f"{isa} {act} {t} threads {(m, n, k)}")
                groups[t] = _core._testing.last_gemm_k_groups()
        assert groups[1] == 1
        if m * n <= 17 * 7 * 2 and k >= 784:
            assert groups[16] > 1, f"{(m, n, k)}: no K split on 16 threads ({groups})"


def test_empty_and_k_zero(dtype):
    """m or n = 0: nothing is written; k = 0: dx = 0 and dz = 0 * act'(z), as the pair."""
    rng = np.random.default_rng(34)
    for m, n, k in [(0, 5, 3), (4, 0, 3), (4, 5, 0), (1, 1, 0)]:
        a, b, z = operands(rng, m, n, k, False, False, dtype)
        for act, param in ACTIVATIONS:
            az = activated(z, act, param)
            want = unfused(a, b, z, az, False, False, act, param)
            assert_fused_equal(a, b, z, az, False, False, act, param, want, f"{act} {(m, n, k)}")


def test_bad_arguments_name_what_is_wrong():
    a, b = np.ones((4, 3)), np.ones((3, 5))
    z, az, dx, dz = (np.zeros((4, 5)) for _ in range(4))
    with pytest.raises(ValueError, match="gemm_act_backward: shape mismatch"):
        _core.gemm_act_backward(a, b, z, az, np.zeros((4, 4)), dz)
    with pytest.raises(ValueError, match="act_z is"):
        _core.gemm_act_backward(a, b, z, np.zeros((4, 6)), dx, dz)
    with pytest.raises(ValueError, match="dz overlaps z"):
        _core.gemm_act_backward(a, b, z, az, dx, z)
    shared = np.zeros(21)
    with pytest.raises(ValueError, match="dz overlaps dx"):   # dz may be dx, not part of it
        _core.gemm_act_backward(a, b, z, az, shared[:20].reshape(4, 5), shared[1:].reshape(4, 5))
    with pytest.raises(ValueError, match="unknown activation|activation"):
        _core.gemm_act_backward(a, b, z, az, dx, dz, activation="nope")
