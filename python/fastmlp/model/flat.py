"""What Sequential and MultiTask share: the flat parameter buffer (:class:`FlatParameters`:
the weights' views, locks and writes, get/set_weights, the fit loop's protocol members
common to both, the model file and checkpoint methods) and the summary table."""
from __future__ import annotations

import copy
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from .._keywords import suggest_keywords
from .._memory import check_memory
from .._sparse import CsrRows
from .._validation import as_shaped, check_dtype, check_int
from ..backends import get_backend
from ..backends.base import WeightsLock
from ..nn.layer import WorkspacePool
from ..nn.layers import Layer
from ..optim.optimizers import Optimizer
from ..io import onnx, torch
from ..train import fused as _fused, loop as _training
from ..train.history import History
from . import modelfile

INFERENCE_BATCH = 4096  # rows per chunk when predict/evaluate get batch_size=None
# Arrays of the parameters' size a model trains with: the parameters, their gradients and
# the state of a typical optimizer (Adam's m and v); checked against the memory available.
MODEL_COPIES = 4
# The model's thread locks and their holder (FlatParameters.exclusive, weights_lock):
# never pickled or copied.
_LOCKS = ("_fit_lock", "_holder", "_holder_thread", "_weights_lock_")


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
    state_values: int = 0   # non-trainable state (BatchNorm running averages, ...)

    def __str__(self) -> str:
        width = max([22] + [len(_label(s)) + 2 for s in self.layers])
        header = f"{'layer':<{width}}{'output shape':<16}{'params':>10}"
        rule = "-" * len(header)
        rows = [f"{_label(s):<{width}}{str(s.output_shape):<16}{s.params:>10,}"
                for s in self.layers]
        state = [f"non-trainable state: {self.state_values:,}"] if self.state_values else []
        return "\n".join([header, rule, *rows, rule,
                          f"total params: {self.total_params:,}", *state,
                          f"loss: {self.loss}, dtype: {self.dtype}, backend: {self.backend}"])

    __repr__ = __str__


def _label(s: LayerSummary) -> str:
    return f"{s.name} ({s.activation})" if s.activation else s.name


def build_chain(layers: Sequence[Layer], dim: int, where: str) -> List[int]:
    """Build ``layers`` one after another from input width ``dim`` (``where`` names them
    in errors); returns their parameter counts."""
    sizes = []
    for i, layer in enumerate(layers):
        out = layer.build(dim)
        if not isinstance(out, (int, np.integer)) or out < 1:
            raise ValueError(f"{where}[{i}].build({dim}) must return the output width, an "
                             f"int >= 1; got {out!r}")
        dim = layer.output_dim = int(out)
        sizes.append(check_int(layer.count_params(), f"{where}[{i}].count_params()",
                               minimum=0))
    return sizes


def chunk_rows(batch_size: Optional[int], n: int) -> int:
    """Rows per inference chunk: batch_size (None: INFERENCE_BATCH), at most the n rows
    (so any large batch size means one chunk)."""
    step = INFERENCE_BATCH if batch_size is None else check_int(batch_size, "batch_size")
    return min(step, max(n, 1))


class FlatParameters:
    """What Sequential and MultiTask share: every layer's parameters live in one flat
    buffer of the model's dtype (``self.layers`` in the buffer's order; each layer's
    arrays are views into it), so one optimizer step updates them all; the views are
    read-only between the library's writes (``writing_params``), which the weights'
    version counts."""

    def _bind_flat(self, sizes: List[int], rng: np.random.Generator) -> None:
        """Allocate the flat parameter and gradient buffers for layers of ``sizes``
        parameters, bind each layer's slice and initialize it (in order, from ``rng``),
        then lock the views. Refused (ValueError with the sizes) when they and a typical
        optimizer's state would not fit in the memory available."""
        total = sum(sizes)
        check_memory(MODEL_COPIES * total * self.dtype.itemsize,
                     f"a model of {total:,} {self.dtype.name} parameters (per layer: {sizes}), "
                     "with its gradients and an optimizer's state (2 more copies for Adam),",
                     "check input_dim and the layers' units")
        try:
            self._params = np.zeros(total, self.dtype)
            self._grads = np.zeros_like(self._params)
        except (MemoryError, ValueError) as exc:     # NumPy: "maximum dimension exceeded"
            raise ValueError(f"the model's {total:,} parameters (per layer: {sizes}) cannot be "
                             f"allocated ({exc}); check input_dim and the layers' units") from None
        offsets = np.cumsum([0] + list(sizes))
        for i, (layer, start, stop) in enumerate(zip(self.layers, offsets, offsets[1:])):
            layer.index, layer.seed = i, self.seed % 2 ** 64
            layer.bind(self._params[start:stop], self._grads[start:stop])
            layer.initialize(rng)
        self._weights_version = 0
        self._writers = 0              # open writing_params blocks
        self._set_params_writeable(False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_fused_predictor", None)      # the fused predictor (C++) is rebuilt on demand
        state.pop("_param_views", None)          # views; found again after unpickling
        for lock in _LOCKS:                      # a copy is free: new locks on demand
            state.pop(lock, None)
        return state

    def __setstate__(self, state: dict) -> None:
        """Unpickling gives every array its own memory: bind the layers to the flat
        buffers again (keeping their state), so they are views, as in a built model.
        (copy.copy comes here too, with layers that still view the buffer: left alone.)
        A large buffer comes back as a view of the pickle's bytes, which can be made
        read-only but never writeable again: the model gets a buffer of its own."""
        params = state["_params"]
        if params.base is not None:
            state = {**state, "_params": params.copy()}
        self.__dict__.update(state)
        self._writers = 0
        offset = 0
        for layer in self.layers:
            size, kept = layer.count_params(), layer.get_state()
            views = layer.parameters()
            if views and not np.may_share_memory(views[0], self._params):
                layer.bind(self._params[offset:offset + size], self._grads[offset:offset + size])
                if kept:
                    layer.set_state(kept)
            offset += size
        self._set_params_writeable(False)

    def copy_as(self, dtype, backend) -> "FlatParameters":
        """An independent copy of this model (``copy.deepcopy``) in ``dtype`` on
        ``backend`` (a name or a Backend): the same weights and layer state converted to
        ``dtype``, the same seed and training-step counter, zero gradients.
        (:func:`fastmlp.gradient_check` checks a float64 copy on the NumPy backend.)"""
        clone = copy.deepcopy(self)
        clone.dtype, clone.backend = check_dtype(dtype), get_backend(backend)
        clone._rebind(self._params.astype(clone.dtype))
        return clone

    def _rebind(self, params: np.ndarray) -> None:
        """Bind every layer to ``params`` (a new flat buffer of the model's dtype) and new
        zero gradients, its state converted to the dtype; then lock the views."""
        self._params, self._grads = params, np.zeros_like(params)
        offset = 0
        for layer in self.layers:
            size = layer.count_params()
            state = [np.array(s, dtype=self.dtype) for s in layer.get_state()]
            layer.bind(params[offset:offset + size], self._grads[offset:offset + size])
            if state:
                layer.set_state(state)
            offset += size
        self.__dict__.pop("_param_views", None)     # found again for the new views
        self._set_params_writeable(False)

    # ----------------------------------------------------------- other threads
    @contextmanager
    def exclusive(self, what: str, *, from_fit: bool):
        """Run ``what`` (fit, set_weights, ...) holding the model's fit lock, taken
        without waiting: RuntimeError while another thread holds it (a fit there), so two
        writers never race. A call from inside the holder's own thread (a fit's callback)
        runs when ``from_fit`` allows it, else is a RuntimeError too (a fit inside a fit)."""
        if self.__dict__.get("_holder_thread") == threading.get_ident():
            if not from_fit:
                raise RuntimeError(f"{what}: {self._holder} is running on this model in this "
                                   "thread (a callback?); call it after fit returns")
            yield
            return
        lock = self.__dict__.setdefault("_fit_lock", threading.Lock())
        if not lock.acquire(blocking=False):
            raise RuntimeError(f"{what}: {self.__dict__.get('_holder', 'fit')} is running on "
                               "this model in another thread; wait for it to finish (or use "
                               "a copy: copy.deepcopy(model))")
        self._holder, self._holder_thread = what, threading.get_ident()
        try:
            yield
        finally:
            self._holder_thread = None
            lock.release()

    @property
    def weights_lock(self):
        """The lock a training step holds (``writing``) while it changes the weights and
        layer state, and a per-op predict (``reading``) while it reads them: the backend's
        ``weights_lock()`` (the native one's is shared with its fused paths), else
        :class:`.backends.base.WeightsLock`. Created at the first use, never copied."""
        lock = self.__dict__.get("_weights_lock_")
        if lock is None:
            factory = getattr(self.backend, "weights_lock", WeightsLock)
            lock = self.__dict__.setdefault("_weights_lock_", factory())
        return lock

    # ----------------------------------------------------------- weight writes
    @property
    def weights_version(self) -> int:
        """How many times the library has written the weights (each fit epoch,
        set_weights, ...); a cache of anything computed from them keys on it."""
        return self._weights_version

    def _param_arrays(self) -> List[np.ndarray]:
        """The flat parameter buffer, then every array attribute of a layer that views it
        (found once: the layers bind their views when the model is built or unpickled)."""
        arrays = self.__dict__.get("_param_views")
        if arrays is None:
            views = [value for layer in self.layers for value in vars(layer).values()
                     if isinstance(value, np.ndarray) and value.base is not None
                     and np.may_share_memory(value, self._params)]
            arrays = self._param_views = [self._params, *views]
        return arrays

    def _set_params_writeable(self, writeable: bool) -> None:
        arrays = self._param_arrays()          # the buffer first: a view can only be made
        for array in arrays if writeable else reversed(arrays):   # writeable after it
            array.flags.writeable = writeable

    def weights_written(self) -> None:
        """A writer bound while the views were writeable (the fused trainer) has changed
        the weights: count it, as the end of a writing_params block does."""
        self._weights_version += 1

    @contextmanager
    def writing_params(self):
        """The library's only way to write the weights: the views are writeable inside,
        read-only again afterwards, and the weights' version goes up (reentrant: the
        outermost block decides)."""
        if self._writers == 0:
            self._set_params_writeable(True)
        self._writers += 1
        try:
            yield
        finally:
            self._writers -= 1
            if self._writers == 0:
                self._set_params_writeable(False)
                self._weights_version += 1

    # --------------------------------------------------------------- inference
    def _predictor(self):
        """The fused inference path (:func:`fastmlp.train.fused.predictor`, running the
        model's ``fused_inference_program()``) or None: models of the built-in layers on
        the native backend, unless the fused switch is off."""
        return _fused.predictor(self) if _training.fused_enabled() else None

    def _inference_workspaces(self, n: int):
        """The per-op inference path's scratch for one call: ``n`` workspaces lent by the
        model's pool (:class:`fastmlp.nn.layer.WorkspacePool`), made on first use."""
        pool = self.__dict__.get("_inference_pool")
        if pool is None:
            pool = self.__dict__.setdefault("_inference_pool", WorkspacePool())
        return pool.lend(n)

    # ------------------------------------------------------ weights in and out
    def get_weights(self) -> List[np.ndarray]:
        """Copies of every layer's parameters then its state, layer by layer in the
        model's order (``layers``; MultiTask: the trunk's, then each head's in ``heads``
        order):
        ``[W1, b1, W2, b2, ...]`` for Dense-only models; Maxout gives W (units, k, n_in),
        b (units, k); BatchNorm gamma, beta, running_mean, running_var; Normalization
        mean, std; Dropout nothing."""
        return [np.array(array, copy=True) for array in self._views()]

    def set_weights(self, weights: Sequence) -> None:
        """Copy a list in :meth:`get_weights`' order in (converted to the model's dtype),
        after checking the count, every shape and finiteness; nothing changes on error.
        RuntimeError while fit runs on the model in another thread."""
        with self.exclusive("set_weights", from_fit=True):
            self._write_weights(self._checked_weights(weights))

    def _checked_weights(self, weights) -> List[np.ndarray]:
        """``weights`` as arrays of the model's dtype in :meth:`get_weights`' shapes."""
        views = self._views()
        if not isinstance(weights, (list, tuple)):
            raise TypeError(f"weights must be a list [W1, b1, ...]; got {type(weights).__name__}")
        if len(weights) != len(views):
            raise ValueError(f"weights must hold {len(views)} arrays [W1, b1, ...] for "
                             f"{len(self.layers)} layers; got {len(weights)}")
        return [as_shaped(w, f"weights[{i}]", np.shape(view), self.dtype)
                for i, (w, view) in enumerate(zip(weights, views))]

    def _write_weights(self, arrays: List[np.ndarray]) -> None:
        """Each layer's parameters, then its state, from checked ``arrays`` in order."""
        position = 0
        with self.writing_params():
            for layer in self.layers:
                n_params, n_state = len(layer.parameters()), len(layer.get_state())
                for view, array in zip(layer.parameters(), arrays[position:position + n_params]):
                    np.copyto(view, array)
                position += n_params
                if n_state:
                    layer.set_state(arrays[position:position + n_state])
                position += n_state

    @suggest_keywords
    def summary(self, print_fn: Callable[[str], None] = print) -> None:
        """Print the table of layers, output shapes and parameter counts, as Keras does:
        ``print_fn`` is called with each line (e.g. ``logging.info``). Returns None, so
        the REPL shows the table once; :meth:`describe` returns it as a
        :class:`ModelSummary` to inspect."""
        for line in str(self.describe()).splitlines():
            print_fn(line)

    @property
    def training_step(self) -> int:
        """Training steps taken by every fit so far (Dropout's mask counter); the fit
        loop advances it and puts it back on a roll-back or resume."""
        return self._step

    @training_step.setter
    def training_step(self, step: int) -> None:
        self._step = check_int(step, "training_step", minimum=0)

    @property
    def n_params(self) -> int:
        return self._params.size

    @property
    def optimizer(self):
        """The optimizer kept from the latest fit (None before the first), with its
        state: ``model.optimizer.state_dict()`` saves it. fit keeps the one it used."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: Optional[Optimizer]) -> None:
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a fastmlp Optimizer or None; got "
                            f"{type(optimizer).__name__}")
        self._optimizer = optimizer

    # ------------------------------------------- the fit loop's protocol (train/protocol.py)
    @property
    def flat_params(self) -> np.ndarray:
        """The flat parameter buffer every layer's parameters view (read-only outside
        :meth:`writing_params`)."""
        return self._params

    @property
    def flat_grads(self) -> np.ndarray:
        """The flat gradient buffer, in :attr:`flat_params`' order."""
        return self._grads

    @property
    def shuffle_rng(self) -> np.random.Generator:
        """fit's shuffle generator (seeded from ``seed``, continued across fits)."""
        return self._shuffle_rng

    def gather_batch(self, X: np.ndarray, Y, W: Optional[np.ndarray], rows: np.ndarray):
        """(xb, yb, wb): the ``rows`` of X, of the targets Y (as :meth:`prepare_data`
        gives them) and of W (None without weights), copied into the training cache."""
        wb = None if W is None else self._take_rows(W, rows, "w")
        return self._take_rows(X, rows, "x"), self._gather_targets(Y, rows), wb

    def _take_rows(self, array: np.ndarray, rows: np.ndarray, key: str) -> np.ndarray:
        if type(array) is CsrRows:
            return array.take(rows)
        out = self._train_cache.get(key, (len(rows), *array.shape[1:]), array.dtype)
        return np.take(array, rows, axis=0, out=out)

    def _views(self) -> List[np.ndarray]:
        return [view for layer in self.layers
                for view in (*layer.parameters(), *layer.get_state())]

    def _regularizer_of(self, layer):
        return layer.regularizer if layer.regularizer is not None else self.regularizer

    def penalty(self, n_samples: int, batch_size: int, *, add_gradient: bool = True,
                batch_weight: Optional[float] = None) -> float:
        """The weight penalty at the current weights; with add_gradient its gradient is
        added to ``_grads`` (call after the backward pass). n_samples is the training
        set's size, batch_size the step's (for scale="batch"), batch_weight its sample
        weights' sum (scale="weight"; None without sample weights)."""
        penalty = 0.0
        for layer in self.layers:
            regularizer = self._regularizer_of(layer)
            if regularizer is None:
                continue
            pairs = layer.penalized()
            if not add_gradient:
                pairs = [(w, np.zeros_like(dw)) for w, dw in pairs]
            penalty += regularizer.apply(self.backend, pairs, n_samples, batch_size,
                                         batch_weight)
        return penalty

    @suggest_keywords
    def save(self, path, *, metadata: Optional[dict] = None) -> None:
        """Write the model to ``path`` in fastmlp's model file format (no pickle; the
        write is atomic). Read it back with :func:`fastmlp.load`. ``metadata``, a dict of
        plain JSON values (None: ``self.metadata``), is stored in the file and comes back
        as the loaded model's ``metadata``."""
        modelfile.save_model(self, path, metadata=metadata)

    # The checkpoint protocol the fit loop (fastmlp.train.checkpoint) uses: a checkpoint is
    # a model file with the fit's position, written and read by the model's own codec.
    def check_saveable(self) -> None:
        """TypeError (ValueError for the metadata), naming it, for a part of this model a
        model file cannot hold."""
        modelfile.check_saveable(self)

    def write_checkpoint(self, path: str, history: History, data: dict) -> None:
        """Write this model with the running fit's ``history`` and ``data`` to ``path``."""
        modelfile.save_checkpoint(self, path, history, data)

    @classmethod
    def read_checkpoint(cls, path, *, backend=None) -> Tuple["FlatParameters", Optional[dict]]:
        """(model, data) of a checkpoint (data None for a plain model file)."""
        return modelfile.read_checkpoint(path, (cls,), backend=backend)

    def architecture(self) -> dict:
        """What builds this model again, as the model file records it."""
        return modelfile.architecture(self)

    @suggest_keywords
    def to_onnx(self, path, *, opset: Optional[int] = None) -> None:
        """Export the inference graph (logits to probabilities, or predictions for mse)
        to an ONNX file: one output (Sequential) or one per head, named by the head
        (MultiTask); needs the ``onnx`` extra (:mod:`fastmlp.io.onnx`)."""
        onnx.export_onnx(self, path, opset=opset)

    def to_torch(self):
        """A torch module with this model's weights computing its logits: a
        ``torch.nn.Sequential``, or for a MultiTask a module with ``trunk`` and ``heads``
        whose forward returns ``{head: logits}``; needs PyTorch (:mod:`fastmlp.io.torch`)."""
        return torch.to_torch(self)
