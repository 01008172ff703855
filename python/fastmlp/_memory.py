"""How much memory there is, and a refusal that says how much a model or batch needs.

Sequential and MultiTask check their parameters at construction, fit its batch workspaces
and optimizer state, the command line its model: before allocating, so that a model that
cannot fit is a ValueError with both sizes, not the kernel killing the process later (the
OS hands out memory lazily: a large allocation succeeds and the first writes to it kill).
"""
from __future__ import annotations

import os
from typing import Optional


def available_memory() -> Optional[int]:
    """Bytes the process can still use: MemAvailable of /proc/meminfo (Linux: free memory
    plus caches the kernel can drop), else the physical memory (os.sysconf), else None
    (unknown: no check)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes in decimal units, 3 significant digits: "3.2 GB", "512 kB", "1,600 TB"."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:,.0f} {unit}"
    return f"{int(n)} B"


# Needs below this are not checked: reading the memory available (/proc/meminfo) costs
# more than a small fit's steps, and a machine without 64 MB to spare fails elsewhere first.
UNCHECKED_BYTES = 64 * 2 ** 20


def check_memory(needed: float, what: str, fix: str) -> None:
    """ValueError "<what> needs <needed>, <available> available; <fix>" when ``needed``
    bytes exceed the memory available (nothing when that is unknown, or for needs below
    UNCHECKED_BYTES)."""
    if needed < UNCHECKED_BYTES:
        return
    available = available_memory()
    if available is not None and needed > available:
        raise ValueError(f"{what} needs {format_bytes(needed)} of memory, "
                         f"{format_bytes(available)} available; {fix}")
