"""Sequential: a stack of layers whose parameters share one flat buffer."""
from __future__ import annotations

import math
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .._keywords import suggest_keywords
from .._sparse import CsrRows, is_sparse_input
from .._validation import (as_features, check_choice, check_dtype, check_int, check_lengths,
                           check_sample_weight, check_seed)
from ..backends import get_backend
from ..backends.bfloat16 import check_precision, model_arithmetic
from ..io.sources import Source, as_source, by_chunks
from ..nn.layers import Layer, Normalization, Workspace
from ..nn.losses import LOSSES, SoftmaxCrossEntropy, check_classes, get_loss
from ..nn.metrics import PassTotals, evaluation, weight_total
from ..nn.plans import multiplies_input, plan_of
from ..nn.regularizers import check_regularizer
from ..train import fused as _fused, loop as _training
from ..train.history import History
from . import modelfile
from .flat import (INFERENCE_BATCH, FlatParameters, LayerSummary, ModelSummary, build_chain,
                   chunk_rows)

__all__ = ["Sequential", "ModelSummary"]


class Sequential(FlatParameters):
    """A feed-forward network of layers trained on one loss.

    ``Sequential(layers, *, input_dim, loss="softmax_cross_entropy", backend="native",
    dtype="float32", seed=None, regularizer=None)``. ``layers`` are
    :class:`fastmlp.layers.Layer` instances (Dense, Maxout, Dropout, BatchNorm,
    Normalization or your own). The last layer with an activation outputs logits; the
    loss applies the softmax or sigmoid itself (docs/conventions.md). All parameters live in one
    contiguous array of ``dtype`` (each layer's arrays are views into it), so one
    optimizer step updates the whole model. ``seed=None`` draws a seed from the OS,
    recorded in ``model.seed``. ``regularizer`` (:mod:`fastmlp.regularizers`) penalizes
    the weights of every layer that has weights and no regularizer of its own.
    Public methods convert X and y to the model's dtype once (lists and pandas
    DataFrames/Series of numeric columns are accepted). Classifiers take class labels of
    any kind (numbers, strings) and keep them as :attr:`classes_`.

    ``training_step`` counts the training steps (batches) of every fit so far; Dropout's
    masks depend on it, so two fits of one epoch equal one fit of two.

    The parameter views (``layer.W``, ``layer.b``, ...) are read-only: fit, set_weights
    and load change the weights, so that the fused predictor, which keeps a packed copy,
    always sees every change (``weights_version`` counts them).
    """

    file_kind = modelfile.SEQUENTIAL     # what the model file records it as

    @suggest_keywords
    def __init__(self, layers: Sequence[Layer], *, input_dim: int,
                 loss: str = SoftmaxCrossEntropy.name, backend="native",
                 dtype="float32", seed: Optional[int] = None, regularizer=None,
                 precision: Optional[str] = None):
        self.input_dim = check_int(input_dim, "input_dim")
        self.loss = check_choice(loss, "loss", LOSSES)
        self.precision = check_precision(precision)
        self.dtype, self.backend = model_arithmetic(check_dtype(dtype), get_backend(backend),
                                                    self.precision)
        self.layers = _check_layers(layers, get_loss(self.loss))
        self.regularizer = check_regularizer(regularizer)
        seed = check_seed(seed)
        self.seed = np.random.SeedSequence().entropy if seed is None else seed
        self._step = 0
        self._loss = get_loss(self.loss)
        self._optimizer = None
        self.stop_training = False  # a callback sets it to end fit after the epoch
        self.history: Optional[History] = None   # the last fit's, kept (and saved)
        self.metadata: Optional[dict] = None     # plain JSON data kept with it (and saved)
        self._classes: Optional[np.ndarray] = None    # classes_ (set by the first fit)
        self._train_cache = Workspace()
        init_seeds, shuffle_seeds = np.random.SeedSequence(self.seed).spawn(2)
        self._shuffle_rng = np.random.default_rng(shuffle_seeds)
        self._bind_flat(self._build(), np.random.default_rng(init_seeds))
        problem = self._loss.units_problem(self.n_outputs)
        if problem:
            raise ValueError(f"{self.loss} {problem}")

    def _build(self) -> List[int]:
        """Build every layer (layer i's input width is layer i-1's output width); returns
        their parameter counts."""
        return build_chain(self.layers, self.input_dim, "layers")

    def __repr__(self) -> str:
        precision = f", precision={self.precision!r}" if self.precision else ""
        return (f"Sequential({list(self.layers)}, input_dim={self.input_dim}, "
                f"loss={self.loss!r}, backend={self.backend.name!r}, "
                f"dtype={self.dtype.name!r}, seed={self.seed}{precision})")

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].output_dim

    @property
    def classes_(self) -> Optional[np.ndarray]:
        """The class labels of a classifier's outputs, a NumPy array: ``predict`` returns
        them and fit, evaluate and score take them as targets. The first fit sets them
        from its labels (once they are checked): integer labels all in 0..k-1 give
        ``np.arange(k)`` (each output is its index; so do one-hot and multilabel
        targets); any other labels (strings, other numbers) ``np.unique(y)``, which must
        hold exactly k classes (two for binary_cross_entropy with one output). Later
        fits keep them, and a label outside them is a ValueError. None before the first
        fit (predict then returns output indices) and for mse. Assign a list of the k
        classes before fitting to name classes missing from the first fit's labels; the
        model file saves them."""
        return self._classes

    @classes_.setter
    def classes_(self, classes) -> None:
        n_classes = self._loss.n_classes(self.n_outputs)
        if classes is not None and n_classes is None:
            raise ValueError(f"classes_ is for classification; this model's loss is "
                             f"{self.loss!r}")
        self._classes = None if classes is None else check_classes(classes, n_classes)

    def describe(self) -> ModelSummary:
        """Layers, output shapes and parameter counts as a :class:`ModelSummary` (what
        :meth:`summary` prints)."""
        rows = tuple(LayerSummary(f"{layer.kind}_{i}", layer.describe(),
                                  (None, layer.output_dim), layer.count_params())
                     for i, layer in enumerate(self.layers))
        state = sum(int(np.size(s)) for layer in self.layers for s in layer.get_state())
        return ModelSummary(rows, self.n_params, self.loss, self.dtype.name, self.backend.name,
                            state)

    # ---------------------------------------------------------------- training
    # fit(X, y, *, epochs, batch_size=32, learning_rate=None, ...) is
    # fastmlp.train.loop.fit with the model as ``self``: help(model.fit) lists every argument.
    fit = _training.fit

    def prepare_data(self, X, y, x_name: str = "X", y_name: str = "y", *,
                 learn_classes: bool = True):
        """X and y checked and converted once: X (n, input_dim) and dense targets (n, k),
        both C-contiguous in the model's dtype. Class labels map through ``classes_``;
        a model without them learns them from y (kept when ``learn_classes``, as fit
        does)."""
        X = self.as_input(X, x_name)
        Y, classes = self._loss.targets(y, y_name, self.n_outputs, self.dtype, self._classes)
        check_lengths(X, Y, x_name, y_name)
        if learn_classes:
            self._classes = classes
        return X, Y

    def as_input(self, X, name: str = "X", *, finite_checked_later: bool = False):
        """X checked and converted as fit and predict take it (as_features); a
        scipy.sparse X becomes CSR rows (:class:`fastmlp._sparse.CsrRows`) when the first
        layer multiplies its input (docs/sparse.md), else a ValueError."""
        X = as_features(X, name, self.input_dim, self.dtype, accept_sparse=True,
                        finite_checked_later=finite_checked_later)
        if type(X) is CsrRows:
            if self.precision:
                raise ValueError(f"sparse {name} with precision={self.precision!r}: bfloat16 "
                                 f"products take dense rows; pass {name}.toarray()")
            first = self.layers[0]
            plan = plan_of(first)
            if plan is None or not multiplies_input(plan):
                raise ValueError(f"sparse {name} needs a first layer that multiplies its input "
                                 f"(Dense, Maxout); this model starts with {first!r}. Put a "
                                 f"Dense layer first, or pass {name}.toarray()")
        return X

    def _gather_targets(self, Y: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return self._take_rows(Y, rows, "y")

    def history_keys(self, validation: bool) -> List[str]:
        """fit's History keys: "loss", "data_loss", "penalty", the metric, their "val_"
        versions with validation data (loss and metric), and "lr"."""
        metric = self._loss.metric_name
        val_keys = ["val_loss", f"val_{metric}"] if validation else []
        return ["loss", "data_loss", "penalty", metric, *val_keys, "lr"]

    def new_totals(self) -> PassTotals:
        """Running totals of a pass over training data (fit's epoch)."""
        return PassTotals(self._loss.metric(self.backend))

    def fused_program(self) -> Optional[dict]:
        """The layers' plans compiled for the fused trainer, or None when a layer or
        regularizer runs only on the per-op path (:func:`fastmlp.train.fused.training_program`)."""
        return _fused.with_precision(_fused.training_program(self.layers, self._regularizer_of),
                                     self.precision)

    def fused_inference_program(self) -> Optional[dict]:
        """The layers' inference plans compiled for the fused predictor, one output head,
        or None when a layer runs only on the per-op path
        (:func:`fastmlp.train.fused.inference_program`)."""
        return _fused.with_precision(
            _fused.inference_program((), [(self.layers, self.loss)], self.input_dim), self.precision)

    def _forward_train(self, X: np.ndarray, first_row: int = 0) -> np.ndarray:
        """Training-mode forward through every layer's own cache, at the current step
        (``first_row``: X's first row's index in its global batch, for a shard)."""
        out = X
        for layer in self.layers:
            layer.step, layer.first_row = self._step, first_row
            out = layer.forward(self.backend, out, layer.training_workspace, True)
        return out

    def training_loss(self, X: np.ndarray, Y: np.ndarray,
                      weights: Optional[np.ndarray] = None) -> float:
        """The summed (weighted) loss of :meth:`loss_and_grad`'s training-mode forward,
        without the backward pass: no gradient is written (a training forward still moves
        BatchNorm's running averages). X and Y as :meth:`prepare_data` gives them."""
        logits = self._forward_train(X)
        return self.backend.loss(self._loss.kernel, logits, Y, None, 1.0, weights=weights)

    def loss_and_grad(self, X: np.ndarray, Y: np.ndarray,
                       weights: Optional[np.ndarray] = None, *,
                       divisor: Optional[float] = None,
                       first_row: int = 0) -> Tuple[float, np.ndarray]:
        """Forward through the training caches, the summed loss, and (if it is finite)
        the gradient of the mean loss into ``_grads``. Returns (loss sum, logits).

        With ``weights`` (m,) the loss sum is ``sum_i w_i loss_i`` and the gradient that of
        the weighted mean ``sum_i w_i loss_i / sum_i w_i`` (zero if every weight is 0),
        the weights summed in ascending order in double (:func:`.metrics.weight_total`).
        A data-parallel shard (fastmlp.distributed) gives its global batch's ``divisor``
        (rows, or weight sum) and its ``first_row`` there: its gradient is then its
        rows' share of the global batch's mean."""
        logits = self._forward_train(X, first_row)
        grad = self._train_cache.get("grad", logits.shape, self.dtype)
        if divisor is None:
            divisor = len(X) if weights is None else weight_total(weights)
        scale = 1.0 / divisor if divisor > 0 else 0.0
        loss_sum = self.backend.loss(self._loss.kernel, logits, Y, grad, scale, weights=weights)
        if math.isfinite(loss_sum):
            for i in reversed(range(len(self.layers))):
                grad = self.layers[i].backward(self.backend, grad, need_dx=i > 0)
        return loss_sum, logits

    def adapt(self, X: np.ndarray) -> None:
        """Adapt every Normalization layer not adapted yet to the data as it reaches it."""
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Normalization) and not layer.adapted:
                inputs = X
                if i:
                    workspaces = [Workspace() for _ in range(i)]
                    chunks = []
                    for start in range(0, len(X), INFERENCE_BATCH):
                        out = X[start:start + INFERENCE_BATCH]
                        for before, ws in zip(self.layers[:i], workspaces):
                            out = before.forward(self.backend, out, ws, False)
                        chunks.append(out.copy())
                    inputs = np.concatenate(chunks)
                layer.adapt(inputs)

    # --------------------------------------------------------------- inference
    def _logits(self, X: np.ndarray, batch_size: Optional[int]) -> Iterator[Tuple[int, np.ndarray]]:
        """(start row, logits) per chunk, computed in scratch the call holds alone (never
        the training caches), so concurrent calls from several threads are safe. The
        logits array is reused for the next chunk and by later calls: callers copy."""
        step = chunk_rows(batch_size, len(X))
        with self._inference_workspaces(len(self.layers)) as workspaces, \
                self.weights_lock.reading:  # a fit in another thread: between its steps
            for start in range(0, len(X), step):
                out = X[start:start + step]
                for layer, workspace in zip(self.layers, workspaces):
                    out = layer.forward(self.backend, out, workspace, False)
                yield start, out

    def _chunk_logits(self, X: np.ndarray,
                      batch_size: Optional[int]) -> Iterator[Tuple[int, np.ndarray]]:
        """(start row, logits) per chunk as :meth:`_logits`; on the fused path all logits
        come from one C++ call and are handed out in the same chunks."""
        fused = None if type(X) is CsrRows else self._predictor()
        if fused is None:
            yield from self._logits(X, batch_size)
            return
        step = chunk_rows(batch_size, len(X))
        logits = fused.run(X, 0, step)
        for start in range(0, len(X), step):
            yield start, logits[start:start + step]

    def _collect(self, X, batch_size: Optional[int], transform, mode: int) -> np.ndarray:
        """``transform(logits)`` over all chunks; single-column results come back 1-D.
        X may be a source (:mod:`fastmlp.io.sources`; its targets, if any, unread), read
        a chunk at a time: on the native backend each row's result is the same bits as
        from one array (NumPy's BLAS may round a lone row's products differently)."""
        return by_chunks(X, lambda X: self._collect_arrays(X, batch_size, transform, mode),
                         np.concatenate)

    def _collect_arrays(self, X, batch_size: Optional[int], transform, mode: int) -> np.ndarray:
        """:meth:`_collect` of X in memory (an array, a DataFrame, sparse rows).

        On the fused path one GIL-released C++ call computes every chunk and the result
        (``mode``: 1 probabilities, 2 predict's labels), the same bits as the per-op path."""
        fused = None if is_sparse_input(X) else self._predictor()   # sparse: per-op forward
        # the fused predictor checks X finite as it reads each chunk (the same ValueError)
        X = self.as_input(X, "X", finite_checked_later=fused is not None)
        if fused is not None:
            step = chunk_rows(batch_size, len(X))
            result = fused.run(X, mode, step)
        else:
            result = np.concatenate([transform(logits)
                                     for _, logits in self._logits(X, batch_size)])
        return result[:, 0] if result.ndim == 2 and result.shape[1] == 1 else result

    @suggest_keywords
    def predict(self, X, *, batch_size: Optional[int] = None) -> np.ndarray:
        """Class labels (n,), values of ``classes_``, for softmax cross-entropy and for
        binary cross-entropy with one output; 0/1 (n, k) for binary cross-entropy with k
        outputs; values for MSE, means e^z for Poisson. A single-output model returns shape (n,), otherwise
        (n, k). Before the first fit (no ``classes_``) classes are output indices."""
        return self._loss.labels(self._collect(X, batch_size, self._predictions, 2),
                                 self._classes)

    @suggest_keywords
    def predict_proba(self, X, *, batch_size: Optional[int] = None) -> np.ndarray:
        """Class probabilities: softmax rows (n, k) for softmax cross-entropy, column j
        for ``classes_[j]``; sigmoid outputs for binary cross-entropy, (n,) for a single
        output (the probability of ``classes_[1]``), else (n, k). Classification losses
        only (ValueError for mse)."""
        if not self._loss.classifier:
            raise ValueError(f"predict_proba needs a classification loss; this model's loss "
                             f"is {self.loss!r}: use predict")
        return self._collect(X, batch_size, self._probabilities, 1)

    def _predictions(self, logits: np.ndarray) -> np.ndarray:
        return self._loss.predict(logits, self.backend)

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        proba = np.empty_like(logits)
        self.backend.output(self._loss.kernel, logits, proba)
        return proba

    @suggest_keywords
    def evaluate(self, X, y=None, *, batch_size: Optional[int] = None,
                 sample_weight=None) -> dict:
        """``{"loss": mean loss, "accuracy" or "r2": ...}`` over (X, y), y as fit takes
        it (labels of ``classes_``; a label outside them is a ValueError). The loss is the
        data loss (no penalty). With ``sample_weight`` (n,) the loss is the weighted mean
        ``sum w_i loss_i / sum w_i``; the metric stays unweighted. X may be a source as
        fit takes it (README "Training from disk"), read a chunk at a time, its sample
        weights from the source."""
        source = as_source(X, y)
        if source is not None:
            if sample_weight is not None:
                raise ValueError("a source holds its sample weights (e.g. fastmlp.sources."
                                 "Npy(X, y, sample_weight=...)), not sample_weight=")
            return self.evaluate_source(source, batch_size)
        if y is None:
            raise TypeError("evaluate needs y, the targets of X's rows (None only when X "
                            "is a source that holds them)")
        X, Y = self.prepare_data(X, y, learn_classes=False)
        weights = None if sample_weight is None else check_sample_weight(
            sample_weight, len(X), self.dtype)
        return self.evaluate_arrays(X, Y, batch_size, weights)

    def evaluate_source(self, source: Source, batch_size: Optional[int] = None) -> dict:
        """:meth:`evaluate` over a source's chunks in turn: one pass, the totals of every
        row (the result of one array holding them all, up to the order of the sums)."""
        return self.evaluate_chunks(self._prepared_chunks(source), batch_size, source.kind)

    def _prepared_chunks(self, source: Source) -> Iterator[Tuple[np.ndarray, np.ndarray,
                                                                  Optional[np.ndarray]]]:
        """A source's chunks as evaluate_arrays takes them, their errors naming the chunk."""
        for i, (X, y, w) in source.numbered():
            y = source.checked_targets(y)
            try:
                X, Y = self.prepare_data(X, y, learn_classes=False)
                weights = None if w is None else check_sample_weight(w, len(X), self.dtype)
            except ValueError as exc:
                raise source.in_chunk(exc, i) from None
            yield X, Y, weights

    def evaluate_chunks(self, chunks, batch_size: Optional[int] = None,
                        kind: str = "chunk") -> dict:
        """:meth:`evaluate_arrays` over prepared chunks ``(X, Y, weights)`` in turn: one
        pass, the totals of every row; ValueError when they hold no rows (the ``kind``
        source's)."""
        totals, rows = PassTotals(self._loss.metric(self.backend)), 0
        for X, Y, weights in chunks:
            self._add_pass(totals, X, Y, batch_size, weights)
            rows += len(X)
        if rows == 0:
            raise ValueError(f"the {kind} source holds no rows")
        return evaluation(totals)

    def evaluate_arrays(self, X: np.ndarray, Y: np.ndarray, batch_size: Optional[int] = None,
                  weights: Optional[np.ndarray] = None) -> dict:
        totals = PassTotals(self._loss.metric(self.backend))
        self._add_pass(totals, X, Y, batch_size, weights)
        return evaluation(totals)

    def _add_pass(self, totals: PassTotals, X: np.ndarray, Y: np.ndarray,
                  batch_size: Optional[int], weights: Optional[np.ndarray]) -> None:
        """Every row's loss and metric of (X, Y) added to ``totals``."""
        for start, logits in self._chunk_logits(X, batch_size):
            stop = start + len(logits)
            targets = Y[start:stop]
            if weights is None:
                totals.add(logits, targets,
                           self.backend.loss(self._loss.kernel, logits, targets, None, 1.0))
            else:
                w = weights[start:stop]
                totals.add(logits, targets,
                           self.backend.loss(self._loss.kernel, logits, targets, None, 1.0,
                                             weights=w),
                           float(w.sum(dtype=np.float64)))

    @suggest_keywords
    def score(self, X, y=None, *, batch_size: Optional[int] = None) -> float:
        """Accuracy (classification) or R^2 (mse), as scikit-learn's score (unweighted);
        X may be a source, as :meth:`evaluate` takes it."""
        return self.evaluate(X, y, batch_size=batch_size)[self._loss.metric_name]


def _check_layers(layers, loss) -> Tuple[Layer, ...]:
    """A non-empty sequence of fresh layers whose last one with an activation outputs
    logits for ``loss`` (a loss object, :func:`fastmlp.nn.losses.get_loss`)."""
    if not isinstance(layers, (list, tuple)):
        raise TypeError(f"layers must be a list of layers (fastmlp.layers.Layer); got "
                        f"{type(layers).__name__}")
    if not layers:
        raise ValueError("layers must hold at least one layer; got an empty list")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"layers[{i}] must be a layer (fastmlp.layers.Layer, e.g. Dense); "
                            f"got {type(layer).__name__}")
        if not hasattr(layer, "_cache"):
            raise TypeError(f"layers[{i}] ({type(layer).__name__}) was not initialized as a "
                            "Layer: call super().__init__() in its __init__")
        if layer.input_dim is not None or any(layer is other for other in layers[:i]):
            raise ValueError(f"layers[{i}] already belongs to a model (or appears twice); "
                             "create a new layer for every place in every model")
    last = next((layer for layer in reversed(layers) if layer.activation is not None), None)
    if last is not None and last.activation == "sigmoid" and loss.classifier:
        raise ValueError(f"the last layer's activation is 'sigmoid' but {loss.name} applies the "
                         "sigmoid/softmax itself to the logits: the last layer must output "
                         "logits, so leave its activation as None ('linear')")
    return tuple(layers)

