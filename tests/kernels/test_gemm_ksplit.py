"""The GEMM driver's parallel K split (csrc/kernels/gemm.hpp, "The K split"; gemm_team.hpp):
where C has too few tiles for the team, groups of threads compute whole K blocks into
accumulators and C is finished from them in block order. Its contract is the driver's:
the same bits as on one thread, for every team, ISA, dtype, transpose, alpha and beta,
with the fused bias + activation epilogue and with a pre-packed B (the predictor).

The products here are far below the GEMM's parallel grain, so every test runs with the
grain replaced (_testing.set_grain_override) and on up to 16 threads: oversubscribed on a
small machine, which changes the speed, never the bits. _testing.last_gemm_k_groups says
over how many K groups the latest GEMM split its K blocks (1: none), so the tests know the
split ran.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import oracle
from fastmlp import _core
from test_gemm import assert_gemm_close, operands

THREADS = (1, 2, 3, 4, 8, 16)
# Small C (a 10-wide output layer's dW, a row, one edge tile, three tile rows of 10
# columns) with 2, 3, 4 and 4 K blocks (257 = 129 + 128; 784 = 4 x 196).
SMALL_C = [(10, 128), (1, 7), (7, 17), (33, 10)]
KS = (257, 513, 784, 1024)
TRANS = [(False, False), (False, True), (True, False), (True, True)]
TRANS_IDS = ["NN", "NT", "TN", "TT"]


@pytest.fixture(autouse=True)
def _every_product_parallel():
    if not _core.backend_info()["openmp"]:
        pytest.skip("built without OpenMP")
    _core._testing.set_grain_override(1)
    yield
    _core._testing.set_grain_override(0)


def k_groups() -> int:
    return _core._testing.last_gemm_k_groups()


def check_groups(groups: dict, k: int, label: str) -> None:
    """{threads: K groups}: never more groups than threads or K blocks, one on one thread;
    with 16 threads and 4 K blocks every small C here is split."""
    kblocks = -(-k // 256)
    for t, g in groups.items():
        assert 1 <= g <= min(t, kblocks), f"{label}: {g} K groups on {t} threads, {kblocks} K blocks"
    assert groups[1] == 1, f"{label}: a K split on one thread"
    if kblocks == 4:
        assert groups[16] > 1, f"{label}: no K split on 16 threads ({groups})"


def gemm_on(nthreads, t, a, b, c0, ta, tb, alpha, beta):
    c = c0.copy()
    with nthreads(t):
        _core.gemm(a, b, c, ta, tb, alpha, beta)
        assert _core._testing.last_team_size() == t, f"{t} threads asked"
    return c, k_groups()


@pytest.mark.parametrize("ta,tb", TRANS, ids=TRANS_IDS)
def test_k_split_gives_the_one_thread_bits(ta, tb, dtype, isa, nthreads):
    """alpha 1 and beta 0 (C starts as NaN: never read), and alpha -1.25 with beta 0.5."""
    rng = np.random.default_rng(31)
    split_ran = 0
    for (m, n), k in itertools.product(SMALL_C, KS):
        a, b = operands(rng, m, n, k, ta, tb, dtype)
        for alpha, beta in [(1.0, 0.0), (-1.25, 0.5)]:
            c0 = np.full((m, n), np.nan, dtype) if beta == 0 else rng.standard_normal((m, n)).astype(dtype)
            out, groups = {}, {}
            for t in THREADS:
                out[t], groups[t] = gemm_on(nthreads, t, a, b, c0, ta, tb, alpha, beta)
            label = f"{isa} {(m, n, k)} alpha={alpha} beta={beta}"
            check_groups(groups, k, label)
            split_ran += sum(g > 1 for g in groups.values())
            oracle.assert_same_bits({f"{t} threads": out[t] for t in THREADS})
            assert_gemm_close(out[16], a, b, c0, ta, tb, alpha, beta, label)
    assert split_ran > 0


def test_zero_alpha_and_negative_zero_keep_their_bits(dtype, isa, nthreads):
    """alpha 0 with beta 0 gives signed zeros from the accumulators (0 * acc), beta -1 flips
    C: the finish pass's epilogue is the microkernel's, sign of zero included."""
    rng = np.random.default_rng(32)
    m, n, k = 7, 17, 1024
    a, b = operands(rng, m, n, k, False, False, dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    c0[0, :3] = [0.0, -0.0, np.inf]
    for alpha, beta in [(0.0, 0.0), (-0.0, -1.0), (2.0, -1.0)]:
        out = {t: gemm_on(nthreads, t, a, b, c0, False, False, alpha, beta) for t in (1, 4, 16)}
        assert out[16][1] > 1, "no K split on 16 threads"
        oracle.assert_same_bits({f"{t} threads": out[t][0] for t in out})


# ---------------------------------------------------------------------------------
# The fused bias + activation epilogue, and a pre-packed B (the predictor)
# ---------------------------------------------------------------------------------

ACTIVATIONS = [("relu", 0.0), ("tanh", 0.0), ("elu", 1.0), ("leaky_relu", 0.2), ("linear", 0.0)]


def fused_on(nthreads, t, a, b, bias, ta, tb, act, param, same):
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    z = np.full((m, n), np.nan, a.dtype)
    out = z if same else np.full_like(z, np.nan)
    with nthreads(t):
        _core.gemm_bias_act(a, b, bias, z, out, ta, tb, act, param)
    return (z, out), k_groups()


def unfused(nthreads, a, b, bias, ta, tb, act, param):
    """gemm then bias_act_forward on one thread: what the fused kernel equals bit for bit."""
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    z = np.full((m, n), np.nan, a.dtype)
    out = np.full_like(z, np.nan)
    with nthreads(1):
        _core.gemm(a, b, z, ta, tb, 1.0, 0.0)
        _core.bias_act_forward(z, bias, out, act, param)
    return z, out


@pytest.mark.parametrize("act,param", ACTIVATIONS, ids=[a for a, _ in ACTIVATIONS])
def test_k_split_with_the_fused_epilogue(act, param, dtype, isa, nthreads):
    rng = np.random.default_rng(33)
    for ((m, n), k), (ta, tb) in itertools.product(itertools.product(SMALL_C, (257, 784)),
                                                   [(False, True), (True, False)]):
        a, b = operands(rng, m, n, k, ta, tb, dtype)
        bias = rng.standard_normal(n).astype(dtype)
        want = unfused(nthreads, a, b, bias, ta, tb, act, param)
        groups = {}
        for t in THREADS:
            got, groups[t] = fused_on(nthreads, t, a, b, bias, ta, tb, act, param, same=False)
            oracle.assert_same_bits({f"fused z, {t} threads": got[0], "gemm + bias_act z": want[0]})
            oracle.assert_same_bits({f"fused out, {t} threads": got[1], "gemm + bias_act out": want[1]})
        check_groups(groups, k, f"{isa} {act} {(m, n, k)}")
        # out is z: it holds act(z) alone (z itself for linear)
        got, _ = fused_on(nthreads, 16, a, b, bias, ta, tb, act, param, same=True)
        oracle.assert_same_bits({"fused z = out": got[0], "gemm + bias_act": want[1]})


@pytest.mark.parametrize("act,param", [("relu", 0.0), ("linear", 0.0)], ids=["relu", "linear"])
def test_k_split_with_a_pre_packed_b(act, param, dtype, isa, nthreads):
    """The predictor's Dense forward (gemm_bias_act_packed: W packed once) on a few rows of
    a wide input and a 10-unit layer: the K split reads the packed panels in place."""
    rng = np.random.default_rng(34)
    for rows, features in [(1, 1024), (7, 784), (33, 513)]:
        units = 10
        params = rng.standard_normal(units * features + units).astype(dtype)
        core = _core.Predictor(params, oracle.dense_program(params, units, features, act, param), "mse")
        x = rng.standard_normal((rows, features)).astype(dtype)
        w = params[:units * features].reshape(units, features)
        want = unfused(nthreads, x, w, params[units * features:], False, True, act, param)[1]
        groups = {}
        for t in THREADS:
            got = np.full((rows, units), np.nan, dtype)
            with nthreads(t):
                assert core.run(x, 0, rows, got) is True
            groups[t] = k_groups()
            oracle.assert_same_bits({f"predictor, {t} threads": got, "gemm + bias_act": want})
        check_groups(groups, features, f"{isa} predictor {rows} x {features} -> {units}")


# ---------------------------------------------------------------------------------
# The test hooks
# ---------------------------------------------------------------------------------

def test_the_hooks_live_in_testing_and_the_grain_override_is_undone(nthreads):
    for name in ("last_gemm_k_groups", "set_grain_override"):
        assert callable(getattr(_core._testing, name)), name
        assert not hasattr(_core, name), f"_core.{name} should be in _core._testing only"
    a = np.ones((10, 257), np.float32)
    b = np.ones((257, 7), np.float32)
    c = np.empty((10, 7), np.float32)
    with nthreads(4):
        _core.gemm(a, b, c, False, False, 1.0, 0.0)
        assert _core._testing.last_team_size() == 4, "the override gives every product threads"
        _core._testing.set_grain_override(0)
        _core.gemm(a, b, c, False, False, 1.0, 0.0)
        assert _core._testing.last_team_size() == 1, "18k multiply-adds ran on a team"
        assert k_groups() == 1
