"""The polynomial transcendentals (csrc/simd/math.hpp) against a long double reference.

Accuracy is measured in ulps of the output dtype, against the exact value's binade
(oracle.ulp_error), over dense grids plus random samples of the whole useful range of
each function and of its delicate sub-ranges (near 0, subnormal inputs and outputs).
Bits are identical on every ISA (no FMA, -ffp-contract=off: docs/conventions.md), so accuracy
proven on one level holds on all; it is still measured on each, and the bit identity is
checked on its own.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest

import oracle
from fastmlp import _core

# Max error in ulps of the output dtype against long double (the README's table).
# "measured" is the largest error found while writing this file. float32: exhaustively,
# every float32 with |x| in [2^-12, 128) for exp, expm1 and sigmoid, [2^-14, 32) for
# tanh, [2^-14, 2^128) for log1p, and every positive normal float32 for log (plus the
# sampled RANGES below for the rest). float64: 4 x 6 M dense-grid plus random samples
# per range (the RANGES below and their wider siblings, seeds 0..3).
# "bound" is what the tests assert: the measured max rounded up to an integer. "worst"
# is the input where the max was found; it is always among the tested points, and the
# tests assert each bound is tight (some point exceeds bound - 1), so the table cannot
# silently go stale in either direction.
ULP_TABLE = {
    # fn:        {dtype: (measured, bound, worst input)}
    "exp":     {"float32": (1.025, 2, -81.44470977783203), "float64": (0.965, 1, 644.2811768493227)},
    "expm1":   {"float32": (1.763, 2, 0.3472324013710022), "float64": (1.950, 2, 0.40035074615169264)},
    "log":     {"float32": (0.858, 1, 0.6999103426933289), "float64": (0.846, 1, 0.703506862426471)},
    "log1p":   {"float32": (2.470, 3, 0.01562493946403265), "float64": (2.450, 3, 0.0004865537285562119)},
    "tanh":    {"float32": (2.425, 3, 0.031202640384435654), "float64": (2.526, 3, 0.21855214680835489)},
    "sigmoid": {"float32": (2.402, 3, -4.157293796539307), "float64": (2.398, 3, -4.144158206572651)},
}
# Where each bound is checked: ("lin", lo, hi) is a dense grid plus uniform samples;
# ("log", lo, hi) the same in log2 space for both signs, ("log+", lo, hi) positive only.
# None stands for the dtype's smallest subnormal / largest finite value.
RANGES = {
    "exp": {"float32": [("lin", -104, 89), ("lin", -1, 1), ("lin", -104, -87), ("log", 1e-12, 1)],
            "float64": [("lin", -745.2, 709.8), ("lin", -1, 1), ("lin", -745.2, -708), ("log", 1e-30, 1)]},
    "expm1": {"float32": [("lin", -104, 89), ("lin", -1, 1), ("lin", -0.4, 0.4), ("log", None, 1)],
              "float64": [("lin", -745.2, 709.8), ("lin", -1, 1), ("lin", -0.4, 0.4), ("log", None, 1)]},
    "log": {"float32": [("log+", None, None), ("lin", 0.5, 2), ("lin", 0.99, 1.01), ("log+", None, 1.2e-38)],
            "float64": [("log+", None, None), ("lin", 0.5, 2), ("lin", 0.99, 1.01), ("log+", None, 2.3e-308)]},
    "log1p": {"float32": [("log", None, 1), ("log+", 1, None), ("lin", -0.999, 1), ("lin", -1e-2, 1e-2)],
              "float64": [("log", None, 1), ("log+", 1, None), ("lin", -0.999, 1), ("lin", -1e-2, 1e-2)]},
    "tanh": {"float32": [("lin", -25, 25), ("lin", -1, 1), ("log", None, 1)],
             "float64": [("lin", -25, 25), ("lin", -1, 1), ("log", None, 1)]},
    "sigmoid": {"float32": [("lin", -110, 110), ("lin", -20, 20), ("log", None, 1)],
                "float64": [("lin", -750, 750), ("lin", -20, 20), ("log", None, 1)]},
}
N_PER_RANGE = 150_000   # grid points, and as many random samples, per range
MAX_LANES = 16          # float32 on AVX-512: lengths 1 .. 2 * 16 + 1 cover every tail

FUNCTIONS = oracle.MATH_FUNCTIONS


def _sample(kind: str, lo, hi, dtype: np.dtype, seed: int) -> np.ndarray:
    fi = np.finfo(dtype)
    lo = float(fi.smallest_subnormal) if lo is None else lo
    hi = float(fi.max) if hi is None else hi
    rng = np.random.default_rng(seed)
    if kind == "lin":
        x = np.concatenate([np.linspace(lo, hi, N_PER_RANGE), rng.uniform(lo, hi, N_PER_RANGE)])
    else:
        e0, e1 = np.log2(lo), np.log2(hi)
        e = np.concatenate([np.linspace(e0, e1, N_PER_RANGE), rng.uniform(e0, e1, N_PER_RANGE)])
        with np.errstate(over="ignore"):
            x = np.minimum(np.exp2(e), hi)
        if kind == "log":
            x = np.concatenate([x, -x])
    with np.errstate(over="ignore", under="ignore"):
        return x.astype(dtype)


@functools.lru_cache(maxsize=None)
def _case(fn: str, dtype_name: str, i: int):
    """(x, reference) of range i; cached: the reference is the slow part. The reference
    is long double, rounded to float64 for float32 inputs (29 spare bits: ample)."""
    dtype = np.dtype(dtype_name)
    kind, lo, hi = RANGES[fn][dtype_name][i]
    x = _sample(kind, lo, hi, dtype, seed=1000 * i + len(fn))
    x.setflags(write=False)
    return x, _reference(fn, x)


def _reference(fn, x):
    ref = oracle.math_ref(fn, x)
    return ref.astype(np.float64) if x.dtype == np.float32 else ref


def _run(fn: str, x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    _core._testing.math(fn, x, out)
    return out


def _needs_wide_reference(dtype):
    if dtype == np.float64 and not oracle.LONGDOUBLE_IS_WIDE:
        pytest.skip("np.longdouble is float64 here: no reference for float64 ulps")


# ----------------------------------------------------------------------------------
# The comparison machinery must be able to fail
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ulp_error_measures_ulps(dtype):
    fi = np.finfo(dtype)
    x = np.array([1.0, 1.5, 2.0 ** -20, float(fi.smallest_subnormal), 1e3], dtype=dtype)
    up = np.nextafter(x, dtype(np.inf))
    assert np.array_equal(oracle.ulp_error(x, x, dtype), np.zeros(5))
    np.testing.assert_array_equal(oracle.ulp_error(up, x, dtype), np.ones(5))
    np.testing.assert_array_equal(oracle.ulp_error(up, x.astype(np.float64), dtype), np.ones(5))
    half = x.astype(np.longdouble) + (up.astype(np.longdouble) - x) / 4
    np.testing.assert_array_equal(oracle.ulp_error(x, half, dtype), np.full(5, 0.25))
    # The exact value's binade: just below 2 a step up to 2 is still one small ulp.
    below2 = np.nextafter(dtype(2), dtype(0))
    assert oracle.ulp_error(np.array([2], dtype), np.array([below2], dtype), dtype)[0] == 1
    # All zeros, a NaN for a number and an infinity for a finite value are gross errors.
    assert oracle.ulp_error(np.zeros(5, dtype), x, dtype).min() >= 1  # even at the subnormal
    assert oracle.ulp_error(np.array([np.nan], dtype), np.array([1.0]), dtype)[0] == np.inf
    assert oracle.ulp_error(np.array([np.inf], dtype), np.array([1.0]), dtype)[0] == np.inf
    assert oracle.ulp_error(np.array([1.0], dtype), np.array([np.nan]), dtype)[0] == np.inf
    # Overflowing references must be matched by the infinity of the right sign.
    big = np.array([np.longdouble(fi.max) * 4], dtype=np.longdouble)
    assert oracle.ulp_error(np.array([np.inf], dtype), big, dtype)[0] == 0
    assert oracle.ulp_error(np.array([fi.max], dtype), big, dtype)[0] == np.inf


def test_reference_against_known_values():
    """The long double reference against constants known to 19+ digits."""
    ld = np.longdouble
    cases = {
        ("exp", "1"): "2.71828182845904523536",
        ("expm1", "1e-10"): "1.00000000005000000000166666666670833e-10",
        ("log", "2"): "0.69314718055994530942",
        ("log1p", "-0.5"): "-0.69314718055994530942",
        ("tanh", "0.5"): "0.46211715726000975850",
        ("sigmoid", "-2"): "0.11920292202211755594",   # 1 / (1 + e^2)
        ("sigmoid", "3"): "0.95257412682243321912",    # 1 / (1 + e^-3)
    }
    for (fn, x), want in cases.items():
        got = oracle.math_ref(fn, np.array([ld(x)]))[0]
        assert abs(got - ld(want)) <= 4 * np.finfo(ld).eps * abs(ld(want)), (fn, x, got, want)


# ----------------------------------------------------------------------------------
# Accuracy
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fn", FUNCTIONS)
def test_ulp_bound(fn, dtype, isa):
    _needs_wide_reference(dtype)
    measured, bound, worst_x = ULP_TABLE[fn][dtype.name]
    known = np.array([worst_x], dtype=dtype)
    cases = [_case(fn, dtype.name, i) for i in range(len(RANGES[fn][dtype.name]))]
    cases.append((known, _reference(fn, known)))
    worst = 0.0
    for rng, (x, ref) in zip(RANGES[fn][dtype.name] + ["worst known"], cases):
        err = oracle.ulp_error(_run(fn, x), ref, dtype)
        j = int(np.argmax(err))
        assert err[j] <= bound, (
            f"{fn}({x[j]!r}) [{dtype.name}, {isa}, range {rng}] is {_run(fn, x[j:j + 1])[0]!r}, "
            f"reference {ref[j]!r}: {float(err[j]):.3f} ulp > {bound}")
        worst = max(worst, float(err[j]))
    # The stated bound is tight: the samples reach past bound - 1.
    assert worst > bound - 1, f"{fn} {dtype.name}: max {worst:.3f} ulp; tighten ULP_TABLE"


def test_exp_exhaustive_float32_binade():
    """Every float32 in [-104, -64] (5.2 M values: the binade of the worst known error,
    subnormal results included), float64 reference."""
    bits = np.arange(1 << 23, dtype=np.uint32) | np.uint32((127 + 6) << 23)   # [64, 128)
    x = -bits.view(np.float32)
    x = x[x >= -104]
    err = oracle.ulp_error(_run("exp", x), np.exp(x.astype(np.float64)), np.float32)
    assert err.max() <= ULP_TABLE["exp"]["float32"][1]
    assert err.max() > 1   # the worst known point, -81.44471, is in here


# ----------------------------------------------------------------------------------
# Identical bits on every ISA
# ----------------------------------------------------------------------------------

def _specials(dtype) -> np.ndarray:
    fi = np.finfo(dtype)
    s = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, float(fi.smallest_subnormal),
         -float(fi.smallest_subnormal), float(fi.tiny), -float(fi.tiny), float(fi.max),
         -float(fi.max), 88.72284, -103.97208, 709.782712893384, -745.1332191019412, 22.0, -22.0]
    return np.array(s, dtype=dtype)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_identical_across_isas(fn, dtype, every_isa):
    parts = [_case(fn, dtype.name, i)[0][::7] for i in range(len(RANGES[fn][dtype.name]))]
    x = np.concatenate(parts + [_specials(dtype)])
    results = every_isa(lambda: _run(fn, x))
    oracle.assert_same_bits(results)


# ----------------------------------------------------------------------------------
# Special values (bit-exact: the sign of a zero counts)
# ----------------------------------------------------------------------------------

INF, NAN = np.inf, np.nan
SPECIAL = {
    # fn: [(x, expected)]; "tiny" stands for the smallest subnormal, "max" for the largest
    # finite value, "min_normal" for the smallest normal.
    "exp": [(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, 0.0), (NAN, NAN), (1e4, INF),
            (-1e4, 0.0), ("max", INF), ("-max", 0.0), ("tiny", 1.0), ("-tiny", 1.0)],
    "expm1": [(0.0, 0.0), (-0.0, -0.0), (INF, INF), (-INF, -1.0), (NAN, NAN), (1e4, INF),
              (-1e4, -1.0), (-200.0, -1.0), ("max", INF), ("-max", -1.0), ("tiny", "tiny"),
              ("-tiny", "-tiny"), ("min_normal", "min_normal")],
    "log": [(0.0, -INF), (-0.0, -INF), (INF, INF), (-INF, NAN), (NAN, NAN), (1.0, 0.0),
            (-1.0, NAN), ("-tiny", NAN), ("-max", NAN)],
    "log1p": [(0.0, 0.0), (-0.0, -0.0), (INF, INF), (-INF, NAN), (NAN, NAN), (-1.0, -INF),
              (-2.0, NAN), ("-max", NAN), ("tiny", "tiny"), ("-tiny", "-tiny"),
              ("min_normal", "min_normal")],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), (22.0, 1.0),
             (-22.0, -1.0), (1e4, 1.0), (-1e4, -1.0), ("max", 1.0), ("-max", -1.0),
             ("tiny", "tiny"), ("-tiny", "-tiny"), ("min_normal", "min_normal")],
    "sigmoid": [(0.0, 0.5), (-0.0, 0.5), (INF, 1.0), (-INF, 0.0), (NAN, NAN), (1e4, 1.0),
                (-1e4, 0.0), ("max", 1.0), ("-max", 0.0), ("tiny", 0.5), ("-tiny", 0.5)],
}


def _value(v, dtype):
    fi = np.finfo(dtype)
    named = {"tiny": fi.smallest_subnormal, "max": fi.max, "min_normal": fi.tiny}
    if isinstance(v, str):
        return -named[v[1:]] if v.startswith("-") else named[v]
    return v


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_special_values(fn, dtype, isa):
    cases = SPECIAL[fn]
    x = np.array([_value(a, dtype) for a, _ in cases], dtype=dtype)
    want = np.array([_value(b, dtype) for _, b in cases], dtype=dtype)
    got = _run(fn, x)
    for xi, g, w in zip(x, got, want):
        ok = (np.isnan(g) and np.isnan(w)) or (g == w and np.signbit(g) == np.signbit(w))
        assert ok, f"{fn}({xi!r}) = {g!r}, expected {w!r} [{dtype.name}, {isa}]"


@pytest.mark.parametrize("fn", ["exp", "expm1"])
def test_overflow_edge(fn, dtype, isa):
    """x0 = the largest dtype value whose exact e^x rounds to a finite number: f(x0) is
    finite and within the bound, f(next up) is +inf."""
    fi = np.finfo(dtype)
    x = dtype.type(np.log(np.longdouble(fi.max)))
    # walk to the last x whose exact result is still below the overflow threshold
    threshold = np.longdouble(fi.max) + np.ldexp(np.longdouble(1), fi.maxexp - 2 - fi.nmant)  # max + ulp/2
    while np.exp(np.longdouble(x)) >= threshold:
        x = np.nextafter(x, dtype.type(-np.inf))
    while np.exp(np.longdouble(np.nextafter(x, dtype.type(np.inf)))) < threshold:
        x = np.nextafter(x, dtype.type(np.inf))
    below = np.array([np.nextafter(x, dtype.type(-np.inf)), x], dtype=dtype)
    above = np.array([np.nextafter(x, dtype.type(np.inf)), np.nextafter(np.nextafter(x, dtype.type(np.inf)), dtype.type(np.inf))], dtype=dtype)
    got = _run(fn, below)
    assert np.isfinite(got).all(), (fn, below, got)
    assert oracle.ulp_error(got, oracle.math_ref(fn, below), dtype).max() <= ULP_TABLE[fn][dtype.name][1]
    assert np.array_equal(_run(fn, above), np.full(2, np.inf, dtype)), (fn, above, _run(fn, above))


def test_exp_underflow_edge(dtype, isa):
    """Around ln(smallest subnormal / 2), e^x goes from 0 to the smallest subnormal:
    correctly rounded there (the result is a multiple of the subnormal step)."""
    fi = np.finfo(dtype)
    x0 = dtype.type(np.log(np.longdouble(fi.smallest_subnormal) / 2))
    x = [x0]
    for _ in range(3):
        x = [np.nextafter(x[0], dtype.type(-np.inf))] + x + [np.nextafter(x[-1], dtype.type(np.inf))]
    x = np.array(x, dtype=dtype)
    ref = oracle.math_ref("exp", x)
    got = _run("exp", x)
    want = ref.astype(dtype)
    assert np.array_equal(got, want), (x, got, want)
    assert got[0] == 0 and got[-1] == fi.smallest_subnormal
    # far below: +0 exactly, never negative or NaN
    far = np.array([-1e3, -3e3, -fi.max], dtype=dtype)
    out = _run("exp", far)
    assert np.array_equal(out, np.zeros(3, dtype)) and not np.signbit(out).any()


# ----------------------------------------------------------------------------------
# Vector tails and NaN lanes
# ----------------------------------------------------------------------------------

def _typical_input(fn, dtype, n, rng):
    if fn in ("log",):
        return rng.uniform(0.01, 10, n).astype(dtype)
    if fn == "log1p":
        return rng.uniform(-0.9, 10, n).astype(dtype)
    return rng.uniform(-10, 10, n).astype(dtype)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_every_tail_length(fn, dtype, isa):
    """n = 1 .. 2w+1: each element equals the same element computed in a long array, and
    nothing past n is written (the output is a prefix of a guarded buffer)."""
    rng = np.random.default_rng(7)
    base = _typical_input(fn, dtype, 4 * MAX_LANES, rng)
    full = _run(fn, base)
    for n in range(1, 2 * MAX_LANES + 2):
        for start in (0, 3):
            x = base[start:start + n].copy()
            buf = np.full(n + 8, 12345.0, dtype=dtype)
            _core._testing.math(fn, x, buf[:n])
            assert np.array_equal(buf[:n], full[start:start + n]), (fn, n, start)
            assert (buf[n:] == 12345.0).all(), f"{fn} wrote past element {n}"


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_nan_in_every_lane_position(fn, dtype, isa):
    """NaN in the head, a middle and the tail lane gives NaN there and nowhere else."""
    rng = np.random.default_rng(11)
    for n in (1, 5, 8, 16, 17, 37):
        x = _typical_input(fn, dtype, n, rng)
        clean = _run(fn, x)
        for pos in sorted({0, n // 2, n - 1}):
            y = x.copy()
            y[pos] = np.nan
            got = _run(fn, y)
            assert np.isnan(got[pos]), (fn, n, pos, got[pos])
            others = np.arange(n) != pos
            assert np.array_equal(got[others], clean[others]), (fn, n, pos)


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_in_place(fn, dtype):
    x = _typical_input(fn, dtype, 1000, np.random.default_rng(3))
    want = _run(fn, x)
    _core._testing.math(fn, x, x)
    assert np.array_equal(x, want)


def test_math_argument_checks():
    x32 = np.ones(5, np.float32)
    with pytest.raises(TypeError, match="float64, expected float32"):
        _core._testing.math("exp", x32, np.empty(5, np.float64))
    with pytest.raises(TypeError, match="int64"):
        _core._testing.math("exp", np.ones(5, np.int64), np.empty(5, np.int64))
    with pytest.raises(TypeError):
        _core._testing.math("exp", [1.0, 2.0], np.empty(2, np.float64))
    with pytest.raises(ValueError, match=r"unknown function 'cosh'"):
        _core._testing.math("cosh", x32, np.empty_like(x32))
    with pytest.raises(ValueError, match=r"x is \(5,\), out is \(4,\)"):
        _core._testing.math("exp", x32, np.empty(4, np.float32))
    with pytest.raises(ValueError, match="C-contiguous"):
        _core._testing.math("exp", x32, np.empty(10, np.float32)[::2])
    with pytest.raises(ValueError, match="1-D"):
        _core._testing.math("exp", np.ones((2, 2), np.float32), np.empty((2, 2), np.float32))
    ro = np.empty(5, np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        _core._testing.math("exp", x32, ro)
    buf = np.ones(8, np.float32)
    with pytest.raises(ValueError, match="overlaps"):
        _core._testing.math("exp", buf[:5], buf[2:7])
