"""A small high-precision oracle for the kernel tests, written from the textbook
definitions and independently of the C++ (which uses its own polynomials, docs/conventions.md).

Everything here computes in float64 or np.longdouble (x87 80-bit on x86-64: 64-bit
significand, so a float64 result is known to ~2^-11 of its ulp) and returns that wide
value; the tests round to the dtype under test or measure the error against it.
The oracle itself is checked against finite differences and hand-worked numbers in
tests/kernels/test_losses.py and test_elementwise.py.
"""
from __future__ import annotations

import numpy as np

import activation_cases

LD = np.longdouble
# True when np.longdouble carries more bits than float64 (x87 extended or binary128);
# without it the float64 ulp measurements have no reference and are skipped.
LONGDOUBLE_IS_WIDE = np.finfo(LD).nmant >= 63

MATH_FUNCTIONS = ("exp", "expm1", "log", "log1p", "tanh", "sigmoid")
# The activations, their definitions and the parameter each takes in the tests: one case
# per registry row in tests/activation_cases.py.
ACTIVATIONS = tuple(activation_cases.CASES)
act, act_grad, act_grad_given = (activation_cases.act, activation_cases.act_grad,
                                 activation_cases.act_grad_given)
# The losses every logit is finite for (tests/kernels/test_losses.py and the edge-value
# tests run them); poisson (log link: e^z overflows past z ~ 88 in float32) has its own
# module, test_poisson.py.
LOSSES = ("softmax_cross_entropy", "binary_cross_entropy", "mse")
PARAM = {name: case.param for name, case in activation_cases.CASES.items()}


# --------------------------------------------------------------------------------------
# Transcendentals, in long double
# --------------------------------------------------------------------------------------

_sigmoid_wide = activation_cases.sigmoid_wide


def math_ref(name: str, x: np.ndarray) -> np.ndarray:
    """f(x) in np.longdouble for f in MATH_FUNCTIONS (inputs converted exactly)."""
    x = np.asarray(x).astype(LD)
    with np.errstate(all="ignore"):
        if name == "exp":
            return np.exp(x)
        if name == "expm1":
            return np.expm1(x)
        if name == "log":
            return np.log(x)
        if name == "log1p":
            return np.log1p(x)
        if name == "tanh":
            return np.tanh(x)
        if name == "sigmoid":
            return _sigmoid_wide(x)
    raise ValueError(name)


def _work_type(ref: np.ndarray, dtype) -> type:
    """float64 suffices to measure float32 errors against a float64 reference (and is
    much faster); everything else is measured in long double."""
    if np.dtype(dtype) == np.float32 and np.asarray(ref).dtype == np.float64:
        return np.float64
    return LD


def ulp_of(ref: np.ndarray, dtype) -> np.ndarray:
    """The spacing of `dtype` numbers in the binade of the exact value `ref`, with the
    subnormal spacing as the floor; ulp(0) = smallest subnormal. Measuring with the exact
    value's binade (not the rounded one) avoids the factor-2 jump at powers of 2."""
    fi = np.finfo(dtype)
    work = _work_type(ref, dtype)
    ref = np.abs(np.asarray(ref).astype(work))
    _, e = np.frexp(np.where(np.isfinite(ref) & (ref > 0), ref, work(1)))  # ref = m 2^e, m in [.5, 1)
    e = np.maximum(e.astype(np.int64) - 1, fi.minexp)                       # floor(log2 ref)
    return np.ldexp(np.ones_like(ref), (e - fi.nmant).astype(np.int32))


def ulp_error(got: np.ndarray, ref: np.ndarray, dtype) -> np.ndarray:
    """|got - ref| in ulps of `dtype`, per element; ref is long double (or float64 for a
    float32 dtype). Special cases: both NaN -> 0; ref rounds to +-inf in dtype -> 0 if got
    is that inf, else inf; got infinite or NaN while the rounded ref is finite -> inf."""
    work = _work_type(ref, dtype)
    got = np.asarray(got)
    ref = np.asarray(ref).astype(work)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = ref.astype(dtype)
        err = np.abs(got.astype(work) - ref) / ulp_of(ref, dtype)
    err = np.where(np.isfinite(got) & np.isfinite(rounded), err, work(np.inf))
    same_special = (np.isnan(got) & np.isnan(ref)) | (np.isinf(rounded) & (got == rounded))
    return np.where(same_special, work(0), err)

# --------------------------------------------------------------------------------------
# Losses and outputs, long double (row losses summed; grad = scale * d sum / d logits)
# --------------------------------------------------------------------------------------

def _lse(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return m + np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z).astype(LD)
    with np.errstate(invalid="ignore"):
        return np.exp(z - _lse(z))


def softmax_error_scale(z: np.ndarray) -> np.ndarray:
    """The natural error scale of p = e^(z - max) / sum in the dtype: the rounding of
    z - max is amplified by |z - max|, so p (1 + |z - max|)."""
    z = np.asarray(z).astype(LD)
    with np.errstate(invalid="ignore"):
        return softmax(z) * (1 + np.abs(z - z.max(axis=1, keepdims=True)))


def sigmoid(z: np.ndarray) -> np.ndarray:
    return _sigmoid_wide(np.asarray(z).astype(LD))


def loss(name: str, z: np.ndarray, y: np.ndarray, scale: float = 1.0):
    """(total loss, grad = scale * d total / d z, value error scale, grad error scale),
    computed in long double; the total is returned as a Python float.

    The error scales are the magnitudes of the terms the kernel rounds, so
    k * eps * scale bounds an accurate implementation's error (used by the tests)."""
    z = np.asarray(z).astype(LD)
    y = np.asarray(y).astype(LD)
    scale = LD(scale)
    k = z.shape[1]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        if name == "softmax_cross_entropy":
            lse = _lse(z)
            terms = y * (lse - z)
            p = np.exp(z - lse)
            ysum = y.sum(axis=1, keepdims=True)
            grad = scale * (p * ysum - y)
            value_scale = np.abs(y) * (np.abs(lse) + np.abs(z) + 1)
            # p = e^(z - max): the rounding of z - max is amplified by |z - max|
            grad_scale = abs(scale) * (p * np.abs(ysum) * (1 + np.abs(z - z.max(axis=1, keepdims=True)))
                                       + np.abs(y))
        elif name == "binary_cross_entropy":
            terms = (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))) / k
            grad = scale / k * (sigmoid(z) - y)
            value_scale = (np.abs(z) * (1 + np.abs(y)) + 1) / k
            grad_scale = abs(scale) / k * (sigmoid(z) + np.abs(y))
        elif name == "mse":
            terms = (z - y) ** 2 / k
            grad = scale * 2 / k * (z - y)
            value_scale = (np.abs(z) + np.abs(y)) ** 2 / k
            grad_scale = abs(scale) * 2 / k * (np.abs(z) + np.abs(y))
        elif name == "poisson":
            mu = np.exp(z)
            y_log_y = np.where(y == 0, 0, y * np.log(np.where(y == 0, 1, y)))
            terms = y_log_y - np.where(y == 0, 0, y * z) - y + mu    # xlogy(0, .) = 0
            grad = scale * (mu - y)
            # y (log y - z) rounds |y log y| + |y z|; e^z rounds with |z| amplification
            value_scale = np.abs(y_log_y) + np.abs(y * z) + np.abs(y) + mu * (1 + np.abs(z))
            grad_scale = abs(scale) * (mu * (1 + np.abs(z)) + np.abs(y))
        else:
            raise ValueError(name)
    return float(terms.sum()), grad, value_scale, grad_scale


def output(name: str, z: np.ndarray) -> np.ndarray:
    if name == "softmax_cross_entropy":
        return softmax(z)
    if name == "binary_cross_entropy":
        return sigmoid(z)
    if name == "mse":
        return np.asarray(z).astype(LD)
    if name == "poisson":
        return np.exp(np.asarray(z).astype(LD))
    raise ValueError(name)


# --------------------------------------------------------------------------------------
# Comparisons
# --------------------------------------------------------------------------------------

def eps_error(got, ref, scale, dtype) -> np.ndarray:
    """|got - ref| / (eps(dtype) * scale) per element: the error in units of the dtype's
    machine epsilon relative to `scale`, the magnitude of the terms the computation rounds
    (for a plain value, |ref|). The smallest subnormal is added to the denominator so an
    exactly-zero scale still demands got == ref up to underflow. NaN matches NaN only;
    infinities, and any value whose scale is not finite, must match exactly."""
    fi = np.finfo(dtype)
    got = np.asarray(got).astype(LD)
    ref = np.asarray(ref).astype(LD)
    scale = np.abs(np.broadcast_to(np.asarray(scale).astype(LD), ref.shape))
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(got - ref) / (LD(fi.eps) * scale + LD(fi.smallest_subnormal))
    special = ~np.isfinite(got) | ~np.isfinite(ref) | ~np.isfinite(scale)
    same = (np.isnan(got) & np.isnan(ref)) | (got == ref)
    # an exact match is no error whatever the scale (an infinite one, next to an inf logit)
    return np.where(special | same, np.where(same, LD(0), LD(np.inf)), err)


def assert_within_eps(got, ref, scale, dtype, k: float, what: str = "") -> None:
    """max eps_error <= k, with the worst element named in the message."""
    err = eps_error(got, ref, scale, dtype)
    if err.size == 0:
        return
    i = int(np.argmax(err))
    worst = float(err.ravel()[i])
    if not worst <= k:
        g = np.asarray(got).ravel()[i]
        r = np.asarray(ref).ravel()[i]
        raise AssertionError(f"{what}: error {worst:.3g} eps > {k} eps at flat index {i}: "
                             f"got {g!r}, expected {r!r}")


def assert_same_bits(results: dict) -> None:
    """Every value in {label: array, or tuple of arrays/floats} equals the first one bit
    for bit: equal values with equal sign bits (so -0.0 != +0.0), NaN matching NaN."""
    names = list(results)
    first = results[names[0]]
    for name in names[1:]:
        other = results[name]
        pairs = zip(first, other) if isinstance(first, tuple) else [(first, other)]
        for x, y in pairs:
            x, y = np.asarray(x), np.asarray(y)
            assert x.dtype == y.dtype and x.shape == y.shape, (name, x.dtype, y.dtype, x.shape, y.shape)
            same = ((x == y) & (np.signbit(x) == np.signbit(y))) | (np.isnan(x) & np.isnan(y))
            if not same.all():
                bad = np.flatnonzero(~same.ravel())[:5]
                raise AssertionError(
                    f"{names[0]} and {name} differ at flat indices {bad.tolist()}: "
                    f"{x.ravel()[bad].tolist()} vs {y.ravel()[bad].tolist()}")


def dense_program(params: np.ndarray, units: int, features: int, activation: str = "linear",
                  param: float = 0.0) -> dict:
    """The inference program (csrc/train/program.hpp) of one Dense layer whose W (units,
    features) and b (units,) lie in that order in ``params``: one gemm_bias_act from the
    batch into z (and a, unless linear)."""
    n_w = units * features
    roles = ["batch", "parameter", "parameter", "cache"] + ([] if activation == "linear"
                                                             else ["cache"])
    shapes = [(features, 1, 0), (n_w, 0, 0), (units, 0, 0)] + [(units, 1, 0)] * (len(roles) - 3)
    args = np.full((1, 7), -1, np.int64)
    args[0, :5] = [0, 1, 2, 3, len(roles) - 1]
    forward = {"codes": ["gemm_bias_act"], "args": args, "constants": np.array([[param, 0, 0]]),
               "keys": np.zeros((1, 2), np.uint64), "activations": [activation]}
    return {"roles": roles, "shapes": np.array(shapes, np.int64),
            "arrays": [None, params[:n_w], params[n_w:]] + [None] * (len(roles) - 3),
            "forward": forward, "input": 0, "output": len(roles) - 1}


def loss_gradient_by_differences(name: str, z: np.ndarray, y: np.ndarray, scale: float,
                                 h: float = 1e-6) -> np.ndarray:
    """scale * d(loss sum)/dz by central differences of :func:`loss`, element by element."""
    fd = np.empty_like(z)
    for idx in np.ndindex(*z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += h
        zm[idx] -= h
        fd[idx] = scale * (loss(name, zp, y)[0] - loss(name, zm, y)[0]) / (2 * h)
    return fd


# --------------------------------------------------------------------------------------
# bfloat16 GEMM: the contract's float32 chain, step by step (csrc/kernels/gemm_bf16.hpp)
# --------------------------------------------------------------------------------------

FLT_MIN = np.float32(2.0 ** -126)


def bf16_gemm_chain(a_bf16, b_bf16, flush: bool, round_products: bool = False) -> np.ndarray:
    """op(A) @ op(B) (m x k, k x n float32 arrays whose values are bfloat16) summed as the
    contract says: K in pairs, q ascending, the odd element of a pair first, one float32
    rounding per step (the products are exact). flush: VDPBF16PS's treatment of
    subnormals (read as zero, results flushed to zero of their sign). round_products: the
    generic path's multiply then add, which rounds a product that falls below 2^-126 (the
    only products of two bfloat16 values float32 cannot hold)."""
    m, k = a_bf16.shape
    acc = np.zeros((m, b_bf16.shape[1]), np.float32)

    def step(p):
        nonlocal acc
        product = np.multiply.outer(a_bf16[:, p].astype(np.float64), b_bf16[p].astype(np.float64))
        if round_products:
            product = product.astype(np.float32).astype(np.float64)
        acc = (acc.astype(np.float64) + product).astype(np.float32)   # exact sum, one rounding
        if flush:
            acc = np.where(np.abs(acc) < FLT_MIN, np.copysign(np.float32(0), acc), acc)

    with np.errstate(over="ignore", invalid="ignore"):
        for q in range((k + 1) // 2):
            if 2 * q + 1 < k:
                step(2 * q + 1)
            else:   # the missing odd elements are packed as +0 on both sides: acc + (+0)
                acc = acc + np.float32(0)
            step(2 * q)
    return acc


def _flush(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < FLT_MIN, np.copysign(np.float32(0), x), x)


def _add_flushed(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """x + y (float32, or float64 exact products) rounded once to float32, then flushed."""
    return _flush((x.astype(np.float64) + y.astype(np.float64)).astype(np.float32))


def bf16_amx_chain(a_bf16, b_bf16, tile_pairs: int = 16) -> np.ndarray:
    """op(A) @ op(B) summed as TDPBF16PS does by the SDM's pseudo-code, on the amx level's
    tiles (csrc/kernels/gemm_amx.hpp): K in pairs, the pairs in tiles of 16 (the last one
    padded with zero pairs); per tile the even products and the odd products summed apart
    from +0, then acc = acc + (even + odd). Every step rounds once to float32 (the
    products are exact) and flushes subnormals to zero of their sign."""
    m, k = a_bf16.shape
    n = b_bf16.shape[1]
    pairs = -(-k // 2)
    acc = np.zeros((m, n), np.float32)

    def product(p):   # exact; the padding's missing elements are +0 on both sides
        if p >= k:
            return np.zeros((m, n))
        return np.multiply.outer(a_bf16[:, p].astype(np.float64), b_bf16[p].astype(np.float64))

    with np.errstate(over="ignore", invalid="ignore"):
        for t0 in range(0, pairs, tile_pairs):
            even = np.zeros((m, n), np.float32)
            odd = np.zeros((m, n), np.float32)
            for q in range(t0, t0 + tile_pairs):
                even = _add_flushed(even, product(2 * q))
                odd = _add_flushed(odd, product(2 * q + 1))
            acc = _add_flushed(acc, _add_flushed(even, odd))
    return acc
