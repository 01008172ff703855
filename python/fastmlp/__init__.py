"""fastmlp: fully-connected neural networks with a C++ core and a NumPy reference backend.

>>> import fastmlp
>>> model = fastmlp.Sequential([fastmlp.Dense(32, "relu"), fastmlp.Dense(3)],
...                            input_dim=4, backend="numpy", seed=0)
"""
from __future__ import annotations

import sys

from ._version import __version__  # noqa: F401 (fastmlp.__version__)
from .backends import Backend, NumPyBackend, get_backend
from .backends.runtime import backend_info, get_num_threads, set_isa, set_num_threads, threads
from .errors import DataScaleWarning, DistributedError, DivergenceError, ModelFileError
from .nn import activations, layers, regularizers
from .nn.layers import BatchNorm, Dense, Dropout, Layer, Maxout, Normalization
from .nn.regularizers import L1, L1L2, L2
from .optim import optimizers, schedules
from .optim.optimizers import SGD, AdaGrad, Adam, AdamW, Momentum, Nesterov, RMSProp
from .backends import runtime
from .nn import initializers, losses, metrics
from .train import (callbacks, checkpoint, distributed, fused, guards, loop as training,
                    preflight, progress)
from .train.history import History
from .io import onnx as _onnx, plotting, sources, torch as _torch
from .model import modelfile, multitask, sequential as network
from .model.loading import from_torch, load
from .model.multitask import MultiTask
from .model.sequential import ModelSummary, Sequential
from .tools import data, diagnosis, gradcheck, search
from .tools.data import train_dev_test_split
from .tools.diagnosis import DiagnosisReport, diagnose
from .tools.gradcheck import GradientCheckReport, gradient_check
from .tools.search import Choice, IntUniform, LogUniform, Uniform, random_search

# The module paths of the flat package that came before the subpackages (the README,
# users' code and pickles name them: `from fastmlp.layers import Layer`,
# `fastmlp.interop.torch`, `fastmlp.network.Sequential`) name the modules that now hold
# those definitions (docs/architecture.md). Not fastmlp.estimators: it would import
# scikit-learn with fastmlp; use fastmlp.sklearn.
_FORMER_PATHS = {"activations": activations, "layers": layers, "regularizers": regularizers,
                 "initializers": initializers, "losses": losses, "metrics": metrics,
                 "optimizers": optimizers, "schedules": schedules, "callbacks": callbacks,
                 "training": training, "checkpoint": checkpoint, "fused": fused,
                 "guards": guards, "preflight": preflight, "progress": progress,
                 "runtime": runtime, "plotting": plotting, "modelfile": modelfile,
                 "network": network, "multitask": multitask, "data": data,
                 "diagnosis": diagnosis, "gradcheck": gradcheck, "search": search,
                 "interop.onnx": _onnx, "interop.torch": _torch}
for _path, _module in _FORMER_PATHS.items():
    sys.modules[f"{__name__}.{_path}"] = _module
sys.modules[f"{__name__}.interop"] = sys.modules[f"{__name__}.io"]
sys.modules[f"{__name__}.distributed"] = distributed     # fastmlp.distributed.MPI
interop = sys.modules[f"{__name__}.io"]

__all__ = ["AdaGrad", "Adam", "AdamW", "Backend", "BatchNorm", "Choice", "DataScaleWarning",
           "Dense", "DiagnosisReport", "DistributedError", "DivergenceError", "Dropout", "GradientCheckReport",
           "History", "IntUniform", "L1", "L1L2", "L2", "Layer", "LogUniform", "Maxout",
           "ModelFileError", "ModelSummary", "Momentum", "MultiTask", "Nesterov", "Normalization",
           "NumPyBackend", "RMSProp", "SGD", "Sequential", "Uniform", "activations",
           "backend_info", "callbacks", "diagnose", "distributed", "from_torch", "get_backend", "get_num_threads",
           "gradient_check", "load", "optimizers", "random_search", "regularizers", "schedules",
           "search", "set_isa", "set_num_threads", "sources", "threads", "train_dev_test_split"]
