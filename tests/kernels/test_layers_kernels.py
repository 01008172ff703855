"""Layer kernels (dropout and mul, maxout, batch normalization, weighted losses, weight
penalties; csrc/kernels/{dropout,maxout,batchnorm,regularization,losses}.hpp) against
the NumPy backend on every ISA and both dtypes, plus thread-count independence and the
bindings' argument checks. The NumPy backend mirrors each kernel's evaluation order, so
most comparisons are bit for bit; accuracy against float64/long double uses the
tolerance table (tests/tolerances.py). The NumPy backend itself is checked against
finite differences and an independent definition in tests/reference/test_layer_oracle.py.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

import oracle
from fastmlp import _core
from fastmlp.backends import NumPyBackend

_TESTS = str(pathlib.Path(__file__).resolve().parents[1])   # tests/: the tolerance table
if _TESTS not in sys.path:
    sys.path.append(_TESTS)
from helpers import assert_close  # noqa: E402

NP = NumPyBackend()
LD = np.longdouble
same_bits = oracle.assert_same_bits


def _pair(native, numpy):
    same_bits({"native": native, "numpy": numpy})


# =====================================================================================
# Dropout and mul
# =====================================================================================

DROP_SHAPES = [(0, 7), (1, 1), (7, 17), (17, 7), (33, 257), (257, 33)]
# (rate, seed, layer, step): zeros, small, the uint64 extremes
DROP_CASES = [(0.0, 0, 0, 0), (0.1, 1, 2, 3), (0.5, 2**64 - 1, 2**63, 2**64 - 1),
              (0.9, 12345, 7, 1 << 40), (2.0**-24, 5, 0, 9), (1 - 2.0**-24, 5, 0, 9)]


def _x_with_nans(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    if x.size:
        x.ravel()[rng.integers(0, x.size, max(1, x.size // 50))] = np.nan
    return x


def _dropout(backend, x, rate, seed, layer, step):
    y = np.full_like(x, 7.0)
    mask = np.full_like(x, 7.0)
    backend(x, y, mask, rate, seed, layer, step)
    return y, mask


def test_dropout_matches_oracle_bit_for_bit(isa, dtype):
    for i, shape in enumerate(DROP_SHAPES):
        x = _x_with_nans(shape, dtype, i)
        for rate, seed, layer, step in DROP_CASES:
            native = _dropout(_core.dropout_forward, x, rate, seed, layer, step)
            _pair(native, _dropout(NP.dropout_forward, x, rate, seed, layer, step))
            y, mask = native
            scale = dtype.type(1.0 / (1.0 - rate))
            assert np.isin(mask, [0, scale]).all(), (shape, rate)
            assert np.array_equal(np.isnan(y), np.isnan(x)), "NaN in x must stay NaN in y"


_M64 = (1 << 64) - 1


def _splitmix64_int(x: int) -> int:
    """The definition (base.py) on Python ints, independent of both backends."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _u_int(n, seed, layer, step):
    key = _splitmix64_int(_splitmix64_int(_splitmix64_int(seed) ^ layer) ^ step)
    return np.array([(_splitmix64_int(key ^ i) >> 40) * 2.0**-24 for i in range(n)])


def test_dropout_keep_boundary_is_u_greater_equal_rate(isa, dtype):
    """rate equal to an element's u keeps it (u >= rate); the next double above drops
    it. This pins the kernel's integer threshold ceil(rate * 2^24) to the definition."""
    x = np.ones(999, dtype)
    u = _u_int(x.size, 3, 1, 4)
    j = int(np.argsort(u)[x.size // 2])
    for rate, kept in ((u[j], True), (float(np.nextafter(u[j], 2)), False),
                       (float(np.nextafter(u[j], -1)), True)):
        _, mask = _dropout(_core.dropout_forward, x, rate, 3, 1, 4)
        assert (mask[j] != 0) == kept, (rate, u[j])
        assert np.array_equal(mask != 0, u >= rate)
        _pair(mask, _dropout(NP.dropout_forward, x, rate, 3, 1, 4)[1])


def test_dropout_rate_zero_keeps_everything(isa, dtype):
    x = _x_with_nans((33, 257), dtype, 5)
    y, mask = _dropout(_core.dropout_forward, x, 0.0, 99, 1, 2)
    assert (mask == 1).all()
    same_bits({"y": y, "x": x})


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropped_fraction_within_three_sigma(rate):
    n = 1 << 20
    x = np.ones(n, np.float32)
    _, mask = _dropout(_core.dropout_forward, x, rate, 2024, 3, 17)
    dropped = float((mask == 0).mean())
    sigma = (rate * (1 - rate) / n) ** 0.5
    assert abs(dropped - rate) <= 3 * sigma, (dropped, rate, sigma)
    assert (mask[mask != 0] == np.float32(1 / (1 - rate))).all()
    # masks of other steps, layers and seeds are independent draws: agreement with this
    # one is rate^2 + (1 - rate)^2 within 3 sigma
    p = rate**2 + (1 - rate) ** 2
    for other in [(2024, 3, 18), (2024, 4, 17), (2025, 3, 17)]:
        _, m2 = _dropout(_core.dropout_forward, x, rate, *other)
        agree = float(((mask == 0) == (m2 == 0)).mean())
        assert abs(agree - p) <= 3 * (p * (1 - p) / n) ** 0.5, (other, agree, p)


def test_dropout_in_place_and_mul(isa, dtype):
    x = _x_with_nans((17, 33), dtype, 6)
    want_y, want_mask = _dropout(_core.dropout_forward, x, 0.3, 1, 2, 3)
    y, mask = x.copy(), np.empty_like(x)
    _core.dropout_forward(y, y, mask, 0.3, 1, 2, 3)                  # y is x
    same_bits({"separate": (want_y, want_mask), "in place": (y, mask)})
    # backward: dx = dy * mask, elementwise, any shape, in place allowed
    dy = _x_with_nans((17, 33), dtype, 7)
    for shape in [(17, 33), (561,), (3, 11, 17)]:
        a, b = dy.reshape(shape), mask.reshape(shape)
        out = np.full_like(a, 7.0)
        _core.mul(a, b, out)
        want = np.empty_like(a)
        NP.mul(a, b, want)
        _pair(out, want)
        same_bits({"mul": out, "product": a * b})
    a = dy.copy()
    _core.mul(a, mask, a)
    same_bits({"in place": a, "product": dy * mask})


@pytest.mark.parametrize("shape", [(1, 1), (7, 17), (17, 7), (33, 257), (257, 33)])
def test_dropout_of_a_shard_is_its_rows_of_the_batch_mask(isa, dtype, shape):
    """A data-parallel shard (fastmlp.distributed) gives its rows' offset: its mask is
    those rows of the whole batch's, on the kernel (``first``, a flat index), both
    backends (``first_row``) and at every offset, the last rows and an empty shard too."""
    from fastmlp.backends.native import NativeBackend
    x = _x_with_nans(shape, dtype, 5)
    rate, key = 0.35, (11, 2, 2**40 + 3)
    whole = _dropout(_core.dropout_forward, x, rate, *key)
    m, n = shape
    for lo, hi in {(0, m), (m // 3, m // 3 + (m + 2) // 3), (m - 1, m), (m, m)}:
        shard = x[lo:hi]
        want = (whole[0][lo:hi], whole[1][lo:hi])
        _pair(_dropout(lambda *a: _core.dropout_forward(*a, first=lo * n), shard, rate, *key),
              want)
        for backend in (NP, NativeBackend()):
            got = _dropout(lambda *a: backend.dropout_forward(*a, first_row=lo), shard, rate,
                           *key)
            same_bits({"shard": got, "whole batch's rows": want})
    with pytest.raises(ValueError, match="first must be >= 0"):
        _core.dropout_forward(x, np.empty_like(x), np.empty_like(x), rate, *key, first=-1)


def test_dropout_identical_across_isas(dtype, every_isa):
    x = _x_with_nans((61, 67), dtype, 8)
    same_bits(every_isa(lambda: _dropout(_core.dropout_forward, x, 0.4, 7, 8, 9)))


@pytest.mark.parametrize("bad, error, pattern", [
    (dict(rate=1.0), ValueError, r"0 <= rate < 1"),
    (dict(rate=-0.1), ValueError, r"0 <= rate < 1"),
    (dict(rate=float("nan")), ValueError, r"0 <= rate < 1"),
    (dict(seed=-1), ValueError, r"0 <= seed < 2\*\*64"),
    (dict(layer=2**64), ValueError, r"0 <= layer < 2\*\*64"),
    (dict(step=1.0), TypeError, r"step must be an int"),
    (dict(seed=True), TypeError, r"seed must be an int"),
    (dict(seed="1"), TypeError, r"seed must be an int"),
])
@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_dropout_scalar_arguments_are_validated(backend, bad, error, pattern):
    args = dict(rate=0.5, seed=1, layer=2, step=3)
    args.update(bad)
    x = np.ones((2, 3), np.float32)
    fn = _core.dropout_forward if backend == "native" else NP.dropout_forward
    with pytest.raises(error, match=pattern):
        fn(x, np.empty_like(x), np.empty_like(x), args["rate"], args["seed"], args["layer"],
           args["step"])


def test_dropout_accepts_numpy_integers():
    x = np.ones((2, 3), np.float32)
    a = _dropout(_core.dropout_forward, x, 0.5, np.uint64(2**64 - 1), np.int64(3), np.uint8(4))
    b = _dropout(_core.dropout_forward, x, 0.5, 2**64 - 1, 3, 4)
    same_bits({"numpy ints": a, "ints": b})


# =====================================================================================
# Maxout
# =====================================================================================

MAXOUT_SHAPES = [(0, 3, 2), (1, 1, 1), (1, 7, 3), (7, 17, 2), (33, 7, 5), (257, 1, 4), (17, 33, 3)]


def _maxout_z(rows, units, k, dtype, seed):
    """Small integers, so ties are common; -0 next to +0; NaN sprinkled."""
    rng = np.random.default_rng(seed)
    z = rng.integers(-2, 3, (rows, units * k)).astype(dtype)
    z[rng.random(z.shape) < 0.15] = -0.0
    z[rng.random(z.shape) < 0.05] = np.nan
    return z


def _maxout(backend_fwd, backend_bwd, z, units, da):
    rows = z.shape[0]
    a = np.full((rows, units), 7.0, z.dtype)
    argmax = np.full((rows, units), -7, np.int32)
    backend_fwd(z, a, argmax)
    dz = np.full_like(z, 7.0)
    backend_bwd(da, argmax, dz)
    return a, argmax, dz


def test_maxout_matches_oracle_bit_for_bit(isa, dtype):
    for i, (rows, units, k) in enumerate(MAXOUT_SHAPES):
        z = _maxout_z(rows, units, k, dtype, i)
        da = _x_with_nans((rows, units), dtype, 100 + i)
        native = _maxout(_core.maxout_forward, _core.maxout_backward, z, units, da)
        _pair(native, _maxout(NP.maxout_forward, NP.maxout_backward, z, units, da))
        a, argmax, dz = native
        pieces = z.reshape(rows, units, k)
        assert ((argmax >= 0) & (argmax < k)).all()
        assert np.array_equal(np.isnan(a), np.isnan(pieces).any(axis=2)), "NaN must propagate"
        # dz: da at the winner, exact zeros (+0) elsewhere
        d3 = dz.reshape(rows, units, k)
        winner = np.arange(k)[None, None, :] == argmax[..., None]
        same_bits({"winner": d3[winner], "da": da.ravel()})
        assert (d3[~winner] == 0).all() and not np.signbit(d3[~winner]).any()


def test_maxout_hand_worked(isa, dtype):
    nan = np.nan
    z = np.array([[1, 3, 3, 2,   nan, 5, nan, 1,   -0.0, 0.0, -1, -0.0,   4, 4, 4, 4],
                  [2, 1, 0, -1,  5, nan, 9, 9,     0.0, -0.0, 0.0, -5,    -1, -2, -1, nan]], dtype)
    a = np.empty((2, 4), dtype)
    argmax = np.empty((2, 4), np.int32)
    _core.maxout_forward(z, a, argmax)
    assert argmax.tolist() == [[1, 0, 0, 0], [0, 1, 0, 3]]
    same_bits({"a": a, "want": np.array([[3, nan, -0.0, 4], [2, nan, 0.0, nan]], dtype)})
    dz = np.empty_like(z)
    _core.maxout_backward(np.array([[1, 2, 3, 4], [5, 6, 7, 8]], dtype), argmax, dz)
    want = np.zeros_like(z)
    want[0, [1, 4, 8, 12]] = [1, 2, 3, 4]
    want[1, [0, 5, 8, 15]] = [5, 6, 7, 8]
    same_bits({"dz": dz, "want": want})


def test_maxout_identical_across_isas(dtype, every_isa):
    z = _maxout_z(40, 9, 3, dtype, 11)
    da = _x_with_nans((40, 9), dtype, 12)
    same_bits(every_isa(lambda: _maxout(_core.maxout_forward, _core.maxout_backward, z, 9, da)))


# =====================================================================================
# Batch normalization
# =====================================================================================

BN_SHAPES = [(1, 1), (1, 33), (7, 17), (17, 7), (33, 257), (257, 33), (257, 1), (7, 0)]


def _bn_inputs(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    m, n = shape
    # an offset per column, so the two-pass variance matters
    x = (rng.standard_normal(shape) * 3 + rng.uniform(-50, 50, n)).astype(dtype)
    gamma = rng.uniform(0.5, 2.0, n).astype(dtype)
    beta = rng.standard_normal(n).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, gamma, beta, dy


def _bn_train(fn, x, gamma, beta, eps):
    m, n = x.shape
    y, xhat = np.full_like(x, 7.0), np.full_like(x, 7.0)
    mean, inv_std = np.full(n, 7.0, x.dtype), np.full(n, 7.0, x.dtype)
    fn(x, gamma, beta, y, xhat, mean, inv_std, eps)
    return y, xhat, mean, inv_std


def _bn_backward(fn, dy, xhat, gamma, inv_std):
    n = dy.shape[1]
    dx = np.full_like(dy, 7.0)
    dgamma, dbeta = np.full(n, 7.0, dy.dtype), np.full(n, 7.0, dy.dtype)
    fn(dy, xhat, gamma, inv_std, dx, dgamma, dbeta)
    return dx, dgamma, dbeta


def _bn_infer(fn, x, gamma, beta, mean, var, eps):
    y = np.full_like(x, 7.0)
    fn(x, gamma, beta, mean, var, eps, y)
    return y


def test_batchnorm_matches_oracle_bit_for_bit(isa, dtype):
    for i, shape in enumerate(BN_SHAPES):
        x, gamma, beta, dy = _bn_inputs(shape, dtype, i)
        for eps in (1e-5, 1e-3):
            train = _bn_train(_core.batchnorm_forward_train, x, gamma, beta, eps)
            _pair(train, _bn_train(NP.batchnorm_forward_train, x, gamma, beta, eps))
            _, xhat, mean, inv_std = train
            back = _bn_backward(_core.batchnorm_backward, dy, xhat, gamma, inv_std)
            _pair(back, _bn_backward(NP.batchnorm_backward, dy, xhat, gamma, inv_std))
            var = np.abs(np.random.default_rng(i).standard_normal(shape[1])).astype(dtype)
            infer = _bn_infer(_core.batchnorm_forward_infer, x, gamma, beta, mean, var, eps)
            _pair(infer, _bn_infer(NP.batchnorm_forward_infer, x, gamma, beta, mean, var, eps))


def _bn_exact(x, gamma, beta, dy, eps):
    """The formulas in long double, from the (exactly converted) inputs."""
    x, gamma, beta, dy = (np.asarray(a).astype(LD) for a in (x, gamma, beta, dy))
    m = x.shape[0]
    mean = x.mean(axis=0)
    var = ((x - mean) ** 2).mean(axis=0)
    inv_std = 1 / np.sqrt(var + LD(eps))
    xhat = (x - mean) * inv_std
    y = gamma * xhat + beta
    dbeta = dy.sum(axis=0)
    dgamma = (dy * xhat).sum(axis=0)
    dx = gamma * inv_std / m * (m * dy - dbeta - xhat * dgamma)
    return dict(y=y, xhat=xhat, mean=mean, inv_std=inv_std, dx=dx, dgamma=dgamma, dbeta=dbeta)


@pytest.mark.parametrize("shape", [(7, 17), (33, 257), (257, 33)])
def test_batchnorm_accuracy_against_long_double(shape, dtype, isa):
    x, gamma, beta, dy = _bn_inputs(shape, dtype, 3)
    eps = 1e-3
    y, xhat, mean, inv_std = _bn_train(_core.batchnorm_forward_train, x, gamma, beta, eps)
    dx, dgamma, dbeta = _bn_backward(_core.batchnorm_backward, dy, xhat, gamma, inv_std)
    exact = _bn_exact(x, gamma, beta, dy, eps)
    got = dict(y=y, xhat=xhat, mean=mean, inv_std=inv_std, dx=dx, dgamma=dgamma, dbeta=dbeta)
    for name, value in got.items():
        assert_close(value, exact[name].astype(np.float64), "batchnorm", dtype)
    # inference with the exact batch statistics (rounded to the dtype) gives y again
    var = ((x.astype(LD) - exact["mean"]) ** 2).mean(axis=0).astype(dtype)
    y_inf = _bn_infer(_core.batchnorm_forward_infer, x, gamma, beta, mean, var, eps)
    assert_close(y_inf, exact["y"].astype(np.float64), "batchnorm", dtype)


def test_batchnorm_nan_stays_in_its_column(isa, dtype):
    x, gamma, beta, dy = _bn_inputs((33, 40), dtype, 9)
    x[3, 5] = np.nan
    y, xhat, mean, inv_std = _bn_train(_core.batchnorm_forward_train, x, gamma, beta, 1e-5)
    col = np.zeros(40, bool)
    col[5] = True
    for a in (y, xhat):
        assert np.isnan(a[:, col]).all() and np.isfinite(a[:, ~col]).all()
    for v in (mean, inv_std):
        assert np.isnan(v[col]).all() and np.isfinite(v[~col]).all()
    dy[2, 9] = np.nan
    dx, dgamma, dbeta = _bn_backward(_core.batchnorm_backward, dy, xhat, gamma, inv_std)
    bad = col.copy()
    bad[9] = True
    assert np.isnan(dx[:, bad]).all() and np.isfinite(dx[:, ~bad]).all()
    assert np.isnan(dgamma[bad]).all() and np.isfinite(dgamma[~bad]).all()
    assert np.isnan(dbeta[9]) and np.isfinite(np.delete(dbeta, [5, 9])).all()
    var = np.ones(40, dtype)
    var[7] = np.nan
    y = _bn_infer(_core.batchnorm_forward_infer, x, gamma, beta, mean, var, 1e-5)
    assert np.isnan(y[:, [5, 7]]).all() and np.isfinite(np.delete(y, [5, 7], axis=1)).all()


def test_batchnorm_infer_in_place_and_empty_batch(isa, dtype):
    x, gamma, beta, _ = _bn_inputs((17, 9), dtype, 10)
    mean = np.linspace(-1, 1, 9).astype(dtype)
    var = np.linspace(0.5, 2, 9).astype(dtype)
    want = _bn_infer(_core.batchnorm_forward_infer, x, gamma, beta, mean, var, 1e-5)
    y = x.copy()
    _core.batchnorm_forward_infer(y, gamma, beta, mean, var, 1e-5, y)
    same_bits({"in place": y, "separate": want})
    empty = np.empty((0, 9), dtype)
    _core.batchnorm_forward_infer(empty, gamma, beta, mean, var, 1e-5, np.empty_like(empty))


def test_batchnorm_needs_a_row():
    x = np.empty((0, 3), np.float32)
    v = np.ones(3, np.float32)
    for fn in (_core.batchnorm_forward_train, NP.batchnorm_forward_train):
        with pytest.raises(ValueError, match=r"at least one row.*\(0, 3\)"):
            fn(x, v, v, np.empty_like(x), np.empty_like(x), v.copy(), v.copy(), 1e-5)
    for fn in (_core.batchnorm_backward, NP.batchnorm_backward):
        with pytest.raises(ValueError, match=r"at least one row.*\(0, 3\)"):
            fn(x, x.copy(), v, v, np.empty_like(x), v.copy(), v.copy())


def test_batchnorm_identical_across_isas(dtype, every_isa):
    x, gamma, beta, dy = _bn_inputs((50, 70), dtype, 13)
    def run():
        train = _bn_train(_core.batchnorm_forward_train, x, gamma, beta, 1e-5)
        back = _bn_backward(_core.batchnorm_backward, dy, train[1], gamma, train[3])
        infer = _bn_infer(_core.batchnorm_forward_infer, x, gamma, beta, train[2], train[3], 1e-5)
        return train + back + (infer,)
    same_bits(every_isa(run))


# =====================================================================================
# Weighted losses
# =====================================================================================

LOSSES = oracle.LOSSES


def _loss_case(name, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    m, k = shape
    if name == "softmax_cross_entropy":
        y = np.eye(k, dtype=dtype)[rng.integers(0, k, m)]
    elif name == "binary_cross_entropy":
        y = (rng.random(shape) < 0.5).astype(dtype)
    else:
        y = rng.standard_normal(shape).astype(dtype)
    return z, y


def _wloss(fn, name, z, y, scale, weights):
    grad = np.full_like(z, np.nan)
    kwargs = {} if weights is None else {"weights": weights}
    return np.array(fn(name, z, y, grad, scale, **kwargs)), grad


@pytest.mark.parametrize("name", LOSSES)
def test_weights_of_one_equal_the_unweighted_loss_bitwise(name, dtype, isa):
    for seed, shape in enumerate([(1, 1), (7, 3), (70, 5), (257, 17), (130, 33)]):
        z, y = _loss_case(name, shape, dtype, seed)
        ones = np.ones(shape[0], dtype)
        plain = _wloss(_core.loss, name, z, y, 1 / shape[0], None)
        same_bits({"weights=None": plain, "weights=1": _wloss(_core.loss, name, z, y, 1 / shape[0], ones)})
        # the NumPy backend too, and its default path is unchanged
        np_plain = _wloss(NP.loss, name, z, y, 1 / shape[0], None)
        same_bits({"weights=None": np_plain, "weights=1": _wloss(NP.loss, name, z, y, 1 / shape[0], ones)})


@pytest.mark.parametrize("name", LOSSES)
def test_weight_two_equals_a_duplicated_row(name, dtype, isa):
    z, y = _loss_case(name, (70, 5), dtype, 21)
    r = 3
    w = np.ones(70, dtype)
    w[r] = 2
    value, grad = _wloss(_core.loss, name, z, y, 0.25, w)
    zd, yd = np.insert(z, r, z[r], axis=0), np.insert(y, r, y[r], axis=0)
    value_d, grad_d = _wloss(_core.loss, name, zd, yd, 0.25, None)
    assert_close(value, value_d, "reordered_double_sum", dtype)
    same_bits({"weighted row": grad[r], "duplicate x 2": 2 * grad_d[r]})
    same_bits({"weighted row": grad[r], "duplicates added": grad_d[r] + grad_d[r + 1]})
    same_bits({"other rows": np.delete(grad, r, axis=0), "duplicated": np.delete(grad_d, [r, r + 1], axis=0)})


@pytest.mark.parametrize("name", LOSSES)
def test_weighted_loss_matches_oracle(name, dtype, isa):
    for seed, shape in enumerate([(1, 2), (7, 3), (70, 5), (257, 17)]):
        z, y = _loss_case(name, shape, dtype, seed)
        w = np.random.default_rng(seed).uniform(0, 3, shape[0]).astype(dtype)
        w[0] = 0 if shape[0] > 1 else 0.5                     # a weight of 0: no gradient
        scale = 1 / float(w.sum() + 1)
        value, grad = _wloss(_core.loss, name, z, y, scale, w)
        # the definition: sum_i w_i loss_i and grad row i = scale * w_i * d loss_i, from
        # the long-double oracle of the unweighted loss, row by row
        rows = [oracle.loss(name, z[i:i + 1], y[i:i + 1], scale) for i in range(shape[0])]
        want_value = sum(float(w[i]) * rows[i][0] for i in range(shape[0]))
        want_grad = np.concatenate([float(w[i]) * rows[i][1] for i in range(shape[0])])
        assert_close(value, want_value, "weighted_loss", dtype)
        assert_close(grad, want_grad.astype(np.float64), "weighted_loss", dtype)
        np_value, np_grad = _wloss(NP.loss, name, z, y, scale, w)
        assert_close(np_value, want_value, "weighted_loss", dtype)
        assert_close(np_grad, want_grad.astype(np.float64), "weighted_loss", dtype)
        assert (grad[0] == 0).all() or shape[0] == 1


def test_weighted_loss_argument_errors():
    z = np.ones((4, 3), np.float32)
    g = np.empty_like(z)
    for fn in (_core.loss, NP.loss):
        with pytest.raises(ValueError, match=r"logits is \(4, 3\), weights is \(5,\)"):
            fn("mse", z, z, g, 1.0, weights=np.ones(5, np.float32))
        with pytest.raises(TypeError, match="float64"):
            fn("mse", z, z, g, 1.0, weights=np.ones(4, np.float64))
    with pytest.raises(ValueError, match="weights must be 1-D"):
        _core.loss("mse", z, z, g, 1.0, weights=np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match="weights must be C-contiguous"):
        _core.loss("mse", z, z, g, 1.0, weights=np.ones(8, np.float32)[::2])
    with pytest.raises(ValueError, match="grad overlaps weights"):
        _core.loss("mse", z, z, g, 1.0, weights=g.ravel()[:4])
    with pytest.raises(TypeError, match="weights must be a numpy array"):
        _core.loss("mse", z, z, g, 1.0, weights=[1.0, 1.0, 1.0, 1.0])


# =====================================================================================
# Regularization
# =====================================================================================

REG_SIZES = [0, 1, 7, 17, 33, 257, 40_000]     # 40 000: three blocks of 16384
REG_COEFS = [(0.0, 0.0), (0.01, 0.0), (0.0, 0.003), (0.01, 0.003), (1e-50, 0.5)]


def _w(n, dtype, seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(n).astype(dtype)
    w[rng.integers(0, n, n // 10)] = 0.0
    w[rng.integers(0, n, n // 10)] = -0.0
    return w


def _regularize(fn, w, dw0, l1, l2):
    dw = dw0.copy()
    return np.array(fn(w, dw, l1, l2)), dw


def test_regularize_matches_oracle_bit_for_bit(isa, dtype):
    for i, n in enumerate(REG_SIZES):
        w = _w(n, dtype, i)
        dw0 = np.random.default_rng(50 + i).standard_normal(n).astype(dtype)
        for l1, l2 in REG_COEFS:
            native = _regularize(_core.regularize, w, dw0, l1, l2)
            _pair(native, _regularize(NP.regularize, w, dw0, l1, l2))
            penalty, dw = native
            T = dtype.type
            if T(l1) == 0:   # l1 = 0 (or rounding to 0): dw + l2 w exactly, or untouched
                want = dw0 + T(l2) * w if T(l2) != 0 else dw0
                same_bits({"dw": dw, "dw0 + l2 w": want})
            if n and (l1 or l2):
                exact = l1 * np.abs(w.astype(LD)).sum() + LD(l2) / 2 * (w.astype(LD) ** 2).sum()
                assert_close(penalty, float(exact), "regularize_penalty", dtype)
            elif not (l1 or l2):
                assert penalty == 0.0


def test_regularize_sign_of_zero_is_zero(isa, dtype):
    """sign(+-0) = +0, so -0 + l1 sign(-0) = +0 (a sign of -0 would leave -0)."""
    w = np.array([0.0, -0.0, 1.0, -2.0, 3.5], dtype)
    for fn in (_core.regularize, NP.regularize):
        dw = np.full(5, -0.0, dtype)
        penalty = fn(w, dw, 0.5, 0.0)
        same_bits({"dw": dw, "want": np.array([0.0, 0.0, 0.5, -0.5, 0.5], dtype)})
        assert penalty == 0.5 * 6.5
        dw = np.full(5, -0.0, dtype)
        penalty = fn(w, dw, 0.0, 0.5)                     # -0 + 0.5 * -0 = -0
        same_bits({"dw": dw, "want": np.array([0.0, -0.0, 0.5, -1.0, 1.75], dtype)})
        assert penalty == 0.25 * (1 + 4 + 12.25)


def test_regularize_propagates_nan(isa, dtype):
    w = np.array([1.0, np.nan, -1.0, 0.0] * 9, dtype)
    for l1, l2 in [(0.1, 0.0), (0.0, 0.1), (0.1, 0.1)]:
        dw = np.zeros_like(w)
        penalty = _core.regularize(w, dw, l1, l2)
        assert np.isnan(penalty)
        assert np.array_equal(np.isnan(dw), np.isnan(w))


def test_regularize_identical_across_isas(dtype, every_isa):
    w = _w(20_000, dtype, 3)
    dw0 = np.random.default_rng(4).standard_normal(20_000).astype(dtype)
    same_bits(every_isa(lambda: _regularize(_core.regularize, w, dw0, 0.01, 0.003)))


# =====================================================================================
# Results do not depend on the thread count (sizes above every threshold)
# =====================================================================================

def _run_dropout(dtype):
    return _dropout(_core.dropout_forward, _x_with_nans(300_000, dtype, 1), 0.3, 5, 6, 7)


def _run_mul(dtype):
    a, b = _x_with_nans(300_000, dtype, 2), _x_with_nans(300_000, dtype, 3)
    out = np.empty_like(a)
    _core.mul(a, b, out)
    return out


def _run_maxout_forward(dtype):
    z = _maxout_z(2000, 64, 4, dtype, 4)
    a, argmax = np.empty((2000, 64), dtype), np.empty((2000, 64), np.int32)
    _core.maxout_forward(z, a, argmax)
    return a, argmax


def _run_maxout_backward(dtype):
    rng = np.random.default_rng(5)
    argmax = rng.integers(0, 4, (2000, 64)).astype(np.int32)
    dz = np.empty((2000, 256), dtype)
    _core.maxout_backward(_x_with_nans((2000, 64), dtype, 6), argmax, dz)
    return dz


def _run_bn_train(dtype):
    x, gamma, beta, _ = _bn_inputs((1000, 300), dtype, 7)
    return _bn_train(_core.batchnorm_forward_train, x, gamma, beta, 1e-5)


def _run_bn_infer(dtype):
    x, gamma, beta, _ = _bn_inputs((1000, 300), dtype, 8)
    var = np.linspace(0.1, 3, 300).astype(dtype)
    return _bn_infer(_core.batchnorm_forward_infer, x, gamma, beta, beta, var, 1e-5)


def _run_bn_backward(dtype):
    x, gamma, _, dy = _bn_inputs((1000, 300), dtype, 9)
    return _bn_backward(_core.batchnorm_backward, dy, x, gamma, gamma)


def _run_weighted_loss(dtype):
    z, y = _loss_case("softmax_cross_entropy", (30_000, 10), dtype, 10)
    w = np.random.default_rng(11).uniform(0, 2, 30_000).astype(dtype)
    return _wloss(_core.loss, "softmax_cross_entropy", z, y, 1 / 30_000, w)


def _run_regularize(dtype):
    w = _w(300_000, dtype, 12)
    return _regularize(_core.regularize, w, np.ones_like(w), 0.01, 0.003)


THREADED = {
    "dropout_forward": _run_dropout, "mul": _run_mul, "maxout_forward": _run_maxout_forward,
    "maxout_backward": _run_maxout_backward, "batchnorm_forward_train": _run_bn_train,
    "batchnorm_forward_infer": _run_bn_infer, "batchnorm_backward": _run_bn_backward,
    "weighted loss": _run_weighted_loss, "regularize": _run_regularize,
}


@pytest.mark.parametrize("kernel", THREADED)
def test_bitwise_equal_with_one_and_two_threads(kernel, dtype, nthreads):
    run = THREADED[kernel]
    with nthreads(1):
        one = run(dtype)
        assert _core._testing.last_team_size() == 1
    with nthreads(2):
        two = run(dtype)
        assert _core._testing.last_team_size() == 2, f"{kernel}: the 2-thread call ran on one thread"
    same_bits({"1 thread": one, "2 threads": two})


# =====================================================================================
# Argument checks: exact dtype, C order, writable outputs, shapes named, no overlap
# =====================================================================================

def _f32(*shape):
    return np.ones(shape, np.float32)


def _i32(*shape):
    return np.zeros(shape, np.int32)


def _readonly(x):
    x = x.copy()
    x.setflags(write=False)
    return x


CALLS = {
    # name: (function, valid arguments by name, positional order, outputs, trailing args)
    "dropout_forward": (_core.dropout_forward, lambda: {"x": _f32(4, 5), "y": _f32(4, 5), "mask": _f32(4, 5)},
                        ["x", "y", "mask"], ["y", "mask"], (0.5, 1, 2, 3)),
    "mul": (_core.mul, lambda: {"a": _f32(4, 5), "b": _f32(4, 5), "out": _f32(4, 5)},
            ["a", "b", "out"], ["out"], ()),
    "maxout_forward": (_core.maxout_forward, lambda: {"z": _f32(4, 6), "a": _f32(4, 3), "argmax": _i32(4, 3)},
                       ["z", "a", "argmax"], ["a", "argmax"], ()),
    "maxout_backward": (_core.maxout_backward, lambda: {"da": _f32(4, 3), "argmax": _i32(4, 3), "dz": _f32(4, 6)},
                        ["da", "argmax", "dz"], ["dz"], ()),
    "batchnorm_forward_train": (
        _core.batchnorm_forward_train,
        lambda: {"x": _f32(4, 5), "gamma": _f32(5), "beta": _f32(5), "y": _f32(4, 5), "xhat": _f32(4, 5),
                 "mean": _f32(5), "inv_std": _f32(5)},
        ["x", "gamma", "beta", "y", "xhat", "mean", "inv_std"], ["y", "xhat", "mean", "inv_std"], (1e-5,)),
    "batchnorm_forward_infer": (
        lambda x, gamma, beta, mean, var, y: _core.batchnorm_forward_infer(x, gamma, beta, mean, var, 1e-5, y),
        lambda: {"x": _f32(4, 5), "gamma": _f32(5), "beta": _f32(5), "mean": _f32(5), "var": _f32(5),
                 "y": _f32(4, 5)},
        ["x", "gamma", "beta", "mean", "var", "y"], ["y"], ()),
    "batchnorm_backward": (
        _core.batchnorm_backward,
        lambda: {"dy": _f32(4, 5), "xhat": _f32(4, 5), "gamma": _f32(5), "inv_std": _f32(5), "dx": _f32(4, 5),
                 "dgamma": _f32(5), "dbeta": _f32(5)},
        ["dy", "xhat", "gamma", "inv_std", "dx", "dgamma", "dbeta"], ["dx", "dgamma", "dbeta"], ()),
    "regularize": (_core.regularize, lambda: {"w": _f32(6), "dw": _f32(6)}, ["w", "dw"], ["dw"], (0.1, 0.2)),
}


def _call(name, **override):
    fn, make, order, _, extra = CALLS[name]
    args = make()
    args.update(override)
    return fn(*[args[k] for k in order], *extra)


@pytest.mark.parametrize("name", CALLS)
def test_valid_call_works(name):
    _call(name)


@pytest.mark.parametrize("name", CALLS)
def test_wrong_dtype_is_type_error(name):
    _, make, order, _, _ = CALLS[name]
    for arg in order:
        good = make()[arg]
        other = np.float64 if good.dtype == np.float32 else np.int64
        with pytest.raises(TypeError, match=np.dtype(other).name):
            _call(name, **{arg: good.astype(other)})
        with pytest.raises(TypeError):
            _call(name, **{arg: good.astype(np.int32 if good.dtype == np.float32 else np.float32)})
        with pytest.raises(TypeError):
            _call(name, **{arg: good.tolist()})


@pytest.mark.parametrize("name", CALLS)
def test_non_contiguous_is_value_error(name):
    _, make, order, _, _ = CALLS[name]
    for arg in order:
        good = make()[arg]
        strided = np.repeat(good, 2, axis=-1)[..., ::2]
        assert not strided.flags.c_contiguous and strided.shape == good.shape
        with pytest.raises(ValueError, match=f"{arg} must be C-contiguous"):
            _call(name, **{arg: strided})


@pytest.mark.parametrize("name", CALLS)
def test_read_only_output_is_value_error(name):
    _, make, _, outputs, _ = CALLS[name]
    for arg in outputs:
        with pytest.raises(ValueError, match=f"{arg} is read-only"):
            _call(name, **{arg: _readonly(make()[arg])})


@pytest.mark.parametrize("name,arg,bad,pattern", [
    ("dropout_forward", "y", _f32(4, 6), r"x is \(4, 5\), y is \(4, 6\)"),
    ("dropout_forward", "mask", _f32(20), r"mask must be 2-D, got shape \(20,\)"),
    ("mul", "b", _f32(5, 4), r"a is \(4, 5\), b is \(5, 4\)"),
    ("maxout_forward", "z", _f32(4, 7), r"z is \(4, 7\), a is \(4, 3\)"),
    ("maxout_forward", "z", _f32(5, 6), r"z is \(5, 6\), a is \(4, 3\)"),
    ("maxout_forward", "argmax", _i32(4, 2), r"a is \(4, 3\), argmax is \(4, 2\)"),
    ("maxout_backward", "dz", _f32(4, 2), r"dz is \(4, 2\), da is \(4, 3\)"),
    ("batchnorm_forward_train", "gamma", _f32(4), r"x is \(4, 5\), gamma is \(4,\)"),
    ("batchnorm_forward_train", "xhat", _f32(5, 5), r"x is \(4, 5\), xhat is \(5, 5\)"),
    ("batchnorm_forward_infer", "var", _f32(6), r"x is \(4, 5\), var is \(6,\)"),
    ("batchnorm_backward", "dbeta", _f32(3), r"dy is \(4, 5\), dbeta is \(3,\)"),
    ("batchnorm_backward", "xhat", _f32(4, 4), r"dy is \(4, 5\), xhat is \(4, 4\)"),
    ("regularize", "dw", _f32(5), r"w is \(6,\), dw is \(5,\)"),
    ("regularize", "w", _f32(2, 3), r"w must be 1-D, got shape \(2, 3\)"),
])
def test_shape_mismatch_names_the_shapes(name, arg, bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        _call(name, **{arg: bad})


def test_maxout_backward_rejects_out_of_range_argmax():
    for value in (-1, 2):
        argmax = _i32(4, 3)
        argmax[2, 1] = value
        with pytest.raises(ValueError, match=rf"argmax holds {value} at flat index 7.*pieces = 2"):
            _core.maxout_backward(_f32(4, 3), argmax, _f32(4, 6))
        with pytest.raises(ValueError, match=r"argmax holds values outside \[0, 2\)"):
            NP.maxout_backward(_f32(4, 3), argmax, _f32(4, 6))


def test_overlapping_outputs_are_value_errors():
    buf = np.ones(60, np.float32)
    x, y = buf[:20].reshape(4, 5), buf[10:30].reshape(4, 5)
    with pytest.raises(ValueError, match="y overlaps x"):
        _core.dropout_forward(x, y, _f32(4, 5), 0.5, 1, 2, 3)
    with pytest.raises(ValueError, match="mask overlaps x"):
        _core.dropout_forward(x, _f32(4, 5), x, 0.5, 1, 2, 3)
    with pytest.raises(ValueError, match="out overlaps a"):
        _core.mul(x, _f32(4, 5), y)
    with pytest.raises(ValueError, match="xhat overlaps x"):
        v = _f32(5)
        _core.batchnorm_forward_train(x, v, v, _f32(4, 5), y, _f32(5), _f32(5), 1e-5)
    with pytest.raises(ValueError, match="y overlaps xhat"):
        v = _f32(5)
        _core.batchnorm_forward_train(_f32(4, 5), v, v, x, y, _f32(5), _f32(5), 1e-5)
    with pytest.raises(ValueError, match="dx overlaps dy"):
        v = _f32(5)
        _core.batchnorm_backward(x, _f32(4, 5), v, v, y, _f32(5), _f32(5))
    with pytest.raises(ValueError, match="dw overlaps w"):
        _core.regularize(buf[:10], buf[5:15], 0.1, 0.1)
    with pytest.raises(ValueError, match="a overlaps z"):
        _core.maxout_forward(buf[:24].reshape(4, 6), buf[20:32].reshape(4, 3), _i32(4, 3))
