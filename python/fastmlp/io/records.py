"""The model file's records: objects and plain data as JSON, and back, each value checked.

- Tagged objects: a built-in activation, regularizer or learning-rate schedule is
  ``{"class": name, "config": {...}}`` (:func:`encode`, :func:`construct`).
- The checkers a reader applies to every JSON value (:func:`check_object`,
  :func:`check_int`, :func:`check_bool`, :func:`check_choice`), each a
  :class:`ModelFileError` naming where the value sits.
- A checkpoint's data: plain data with arrays and non-finite floats
  (:func:`checkpoint_entry`, :func:`checkpoint_arrays`, :func:`checkpoint_data`).
- Metadata: plain JSON only (:func:`check_metadata`); a generator's state
  (:func:`set_rng_state`).

The JSON forms are in docs/model-file.md.
"""
from __future__ import annotations

import functools
import inspect
import math
from typing import Callable, Dict, Tuple

import numpy as np

from ..errors import ModelFileError
from ..nn.activations import KINDS, Activation
from ..nn.regularizers import L1, L1L2, L2, Regularizer
from ..optim.schedules import SCHEDULES, Schedule
from .archive import Expected, little_endian

__all__ = ["CHECKPOINT", "MAX_DATA_DEPTH", "check_bool", "check_choice", "check_int",
           "check_metadata", "check_object", "checked_call", "checkpoint_arrays",
           "checkpoint_data", "checkpoint_entry", "construct", "decode_regularizer",
           "encode", "json_kind", "set_rng_state"]

CHECKPOINT = "checkpoint"            # the header's key of a checkpoint's entry
MAX_DATA_DEPTH = 32                  # nesting of metadata and checkpoint data
_CHECKPOINT_KEYS = ("data", "arrays")
_CHECKPOINT_MEMBER = "checkpoint.{}.npy"
_CHECKPOINT_DTYPES = ("<f4", "<f8", "<i8")
_ARRAY_TAG, _FLOAT_TAG = "__array__", "__float__"
_NON_FINITE = ("nan", "inf", "-inf")


# ------------------------------------------------------------ tagged objects
# name -> (class, its constructor's arguments as plain data)
_Registry = Dict[str, Tuple[type, Callable[[object], dict]]]

_ACTIVATIONS: _Registry = {
    row.object_type.__name__: (row.object_type, lambda a, key=row.param_name: {key: a.param})
    for row in KINDS if row.object_type is not None}
_REGULARIZERS: _Registry = {
    "L1": (L1, lambda r: {"lam": r.l1, "scale": r.scale}),
    "L2": (L2, lambda r: {"lam": r.l2, "scale": r.scale}),
    **{cls.__name__: (cls, lambda r: {"l1": r.l1, "l2": r.l2, "scale": r.scale})
       for cls in (L1L2, Regularizer)}}
_SCHEDULES: _Registry = {name: (cls, lambda s: s.get_config())
                         for name, cls in SCHEDULES.items()}
_TAGGED = ((Activation, "activation", _ACTIVATIONS), (Regularizer, "regularizer", _REGULARIZERS),
           (Schedule, "schedule", _SCHEDULES))


def encode(value, where: str):
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
    check_object(value, where, ("class", "config"))
    name = value["class"]
    if not isinstance(name, str) or name not in registry:
        raise ModelFileError(f"{where}.class is {name!r}; expected one of {sorted(registry)}")
    return construct(registry[name][0], value["config"], f"{where}.config")


def decode_regularizer(value, where: str):
    """None, or the regularizer of a tagged entry."""
    return None if value is None else _untag(value, where, _REGULARIZERS)


# config keys whose JSON value stands for an object
_DECODERS = {
    "activation": lambda v, w: _untag(v, w, _ACTIVATIONS) if isinstance(v, dict) else v,
    "regularizer": decode_regularizer,
    "learning_rate": lambda v, w: _untag(v, w, _SCHEDULES) if isinstance(v, dict) else v,
}


@functools.lru_cache(maxsize=None)
def _parameters(cls: type) -> Tuple[str, ...]:
    """The names of ``cls``'s constructor parameters."""
    return tuple(p.name for p in inspect.signature(cls).parameters.values()
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))


def construct(cls: type, config, where: str, optional=()):
    """``cls(**config)``: config must name exactly the constructor's parameters, but it
    may leave out those of ``optional`` (they take the constructor's defaults); tagged
    values are decoded first; the constructor's own checks become ModelFileErrors."""
    names = _parameters(cls)
    check_object(config, where, [n for n in names if n not in optional],
                 [n for n in optional if n in names])
    arguments = {k: _DECODERS[k](v, f"{where}.{k}") if k in _DECODERS else v
                 for k, v in config.items()}
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{where}: {exc}") from None


# ------------------------------------------------------------ JSON schema checks
def json_kind(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(value), type(value).__name__)


def check_object(value, where: str, keys, optional=()) -> dict:
    """A JSON object with exactly ``keys``, and any of ``optional``."""
    if not isinstance(value, dict):
        raise ModelFileError(f"{where} must be a JSON object; got {json_kind(value)}")
    missing = [k for k in keys if k not in value]
    unknown = sorted(set(value) - set(keys) - set(optional))
    if missing or unknown:
        raise ModelFileError(f"{where} must have the keys {list(keys)}; missing {missing}, "
                             f"unknown {unknown}")
    return value


def check_int(value, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelFileError(f"{where} must be an integer >= {minimum}; got {value!r:.60}")
    return value


def check_bool(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise ModelFileError(f"{where} must be true or false; got {value!r:.60}")
    return value


def check_choice(value, where: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ModelFileError(f"{where} is {value!r:.60}; expected one of {sorted(choices)}")
    return value


def checked_call(function, *args, where: str = "model", **kwargs):
    """``function(*args, **kwargs)``, its TypeError/ValueError/OverflowError as a
    ModelFileError naming ``where``."""
    try:
        return function(*args, **kwargs)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ModelFileError(f"{where}: {exc}") from None


# ------------------------------------------------------------ checkpoint data
def checkpoint_entry(data) -> Tuple[dict, Dict[str, np.ndarray]]:
    """The header's ``"checkpoint"`` entry of ``data`` (plain data: dicts with str keys,
    lists, str, bool, int, float, None, and float32/float64/int64 arrays) and its array
    members; TypeError for anything else."""
    arrays: Dict[str, np.ndarray] = {}
    encoded = _encode_data(data, arrays, "checkpoint.data", 0)
    return {"data": encoded, "arrays": {
        name: {"dtype": little_endian(array.dtype).str, "shape": list(array.shape)}
        for name, array in arrays.items()}}, arrays


def _encode_data(value, arrays: Dict[str, np.ndarray], where: str, depth: int):
    """``value`` as JSON data: an array becomes ``{"__array__": "checkpoint.<i>.npy"}``
    (added to ``arrays``), a non-finite float ``{"__float__": "nan" | "inf" | "-inf"}``,
    tuples become lists, NumPy scalars Python ones."""
    if depth > MAX_DATA_DEPTH:
        raise TypeError(f"{where}: nested deeper than {MAX_DATA_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_, int, np.integer)):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {_FLOAT_TAG: repr(value)}
    if isinstance(value, np.ndarray):
        if little_endian(value.dtype).str not in _CHECKPOINT_DTYPES:
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


def checkpoint_arrays(entry) -> Dict[str, Expected]:
    """The arrays a checkpoint entry declares: ``checkpoint.0.npy``, ``checkpoint.1.npy``,
    ... in order, each with a dtype of _CHECKPOINT_DTYPES and a shape (non-finite values
    allowed: the data is a callback's or a running total's, not the model's)."""
    if entry is None:
        return {}
    check_object(entry, CHECKPOINT, _CHECKPOINT_KEYS)
    declared = entry["arrays"]
    if not isinstance(declared, dict):
        raise ModelFileError(f"checkpoint.arrays must be a JSON object; got "
                             f"{json_kind(declared)}")
    expected = {}
    for i, (name, spec) in enumerate(declared.items()):
        where = f"checkpoint.arrays[{name!r:.40}]"
        if name != _CHECKPOINT_MEMBER.format(i):
            raise ModelFileError(f"{where}: the arrays must be named "
                                 f"{_CHECKPOINT_MEMBER.format(0)!r}, "
                                 f"{_CHECKPOINT_MEMBER.format(1)!r}, ... in order")
        check_object(spec, where, ("dtype", "shape"))
        dtype = np.dtype(check_choice(spec["dtype"], f"{where}.dtype", _CHECKPOINT_DTYPES))
        shape = spec["shape"]
        if not isinstance(shape, list) or len(shape) > 8:
            raise ModelFileError(f"{where}.shape must be an array of at most 8 integers")
        shape = tuple(check_int(d, f"{where}.shape[{j}]") for j, d in enumerate(shape))
        expected[name] = Expected(dtype, shape, finite=False)
    return expected


def checkpoint_data(entry: dict, arrays: Dict[str, np.ndarray]):
    """The data of a checked checkpoint entry with its arrays (writeable copies) and
    non-finite floats in place; each declared array must be referenced exactly once."""
    declared = {name: arrays[name] for name in entry["arrays"]}
    used: set = set()
    data = _decode_data(entry["data"], declared, used, "checkpoint.data", 0)
    if used != set(declared):
        raise ModelFileError(f"checkpoint.arrays declares {sorted(set(declared) - used)} "
                             f"but checkpoint.data does not use them")
    return data


def _decode_data(value, arrays: Dict[str, np.ndarray], used: set, where: str, depth: int):
    """The inverse of :func:`_encode_data` (tags checked, each array used once)."""
    if depth > MAX_DATA_DEPTH:
        raise ModelFileError(f"{where} is nested deeper than {MAX_DATA_DEPTH} levels")
    if isinstance(value, list):
        return [_decode_data(v, arrays, used, f"{where}[{i}]", depth + 1)
                for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if _ARRAY_TAG in value:
        name = check_object(value, where, (_ARRAY_TAG,))[_ARRAY_TAG]
        if not isinstance(name, str) or name not in arrays or name in used:
            raise ModelFileError(f"{where} refers to the array {name!r:.60}, which is not "
                                 f"declared in checkpoint.arrays or is used twice")
        used.add(name)
        return np.array(arrays[name])
    if _FLOAT_TAG in value:
        text = check_object(value, where, (_FLOAT_TAG,))[_FLOAT_TAG]
        return float(check_choice(text, where, _NON_FINITE))
    reserved = [key for key in value if key.startswith("__")]
    if reserved:
        raise ModelFileError(f"{where} has the reserved keys {reserved[:5]}")
    return {k: _decode_data(v, arrays, used, f"{where}.{k}", depth + 1) for k, v in value.items()}


# ------------------------------------------------------------ metadata, rng state
def check_metadata(metadata) -> None:
    """TypeError unless ``metadata`` is a dict whose values, at any depth, are plain JSON
    (dicts with str keys, lists, str, int, float, bool, None; a tuple or a NumPy scalar
    is refused, so that load gives back exactly what was saved); ValueError for a
    non-finite float or nesting deeper than MAX_DATA_DEPTH levels."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict (a JSON object) of plain JSON values; "
                        f"got {type(metadata).__name__}")
    _check_plain(metadata, "metadata", 0)


def _check_plain(value, where: str, depth: int) -> None:
    """The checks of :func:`check_metadata` on ``value``, found at ``where``."""
    if depth > MAX_DATA_DEPTH:
        raise ValueError(f"{where:.200} is nested deeper than {MAX_DATA_DEPTH} levels")
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


def set_rng_state(rng: np.random.Generator, state, where: str) -> None:
    """Restore ``rng`` from ``state``, which must have the structure of the generator's
    own (bit generator name, keys, integers)."""
    _same_structure(state, rng.bit_generator.state, where)
    checked_call(setattr, rng.bit_generator, "state", state, where=where)


def _same_structure(value, template, where: str) -> None:
    if isinstance(template, dict):
        check_object(value, where, list(template))
        for key in template:
            _same_structure(value[key], template[key], f"{where}.{key}")
    elif isinstance(template, str):
        if value != template:
            raise ModelFileError(f"{where} is {value!r:.60}; expected {template!r}")
    else:
        check_int(value, where)
