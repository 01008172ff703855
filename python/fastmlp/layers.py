"""Layers. A layer's parameters are views into its model's flat buffers; the layer owns
its training caches (reused while the batch size stays the same)."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from . import activations, initializers
from ._validation import check_int
from .backends.base import Backend


class Workspace:
    """Named scratch arrays, kept while their shape and dtype stay the same: a training
    cache reallocates only when the batch size changes (the last, partial batch)."""

    def __init__(self):
        self._arrays: Dict[str, np.ndarray] = {}

    def get(self, name: str, shape: Tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        array = self._arrays.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._arrays[name] = np.empty(shape, dtype)
        return array


class Dense:
    """Fully-connected layer ``A = act(X @ W.T + b)`` with W (units, n_in), b (units,).

    ``activation`` is one of linear (the default, for None), sigmoid, tanh, relu,
    leaky_relu (slope 0.01), elu (alpha 1.0). ``init`` is an initializer name from
    :mod:`fastmlp.initializers`; None means he_normal for the ReLU family and
    glorot_uniform otherwise. Biases start at zero. W, b and their gradients dW, db
    exist once the layer is part of a model.
    """

    def __init__(self, units: int, activation: Optional[str] = None,
                 init: Optional[str] = None):
        self.units = check_int(units, "units")
        self.activation = activations.resolve(activation)
        self.param = activations.param(self.activation)
        self.init = initializers.resolve(init, self.activation)
        self.input_dim: Optional[int] = None
        self.W = self.b = self.dW = self.db = None
        self._cache = Workspace()
        self._x: Optional[np.ndarray] = None

    def __repr__(self) -> str:
        return f"Dense({self.units}, activation={self.activation!r}, init={self.init!r})"

    def n_params(self, input_dim: int) -> int:
        """units * (input_dim + 1): the weights and the biases."""
        return self.units * (input_dim + 1)

    def bind(self, input_dim: int, params: np.ndarray, grads: np.ndarray) -> None:
        """Take W, b from the slice ``params`` of the model's flat buffer (weights first,
        row-major, then biases) and dW, db likewise from ``grads``."""
        n_weights = self.units * input_dim
        self.input_dim = input_dim
        self.W = params[:n_weights].reshape(self.units, input_dim)
        self.b = params[n_weights:]
        self.dW = grads[:n_weights].reshape(self.units, input_dim)
        self.db = grads[n_weights:]

    def initialize(self, rng: np.random.Generator) -> None:
        initializers.initialize(self.init, self.W, rng)
        self.b.fill(0)

    def forward(self, backend: Backend, x: np.ndarray, workspace: Workspace) -> np.ndarray:
        """``Z = X W^T + b`` and ``A = act(Z)`` in the workspace's arrays; returns A
        (which is Z for a linear layer)."""
        z = workspace.get("z", (len(x), self.units), x.dtype)
        backend.gemm(x, self.W, z, trans_b=True)
        a = z if self.activation == "linear" else workspace.get("a", z.shape, z.dtype)
        backend.bias_act_forward(z, self.b, a, self.activation, self.param)
        return a

    def forward_train(self, backend: Backend, x: np.ndarray) -> np.ndarray:
        """:meth:`forward` into the training cache, keeping X for :meth:`backward`."""
        self._x = x
        return self.forward(backend, x, self._cache)

    def backward(self, backend: Backend, da: np.ndarray, need_dx: bool) -> Optional[np.ndarray]:
        """Gradients from ``dA`` (which already carries the 1/m of the mean loss):
        ``dZ = dA * act'(Z)``, ``dW = dZ^T X``, ``db = sum_i dZ_i`` and, if needed,
        ``dX = dZ W`` (returned)."""
        x, cache = self._x, self._cache
        if self.activation == "linear":
            dz = da
        else:
            z = cache.get("z", da.shape, da.dtype)
            a = cache.get("a", da.shape, da.dtype)
            dz = cache.get("dz", da.shape, da.dtype)
            backend.act_backward(z, a, da, dz, self.activation, self.param)
        backend.gemm(dz, x, self.dW, trans_a=True)
        backend.col_sum(dz, self.db)
        if not need_dx:
            return None
        dx = cache.get("dx", x.shape, x.dtype)
        backend.gemm(dz, self.W, dx)
        return dx
