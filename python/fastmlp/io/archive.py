"""The model file's container: a ZIP archive of ``header.json`` and ``.npy`` members.

The layout and what a reader checks are in docs/model-file.md ("Members", "Loading"). This
module knows archives, JSON and arrays, not models: the caller says which arrays the header
asks for (:class:`Expected`), and this module checks the members against that before it reads
any array data. Every problem with a file is a :class:`ModelFileError`.
"""
from __future__ import annotations

import collections
import io
import json
import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple, TypeVar

import numpy as np
from numpy.lib import format as npy

from .._files import write_atomically
from ..errors import ModelFileError

__all__ = ["DAMAGED", "Expected", "HEADER", "MAX_HEADER_BYTES", "MAX_NPY_HEADER",
           "header_bytes", "little_endian", "read", "write"]

HEADER = "header.json"
MAX_HEADER_BYTES = 1 << 20          # header.json
MAX_NPY_HEADER = 4096               # an .npy member's magic + header
_ZIP_MAGIC = b"PK\x03\x04"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: one model, one byte sequence
_ZIP64_ABOVE = (1 << 31) - MAX_NPY_HEADER

# what a damaged archive makes zipfile, zlib, struct or the JSON parser raise
DAMAGED = (zipfile.BadZipFile, EOFError, zlib.error, struct.error, ValueError,
           OverflowError, RecursionError, NotImplementedError)


@dataclass(frozen=True)
class Expected:
    """An array member's required dtype (little-endian) and shape; ``finite``: NaN and
    infinities are refused."""
    dtype: np.dtype
    shape: Tuple[int, ...]
    finite: bool = True

    @property
    def nbytes(self) -> int:
        return self.dtype.itemsize * math.prod(self.shape)


def little_endian(dtype) -> np.dtype:
    return np.dtype(dtype).newbyteorder("<")


# -------------------------------------------------------------------- writing
def header_bytes(header: dict) -> bytes:
    """``header.json``'s bytes: indented JSON, UTF-8, finite numbers only."""
    return json.dumps(header, indent=1, allow_nan=False).encode("utf-8")


def write(path: str, text: bytes, arrays: Dict[str, np.ndarray]) -> None:
    """The archive at ``path``, atomically: ``text`` as header.json, then every array as an
    .npy member; all stored uncompressed, with fixed member times."""
    write_atomically(path, lambda file: _write_archive(file, text, arrays))


def _write_archive(file, text: bytes, arrays: Dict[str, np.ndarray]) -> None:
    with zipfile.ZipFile(file, "w", zipfile.ZIP_STORED) as archive:
        with archive.open(_member_info(HEADER), "w") as member:
            member.write(text)
        for name, array in arrays.items():
            array = np.ascontiguousarray(array, little_endian(array.dtype))
            with archive.open(_member_info(name), "w",
                              force_zip64=array.nbytes > _ZIP64_ABOVE) as member:
                _write_npy(member, array)


def _write_npy(member, array: np.ndarray) -> None:
    npy.write_array(member, array, allow_pickle=False)


def _member_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    return info


# -------------------------------------------------------------------- reading
Plan = TypeVar("Plan")


def read(file, plan: Callable[[dict], Plan]) -> Tuple[Plan, Dict[str, np.ndarray]]:
    """(plan, arrays) from the open binary ``file``: ``plan(header)`` checks the parsed
    header.json and returns what to build, with ``.arrays`` (name -> :class:`Expected`) the
    array members it needs, which must be all the other members. Each member's declared
    size and .npy header are checked before its data is read."""
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
        planned = plan(_read_header(archive, members[HEADER]))
        expected = planned.arrays
        _check_member_names(members, expected)
        for name, wanted in expected.items():
            _check_declared_size(members[name], wanted)
        arrays = {name: _read_array(archive, members[name], wanted)
                  for name, wanted in expected.items()}
    return planned, arrays


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


def _read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo):
    """header.json parsed: at most MAX_HEADER_BYTES, no NaN/Infinity, numbers finite, no
    key twice in one object."""
    if info.file_size > MAX_HEADER_BYTES:
        raise ModelFileError(f"{HEADER} declares {info.file_size} bytes; the limit is "
                             f"{MAX_HEADER_BYTES}")
    data = archive.read(info)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant,
                          parse_float=_finite_float, object_pairs_hook=_unique_keys)
    except ModelFileError:
        raise
    except (ValueError, RecursionError) as exc:
        raise ModelFileError(f"{HEADER} is not valid JSON: {exc}") from None


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
                        expected: Dict[str, Expected]) -> None:
    wanted = {HEADER, *expected}
    missing, extra = sorted(wanted - set(members)), sorted(set(members) - wanted)
    if missing or extra:
        raise ModelFileError(f"the archive's members do not match its header: missing "
                             f"{missing}, unexpected {extra[:10]}")


def _check_declared_size(info: zipfile.ZipInfo, expected: Expected) -> None:
    """Before reading: the member's size must be the array's bytes plus an .npy header."""
    low, high = expected.nbytes + 10, expected.nbytes + MAX_NPY_HEADER
    if not low <= info.file_size <= high:
        raise ModelFileError(f"member {info.filename!r} declares {info.file_size} bytes; a "
                             f"{expected.dtype.str} array of shape {expected.shape} takes "
                             f"{expected.nbytes} bytes plus a header of at most "
                             f"{MAX_NPY_HEADER}")


def _read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo,
                expected: Expected) -> np.ndarray:
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
