"""The NumPy backend: the readable oracle every other backend is tested against.

Each method is the formula of its docstring in :mod:`fastmlp.backends.base`, written
with NumPy in the arrays' own dtype (no hidden float64) and into the given outputs.
Formulas are the numerically stable ones (docs/conventions.md): for finite inputs nothing
overflows, divides by zero or makes NaN. Underflow (e^-1000 = 0, tiny products) is the
correct IEEE result here, so each method ignores it even under ``np.seterr(all="raise")``.
"""
from __future__ import annotations

import math
import operator
from typing import Optional

import numpy as np

from .._sparse import CsrRows
from .base import ActivationFormulas
from .bfloat16 import dense_rows_for_bfloat16

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_underflow_ok = np.errstate(under="ignore")   # a per-call, thread-safe decorator


def round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 ``x`` rounded to bfloat16, as float32 values (their low 16 bits zero), the
    way VCVTNEPS2BF16 rounds: to nearest, ties to even; a float32 subnormal to a zero of its
    sign; a NaN to a quiet NaN; past the largest bfloat16 to infinity (docs/bfloat16.md)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (u + (np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1)))) >> np.uint32(16)
    is_nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    is_subnormal = (u & np.uint32(0x7F800000)) == 0
    top = u >> np.uint32(16)
    bits = np.where(is_nan, top | np.uint32(0x40), np.where(is_subnormal, top & np.uint32(0x8000), rounded))
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _bfloat16_operands(kernel: str, **arrays: np.ndarray):
    """The first two arrays rounded to bfloat16; TypeError unless every array is float32."""
    for name, x in arrays.items():
        if x.dtype != np.float32:
            raise TypeError(f"{kernel}: bf16=True takes float32 arrays; {name} has dtype {x.dtype}")
    first, second = list(arrays.values())[:2]
    return round_to_bfloat16(first), round_to_bfloat16(second)


def _check_arrays(*arrays: np.ndarray) -> None:
    """The protocol's shared contract: one float dtype, C-contiguous (TypeError otherwise)."""
    for i, x in enumerate(arrays):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"argument {i} must be a numpy.ndarray; got {type(x).__name__}")
        if x.dtype != arrays[0].dtype or x.dtype not in _DTYPES:
            raise TypeError("arrays must share one dtype, float32 or float64; got "
                            + ", ".join(str(a.dtype) for a in arrays))
        if not x.flags.c_contiguous:
            raise TypeError(f"argument {i} must be C-contiguous")


def sigmoid(z: np.ndarray, out: np.ndarray) -> None:
    """sigmoid(z) = 1 / (1 + e^-z), written with e = e^-|z| so it never overflows:
    1 / (1 + e) for z >= 0 and e / (1 + e) for z < 0."""
    e = np.exp(-np.abs(z))
    np.divide(np.where(z >= 0, 1, e), 1 + e, out=out)


def _shifted(z: np.ndarray) -> np.ndarray:
    """d = z - max z row-wise, 0 where z_j is the max (so a +inf logit gives 0, not
    inf - inf); NaN stays NaN."""
    top = z.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(z == top, 0, z - top)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """log_softmax(z)_j = d_j - log sum_l e^(d_l), d = _shifted(z)."""
    shifted = _shifted(z)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _softmax(z: np.ndarray, out: np.ndarray) -> None:
    """softmax(z)_j = e^(d_j) / sum_l e^(d_l), d = _shifted(z)."""
    np.exp(_shifted(z), out=out)
    out /= out.sum(axis=1, keepdims=True)


def _copy(z: np.ndarray, out: np.ndarray) -> None:
    if out is not z:
        np.copyto(out, z)


# Row weights w (m,) or None: the elementwise loss terms of row i are multiplied by w_i
# before the (unchanged) sum, and the gradient's coefficient becomes coef * w_i in the
# dtype, so w = 1 reproduces the unweighted result bit for bit.
def _weighted_terms(terms, w):
    return terms if w is None else terms * w[:, None]


def _row_coef(coef, w):
    return coef if w is None else (coef * w)[:, None]


def _softmax_cross_entropy(z, y, grad, scale, w=None):
    """Row loss -sum_{j: y_j != 0} y_j log_softmax(z)_j (a zero target adds nothing, even
    where log_softmax is -inf); d/dz = softmax(z) * sum_j y_j - y."""
    log_p = _log_softmax(z)
    if grad is not None:
        np.multiply(np.exp(log_p), y.sum(axis=1, keepdims=True), out=grad)
        grad -= y
        grad *= _row_coef(scale, w)
    with np.errstate(invalid="ignore"):
        terms = np.where(y == 0, 0, y * log_p)
    return -_weighted_terms(terms, w).sum()


def _binary_cross_entropy(z, y, grad, scale, w=None):
    """Row loss mean_j [max(z,0) - z y + log1p(e^-|z|)], the first part written max(z, 0)
    for y = 0 and max(-z, 0) for y = 1 (limits, not NaN, at infinite z);
    d/dz = (sigmoid(z) - y) / k."""
    k = z.shape[1]
    if grad is not None:
        sigmoid(z, grad)
        grad -= y
        grad *= _row_coef(scale / k, w)
    with np.errstate(invalid="ignore"):
        linear = np.where(y == 0, np.maximum(z, 0),
                          np.where(y == 1, np.maximum(-z, 0), np.maximum(z, 0) - z * y))
    terms = linear + np.log1p(np.exp(-np.abs(z)))
    return _weighted_terms(terms, w).sum() / k


def _mse(z, y, grad, scale, w=None):
    """Row loss mean_j (z_j - y_j)^2; d/dz = 2 (z - y) / k."""
    k = z.shape[1]
    diff = z - y
    if grad is not None:
        np.multiply(diff, _row_coef(2 * scale / k, w), out=grad)
    return _weighted_terms(diff * diff, w).sum() / k


def _poisson(z, y, grad, scale, w=None):
    """Log link, mu = e^z. Row loss sum_j [(y log y - y z) - y + mu] (half the Poisson
    deviance, scikit-learn's poisson_loss), the first part 0 for y = 0; d/dz = mu - y.
    e^z past the dtype's range is inf (the loss then is), not an error."""
    with np.errstate(over="ignore"):
        mu = np.exp(z)
    if grad is not None:
        np.subtract(mu, y, out=grad)
        grad *= _row_coef(scale, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        xlogy = np.where(y == 0, 0, y * (np.log(y) - z))
    return _weighted_terms(xlogy - y + mu, w).sum()


def _exp(z: np.ndarray, out: np.ndarray) -> None:
    with np.errstate(over="ignore"):
        np.exp(z, out=out)


_LOSSES = {
    "softmax_cross_entropy": _softmax_cross_entropy,
    "binary_cross_entropy": _binary_cross_entropy,
    "mse": _mse,
    "poisson": _poisson,
}

_OUTPUTS = {
    "softmax_cross_entropy": _softmax,
    "binary_cross_entropy": sigmoid,
    "mse": _copy,
    "poisson": _exp,
}


def _lookup(table: dict, name: str, kind: str):
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(table)}") from None


# ------------------------------------------------------------------------------------
# Layer helpers: argument checks, the dropout hash, row sums in the kernels' order
# ------------------------------------------------------------------------------------

def _same_shapes(kernel: str, **arrays: np.ndarray) -> None:
    (first, a), *rest = arrays.items()
    for name, b in rest:
        if b.shape != a.shape:
            raise ValueError(f"{kernel}: shape mismatch: {first} is {a.shape}, {name} is "
                             f"{b.shape} (they must be equal)")


def _uint64(kernel: str, name: str, value) -> int:
    """An int (not a bool, not a float) in [0, 2**64)."""
    if isinstance(value, (bool, np.bool_, float, np.floating)) or \
            not hasattr(type(value), "__index__"):
        raise TypeError(f"{kernel}: {name} must be an int, got {type(value).__name__}")
    value = operator.index(value)
    if not 0 <= value < 2 ** 64:
        raise ValueError(f"{kernel}: {name} must satisfy 0 <= {name} < 2**64, got {value}")
    return value


_U64 = np.uint64


def _splitmix64(x):
    """splitmix64 on np.uint64 scalars or arrays; the wraparound is intended."""
    with np.errstate(over="ignore"):
        z = x + _U64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
        return z ^ (z >> _U64(31))


def _high_word(z: np.ndarray, m: np.ndarray) -> np.ndarray:
    """floor(z * m / 2^64) for uint64 z and m < 2^32, exactly: with z = zh 2^32 + zl,
    z m / 2^32 = zh m + zl m / 2^32, and neither product reaches 2^64."""
    zh, zl = z >> _U64(32), z & _U64(0xFFFFFFFF)
    return (zh * m + ((zl * m) >> _U64(32))) >> _U64(32)


def _dropout_keep(n: int, rate: float, seed: int, layer: int, step: int,
                  first: int = 0) -> np.ndarray:
    """keep_i = u_i >= rate for the flat indices first <= i < first + n (base.py,
    dropout_forward)."""
    key = _splitmix64(_splitmix64(_splitmix64(_U64(seed)) ^ _U64(layer)) ^ _U64(step))
    h = _splitmix64(key ^ np.arange(first, first + n, dtype=_U64))
    u = (h >> _U64(40)).astype(np.float64) * 2.0 ** -24      # exact: 24-bit integers
    return u >= rate


def _maxout_pieces(kernel: str, z: np.ndarray, a: np.ndarray, argmax: np.ndarray):
    """(units, pieces) for z (m, units * pieces), a and argmax (m, units) int32."""
    if not isinstance(argmax, np.ndarray) or argmax.dtype != np.int32:
        raise TypeError(f"{kernel}: argmax must be an int32 numpy array, got "
                        f"{getattr(argmax, 'dtype', type(argmax).__name__)}")
    if z.ndim != 2 or a.ndim != 2 or argmax.shape != a.shape or z.shape[0] != a.shape[0] \
            or (z.shape[1] % a.shape[1] != 0 or z.shape[1] == 0 if a.shape[1] else z.shape[1]):
        raise ValueError(f"{kernel}: shape mismatch: {z.shape} and {a.shape} (argmax "
                         f"{argmax.shape}): expected (m, units * pieces) and (m, units)")
    units = a.shape[1]
    return units, (z.shape[1] // units if units else 1)


def _columnwise_shapes(kernel, x, x_name, same, per_feature, need_rows=False):
    """x (m, n), the arrays ``same`` of its shape and ``per_feature`` of shape (n,)."""
    if x.ndim != 2 or any(a.shape != x.shape for a in same) or \
            any(v.shape != x.shape[1:] for v in per_feature):
        raise ValueError(f"{kernel}: shape mismatch: {x_name} is {x.shape}; the (m, n) "
                         f"arrays are {[a.shape for a in same]}, the (n,) ones "
                         f"{[v.shape for v in per_feature]}")
    if need_rows and x.shape[0] < 1:
        raise ValueError(f"{kernel}: {x_name} must have at least one row, got shape {x.shape}")


def _sum_rows(x: np.ndarray) -> np.ndarray:
    """sum_i x[i, :]: per column, an accumulator starting at +0 adds the rows in ascending
    order, in the dtype (csrc/kernels/batchnorm.hpp)."""
    total = np.zeros(x.shape[1], x.dtype)
    for row in x:
        total += row
    return total


def _fixed_order_sum(values: np.ndarray) -> float:
    """sum_squares' order for any flat values: Sum16 per block of NORM_BLOCK elements in
    the dtype, the blocks added in ascending order in double."""
    total = 0.0
    for start in range(0, values.size, NORM_BLOCK):
        total += float(_sum16(values[start:start + NORM_BLOCK]))
    return total


class NumPyBackend:
    """Backend written with NumPy: the oracle of the tests and a fallback for the core."""

    name = "numpy"

    @_underflow_ok
    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, *, trans_a: bool = False,
             trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0, bf16: bool = False) -> None:
        """``c = alpha * op(a) @ op(b) + beta * c``; with beta == 0, c is never read. bf16:
        float32 operands rounded to bfloat16 first (:func:`round_to_bfloat16`), the
        products summed in float32 by BLAS."""
        if bf16:
            a, b = _bfloat16_operands("gemm", a=a, b=b, c=c)
        _check_arrays(a, b, c)
        op_a = a.T if trans_a else a
        op_b = b.T if trans_b else b
        if beta == 0:
            np.matmul(op_a, op_b, out=c)
            if alpha != 1:
                c *= alpha
        else:
            c *= beta
            c += alpha * (op_a @ op_b)

    def gemm_bias_act(self, x: np.ndarray, w: np.ndarray, bias: np.ndarray, z: np.ndarray,
                      a: np.ndarray, activation: ActivationFormulas, param: float,
                      bf16: bool = False) -> None:
        """``z = x @ w.T + bias``, ``a = act(z)``: gemm (scipy's product for sparse
        rows x) then bias_act_forward."""
        if type(x) is CsrRows:
            dense_rows_for_bfloat16(bf16)
            _check_arrays(x.data, w, z)
            np.copyto(z, x.to_scipy() @ w.T)
        else:
            self.gemm(x, w, z, trans_b=True, bf16=bf16)
        self.bias_act_forward(z, bias, a, activation, param)

    def weight_grad(self, dz: np.ndarray, x, dw: np.ndarray, bf16: bool = False) -> None:
        """``dw = dz.T @ x``: gemm, or scipy's ``(x.T @ dz).T`` for sparse rows x."""
        if type(x) is CsrRows:
            dense_rows_for_bfloat16(bf16)
            _check_arrays(dz, x.data, dw)
            np.copyto(dw, (x.to_scipy().T @ dz).T)
        else:
            self.gemm(dz, x, dw, trans_a=True, bf16=bf16)

    @_underflow_ok
    def bias_act_forward(self, z: np.ndarray, bias: np.ndarray, a: np.ndarray,
                         activation: ActivationFormulas, param: float) -> None:
        """``z += bias`` row by row, then ``a = activation.forward(z, param)``."""
        _check_arrays(z, bias, a)
        z += bias
        np.copyto(a, activation.forward(z, param))

    @_underflow_ok
    def act_backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray, dz: np.ndarray,
                     activation: ActivationFormulas, param: float) -> None:
        """``dz = da * activation.derivative(z, a, param)``."""
        _check_arrays(z, a, da, dz)
        np.multiply(da, activation.derivative(z, a, param), out=dz)

    @_underflow_ok
    def col_sum(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out[j] = sum_i x[i, j]``."""
        _check_arrays(x, out)
        np.sum(x, axis=0, out=out)

    @_underflow_ok
    def loss(self, name: str, logits: np.ndarray, y: np.ndarray,
             grad: Optional[np.ndarray], scale: float, *,
             weights: Optional[np.ndarray] = None) -> float:
        """Sum of the (weighted) row losses; ``grad = scale * d(sum)/d logits`` (row i
        with ``scale * w_i``) when grad is given."""
        _check_arrays(logits, y, *(() if grad is None else (grad,)),
                      *(() if weights is None else (weights,)))
        if weights is not None and weights.shape != logits.shape[:1]:
            raise ValueError(f"loss: shape mismatch: logits is {logits.shape}, weights is "
                             f"{weights.shape} (weights must have logits.shape[0] elements)")
        return float(_lookup(_LOSSES, name, "loss")(logits, y, grad, scale, weights))

    @_underflow_ok
    def output(self, name: str, logits: np.ndarray, out: np.ndarray) -> None:
        """Softmax rows (softmax cross-entropy), sigmoid (binary), identity (mse), exp
        (poisson)."""
        _check_arrays(logits, out)
        _lookup(_OUTPUTS, name, "loss")(logits, out)

    def argmax_rows(self, logits: np.ndarray, out: np.ndarray) -> None:
        """np.argmax along the rows (NaN counts as the maximum: the first NaN)."""
        _check_arrays(logits)
        if out.dtype != np.int64 or out.shape != logits.shape[:1]:
            raise ValueError(f"argmax_rows: out must be int64 of shape {logits.shape[:1]}, "
                             f"got {out.dtype} {out.shape}")
        np.argmax(logits, axis=1, out=out)

    # ---- Layers: dropout, maxout, batch normalization, weight penalties ----

    @_underflow_ok
    def dropout_forward(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, rate: float,
                        seed: int, layer: int, step: int, first_row: int = 0) -> None:
        """``mask = keep ? T(1 / (1 - rate)) : 0`` from the counter hash; ``y = x * mask``."""
        _check_arrays(x, y, mask)
        _same_shapes("dropout_forward", x=x, y=y, mask=mask)
        seed, layer, step = (_uint64("dropout_forward", n, v)
                             for n, v in (("seed", seed), ("layer", layer), ("step", step)))
        if not 0 <= rate < 1:
            raise ValueError(f"dropout_forward: rate must satisfy 0 <= rate < 1, got {rate}")
        first = first_row * (x.size // max(len(x), 1))       # x[0, 0]'s index in the batch
        keep = _dropout_keep(x.size, rate, seed, layer, step, first).reshape(x.shape)
        scale = x.dtype.type(1.0 / (1.0 - rate))        # computed in double, then rounded
        np.copyto(mask, np.where(keep, scale, x.dtype.type(0)))
        np.multiply(x, mask, out=y)

    @_underflow_ok
    def mul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """``out = a * b``."""
        _check_arrays(a, b, out)
        _same_shapes("mul", a=a, b=b, out=out)
        np.multiply(a, b, out=out)

    def maxout_forward(self, z: np.ndarray, a: np.ndarray, argmax: np.ndarray) -> None:
        """``argmax = np.argmax`` over the pieces (lowest index; first NaN); ``a`` its value."""
        _check_arrays(z, a)
        units, k = _maxout_pieces("maxout_forward", z, a, argmax)
        pieces = z.reshape(z.shape[0], units, k)
        argmax[...] = np.argmax(pieces, axis=2)
        a[...] = np.take_along_axis(pieces, argmax[..., None].astype(np.intp), axis=2)[..., 0]

    def maxout_backward(self, da: np.ndarray, argmax: np.ndarray, dz: np.ndarray) -> None:
        """``dz`` is ``da`` at each unit's winning piece and 0 elsewhere."""
        _check_arrays(da, dz)
        units, k = _maxout_pieces("maxout_backward", dz, da, argmax)
        if argmax.size and not ((argmax >= 0) & (argmax < k)).all():
            raise ValueError(f"maxout_backward: argmax holds values outside [0, {k}) "
                             f"(pieces = {k})")
        pieces = dz.reshape(dz.shape[0], units, k)
        pieces[...] = 0
        np.put_along_axis(pieces, argmax[..., None].astype(np.intp), da[..., None], axis=2)

    @_underflow_ok
    def batchnorm_forward_train(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                                y: np.ndarray, xhat: np.ndarray, mean: np.ndarray,
                                inv_std: np.ndarray, eps: float) -> None:
        """Batch statistics (two passes, rows in ascending order), xhat and y (base.py)."""
        _check_arrays(x, gamma, beta, y, xhat, mean, inv_std)
        _columnwise_shapes("batchnorm_forward_train", x, "x", (y, xhat),
                          (gamma, beta, mean, inv_std), need_rows=True)
        T = x.dtype.type
        m = T(x.shape[0])
        mean[...] = _sum_rows(x) / m
        centered = x - mean
        var = _sum_rows(centered * centered) / m
        inv_std[...] = T(1) / np.sqrt(var + T(eps))
        np.multiply(centered, inv_std, out=xhat)
        np.add(gamma * xhat, beta, out=y)

    @_underflow_ok
    def batchnorm_forward_infer(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                                mean: np.ndarray, var: np.ndarray, eps: float,
                                y: np.ndarray) -> None:
        """``y = gamma * ((x - mean) * (1 / sqrt(var + eps))) + beta``."""
        _check_arrays(x, gamma, beta, mean, var, y)
        _columnwise_shapes("batchnorm_forward_infer", x, "x", (y,), (gamma, beta, mean, var))
        T = x.dtype.type
        inv = T(1) / np.sqrt(var + T(eps))
        np.add(gamma * ((x - mean) * inv), beta, out=y)

    @_underflow_ok
    def batchnorm_backward(self, dy: np.ndarray, xhat: np.ndarray, gamma: np.ndarray,
                           inv_std: np.ndarray, dx: np.ndarray, dgamma: np.ndarray,
                           dbeta: np.ndarray) -> None:
        """dbeta, dgamma (rows in ascending order), then dx (base.py)."""
        _check_arrays(dy, xhat, gamma, inv_std, dx, dgamma, dbeta)
        _columnwise_shapes("batchnorm_backward", dy, "dy", (xhat, dx),
                          (gamma, inv_std, dgamma, dbeta), need_rows=True)
        m = dy.dtype.type(dy.shape[0])
        dbeta[...] = _sum_rows(dy)
        dgamma[...] = _sum_rows(dy * xhat)
        c = (gamma * inv_std) / m
        np.multiply(c, (m * dy - dbeta) - xhat * dgamma, out=dx)

    @_underflow_ok
    def batchnorm_running_update(self, mean: np.ndarray, inv_std: np.ndarray,
                                 running_mean: np.ndarray, running_var: np.ndarray,
                                 momentum: float, eps: float) -> None:
        """``running = momentum * running + (1 - momentum) * batch``, the batch variance
        ``max(1 / inv_std^2 - eps, 0)``, in double but for ``(1 - momentum) * mean`` (base.py)."""
        _check_arrays(mean, inv_std, running_mean, running_var)
        _same_shapes("batchnorm_running_update", mean=mean, inv_std=inv_std,
                     running_mean=running_mean, running_var=running_var)
        inv = inv_std.astype(np.float64)
        with np.errstate(divide="ignore", over="ignore"):
            var = np.maximum(1.0 / (inv * inv) - eps, 0.0)
        m = momentum
        running_mean[...] = m * running_mean.astype(np.float64) + (1 - m) * mean
        running_var[...] = m * running_var.astype(np.float64) + (1 - m) * var

    @_underflow_ok
    def scale_columns(self, x: np.ndarray, scale: np.ndarray, y: np.ndarray) -> None:
        """``y = x * scale``, ``scale`` broadcast over the rows."""
        _check_arrays(x, scale, y)
        _columnwise_shapes("scale_columns", x, "x", (y,), (scale,))
        np.multiply(x, scale, out=y)

    @_underflow_ok
    def add_to(self, x: np.ndarray, y: np.ndarray) -> None:
        """``y += x``."""
        _check_arrays(x, y)
        _same_shapes("add_to", x=x, y=y)
        np.add(y, x, out=y)

    @_underflow_ok
    def regularize(self, w: np.ndarray, dw: np.ndarray, l1: float, l2: float) -> float:
        """``dw += l1 sign(w) + l2 w`` (nonzero terms only); the penalty in sum_squares' order."""
        _check_arrays(w, dw)
        if w.ndim != 1 or dw.shape != w.shape:
            raise ValueError(f"regularize: w and dw must be 1-D of one length, got w "
                             f"{w.shape}, dw {dw.shape}")
        T = w.dtype.type
        t1, t2 = T(l1), T(l2)
        if t1 != 0 and t2 != 0:
            dw += t1 * np.sign(w) + t2 * w
        elif t1 != 0:
            dw += t1 * np.sign(w)
        elif t2 != 0:
            dw += t2 * w
        penalty = 0.0
        with np.errstate(over="ignore"):           # |w| or w^2 beyond the dtype: inf, as native
            if l1 != 0:
                penalty += l1 * _fixed_order_sum(np.abs(w))
            if l2 != 0:
                penalty += (l2 / 2) * _fixed_order_sum(w * w)
        return penalty

    @_underflow_ok
    def optimizer_update(self, name: str, param: np.ndarray, grad: np.ndarray,
                         m: Optional[np.ndarray], v: Optional[np.ndarray], *, lr: float,
                         grad_scale: float = 1.0, b1: float = 0.0, b2: float = 0.0,
                         eps: float = 0.0, weight_decay: float = 0.0, step: int = 1,
                         eps_before_correction: bool = False) -> None:
        """One step of optimizer ``name``, in the kernel's evaluation order (base.py),
        with the state arrays given (None: a state the optimizer does not keep)."""
        update = _lookup(_UPDATES, name, "optimizer")
        _check_arrays(param, grad, *(x for x in (m, v) if x is not None))
        if any(x.shape != param.shape or x.ndim != 1 for x in (grad, m, v) if x is not None):
            raise ValueError("optimizer_update: param, grad and the state arrays must be 1-D "
                             "of one length")
        if step < 1:
            raise ValueError(f"optimizer_update: step must be >= 1, got {step}")
        c = _StepConstants(param.dtype.type, lr, b1, b2, eps, weight_decay, step,
                           eps_before_correction)
        update(param, c.g(grad_scale, grad), m, v, c)

    def shuffled_order(self, n: int, seed: int) -> np.ndarray:
        """base.py's formula: every draw at once, then the swaps in order."""
        if n >= 2 ** 32:
            raise ValueError(f"shuffled_order: the numpy backend shuffles fewer than 2**32 "
                             f"rows; got n={n:,} (the native backend takes any n)")
        order = list(range(n))
        if n > 1:
            i = np.arange(n - 1, 0, -1, dtype=_U64)                 # n - 1 down to 1
            z = _splitmix64(_splitmix64(_U64(seed)) ^ i)
            for a, b in zip(range(n - 1, 0, -1), _high_word(z, i + _U64(1)).tolist()):
                order[a], order[b] = order[b], order[a]
        return np.array(order, dtype=np.int64)

    def all_finite(self, x: np.ndarray) -> bool:
        _check_arrays(x)
        if x.ndim != 1:
            raise ValueError(f"all_finite: x must be 1-D, got shape {x.shape}")
        return bool(np.isfinite(x).all())

    def sum_squares(self, x: np.ndarray) -> float:
        """``sum x^2``: 16 partial sums in the dtype per block of 16384, blocks in double."""
        _check_arrays(x)
        if x.ndim != 1:
            raise ValueError(f"sum_squares: x must be 1-D, got shape {x.shape}")
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            return _fixed_order_sum(x * x)


# ------------------------------------------------------------------------------------
# Optimizer steps and the fixed-order sum of squares, mirroring
# csrc/kernels/optimizers.hpp and reductions.hpp operation for operation: every product
# and sum below is one rounding in the dtype, in the kernel's order.
# ------------------------------------------------------------------------------------

NORM_BLOCK = 16 * 1024   # elements per partial sum of squares (csrc/ops.hpp kNormBlock)


def _sum16(values: np.ndarray):
    """Sum16 (csrc/kernels/reductions.hpp): partial k adds the elements i = k mod 16 in
    ascending order, in the dtype; the 16 partials are combined by halving."""
    padded = np.zeros(-(-values.size // 16) * 16, values.dtype)
    padded[:values.size] = values
    partial = np.add.accumulate(padded.reshape(-1, 16), axis=0)[-1]   # sequential per lane
    for h in (8, 4, 2, 1):
        partial = partial[:h] + partial[h:2 * h]
    return partial[0]


class _StepConstants:
    """The step's scalars in the dtype T; combinations computed in double first, then
    rounded once (csrc/ops.hpp step_constants)."""

    def __init__(self, T, lr, b1, b2, eps, weight_decay, step, eps_before_correction):
        self.T = T
        self.lr, self.eps, self.b1, self.b2 = T(lr), T(eps), T(b1), T(b2)
        self.one_minus_b1, self.one_plus_b1, self.one_minus_b2 = T(1 - b1), T(1 + b1), T(1 - b2)
        bc1, bc2 = 1 - b1 ** float(step), 1 - b2 ** float(step)
        self.bc1, self.bc2 = T(bc1), T(bc2)
        self.lr_wd = T(lr * weight_decay)
        # only Adam's second form reads it (bc1 is 0 for Momentum's mu = 1)
        self.lr_t = T(lr * math.sqrt(bc2) / bc1) if eps_before_correction else None
        self.eps_before_correction = eps_before_correction

    def g(self, grad_scale, grad):
        return self.T(grad_scale) * grad


def _reads(**state) -> None:
    """A step reads these state arrays: TypeError naming one not given (None), as the
    native binding's."""
    for name, x in state.items():
        if x is None:
            raise TypeError(f"optimizer_update: {name} must be a numpy array for this "
                            "optimizer")


def _flushed(x: np.ndarray) -> np.ndarray:
    """x with its entries below the dtype's smallest normal in magnitude set to +0, in
    place (the kernels' state rule: every new m and v, before anything reads it)."""
    with np.errstate(invalid="ignore"):
        x[np.abs(x) < np.finfo(x.dtype).tiny] = 0
    return x


def _sgd(p, g, m, v, c):
    p -= c.lr * g


def _momentum(p, g, m, v, c):
    _reads(m=m)
    _flushed(np.subtract(c.b1 * m, c.lr * g, out=m))
    p += m


def _nesterov(p, g, m, v, c):
    _reads(m=m)
    new = _flushed(c.b1 * m - c.lr * g)
    p += -c.b1 * m + c.one_plus_b1 * new
    m[...] = new


def _adagrad(p, g, m, v, c):
    _reads(v=v)
    _flushed(np.add(v, g * g, out=v))
    p -= (c.lr * g) / (np.sqrt(v) + c.eps)


def _rmsprop(p, g, m, v, c):
    _reads(v=v)
    _flushed(np.add(c.b2 * v, c.one_minus_b2 * (g * g), out=v))
    p -= (c.lr * g) / (np.sqrt(v) + c.eps)


def _adam(p, g, m, v, c):
    _reads(m=m, v=v)
    _flushed(np.add(c.b1 * m, c.one_minus_b1 * g, out=m))
    _flushed(np.add(c.b2 * v, c.one_minus_b2 * (g * g), out=v))
    if c.eps_before_correction:
        p -= (c.lr_t * m) / (np.sqrt(v) + c.eps)
    else:
        p -= c.lr * (m / c.bc1) / (np.sqrt(v / c.bc2) + c.eps)


def _adamw(p, g, m, v, c):
    _reads(m=m, v=v)
    p -= c.lr_wd * p                      # decoupled weight decay, before the Adam step
    _adam(p, g, m, v, c)


_UPDATES = {"sgd": _sgd, "momentum": _momentum, "nesterov": _nesterov, "adagrad": _adagrad,
            "rmsprop": _rmsprop, "adam": _adam, "adamw": _adamw}
