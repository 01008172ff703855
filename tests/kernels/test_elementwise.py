"""bias_act_forward, act_backward, col_sum and sgd_update against the high-precision
oracle (tests/kernels/oracle.py) on every ISA and both dtypes, plus the bindings' argument
checks (docs/conventions.md, §6).

Errors are measured in units of the dtype's epsilon relative to a per-case scale: the
magnitude of the terms the kernel rounds (oracle.eps_error). Activations that go
through the polynomial transcendentals are measured in ulps instead, against the
bounds of test_math.ULP_TABLE.
"""
from __future__ import annotations

import numpy as np
import pytest

import activation_cases
import oracle
from fastmlp import _core

LD = np.longdouble
from test_math import ULP_TABLE

ACTS = oracle.ACTIVATIONS
PARAM = oracle.PARAM

# ---------------------------------------------------------------------------------
# Tolerances, one table (tests/tolerances.py). Forward: max error in ulps of the dtype of
# a = act(z) against the exact act of the (exactly known) biased z. Backward: max error
# in eps * scale, scale per activation as written (da, a, z are the kernel's inputs;
# sigmoid and tanh are compared with the contract's formulas of a, base.py).
# ---------------------------------------------------------------------------------
# The bounds are stated once per activation in tests/activation_cases.py (measured maxima
# beside them); these tables read them in the form the tests below and test_edge_values
# use. Forward: max error in ulps of the dtype of a = act(z) against the exact act of the
# (exactly known) biased z, times the case's amplification where it has one. Backward: max
# error in eps * scale (da, a, z are the kernel's inputs; sigmoid and tanh are compared
# with the contract's formulas of a, base.py).
CASES = activation_cases.CASES


def _forward_ulps(case) -> dict:
    b = case.forward_ulps
    if isinstance(b, str):
        return {dt: ULP_TABLE[b][dt][1] for dt in ("float32", "float64")}
    return {"float32": b[0], "float64": b[1]}


def _backward_scale(case):
    """scale_of(z, a, da, p, dtype): the case's scale, plus the case's subnormal gain in
    units of the dtype's subnormal spacing (spacing = eps * tiny)."""
    def scale_of(z, a, da, p, dtype):
        scale = case.backward_scale(z, a, da, p)
        if case.subnormal_gain is None:
            return scale
        return scale + np.abs(da) * case.subnormal_gain[1](z, p) * LD(np.finfo(dtype).tiny)
    return scale_of


FORWARD_ULPS = {name: _forward_ulps(case) for name, case in CASES.items()}
BACKWARD_EPS = {name: ({"float32": case.backward_eps[0], "float64": case.backward_eps[1]},
                       _backward_scale(case)) for name, case in CASES.items()}


def forward_bound(act, z, dtype) -> np.ndarray:
    """The forward bound in ulps at each z: the case's amplification applied, plus its
    subnormal gain in subnormal spacings (expressed in ulps of the exact result)."""
    case, z = CASES[act], activation_cases.wide(z)
    bound = FORWARD_ULPS[act][np.dtype(dtype).name]
    if case.amplification is not None:
        bound = bound * case.amplification(z, PARAM[act])
    if case.subnormal_gain is None:
        return bound
    spacing = LD(np.finfo(dtype).smallest_subnormal)
    with np.errstate(invalid="ignore", over="ignore", under="ignore"):
        ulps = oracle.ulp_of(oracle.act(act, z, PARAM[act]), dtype)
        return bound + case.subnormal_gain[0](z, PARAM[act]) * spacing / ulps


# col_sum is the ascending sum in the dtype (checked bit for bit); against the float64
# sum the error is within the recursive-summation bound (rows - 1) * eps/2 * sum |x|.
# sgd_update is p - T(lr) * g in the dtype, bit for bit.

SHAPES = [(0, 7), (1, 1), (1, 33), (7, 17), (17, 7), (33, 257), (257, 33), (257, 1), (3, 16)]


def _inputs(shape, dtype, seed):
    """z with exact zeros, tiny and large values sprinkled in; a bias; an upstream da."""
    rng = np.random.default_rng(seed)
    rows, cols = shape
    z = (rng.standard_normal(shape) * 3).astype(dtype)
    if z.size:
        flat = z.ravel()
        flat[rng.integers(0, z.size, max(1, z.size // 10))] = 0.0
        flat[rng.integers(0, z.size, max(1, z.size // 20))] = -30.0
        flat[rng.integers(0, z.size, max(1, z.size // 20))] = 1e-30 if dtype == np.float32 else 1e-300
    bias = rng.standard_normal(cols).astype(dtype)
    bias[rng.random(cols) < 0.3] = 0.0   # keep some exact zeros of z after the bias add
    da = rng.standard_normal(shape).astype(dtype)
    return z, bias, da


def _forward(z, bias, act):
    z = z.copy()
    a = np.empty_like(z)
    _core.bias_act_forward(z, bias, a, act, PARAM[act])
    return z, a


def _backward(z, a, da, act):
    dz = np.full_like(z, np.nan)
    _core.act_backward(z, a, da, dz, act, PARAM[act])
    return dz


# ---------------------------------------------------------------------------------
# The oracle against something other than itself
# ---------------------------------------------------------------------------------

def test_oracle_hand_worked_values():
    z = np.array([-2.0, -0.0, 0.0, 1.5])
    np.testing.assert_allclose(oracle.act("sigmoid", z, 0), [0.11920292202211755, 0.5, 0.5, 0.8175744761936437], rtol=1e-15)
    np.testing.assert_allclose(oracle.act("tanh", z, 0), [-0.9640275800758169, 0, 0, 0.9051482536448664], rtol=1e-15)
    np.testing.assert_array_equal(oracle.act("relu", z, 0), [0, 0, 0, 1.5])
    np.testing.assert_allclose(oracle.act("leaky_relu", z, 0.01), [-0.02, 0, 0, 1.5], rtol=1e-15)
    np.testing.assert_allclose(oracle.act("elu", z, 1.0), [-0.8646647167633873, 0, 0, 1.5], rtol=1e-15)
    # Kinks: left branch at exactly 0
    zero = np.array([0.0])
    assert oracle.act_grad("relu", zero, 0)[0] == 0
    assert oracle.act_grad("leaky_relu", zero, 0.01)[0] == 0.01
    assert oracle.act_grad("elu", zero, 1.0)[0] == 1.0


@pytest.mark.parametrize("act", ACTS)
def test_oracle_matches_the_math_module_literals(act):
    z = np.array(activation_cases.Z)
    np.testing.assert_allclose(oracle.act(act, z, PARAM[act]), CASES[act].literals, rtol=1e-15)


@pytest.mark.parametrize("act", ACTS)
def test_oracle_derivative_matches_finite_differences(act):
    z = np.concatenate([np.linspace(-6, -0.01, 50), np.linspace(0.01, 6, 50)])
    h = 1e-6
    fd = (oracle.act(act, z + h, PARAM[act]) - oracle.act(act, z - h, PARAM[act])) / (2 * h)
    np.testing.assert_allclose(oracle.act_grad(act, z, PARAM[act]), fd, rtol=1e-7, atol=1e-9)
    a = oracle.act(act, z, PARAM[act])
    np.testing.assert_allclose(oracle.act_grad_given(act, z, a, PARAM[act]), fd, rtol=1e-7, atol=1e-9)


def test_eps_error_rejects_wrong_results():
    ref = np.array([1.0, -2.0, 3e-5, 0.0])
    scale = np.abs(ref)
    assert oracle.eps_error(ref.astype(np.float32), ref, scale, np.float32).max() < 0.5
    with pytest.raises(AssertionError):
        oracle.assert_within_eps(np.zeros(4, np.float32), ref, scale, np.float32, 8, "zeros")
    off = ref.astype(np.float32) * np.float32(1 + 2 ** -21)
    with pytest.raises(AssertionError):
        oracle.assert_within_eps(off, ref, scale, np.float32, 1, "4 ulps off")
    with pytest.raises(AssertionError):
        oracle.assert_within_eps(np.array([np.nan, -2, 3e-5, 0]), ref, scale, np.float64, 1e6, "NaN")
    with pytest.raises(AssertionError):  # a nonzero where exactly 0 is due
        oracle.assert_within_eps(np.array([1.0, -2, 3e-5, 1e-300]), ref, scale, np.float64, 1e6, "0")
    with pytest.raises(AssertionError):
        oracle.assert_same_bits({"a": np.array([0.0]), "b": np.array([-0.0])})


# ---------------------------------------------------------------------------------
# bias_act_forward
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
def test_bias_act_forward_matches_oracle(act, dtype, isa):
    for seed, shape in enumerate(SHAPES):
        z0, bias, _ = _inputs(shape, dtype, seed)
        z, a = _forward(z0, bias, act)
        assert np.array_equal(z, z0 + bias), f"z += bias is not the IEEE sum {shape}"
        ref = oracle.act(act, z.astype(np.longdouble), PARAM[act])
        err = oracle.ulp_error(a, ref, dtype)
        bound = np.broadcast_to(forward_bound(act, z, dtype), z.shape)
        if err.size:
            i = int(np.argmax(err - bound))
            bound = bound.ravel()[i]
            assert err.ravel()[i] <= bound, (
                f"{act}({z.ravel()[i]!r}) = {a.ravel()[i]!r}, exact {ref.ravel()[i]!r}: "
                f"{float(err.ravel()[i]):.3f} ulp > {bound} [{shape}, {isa}]")


@pytest.mark.parametrize("act", ACTS)
def test_bias_act_forward_a_may_be_z(act, dtype, isa):
    """a is z: it holds act(z + bias) alone, the a of the out-of-place call bit for bit."""
    z, bias, _ = _inputs((7, 17), dtype, 1)
    want, want_a = z.copy(), np.full_like(z, np.nan)
    _core.bias_act_forward(want, bias, want_a, act, oracle.PARAM[act])
    _core.bias_act_forward(z, bias, z, act, oracle.PARAM[act])
    oracle.assert_same_bits({f"in place {act} {isa}": z, "out of place": want_a})


@pytest.mark.parametrize("act", ACTS)
def test_forward_at_zero_and_signed_zero(act, dtype, isa):
    z = np.array([[0.0, -0.0, 1.0, -1.0, 0.0, -0.0, 0.0, -0.0, 0.0]], dtype=dtype)
    _, a = _forward(z, np.zeros(z.shape[1], dtype), act)
    assert (a[0, [0, 1, 4, 5, 6, 7, 8]] == CASES[act].at_zero).all(), a


@pytest.mark.parametrize("act", ACTS)
def test_forward_nan_in_any_lane_gives_nan(act, dtype, isa):
    """NaN at the head, a middle lane and the tail of rows of several widths: NaN out there
    (vector max/min would drop it), every other element unchanged."""
    for cols in (1, 7, 16, 37):
        z0, bias, _ = _inputs((3, cols), dtype, cols)
        _, clean = _forward(z0, bias, act)
        spots = [(0, 0), (1, cols // 2), (2, cols - 1)]
        z1 = z0.copy()
        for r, c in spots:
            z1[r, c] = np.nan
        z, a = _forward(z1, bias, act)
        mask = np.zeros(z.shape, bool)
        for r, c in spots:
            mask[r, c] = True
        assert np.isnan(a[mask]).all() and np.isnan(z[mask]).all(), (act, cols, a)
        assert np.array_equal(a[~mask], clean[~mask]), (act, cols)
    # a NaN bias poisons its whole column
    z0, bias, _ = _inputs((5, 9), dtype, 0)
    bias[4] = np.nan
    _, a = _forward(z0, bias, act)
    assert np.isnan(a[:, 4]).all() and not np.isnan(np.delete(a, 4, axis=1)).any()


@pytest.mark.parametrize("act", ACTS)
def test_forward_identical_across_isas(act, dtype, every_isa):
    z0, bias, _ = _inputs((33, 257), dtype, 5)
    z0[3, :40] = np.linspace(-30, 30, 40)
    z0[4, 0], z0[5, 255] = np.nan, np.inf
    oracle.assert_same_bits(every_isa(lambda: _forward(z0, bias, act)))


# ---------------------------------------------------------------------------------
# act_backward
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ACTS)
def test_act_backward_matches_oracle(act, dtype, isa):
    ks, scale_of = BACKWARD_EPS[act]
    p = PARAM[act]
    for seed, shape in enumerate(SHAPES):
        z, _, da = _inputs(shape, dtype, seed)
        a = oracle.act(act, z, p).astype(dtype)            # a = act(z) rounded: the given a
        dz = _backward(z, a, da, act)
        z64, a64, da64 = (v.astype(np.longdouble) for v in (z, a, da))  # exact
        ref = da64 * oracle.act_grad_given(act, z64, a64, p)
        oracle.assert_within_eps(dz, ref, scale_of(z64, a64, da64, p, dtype), dtype, ks[dtype.name],
                                 f"{act}' {shape} {isa}")


@pytest.mark.parametrize("act", ACTS)
def test_backward_kink_takes_left_branch(act, dtype, isa):
    """relu'(0) = 0, leaky'(0) = slope, elu'(0) = alpha (docs/conventions.md), at +0 and -0 and in
    every lane of a full vector and a tail; act'(0) of the smooth ones likewise."""
    want = CASES[act].grad_at_zero
    n = 37
    z = np.zeros((1, n), dtype)
    z[0, 1::2] = -0.0
    a = oracle.act(act, z, PARAM[act]).astype(dtype)
    dz = _backward(z, a, np.ones_like(z), act)
    np.testing.assert_array_equal(dz, np.full_like(z, dtype.type(want)))
    # and just either side of the kink
    tiny = np.finfo(dtype).smallest_subnormal
    z = np.array([[tiny, -tiny]], dtype)
    a = oracle.act(act, z, PARAM[act]).astype(dtype)
    dz = _backward(z, a, np.ones_like(z), act)
    if act in ("relu", "leaky_relu", "elu"):
        np.testing.assert_array_equal(dz[0], [1.0, dtype.type(want)])


@pytest.mark.parametrize("act", ACTS)
def test_backward_nan_upstream_gradient_propagates(act, dtype, isa):
    """A NaN in da gives NaN in dz whatever the branch (da * 0 is NaN, not 0)."""
    for cols in (1, 9, 33):
        z, _, da = _inputs((2, cols), dtype, cols)
        z[:] = -1.0  # the zero-slope side of relu
        a = oracle.act(act, z, PARAM[act]).astype(dtype)
        da[0, 0] = da[1, cols - 1] = np.nan
        dz = _backward(z, a, da, act)
        assert np.isnan(dz[0, 0]) and np.isnan(dz[1, cols - 1]), (act, cols, dz)
        assert np.isnan(dz).sum() == 2, (act, cols, dz)


@pytest.mark.parametrize("act", ACTS)
def test_backward_identical_across_isas(act, dtype, every_isa):
    z, _, da = _inputs((33, 257), dtype, 9)
    a = oracle.act(act, z, PARAM[act]).astype(dtype)
    oracle.assert_same_bits(every_isa(lambda: _backward(z, a, da, act)))


def test_backward_in_place_over_da(dtype):
    z, _, da = _inputs((7, 17), dtype, 2)
    a = oracle.act("tanh", z, 0).astype(dtype)
    want = _backward(z, a, da, "tanh")
    _core.act_backward(z, a, da, da, "tanh", 0.0)
    assert np.array_equal(da, want)


# ---------------------------------------------------------------------------------
# col_sum and sgd_update
# ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (7, 17), (257, 33), (33, 257), (3, 64), (5, 65), (2, 129)])
def test_col_sum(shape, dtype, isa):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    x = rng.standard_normal(shape).astype(dtype)
    out = np.full(shape[1], np.nan, dtype)
    _core.col_sum(x, out)
    # the contract: rows added in ascending order, in the dtype
    acc = np.zeros(shape[1], dtype)
    for row in x:
        acc += row
    assert np.array_equal(out, acc)
    # and against the float64 sum, within the recursive-summation bound
    exact = x.astype(np.float64).sum(axis=0)
    k = max(shape[0] - 1, 0) / 2 * 1.01
    oracle.assert_within_eps(out, exact, np.abs(x.astype(np.float64)).sum(axis=0), dtype, k, "col_sum")


def test_col_sum_propagates_nan_and_identical_across_isas(dtype, every_isa):
    x = np.random.default_rng(4).standard_normal((50, 70)).astype(dtype)
    x[10, 3] = np.nan
    x[49, 69] = np.inf
    def run():
        out = np.empty(70, dtype)
        _core.col_sum(x, out)
        return out
    results = every_isa(run)
    oracle.assert_same_bits(results)
    out = next(iter(results.values()))
    assert np.isnan(out[3]) and out[69] == np.inf and np.isfinite(np.delete(out, [3, 69])).all()


def test_sgd_update(dtype, isa):
    rng = np.random.default_rng(8)
    lr = 0.01
    for n in list(range(0, 2 * 16 + 2)) + [1000]:
        p0 = rng.standard_normal(n).astype(dtype)
        g = rng.standard_normal(n).astype(dtype)
        buf = np.concatenate([p0, np.full(5, 7.0, dtype)])
        param = buf[:n]
        _core._testing.sgd_update(param, g, lr)
        assert np.array_equal(param, p0 - dtype.type(lr) * g), n
        assert (buf[n:] == 7.0).all(), f"sgd_update wrote past element {n}"
    p = np.array([1.0, np.nan, 2.0], dtype)
    _core._testing.sgd_update(p, np.array([np.nan, 1.0, np.inf], dtype), lr)
    assert np.isnan(p[0]) and np.isnan(p[1]) and p[2] == -np.inf


def test_sgd_update_identical_across_isas(dtype, every_isa):
    rng = np.random.default_rng(12)
    p0 = rng.standard_normal(1003).astype(dtype)
    g = rng.standard_normal(1003).astype(dtype)
    def run():
        p = p0.copy()
        _core._testing.sgd_update(p, g, 0.37)
        return p
    oracle.assert_same_bits(every_isa(run))


# ---------------------------------------------------------------------------------
# Argument checks: never a silent copy, messages name arguments and shapes
# ---------------------------------------------------------------------------------

def _f32(*shape):
    return np.ones(shape, np.float32)


def _readonly(x):
    x = x.copy()
    x.setflags(write=False)
    return x


CALLS = {
    # name: (function, valid arguments by name, positional order, outputs)
    "bias_act_forward": (_core.bias_act_forward, lambda: {"z": _f32(4, 5), "bias": _f32(5), "a": _f32(4, 5)},
                         ["z", "bias", "a"], ["z", "a"], ("relu", 0.0)),
    "act_backward": (_core.act_backward, lambda: {"z": _f32(4, 5), "a": _f32(4, 5), "da": _f32(4, 5), "dz": _f32(4, 5)},
                     ["z", "a", "da", "dz"], ["dz"], ("relu", 0.0)),
    "col_sum": (_core.col_sum, lambda: {"x": _f32(4, 5), "out": _f32(5)}, ["x", "out"], ["out"], ()),
    "sgd_update": (_core._testing.sgd_update, lambda: {"param": _f32(6), "grad": _f32(6)}, ["param", "grad"], ["param"], (0.1,)),
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
        with pytest.raises(TypeError, match="float64"):
            _call(name, **{arg: good.astype(np.float64)})
        with pytest.raises(TypeError):
            _call(name, **{arg: good.astype(np.int32)})


@pytest.mark.parametrize("name", CALLS)
def test_list_is_type_error(name):
    _, make, order, _, _ = CALLS[name]
    for arg in order:
        with pytest.raises(TypeError):
            _call(name, **{arg: make()[arg].tolist()})


@pytest.mark.parametrize("name", CALLS)
def test_non_contiguous_is_value_error(name):
    _, make, order, _, _ = CALLS[name]
    for arg in order:
        good = make()[arg]
        strided = np.repeat(good, 2, axis=-1)[..., ::2]
        assert not strided.flags.c_contiguous and strided.shape == good.shape
        with pytest.raises(ValueError, match=f"{arg} must be C-contiguous"):
            _call(name, **{arg: strided})
        if good.ndim == 2:  # Fortran order: contiguous, but not C-contiguous
            with pytest.raises(ValueError, match=f"{arg} must be C-contiguous"):
                _call(name, **{arg: np.asfortranarray(good)})


@pytest.mark.parametrize("name", CALLS)
def test_read_only_output_is_value_error(name):
    _, make, _, outputs, _ = CALLS[name]
    for arg in outputs:
        with pytest.raises(ValueError, match=f"{arg} is read-only"):
            _call(name, **{arg: _readonly(make()[arg])})


@pytest.mark.parametrize("name,arg,bad,pattern", [
    ("bias_act_forward", "bias", _f32(4), r"bias is \(4,\), z is \(4, 5\)"),
    ("bias_act_forward", "a", _f32(4, 6), r"z is \(4, 5\), a is \(4, 6\)"),
    ("act_backward", "da", _f32(5, 4), r"z is \(4, 5\), da is \(5, 4\)"),
    ("act_backward", "dz", _f32(4, 4), r"z is \(4, 5\), dz is \(4, 4\)"),
    ("act_backward", "a", _f32(20), r"a must be 2-D, got shape \(20,\)"),
    ("col_sum", "out", _f32(4), r"x is \(4, 5\), out is \(4,\)"),
    ("sgd_update", "grad", _f32(5), r"param is \(6,\), grad is \(5,\)"),
    ("sgd_update", "param", _f32(2, 3), r"param must be 1-D, got shape \(2, 3\)"),
])
def test_shape_mismatch_names_the_shapes(name, arg, bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        _call(name, **{arg: bad})


def test_mixed_dtypes_are_type_errors():
    z = np.ones((2, 3), np.float64)
    with pytest.raises(TypeError, match="bias has dtype float32, expected float64"):
        _core.bias_act_forward(z, np.ones(3, np.float32), np.ones((2, 3)), "relu", 0.0)


def test_unknown_activation_is_value_error():
    with pytest.raises(ValueError, match="unknown activation 'softmax'"):
        _core.bias_act_forward(_f32(2, 3), _f32(3), _f32(2, 3), "softmax", 0.0)
    with pytest.raises(ValueError, match="unknown activation"):
        _core.act_backward(_f32(2, 3), _f32(2, 3), _f32(2, 3), _f32(2, 3), "maxout", 0.0)


def test_overlapping_output_is_value_error():
    buf = np.ones(40, np.float32)
    z, a = buf[:20].reshape(4, 5), buf[10:30].reshape(4, 5)
    with pytest.raises(ValueError, match="a overlaps z"):
        _core.bias_act_forward(z, _f32(5), a, "relu", 0.0)
    with pytest.raises(ValueError, match="param overlaps grad"):
        _core._testing.sgd_update(buf[:10], buf[5:15], 0.1)


def test_outputs_are_written_in_place_not_copied():
    """The caller's own arrays change (pybind11 forcecast would update a temporary)."""
    p = np.ones(6, np.float32)
    _core._testing.sgd_update(p, np.ones(6, np.float32), 0.5)
    assert (p == 0.5).all()
    z, a = np.zeros((2, 3), np.float32), np.full((2, 3), 9, np.float32)
    _core.bias_act_forward(z, np.ones(3, np.float32), a, "relu", 0.0)
    assert (z == 1).all() and (a == 1).all()
