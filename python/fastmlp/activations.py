"""Activation functions by name (DESIGN.md §4): their parameter and default initializer.

The math lives in the backends; a layer only carries the name and its parameter:
leaky_relu(z) = z if z > 0 else 0.01 z, elu(z) = z if z > 0 else 1.0 (e^z - 1).
"""
from __future__ import annotations

from typing import Optional

from ._validation import check_choice
from .backends.base import ACTIVATIONS

LEAKY_RELU_SLOPE = 0.01
ELU_ALPHA = 1.0

_PARAMS = {"leaky_relu": LEAKY_RELU_SLOPE, "elu": ELU_ALPHA}
_RELU_FAMILY = ("relu", "leaky_relu", "elu")

__all__ = ["ACTIVATIONS", "ELU_ALPHA", "LEAKY_RELU_SLOPE", "default_initializer", "param",
           "resolve"]


def resolve(activation: Optional[str]) -> str:
    """The activation's name; None means "linear"."""
    return "linear" if activation is None else check_choice(activation, "activation",
                                                             ACTIVATIONS)


def param(activation: str) -> float:
    """The backend's ``param``: the leaky slope, the ELU alpha, else 0."""
    return _PARAMS.get(activation, 0.0)


def default_initializer(activation: str) -> str:
    """he_normal for the ReLU family, glorot_uniform otherwise (DESIGN.md §4)."""
    return "he_normal" if activation in _RELU_FAMILY else "glorot_uniform"
