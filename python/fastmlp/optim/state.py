"""An optimizer's state as plain data (``Optimizer.state_dict``) and back
(``Optimizer.load_state_dict``): the name, the config (hyperparameters, schedule), the
counters, ``scale`` and copies of the state arrays m and v. Model files and checkpoints
store exactly these keys (:data:`STATE_KEYS`; docs/model-file.md)."""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .._validation import check_int, check_positive_float

STATE_KEYS = ("optimizer", "config", "iterations", "epochs", "samples",
              "epoch_start_samples", "scale", "m", "v")
COUNTERS = ("iterations", "epochs", "samples", "epoch_start_samples")


def state_dict(optimizer) -> dict:
    """Everything needed to continue bit for bit, as plain data (the arrays copied; None
    when unused or not allocated yet)."""
    return {"optimizer": optimizer.name, "config": optimizer.get_config(),
            **{name: getattr(optimizer, name) for name in COUNTERS},
            "scale": optimizer.scale,
            "m": None if optimizer.m is None else optimizer.m.copy(),
            "v": None if optimizer.v is None else optimizer.v.copy()}


def _check_keys(state, name: str) -> None:
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict from state_dict(); got "
                        f"{type(state).__name__}")
    missing = [k for k in STATE_KEYS if k not in state]
    unexpected = sorted(set(state) - set(STATE_KEYS))
    if missing or unexpected:
        raise ValueError(f"state must have the keys of state_dict(); missing {missing}, "
                         f"unexpected {unexpected}")
    if state["optimizer"] != name:
        raise ValueError(f"state is of a {state['optimizer']!r} optimizer; this one is "
                         f"{name!r}")


def _checked_counters(state: dict) -> Dict[str, int]:
    counters = {k: check_int(state[k], f"state[{k!r}]", minimum=0) for k in COUNTERS}
    if counters["epoch_start_samples"] > counters["samples"]:
        raise ValueError("state['epoch_start_samples'] must be <= state['samples']")
    return counters


def _checked_array(optimizer, value, key: str, used: bool,
                   iterations: int) -> Optional[np.ndarray]:
    if value is None:
        if used and iterations > 0:
            raise ValueError(f"state[{key!r}] is None after {iterations} steps: "
                             f"{type(optimizer).__name__} keeps {key} from its first step")
        return None
    if not used:
        raise ValueError(f"state[{key!r}] must be None: {type(optimizer).__name__} keeps no "
                         f"{key}")
    if not isinstance(value, np.ndarray) or value.ndim != 1 \
            or value.dtype not in (np.float32, np.float64):
        raise TypeError(f"state[{key!r}] must be a 1-D float32 or float64 numpy array "
                        f"or None; got {value!r:.80}")
    return np.array(value, order="C", copy=True)


def _checked_arrays(optimizer, state: dict, iterations: int) -> Dict[str, Optional[np.ndarray]]:
    arrays = {k: _checked_array(optimizer, state[k], k, used, iterations)
              for k, used in (("m", optimizer.uses_m), ("v", optimizer.uses_v))}
    present = [a for a in arrays.values() if a is not None]
    if len(present) == 2 and (present[0].shape != present[1].shape
                              or present[0].dtype != present[1].dtype):
        raise ValueError("state['m'] and state['v'] must have one shape and dtype")
    return arrays


def load_state_dict(optimizer, state: dict) -> None:
    """Restore a :func:`state_dict` into ``optimizer`` (hyperparameters included).
    Everything is checked first (ValueError/TypeError); on error nothing changes. The
    arrays are copied."""
    _check_keys(state, optimizer.name)
    fresh = optimizer.from_config(state["config"])
    counters = _checked_counters(state)
    scale = check_positive_float(state["scale"], "state['scale']")
    arrays = _checked_arrays(optimizer, state, counters["iterations"])
    for name in ("learning_rate", "clipnorm", *optimizer.hyperparameters):
        setattr(optimizer, name, getattr(fresh, name))
    for name, value in counters.items():
        setattr(optimizer, name, value)
    optimizer.scale = scale
    optimizer.m, optimizer.v = arrays["m"], arrays["v"]
    optimizer.last_learning_rate = None
