"""Sequential: a stack of Dense layers whose parameters share one flat buffer."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ._validation import (as_features, as_shaped, check_choice, check_dtype, check_int,
                          check_lengths, check_seed)
from .backends import get_backend
from .backends.base import LOSSES
from .layers import Dense, Workspace
from .losses import get_loss
from .metrics import PassTotals
from .training import History, fit

INFERENCE_BATCH = 4096  # rows per chunk when predict/evaluate get batch_size=None


@dataclass(frozen=True)
class LayerSummary:
    name: str
    activation: str
    output_shape: Tuple[Optional[int], int]
    params: int


@dataclass(frozen=True)
class ModelSummary:
    """The model's layers with output shapes and parameter counts; prints as a table."""

    layers: Tuple[LayerSummary, ...]
    total_params: int
    loss: str
    dtype: str
    backend: str

    def __str__(self) -> str:
        header = f"{'layer':<22}{'output shape':<16}{'params':>10}"
        rule = "-" * len(header)
        rows = [f"{f'{s.name} ({s.activation})':<22}{str(s.output_shape):<16}{s.params:>10,}"
                for s in self.layers]
        return "\n".join([header, rule, *rows, rule,
                          f"total params: {self.total_params:,}",
                          f"loss: {self.loss}, dtype: {self.dtype}, backend: {self.backend}"])

    __repr__ = __str__


class Sequential:
    """A feed-forward network of Dense layers trained on one loss.

    ``Sequential(layers, *, input_dim, loss="softmax_cross_entropy", backend="native",
    dtype="float32", seed=None)``. The last layer outputs logits; the loss applies the
    softmax or sigmoid itself (DESIGN.md §3). All parameters live in one contiguous array
    of ``dtype`` (each layer's W and b are views into it), so one optimizer step updates
    the whole model. ``seed=None`` draws a seed from the OS, recorded in ``model.seed``.
    Public methods convert X and y to the model's dtype once (lists are accepted).
    """

    def __init__(self, layers: Sequence[Dense], *, input_dim: int,
                 loss: str = "softmax_cross_entropy", backend="native",
                 dtype="float32", seed: Optional[int] = None):
        self.input_dim = check_int(input_dim, "input_dim")
        self.loss = check_choice(loss, "loss", LOSSES)
        self.dtype = check_dtype(dtype)
        self.layers = _check_layers(layers, self.loss)
        seed = check_seed(seed)
        self.backend = get_backend(backend)
        self.seed = np.random.SeedSequence().entropy if seed is None else seed
        self._loss = get_loss(self.loss)
        self._optimizer = None
        self.stop_training = False  # a callback sets it to end fit after the epoch
        self._train_cache = Workspace()
        init_seeds, shuffle_seeds = np.random.SeedSequence(self.seed).spawn(2)
        self._shuffle_rng = np.random.default_rng(shuffle_seeds)
        self._params, self._grads = self._build(np.random.default_rng(init_seeds))

    def _build(self, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Allocate the flat parameter and gradient buffers and initialize each layer's
        slice; layer i's input dimension is layer i-1's units."""
        dims = [self.input_dim] + [layer.units for layer in self.layers]
        sizes = [layer.n_params(n_in) for layer, n_in in zip(self.layers, dims)]
        params = np.zeros(sum(sizes), self.dtype)
        grads = np.zeros_like(params)
        offsets = np.cumsum([0] + sizes)
        for layer, n_in, start, stop in zip(self.layers, dims, offsets, offsets[1:]):
            layer.bind(n_in, params[start:stop], grads[start:stop])
            layer.initialize(rng)
        return params, grads

    def __repr__(self) -> str:
        return (f"Sequential({list(self.layers)}, input_dim={self.input_dim}, "
                f"loss={self.loss!r}, backend={self.backend.name!r}, "
                f"dtype={self.dtype.name!r}, seed={self.seed})")

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].units

    @property
    def n_params(self) -> int:
        return self._params.size

    # ----------------------------------------------------------------- weights
    def get_weights(self) -> List[np.ndarray]:
        """Copies of the parameters: ``[W1, b1, W2, b2, ...]``."""
        return [array.copy() for array in self._views()]

    def set_weights(self, weights: Sequence) -> None:
        """Copy ``[W1, b1, W2, b2, ...]`` in (converted to the model's dtype), after
        checking the count, every shape and finiteness; nothing changes on error."""
        views = self._views()
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights must be a list [W1, b1, ...]; got {type(weights).__name__}")
        if len(weights) != len(views):
            raise ValueError(f"weights must hold {len(views)} arrays [W1, b1, ...] for "
                             f"{len(self.layers)} layers; got {len(weights)}")
        arrays = [as_shaped(w, f"weights[{i}]", view.shape, self.dtype)
                  for i, (w, view) in enumerate(zip(weights, views))]
        for view, array in zip(views, arrays):
            np.copyto(view, array)

    def _views(self) -> List[np.ndarray]:
        return [view for layer in self.layers for view in (layer.W, layer.b)]

    def summary(self) -> ModelSummary:
        """Layers, output shapes and parameter counts (``print(model.summary())``)."""
        rows = tuple(LayerSummary(f"dense_{i}", layer.activation, (None, layer.units),
                                  layer.n_params(layer.input_dim))
                     for i, layer in enumerate(self.layers))
        return ModelSummary(rows, self.n_params, self.loss, self.dtype.name, self.backend.name)

    # ---------------------------------------------------------------- training
    def fit(self, X, y, *, epochs: int, batch_size: Optional[int] = 32,
            learning_rate=None, optimizer=None, shuffle: bool = True,
            validation_data=None, callbacks=None, verbose: int = 0) -> History:
        """Train from the current weights; see :func:`fastmlp.training.fit`.

        ``optimizer`` (an instance or a name) is kept on the model and reused by later
        fits; ``learning_rate`` (a number or a schedule) goes with a name or replaces the
        kept optimizer's rate (not allowed with an instance)."""
        return fit(self, X, y, epochs=epochs, batch_size=batch_size,
                   learning_rate=learning_rate, optimizer=optimizer, shuffle=shuffle,
                   validation_data=validation_data, callbacks=callbacks, verbose=verbose)

    @property
    def optimizer(self):
        """The optimizer kept from the latest fit (None before the first), with its
        state: ``model.optimizer.state_dict()`` saves it."""
        return self._optimizer

    def _prepare(self, X, y, x_name: str = "X", y_name: str = "y"):
        """X and y checked and converted once: X (n, input_dim) and dense targets (n, k),
        both C-contiguous in the model's dtype."""
        X = as_features(X, x_name, self.input_dim, self.dtype)
        Y = self._loss.targets(y, y_name, self.n_outputs, self.dtype)
        check_lengths(X, Y, x_name, y_name)
        return X, Y

    def _loss_and_grad(self, X: np.ndarray, Y: np.ndarray) -> Tuple[float, np.ndarray]:
        """Forward through the training caches, the summed loss, and (if it is finite)
        the gradient of the mean loss into ``_grads``. Returns (loss sum, logits)."""
        logits = X
        for layer in self.layers:
            logits = layer.forward_train(self.backend, logits)
        grad = self._train_cache.get("grad", logits.shape, self.dtype)
        loss_sum = self.backend.loss(self.loss, logits, Y, grad, 1.0 / len(X))
        if math.isfinite(loss_sum):
            for i in reversed(range(len(self.layers))):
                grad = self.layers[i].backward(self.backend, grad, need_dx=i > 0)
        return loss_sum, logits

    # --------------------------------------------------------------- inference
    def _logits(self, X: np.ndarray, batch_size: Optional[int]) -> Iterator[Tuple[int, np.ndarray]]:
        """(start row, logits) per chunk, computed in per-call scratch (never the training
        caches), so concurrent calls from several threads are safe. The logits array is
        reused for the next chunk."""
        step = INFERENCE_BATCH if batch_size is None else check_int(batch_size, "batch_size")
        workspaces = [Workspace() for _ in self.layers]
        for start in range(0, len(X), step):
            out = X[start:start + step]
            for layer, workspace in zip(self.layers, workspaces):
                out = layer.forward(self.backend, out, workspace)
            yield start, out

    def _collect(self, X, batch_size: Optional[int], transform) -> np.ndarray:
        """``transform(logits)`` over all chunks; single-column results come back 1-D."""
        X = as_features(X, "X", self.input_dim, self.dtype)
        result = np.concatenate([transform(logits) for _, logits in self._logits(X, batch_size)])
        return result[:, 0] if result.ndim == 2 and result.shape[1] == 1 else result

    def predict(self, X, *, batch_size: Optional[int] = None) -> np.ndarray:
        """Integer labels (n,) for softmax cross-entropy; 0/1 for binary cross-entropy;
        values for MSE. A single-output model returns shape (n,), otherwise (n, k)."""
        return self._collect(X, batch_size, self._loss.predict)

    def predict_proba(self, X, *, batch_size: Optional[int] = None) -> np.ndarray:
        """Class probabilities: softmax rows (n, k) for softmax cross-entropy; sigmoid
        outputs for binary cross-entropy, (n,) for a single output like predict, else (n, k).
        Classification losses only (ValueError for mse)."""
        if not self._loss.classifier:
            raise ValueError(f"predict_proba needs a classification loss; this model's loss "
                             f"is {self.loss!r}: use predict")
        return self._collect(X, batch_size, self._probabilities)

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        proba = np.empty_like(logits)
        self.backend.output(self.loss, logits, proba)
        return proba

    def evaluate(self, X, y, *, batch_size: Optional[int] = None) -> dict:
        """``{"loss": mean loss, "accuracy" or "r2": ...}`` over (X, y)."""
        return self._evaluate(*self._prepare(X, y), batch_size)

    def _evaluate(self, X: np.ndarray, Y: np.ndarray, batch_size: Optional[int] = None) -> dict:
        totals = PassTotals(self._loss.metric())
        for start, logits in self._logits(X, batch_size):
            targets = Y[start:start + len(logits)]
            totals.add(logits, targets, self.backend.loss(self.loss, logits, targets, None, 1.0))
        result = totals.result()
        return {"loss": result.pop("data_loss"), **result}

    def score(self, X, y, *, batch_size: Optional[int] = None) -> float:
        """Accuracy (classification) or R^2 (mse), as scikit-learn's score."""
        return self.evaluate(X, y, batch_size=batch_size)[self._loss.metric_name]


def _check_layers(layers, loss: str) -> Tuple[Dense, ...]:
    """A non-empty sequence of fresh Dense layers whose last one fits ``loss``."""
    if not isinstance(layers, (list, tuple)):
        raise TypeError(f"layers must be a list of Dense layers; got {type(layers).__name__}")
    if not layers:
        raise ValueError("layers must hold at least one Dense layer; got an empty list")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Dense):
            raise TypeError(f"layers[{i}] must be a Dense layer; got {type(layer).__name__}")
        if layer.input_dim is not None or any(layer is other for other in layers[:i]):
            raise ValueError(f"layers[{i}] already belongs to a model (or appears twice); "
                             "create a new Dense for every place in every model")
    last = layers[-1]
    if last.activation == "sigmoid" and loss != "mse":
        raise ValueError(f"the last layer's activation is 'sigmoid' but {loss} applies the "
                         "sigmoid/softmax itself to the logits: the last layer must output "
                         "logits, so leave its activation as None ('linear')")
    if loss == "softmax_cross_entropy" and last.units < 2:
        raise ValueError("softmax_cross_entropy needs an output layer of at least 2 units; "
                         "for two classes use 2 units, or 1 unit with binary_cross_entropy")
    return tuple(layers)
