"""The Backend protocol: every piece of math the model layer needs.

Two implementations satisfy it: :mod:`fastmlp.backends.numpy` (readable, the test
oracle) and :mod:`fastmlp.backends.native` (the C++ core). Layers, losses and the
training loop call only these methods; none of them calls NumPy math or ``_core``.

Contract shared by every method:

* arrays are C-contiguous and of the model's dtype (float32 or float64); outputs are
  preallocated by the caller and written in place (nothing is returned but the loss
  value); the native backend raises TypeError/ValueError for a wrong dtype or layout
  instead of writing into a copy;
* samples are rows: ``X`` is ``(m, n_in)``, a Dense ``W`` is ``(n_out, n_in)``;
* activations are named ``"linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu"``;
  ``param`` is the leaky slope (0.01) or the ELU alpha (1.0) and is ignored otherwise;
* losses are named ``"softmax_cross_entropy", "binary_cross_entropy", "mse"``, all from
  logits (DESIGN.md §4). Targets are dense ``(m, k)`` arrays of the model's dtype
  (one-hot rows for softmax cross-entropy, 0/1 for binary cross-entropy).
"""
from __future__ import annotations

from typing import Optional, Protocol, runtime_checkable

import numpy as np

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "elu")
LOSSES = ("softmax_cross_entropy", "binary_cross_entropy", "mse")


@runtime_checkable
class Backend(Protocol):
    name: str

    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, *, trans_a: bool = False,
             trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0) -> None:
        """``c = alpha * op(a) @ op(b) + beta * c`` with ``op(x)`` = ``x.T`` if trans_x.

        With beta == 0, ``c`` is never read (it may hold NaN).
        """

    def bias_act_forward(self, z: np.ndarray, bias: np.ndarray, a: np.ndarray,
                         activation: str, param: float) -> None:
        """``z[i, :] += bias`` for every row, then ``a = act(z)``.

        ``a`` may be the same array as ``z`` only when activation is "linear".
        """

    def act_backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray, dz: np.ndarray,
                     activation: str, param: float) -> None:
        """``dz = da * act'(z)``; ``a = act(z)`` is given so sigmoid/tanh use it.

        Kinks take the left branch at exactly 0: relu'(0) = 0, leaky_relu'(0) = slope,
        elu'(0) = alpha.
        """

    def col_sum(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out[j] = sum_i x[i, j]`` (the bias gradient), summed in a fixed order."""

    def loss(self, name: str, logits: np.ndarray, y: np.ndarray,
             grad: Optional[np.ndarray], scale: float) -> float:
        """Return ``sum_i loss_i`` (a Python float) over the rows of ``logits``.

        Row losses, with k outputs:
          softmax_cross_entropy  ``-sum_j y_ij * log_softmax(z_i)_j``
          binary_cross_entropy   ``mean_j [max(z,0) - z*y + log1p(exp(-|z|))]``
          mse                    ``mean_j (z_ij - y_ij)^2``
        If ``grad`` is not None, writes ``grad = scale * d(sum_i loss_i)/d logits``
        (the training loop passes scale = 1/m, so grad is the gradient of the mean).
        """

    def output(self, name: str, logits: np.ndarray, out: np.ndarray) -> None:
        """The loss's output function: softmax rows, elementwise sigmoid, or identity."""

    def sgd_update(self, param: np.ndarray, grad: np.ndarray, lr: float) -> None:
        """``param -= lr * grad`` in place (flat, equal-length arrays)."""
