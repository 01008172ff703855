"""Gradient checking (DESIGN.md §3-4): the model's backpropagated gradient against
centered finite differences of its training cost, in float64.

The cost is the one fit minimizes at a step: the (weighted) mean data loss over (X, y) in
training mode plus the weight penalty, with n = len(X). BatchNorm uses the batch's
statistics, and Dropout one fixed mask (the model's current training step for every
evaluation). The check runs on a float64 copy of the model on the NumPy backend; the
model itself is not changed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict

import numpy as np

from ._validation import check_positive_float, check_sample_weight
from .backends.numpy import NumPyBackend
from .layers import Workspace

OK = 1e-7        # below: the gradient is right
SUSPECT = 1e-3   # above: almost certainly a bug


def relative_difference(numeric: np.ndarray, analytic: np.ndarray) -> float:
    """``||numeric - analytic|| / (||numeric|| + ||analytic||)``; 0 when both are 0."""
    scale = np.linalg.norm(numeric) + np.linalg.norm(analytic)
    return 0.0 if scale == 0 else float(np.linalg.norm(numeric - analytic) / scale)


def verdict(difference: float) -> str:
    """"ok" <= 1e-7 < "suspect" <= 1e-3 < "bug" (NaN is a bug)."""
    if difference <= OK:
        return "ok"
    return "suspect" if difference <= SUSPECT else "bug"


@dataclass(frozen=True)
class GradientCheckReport:
    """``overall``: the relative difference over all parameters; ``per_param``: the same
    per parameter array, keyed "<layer>_<index>.<name>" (e.g. "dense_0.W"); ``verdict``:
    "ok", "suspect" or "bug" from ``overall``; ``eps`` the step used."""

    overall: float
    per_param: Dict[str, float]
    verdict: str
    eps: float

    def __str__(self) -> str:
        width = max([len(name) for name in self.per_param] + [9])
        lines = [f"gradient check (centered differences, eps {self.eps:g}, float64): "
                 f"{self.verdict} (overall relative difference {self.overall:.3g})"]
        lines += [f"  {name:<{width}}  {value:.3g}  {verdict(value)}"
                  for name, value in self.per_param.items()]
        return "\n".join(lines)


def _float64_copy(model):
    """A copy of ``model`` in float64 on the NumPy backend with the same parameters,
    state and step counter."""
    clone = copy.copy(model)
    clone.layers = tuple(copy.deepcopy(layer) for layer in model.layers)
    clone.dtype = np.dtype(np.float64)
    clone.backend = NumPyBackend()
    clone._train_cache = Workspace()
    clone._params = model._params.astype(np.float64)
    clone._grads = np.zeros_like(clone._params)
    offset = 0
    for layer, original in zip(clone.layers, model.layers):
        size = layer.count_params()
        state = [np.array(s, dtype=np.float64) for s in original.get_state()]
        layer.bind(clone._params[offset:offset + size], clone._grads[offset:offset + size])
        if state:
            layer.set_state(state)
        layer._cache = Workspace()
        offset += size
    clone.__dict__.pop("_param_views", None)     # the copy's layers view its own buffer
    return clone


def gradient_check(model, X, y, *, eps: float = 1e-7, sample_weight=None) -> GradientCheckReport:
    """Compare ``model``'s gradient of its training cost on (X, y) with centered
    differences ``(J(p + eps e_i) - J(p - eps e_i)) / (2 eps)`` for every parameter
    (2 forward passes per parameter: keep the model and X small). Returns a
    :class:`GradientCheckReport`."""
    eps = check_positive_float(eps, "eps")
    clone = _float64_copy(model)
    X, Y = clone._prepare(X, y)
    weights = None if sample_weight is None else check_sample_weight(
        sample_weight, len(X), clone.dtype)
    n = len(X)
    states = [[s.copy() for s in layer.get_state()] for layer in clone.layers]

    def restore_state():          # BatchNorm's training forward moves its running averages
        for layer, state in zip(clone.layers, states):
            if state:
                layer.set_state(state)

    def cost() -> float:
        logits = clone._forward_train(X)
        if weights is None:
            data = clone.backend.loss(clone.loss, logits, Y, None, 1.0) / n
        else:
            data = clone.backend.loss(clone.loss, logits, Y, None, 1.0,
                                      weights=weights) / float(weights.sum())
        restore_state()
        return data + clone._penalty(n, n, add_gradient=False)

    clone._loss_and_grad(X, Y, weights)
    clone._penalty(n, n)
    restore_state()
    analytic = clone._grads.copy()
    params = clone._params
    numeric = np.empty_like(params)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for i in range(params.size):
            saved = params[i]
            params[i] = saved + eps
            upper = cost()
            params[i] = saved - eps
            lower = cost()
            params[i] = saved
            numeric[i] = (upper - lower) / (2 * eps)
    per_param: Dict[str, float] = {}
    base = params.ctypes.data
    for i, layer in enumerate(clone.layers):
        for name, view in zip(layer.parameter_names(), layer.parameters()):
            start = (view.ctypes.data - base) // params.itemsize   # views are contiguous
            part = slice(start, start + view.size)
            per_param[f"{layer.kind}_{i}.{name}"] = relative_difference(numeric[part],
                                                                        analytic[part])
    overall = relative_difference(numeric, analytic)
    if not np.isfinite(overall):
        overall = float("inf")
    return GradientCheckReport(overall, per_param, verdict(overall), eps)
