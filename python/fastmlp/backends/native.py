"""The native backend: the C++ core ``fastmlp._core``, the only module that imports it.

Each method is one call into a kernel that checks its arrays (exact dtype, C order,
writable outputs: TypeError/ValueError, never a silent copy), releases the GIL and runs
on the SIMD path chosen at import (``FASTMLP_ISA``, :func:`fastmlp.set_isa`) with the
threads of :mod:`fastmlp.runtime`. The semantics are those of :class:`.base.Backend`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _core


class NativeBackend:
    """The C++ kernels behind the :class:`~fastmlp.backends.base.Backend` protocol."""

    name = "native"

    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, *, trans_a: bool = False,
             trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0) -> None:
        _core.gemm(a, b, c, trans_a, trans_b, alpha, beta)

    def bias_act_forward(self, z: np.ndarray, bias: np.ndarray, a: np.ndarray,
                         activation: str, param: float) -> None:
        _core.bias_act_forward(z, bias, a, activation, param)

    def act_backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray, dz: np.ndarray,
                     activation: str, param: float) -> None:
        _core.act_backward(z, a, da, dz, activation, param)

    def col_sum(self, x: np.ndarray, out: np.ndarray) -> None:
        _core.col_sum(x, out)

    def loss(self, name: str, logits: np.ndarray, y: np.ndarray,
             grad: Optional[np.ndarray], scale: float) -> float:
        return _core.loss(name, logits, y, grad, scale)

    def output(self, name: str, logits: np.ndarray, out: np.ndarray) -> None:
        _core.output(name, logits, out)

    def sgd_update(self, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        _core.sgd_update(param, grad, lr)


def backend_info() -> dict:
    return dict(_core.backend_info())


def set_isa(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"set_isa: name must be a str, got {type(name).__name__}")
    return _core.set_isa(name)


def _thread_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    return int(n)


def set_num_threads(n: int) -> None:
    _core.set_num_threads(_thread_count(n))


def get_num_threads() -> int:
    return _core.get_num_threads()


def push_threads(n: int) -> int:
    n = _thread_count(n)
    if n < 1:
        raise ValueError(f"threads(n): n must be >= 1, got {n}")
    return _core.push_threads(n)


def pop_threads(previous: int) -> None:
    _core.pop_threads(previous)


def last_team_size() -> int:
    """Threads that ran the latest parallel region (for tests of the thread policy)."""
    return _core.last_team_size()
