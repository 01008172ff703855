"""Thread and SIMD controls of the native core: the public face of ``_core``'s settings.

Only :mod:`fastmlp.backends.native` imports ``_core``; this module asks it lazily, so the
NumPy backend works even where the extension failed to build.
"""
from __future__ import annotations

import contextlib
from typing import Iterator


def _native():
    from . import native
    return native


def backend_info() -> dict:
    """Version, compiled ISAs, ISAs this CPU supports, the selected ISA and threads."""
    return _native().backend_info()


def set_isa(name: str) -> str:
    """Switch the native kernels to ``"generic"``, ``"avx2"``, ``"avx512"``,
    ``"avx512_bf16"``, ``"amx"`` or ``"auto"`` (the best level below ``"amx"``, which runs
    only when asked for: docs/bfloat16.md).

    Raises ValueError for an unknown name or one this CPU (or build) lacks. Returns the
    selected ISA. The environment variable FASTMLP_ISA sets the same at import.
    """
    return _native().set_isa(name)


def set_num_threads(n: int) -> None:
    """Threads for native kernels; ``n <= 0`` goes back to OpenMP's default
    (OMP_NUM_THREADS, or what threadpoolctl set in the calling thread)."""
    _native().set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads the next native kernel call will use."""
    return _native().get_num_threads()


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """``with fastmlp.threads(n):`` runs native kernels on n threads inside the block.

    The setting is per Python thread, so concurrent blocks in other threads do not
    interfere.
    """
    native = _native()
    previous = native.push_threads(n)
    try:
        yield
    finally:
        native.pop_threads(previous)
