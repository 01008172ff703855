"""Activation functions by name or as objects with a parameter (docs/conventions.md).

The math lives in the backends; a layer only carries the name and its parameter:
leaky_relu(z) = z if z > 0 else slope * z (slope 0.01 by default),
elu(z) = z if z > 0 else alpha * (e^z - 1) (alpha 1.0 by default).
Derivatives at exactly 0 take the left branch: relu'(0) = 0, leaky_relu'(0) = slope,
elu'(0) = alpha.

Wherever an activation name is accepted, an object is too:
``Dense(64, activation=LeakyReLU(0.2))`` or ``Dense(64, activation=ELU(alpha=0.5))``.
"""
from __future__ import annotations

import math
import numbers
from typing import Tuple, Union

import numpy as np

from .._validation import check_choice
from ..backends.base import ACTIVATIONS

LEAKY_RELU_SLOPE = 0.01
ELU_ALPHA = 1.0

_PARAMS = {"leaky_relu": LEAKY_RELU_SLOPE, "elu": ELU_ALPHA}
_RELU_FAMILY = ("relu", "leaky_relu", "elu")

__all__ = ["ACTIVATIONS", "ELU", "ELU_ALPHA", "LEAKY_RELU_SLOPE", "LeakyReLU",
           "default_initializer", "param", "resolve", "resolve_with_param"]


def _check_param(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a finite number; got {value!r} of type "
                        f"{type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return float(value)


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
        self.param = self.slope = _check_param(slope, "slope")

    def __repr__(self) -> str:
        return f"LeakyReLU(slope={self.slope!r})"


class ELU(Activation):
    """``z if z > 0 else alpha * (e^z - 1)``; derivative ``alpha`` at exactly 0."""

    name = "elu"

    def __init__(self, alpha: float = ELU_ALPHA):
        self.param = self.alpha = _check_param(alpha, "alpha")

    def __repr__(self) -> str:
        return f"ELU(alpha={self.alpha!r})"


def resolve(activation: Union[None, str, Activation]) -> str:
    """The activation's name; None means "linear"."""
    return resolve_with_param(activation)[0]


def resolve_with_param(activation: Union[None, str, Activation]) -> Tuple[str, float]:
    """(name, param) of a name (default parameter), an :class:`Activation` object, or None
    ("linear")."""
    if isinstance(activation, Activation):
        return activation.name, activation.param
    name = "linear" if activation is None else check_choice(activation, "activation",
                                                             ACTIVATIONS)
    return name, param(name)


def param(activation: str) -> float:
    """The backend's default ``param``: the leaky slope, the ELU alpha, else 0."""
    return _PARAMS.get(activation, 0.0)


def default_initializer(activation: str) -> str:
    """he_normal for the ReLU family, glorot_uniform otherwise (docs/conventions.md)."""
    return "he_normal" if activation in _RELU_FAMILY else "glorot_uniform"
