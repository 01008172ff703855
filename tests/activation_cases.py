"""One test case per activation of the registry (fastmlp.nn.activations.KINDS): the exact
definitions the kernel and NumPy tests measure against, the stated error bounds, and the
values at 0, at the infinities and at a few points from the math module. Every test that
runs over the activations takes its data from here, and tests/api/test_activation_registry.py
fails when a registry row has no case (or a case no row).

Exact values are computed in z's precision (np.longdouble, or float64 for anything narrower)
from the textbook definitions, independently of the C++ polynomials and of the NumPy
backend's formulas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

LD = np.longdouble
# The points of `literals`.
Z = (-2.0, -0.5, 0.0, 1.5)


def wide(z) -> np.ndarray:
    """z as long double if it is, else float64."""
    z = np.asarray(z)
    return z if z.dtype == LD else z.astype(np.float64)


def sigmoid_wide(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) without overflow: e^x / (1 + e^x) for x < 0."""
    with np.errstate(over="ignore", under="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _math_sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


@dataclass(frozen=True)
class Case:
    """``exact(z, p)``, ``exact_grad(z, p)``: act and act' from z alone (left branch at
    a kink); ``given_grad(z, a, p)``: act' as the backward contract computes it from the
    given a = act(z) (sigmoid, tanh), None when it reads z alone.
    ``forward_ulps``: the forward kernel's bound in ulps, (float32, float64) or the name
    of the test_math.ULP_TABLE function whose bound applies; ``amplification(z, p)``, if
    given, multiplies it where the function's condition number exceeds 1.
    ``backward_eps``: (float32, float64) bound of act_backward in eps * ``backward_scale(z,
    a, da, p)``. ``at_zero``: act(+-0), ``grad_at_zero``: act'(+-0); ``limits``: act(-inf),
    act(+inf) (a zero's sign counts); ``odd``: a zero result carries the sign of the exact
    one; ``literals``: act(Z) from the math module. ``subnormal_gain``: (forward,
    backward) functions of (z, p) for the activations whose intermediates can underflow
    into the subnormals (z * s with s tiny): by how many subnormal spacings their absolute
    error may grow beyond the bounds (relative to the exact result, or in eps * scale).
    ``torch_refused``: (module of torch.nn, message pattern) pairs that from_torch must
    refuse (settings of the torch module that compute another function)."""

    param: float
    exact: Callable
    exact_grad: Callable
    forward_ulps: Union[str, Tuple[float, float]]
    backward_eps: Tuple[float, float]
    backward_scale: Callable
    at_zero: float
    grad_at_zero: float
    limits: Tuple[float, float]
    literals: Sequence[float]
    given_grad: Optional[Callable] = None
    amplification: Optional[Callable] = None
    subnormal_gain: Optional[Tuple[Callable, Callable]] = None
    odd: bool = False
    torch_refused: Tuple[Tuple[Callable, str], ...] = ()


def _kink(z, left):
    return np.where(z > 0, 1.0, left)


_K0, _K1 = np.sqrt(LD(2) / LD(np.pi)), LD(0.044715)   # gelu's sqrt(2/pi) and cubic weight


def _gelu_2u(z):
    return 2 * _K0 * (z + _K1 * z ** 3)


def _gelu(z):
    """0.5 z (1 + tanh(u)) = z sigmoid(2u), exact in long double."""
    return z * sigmoid_wide(_gelu_2u(z))


def _gelu_grad(z):
    """s + 2 z s (1 - s) u'(z), z clipped where s (1 - s) is 0 even in long double."""
    z = np.clip(z, -1e4, 1e4)
    two_u = _gelu_2u(z)
    return sigmoid_wide(two_u) + 2 * z * sigmoid_wide(two_u) * sigmoid_wide(-two_u) * \
        _K0 * (1 + 3 * _K1 * z * z)


def _gelu_amplification(z, p):
    """1 + |2u (1 - s)|: the relative error of 2u (its roundings and those of the
    constants) grows by this in s = sigmoid(2u), so in gelu = z s (tail of z < 0)."""
    with np.errstate(over="ignore", invalid="ignore"):
        two_u = _gelu_2u(np.clip(z, -30, 30))
        return 1 + np.abs(two_u * sigmoid_wide(-two_u))


def _gelu_backward_scale(z, a, da, p):
    """|da| (s + |2 z s (1 - s) u'|) (1 + |2u|): the terms' magnitudes, each with the
    amplified error of 2u."""
    z = np.clip(z, -30, 30)
    two_u = _gelu_2u(z)
    s, sc = sigmoid_wide(two_u), sigmoid_wide(-two_u)
    return np.abs(da) * (s + np.abs(2 * z * s * sc * _K0 * (1 + 3 * _K1 * z * z))) * \
        (1 + np.abs(two_u))


def _gelu_gate_gain(z):
    """1 + |2 z (1 - s) u'(z)|: gelu'(z) = s (1 + 2 z (1 - s) u'), so an underflowed s's
    error grows by this."""
    z = np.clip(z, -30, 30)
    return 1 + np.abs(2 * z * sigmoid_wide(-_gelu_2u(z)) * _K0 * (1 + 3 * _K1 * z * z))


def _math_gelu(z: float) -> float:
    return 0.5 * z * (1 + math.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))


def _silu_grad(z):
    z = np.clip(z, -1e5, 1e5)
    return sigmoid_wide(z) * (1 + z * sigmoid_wide(-z))


CASES: Dict[str, Case] = {
    "linear": Case(
        0.0, exact=lambda z, p: z.copy(), exact_grad=lambda z, p: np.ones_like(z),
        forward_ulps=(0, 0), backward_eps=(0, 0),
        backward_scale=lambda z, a, da, p: np.abs(da),
        at_zero=0.0, grad_at_zero=1.0, limits=(-np.inf, np.inf), literals=Z, odd=True),
    # measured max (257x257 x 40 seeds), float32/float64: forward 2.28/2.31 ulps,
    # backward 1.23/1.22 eps
    "sigmoid": Case(
        0.0, exact=lambda z, p: sigmoid_wide(z),
        exact_grad=lambda z, p: sigmoid_wide(z) * (1 - sigmoid_wide(z)),
        given_grad=lambda z, a, p: a * (1 - a),
        forward_ulps="sigmoid", backward_eps=(1.5, 1.5),
        backward_scale=lambda z, a, da, p: np.abs(da * a * (1 - a)),
        at_zero=0.5, grad_at_zero=0.25, limits=(0.0, 1.0),
        literals=[_math_sigmoid(z) for z in Z]),
    # forward 2.30/2.42 ulps, backward 0.73/0.74 eps
    "tanh": Case(
        0.0, exact=lambda z, p: np.tanh(z), exact_grad=lambda z, p: 1 / np.cosh(z) ** 2,
        given_grad=lambda z, a, p: 1 - a * a,
        forward_ulps="tanh", backward_eps=(1, 1),
        backward_scale=lambda z, a, da, p: np.abs(da) * (a * a + np.abs(1 - a * a)),
        at_zero=0.0, grad_at_zero=1.0, limits=(-1.0, 1.0),
        literals=[math.tanh(z) for z in Z], odd=True),
    "relu": Case(
        0.0, exact=lambda z, p: np.where(z > 0, z, 0 * z),       # NaN * 0 keeps NaN
        exact_grad=lambda z, p: _kink(z, 0.0),
        forward_ulps=(0, 0), backward_eps=(0, 0),
        backward_scale=lambda z, a, da, p: np.abs(da),
        at_zero=0.0, grad_at_zero=0.0, limits=(0.0, np.inf), literals=[0.0, 0.0, 0.0, 1.5]),
    # forward 0.84/0.50 ulps (T(0.01) rounded, one product), backward 0.68/0.49 eps
    "leaky_relu": Case(
        0.01, exact=lambda z, p: np.where(z > 0, z, p * z),
        exact_grad=lambda z, p: _kink(z, p),
        forward_ulps=(1, 1), backward_eps=(1, 1),
        backward_scale=lambda z, a, da, p: np.abs(da) * np.where(z > 0, 1, p),
        at_zero=0.0, grad_at_zero=0.01, limits=(-np.inf, np.inf),
        literals=[-0.02, -0.005, 0.0, 1.5], odd=True),
    # forward 0.89/1.11 ulps, backward 0.72/0.69 eps: da * (a + alpha), compared with
    # the exact alpha e^z, so a's own rounding counts
    "elu": Case(
        1.0, exact=lambda z, p: np.where(z > 0, z, p * np.expm1(np.minimum(z, 0))),
        exact_grad=lambda z, p: np.where(z > 0, 1.0, p * np.exp(np.minimum(z, 0))),
        forward_ulps="expm1", backward_eps=(1, 1),
        backward_scale=lambda z, a, da, p: np.abs(da) * np.where(z > 0, 1, np.abs(a) + p),
        at_zero=0.0, grad_at_zero=1.0, limits=(-1.0, np.inf),
        literals=[math.expm1(-2.0), math.expm1(-0.5), 0.0, 1.5], odd=True),
    # measured (257x257 x 40 seeds), float32/float64: forward 3.20/2.94 ulps times the
    # amplification, backward 1.56/1.64 eps
    "gelu": Case(
        0.0, exact=lambda z, p: _gelu(z), exact_grad=lambda z, p: _gelu_grad(z),
        forward_ulps=(4, 4), amplification=_gelu_amplification,
        backward_eps=(2, 2), backward_scale=_gelu_backward_scale,
        subnormal_gain=(lambda z, p: 1 + np.abs(z), lambda z, p: _gelu_gate_gain(z)),
        at_zero=0.0, grad_at_zero=0.5, limits=(-0.0, np.inf),
        literals=[_math_gelu(z) for z in Z], odd=True,
        torch_refused=((lambda nn: nn.GELU(), r"GELU\(approximate='none'\) is the erf GELU"),)),
    # forward 2.97/3.05 ulps (sigmoid's 3 and one product), backward 2.66/2.41 eps
    "silu": Case(
        0.0, exact=lambda z, p: z * sigmoid_wide(z), exact_grad=lambda z, p: _silu_grad(z),
        forward_ulps=(4, 4), backward_eps=(3, 3),
        subnormal_gain=(lambda z, p: 1 + np.abs(z), lambda z, p: 1 + np.abs(z)),
        backward_scale=lambda z, a, da, p: np.abs(da) * (sigmoid_wide(z) + np.abs(
            np.clip(z, -1e5, 1e5) * sigmoid_wide(z) * sigmoid_wide(-z))),
        at_zero=0.0, grad_at_zero=0.5, limits=(-0.0, np.inf),
        literals=[z / (1 + math.exp(-z)) for z in Z], odd=True),
    # forward 2.71/2.70 ulps, backward 1.79/1.78 eps (the sigmoid kernel's)
    "softplus": Case(
        0.0, exact=lambda z, p: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))),
        exact_grad=lambda z, p: sigmoid_wide(z),
        forward_ulps=(3, 3), backward_eps=(2, 2),
        backward_scale=lambda z, a, da, p: np.abs(da * sigmoid_wide(z)),
        at_zero=math.log(2), grad_at_zero=0.5, limits=(0.0, np.inf),
        literals=[math.log1p(math.exp(z)) for z in Z],
        torch_refused=((lambda nn: nn.Softplus(beta=2), r"Softplus\(beta=2, .* beta must be 1"),
                       (lambda nn: nn.Softplus(threshold=10),
                        r"Softplus\(beta=1.*threshold=10.* threshold at least 20"))),
}


def act(name: str, z, param: float) -> np.ndarray:
    """act(z), exact in z's precision (long double, or float64)."""
    with np.errstate(over="ignore", under="ignore"):
        return CASES[name].exact(wide(z), param)


def act_grad(name: str, z, param: float) -> np.ndarray:
    """act'(z) from z alone, left branch at a kink."""
    with np.errstate(over="ignore", under="ignore"):
        return CASES[name].exact_grad(wide(z), param)


def act_grad_given(name: str, z, a, param: float) -> np.ndarray:
    """act'(z) as the backward contract states it: from the given a where the case says
    so (sigmoid, tanh), else from z."""
    given = CASES[name].given_grad
    return act_grad(name, z, param) if given is None else given(wide(z), wide(a), param)
