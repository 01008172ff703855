"""The fused GEMM epilogue, _core.gemm_bias_act: z = op(A) @ op(B) + bias, out = act(z)
(csrc/kernels/gemm.hpp, gemm_microkernel.hpp).

Its contract is bit-identity with the unfused pair it replaces, _core.gemm (alpha 1, beta 0)
then _core.bias_act_forward, on every ISA, dtype, activation, shape, transpose and thread
count: the epilogue adds the bias in the dtype and applies the same vector activation, so
the accuracy of the pair (tested against the float64 oracle in test_gemm.py and
test_elementwise.py) carries over. z and out are never read (they start as NaN here).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import oracle
from fastmlp import _core

# (name, param): every activation, and the parametrized ones with a non-default param too.
ACTIVATIONS = [*oracle.PARAM.items(), ("leaky_relu", 0.2), ("elu", 0.5)]
ACT_IDS = [f"{a}-{p}" for a, p in ACTIVATIONS]
TRANS = [(False, False), (False, True), (True, False), (True, True)]
SIZES = (1, 7, 17, 33, 257)
# (batch, n_in, n_out): the forward products of the MLP layers.
MLP = [(128, 784, 256), (128, 256, 128), (128, 128, 10), (1, 784, 256), (33, 300, 10)]


def operands(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    return a, b, bias


def unfused(a, b, bias, ta, tb, act, param, same=False):
    """gemm then bias_act_forward: the reference the fused kernel must equal bit for bit."""
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    z = np.full((m, n), np.nan, a.dtype)
    _core.gemm(a, b, z, ta, tb, 1.0, 0.0)
    out = z if same else np.full_like(z, np.nan)
    _core.bias_act_forward(z, bias, out, act, param)
    return z, out


def fused(a, b, bias, ta, tb, act, param, same=False):
    m = a.shape[1] if ta else a.shape[0]
    n = b.shape[0] if tb else b.shape[1]
    z = np.full((m, n), np.nan, a.dtype)
    out = z if same else np.full_like(z, np.nan)
    _core.gemm_bias_act(a, b, bias, z, out, ta, tb, act, param)
    return z, out


def assert_equal_pair(got, want, label):
    oracle.assert_same_bits({f"fused z {label}": got[0], "gemm + bias_act z": want[0]})
    oracle.assert_same_bits({f"fused out {label}": got[1], "gemm + bias_act out": want[1]})


def test_bitwise_equal_to_gemm_then_bias_act(dtype, isa):
    """Every activation, every (m, n, k) from SIZES and every transpose (the largest
    products only for the forward's NT, to keep the test short)."""
    rng = np.random.default_rng(21)
    for (m, n, k), (ta, tb) in itertools.product(itertools.product(SIZES, repeat=3), TRANS):
        if m * n * k > 33 * 257 * 257 and not (ta, tb) == (False, True):
            continue
        a, b, bias = operands(rng, m, n, k, ta, tb, dtype)
        product = np.full((m, n), np.nan, dtype)
        _core.gemm(a, b, product, ta, tb, 1.0, 0.0)
        for act, param in ACTIVATIONS:
            z = product.copy()
            out = np.full_like(z, np.nan)
            _core.bias_act_forward(z, bias, out, act, param)
            assert_equal_pair(fused(a, b, bias, ta, tb, act, param), (z, out),
                              f"{isa} {act} {(m, n, k, ta, tb)}")


@pytest.mark.parametrize("act,param", ACTIVATIONS, ids=ACT_IDS)
def test_mlp_shapes(act, param, dtype, isa):
    rng = np.random.default_rng(22)
    for batch, nin, nout in MLP:
        x, w, bias = operands(rng, batch, nout, nin, False, True, dtype)
        assert_equal_pair(fused(x, w, bias, False, True, act, param),
                          unfused(x, w, bias, False, True, act, param), f"{isa} {(batch, nin, nout)}")


@pytest.mark.parametrize("act,param", ACTIVATIONS, ids=ACT_IDS)
def test_out_is_z(act, param, dtype, isa):
    """out is z: it holds act(z) alone (a linear layer's forward; the fused trainer's layers
    whose backward reads only a), bit for bit the out of the pair, K split included."""
    rng = np.random.default_rng(23)
    for m, n, k in [(1, 1, 1), (7, 17, 33), (128, 10, 128), (33, 257, 300), (257, 1, 300), (40, 33, 1100)]:
        x, w, bias = operands(rng, m, n, k, False, True, dtype)
        got = fused(x, w, bias, False, True, act, param, same=True)
        assert got[0] is got[1]
        want = unfused(x, w, bias, False, True, act, param)
        oracle.assert_same_bits({f"fused out is z {isa} {act} {(m, n, k)}": got[1], "gemm + bias_act out": want[1]})


def test_k_zero_gives_act_of_bias(dtype, isa):
    bias = np.array([-1.5, 0.0, -0.0, 2.0, np.nan], dtype)
    a, b = np.zeros((3, 0), dtype), np.zeros((5, 0), dtype)
    for act, param in ACTIVATIONS:
        assert_equal_pair(fused(a, b, bias, False, True, act, param),
                          unfused(a, b, bias, False, True, act, param), f"{isa} k=0 {act}")


def test_empty_outputs(dtype):
    for m, n in [(0, 5), (5, 0)]:
        a = np.ones((m, 3), dtype)
        b = np.ones((n, 3), dtype)
        z, out = fused(a, b, np.ones(n, dtype), False, True, "relu", 0.0)
        assert z.shape == out.shape == (m, n)


# Above the parallel threshold, K split into blocks, edges in m and n; the first three
# split rows between the two threads, (3, 1024, 200) columns.
THREAD_SHAPES = [(300, 270, 600), (32, 256, 784), (1000, 33, 257), (3, 1024, 200)]


@pytest.mark.parametrize("act,param", [("relu", 0.0), ("tanh", 0.0), ("elu", 1.0), ("linear", 0.0)],
                         ids=["relu", "tanh", "elu", "linear"])
def test_thread_count_does_not_change_bits(act, param, dtype, isa, nthreads):
    if not _core.backend_info()["openmp"]:
        pytest.skip("built without OpenMP")
    rng = np.random.default_rng(24)
    for (m, n, k), (ta, tb) in itertools.product(THREAD_SHAPES, [(False, True), (True, False)]):
        a, b, bias = operands(rng, m, n, k, ta, tb, dtype)
        got = {}
        for t in (1, 2):
            with nthreads(t):
                got[t] = fused(a, b, bias, ta, tb, act, param)
            assert _core._testing.last_team_size() == t, f"{t} threads asked, {_core._testing.last_team_size()} ran"
        want = unfused(a, b, bias, ta, tb, act, param)
        assert_equal_pair(got[1], want, f"1 thread {(m, n, k, ta, tb)}")
        assert_equal_pair(got[2], want, f"2 threads {(m, n, k, ta, tb)}")


@pytest.mark.parametrize("act,param", ACTIVATIONS, ids=ACT_IDS)
def test_nan_propagates(act, param, dtype, isa):
    """A NaN in A poisons its row of z and out, a NaN in the bias its column: the
    activations keep NaN (relu is z < 0 ? 0 : z, never a max)."""
    rng = np.random.default_rng(25)
    for m, n, k in [(40, 50, 300), (128, 10, 128), (5, 7, 3)]:
        x, w, bias = operands(rng, m, n, k, False, True, dtype)
        x[m // 2, k - 1] = np.nan
        bias[n // 3] = np.nan
        z, out = fused(x, w, bias, False, True, act, param)
        for arr in (z, out):
            assert np.isnan(arr[m // 2]).all()
            assert np.isnan(arr[:, n // 3]).all()
            rest = np.delete(np.delete(arr, m // 2, axis=0), n // 3, axis=1)
            assert not np.isnan(rest).any()
        assert_equal_pair((z, out), unfused(x, w, bias, False, True, act, param), f"NaN {(m, n, k)}")


# ---------------------------------------------------------------------------------
# Argument checks (the binding's; the kernel is never reached)
# ---------------------------------------------------------------------------------

def _f32(*shape):
    return np.ones(shape, np.float32)


def test_valid_call():
    z, out = _f32(2, 4), _f32(2, 4)
    _core.gemm_bias_act(_f32(2, 3), _f32(4, 3), np.array([-4, 0, 1, 2], np.float32), z, out,
                        trans_b=True, activation="relu", param=0.0)
    assert (z == [[-1, 3, 4, 5]] * 2).all() and (out == [[0, 3, 4, 5]] * 2).all()


def test_wrong_dtype_is_type_error():
    good = [_f32(2, 3), _f32(3, 4), _f32(4), _f32(2, 4), _f32(2, 4)]
    for i in range(5):
        for bad in (good[i].astype(np.float64), good[i].astype(np.int32), good[i].tolist()):
            args = list(good)
            args[i] = bad
            with pytest.raises(TypeError):
                _core.gemm_bias_act(*args, activation="relu")


def test_non_contiguous_is_value_error():
    args = [_f32(2, 3), _f32(3, 4), _f32(4), _f32(2, 4), _f32(2, 4)]
    strided = {0: np.ones((2, 6), np.float32)[:, ::2], 1: np.asfortranarray(_f32(3, 4)),
               2: np.ones(8, np.float32)[::2], 3: np.ones((2, 8), np.float32)[:, ::2],
               4: np.ones((2, 8), np.float32)[:, ::2]}
    for i, name in enumerate(["a", "b", "bias", "z", "out"]):
        bad = list(args)
        bad[i] = strided[i]
        with pytest.raises(ValueError, match=f"{name} must be C-contiguous"):
            _core.gemm_bias_act(*bad, activation="relu")


def test_read_only_output_is_value_error():
    for i, name in [(3, "z"), (4, "out")]:
        args = [_f32(2, 3), _f32(3, 4), _f32(4), _f32(2, 4), _f32(2, 4)]
        args[i].setflags(write=False)
        with pytest.raises(ValueError, match=f"{name} is read-only"):
            _core.gemm_bias_act(*args, activation="relu")


def test_overlap_is_value_error():
    buf = np.ones(200, np.float32)
    a, b, bias = buf[:6].reshape(2, 3), buf[10:22].reshape(3, 4), buf[30:34]
    z, out = _f32(2, 4), _f32(2, 4)
    with pytest.raises(ValueError, match="z overlaps a"):
        _core.gemm_bias_act(a, b, bias, buf[2:10].reshape(2, 4), out, activation="relu")
    with pytest.raises(ValueError, match="z overlaps b"):
        _core.gemm_bias_act(a, b, bias, buf[14:22].reshape(2, 4), out, activation="relu")
    with pytest.raises(ValueError, match="z overlaps bias"):
        _core.gemm_bias_act(a, b, bias, buf[26:34].reshape(2, 4), out, activation="relu")
    with pytest.raises(ValueError, match="out overlaps a"):
        _core.gemm_bias_act(a, b, bias, z, buf[0:8].reshape(2, 4), activation="relu")
    with pytest.raises(ValueError, match="out overlaps bias"):
        _core.gemm_bias_act(a, b, bias, z, buf[33:41].reshape(2, 4), activation="relu")
    with pytest.raises(ValueError, match="out overlaps z"):
        _core.gemm_bias_act(a, b, bias, buf[50:58].reshape(2, 4), buf[54:62].reshape(2, 4),
                            activation="linear")
    for act in ("linear", "relu", "tanh"):
        _core.gemm_bias_act(a, b, bias, z, z, activation=act)  # allowed: out is z


@pytest.mark.parametrize("args,trans,pattern", [
    ((_f32(2, 3), _f32(4, 5), _f32(5), _f32(2, 5), _f32(2, 5)), {}, "shape mismatch"),
    ((_f32(2, 3), _f32(3, 5), _f32(5), _f32(2, 4), _f32(2, 4)), {}, r"z is \(2, 4\)"),
    ((_f32(2, 3), _f32(3, 5), _f32(5), _f32(2, 5), _f32(2, 4)), {}, "shape"),
    ((_f32(2, 3), _f32(3, 5), _f32(4), _f32(2, 5), _f32(2, 5)), {}, "bias must have"),
    ((_f32(3, 2), _f32(5, 3), _f32(5), _f32(2, 5), _f32(2, 5)), {"trans_a": True}, "shape mismatch"),
    ((_f32(6), _f32(3, 5), _f32(5), _f32(2, 5), _f32(2, 5)), {}, "a must be 2-D"),
    ((_f32(2, 3), _f32(3, 5), _f32(5, 1), _f32(2, 5), _f32(2, 5)), {}, "bias must be 1-D"),
])
def test_shape_mismatch_is_value_error(args, trans, pattern):
    with pytest.raises(ValueError, match=pattern):
        _core.gemm_bias_act(*args, activation="relu", **trans)


def test_unknown_activation_is_value_error():
    with pytest.raises(ValueError, match="softmax"):
        _core.gemm_bias_act(_f32(2, 3), _f32(3, 4), _f32(4), _f32(2, 4), _f32(2, 4),
                            activation="softmax")


# ---------------------------------------------------------------- pre-packed weights
def packed_forward(x, w, bias, act, param, chunk):
    """One Dense layer through _core.Predictor, which packs W^T once (pack_b) and runs
    gemm_bias_act_packed per chunk of rows: act(x @ w.T + bias)."""
    params = np.concatenate([w.ravel(), bias])
    program = oracle.dense_program(params, w.shape[0], w.shape[1], act, param)
    out = np.empty((x.shape[0], w.shape[0]), x.dtype)
    _core.Predictor(params, program, "mse").run(x, 0, chunk, out)
    return out


@pytest.mark.parametrize("act,param", [("linear", 0.0), ("relu", 0.0), ("elu", 0.5)],
                         ids=["linear", "relu", "elu-0.5"])
def test_prepacked_weights_give_the_unpacked_bits(isa, dtype, act, param):
    """The predictor's packed W^T (packed once for the active ISA) gives the bits of
    gemm_bias_act NT on the same operands, for every row count and chunk (the short
    tile rows included), and K split into one, two or three blocks."""
    rng = np.random.default_rng(11)
    for m, n, k in itertools.product((1, 2, 4, 5, 13, 33), (1, 7, 17, 33, 257), (1, 7, 257, 600)):
        x, w, bias = operands(rng, m, n, k, False, True, dtype)
        want = fused(x, w, bias, False, True, act, param)[1]
        for chunk in sorted({1, 5, m}):
            got = packed_forward(x, w, bias, act, param, chunk)
            oracle.assert_same_bits({f"packed {m}x{n}x{k} chunk {chunk}": got,
                                     "gemm_bias_act": want})
    empty = packed_forward(np.zeros((0, 9), dtype), *operands(rng, 1, 3, 9, False, True, dtype)[1:],
                           act, param, 4)
    assert empty.shape == (0, 3)
