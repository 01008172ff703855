"""fastmlp: fully-connected neural networks with a C++ core and a NumPy reference backend.

>>> import fastmlp
>>> model = fastmlp.Sequential([fastmlp.Dense(32, "relu"), fastmlp.Dense(3)],
...                            input_dim=4, backend="numpy", seed=0)
"""
from __future__ import annotations

from importlib import metadata

from .backends import Backend, NumPyBackend, get_backend
from .layers import Dense
from .network import ModelSummary, Sequential
from .runtime import backend_info, get_num_threads, set_isa, set_num_threads, threads
from . import callbacks, optimizers, schedules
from .errors import DivergenceError
from .optimizers import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp
from .training import History

try:
    __version__ = metadata.version("fastmlp")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = ["AdaGrad", "Adam", "AdamW", "Backend", "Dense", "callbacks", "DivergenceError", "History",
           "ModelSummary", "Momentum", "Nesterov", "NumPyBackend", "RMSProp", "SGD",
           "Sequential", "backend_info", "get_backend", "get_num_threads", "optimizers",
           "schedules", "set_isa", "set_num_threads", "threads"]
