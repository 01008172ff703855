"""The model file: ``model.save(path)`` and ``fastmlp.load(path)``, never pickle.

Format ``fastmlp-model``, version 1
===================================

A ZIP archive in NumPy's NPZ layout (``numpy.load(path)`` lists and reads its arrays too),
every member stored uncompressed (ZIP_STORED), unencrypted, once:

=========================  ==============================================================
member                     content
=========================  ==============================================================
``header.json``            UTF-8 JSON (below), at most ``MAX_HEADER_BYTES`` (1 MiB)
``params.npy``             the model's flat parameter buffer, ``(n_params,)``, the model's
                           dtype: every layer's parameters in order (Dense, Maxout: W
                           row-major then b; BatchNorm: gamma then beta)
``layer<i>.<name>.npy``    non-trainable state of layer i, one per name of its
                           ``state_names``: BatchNorm ``running_mean``, ``running_var``;
                           Normalization ``mean``, ``std``; ``(input_dim,)`` each
``optimizer.m.npy``        the kept optimizer's m (velocity, first moment), ``(n_params,)``,
                           when it has one (``"m": true`` in the header)
``optimizer.v.npy``        its v (AdaGrad/RMSProp h, Adam's second moment), likewise
``history.npy``            the last fit's History when the model keeps one
                           (``model.history``): ``(epochs, len(keys))`` float64, column j
                           is ``history[keys[j]]``; NaN allowed here only
=========================  ==============================================================

Arrays are ``.npy`` files (format 1.0 or 2.0), little-endian ``<f4``/``<f8``, C order,
never of object dtype. ``header.json``, with every key required and no other allowed
(but the two optional top-level keys below)::

    {"format": "fastmlp-model", "format_version": 1,
     "fastmlp_version": "0.1.0",                  # the writer's (informational)
     "model": {
       "input_dim": 20, "loss": "softmax_cross_entropy", "dtype": "float32",
       "backend": "native", "seed": 0,             # "native" or "numpy"; seed an int >= 0
       "regularizer": null,                        # or {"class": "L2", "config": {...}}
       "layers": [
         {"type": "Normalization", "config": {}, "adapted": true},
         {"type": "Dense", "config": {"units": 64, "init": "he_normal",
            "activation": {"class": "LeakyReLU", "config": {"slope": 0.2}},
            "regularizer": {"class": "L1", "config": {"lam": 0.001, "scale": "samples"}}}},
         {"type": "BatchNorm", "config": {"momentum": 0.99, "eps": 0.001}},
         {"type": "Dropout", "config": {"rate": 0.3}},
         {"type": "Maxout", "config": {"units": 8, "pieces": 3, "init": "he_normal",
                                       "regularizer": null}},
         {"type": "Dense", "config": {"units": 2, "activation": "linear",
                                      "init": "glorot_uniform", "regularizer": null}}]},
     "training": {
       "training_step": 120,                       # Dropout's step counter
       "stop_training": false,
       "shuffle_rng": {"bit_generator": "PCG64", "state": {"state": ..., "inc": ...},
                       "has_uint32": 0, "uinteger": 0},     # fit's shuffle generator
       "optimizer": null or {"optimizer": "adam",
          "config": {"learning_rate": 0.001 or {"class": "ExponentialDecay",
                                                "config": {...}},
                     "beta_1": 0.9, "beta_2": 0.999, "eps": 1e-08, "clipnorm": null},
          "iterations": 40, "epochs": 2, "samples": 1280, "epoch_start_samples": 1280,
          "scale": 1.0, "m": true, "v": true},
       "history": null or {"keys": ["loss", "data_loss", ...], "epochs": 2}}}

The optional top-level key ``"metadata"`` holds what the user keeps with the model
(``model.metadata``, or ``save_model(..., metadata=...)``; the command line keeps the
names of the target, the feature columns and the classes there): a JSON object::

    "metadata": {"fastmlp.cli": {"target": "species", "labels": ["a", "b"], ...}}

of plain JSON values (objects, arrays, strings, finite numbers, true/false, null), nested
at most ``_MAX_DATA_DEPTH`` (32) levels below the object itself, within the header's
size cap. It is written only when there is metadata, so a model without any gives the
same bytes as before the key existed. It needs no new format version: a reader older
than the key refuses a file that has it ("unknown ['metadata']", checked before the
version), and none can misread it. A file without it loads with ``model.metadata`` None.

The optional ``"model"`` key ``"classes"`` holds a classifier's ``model.classes_``, the
class of each output (what ``predict`` returns), as a JSON array of strings or of numbers
(integers stay integers, floats floats)::

    "model": {..., "classes": ["cat", "dog", "mouse"]}

It is written only when the model has classes (a classifier after its first fit), so
other models give the same bytes as before the key existed; like ``"metadata"`` it needs
no new format version (an older reader refuses a file with it as having an unknown key).
A file without it loads with ``model.classes_`` None, and its next fit sets them.

A checkpoint file (:func:`save_checkpoint`, written by fit's checkpoints,
:mod:`fastmlp.train.checkpoint`) has one more optional top-level key, ``"checkpoint"``
(readers older than it refuse such a file as having an unknown key); like any model
file, it keeps the model's metadata::

    "checkpoint": {"data": {...},                 # plain JSON; an array is the tag
                                                  # {"__array__": "checkpoint.0.npy"},
                                                  # a non-finite float {"__float__": "nan"}
                   "arrays": {"checkpoint.0.npy": {"dtype": "<f8", "shape": [3]}, ...}}

with one member ``checkpoint.<i>.npy`` per declared array (named 0, 1, ... in order;
``<f4``, ``<f8`` or ``<i8``; NaN allowed), each referenced exactly once by ``data``;
keys starting with ``__`` are reserved for the tags. :func:`load` reads such a file as
the model it holds; :func:`read_checkpoint` returns the data too.

A layer's ``"config"`` is its constructor's arguments (``Layer.get_config()``); an
activation is a name or a tagged ``LeakyReLU``/``ELU``; a regularizer a tagged ``L1``
(``lam``, ``scale``), ``L2`` (``lam``, ``scale``), ``L1L2`` or ``Regularizer`` (``l1``,
``l2``, ``scale``); a schedule a tagged :data:`fastmlp.schedules.SCHEDULES` class with its
``get_config()``. The optimizer entry is :meth:`Optimizer.state_dict` with the arrays
replaced by whether they are stored.

Not in a model file: callbacks (they are given to fit, not kept on the model: fit's
checkpoints save their ``state_dict()``; the optimizer's ``scale`` that ReduceLROnPlateau
lowers *is* in every model file), training caches, the thread count and
the SIMD path. Only the built-in layers (:data:`fastmlp.layers.LAYERS`), activations,
regularizers, schedules and optimizers, on the "native" or "numpy" backend, can be saved:
anything else (a subclass included) is a TypeError naming it, at save time.

Writing is atomic: a temporary file in the target's directory, flushed and fsync'ed, then
``os.replace`` onto the target and an fsync of the directory. On any error the temporary
file is removed and a previous file at the path is untouched.

Loading validates everything before it builds the model, in time and memory bounded by the
file's size, and raises :class:`ModelFileError` (a ValueError) saying what is wrong: the
ZIP magic; members unique, stored, unencrypted and inside the file, none missing and none
extra; the header's size cap, JSON syntax (no NaN/Infinity, no duplicate keys, finite
numbers), format name and version, every key (required and unknown), every type and
value (by the constructors' own checks), the metadata's type and depth; the parameter
count implied by the architecture against each member's declared size and ``.npy``
header (dtype, shape, order) *before* any array data is read; the CRC; finite
parameters, state and optimizer arrays, ``v >= 0``, BatchNorm ``running_var >= 0``,
Normalization ``std > 0``. A missing file is FileNotFoundError and a directory
IsADirectoryError, as for ``open``; a path that is not a str or ``os.PathLike`` is a
TypeError. Saving refuses, before it writes, a header that load would refuse as too
big (ValueError).
"""
from __future__ import annotations

import collections
import functools
import inspect
import io
import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from numpy.lib import format as npy

from ..nn.activations import ELU, Activation, LeakyReLU
from ..backends import BACKENDS, get_backend
from ..backends.base import LOSSES
from ..nn.layers import LAYERS, Layer, Normalization, layers_of
from ..optim.optimizers import OPTIMIZERS, Optimizer
from ..nn.regularizers import L1, L1L2, L2, Regularizer
from ..optim.schedules import SCHEDULES, Schedule
from ..train.history import History
from .._files import check_path, write_atomically
from ..errors import ModelFileError
from .._version import __version__
from .._validation import DTYPES

__all__ = ["FORMAT", "FORMAT_VERSION", "MAX_HEADER_BYTES", "ModelFileError", "architecture",
           "check_saveable", "read_checkpoint", "save_checkpoint", "save_model"]

FORMAT = "fastmlp-model"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 20          # header.json
MAX_NPY_HEADER = 4096               # an .npy member's magic + header
HEADER = "header.json"
PARAMS = "params.npy"
HISTORY = "history.npy"
OPTIMIZER_ARRAYS = {"m": "optimizer.m.npy", "v": "optimizer.v.npy"}
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: one model, one byte sequence
_ZIP64_ABOVE = (1 << 31) - MAX_NPY_HEADER

_TOP_KEYS = ("format", "format_version", "fastmlp_version", "model", "training")
_MODEL_KEYS = ("input_dim", "loss", "dtype", "backend", "seed", "regularizer", "layers")
_TRAINING_KEYS = ("training_step", "stop_training", "shuffle_rng", "optimizer", "history")
_HISTORY_KEYS = ("keys", "epochs")
CHECKPOINT = "checkpoint"            # the optional top-level key of a checkpoint file
METADATA = "metadata"                # the optional top-level key of model.metadata
CLASSES = "classes"                  # the optional "model" key of model.classes_
_CHECKPOINT_KEYS = ("data", "arrays")
_CHECKPOINT_MEMBER = "checkpoint.{}.npy"
_CHECKPOINT_DTYPES = ("<f4", "<f8", "<i8")
_ARRAY_TAG, _FLOAT_TAG = "__array__", "__float__"
_NON_FINITE = ("nan", "inf", "-inf")
_MAX_DATA_DEPTH = 32


# ------------------------------------------------------------ tagged objects
# name -> (class, its constructor's arguments as plain data)
_Registry = Dict[str, Tuple[type, Callable[[object], dict]]]

_ACTIVATIONS: _Registry = {
    "LeakyReLU": (LeakyReLU, lambda a: {"slope": a.slope}),
    "ELU": (ELU, lambda a: {"alpha": a.alpha})}
_REGULARIZERS: _Registry = {
    "L1": (L1, lambda r: {"lam": r.l1, "scale": r.scale}),
    "L2": (L2, lambda r: {"lam": r.l2, "scale": r.scale}),
    **{cls.__name__: (cls, lambda r: {"l1": r.l1, "l2": r.l2, "scale": r.scale})
       for cls in (L1L2, Regularizer)}}
_SCHEDULES: _Registry = {name: (cls, lambda s: s.get_config())
                         for name, cls in SCHEDULES.items()}
_TAGGED = ((Activation, "activation", _ACTIVATIONS), (Regularizer, "regularizer", _REGULARIZERS),
           (Schedule, "schedule", _SCHEDULES))


def _encode(value, where: str):
    """A config value as JSON data: scalars as they are; an activation, regularizer or
    schedule as ``{"class": name, "config": {...}}`` (only the built-in classes)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    for base, kind, registry in _TAGGED:
        if isinstance(value, base):
            name = type(value).__name__
            if registry.get(name, (None,))[0] is not type(value):
                raise TypeError(f"{where}: cannot save the {kind} {value!r} of class {name}: "
                                f"the model file holds only the built-in {kind}s "
                                f"{sorted(registry)}")
            return {"class": name, "config": registry[name][1](value)}
    raise TypeError(f"{where}: cannot save {value!r} of type {type(value).__name__}")


def _untag(value, where: str, registry: _Registry):
    """The object of a ``{"class": name, "config": {...}}`` entry."""
    _object(value, where, ("class", "config"))
    name = value["class"]
    if not isinstance(name, str) or name not in registry:
        raise ModelFileError(f"{where}.class is {name!r}; expected one of {sorted(registry)}")
    return _construct(registry[name][0], value["config"], f"{where}.config")


# config keys whose JSON value stands for an object
_DECODERS = {
    "activation": lambda v, w: _untag(v, w, _ACTIVATIONS) if isinstance(v, dict) else v,
    "regularizer": lambda v, w: None if v is None else _untag(v, w, _REGULARIZERS),
    "learning_rate": lambda v, w: _untag(v, w, _SCHEDULES) if isinstance(v, dict) else v,
}


@functools.lru_cache(maxsize=None)
def _parameters(cls: type) -> Tuple[str, ...]:
    """The names of ``cls``'s constructor parameters."""
    return tuple(p.name for p in inspect.signature(cls).parameters.values()
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def _construct(cls: type, config, where: str):
    """``cls(**config)``: config must name exactly the constructor's parameters; tagged
    values are decoded first; the constructor's own checks become ModelFileErrors."""
    _object(config, where, _parameters(cls))
    arguments = {k: _DECODERS[k](v, f"{where}.{k}") if k in _DECODERS else v
                 for k, v in config.items()}
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: {exc}") from None


# ------------------------------------------------------------ JSON schema checks
def _kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def _object(value, where: str, keys, optional=()) -> dict:
    """A JSON object with exactly ``keys``, and any of ``optional``."""
    if not isinstance(value, dict):
        raise ModelFileError(f"{where} must be a JSON object; got {_kind(value)}")
    missing = [k for k in keys if k not in value]
    unknown = sorted(set(value) - set(keys) - set(optional))
    if missing or unknown:
        raise ModelFileError(f"{where} must have the keys {list(keys)}; missing {missing}, "
                             f"unknown {unknown}")
    return value


def _int(value, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelFileError(f"{where} must be an integer >= {minimum}; got {value!r:.60}")
    return value


def _bool(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise ModelFileError(f"{where} must be true or false; got {value!r:.60}")
    return value


def _choice(value, where: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ModelFileError(f"{where} is {value!r:.60}; expected one of {sorted(choices)}")
    return value


# -------------------------------------------------------------------- arrays
@dataclass(frozen=True)
class _Expected:
    """An array member's required dtype (little-endian) and shape; ``finite``: NaN and
    infinities are refused."""
    dtype: np.dtype
    shape: Tuple[int, ...]
    finite: bool = True

    @property
    def nbytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


def _little_endian(dtype) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


# -------------------------------------------------------------------- saving
def save_model(model, path, metadata: Optional[dict] = None) -> None:
    """Write ``model`` to ``path`` (str or os.PathLike) in the format of this module's
    docstring, atomically, with ``metadata`` (None: ``model.metadata``; a dict of plain
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
    float32/float64/int64 arrays, stored as members; see the module docstring).
    TypeError for anything else, or a model part the format cannot hold."""
    header, arrays = _describe(model, history, model.metadata)
    extra: Dict[str, np.ndarray] = {}
    encoded = _encode_data(data, extra, "checkpoint.data", 0)
    header[CHECKPOINT] = {"data": encoded, "arrays": {
        name: {"dtype": _little_endian(array.dtype).str, "shape": list(array.shape)}
        for name, array in extra.items()}}
    arrays.update(extra)
    _write(path, header, arrays)


def _encode_data(value, arrays: Dict[str, np.ndarray], where: str, depth: int):
    """``value`` as JSON data: an array becomes ``{"__array__": "checkpoint.<i>.npy"}``
    (added to ``arrays``), a non-finite float ``{"__float__": "nan" | "inf" | "-inf"}``,
    tuples become lists, NumPy scalars Python ones."""
    if depth > _MAX_DATA_DEPTH:
        raise TypeError(f"{where}: nested deeper than {_MAX_DATA_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_, int, np.integer)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {_FLOAT_TAG: repr(value)}
    if isinstance(value, np.ndarray):
        if _little_endian(value.dtype).str not in _CHECKPOINT_DTYPES:
            raise TypeError(f"{where}: cannot save a {value.dtype} array; checkpoint arrays "
                            f"are float32, float64 or int64")
        name = _CHECKPOINT_MEMBER.format(len(arrays))
        arrays[name] = value
        return {_ARRAY_TAG: name}
    if isinstance(value, (list, tuple)):
        return [_encode_data(v, arrays, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or key.startswith("__"):
                raise TypeError(f"{where}: keys must be str not starting with '__'; got "
                                f"{key!r:.60}")
        return {k: _encode_data(v, arrays, f"{where}.{k}", depth + 1) for k, v in value.items()}
    raise TypeError(f"{where}: cannot save {value!r:.60} of type {type(value).__name__}")


def _check_metadata(metadata) -> None:
    """TypeError unless ``metadata`` is a dict whose values, at any depth, are plain JSON
    (dicts with str keys, lists, str, int, float, bool, None; a tuple or a NumPy scalar
    is refused, so that load gives back exactly what was saved); ValueError for a
    non-finite float or nesting deeper than _MAX_DATA_DEPTH levels."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict (a JSON object) of plain JSON values; "
                        f"got {type(metadata).__name__}")
    _check_plain(metadata, "metadata", 0)


def _check_plain(value, where: str, depth: int) -> None:
    """The checks of :func:`_check_metadata` on ``value``, found at ``where``."""
    if depth > _MAX_DATA_DEPTH:
        raise ValueError(f"{where:.200} is nested deeper than {_MAX_DATA_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where:.200} has the key {key!r:.60} of type "
                                f"{type(key).__name__}; keys must be str")
            _check_plain(item, f"{where}[{key!r:.60}]", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where:.200} is {value!r}; numbers must be finite")
    elif value is not None and not isinstance(value, (str, int, float)):
        raise TypeError(f"{where:.200} is {value!r:.60} of type {type(value).__name__}; "
                        f"metadata holds only dicts, lists, str, int, float, bool and None "
                        f"(a list for a tuple, int() or float() for a NumPy number)")


def _describe(model, history,
              metadata: Optional[dict]) -> Tuple[dict, Dict[str, np.ndarray]]:
    """The header's JSON data and the array members of ``model`` with ``history`` and
    ``metadata`` (no "metadata" key when it is None)."""
    spec = architecture(model)
    if model.classes_ is not None:
        spec[CLASSES] = model.classes_.tolist()
    arrays = {PARAMS: model._params}
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
                     "shuffle_rng": model._shuffle_rng.bit_generator.state,
                     "optimizer": optimizer, "history": history}}
    if metadata is not None:
        _check_metadata(metadata)
        header[METADATA] = metadata
    return header, arrays


def architecture(model) -> dict:
    """The header's ``"model"`` entry of ``model``: what builds it again (TypeError for a
    part the format cannot hold)."""
    if model.backend.name not in BACKENDS:
        raise TypeError(f"cannot save a model on the backend {model.backend.name!r}: the "
                        f"model file records one of {list(BACKENDS)}")
    return {"input_dim": model.input_dim, "loss": model.loss, "dtype": model.dtype.name,
            "backend": model.backend.name, "seed": int(model.seed),
            "regularizer": _encode(model.regularizer, "model.regularizer"),
            "layers": [_layer_entry(i, layer) for i, layer in enumerate(model.layers)]}


def _layer_entry(i: int, layer: Layer) -> dict:
    name = type(layer).__name__
    if LAYERS.get(name) is not type(layer):
        raise TypeError(f"cannot save layers[{i}], a {name}: the model file holds only the "
                        f"built-in layers {sorted(LAYERS)}; rebuild the model from your code "
                        f"and set_weights() from get_weights() instead")
    entry = {"type": name, "config": {k: _encode(v, f"layers[{i}].{k}")
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
    config = optimizer.get_config()
    config["learning_rate"] = _encode(optimizer.learning_rate, "optimizer.learning_rate")
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


def _write(path: str, header: dict, arrays: Dict[str, np.ndarray]) -> None:
    """The archive, atomically; ValueError first if header.json would exceed the cap
    that load enforces (only metadata or checkpoint data can make it that big)."""
    text = json.dumps(header, indent=1, allow_nan=False).encode("utf-8")
    if len(text) > MAX_HEADER_BYTES:
        raise ValueError(f"the model file's {HEADER} would take {len(text)} bytes; load "
                         f"accepts at most MAX_HEADER_BYTES = {MAX_HEADER_BYTES}: make the "
                         f"metadata (or the checkpoint data) smaller")
    write_atomically(path, lambda file: _write_archive(file, text, arrays))


def _write_archive(file, text: bytes, arrays: Dict[str, np.ndarray]) -> None:
    """header.json (``text``), then every array as an .npy member; all stored
    uncompressed."""
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        with archive.open(_member_info(HEADER), "w") as member:
            member.write(text)
        for name, array in arrays.items():
            array = np.ascontiguousarray(array, _little_endian(array.dtype))
            with archive.open(_member_info(name), "w",
                              force_zip64=array.nbytes > _ZIP64_ABOVE) as member:
                _write_npy(member, array)


def _write_npy(member, array: np.ndarray) -> None:
    npy.write_array(member, array, allow_pickle=False)


def _member_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    return info


# ------------------------------------------------------------------- loading
# what a damaged archive makes zipfile, zlib, struct or the JSON parser raise
_DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error, struct.error, ValueError,
            OverflowError, RecursionError, NotImplementedError)


def read_checkpoint(path, model_class, *, backend=None) -> Tuple[object, Optional[dict]]:
    """(model, data) from a file :func:`save_checkpoint` or :func:`save_model` wrote: the
    model, a ``model_class`` (Sequential) built from the file (``model.history`` the fit's
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
            return _read(file, model_class, backend)
        except ModelFileError as exc:
            raise ModelFileError(f"cannot load {path!r}: {exc}") from None
        except _DAMAGED as exc:
            raise ModelFileError(f"cannot load {path!r}: not a valid fastmlp model file "
                                 f"({type(exc).__name__}: {exc})") from exc


def _read(file, model_class, backend) -> Tuple[object, Optional[dict]]:
    size = os.fstat(file.fileno()).st_size
    magic = file.read(len(_ZIP_MAGIC))
    if magic != _ZIP_MAGIC:
        raise ModelFileError(f"bad magic {magic!r}: a fastmlp model file is a ZIP archive "
                             f"starting with {_ZIP_MAGIC!r}")
    file.seek(0)
    with zipfile.ZipFile(file) as archive:
        members = _members(archive, size)
        if HEADER not in members:
            raise ModelFileError(f"the archive has no {HEADER} member")
        plan = _Plan.from_header(_read_header(archive, members[HEADER]))
        _check_member_names(members, plan.arrays)
        for name, expected in plan.arrays.items():
            _check_declared_size(members[name], expected)
        arrays = {name: _read_array(archive, members[name], expected)
                  for name, expected in plan.arrays.items()}
    return plan.restore(arrays, model_class, backend), plan.checkpoint_data(arrays)


def _members(archive: zipfile.ZipFile, size: int) -> Dict[str, zipfile.ZipInfo]:
    """The members by name: each once, stored, unencrypted, inside the file."""
    members: Dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename
        if name in members:
            raise ModelFileError(f"member {name!r} appears twice")
        if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
            raise ModelFileError(f"member {name!r} is compressed (method "
                                 f"{info.compress_type}); the format stores members "
                                 f"uncompressed")
        if info.flag_bits & 0x1:
            raise ModelFileError(f"member {name!r} is encrypted")
        if not 0 <= info.header_offset <= info.header_offset + info.file_size <= size:
            raise ModelFileError(f"member {name!r} declares {info.file_size} bytes at offset "
                                 f"{info.header_offset}, beyond the end of the "
                                 f"{size}-byte file")
        members[name] = info
    return members


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict:
    if info.file_size > MAX_HEADER_BYTES:
        raise ModelFileError(f"{HEADER} declares {info.file_size} bytes; the limit is "
                             f"{MAX_HEADER_BYTES}")
    data = archive.read(info)
    try:
        header = json.loads(data.decode("utf-8"), parse_constant=_no_constant,
                            parse_float=_finite_float, object_pairs_hook=_unique_keys)
    except ModelFileError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{HEADER} is not valid JSON: {exc}") from None
    return _object(header, "header", _TOP_KEYS, optional=(CHECKPOINT, METADATA))


def _no_constant(name: str):
    raise ModelFileError(f"{HEADER} holds {name}; JSON numbers must be finite")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ModelFileError(f"{HEADER} holds the number {text[:40]}, beyond float64's range")
    return value


def _unique_keys(pairs: List[Tuple[str, object]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        counts = collections.Counter(key for key, _ in pairs)
        duplicated = sorted(key for key, count in counts.items() if count > 1)
        raise ModelFileError(f"{HEADER} repeats the keys {duplicated[:5]} in one object")
    return result


def _check_member_names(members: Dict[str, zipfile.ZipInfo],
                        expected: Dict[str, _Expected]) -> None:
    wanted = {HEADER, *expected}
    missing, extra = sorted(wanted - set(members)), sorted(set(members) - wanted)
    if missing or extra:
        raise ModelFileError(f"the archive's members do not match its header: missing "
                             f"{missing}, unexpected {extra[:10]}")


def _check_declared_size(info: zipfile.ZipInfo, expected: _Expected) -> None:
    """Before reading: the member's size must be the array's bytes plus an .npy header."""
    low, high = expected.nbytes + 10, expected.nbytes + MAX_NPY_HEADER
    if not low <= info.file_size <= high:
        raise ModelFileError(f"member {info.filename!r} declares {info.file_size} bytes; a "
                             f"{expected.dtype.str} array of shape {expected.shape} takes "
                             f"{expected.nbytes} bytes plus a header of at most "
                             f"{MAX_NPY_HEADER}")


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                expected: _Expected) -> np.ndarray:
    """The member's array, its .npy header checked against ``expected`` before the data
    is read; the data's CRC is checked by zipfile as the read ends."""
    name = info.filename
    with archive.open(info) as member:
        head = member.read(MAX_NPY_HEADER)
        stream = io.BytesIO(head)
        shape, dtype, fortran = _npy_header(stream, name)
        if dtype != expected.dtype or shape != expected.shape or fortran:
            raise ModelFileError(f"member {name!r} holds a {dtype.str} array of shape "
                                 f"{shape}{' (Fortran order)' if fortran else ''}; the "
                                 f"architecture needs {expected.dtype.str} {expected.shape}")
        start = stream.tell()
        if info.file_size != start + expected.nbytes:
            raise ModelFileError(f"member {name!r} declares {info.file_size} bytes; its "
                                 f"{start}-byte header and data need {start + expected.nbytes}")
        data = head[start:] + member.read(expected.nbytes - (len(head) - start))
    if len(data) != expected.nbytes:
        raise ModelFileError(f"member {name!r} is truncated")
    array = np.frombuffer(data, expected.dtype).reshape(expected.shape)
    if expected.finite and not np.isfinite(array).all():
        raise ModelFileError(f"member {name!r} holds NaN or infinite values")
    return array


def _npy_header(stream: io.BytesIO, name: str) -> Tuple[Tuple[int, ...], np.dtype, bool]:
    """(shape, dtype, fortran_order) of an .npy header of version 1.0 or 2.0."""
    try:
        version = npy.read_magic(stream)
        readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
        if version not in readers:
            raise ValueError(f".npy version {version} (expected 1.0 or 2.0)")
        shape, fortran, dtype = readers[version](stream, max_header_size=MAX_NPY_HEADER)
    except (ValueError, TypeError, SyntaxError) as exc:
        raise ModelFileError(f"member {name!r} is not a valid .npy array: {exc}") from None
    return shape, dtype, fortran


@dataclass
class _Plan:
    """A validated header: what to build, and the arrays that must come with it."""
    header: dict
    arrays: Dict[str, _Expected]
    optimizer: Optional[Optimizer]

    @classmethod
    def from_header(cls, header: dict) -> "_Plan":
        _check_format(header)
        if METADATA in header:
            _checked_call(_check_metadata, header[METADATA], where="header")
        model = _object(header["model"], "model", _MODEL_KEYS, optional=(CLASSES,))
        if CLASSES in model:
            _check_classes(model[CLASSES])
        training = _object(header["training"], "training", _TRAINING_KEYS)
        dtype = _little_endian(_choice(model["dtype"], "model.dtype", DTYPES))
        arrays = _model_arrays(model, dtype)
        n_params = arrays[PARAMS].shape[0]
        _int(training["training_step"], "training.training_step")
        _bool(training["stop_training"], "training.stop_training")
        optimizer, optimizer_arrays = _check_optimizer(training["optimizer"], n_params, dtype)
        return cls(header, {**arrays, **optimizer_arrays, **_check_history(training["history"]),
                            **_check_checkpoint(header.get(CHECKPOINT))}, optimizer)

    def checkpoint_data(self, arrays: Dict[str, np.ndarray]) -> Optional[dict]:
        """The checkpoint entry's data with its arrays in place (None without one); each
        declared array must be referenced exactly once."""
        entry = self.header.get(CHECKPOINT)
        if entry is None:
            return None
        declared = {name: arrays[name] for name in entry["arrays"]}
        used: set = set()
        data = _decode_data(entry["data"], declared, used, "checkpoint.data", 0)
        if used != set(declared):
            raise ModelFileError(f"checkpoint.arrays declares {sorted(set(declared) - used)} "
                                 f"but checkpoint.data does not use them")
        return data

    def restore(self, arrays: Dict[str, np.ndarray], model_class, backend):
        """The model (a ``model_class``), with its weights, state, optimizer, counters and
        history."""
        spec, training = self.header["model"], self.header["training"]
        layers = _layers(spec["layers"])
        regularizer = _DECODERS["regularizer"](spec["regularizer"], "model.regularizer")
        model = _checked_call(model_class, layers, input_dim=spec["input_dim"],
                              loss=spec["loss"], dtype=spec["dtype"], seed=spec["seed"],
                              backend=spec["backend"] if backend is None else backend,
                              regularizer=regularizer)
        with model._writing_params():
            np.copyto(model._params, arrays[PARAMS])
            for i, (layer, entry) in enumerate(zip(model.layers, spec["layers"])):
                if layer.state_names:
                    state = [arrays[f"layer{i}.{name}.npy"] for name in layer.state_names]
                    _checked_call(layer.set_state, state, where=f"layers[{i}] state")
                if isinstance(layer, Normalization):
                    layer.adapted = entry["adapted"]
        model._step = training["training_step"]
        model.stop_training = training["stop_training"]
        _set_rng_state(model._shuffle_rng, training["shuffle_rng"])
        model._optimizer = self._restored_optimizer(arrays)
        if training["history"] is not None:
            model.history = _history(training["history"]["keys"], arrays[HISTORY])
        model.metadata = self.header.get(METADATA)
        if CLASSES in spec:
            _checked_call(setattr, model, "classes_", spec[CLASSES], where="model.classes")
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
        _checked_call(self.optimizer.load_state_dict, state, where="training.optimizer")
        return self.optimizer


def _checked_call(function, *args, where: str = "model", **kwargs):
    """``function(*args, **kwargs)``, its TypeError/ValueError/OverflowError as a
    ModelFileError naming ``where``."""
    try:
        return function(*args, **kwargs)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{where}: {exc}") from None


def _check_format(header: dict) -> None:
    if header["format"] != FORMAT:
        raise ModelFileError(f"format is {header['format']!r:.60}; expected {FORMAT!r}")
    version = _int(header["format_version"], "format_version", 1)
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
        raise ModelFileError(f"model.layers must be a non-empty array; got {_kind(entries)}")
    layers = []
    for i, entry in enumerate(entries):
        where = f"model.layers[{i}]"
        if not isinstance(entry, dict):
            raise ModelFileError(f"{where} must be a JSON object; got {_kind(entry)}")
        cls = LAYERS[_choice(entry.get("type"), f"{where}.type", LAYERS)]
        keys = ("type", "config", "adapted") if cls is Normalization else ("type", "config")
        _object(entry, where, keys)
        if cls is Normalization:
            _bool(entry["adapted"], f"{where}.adapted")
        layers.append(_construct(cls, entry["config"], f"{where}.config"))
    return layers


def _model_arrays(model: dict, dtype: np.dtype) -> Dict[str, _Expected]:
    """The parameter and state arrays the architecture needs, from its widths (the
    layers are built on their own, without allocating anything)."""
    width = _int(model["input_dim"], "model.input_dim", 1)
    _choice(model["loss"], "model.loss", LOSSES)
    _choice(model["backend"], "model.backend", BACKENDS)
    _int(model["seed"], "model.seed")
    _DECODERS["regularizer"](model["regularizer"], "model.regularizer")
    n_params, arrays = 0, {}
    for i, layer in enumerate(_layers(model["layers"])):
        output = layer.build(width)
        n_params += layer.count_params()
        arrays.update({f"layer{i}.{name}.npy": _Expected(dtype, shape)
                       for name, shape in zip(layer.state_names, layer.state_shapes())})
        width = output
    return {PARAMS: _Expected(dtype, (n_params,)), **arrays}


def _check_optimizer(entry, n_params: int,
                     dtype: np.dtype) -> Tuple[Optional[Optimizer], Dict[str, _Expected]]:
    """The optimizer built from its config (state applied later) and its arrays."""
    if entry is None:
        return None, {}
    where = "training.optimizer"
    _object(entry, where, Optimizer._STATE_KEYS)
    cls = OPTIMIZERS[_choice(entry["optimizer"], f"{where}.optimizer", OPTIMIZERS)]
    optimizer = _construct(cls, entry["config"], f"{where}.config")
    arrays = {OPTIMIZER_ARRAYS[k]: _Expected(dtype, (n_params,))
              for k in OPTIMIZER_ARRAYS if _bool(entry[k], f"{where}.{k}")}
    return optimizer, arrays


def _check_checkpoint(entry) -> Dict[str, _Expected]:
    """The arrays a checkpoint entry declares: ``checkpoint.0.npy``, ``checkpoint.1.npy``,
    ... in order, each with a dtype of _CHECKPOINT_DTYPES and a shape (non-finite values
    allowed: the data is a callback's or a running total's, not the model's)."""
    if entry is None:
        return {}
    _object(entry, CHECKPOINT, _CHECKPOINT_KEYS)
    declared = entry["arrays"]
    if not isinstance(declared, dict):
        raise ModelFileError(f"checkpoint.arrays must be a JSON object; got {_kind(declared)}")
    expected = {}
    for i, (name, spec) in enumerate(declared.items()):
        where = f"checkpoint.arrays[{name!r:.40}]"
        if name != _CHECKPOINT_MEMBER.format(i):
            raise ModelFileError(f"{where}: the arrays must be named "
                                 f"{_CHECKPOINT_MEMBER.format(0)!r}, "
                                 f"{_CHECKPOINT_MEMBER.format(1)!r}, ... in order")
        _object(spec, where, ("dtype", "shape"))
        dtype = np.dtype(_choice(spec["dtype"], f"{where}.dtype", _CHECKPOINT_DTYPES))
        shape = spec["shape"]
        if not isinstance(shape, list) or len(shape) > 8:
            raise ModelFileError(f"{where}.shape must be an array of at most 8 integers")
        shape = tuple(_int(d, f"{where}.shape[{j}]") for j, d in enumerate(shape))
        expected[name] = _Expected(dtype, shape, finite=False)
    return expected


def _decode_data(value, arrays: Dict[str, np.ndarray], used: set, where: str, depth: int):
    """The inverse of :func:`_encode_data` (tags checked, each array used once)."""
    if depth > _MAX_DATA_DEPTH:
        raise ModelFileError(f"{where} is nested deeper than {_MAX_DATA_DEPTH} levels")
    if isinstance(value, list):
        return [_decode_data(v, arrays, used, f"{where}[{i}]", depth + 1)
                for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if _ARRAY_TAG in value:
        name = _object(value, where, (_ARRAY_TAG,))[_ARRAY_TAG]
        if not isinstance(name, str) or name not in arrays or name in used:
            raise ModelFileError(f"{where} refers to the array {name!r:.60}, which is not "
                                 f"declared in checkpoint.arrays or is used twice")
        used.add(name)
        return np.array(arrays[name])
    if _FLOAT_TAG in value:
        text = _object(value, where, (_FLOAT_TAG,))[_FLOAT_TAG]
        return float(_choice(text, where, _NON_FINITE))
    reserved = [key for key in value if key.startswith("__")]
    if reserved:
        raise ModelFileError(f"{where} has the reserved keys {reserved[:5]}")
    return {k: _decode_data(v, arrays, used, f"{where}.{k}", depth + 1) for k, v in value.items()}


def _check_history(entry) -> Dict[str, _Expected]:
    if entry is None:
        return {}
    _object(entry, "training.history", _HISTORY_KEYS)
    keys, epochs = entry["keys"], _int(entry["epochs"], "training.history.epochs")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) \
            or len(set(keys)) != len(keys) or "loss" not in keys:
        raise ModelFileError("training.history.keys must be an array of distinct strings "
                             "including 'loss'")
    return {HISTORY: _Expected(np.dtype("<f8"), (epochs, len(keys)), finite=False)}


def _history(keys: List[str], values: np.ndarray) -> History:
    history = History(keys)
    for key, column in zip(keys, values.T):
        history.history[key] = column.tolist()
    return history


def _set_rng_state(rng: np.random.Generator, state) -> None:
    """Restore the shuffle generator: the saved state must have the structure of the
    generator's own (bit generator name, keys, integers)."""
    _same_structure(state, rng.bit_generator.state, "training.shuffle_rng")
    _checked_call(setattr, rng.bit_generator, "state", state, where="training.shuffle_rng")


def _same_structure(value, template, where: str) -> None:
    if isinstance(template, dict):
        _object(value, where, list(template))
        for key in template:
            _same_structure(value[key], template[key], f"{where}.{key}")
    elif isinstance(template, str):
        if value != template:
            raise ModelFileError(f"{where} is {value!r:.60}; expected {template!r}")
    else:
        _int(value, where)
