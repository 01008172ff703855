"""Activation functions: one registry row per activation (docs/conventions.md).

Every place that knows activations reads :data:`KINDS`: the NumPy backend computes with a
row's formulas, the native backend passes its name to the C++ kernels (whose names table
sits beside ``enum class Activation`` in csrc/common.hpp;
tests/api/test_activation_registry.py checks the two agree), and the ONNX and PyTorch
interchange, model files, initializers and the command line take their lists and
conversions from the rows.

leaky_relu(z) = z if z > 0 else slope * z (slope 0.01 by default),
elu(z) = z if z > 0 else alpha * (e^z - 1) (alpha 1.0 by default),
gelu(z) = 0.5 z (1 + tanh(u)), u = sqrt(2/pi) (z + 0.044715 z^3) (torch's
GELU(approximate="tanh")), computed as z * sigmoid(2u),
silu(z) = z * sigmoid(z),
softplus(z) = log(1 + e^z), computed as max(z, 0) + log1p(e^-|z|); softplus' = sigmoid.
Derivatives at exactly 0 take the left branch: relu'(0) = 0, leaky_relu'(0) = slope,
elu'(0) = alpha.

Wherever an activation name is accepted, an object is too:
``Dense(64, activation=LeakyReLU(0.2))`` or ``Dense(64, activation=ELU(alpha=0.5))``.

Adding an activation: its row here (the NumPy formulas, ONNX and torch conversions), its
case in csrc/kernels/activations.hpp (activate and derivative), its member and name in
csrc/common.hpp (enum class Activation, kActivationNames), and its test case in
tests/activation_cases.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from .._validation import check_choice, check_finite_float
from ..backends.numpy import sigmoid

LEAKY_RELU_SLOPE = 0.01
ELU_ALPHA = 1.0

__all__ = ["ACTIVATIONS", "ELU", "ELU_ALPHA", "KINDS", "LEAKY_RELU_SLOPE", "ActivationKind",
           "LeakyReLU", "default_initializer", "kind", "param", "resolve", "resolve_with_param"]


class Activation:
    """An activation with its parameter: ``name`` (one of ACTIVATIONS) and ``param``."""

    name = "linear"
    param = 0.0

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and other.param == self.param

    def __hash__(self) -> int:
        return hash((self.name, self.param))


class LeakyReLU(Activation):
    """``z if z > 0 else slope * z``; derivative ``slope`` at z <= 0 (0 included)."""

    name = "leaky_relu"

    def __init__(self, slope: float = LEAKY_RELU_SLOPE):
        self.param = self.slope = check_finite_float(slope, "slope")

    def __repr__(self) -> str:
        return f"LeakyReLU(slope={self.slope!r})"


class ELU(Activation):
    """``z if z > 0 else alpha * (e^z - 1)``; derivative ``alpha`` at exactly 0."""

    name = "elu"

    def __init__(self, alpha: float = ELU_ALPHA):
        self.param = self.alpha = check_finite_float(alpha, "alpha")

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha!r})"


@dataclass(frozen=True)
class ActivationKind:
    """One activation. ``forward(z, param)`` and ``derivative(z, a, param)`` (a = act(z))
    are the NumPy backend's formulas, in z's dtype; ``onnx(g, z, param, prefix)`` appends
    its nodes to an ONNX graph builder (io/onnx.py) and returns the output's name;
    ``torch`` is the torch.nn module class's name (None: no module, for linear),
    ``to_torch(cls, param)`` builds it and ``from_torch(module)`` reads one back as a
    name or an :class:`Activation` object (ValueError for settings fastmlp lacks).
    ``object_type`` is the :class:`Activation` class carrying ``param_name`` (model files
    save it as ``{"class": ..., "config": {param_name: value}}``)."""

    name: str
    forward: Callable[[np.ndarray, float], np.ndarray]
    derivative: Callable[[np.ndarray, np.ndarray, float], np.ndarray]
    onnx: Callable
    torch: Optional[str]
    initializer: str = "glorot_uniform"
    default_param: float = 0.0
    param_name: Optional[str] = None
    object_type: Optional[type] = None
    to_torch: Callable = lambda cls, param: cls()
    from_torch: Optional[Callable] = None

    def read_torch(self, module) -> Union[str, Activation]:
        """The fastmlp activation of a module of class ``self.torch``."""
        return self.name if self.from_torch is None else self.from_torch(module)


# ----------------------------------------------------------- NumPy formulas
def _kink_derivative(z: np.ndarray, left: float) -> np.ndarray:
    """relu / leaky_relu's derivative: 1 for z > 0, ``left`` otherwise, NaN for NaN z."""
    return np.where(z > 0, 1, np.where(np.isnan(z), z, left)).astype(z.dtype, copy=False)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out = np.empty_like(z)
    sigmoid(z, out)
    return out


def _sigmoid_pair(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """sigmoid(x) and sigmoid(-x) = 1 - sigmoid(x), each without cancellation."""
    e = np.exp(-np.abs(x))
    big, small = 1 / (1 + e), e / (1 + e)
    return np.where(x >= 0, big, small), np.where(x >= 0, small, big)


def _times_gate(z: np.ndarray, s: np.ndarray) -> np.ndarray:
    """z * s, with -0 where s is 0 (the limit at -inf, where z * s would be NaN)."""
    return np.where(s == 0, -0.0, z) * s


_GELU_K0, _GELU_K1 = math.sqrt(2 / math.pi), 0.044715


def _gelu_2u(zc: np.ndarray) -> np.ndarray:
    """2u = 2 sqrt(2/pi) (z + 0.044715 z^3) of a z clamped to [-30, 30], where
    sigmoid(2u) is already exactly 0 or 1 (so z^3 cannot overflow)."""
    return 2 * _GELU_K0 * (zc + _GELU_K1 * (zc * zc * zc))


def _gelu(z: np.ndarray) -> np.ndarray:
    """z * sigmoid(2u) = 0.5 z (1 + tanh(u)), without the cancellation of 1 + tanh(u)."""
    return _times_gate(z, _sigmoid_pair(_gelu_2u(np.clip(z, -30, 30)))[0])


def _gelu_derivative(z: np.ndarray) -> np.ndarray:
    """s + 2 z s (1 - s) u'(z), s = sigmoid(2u), u' = sqrt(2/pi) (1 + 3 * 0.044715 z^2)
    (= 0.5 (1 + t) + 0.5 z (1 - t^2) u', t = tanh(u))."""
    zc = np.clip(z, -30, 30)
    s, sc = _sigmoid_pair(_gelu_2u(zc))
    du = _GELU_K0 * (1 + 3 * _GELU_K1 * (zc * zc))
    return s + 2 * zc * (s * sc) * du


def _silu_derivative(z: np.ndarray) -> np.ndarray:
    """s (1 + z (1 - s)) = s + z s (1 - s), s = sigmoid(z); z clamped to [-800, 800],
    where s (1 - s) is already exactly 0 (so +-inf give 1 and 0)."""
    s, sc = _sigmoid_pair(z)
    return s + np.clip(z, -800, 800) * (s * sc)


# --------------------------------------------------------------- ONNX nodes
# onnxruntime (1.31) has no float64 kernel for Elu, and float64 LeakyRelu only from opset
# 16, so float64 graphs write those as Where(z > 0, z, slope * z) and
# Where(z > 0, z, alpha * (Exp(z) - 1)), the same functions in ops every runtime has.
def _greater_than_zero(g, z: str, prefix: str) -> str:
    return g.node("Greater", [z, g.constant(f"{prefix}zero", 0)], prefix)


def _onnx_leaky_relu(g, z: str, slope: float, prefix: str) -> str:
    """LeakyRelu(alpha=slope); float64: ``Where(z > 0, z, slope * z)``."""
    if g.dtype == np.float32:
        return g.node("LeakyRelu", [z], prefix, alpha=slope)
    scaled = g.node("Mul", [z, g.constant(f"{prefix}slope", slope)], prefix)
    return g.node("Where", [_greater_than_zero(g, z, prefix), z, scaled], prefix)


def _onnx_elu(g, z: str, alpha: float, prefix: str) -> str:
    """Elu(alpha); float64: ``Where(z > 0, z, alpha * (Exp(z) - 1))``."""
    if g.dtype == np.float32:
        return g.node("Elu", [z], prefix, alpha=alpha)
    expm1 = g.node("Sub", [g.node("Exp", [z], prefix), g.constant(f"{prefix}one", 1)], prefix)
    scaled = g.node("Mul", [expm1, g.constant(f"{prefix}alpha", alpha)], prefix)
    return g.node("Where", [_greater_than_zero(g, z, prefix), z, scaled], prefix)


def _onnx_gate(g, z: str, x: str, prefix: str) -> str:
    """``z * Sigmoid(x)``."""
    return g.node("Mul", [z, g.node("Sigmoid", [x], prefix)], prefix)


def _onnx_gelu(g, z: str, param: float, prefix: str) -> str:
    """``z * Sigmoid(2 sqrt(2/pi) (z + 0.044715 z^3))`` in ops of every opset and dtype."""
    cube = g.node("Mul", [g.node("Mul", [z, z], prefix), z], prefix)
    inner = g.node("Add", [z, g.node("Mul", [cube, g.constant(f"{prefix}k1", _GELU_K1)],
                                      prefix)], prefix)
    two_u = g.node("Mul", [inner, g.constant(f"{prefix}two_k0", 2 * _GELU_K0)], prefix)
    return _onnx_gate(g, z, two_u, prefix)


def _onnx_op(op: str) -> Callable:
    """An activation that is one parameterless ONNX op."""
    return lambda g, z, param, prefix: g.node(op, [z], prefix)


# -------------------------------------------------------------- torch modules
def _gelu_from_torch(module) -> str:
    if module.approximate != "tanh":
        raise ValueError(f"GELU(approximate={module.approximate!r}) is the erf GELU; "
                         f"fastmlp's gelu is the tanh approximation, "
                         f"GELU(approximate='tanh')")
    return "gelu"


def _softplus_from_torch(module) -> str:
    """beta 1 only. Above ``threshold`` torch returns z itself, fastmlp z + log1p(e^-z):
    from torch's default 20 on they differ by under 2.1e-9 (below half an ulp in float32,
    1e-10 relative in float64), from 37 on not at all (e^-z is below half an ulp of z in
    both dtypes): to_torch writes threshold 40."""
    if module.beta != 1 or module.threshold < 20:
        raise ValueError(f"Softplus(beta={module.beta}, threshold={module.threshold}) "
                         f"differs from fastmlp's softplus, log(1 + e^z): beta must be 1 "
                         f"and threshold at least 20")
    return "softplus"


# ------------------------------------------------------------------ the rows
KINDS: Tuple[ActivationKind, ...] = (
    ActivationKind(
        "linear", forward=lambda z, p: z, derivative=lambda z, a, p: np.ones_like(z),
        onnx=lambda g, z, param, prefix: z, torch=None),
    ActivationKind(
        "sigmoid", forward=lambda z, p: _sigmoid(z),
        derivative=lambda z, a, p: a * (1 - a),                    # s' = s(1 - s)
        onnx=_onnx_op("Sigmoid"), torch="Sigmoid"),
    ActivationKind(
        "tanh", forward=lambda z, p: np.tanh(z),
        derivative=lambda z, a, p: 1 - a * a,                      # tanh' = 1 - t^2
        onnx=_onnx_op("Tanh"), torch="Tanh"),
    ActivationKind(
        "relu", forward=lambda z, p: np.maximum(z, 0),
        derivative=lambda z, a, p: _kink_derivative(z, 0),
        onnx=_onnx_op("Relu"), torch="ReLU", initializer="he_normal"),
    ActivationKind(
        "leaky_relu", forward=lambda z, p: np.where(z > 0, z, p * z),
        derivative=lambda z, a, p: _kink_derivative(z, p),
        onnx=_onnx_leaky_relu, torch="LeakyReLU", initializer="he_normal",
        default_param=LEAKY_RELU_SLOPE, param_name="slope", object_type=LeakyReLU,
        to_torch=lambda cls, p: cls(p),
        from_torch=lambda module: LeakyReLU(module.negative_slope)),
    ActivationKind(
        # alpha * (e^z - 1) for z <= 0, of min(z, 0) so the unused branch cannot overflow;
        # elu'(z) = alpha * e^z for z <= 0
        "elu", forward=lambda z, p: np.where(z > 0, z, p * np.expm1(np.minimum(z, 0))),
        derivative=lambda z, a, p: np.where(z > 0, 1, p * np.exp(np.minimum(z, 0))),
        onnx=_onnx_elu, torch="ELU", initializer="he_normal",
        default_param=ELU_ALPHA, param_name="alpha", object_type=ELU,
        to_torch=lambda cls, p: cls(p), from_torch=lambda module: ELU(module.alpha)),
    ActivationKind(
        "gelu", forward=lambda z, p: _gelu(z), derivative=lambda z, a, p: _gelu_derivative(z),
        onnx=_onnx_gelu, torch="GELU", initializer="he_normal",
        to_torch=lambda cls, p: cls(approximate="tanh"), from_torch=_gelu_from_torch),
    ActivationKind(
        "silu", forward=lambda z, p: _times_gate(z, _sigmoid(z)),
        derivative=lambda z, a, p: _silu_derivative(z),
        onnx=lambda g, z, param, prefix: _onnx_gate(g, z, z, prefix), torch="SiLU",
        initializer="he_normal"),
    ActivationKind(
        "softplus", forward=lambda z, p: np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))),
        derivative=lambda z, a, p: _sigmoid(z), onnx=_onnx_op("Softplus"), torch="Softplus",
        initializer="he_normal", to_torch=lambda cls, p: cls(threshold=40.0),
        from_torch=_softplus_from_torch),
)
_BY_NAME: Dict[str, ActivationKind] = {row.name: row for row in KINDS}
#: The activation names, in the order of :data:`KINDS`.
ACTIVATIONS: Tuple[str, ...] = tuple(_BY_NAME)


def kind(name: str) -> ActivationKind:
    """The registry row of an activation name (ValueError listing the names)."""
    row = _BY_NAME.get(name) if isinstance(name, str) else None
    return row if row is not None else _BY_NAME[check_choice(name, "activation", ACTIVATIONS)]


def resolve(activation: Union[None, str, Activation]) -> str:
    """The activation's name; None means "linear"."""
    return resolve_with_param(activation)[0]


def resolve_with_param(activation: Union[None, str, Activation]) -> Tuple[str, float]:
    """(name, param) of a name (default parameter), an :class:`Activation` object, or None
    ("linear")."""
    if isinstance(activation, Activation):
        return activation.name, activation.param
    name = "linear" if activation is None else kind(activation).name
    return name, param(name)


def param(activation: str) -> float:
    """The backend's default ``param``: the leaky slope, the ELU alpha, else 0."""
    return kind(activation).default_param


def default_initializer(activation: str) -> str:
    """he_normal for the ReLU family, glorot_uniform otherwise (docs/conventions.md)."""
    return kind(activation).initializer
