"""Numerical edge values through every elementwise kernel, loss and output, in every lane
position of every vector length, on every ISA and both dtypes (docs/conventions.md).

The edge values (EDGE_CLASSES): +-0, subnormals (smallest normal / 2, the smallest
subnormal), the float32 exp border (+-88.7, 88.72, 89), the float64 exp border (+-709,
709.78, 710), +-1e20, +-inf and NaN. Each is placed in the head, middle and tail lane
(positions 0, n // 2, n - 1) of vectors of every length n = 1 .. 2w + 1 (w = 16 lanes:
float32 on AVX-512), over an ordinary background.

What is asserted:
- Elementwise kernels (math, bias_act_forward with a zero bias, act_backward, the sigmoid
  output): in every placement the edge lane gives exactly the bits the value gives alone
  and every other lane exactly the bits of the clean vector (no lane contaminates
  another, NaN never dropped); the value alone matches the long-double oracle within the
  kernel's own bound (test_math.ULP_TABLE, test_elementwise.FORWARD_ULPS/BACKWARD_EPS),
  with zero results of the odd functions carrying the oracle's sign.
- Losses and the softmax output, row by row: within test_losses.TOL /
  SOFTMAX_OUT_EPS of the oracle, where the oracle's formulas meet inf - inf or 0 * inf
  replaced by the limit the maths gives (_row_reference): softmax of a row with one +inf
  is one-hot, a -inf logit off the label leaves the cross-entropy finite, BCE at an
  infinite logit on the right side is 0. Results are finite wherever the exact value
  rounds to a finite number in the dtype, NaN wherever a NaN logit enters.
- Identical bits on every ISA (the transcendentals, elementwise kernels, losses and
  outputs are promised identical across ISAs; GEMM is not, and is not used here).

MSE squares each residual in the dtype (as the kernels and the NumPy backend do), so in
float32 a residual above sqrt(FLT_MAX) ~ 1.8e19 gives +inf even where the row's mean
would fit: the reference says so (_row_reference).
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import activation_cases
import oracle
from fastmlp import _core
from test_elementwise import BACKWARD_EPS, FORWARD_ULPS, forward_bound
from test_losses import SOFTMAX_OUT_EPS, TOL
from test_math import MAX_LANES, ULP_TABLE

LD = np.longdouble
PARAM = oracle.PARAM
LENGTHS = range(1, 2 * MAX_LANES + 2)          # every full-vector and tail length
GRAD_SCALE = 0.75                               # the losses' gradient scale

# label -> value; "min_normal" is the smallest normal, "subnormal" the smallest subnormal.
EDGE_CLASSES = {
    "zeros": ("+0", "-0"),
    "subnormals": ("min_normal/2", "-min_normal/2", "subnormal", "-subnormal"),
    "exp_border_f32": ("88.7", "-88.7", "88.72", "-88.72", "89", "-89"),
    "exp_border_f64": ("709", "-709", "709.78", "-709.78", "710", "-710"),
    "huge": ("1e20", "-1e20"),
    "inf": ("inf", "-inf"),
    "nan": ("nan",),
}
N_EDGES = sum(len(v) for v in EDGE_CLASSES.values())

def edge_values(labels, dtype) -> np.ndarray:
    """The edge values named by `labels` ("-" prefix: negated), in the dtype."""
    fi = np.finfo(dtype)
    named = {"0": 0.0, "min_normal/2": float(fi.tiny) / 2, "subnormal": float(fi.smallest_subnormal),
             "inf": np.inf, "nan": np.nan}

    def value(label):
        body = label.lstrip("+-")
        magnitude = named[body] if body in named else float(body)
        return -magnitude if label.startswith("-") else magnitude
    return np.array([value(label) for label in labels], dtype=dtype)


def positions(n: int) -> list:
    """Head, middle and tail lane of a vector of length n."""
    return sorted({0, n // 2, n - 1})


def placements_count() -> int:
    return sum(len(positions(n)) for n in LENGTHS)


def same_bits(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Elementwise: equal values with equal sign bits, or both NaN."""
    return ((x == y) & (np.signbit(x) == np.signbit(y))) | (np.isnan(x) & np.isnan(y))


def _background(n: int, dtype, low: float = -0.9, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, 3.0, n).astype(dtype)


def _placed(background: np.ndarray, n: int, values: np.ndarray):
    """(rows, positions, value indices): one row per (position, value), the background's
    first n elements with the value at the position."""
    ps = np.repeat(positions(n), len(values))
    vi = np.tile(np.arange(len(values)), len(positions(n)))
    rows = np.tile(background[:n], (len(ps), 1))
    rows[np.arange(len(ps)), ps] = values[vi]
    return rows, ps, vi


# ------------------------------------------------------------------------------------
# Elementwise kernels: run(X) applies the kernel to each row of X as its own vector
# ------------------------------------------------------------------------------------

def _each_row(call):
    """A runner calling the 1-row kernel `call(x_row2d, out_row2d)` once per row, so each
    row's lanes start at its head."""
    def run(x):
        out = np.empty_like(x)
        for r in range(x.shape[0]):
            call(x[r:r + 1], out[r:r + 1])
        return out
    return run


def _math_runner(fn):
    return _each_row(lambda x, o: _core._testing.math(fn, x[0], o[0]))


def _forward(act, x):
    """a = act(x + b) with b = -0.0, the zero bias that leaves every x (-0 included) as
    it is; asserts that z comes back with x's bits."""
    z = x.copy()
    a = np.empty_like(z)
    _core.bias_act_forward(z, np.full(z.shape[1], -0.0, z.dtype), a, act, PARAM[act])
    assert same_bits(z, x).all(), f"z + (-0.0) changed z ({act})"
    return a


def _forward_runner(act):
    return lambda x: _forward(act, x)


def _backward_runner(act):
    """dz = 1 * act'(z), with the given a = act(z) from the forward kernel."""
    def run(z):
        a = _forward(act, z)
        da = np.ones_like(z)
        dz = np.empty_like(z)
        for r in range(z.shape[0]):
            _core.act_backward(z[r:r + 1], a[r:r + 1], da[r:r + 1], dz[r:r + 1], act, PARAM[act])
        return dz
    return run


def _sigmoid_output_runner():
    return _each_row(lambda x, o: _core.output("binary_cross_entropy", x, o))


ELEMENTWISE = {
    **{f"math:{fn}": (_math_runner(fn), "math", fn) for fn in oracle.MATH_FUNCTIONS},
    **{f"forward:{act}": (_forward_runner(act), "forward", act) for act in oracle.ACTIVATIONS},
    **{f"act_backward:{act}": (_backward_runner(act), "act_backward", act) for act in oracle.ACTIVATIONS},
    "output:sigmoid": (_sigmoid_output_runner(), "output", "sigmoid"),
}
# f(-x) = -f(x) near 0: a zero result must carry the oracle's sign.
ODD = {"math:expm1", "math:log1p", "math:tanh",
       *(f"forward:{name}" for name, case in activation_cases.CASES.items() if case.odd)}


def check_lanes(run, dtype, values, background) -> np.ndarray:
    """Every placement of every value gives, bit for bit, the value's result alone in its
    lane and the clean background's results in the others; returns the results alone."""
    alone = run(values[:, None].copy())[:, 0]
    clean = run(background[None, :].copy())[0]
    for n in LENGTHS:
        rows, ps, vi = _placed(background, n, values)
        want = np.tile(clean[:n], (len(ps), 1))
        want[np.arange(len(ps)), ps] = alone[vi]
        got = run(rows)
        bad = ~same_bits(got, want)
        if bad.any():
            r, j = np.argwhere(bad)[0]
            raise AssertionError(
                f"n={n}, value {values[vi[r]]!r} in lane {ps[r]}: lane {j} is {got[r, j]!r}, "
                f"expected {want[r, j]!r} ({'the edge lane' if j == ps[r] else 'a clean lane'})")
    return alone


def _elementwise_reference(family, name, z, got):
    """(reference in long double, check(got, ref, what)) of the kernel at inputs z."""
    zl = z.astype(LD)
    dtype = z.dtype
    if family in ("math", "output"):
        fn = "sigmoid" if family == "output" else name
        bound = ULP_TABLE[fn][dtype.name][1]
        return oracle.math_ref(fn, z), lambda g, r, what: _assert_ulps(g, r, dtype, bound, z, what)
    if family == "forward":
        with np.errstate(invalid="ignore"):     # the amplification at the infinities
            bound = forward_bound(name, z, dtype)
        bound = np.where(np.isfinite(bound), bound, FORWARD_ULPS[name][dtype.name])
        return _act_reference(name, zl), lambda g, r, what: _assert_ulps(g, r, dtype, bound, z, what)
    # act_backward with da = 1: dz = act'(z); sigmoid and tanh from the given a (base.py)
    ks, scale_of = BACKWARD_EPS[name]
    a = _forward(name, z[None, :].copy())[0].astype(LD)
    p = PARAM[name]
    ref = oracle.act_grad_given(name, zl, a, p)
    if name != "linear":            # act'(NaN) is NaN; linear's derivative never reads z
        ref = np.where(np.isnan(zl), LD(np.nan), ref)
    scale = scale_of(zl, a, np.ones_like(zl), p, dtype)
    return ref, lambda g, r, what: oracle.assert_within_eps(g, r, scale, dtype, ks[dtype.name], what)


def _act_reference(name, z):
    """oracle.act, except at +-inf: the case's limits (the oracle's formulas may meet
    0 * inf there, relu's 0 * z kept so NaN stays NaN)."""
    with np.errstate(invalid="ignore"):
        ref = oracle.act(name, z, PARAM[name])
    low, high = activation_cases.CASES[name].limits
    return np.where(np.isneginf(z), LD(low), np.where(np.isposinf(z), LD(high), ref))


def _assert_ulps(got, ref, dtype, bound, z, what):
    err = oracle.ulp_error(got, ref, dtype)
    bound = np.broadcast_to(bound, err.shape)
    i = int(np.argmax(err - bound))
    bound = bound[i]
    assert err[i] <= bound, (f"{what}: f({z[i]!r}) = {got[i]!r}, exact {ref[i]!r}: "
                             f"{float(err[i]):.3g} ulp > {bound}")


def _assert_zero_signs(got, ref, dtype, z, what):
    with np.errstate(over="ignore", under="ignore"):
        rounded = ref.astype(dtype)
    zero = rounded == 0
    bad = zero & (np.signbit(got) != np.signbit(rounded))
    assert not bad.any(), f"{what}: sign of zero lost at {z[bad]!r}: got {got[bad]!r}"


@pytest.mark.parametrize("edge_class", EDGE_CLASSES)
@pytest.mark.parametrize("kernel", ELEMENTWISE)
def test_elementwise_edges(kernel, edge_class, dtype, isa):
    run, family, name = ELEMENTWISE[kernel]
    values = edge_values(EDGE_CLASSES[edge_class], dtype)
    background = _background(LENGTHS[-1], dtype, low=0.05 if kernel == "math:log" else -0.9)
    alone = check_lanes(run, dtype, values, background)
    ref, check = _elementwise_reference(family, name, values, alone)
    what = f"{kernel} {edge_class} [{dtype.name}, {isa}]"
    check(alone, ref, what)
    if kernel in ODD:
        _assert_zero_signs(alone, ref, dtype, values, what)


def _all_edges(dtype) -> np.ndarray:
    return edge_values([lb for labels in EDGE_CLASSES.values() for lb in labels], dtype)


@pytest.mark.parametrize("kernel", ELEMENTWISE)
def test_elementwise_edges_identical_across_isas(kernel, dtype, every_isa):
    """Every edge value alone and the clean background give the same bits on every ISA;
    with test_elementwise_edges (every placement is composed of exactly those bits on
    each ISA) every placement is identical across ISAs."""
    run = ELEMENTWISE[kernel][0]
    values, background = _all_edges(dtype), _background(LENGTHS[-1], dtype)
    oracle.assert_same_bits(every_isa(lambda: (run(values[:, None].copy()), run(background[None, :].copy()))))


def test_check_lanes_can_fail():
    """The lane checker rejects a kernel that drops NaN in wide vectors only, and one
    whose lanes past the first vector compute differently."""
    background = _background(LENGTHS[-1], np.float32)
    exact = _math_runner("exp")

    def drops_nan_in_wide_rows(x):
        out = exact(x)
        return np.nan_to_num(out) if x.shape[1] > 8 else out

    def upper_lanes_off(x):
        out = exact(x)
        out[:, MAX_LANES:] *= np.float32(1 + 2 ** -20)
        return out
    for broken, edge_class in ((drops_nan_in_wide_rows, "nan"), (upper_lanes_off, "exp_border_f32")):
        values = edge_values(EDGE_CLASSES[edge_class], np.float32)
        with pytest.raises(AssertionError):
            check_lanes(broken, np.float32, values, background)
        check_lanes(exact, np.float32, values, background)


# ------------------------------------------------------------------------------------
# Losses and the softmax output, row by row
# ------------------------------------------------------------------------------------

def _targets(name, n, p, variant, dtype) -> np.ndarray:
    """One (1, n) target row: softmax CE one-hot at p (variant 0) or at the next lane;
    BCE 0/1 bits with y_p = 1 (variant 0) or 0; MSE normal values with y_p = 0.5 or -2."""
    rng = np.random.default_rng(1)
    if name == "softmax_cross_entropy":
        y = np.zeros(n)
        y[(p + variant) % n] = 1.0
    elif name == "binary_cross_entropy":
        y = (rng.random(n) < 0.5).astype(float)
        y[p] = 1.0 - variant
    else:
        y = rng.standard_normal(n)
        y[p] = (0.5, -2.0)[variant]
    return y[None, :].astype(dtype)


def _limit_loss(name, z, y, p):
    """(value, value_scale, grad or None, grad_scale or None) where an infinite z[p] makes
    the oracle's formula meet inf - inf or 0 * inf; None where the oracle is right.
    Infinite results and exact limits get scale 0 (the kernel must match exactly)."""
    n = z.shape[1]
    v = z[0, p]
    if not np.isinf(v) or name == "mse":
        return None
    rest = np.delete(np.arange(n), p)
    if name == "softmax_cross_entropy":
        label = int(np.argmax(y[0]))
        if n == 1:                                   # softmax of one logit is 1
            return LD(0), LD(0), np.zeros((1, 1), LD), np.zeros((1, 1), LD)
        if v > 0:                                    # softmax -> e_p
            onehot = np.zeros((1, n), LD)
            onehot[0, p] = 1
            value = LD(0) if label == p else LD(np.inf)
            return value, LD(0), LD(GRAD_SCALE) * (onehot - y.astype(LD)), np.zeros((1, n), LD)
        if label == p:                               # -log(0)
            return LD(np.inf), LD(0), None, None
        value, _, value_scale, _ = oracle.loss(name, z[:, rest], y[:, rest], GRAD_SCALE)
        return LD(value), value_scale.sum(), None, None   # e^-inf adds nothing to lse
    # binary cross-entropy: the term at p is 0 on the right side, +inf on the wrong one
    if (v > 0) != (y[0, p] == 1):
        return LD(np.inf), LD(0), None, None
    if n == 1:
        return LD(0), LD(0), None, None
    value, _, value_scale, _ = oracle.loss(name, z[:, rest], y[:, rest], GRAD_SCALE)
    return LD(value) * (n - 1) / n, value_scale.sum() * (n - 1) / n, None, None


def _row_reference(name, z, y, p):
    """(value, value_scale, grad, grad_scale) of one row in long double: the oracle, with
    the limits of _limit_loss, and a value that rounds to +-inf in the dtype set to it."""
    value, grad, value_scale, grad_scale = oracle.loss(name, z, y, GRAD_SCALE)
    value, value_scale = LD(value), value_scale.sum()
    limit = _limit_loss(name, z, y, p)
    if limit is not None:
        value, value_scale = limit[0], limit[1]
        if limit[2] is not None:
            grad, grad_scale = limit[2], limit[3]
    with np.errstate(over="ignore"):
        if np.isinf(np.array([value]).astype(z.dtype))[0]:
            value = LD(np.inf) * np.sign(value)
        residual = np.abs(z.astype(LD) - y.astype(LD))
        if name == "mse" and (residual * residual > LD(np.finfo(z.dtype).max)).any():
            value, value_scale = LD(np.inf), LD(0)     # a squared residual overflows the dtype
    return value, value_scale, grad, grad_scale


def _loss_rows(name, edge_class, dtype):
    """For each length n: (z rows, y rows, placed lanes) of every (position, value,
    target variant)."""
    values = edge_values(EDGE_CLASSES[edge_class], dtype)
    background = (np.random.default_rng(2).standard_normal(LENGTHS[-1]) * 3).astype(dtype)
    cases = []
    for n in LENGTHS:
        z, ps, _ = _placed(background, n, values)
        z = np.repeat(z, 2, axis=0)
        ps = np.repeat(ps, 2)
        y = np.concatenate([_targets(name, n, p, r % 2, dtype) for r, p in enumerate(ps)])
        cases.append((z, y, ps))
    return cases


@functools.lru_cache(maxsize=None)
def _loss_references(name, edge_class, dtype_name):
    """Per length: the rows and their long-double references (cached across ISAs)."""
    out = []
    for z, y, ps in _loss_rows(name, edge_class, np.dtype(dtype_name)):
        refs = [_row_reference(name, z[r:r + 1], y[r:r + 1], ps[r]) for r in range(len(ps))]
        out.append((z, y, ps, *(np.array([ref[i] for ref in refs]) for i in range(2)),
                    np.concatenate([ref[2] for ref in refs]), np.concatenate([ref[3] for ref in refs])))
    return out


def _run_loss_rows(name, z, y):
    """Each row's value (its own call) and gradient."""
    grad = np.full_like(z, 12345.0)
    values = np.array([_core.loss(name, z[r:r + 1], y[r:r + 1], grad[r:r + 1], GRAD_SCALE)
                       for r in range(z.shape[0])])
    return values, grad


@pytest.mark.parametrize("edge_class", EDGE_CLASSES)
@pytest.mark.parametrize("name", oracle.LOSSES)
def test_loss_edges(name, edge_class, dtype, isa):
    tol = TOL[name]
    for z, y, ps, ref_value, value_scale, ref_grad, grad_scale in _loss_references(name, edge_class, dtype.name):
        values, grad = _run_loss_rows(name, z, y)
        what = f"{name} {edge_class} n={z.shape[1]} [{dtype.name}, {isa}]"
        oracle.assert_within_eps(values, ref_value, value_scale, dtype, tol["value"][dtype.name], what + " value")
        oracle.assert_within_eps(grad, ref_grad, grad_scale, dtype, tol["grad"][dtype.name], what + " grad")


def _softmax_reference(z, ps):
    """oracle.softmax with the limits: a row with +inf at p is e_p; a 1-wide row is 1."""
    ref = oracle.softmax(z)
    scale = oracle.softmax_error_scale(z)
    for r, p in enumerate(ps):
        if np.isinf(z[r, p]) and (z[r, p] > 0 or z.shape[1] == 1):
            ref[r] = 0
            ref[r, p] = 1
            scale[r] = 0
    return ref, scale


def _softmax_out(z):
    out = np.full_like(z, 12345.0)
    _core.output("softmax_cross_entropy", z, out)
    return out


@pytest.mark.parametrize("edge_class", EDGE_CLASSES)
def test_softmax_output_edges(edge_class, dtype, isa):
    for z, _, ps, *_ in _loss_references("softmax_cross_entropy", edge_class, dtype.name):
        ref, scale = _softmax_reference(z, ps)
        oracle.assert_within_eps(_softmax_out(z), ref, scale, dtype, SOFTMAX_OUT_EPS[dtype.name],
                                 f"softmax {edge_class} n={z.shape[1]} [{dtype.name}, {isa}]")


def test_softmax_row_with_plus_and_minus_inf(dtype, isa):
    """+inf and -inf in one row (head and tail, both ways round, every length): softmax
    e_(+inf); cross-entropy 0 with the label on +inf, +inf elsewhere; grad scale*(p - y)."""
    for n in LENGTHS[1:]:
        for hi, lo in ((0, n - 1), (n - 1, 0)):
            z = np.tile(_background(n, dtype), (n, 1))
            z[:, hi], z[:, lo] = np.inf, -np.inf
            y = np.eye(n, dtype=dtype)                  # row r: label r
            p = np.zeros((n, n), dtype)
            p[:, hi] = 1
            assert same_bits(_softmax_out(z), p).all(), (n, hi, _softmax_out(z))
            values, grad = _run_loss_rows("softmax_cross_entropy", z, y)
            want = np.where(np.arange(n) == hi, 0.0, np.inf)
            assert same_bits(values, want).all(), (n, hi, values)
            assert same_bits(grad, dtype.type(GRAD_SCALE) * (p - y)).all(), (n, hi, grad)


def test_limit_references_hand_worked():
    """_row_reference against values worked by hand, including the limits."""
    f64 = np.float64
    z = np.array([[np.inf, 0.0]])
    for label, want in ((0, 0.0), (1, np.inf)):
        y = np.eye(2)[[label]]
        value, _, grad, _ = _row_reference("softmax_cross_entropy", z, y, 0)
        assert value == want
        np.testing.assert_array_equal(grad.astype(f64), GRAD_SCALE * (np.array([[1.0, 0.0]]) - y))
    z = np.array([[-np.inf, 0.0, 0.0]])           # CE of [0, 0] with label 1: log 2
    value, _, _, _ = _row_reference("softmax_cross_entropy", z, np.array([[0.0, 1.0, 0.0]]), 0)
    assert abs(float(value) - np.log(2)) < 1e-15
    z = np.array([[np.inf, 0.0]])                  # BCE: (0 + log 2) / 2
    value, _, _, _ = _row_reference("binary_cross_entropy", z, np.array([[1.0, 1.0]]), 0)
    assert abs(float(value) - np.log(2) / 2) < 1e-15
    value, _, _, _ = _row_reference("binary_cross_entropy", z, np.array([[0.0, 1.0]]), 0)
    assert value == np.inf
    z = np.array([[1e20, 0.0]], np.float32)        # (1e40 + 0.25) / 2 overflows float32
    value, _, _, _ = _row_reference("mse", z, np.array([[0.0, 0.5]], np.float32), 0)
    assert value == np.inf


@pytest.mark.parametrize("name", oracle.LOSSES)
def test_loss_edges_identical_across_isas(name, dtype, every_isa):
    """Every edge row of every class: value, gradient and output bits on every ISA."""
    def run():
        results = []
        for edge_class in EDGE_CLASSES:
            for z, y, *_ in _loss_references(name, edge_class, dtype.name):
                values, grad = _run_loss_rows(name, z, y)
                out = np.empty_like(z)
                _core.output(name, z, out)
                results += [values, grad, out]
        return tuple(results)
    oracle.assert_same_bits(every_isa(run))


def test_edge_figures():
    """The counts the README states: 23 edge values x 96 placements (3 lanes of 33
    lengths, 1 and 2 lanes of lengths 1 and 2)."""
    assert N_EDGES == 23 and placements_count() == 96 and len(LENGTHS) == 33
