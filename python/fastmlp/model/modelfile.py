"""The model file: ``model.save(path)`` and ``fastmlp.load(path)``, never pickle.

The format, ``fastmlp-model`` version 1, is a contract described in docs/model-file.md: a
ZIP archive in NumPy's NPZ layout (the container: :mod:`fastmlp.io.archive`) of
``header.json`` and ``.npy`` members; the header's values are encoded as in
:mod:`fastmlp.io.records`. This module is the model codec: what a model's header and
arrays are (:func:`architecture`, :func:`save_model`, :func:`save_checkpoint`) and how a
checked header builds the model again (:func:`read_checkpoint`).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from .._files import check_path
from .._validation import DTYPES
from .._version import __version__
from ..backends import BACKENDS, get_backend
from ..backends.bfloat16 import PRECISIONS
from ..errors import ModelFileError
from ..io import archive
from ..io.archive import MAX_HEADER_BYTES, Expected, little_endian
from ..io.records import (CHECKPOINT, check_bool, check_choice, check_int, check_metadata,
                          check_object, checked_call, checkpoint_arrays, checkpoint_data,
                          checkpoint_entry, construct, decode_regularizer, encode, json_kind,
                          set_rng_state)
from ..nn.losses import LOSSES
from ..nn.layers import LAYERS, Layer, Normalization, layers_of
from ..optim.optimizers import OPTIMIZERS, Optimizer
from ..optim.state import STATE_KEYS
from ..train.history import History

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_HEADER_BYTES", "ModelFileError", "architecture",
           "check_saveable", "read_checkpoint", "save_checkpoint", "save_model"]

FORMAT = "fastmlp-model"
FORMAT_VERSION = 1
PARAMS = "params.npy"
HISTORY = "history.npy"
OPTIMIZER_ARRAYS = {"m": "optimizer.m.npy", "v": "optimizer.v.npy"}
METADATA = "metadata"                # the optional top-level key of model.metadata
CLASSES = "classes"                  # the optional "model" key of model.classes_
KIND = "kind"                        # the "model" key of a model other than Sequential
PRECISION = "precision"              # the optional "model" key of a bfloat16 model
SEQUENTIAL, MULTITASK = "sequential", "multitask"   # model classes' file_kind
_TOP_KEYS = ("format", "format_version", "fastmlp_version", "model", "training")
_MODEL_KEYS = ("input_dim", "loss", "dtype", "backend", "seed", "regularizer", "layers")
_MULTITASK_KEYS = (KIND, "input_dim", "dtype", "backend", "seed", "regularizer", "layers",
                   "heads")
_HEAD_KEYS = ("name", "loss", "weight", "layers")
_TRAINING_KEYS = ("training_step", "stop_training", "shuffle_rng", "optimizer", "history")
_HISTORY_KEYS = ("keys", "epochs")
# Optimizer hyperparameters added after files were first written: a file without one
# loads with the constructor's default, the arithmetic it was trained with; one at its
# default is left out, so such a file is the one fastmlp wrote before (and reads as before).
_LATER_OPTIMIZER_KEYS = ("eps_placement",)


# -------------------------------------------------------------------- saving
def save_model(model, path, metadata: Optional[dict] = None) -> None:
    """Write ``model`` to ``path`` (str or os.PathLike) in the format of docs/model-file.md,
    atomically, with ``metadata`` (None: ``model.metadata``; a dict of plain
    JSON values) as the header's ``"metadata"``, or without it when both are None.
    TypeError for a model part the format cannot hold (a custom layer, optimizer,
    schedule, regularizer, activation or backend), naming it, or for metadata that is not
    plain JSON; ValueError for a non-finite number in it, nesting deeper than 32 levels or
    a header above MAX_HEADER_BYTES."""
    path = check_path(path)
    layers_of(model)
    metadata = model.metadata if metadata is None else metadata
    header, arrays = _describe(model, getattr(model, "history", None), metadata)
    _write(path, header, arrays)


def check_saveable(model) -> None:
    """TypeError (or ValueError, for its metadata), naming it, for a part of ``model``
    the format cannot hold."""
    _describe(model, None, model.metadata)


def save_checkpoint(model, path: str, history: History, data: dict) -> None:
    """Write a checkpoint file, atomically: the model file of ``model`` with ``history``
    (the running fit's) as its History, plus the top-level ``"checkpoint"`` entry holding
    ``data`` (plain data: dicts with str keys, lists, str, bool, int, float, None, and
    float32/float64/int64 arrays, stored as members; see docs/model-file.md).
    TypeError for anything else, or a model part the format cannot hold."""
    header, arrays = _describe(model, history, model.metadata)
    header[CHECKPOINT], extra = checkpoint_entry(data)
    arrays.update(extra)
    _write(path, header, arrays)


def _write(path: str, header: dict, arrays: Dict[str, np.ndarray]) -> None:
    """The archive, atomically; ValueError first if header.json would exceed the cap
    that load enforces (only metadata or checkpoint data can make it that big)."""
    text = archive.header_bytes(header)
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"the model file's {archive.HEADER} would take {len(text)} bytes; "
                         f"load accepts at most MAX_HEADER_BYTES = {MAX_HEADER_BYTES}: make "
                         f"the metadata (or the checkpoint data) smaller")
    archive.write(path, text, arrays)


def _describe(model, history,
              metadata: Optional[dict]) -> Tuple[dict, Dict[str, np.ndarray]]:
    """The header's JSON data and the array members of ``model`` with ``history`` and
    ``metadata`` (no "metadata" key when it is None)."""
    spec = architecture(model)
    if model.file_kind == MULTITASK:
        for head in spec["heads"]:
            classes = model.classes_[head["name"]]
            if classes is not None:
                head[CLASSES] = classes.tolist()
    elif model.classes_ is not None:
        spec[CLASSES] = model.classes_.tolist()
    arrays = {PARAMS: model.flat_params}
    for i, layer in enumerate(model.layers):
        arrays.update({f"layer{i}.{name}.npy": state
                       for name, state in zip(layer.state_names, layer.get_state())})
    optimizer, optimizer_arrays = _optimizer_entry(model.optimizer)
    history, history_array = _history_entry(history)
    arrays.update(optimizer_arrays)
    if history_array is not None:
        arrays[HISTORY] = history_array
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fastmlp_version": __version__,
        "model": spec,
        "training": {"training_step": model.training_step,
                     "stop_training": bool(model.stop_training),
                     "shuffle_rng": model.shuffle_rng.bit_generator.state,
                     "optimizer": optimizer, "history": history}}
    if metadata is not None:
        check_metadata(metadata)
        header[METADATA] = metadata
    return header, arrays


def architecture(model) -> dict:
    """The header's ``"model"`` entry of ``model``: what builds it again (TypeError for a
    part the format cannot hold)."""
    if model.backend.name not in BACKENDS:
        raise TypeError(f"cannot save a model on the backend {model.backend.name!r}: the "
                        f"model file records one of {list(BACKENDS)}")
    layers = [_layer_entry(i, layer) for i, layer in enumerate(model.layers)]
    regularizer = encode(model.regularizer, "model.regularizer")
    if model.file_kind == MULTITASK:
        entry = {KIND: MULTITASK, "input_dim": model.input_dim, "dtype": model.dtype.name,
                 "backend": model.backend.name, "seed": int(model.seed),
                 "regularizer": regularizer, "layers": layers,
                 "heads": [{"name": name, "loss": model.losses[name],
                            "weight": model.loss_weights[name], "layers": len(head)}
                           for name, head in model.heads.items()]}
    else:
        entry = {"input_dim": model.input_dim, "loss": model.loss, "dtype": model.dtype.name,
                 "backend": model.backend.name, "seed": int(model.seed),
                 "regularizer": regularizer, "layers": layers}
    if model.precision:
        entry[PRECISION] = model.precision
    return entry


def _layer_entry(i: int, layer: Layer) -> dict:
    name = type(layer).__name__
    if LAYERS.get(name) is not type(layer):
        raise TypeError(f"cannot save layers[{i}], a {name}: the model file holds only the "
                        f"built-in layers {sorted(LAYERS)}; rebuild the model from your code "
                        f"and set_weights() from get_weights() instead")
    entry = {"type": name, "config": {k: encode(v, f"layers[{i}].{k}")
                                      for k, v in layer.get_config().items()}}
    if isinstance(layer, Normalization):
        entry["adapted"] = layer.adapted
    return entry


def _optimizer_entry(optimizer: Optional[Optimizer]) -> Tuple[Optional[dict], dict]:
    """The optimizer's state_dict as JSON (arrays replaced by flags) and its arrays."""
    if optimizer is None:
        return None, {}
    if OPTIMIZERS.get(optimizer.name) is not type(optimizer):
        raise TypeError(f"cannot save the optimizer {optimizer!r} of class "
                        f"{type(optimizer).__name__}: the model file holds only the built-in "
                        f"optimizers {sorted(c.__name__ for c in OPTIMIZERS.values())}")
    state = optimizer.state_dict()
    defaults = inspect.signature(type(optimizer)).parameters
    config = {k: v for k, v in optimizer.get_config().items()
              if not (k in _LATER_OPTIMIZER_KEYS and v == defaults[k].default)}
    config["learning_rate"] = encode(optimizer.learning_rate, "optimizer.learning_rate")
    arrays = {OPTIMIZER_ARRAYS[k]: state[k] for k in OPTIMIZER_ARRAYS if state[k] is not None}
    entry = {**state, "config": config, **{k: state[k] is not None for k in OPTIMIZER_ARRAYS}}
    return entry, arrays


def _history_entry(history) -> Tuple[Optional[dict], Optional[np.ndarray]]:
    if history is None:
        return None, None
    if not isinstance(history, History):
        raise TypeError(f"model.history must be a fastmlp History (or absent); got "
                        f"{type(history).__name__}")
    keys = list(history.history)
    array = np.array([history.history[k] for k in keys], np.float64).reshape(len(keys), -1)
    return {"keys": keys, "epochs": array.shape[1]}, array.T


# ------------------------------------------------------------------- loading
def read_checkpoint(path, model_classes, *, backend=None) -> Tuple[object, Optional[dict]]:
    """(model, data) from a file :func:`save_checkpoint` or :func:`save_model` wrote: the
    model, built from the file as the class of ``model_classes`` whose ``file_kind`` is
    the file's (ModelFileError when none is) (``model.history`` the fit's
    History so far), and the checkpoint's data, with its arrays (writeable copies) and
    non-finite floats back in place; data is None for a plain model file. ``backend`` (a
    name or Backend) replaces the saved backend; None keeps it. ModelFileError (a
    ValueError) says what is wrong with a malformed file; FileNotFoundError /
    IsADirectoryError as ``open``."""
    path = check_path(path)
    if backend is not None:
        backend = get_backend(backend)
    with open(path, "rb") as file:
        try:
            plan, arrays = archive.read(file, _Plan.from_header)
            model_class = _class_of(plan.kind, model_classes)
            return plan.restore(arrays, model_class, backend), plan.checkpoint_data(arrays)
        except ModelFileError as exc:
            raise ModelFileError(f"cannot load {path!r}: {exc}") from None
        except archive.DAMAGED as exc:
            raise ModelFileError(f"cannot load {path!r}: not a valid fastmlp model file "
                                 f"({type(exc).__name__}: {exc})") from exc


def _class_of(kind: str, model_classes) -> type:
    for model_class in model_classes:
        if model_class.file_kind == kind:
            return model_class
    names = " or ".join(c.__name__ for c in model_classes)
    raise ModelFileError(f"the file holds a {kind} model, not a {names}: read it with "
                         f"fastmlp.load")


@dataclass
class _Plan:
    """A validated header: what to build, and the arrays that must come with it."""
    header: dict
    arrays: Dict[str, Expected]
    optimizer: Optional[Optimizer]

    @classmethod
    def from_header(cls, header: dict) -> "_Plan":
        check_object(header, "header", _TOP_KEYS, optional=(CHECKPOINT, METADATA))
        _check_format(header)
        if METADATA in header:
            checked_call(check_metadata, header[METADATA], where="header")
        model = _check_model(header["model"])
        training = check_object(header["training"], "training", _TRAINING_KEYS)
        dtype = little_endian(check_choice(model["dtype"], "model.dtype", DTYPES))
        arrays = _model_arrays(model, dtype)
        n_params = arrays[PARAMS].shape[0]
        check_int(training["training_step"], "training.training_step")
        check_bool(training["stop_training"], "training.stop_training")
        optimizer, optimizer_arrays = _check_optimizer(training["optimizer"], n_params, dtype)
        return cls(header, {**arrays, **optimizer_arrays, **_check_history(training["history"]),
                            **checkpoint_arrays(header.get(CHECKPOINT))}, optimizer)

    @property
    def kind(self) -> str:
        return self.header["model"].get(KIND, SEQUENTIAL)

    def checkpoint_data(self, arrays: Dict[str, np.ndarray]) -> Optional[dict]:
        """The checkpoint entry's data with its arrays in place; None without one."""
        entry = self.header.get(CHECKPOINT)
        if entry is None:
            return None
        return checkpoint_data(entry, arrays)

    def restore(self, arrays: Dict[str, np.ndarray], model_class, backend):
        """The model (a ``model_class``), with its weights, state, optimizer, counters and
        history."""
        spec, training = self.header["model"], self.header["training"]
        model = _build(spec, model_class, spec["backend"] if backend is None else backend)
        with model.writing_params():
            np.copyto(model.flat_params, arrays[PARAMS])
            for i, (layer, entry) in enumerate(zip(model.layers, spec["layers"])):
                if layer.state_names:
                    state = [arrays[f"layer{i}.{name}.npy"] for name in layer.state_names]
                    checked_call(layer.set_state, state, where=f"layers[{i}] state")
                if isinstance(layer, Normalization):
                    layer.adapted = entry["adapted"]
        model.training_step = training["training_step"]
        model.stop_training = training["stop_training"]
        set_rng_state(model.shuffle_rng, training["shuffle_rng"], "training.shuffle_rng")
        model.optimizer = self._restored_optimizer(arrays)
        if training["history"] is not None:
            model.history = _history(training["history"]["keys"], arrays[HISTORY])
        model.metadata = self.header.get(METADATA)
        classes = {head["name"]: head.get(CLASSES) for head in spec["heads"]} \
            if self.kind == MULTITASK else spec.get(CLASSES)
        if classes is not None:
            checked_call(setattr, model, "classes_", classes, where="model.classes")
        return model

    def _restored_optimizer(self, arrays: Dict[str, np.ndarray]) -> Optional[Optimizer]:
        if self.optimizer is None:
            return None
        entry = self.header["training"]["optimizer"]
        state = {**entry, "config": self.optimizer.get_config(),
                 **{k: arrays.get(OPTIMIZER_ARRAYS[k]) for k in OPTIMIZER_ARRAYS}}
        if state["v"] is not None and (state["v"] < 0).any():
            raise ModelFileError(f"member {OPTIMIZER_ARRAYS['v']!r} holds negative values; "
                                 f"v averages squared gradients")
        checked_call(self.optimizer.load_state_dict, state, where="training.optimizer")
        return self.optimizer


def _check_model(model) -> dict:
    """The header's "model": a Sequential's keys (and "classes"), or a MultiTask's
    ("kind": "multitask", and "heads" instead of "loss", each head's classes in it)."""
    if isinstance(model, dict) and KIND in model:
        check_object(model, "model", _MULTITASK_KEYS, optional=(PRECISION,))
        check_choice(model[KIND], "model.kind", (MULTITASK,))
        _check_heads(model["heads"], model["layers"])
    else:
        check_object(model, "model", _MODEL_KEYS, optional=(CLASSES, PRECISION))
        check_choice(model["loss"], "model.loss", LOSSES)
    if PRECISION in model:
        check_choice(model[PRECISION], "model.precision", PRECISIONS[1:])
    if CLASSES in model:          # a Sequential's (a MultiTask's heads keep their own)
        _check_classes(model[CLASSES])
    return model


def _check_heads(heads, layers) -> None:
    """A non-empty array of {name, loss, weight, layers, classes?}, with distinct names,
    whose layer counts (each >= 1) add up to at most the model's layers."""
    if not isinstance(heads, list) or not heads:
        raise ModelFileError(f"model.heads must be a non-empty array; got {json_kind(heads)}")
    for i, head in enumerate(heads):
        where = f"model.heads[{i}]"
        check_object(head, where, _HEAD_KEYS, optional=(CLASSES,))
        if not isinstance(head["name"], str):
            raise ModelFileError(f"{where}.name must be a string; got {json_kind(head['name'])}")
        check_choice(head["loss"], f"{where}.loss", LOSSES)
        check_int(head["layers"], f"{where}.layers", 1)
        weight = head["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ModelFileError(f"{where}.weight must be a number >= 0; got {weight!r:.60}")
        if CLASSES in head:
            _check_classes(head[CLASSES])
    if len({head["name"] for head in heads}) != len(heads):
        raise ModelFileError("model.heads must have distinct names")
    if isinstance(layers, list) and sum(head["layers"] for head in heads) > len(layers):
        raise ModelFileError(f"model.heads hold more layers than model.layers' {len(layers)}")


def _build(spec: dict, model_class, backend):
    """The model of ``spec`` (fresh layers), a ``model_class``."""
    layers = _layers(spec["layers"])
    common = dict(input_dim=spec["input_dim"], dtype=spec["dtype"], seed=spec["seed"],
                  backend=backend, precision=spec.get(PRECISION),
                  regularizer=decode_regularizer(spec["regularizer"], "model.regularizer"))
    if spec.get(KIND) != MULTITASK:
        return checked_call(model_class, layers, loss=spec["loss"], **common)
    chains = [[layer for _, layer in chain] for chain in _split(spec, layers)]
    names = [head["name"] for head in spec["heads"]]
    return checked_call(model_class, chains[0], dict(zip(names, chains[1:])),
                        {head["name"]: head["loss"] for head in spec["heads"]},
                        {head["name"]: head["weight"] for head in spec["heads"]}, **common)


def _check_format(header: dict) -> None:
    if header["format"] != FORMAT:
        raise ModelFileError(f"format is {header['format']!r:.60}; expected {FORMAT!r}")
    version = check_int(header["format_version"], "format_version", 1)
    if version != FORMAT_VERSION:
        raise ModelFileError(f"format_version {version} is not supported: this fastmlp "
                             f"reads version {FORMAT_VERSION}"
                             + (" (the file is from a newer fastmlp)"
                                if version > FORMAT_VERSION else ""))
    if not isinstance(header["fastmlp_version"], str) or len(header["fastmlp_version"]) > 100:
        raise ModelFileError("fastmlp_version must be a string of at most 100 characters")


def _check_classes(classes) -> None:
    """The JSON form of ``classes_``: a non-empty array of strings or of numbers (the
    model checks their count and that each is there once)."""
    if not isinstance(classes, list) or not classes or not (
            all(isinstance(c, str) for c in classes)
            or all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes)):
        raise ModelFileError(f"model.classes must be a non-empty array of strings or of "
                             f"numbers; got {classes!r:.100}")


def _layers(entries) -> List[Layer]:
    """Fresh layers from the header's list (each entry and config checked)."""
    if not isinstance(entries, list) or not entries:
        raise ModelFileError(f"model.layers must be a non-empty array; got {json_kind(entries)}")
    layers = []
    for i, entry in enumerate(entries):
        where = f"model.layers[{i}]"
        if not isinstance(entry, dict):
            raise ModelFileError(f"{where} must be a JSON object; got {json_kind(entry)}")
        cls = LAYERS[check_choice(entry.get("type"), f"{where}.type", LAYERS)]
        keys = ("type", "config", "adapted") if cls is Normalization else ("type", "config")
        check_object(entry, where, keys)
        if cls is Normalization:
            check_bool(entry["adapted"], f"{where}.adapted")
        layers.append(construct(cls, entry["config"], f"{where}.config"))
    return layers


def _model_arrays(model: dict, dtype: np.dtype) -> Dict[str, Expected]:
    """The parameter and state arrays the architecture needs, from its widths (the
    layers are built on their own, without allocating anything)."""
    check_int(model["input_dim"], "model.input_dim", 1)
    check_choice(model["backend"], "model.backend", BACKENDS)
    check_int(model["seed"], "model.seed")
    decode_regularizer(model["regularizer"], "model.regularizer")
    n_params, arrays, trunk_width = 0, {}, model["input_dim"]
    for c, chain in enumerate(_split(model, _layers(model["layers"]))):
        width = model["input_dim"] if c == 0 else trunk_width
        for i, layer in chain:
            output = layer.build(width)
            n_params += layer.count_params()
            arrays.update({f"layer{i}.{name}.npy": Expected(dtype, shape)
                           for name, shape in zip(layer.state_names, layer.state_shapes())})
            width = output
        trunk_width = width if c == 0 else trunk_width
    return {PARAMS: Expected(dtype, (n_params,)), **arrays}


def _split(model: dict, layers: List[Layer]) -> List[List[Tuple[int, Layer]]]:
    """The (index, layer) pairs of each chain: every layer (Sequential), or the trunk
    (the first layers), then each head's (MultiTask: the trunk feeds every head)."""
    pairs = list(enumerate(layers))
    if model.get(KIND) != MULTITASK:
        return [pairs]
    start = len(layers) - sum(head["layers"] for head in model["heads"])
    chains = [pairs[:start]]
    for head in model["heads"]:
        chains.append(pairs[start:start + head["layers"]])
        start += head["layers"]
    return chains


def _check_optimizer(entry, n_params: int,
                     dtype: np.dtype) -> Tuple[Optional[Optimizer], Dict[str, Expected]]:
    """The optimizer built from its config (state applied later) and its arrays."""
    if entry is None:
        return None, {}
    where = "training.optimizer"
    check_object(entry, where, STATE_KEYS)
    cls = OPTIMIZERS[check_choice(entry["optimizer"], f"{where}.optimizer", OPTIMIZERS)]
    optimizer = construct(cls, entry["config"], f"{where}.config", _LATER_OPTIMIZER_KEYS)
    arrays = {OPTIMIZER_ARRAYS[k]: Expected(dtype, (n_params,))
              for k in OPTIMIZER_ARRAYS if check_bool(entry[k], f"{where}.{k}")}
    return optimizer, arrays


def _check_history(entry) -> Dict[str, Expected]:
    if entry is None:
        return {}
    check_object(entry, "training.history", _HISTORY_KEYS)
    keys, epochs = entry["keys"], check_int(entry["epochs"], "training.history.epochs")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) \
            or len(set(keys)) != len(keys) or "loss" not in keys:
        raise ModelFileError("training.history.keys must be an array of distinct strings "
                             "including 'loss'")
    return {HISTORY: Expected(np.dtype("<f8"), (epochs, len(keys)), finite=False)}


def _history(keys: List[str], values: np.ndarray) -> History:
    history = History(keys)
    for key, column in zip(keys, values.T):
        history.history[key] = column.tolist()
    return history


