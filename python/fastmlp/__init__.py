"""fastmlp: fully-connected neural networks with a C++ core and a NumPy reference backend.

>>> import fastmlp
>>> model = fastmlp.Sequential([fastmlp.Dense(32, "relu"), fastmlp.Dense(3)],
...                            input_dim=4, backend="numpy", seed=0)
"""
from __future__ import annotations

from importlib import metadata

from .backends import Backend, NumPyBackend, get_backend
from .layers import BatchNorm, Dense, Dropout, Layer, Maxout, Normalization
from .network import ModelSummary, Sequential
from .multitask import MultiTask
from .runtime import backend_info, get_num_threads, set_isa, set_num_threads, threads
from . import activations, callbacks, optimizers, regularizers, schedules
from .gradcheck import GradientCheckReport, gradient_check
from .regularizers import L1, L1L2, L2
from .errors import DataScaleWarning, DivergenceError
from .optimizers import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp
from .training import History
from .interop.torch import from_torch
from .modelfile import ModelFileError, load
from .data import train_dev_test_split
from .diagnosis import DiagnosisReport, diagnose
from . import search
from .search import Choice, IntUniform, LogUniform, Uniform, random_search

try:
    __version__ = metadata.version("fastmlp")
except metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = ["AdaGrad", "Adam", "AdamW", "Backend", "BatchNorm", "Choice", "DataScaleWarning",
           "Dense", "DiagnosisReport", "DivergenceError", "Dropout", "GradientCheckReport",
           "History", "IntUniform", "L1", "L1L2", "L2", "Layer", "LogUniform", "Maxout",
           "ModelFileError", "ModelSummary", "Momentum", "MultiTask", "Nesterov", "Normalization",
           "NumPyBackend", "RMSProp", "SGD", "Sequential", "Uniform", "activations",
           "backend_info", "callbacks", "diagnose", "from_torch", "get_backend", "get_num_threads",
           "gradient_check", "load", "optimizers", "random_search", "regularizers", "schedules",
           "search", "set_isa", "set_num_threads", "threads", "train_dev_test_split"]
