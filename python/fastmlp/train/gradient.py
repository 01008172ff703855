"""A model's whole-batch objective: the loss and its gradient over all rows at once, at
parameters given as a vector (what full-batch optimizers such as scipy's L-BFGS take:
:mod:`fastmlp.sklearn.lbfgs`).

One evaluation sets the model's flat parameters (any float vector, converted to the
model's dtype), then computes what one training step over every row computes before its
update: the training-mode forward, the (weighted) mean loss, the backward pass and the
regularizers' penalty with its gradient, into the model's flat gradient buffer. On a
backend with a fused trainer (the native one) and a model whose layers state plans, that
is one GIL-released C++ call (``FusedTrainer.gradient``); otherwise the per-op path
(``loss_and_grad`` then ``penalty``), which gives the same numbers bit for bit.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from ..nn.losses import get_loss
from ..nn.metrics import weight_total
from .loop import fused_enabled

__all__ = ["Objective", "WholeBatch"]


class Objective(NamedTuple):
    """One evaluation: the loss sum (weighted), the weight behind it (rows or the row
    weights' sum) and the penalty. The mean loss plus penalty is
    ``loss_sum / weight + penalty``; its gradient is in ``model.flat_grads`` (left as it
    was when the loss is not finite)."""

    loss_sum: float
    weight: float
    penalty: float


class WholeBatch:
    """The whole-batch objective of ``model`` on prepared arrays (``prepare_data``'s X
    and Y, row weights W of the model's dtype or None), at the model's current training
    step (Dropout's masks stay fixed across evaluations)."""

    def __init__(self, model, X: np.ndarray, Y: np.ndarray, W: Optional[np.ndarray] = None):
        self.model, self.X, self.Y, self.W = model, X, Y, W
        self._order = np.arange(len(X), dtype=np.int64)
        self._trainer = self._fused_trainer() if fused_enabled() else None

    @property
    def fused(self) -> bool:
        """Whether evaluations take the fused path."""
        return self._trainer is not None

    def _fused_trainer(self):
        """A fused trainer over every row (a plain SGD one whose update never runs), or
        None when the backend or a layer needs the per-op path."""
        model = self.model
        factory = getattr(model.backend, "fused_trainer", None)
        program = model.fused_program() if factory is not None else None
        if program is None:
            return None
        with model.writing_params():            # the trainer binds them for writing
            return factory(params=model.flat_params, grads=model.flat_grads, m=None, v=None,
                           program=program, loss=None if "heads" in program
                           else get_loss(model.loss).kernel,
                           optimizer="sgd", batch_size=len(self.X), lock=model.weights_lock)

    def __call__(self, params: np.ndarray) -> Objective:
        """The objective at ``params`` (a vector of ``model.n_params`` floats), which
        become the model's parameters."""
        model = self.model
        with model.writing_params(), model.weights_lock.writing:   # no predict reads halfway
            model.flat_params[...] = params
        if self._trainer is not None:
            return Objective(*self._trainer.gradient(self.X, self.Y, self.W, self._order, 0,
                                                     model.training_step))
        return self._per_op()

    def _per_op(self) -> Objective:
        model, n = self.model, len(self.X)
        with model.writing_params(), model.weights_lock.writing:
            loss_sum, _ = model.loss_and_grad(self.X, self.Y, self.W)
            weight = float(n) if self.W is None else weight_total(self.W)
            penalty = (model.penalty(n, n, batch_weight=weight) if math.isfinite(loss_sum)
                       else 0.0)
        return Objective(loss_sum, weight, penalty)
