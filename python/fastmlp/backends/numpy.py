"""The NumPy backend: the readable oracle every other backend is tested against.

Each method is the formula of its docstring in :mod:`fastmlp.backends.base`, written
with NumPy in the arrays' own dtype (no hidden float64) and into the given outputs.
Formulas are the numerically stable ones (DESIGN.md §4): for finite inputs nothing
overflows, divides by zero or makes NaN. Underflow (e^-1000 = 0, tiny products) is the
correct IEEE result here, so each method ignores it even under ``np.seterr(all="raise")``.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_underflow_ok = np.errstate(under="ignore")   # a per-call, thread-safe decorator


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


def _sigmoid(z: np.ndarray, out: np.ndarray) -> None:
    """sigmoid(z) = 1 / (1 + e^-z), written with e = e^-|z| so it never overflows:
    1 / (1 + e) for z >= 0 and e / (1 + e) for z < 0."""
    e = np.exp(-np.abs(z))
    np.divide(np.where(z >= 0, 1, e), 1 + e, out=out)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    """log_softmax(z)_j = (z_j - max z) - log sum_l e^(z_l - max z), row-wise."""
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _softmax(z: np.ndarray, out: np.ndarray) -> None:
    """softmax(z)_j = e^(z_j - max z) / sum_l e^(z_l - max z), row-wise."""
    np.exp(z - z.max(axis=1, keepdims=True), out=out)
    out /= out.sum(axis=1, keepdims=True)


def _copy(z: np.ndarray, out: np.ndarray) -> None:
    if out is not z:
        np.copyto(out, z)


# Forward activations a = act(z); param is the leaky slope or the ELU alpha.
_FORWARD: Dict[str, Callable[[np.ndarray, np.ndarray, float], None]] = {
    "linear": lambda z, a, p: _copy(z, a),
    "sigmoid": lambda z, a, p: _sigmoid(z, a),
    "tanh": lambda z, a, p: np.tanh(z, out=a),
    "relu": lambda z, a, p: np.maximum(z, 0, out=a),
    "leaky_relu": lambda z, a, p: np.copyto(a, np.where(z > 0, z, p * z)),
    # alpha * (e^z - 1) for z <= 0; expm1 of min(z, 0) so the unused branch cannot overflow
    "elu": lambda z, a, p: np.copyto(a, np.where(z > 0, z, p * np.expm1(np.minimum(z, 0)))),
}

# Backward dz = da * act'(z); kinks take the left branch at exactly 0 (DESIGN.md §4).
_BACKWARD: Dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float], None]] = {
    "linear": lambda z, a, da, dz, p: np.copyto(dz, da),
    "sigmoid": lambda z, a, da, dz, p: np.multiply(da, a * (1 - a), out=dz),   # s' = s(1-s)
    "tanh": lambda z, a, da, dz, p: np.multiply(da, 1 - a * a, out=dz),        # tanh' = 1-t^2
    "relu": lambda z, a, da, dz, p: np.multiply(da, z > 0, out=dz),  # NaN in da stays NaN
    "leaky_relu": lambda z, a, da, dz, p: np.copyto(dz, np.where(z > 0, da, p * da)),
    # elu'(z) = alpha * e^z for z <= 0
    "elu": lambda z, a, da, dz, p: np.copyto(
        dz, np.where(z > 0, da, da * (p * np.exp(np.minimum(z, 0))))),
}


def _softmax_cross_entropy(z, y, grad, scale):
    """Row loss -sum_j y_j log_softmax(z)_j; d/dz = softmax(z) * sum_j y_j - y."""
    log_p = _log_softmax(z)
    if grad is not None:
        np.multiply(np.exp(log_p), y.sum(axis=1, keepdims=True), out=grad)
        grad -= y
        grad *= scale
    return -(y * log_p).sum()


def _binary_cross_entropy(z, y, grad, scale):
    """Row loss mean_j [max(z,0) - z y + log1p(e^-|z|)]; d/dz = (sigmoid(z) - y) / k."""
    k = z.shape[1]
    if grad is not None:
        _sigmoid(z, grad)
        grad -= y
        grad *= scale / k
    return (np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))).sum() / k


def _mse(z, y, grad, scale):
    """Row loss mean_j (z_j - y_j)^2; d/dz = 2 (z - y) / k."""
    k = z.shape[1]
    diff = z - y
    if grad is not None:
        np.multiply(diff, 2 * scale / k, out=grad)
    return (diff * diff).sum() / k


_LOSSES = {
    "softmax_cross_entropy": _softmax_cross_entropy,
    "binary_cross_entropy": _binary_cross_entropy,
    "mse": _mse,
}

_OUTPUTS = {
    "softmax_cross_entropy": _softmax,
    "binary_cross_entropy": _sigmoid,
    "mse": _copy,
}


def _lookup(table: dict, name: str, kind: str):
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {kind} {name!r}; expected one of {sorted(table)}") from None


class NumPyBackend:
    """Backend written with NumPy: the oracle of the tests and a fallback for the core."""

    name = "numpy"

    @_underflow_ok
    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, *, trans_a: bool = False,
             trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0) -> None:
        """``c = alpha * op(a) @ op(b) + beta * c``; with beta == 0, c is never read."""
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

    @_underflow_ok
    def bias_act_forward(self, z: np.ndarray, bias: np.ndarray, a: np.ndarray,
                         activation: str, param: float) -> None:
        """``z += bias`` row by row, then ``a = act(z)``."""
        _check_arrays(z, bias, a)
        forward = _lookup(_FORWARD, activation, "activation")
        z += bias
        forward(z, a, param)

    @_underflow_ok
    def act_backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray, dz: np.ndarray,
                     activation: str, param: float) -> None:
        """``dz = da * act'(z)`` with relu'(0) = 0, leaky_relu'(0) = slope, elu'(0) = alpha."""
        _check_arrays(z, a, da, dz)
        _lookup(_BACKWARD, activation, "activation")(z, a, da, dz, param)

    @_underflow_ok
    def col_sum(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out[j] = sum_i x[i, j]``."""
        _check_arrays(x, out)
        np.sum(x, axis=0, out=out)

    @_underflow_ok
    def loss(self, name: str, logits: np.ndarray, y: np.ndarray,
             grad: Optional[np.ndarray], scale: float) -> float:
        """Sum of the row losses; ``grad = scale * d(sum)/d logits`` when grad is given."""
        _check_arrays(logits, y, *(() if grad is None else (grad,)))
        return float(_lookup(_LOSSES, name, "loss")(logits, y, grad, scale))

    @_underflow_ok
    def output(self, name: str, logits: np.ndarray, out: np.ndarray) -> None:
        """Softmax rows (softmax cross-entropy), sigmoid (binary), identity (mse)."""
        _check_arrays(logits, out)
        _lookup(_OUTPUTS, name, "loss")(logits, out)

    @_underflow_ok
    def sgd_update(self, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        """``param -= lr * grad``."""
        _check_arrays(param, grad)
        param -= lr * grad
