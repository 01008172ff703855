"""Backends: the math of the model behind one protocol (:class:`.base.Backend`)."""
from __future__ import annotations

from typing import Union

from .base import Backend
from .numpy import NumPyBackend

BACKENDS = ("native", "numpy")

__all__ = ["Backend", "BACKENDS", "NumPyBackend", "get_backend"]


def get_backend(backend: Union[str, Backend]) -> Backend:
    """Resolve ``backend``: ``"numpy"``, ``"native"`` (the C++ core, imported only here,
    on first use) or an object satisfying the Backend protocol, returned as is."""
    if isinstance(backend, str):
        if backend == "numpy":
            return NumPyBackend()
        if backend == "native":
            try:
                from .native import NativeBackend
            except ImportError as exc:
                raise ImportError(
                    f"backend='native' is unavailable: the C++ core failed to import ({exc}); "
                    "reinstall fastmlp or use backend='numpy'") from exc
            return NativeBackend()
    elif isinstance(backend, Backend):
        return backend
    raise ValueError(f"backend must be one of {list(BACKENDS)} or a Backend instance; "
                     f"got {backend!r}")
