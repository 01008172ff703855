"""Weight initializers (docs/conventions.md); biases always start at zero.

With fan_in = n_in and fan_out = n_out of a Dense W (n_out, n_in):

=============== ======= ==============================
name            draw    scale
=============== ======= ==============================
lecun_normal    normal  sd sqrt(1 / fan_in)
lecun_uniform   uniform limit sqrt(3 / fan_in)
glorot_normal   normal  sd sqrt(2 / (fan_in + fan_out))
glorot_uniform  uniform limit sqrt(6 / (fan_in + fan_out))
he_normal       normal  sd sqrt(2 / fan_in)
he_uniform      uniform limit sqrt(6 / fan_in)
normal          normal  sd 0.01
zeros           none    0 (kept to show the symmetry problem)
=============== ======= ==============================

Normals are not truncated; uniforms draw from U(-limit, limit).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from . import activations
from .._validation import check_choice

INITIALIZERS = {
    "lecun_normal": ("normal", lambda fan_in, fan_out: math.sqrt(1 / fan_in)),
    "lecun_uniform": ("uniform", lambda fan_in, fan_out: math.sqrt(3 / fan_in)),
    "glorot_normal": ("normal", lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out))),
    "glorot_uniform": ("uniform", lambda fan_in, fan_out: math.sqrt(6 / (fan_in + fan_out))),
    "he_normal": ("normal", lambda fan_in, fan_out: math.sqrt(2 / fan_in)),
    "he_uniform": ("uniform", lambda fan_in, fan_out: math.sqrt(6 / fan_in)),
    "normal": ("normal", lambda fan_in, fan_out: 0.01),
    "zeros": ("zeros", lambda fan_in, fan_out: 0.0),
}


def resolve(init: Optional[str], activation: str) -> str:
    """The initializer's name; None means the default for ``activation``."""
    if init is None:
        return activations.default_initializer(activation)
    return check_choice(init, "init", INITIALIZERS)


def initialize(name: str, W: np.ndarray, rng: np.random.Generator) -> None:
    """Fill ``W`` (n_out, n_in) in place. Draws are made in float64 and rounded to W's
    dtype, so float32 and float64 models with one seed start from the same weights."""
    fan_out, fan_in = W.shape
    draw, scale_of = INITIALIZERS[name]
    scale = scale_of(fan_in, fan_out)
    if draw == "normal":
        np.copyto(W, scale * rng.standard_normal(W.shape))
    elif draw == "uniform":
        np.copyto(W, rng.uniform(-scale, scale, W.shape))
    else:
        W.fill(0)
