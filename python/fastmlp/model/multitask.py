"""MultiTask: a shared trunk of layers feeding several heads, each with its own loss.

The model minimizes ``J = sum_h w_h * L_h + penalty``, with ``L_h`` head h's mean loss
over the batch and ``w_h`` its loss weight. Head h's logits get the gradient
``w_h * dL_h/dz_h`` (the backend's loss with scale ``w_h / m``); the trunk's output feeds
every head, so its gradient is the sum over heads of what each head's backward pass
returns, ``dJ/da = sum_h w_h * dL_h/da``, added in the heads' order.

All parameters, trunk first then each head in ``heads`` order, live in one flat buffer
(each layer's arrays are views into it), as in :class:`fastmlp.Sequential`, so one
optimizer step updates the whole model. fit is :func:`fastmlp.train.loop.fit`, which reads
the model through its protocol (:class:`fastmlp.train.protocol.TrainableModel`): the
fused C++ path where it applies (``fused_program``: one program with a loss head per
head, :func:`fastmlp.train.fused.multitask_program`), else the per-op loop, with
rollback, checkpoints and callbacks; predict, predict_proba and evaluate run the trunk and
every head in one fused predictor call where it applies (``fused_inference_program``:
:func:`fastmlp.train.fused.inference_program`), else the per-op forward, with the same bits; ``save``/``fastmlp.load``, ``to_onnx``
and ``to_torch`` are :class:`fastmlp.model.flat.FlatParameters`'.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .._keywords import suggest_keywords
from .._validation import (as_features, check_choice, check_dtype, check_int, check_lengths,
                           check_nonnegative_float, check_seed)
from ..backends import get_backend
from ..backends.bfloat16 import check_precision, model_arithmetic
from ..io.sources import Source, as_source, by_chunks
from ..nn.layers import Layer, Normalization, Workspace
from ..nn.losses import LOSSES, check_classes, get_loss
from ..nn.metrics import PassTotals, evaluation
from ..nn.regularizers import check_regularizer
from ..train import fused as _fused
from ..train import loop as _loop
from ..train.history import History
from . import modelfile
from .flat import (INFERENCE_BATCH, FlatParameters, LayerSummary, ModelSummary, build_chain,
                   chunk_rows)
from .sequential import _check_layers

Targets = Dict[str, np.ndarray]


class MultiTask(FlatParameters):
    """A shared trunk and several heads trained together on a weighted sum of losses.

    ``MultiTask(trunk, heads, losses, loss_weights=None, *, input_dim, backend="native",
    dtype="float32", seed=None, regularizer=None)``. ``trunk`` is a list of layers (empty:
    the heads share nothing but the input); ``heads`` maps each head's name to its list
    of layers, the last one outputting logits for the head's loss; ``losses`` maps the
    same names to "softmax_cross_entropy", "binary_cross_entropy" or "mse";
    ``loss_weights`` maps them to weights ``w_h >= 0`` (None: 1.0 each). The cost is
    ``sum_h w_h * mean loss_h`` plus the penalty of ``regularizer`` (applied, as in
    Sequential, to every layer with weights and no regularizer of its own).

    Targets are dicts ``{head name: y}`` with y encoded as Sequential takes it for the
    head's loss (class labels of any kind; each head keeps its own, ``classes_[head]``).
    ``predict`` returns ``{head: what Sequential.predict gives for its loss}``;
    ``predict_proba`` the same for the classification heads.

    As in Sequential, ``get_weights``/``set_weights`` list every layer's arrays (the
    trunk's layers first, then each head's in ``heads`` order), the parameter views are
    read-only outside the library's writes (fit, set_weights), ``weights_version`` counts
    those writes, ``training_step`` the training steps, and the optimizer is kept with its
    state across fits.
    """

    file_kind = modelfile.MULTITASK     # what the model file records it as

    @suggest_keywords
    def __init__(self, trunk: Sequence[Layer], heads: Dict[str, Sequence[Layer]],
                 losses: Dict[str, str], loss_weights: Optional[Dict[str, float]] = None, *,
                 input_dim: int, backend="native", dtype="float32",
                 seed: Optional[int] = None, regularizer=None, precision: Optional[str] = None):
        self.input_dim = check_int(input_dim, "input_dim")
        names = _check_head_names(heads)
        self.losses = {name: check_choice(loss, f"losses[{name!r}]", LOSSES)
                       for name, loss in _matching(losses, "losses", names).items()}
        weights = dict.fromkeys(names, 1.0) if loss_weights is None else loss_weights
        self.loss_weights = {name: check_nonnegative_float(w, f"loss_weights[{name!r}]")
                             for name, w in _matching(weights, "loss_weights", names).items()}
        self.precision = check_precision(precision)
        self.dtype, self.backend = model_arithmetic(check_dtype(dtype), get_backend(backend),
                                                    self.precision)
        self.layers, self._spans = _check_structure(trunk, heads, self.losses)
        self.regularizer = check_regularizer(regularizer)
        seed = check_seed(seed)
        self.seed = np.random.SeedSequence().entropy if seed is None else seed
        self._loss_of = {name: get_loss(loss) for name, loss in self.losses.items()}
        self._classes: Dict[str, Optional[np.ndarray]] = dict.fromkeys(names)
        self._check_history_keys()
        self._step = 0
        self._optimizer = None
        self.stop_training = False  # a callback sets it to end fit after the epoch
        self.history: Optional[History] = None   # the last fit's, kept (and saved)
        self.metadata: Optional[dict] = None     # plain JSON data kept with it (and saved)
        self._train_cache = Workspace()
        init_seeds, shuffle_seeds = np.random.SeedSequence(self.seed).spawn(2)
        self._shuffle_rng = np.random.default_rng(shuffle_seeds)
        self._bind_flat(self._build(), np.random.default_rng(init_seeds))
        self._check_output_units()

    # ------------------------------------------------------------- structure
    @property
    def classes_(self) -> Dict[str, Optional[np.ndarray]]:
        """``{head: its classes}``: for each classification head the labels its first fit
        learned, as :attr:`fastmlp.Sequential.classes_` (None before the first fit and for
        mse heads); ``predict`` returns them."""
        return dict(self._classes)

    @classes_.setter
    def classes_(self, classes: Dict[str, object]) -> None:
        """Set ``{head: classes or None}`` (one entry per head), each as
        :attr:`fastmlp.Sequential.classes_` takes them."""
        classes = _matching(classes, "classes_", self.head_names)
        checked = {}
        for name, labels in classes.items():
            n_classes = self._loss_of[name].n_classes(self.n_outputs[name])
            if labels is not None and n_classes is None:
                raise ValueError(f"classes_[{name!r}]: head {name!r} uses {self.losses[name]}, "
                                 "which has no classes")
            checked[name] = None if labels is None else check_classes(labels, n_classes)
        self._classes = checked

    @property
    def head_names(self) -> Tuple[str, ...]:
        return tuple(self._spans)[1:]

    @property
    def trunk(self) -> Tuple[Layer, ...]:
        return self.layers[self._spans["trunk"]]

    @property
    def heads(self) -> Dict[str, Tuple[Layer, ...]]:
        return {name: self.layers[self._spans[name]] for name in self.head_names}

    @property
    def trunk_dim(self) -> int:
        """The width of the trunk's output (input_dim for an empty trunk)."""
        trunk = self.trunk
        return trunk[-1].output_dim if trunk else self.input_dim

    @property
    def n_outputs(self) -> Dict[str, int]:
        return {name: layers[-1].output_dim for name, layers in self.heads.items()}

    def _build(self) -> List[int]:
        """Build the trunk from input_dim and every head from the trunk's output width;
        returns the parameter counts in ``self.layers`` order (the flat buffer's)."""
        sizes = build_chain(self.trunk, self.input_dim, "trunk")
        for name, layers in self.heads.items():
            sizes += build_chain(layers, self.trunk_dim, f"heads[{name!r}]")
        return sizes

    def _check_output_units(self) -> None:
        for name, units in self.n_outputs.items():
            problem = self._loss_of[name].units_problem(units)
            if problem:
                raise ValueError(f"heads[{name!r}] uses {self.losses[name]} and {problem}")

    def history_keys(self, validation: bool) -> List[str]:
        """fit's History keys: "loss", "data_loss", "penalty", then "<head>_loss" and
        "<head>_<metric>" per head, the "val_" versions of the loss keys, and "lr"."""
        evaluated = ["loss", *self._head_keys()]
        val_keys = [f"val_{key}" for key in evaluated] if validation else []
        return ["loss", "data_loss", "penalty", *self._head_keys(), *val_keys, "lr"]

    def _head_keys(self) -> List[str]:
        return [key for name in self.head_names
                for key in (f"{name}_loss", f"{name}_{self._loss_of[name].metric_name}")]

    def _check_history_keys(self) -> None:
        """ValueError if a head's name makes two History keys equal (a head "data" gives
        "data_loss", a head "val" gives "val_loss")."""
        keys = self.history_keys(validation=True)
        for key in keys:
            if keys.count(key) > 1:
                raise ValueError(f"the head names {list(self.head_names)} give two History "
                                 f"entries the key {key!r}; rename the head behind it")

    def __repr__(self) -> str:
        heads = {name: list(layers) for name, layers in self.heads.items()}
        return (f"MultiTask(trunk={list(self.trunk)}, heads={heads}, losses={self.losses}, "
                f"loss_weights={self.loss_weights}, input_dim={self.input_dim}, "
                f"backend={self.backend.name!r}, dtype={self.dtype.name!r}, seed={self.seed}"
                + (f", precision={self.precision!r})" if self.precision else ")"))

    def describe(self) -> ModelSummary:
        """The :class:`ModelSummary` that :meth:`summary` prints: layers (named "<trunk or
        head>.<kind>_<index>"), output shapes and parameter counts; the loss line gives
        each head's loss and weight."""
        owners = [name for name in self._spans for _ in self.layers[self._spans[name]]]
        rows = tuple(LayerSummary(f"{owner}.{layer.kind}_{i}", layer.describe(),
                                  (None, layer.output_dim), layer.count_params())
                     for i, (owner, layer) in enumerate(zip(owners, self.layers)))
        state = sum(int(np.size(s)) for layer in self.layers for s in layer.get_state())
        losses = ", ".join(f"{name}: {loss} x {self.loss_weights[name]:g}"
                           for name, loss in self.losses.items())
        return ModelSummary(rows, self.n_params, losses, self.dtype.name, self.backend.name,
                            state)

    # ---------------------------------------------------------------- training
    def as_input(self, X, name: str = "X") -> np.ndarray:
        """X checked and converted as fit and predict take it: dense (n, input_dim) rows
        of the model's dtype (as_features)."""
        return as_features(X, name, self.input_dim, self.dtype)

    def prepare_data(self, X, targets, x_name: str = "X", y_name: str = "targets", *,
                 learn_classes: bool = True) -> Tuple[np.ndarray, Targets]:
        """X (n, input_dim) and the targets as ``{head: dense (n, k) array}``, each checked
        for its head's loss and length and converted once to the model's dtype; each
        head's labels map through its classes, learned from the targets where it has
        none (kept when ``learn_classes``, as fit does)."""
        X = self.as_input(X, x_name)
        targets = _matching(targets, y_name, self.head_names)
        dense, classes = {}, {}
        for name, units in self.n_outputs.items():
            label = f"{y_name}[{name!r}]"
            dense[name], classes[name] = self._loss_of[name].targets(
                targets[name], label, units, self.dtype, self._classes[name])
            check_lengths(X, dense[name], x_name, label)
        if learn_classes:
            self._classes = classes
        return X, dense

    def loss_and_grad(self, X: np.ndarray, targets: Targets, weights: None = None, *,
                      divisor: Optional[float] = None, first_row: int = 0
                      ) -> Tuple[float, Dict[str, Tuple[float, np.ndarray]]]:
        """Training-mode forward through every layer's cache; if every head's loss is
        finite, the gradient of ``sum_h w_h * mean loss_h`` into ``flat_grads``. There
        are no sample ``weights`` (fit takes none). A data-parallel shard gives its global
        batch's rows as ``divisor`` and its ``first_row`` there (Sequential.loss_and_grad).

        Returns ``(sum_h w_h * loss sum_h, {head: (loss sum, logits)})``."""
        rows = len(X) if divisor is None else divisor
        features = _forward_train(self.trunk, X, self.backend, self._step, first_row)
        outputs, grads = {}, {}
        for name, layers in self.heads.items():
            logits = _forward_train(layers, features, self.backend, self._step, first_row)
            grads[name] = self._train_cache.get(f"grad.{name}", logits.shape, self.dtype)
            loss_sum = self.backend.loss(self._loss_of[name].kernel, logits, targets[name],
                                         grads[name], self.loss_weights[name] / rows)
            outputs[name] = (loss_sum, logits)
        total = sum(self.loss_weights[name] * loss for name, (loss, _) in outputs.items())
        if math.isfinite(total):
            self._backward(grads)
        return total, outputs

    def _backward(self, head_grads: Dict[str, np.ndarray]) -> None:
        """Every head's backward pass from its logits' gradient; the trunk's from the sum
        of what the heads pass back (heads added in order)."""
        trunk_grad, need_dx = None, bool(self.trunk)
        for name, layers in self.heads.items():
            dx = _backward_through(layers, head_grads[name], self.backend, need_dx)
            if dx is None:
                continue
            if trunk_grad is None:
                trunk_grad = self._train_cache.get("grad.trunk", dx.shape, dx.dtype)
                np.copyto(trunk_grad, dx)
            else:
                self.backend.add_to(dx, trunk_grad)
        if trunk_grad is not None:
            _backward_through(self.trunk, trunk_grad, self.backend, need_dx=False)

    def _gather_targets(self, targets: Targets, rows: np.ndarray) -> Targets:
        return {name: self._take_rows(Y, rows, f"y.{name}") for name, Y in targets.items()}

    def new_totals(self) -> "HeadTotals":
        """Running totals of a pass over training data, per head."""
        return HeadTotals(self._loss_of, self.loss_weights, self.backend)

    def fused_program(self) -> Optional[dict]:
        """The trunk's and heads' plans compiled for the fused trainer with one loss head
        per head, or None when a layer or regularizer runs only on the per-op path
        (:func:`fastmlp.train.fused.multitask_program`)."""
        heads = [(name, layers, self.losses[name], self.loss_weights[name])
                 for name, layers in self.heads.items()]
        return _fused.with_precision(
            _fused.multitask_program(self.trunk, heads, self._regularizer_of, self.input_dim),
            self.precision)

    def fused_inference_program(self) -> Optional[dict]:
        """The trunk's and heads' inference plans compiled for the fused predictor, one
        output head per head in order, or None when a layer runs only on the per-op path
        (:func:`fastmlp.train.fused.inference_program`)."""
        heads = [(layers, self.losses[name]) for name, layers in self.heads.items()]
        return _fused.with_precision(_fused.inference_program(self.trunk, heads, self.input_dim),
                                     self.precision)

    @suggest_keywords
    def fit(self, X, targets=None, *, epochs: int, batch_size: Optional[int] = 32,
            learning_rate=None, optimizer=None, shuffle: bool = True, validation_data=None,
            callbacks=None, verbose="auto", checkpoint_dir=None,
            checkpoint_every: Optional[int] = 1, checkpoint_every_steps: Optional[int] = None,
            resume: bool = False, keep_checkpoints: int = 2,
            shuffle_buffer: Optional[int] = None, distributed=None) -> History:
        """Train from the current weights on ``targets`` = ``{head: y}`` through the fit
        loop of :func:`fastmlp.train.loop.fit`, whose arguments these are. X may be a
        source (README "Training from disk") whose targets are ``{head: y}`` (e.g.
        ``sources.Npy(X_path, {head: y_path})``, ``sources.Parquet(path, {head: column})``,
        or ``X`` a path with ``targets`` the heads' paths or column names), streamed
        through a shuffle buffer of ``shuffle_buffer`` rows as Sequential's. The optimizer is
        kept on the model, a diverging step raises DivergenceError with the model rolled
        back to its start, ``checkpoint_dir``/``resume`` write and continue checkpoints
        (resumed fits equal uninterrupted ones bit for bit), callbacks, Ctrl-C, progress,
        the epoch limit, the memory check and the data scale warning behave as there.

        History keys: "loss" (``sum_h w_h * <head>_loss + penalty``), "data_loss",
        "penalty", "<head>_loss" (the head's mean loss, unweighted), "<head>_accuracy" or
        "<head>_r2", the "val_" versions of "loss" and the head keys with
        ``validation_data=(X_val, {head: y_val})`` (val_loss without penalty), and "lr".
        Sample and class weights are not supported. A model of built-in layers on the
        native backend trains on the fused path, bit for bit as on the per-op loop.
        ``distributed=fastmlp.distributed.MPI()`` trains data-parallel across MPI ranks on
        arrays, as Sequential's fit (docs/distributed.md).
        """
        return _loop.fit(self, X, targets, epochs=epochs, batch_size=batch_size,
                         learning_rate=learning_rate, optimizer=optimizer, shuffle=shuffle,
                         validation_data=validation_data, callbacks=callbacks,
                         verbose=verbose, checkpoint_dir=checkpoint_dir,
                         checkpoint_every=checkpoint_every,
                         checkpoint_every_steps=checkpoint_every_steps, resume=resume,
                         keep_checkpoints=keep_checkpoints, shuffle_buffer=shuffle_buffer,
                         distributed=distributed)

    def adapt(self, X: np.ndarray) -> None:
        """Adapt every Normalization layer not adapted yet to the data as it reaches it
        (through the trunk, then through the head's layers before it)."""
        for name, head in self.heads.items():
            path = (*self.trunk, *head)
            for i, layer in enumerate(path):
                if isinstance(layer, Normalization) and not layer.adapted:
                    layer.adapt(_infer_all(path[:i], X, self.backend))

    # --------------------------------------------------------------- inference
    def _chunk_logits(self, X: np.ndarray, batch_size: Optional[int],
                      names: Sequence[str]) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
        """(start row, {head: logits}) per chunk for the heads in ``names``; on the fused
        path all logits come from one C++ call and are handed out in the same chunks."""
        fused = self._predictor()
        if fused is None:
            yield from self._logits(X, batch_size, names)
            return
        step = chunk_rows(batch_size, len(X))
        logits = dict(zip(names, fused.run_heads(X, 0, step, self._head_indices(names))))
        for start in range(0, len(X), step):
            yield start, {name: z[start:start + step] for name, z in logits.items()}

    def _logits(self, X: np.ndarray, batch_size: Optional[int],
                names: Sequence[str]) -> Iterator[Tuple[int, Dict[str, np.ndarray]]]:
        """:meth:`_chunk_logits` on the per-op path, computed in scratch the call holds
        alone (never the training caches), so concurrent calls are safe, and under the
        weights lock, so a fit in another thread is seen between its steps. The arrays are
        reused for the next chunk and by later calls: callers copy."""
        step = INFERENCE_BATCH if batch_size is None else check_int(batch_size, "batch_size")
        heads = self.heads
        with self._inference_workspaces(len(self.layers)) as workspaces, \
                self.weights_lock.reading:  # a fit in another thread: between its steps
            scratch = {part: workspaces[span] for part, span in self._spans.items()}
            for start in range(0, len(X), step):
                features = _infer(self.trunk, X[start:start + step], self.backend,
                                  scratch["trunk"])
                yield start, {name: _infer(heads[name], features, self.backend, scratch[name])
                              for name in names}

    def _head_indices(self, names: Sequence[str]) -> List[int]:
        return [self.head_names.index(name) for name in names]

    def _collect(self, X, batch_size: Optional[int],
                 transforms: Dict[str, Callable[[np.ndarray], np.ndarray]],
                 mode: int) -> Targets:
        """``{head: transform(logits)}`` over all chunks; single-column results are 1-D.
        X may be a source of features (:mod:`fastmlp.io.sources`; its targets, if any,
        unread), read a chunk at a time, each head's results joined in row order."""
        return by_chunks(X, lambda X: self._collect_arrays(X, batch_size, transforms, mode),
                         lambda pieces: {name: np.concatenate([piece[name] for piece in pieces])
                                         for name in transforms})

    def _collect_arrays(self, X, batch_size: Optional[int],
                        transforms: Dict[str, Callable[[np.ndarray], np.ndarray]],
                        mode: int) -> Targets:
        """:meth:`_collect` of X in memory. On the fused path one GIL-released C++ call
        computes every chunk and each head's result (``mode``: 1 probabilities, 2
        predict's labels), the same bits as the per-op path."""
        fused = self._predictor()
        # the fused predictor checks X finite as it reads each chunk (the same ValueError)
        X = as_features(X, "X", self.input_dim, self.dtype,
                        finite_checked_later=fused is not None)
        if fused is not None:
            results = dict(zip(transforms, fused.run_heads(
                X, mode, chunk_rows(batch_size, len(X)), self._head_indices(list(transforms)))))
        else:
            parts: Dict[str, list] = {name: [] for name in transforms}
            for _, logits in self._logits(X, batch_size, list(transforms)):
                for name, transform in transforms.items():
                    parts[name].append(transform(logits[name]))
            results = {name: np.concatenate(chunks) for name, chunks in parts.items()}
        return {name: result[:, 0] if result.ndim == 2 and result.shape[1] == 1 else result
                for name, result in results.items()}

    @suggest_keywords
    def predict(self, X, *, batch_size: Optional[int] = None) -> Targets:
        """``{head: predictions}``: class labels (n,) (values of the head's ``classes_``)
        for softmax cross-entropy heads and single-output binary cross-entropy heads, 0/1
        (n, k) for multilabel ones, values for MSE, means e^z for Poisson; (n,) for a single output, else (n, k),
        as :meth:`fastmlp.Sequential.predict` gives them. X may be a source of features
        (README "Training from disk"), read a chunk at a time."""
        indices = self._collect(X, batch_size, {name: self._predictions(name)
                                                for name in self._loss_of}, 2)
        return {name: self._loss_of[name].labels(predicted, self._classes[name])
                for name, predicted in indices.items()}

    @suggest_keywords
    def predict_proba(self, X, *, batch_size: Optional[int] = None) -> Targets:
        """``{head: probabilities}`` for the classification heads (softmax rows, or sigmoid
        outputs as :meth:`fastmlp.Sequential.predict_proba`); ValueError if every head
        uses mse."""
        classifiers = [name for name, loss in self._loss_of.items() if loss.classifier]
        if not classifiers:
            used = " or ".join(repr(loss) for loss in sorted(set(self.losses.values())))
            raise ValueError(f"predict_proba needs a classification head; every head uses "
                             f"{used} ({list(self.head_names)}): use predict")
        return self._collect(X, batch_size, {name: self._probabilities(name)
                                             for name in classifiers}, 1)

    def _predictions(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        return lambda logits: self._loss_of[name].predict(logits, self.backend)

    def _probabilities(self, name: str) -> Callable[[np.ndarray], np.ndarray]:
        def transform(logits: np.ndarray) -> np.ndarray:
            proba = np.empty_like(logits)
            self.backend.output(self._loss_of[name].kernel, logits, proba)
            return proba
        return transform

    @suggest_keywords
    def evaluate(self, X, targets=None, *, batch_size: Optional[int] = None
                 ) -> Dict[str, float]:
        """``{"loss": sum_h w_h * loss_h, "<head>_loss": ..., "<head>_<metric>": ...}``
        over (X, targets); the data loss, no penalty (as Sequential.evaluate). X may be a
        source as fit takes it, read a chunk at a time."""
        source = as_source(X, targets)
        if source is not None:
            return self.evaluate_source(source, batch_size)
        if targets is None:
            raise TypeError("evaluate needs targets, {head: y} of X's rows (None only when X "
                            "is a source that holds them)")
        return self.evaluate_arrays(*self.prepare_data(X, targets, learn_classes=False), batch_size)

    def evaluate_source(self, source: Source, batch_size: Optional[int] = None
                        ) -> Dict[str, float]:
        """:meth:`evaluate` over a source's chunks in turn: one pass, every row's totals."""
        totals, rows = self.new_totals(), 0
        for i, (X, y, w) in source.numbered():
            try:
                if w is not None:
                    raise ValueError("the source gives sample weights; a MultiTask takes none")
                X, targets = self.prepare_data(X, source.checked_targets(y), learn_classes=False)
            except ValueError as exc:
                raise source.in_chunk(exc, i) from None
            self._add_pass(totals, X, targets, batch_size)
            rows += len(X)
        if rows == 0:
            raise ValueError(f"the {source.kind} source holds no rows")
        return evaluation(totals)

    def evaluate_arrays(self, X: np.ndarray, targets: Targets,
                        batch_size: Optional[int] = None) -> Dict[str, float]:
        """:meth:`evaluate` of prepared arrays (:meth:`prepare_data`)."""
        totals = self.new_totals()
        self._add_pass(totals, X, targets, batch_size)
        return evaluation(totals)

    def _add_pass(self, totals: "HeadTotals", X: np.ndarray, targets: Targets,
                  batch_size: Optional[int]) -> None:
        """Every row's loss and metric of every head added to ``totals``."""
        for start, chunk in self._chunk_logits(X, batch_size, self.head_names):
            for name, logits in chunk.items():
                Y = targets[name][start:start + len(logits)]
                totals.add_head(name, logits, Y, self.backend.loss(
                    self._loss_of[name].kernel, logits, Y, None, 1.0))


class HeadTotals:
    """A pass's running totals for every head (each a :class:`PassTotals`); its
    ``result()`` is ``{"data_loss": sum_h w_h * loss_h, "<head>_loss": ...,
    "<head>_<metric>": ...}``, its ``state()`` ``{"heads": {head: totals' state}}``."""

    def __init__(self, losses: dict, loss_weights: Dict[str, float], backend):
        self.heads = {name: PassTotals(loss.metric(backend)) for name, loss in losses.items()}
        self.loss_weights = loss_weights

    def add_head(self, name: str, logits: np.ndarray, targets: np.ndarray,
                 loss_sum: float) -> None:
        self.heads[name].add(logits, targets, loss_sum)

    def add(self, outputs: Dict[str, Tuple[float, np.ndarray]], targets: Targets,
            loss_sum: float, weight_sum: None = None) -> None:
        """A batch's outputs (:meth:`MultiTask.loss_and_grad`'s): each head's loss sum and
        logits (``loss_sum``, their weighted total, is not needed)."""
        for name, (head_loss, logits) in outputs.items():
            self.add_head(name, logits, targets[name], head_loss)

    def result(self) -> Dict[str, float]:
        record, data_loss = {}, 0.0
        for name, totals in self.heads.items():
            result = totals.result()
            loss = result.pop("data_loss")
            data_loss += self.loss_weights[name] * loss
            record[f"{name}_loss"] = loss
            record.update({f"{name}_{metric}": value for metric, value in result.items()})
        return {"data_loss": data_loss, **record}

    def state(self) -> dict:
        return {"heads": {name: totals.state() for name, totals in self.heads.items()}}

    def load(self, state: dict) -> None:
        for name, totals in self.heads.items():
            totals.load(state["heads"][name])


# ------------------------------------------------------------------ helpers
def _matching(mapping, name: str, heads: Sequence[str]) -> dict:
    """``mapping`` as a dict with exactly one entry per head (ValueError naming the
    missing and extra keys)."""
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{name} must be a dict {{head name: ...}} with the keys "
                        f"{list(heads)}; got {type(mapping).__name__}")
    missing = [key for key in heads if key not in mapping]
    extra = [key for key in mapping if key not in heads]
    if missing or extra:
        raise ValueError(f"{name} must have one entry per head {list(heads)}; missing "
                         f"{missing}, extra {extra}")
    return {key: mapping[key] for key in heads}


def _check_head_names(heads) -> List[str]:
    if not isinstance(heads, Mapping):
        raise TypeError(f"heads must be a dict {{name: [layers]}}; got {type(heads).__name__}")
    if not heads:
        raise ValueError("heads must hold at least one head; got an empty dict")
    for name in heads:
        if not isinstance(name, str):
            raise TypeError(f"heads' names must be strings; got {name!r}")
        if not name or name == "trunk":
            raise ValueError(f"heads' names must be non-empty and not 'trunk'; got {name!r}")
    return list(heads)


def _check_structure(trunk, heads: Mapping, losses: Dict[str, str]):
    """The layers in buffer order (trunk, then each head) and each part's slice of them.

    Each head's path (trunk then head) must be fresh layers whose last activation gives
    logits for the head's loss (:func:`fastmlp.model.sequential._check_layers`; its ``layers[i]``
    counts the trunk's layers first); no layer may appear in two heads."""
    if not isinstance(trunk, (list, tuple)):
        raise TypeError(f"trunk must be a list of layers (possibly empty); got "
                        f"{type(trunk).__name__}")
    layers, spans = list(trunk), {"trunk": slice(0, len(trunk))}
    for name, head in heads.items():
        if not isinstance(head, (list, tuple)):
            raise TypeError(f"heads[{name!r}] must be a list of layers; got "
                            f"{type(head).__name__}")
        if not head:
            raise ValueError(f"heads[{name!r}] must hold at least one layer (its output "
                             "layer); got an empty list")
        where = f"trunk + heads[{name!r}]" if trunk else f"heads[{name!r}]"
        try:
            _check_layers([*trunk, *head], get_loss(losses[name]))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
        for i, layer in enumerate(head):
            if any(layer is other for other in layers):
                raise ValueError(f"heads[{name!r}][{i}] is also part of another head; create "
                                 "a new layer for every place in every model")
        spans[name] = slice(len(layers), len(layers) + len(head))
        layers += head
    return tuple(layers), spans


def _forward_train(layers: Sequence[Layer], x: np.ndarray, backend, step: int,
                   first_row: int = 0) -> np.ndarray:
    """Training-mode forward through the layers' own caches at training step ``step``
    (``first_row``: x's first row's index in its global batch, for a shard)."""
    for layer in layers:
        layer.step, layer.first_row = step, first_row
        x = layer.forward(backend, x, layer._cache, True)
    return x


def _backward_through(layers: Sequence[Layer], grad: np.ndarray, backend,
              need_dx: bool) -> Optional[np.ndarray]:
    """Backward through ``layers`` from their output's gradient; the input's gradient
    when ``need_dx``, else None."""
    for i in reversed(range(len(layers))):
        grad = layers[i].backward(backend, grad, need_dx=i > 0 or need_dx)
    return grad if need_dx else None


def _infer(layers: Sequence[Layer], x: np.ndarray, backend,
           workspaces: Sequence[Workspace]) -> np.ndarray:
    """Inference-mode forward in the given per-call workspaces (one per layer)."""
    for layer, workspace in zip(layers, workspaces):
        x = layer.forward(backend, x, workspace, False)
    return x


def _infer_all(layers: Sequence[Layer], X: np.ndarray, backend) -> np.ndarray:
    """The inference output of ``layers`` for all of X, in chunks of INFERENCE_BATCH."""
    if not layers:
        return X
    workspaces = [Workspace() for _ in layers]
    return np.concatenate([_infer(layers, X[start:start + INFERENCE_BATCH], backend,
                                  workspaces).copy()
                           for start in range(0, len(X), INFERENCE_BATCH)])
