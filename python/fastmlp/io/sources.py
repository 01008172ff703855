"""Training data read in chunks: ``.npy`` files and memmaps, Parquet and CSV files, Dask
collections and any object with the chunk iterator protocol (README "Training from
disk"; :mod:`fastmlp.train.stream` trains on them with memory bounded by its buffers).

A source yields *chunks*, ``(X, y, w)``: a block of rows of the features, their targets
and their sample weights (None without). Sources whose chunks can be read in any order
(:meth:`Source.chunk_sizes` is a list) are read in a shuffled chunk order each epoch, each
chunk sequentially; an iterator is read in its own order. The protocol an iterator
implements, after XGBoost's external-memory ``DataIter``::

    class MyChunks:
        def reset(self):            # back to the first chunk (before every pass)
            ...
        def next(self):             # the next chunk, or None after the last
            return X_chunk, y_chunk             # or (X_chunk, y_chunk, w_chunk)

Chunks are converted and checked as fit checks arrays (:meth:`fastmlp.Sequential.
prepare_data`) when the stream reads them. A source without targets (``y=None``; an
iterator's chunks ``(X, None)``) serves ``predict`` and ``predict_proba``; fit and evaluate
read the targets.
"""
from __future__ import annotations

import functools
import importlib
import os
import re
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .._files import check_path

__all__ = ["Chunks", "Csv", "Dask", "Npy", "Parquet", "Source", "as_source", "by_chunks"]

Chunk = Tuple[object, object, Optional[object]]

#: A chunk of an ``.npy`` file is read as one sequential read of about this many bytes.
NPY_CHUNK_BYTES = 8 << 20


class Source:
    """Rows in chunks (the module docstring). Subclasses define :meth:`chunk_sizes` and
    :meth:`read` (chunks in any order) or :meth:`chunks` (their own order)."""

    #: a short description for messages
    kind = "source"

    def chunk_sizes(self) -> Optional[List[int]]:
        """Each chunk's rows when the chunks can be read in any order, else None."""
        return None

    def read(self, i: int) -> Iterator[Chunk]:
        """Chunk ``i`` (of :meth:`chunk_sizes`), possibly in several pieces."""
        raise NotImplementedError

    def chunks(self, order: Optional[Sequence[int]] = None) -> Iterator[Chunk]:
        """Every chunk: those of a random-access source in ``order`` (None: in turn)."""
        sizes = self.chunk_sizes()
        for i in range(len(sizes)) if order is None else order:
            yield from self.read(int(i))

    def numbered(self, order: Optional[Sequence[int]] = None) -> Iterator[Tuple[int, Chunk]]:
        """(chunk number, piece) for the non-empty pieces of :meth:`chunks` (an iterator's
        in its own order, numbered from 0): the number a conversion's error names."""
        sizes = self.chunk_sizes()
        if sizes is None:
            numbered = enumerate(self.chunks())
        else:
            numbered = ((int(i), piece) for i in (range(len(sizes)) if order is None else order)
                        for piece in self.read(int(i)))
        return ((i, piece) for i, piece in numbered if len(piece[0]))

    def targets(self) -> Iterator[object]:
        """Every chunk's targets in turn (what a survey of the labels reads); sources
        that can read them alone do, the others read whole chunks."""
        for _, y, _ in self.chunks():
            yield self.checked_targets(y)

    def checked_targets(self, y):
        """A chunk's ``y``; ValueError when the source gave none."""
        if y is None:
            raise ValueError(f"the {self.kind} source holds no targets (y None): fit and "
                             "evaluate need them; predict reads a source without")
        return y

    def in_chunk(self, error: ValueError, i: int) -> ValueError:
        """``error``, raised converting chunk ``i``, naming the chunk."""
        return ValueError(f"{error} of the {self.kind} source's chunk {i}")


# ------------------------------------------------------------------------ .npy files
def _open_npy(array, name: str):
    """A path of an .npy file (opened as a read-only memmap) or an array as it is."""
    if isinstance(array, (str, os.PathLike)):
        path = check_path(array)
        try:
            loaded = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:      # EOFError: an empty file
            raise ValueError(f"{name}: {os.fspath(path)!r} is not a readable .npy file "
                             f"({exc})") from None
        if not isinstance(loaded, np.ndarray):              # an .npz archive
            loaded.close()
            raise ValueError(f"{name}: {os.fspath(path)!r} is not a readable .npy file "
                             f"(an .npz archive)")
        if hasattr(os, "preadv") and loaded.flags.c_contiguous and loaded.ndim >= 1:
            return _NpyFile(path, loaded)
        return loaded
    if not hasattr(array, "shape") or not hasattr(array, "__getitem__"):
        raise TypeError(f"{name} must be a path of an .npy file or an array (a np.memmap); "
                        f"got {type(array).__name__}")
    return array


class _NpyFile:
    """A C-ordered .npy file read by rows with ``os.pread`` into new arrays: sequential
    reads without a memory map's page faults (a cold file reads about 1.7 times faster,
    bench/stream_report.py), safe from any thread. Indexed by row slices only. A copy
    (pickle, deepcopy: a source sent to another process) opens the file again: a file
    descriptor means nothing in another process, and two owners would close it twice."""

    def __reduce__(self):
        return _open_npy, (self.path, "X")

    def __init__(self, path: str, mapped: np.memmap):
        self.path, self.shape, self.dtype = path, mapped.shape, mapped.dtype
        self._offset = mapped.offset
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        out = np.empty((max(0, stop - start), *self.shape[1:]), self.dtype)
        if not out.size:
            return out
        view, at = memoryview(out).cast("B"), self._offset + start * self._row_bytes
        done = 0
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], at + done)
            if got == 0:
                raise ValueError(f"{self.path!r} ended before its header's {self.shape[0]:,} "
                                 "rows (a truncated .npy file)")
            done += got
        return out

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def map_targets(y, make: Callable):
    """``make(y)``, or for a MultiTask's targets ``{head: y}`` a dict of ``make`` of each
    head's."""
    return {head: make(value) for head, value in y.items()} if isinstance(y, dict) else make(y)


def _target_columns(target) -> Tuple[Optional[Dict[str, list]], list]:
    """(a MultiTask's ``{head: its columns}`` or None, every target column) of a source's
    target columns: a name, a list of names, ``{head: name or list}``, or None."""
    if isinstance(target, dict):
        heads = {head: _as_list(columns) for head, columns in target.items()}
        return heads, [column for columns in heads.values() for column in columns]
    return None, [] if target is None else _as_list(target)


def _named_targets(y) -> List[Tuple[str, object]]:
    """(name for messages, targets) for each head of a dict ``{head: y}``, or ("y", y)."""
    if isinstance(y, dict):
        return [(f"y[{head!r}]", value) for head, value in y.items()]
    return [("y", y)]


class Npy(Source):
    """Rows of ``.npy`` files (paths: read a row range at a time with ``os.preadv``) or
    arrays (np.memmap: ``np.load(path, mmap_mode="r")``): ``X`` one file or array of
    features, or a list of them (their rows in turn), ``y`` and ``sample_weight``
    alike, with the same rows (both optional: without y the source serves predict).
    A MultiTask's targets are a dict ``{head: y}``, each head's y as y would be.
    Chunks are runs of ``chunk_rows`` consecutive rows (default: about 8 MiB of X), each
    read with one sequential read."""

    kind = ".npy"

    def __init__(self, X, y=None, sample_weight=None, *, chunk_rows: Optional[int] = None):
        self.X = [_open_npy(x, f"X[{i}]") for i, x in enumerate(_as_list(X))]
        named = [] if y is None else [(name, _open_all(v, name)) for name, v in _named_targets(y)]
        self.y = None if y is None else (dict(zip(y, (parts for _, parts in named)))
                                         if isinstance(y, dict) else named[0][1])
        self.w = None if sample_weight is None else _open_all(sample_weight, "sample_weight")
        for name, parts in [*named, ("sample_weight", self.w)]:
            if parts is None:
                continue
            if len(parts) != len(self.X):
                raise ValueError(f"{name} has {len(parts)} files or arrays and X {len(self.X)}: "
                                 f"give one per file of X")
            for i, (x, part) in enumerate(zip(self.X, parts)):
                if len(part) != len(x):
                    raise ValueError(f"{name}[{i}] has {len(part):,} rows and X[{i}] "
                                     f"{len(x):,}: they must have the same rows")
        if chunk_rows is None:
            row_bytes = max(1, int(np.prod(self.X[0].shape[1:])) * self.X[0].dtype.itemsize)
            chunk_rows = max(1, NPY_CHUNK_BYTES // row_bytes)
        self.chunk_rows = _positive(chunk_rows, "chunk_rows")
        self._chunks = [(f, start, min(start + self.chunk_rows, len(x)))
                        for f, x in enumerate(self.X)
                        for start in range(0, len(x), self.chunk_rows)]

    def chunk_sizes(self) -> List[int]:
        return [end - start for _, start, end in self._chunks]

    def read(self, i: int) -> Iterator[Chunk]:
        f, start, end = self._chunks[i]
        w = None if self.w is None else np.asarray(self.w[f][start:end])
        yield np.asarray(self.X[f][start:end]), self._targets(f, start, end), w

    def _targets(self, f: int, start: int, end: int):
        """Rows [start, end) of file ``f``'s targets (a dict of each head's, or None)."""
        return None if self.y is None else map_targets(
            self.y, lambda parts: np.asarray(parts[f][start:end]))

    def targets(self) -> Iterator[object]:
        self.checked_targets(self.y)
        step = max(self.chunk_rows, 1 << 20)       # targets are narrow: long reads
        first = next(iter(self.y.values())) if isinstance(self.y, dict) else self.y
        for f, part in enumerate(first):           # X is not read (nor its length)
            for start in range(0, len(part), step):
                yield self._targets(f, start, start + step)


def _open_all(value, name: str) -> list:
    """A file or array, or a list of them (one per file of X), opened by _open_npy."""
    return [_open_npy(v, f"{name}[{i}]") for i, v in enumerate(_as_list(value))]


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return int(value)


# ------------------------------------------------------------------------ Parquet
def pyarrow_module(module: str, needs: str = "Parquet and CSV files"):
    """pyarrow's ``module`` (parquet, csv; "" for pyarrow itself); ImportError saying that
    ``needs`` need it and what to install."""
    try:
        return importlib.import_module("pyarrow" + (f".{module}" if module else ""))
    except ImportError:
        raise ImportError(f"{needs} need pyarrow: pip install 'fastmlp[parquet]'") from None


def _parquet_files(path) -> List[str]:
    """The .parquet files of a directory (recursively, sorted) or the path itself."""
    path = check_path(path)
    if os.path.isdir(path):
        files = sorted(os.path.join(root, name) for root, _, names in os.walk(path)
                       for name in names if name.endswith(".parquet"))
        if not files:
            raise ValueError(f"{path!r} holds no .parquet files")
        return files
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or directory: {path!r}")
    return [path]


class _Columns(Source):
    """A source of named columns (Parquet, CSV): ``target`` (a column, a list of them, a
    MultiTask's ``{head: column or list}``, or None: a source for predict), ``features``
    (default: every other column but ``sample_weight``'s), each file's columns ``names``
    (the first file's: ``names[0]``)."""

    def __reduce__(self):
        """Pickled (and copied) as what makes it: the copy opens the files again (a
        source sent to another process)."""
        return functools.partial(type(self), **self._options), self._made_from

    def _choose(self, paths: List[str], names: List[List[str]], target, features,
                sample_weight: Optional[str]) -> None:
        self._made_from = (paths, target, features, sample_weight)
        for i, other in enumerate(names[1:], 1):
            if other != names[0]:
                raise ValueError(f"{paths[i]!r} has the columns {other}, {paths[0]!r} "
                                 f"{names[0]}: the files must share a schema")
        schema = names[0]
        self.heads, self.target = _target_columns(target)
        self.weight = sample_weight
        used = set(self.target) | ({sample_weight} if sample_weight else set())
        missing = sorted(used - set(schema))
        if missing:
            raise ValueError(f"the {self.kind} files have no column {missing}; they have "
                             f"{schema}")
        self.features = ([c for c in schema if c not in used] if features is None
                         else _as_list(features))
        absent = sorted(set(self.features) - set(schema))
        if absent:
            raise ValueError(f"features names columns the {self.kind} files lack: {absent}")

    @property
    def columns(self) -> List[str]:
        """The columns a chunk reads: features, targets, the weight."""
        return [*self.features, *self.target] + ([self.weight] if self.weight else [])

    def _chunk(self, batch) -> Chunk:
        w = None if self.weight is None else \
            batch.column(self.weight).to_numpy(zero_copy_only=False)
        return _arrow_matrix(batch, self.features), self._batch_targets(batch), w

    def _batch_targets(self, batch):
        """A batch's targets: one column as (n,), several as (n, k), a dict of each head's
        for a MultiTask's, None without."""
        if self.heads is not None:
            return {head: _arrow_targets(batch, columns) for head, columns in self.heads.items()}
        return _arrow_targets(batch, self.target) if self.target else None


class Parquet(_Columns):
    """Rows of Parquet files (pyarrow, ``pip install 'fastmlp[parquet]'``): ``path`` a
    directory (its ``*.parquet`` files, recursively, in sorted order), a file, or a list
    of them; ``target`` the target column (or a list of columns; a MultiTask's
    ``{head: column or list}``; None: a source for predict), ``features`` the feature
    columns (default: every other column but ``sample_weight``'s), numeric.
    A chunk is a row group, read in pieces of at most ``piece_rows`` rows (only the
    columns used)."""

    kind = "Parquet"

    def __init__(self, path, target: Union[str, Sequence[str], dict, None] = None,
                 features=None, sample_weight: Optional[str] = None, *,
                 piece_rows: int = 65536):
        pq = pyarrow_module("parquet", f"{self.kind} sources")
        paths = [p for item in _as_list(path) for p in _parquet_files(item)]
        self.piece_rows = _positive(piece_rows, "piece_rows")
        self._options = {"piece_rows": self.piece_rows}
        self.files = [pq.ParquetFile(p) for p in paths]
        self._choose(paths, [f.schema_arrow.names for f in self.files], target, features,
                     sample_weight)
        _check_numeric(repr(paths[0]), non_numeric_columns(
            self.files[0].schema_arrow, [*self.features, *([self.weight] if self.weight else [])]))
        self._groups = [(f, g) for f, file in enumerate(self.files)
                        for g in range(file.metadata.num_row_groups)]

    def chunk_sizes(self) -> List[int]:
        return [self.files[f].metadata.row_group(g).num_rows for f, g in self._groups]

    def read(self, i: int) -> Iterator[Chunk]:
        f, g = self._groups[i]
        for batch in self.files[f].iter_batches(batch_size=self.piece_rows, row_groups=[g],
                                                columns=self.columns):
            yield self._chunk(batch)

    def targets(self) -> Iterator[object]:
        self.checked_targets(self.target or None)
        for file in self.files:
            for batch in file.iter_batches(batch_size=self.piece_rows, columns=self.target):
                yield self._batch_targets(batch)


def non_numeric_columns(schema, names: Sequence[str]) -> Dict[str, str]:
    """``{column: its type}`` for the columns of ``names`` whose Arrow type in ``schema``
    is not a number fastmlp reads as a feature (an integer, a float, a boolean)."""
    import pyarrow as pa
    numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean)
    return {name: str(schema.field(name).type) for name in names
            if not any(is_type(schema.field(name).type) for is_type in numeric)}


def _check_numeric(where: str, wrong: Dict[str, str]) -> None:
    """ValueError naming the feature (or weight) columns of ``where`` that do not hold
    numbers (``wrong``: {column: its type}), with the fix."""
    if wrong:
        raise ValueError(f"{where}: the columns {wrong} do not hold numbers; features and "
                         "sample_weight must be numeric columns. Leave them out with "
                         "features=[...], or encode them as numbers first (one-hot or "
                         "category codes)")


def _arrow_matrix(batch, names) -> np.ndarray:
    return np.column_stack([batch.column(name).to_numpy(zero_copy_only=False)
                            for name in names])


def _arrow_targets(batch, target: List[str]) -> np.ndarray:
    """One target column as (n,), several as (n, k)."""
    y = _arrow_matrix(batch, target)
    return y[:, 0] if len(target) == 1 else y


# ------------------------------------------------------------------------ CSV
class Csv(_Columns):
    """Rows of CSV files with a header row (pyarrow's streaming reader, ``pip install
    'fastmlp[parquet]'``): ``path`` a file (``.gz`` and ``.bz2`` are decompressed) or a
    list of files with the same header; ``target``, ``features`` and ``sample_weight`` as
    for :class:`Parquet`. Feature columns are read as float64 (an empty cell, ``NA`` or
    ``null`` as NaN, which fit refuses naming the chunk). A file is read in order, in
    blocks of about ``block_bytes``: the chunk order is the files' (unshuffled, as an
    iterator's), so the rows mix in the shuffle buffer alone; a file sorted by label
    trains better as Parquet (README "Training from disk")."""

    kind = "CSV"

    def __init__(self, path, target: Union[str, Sequence[str], dict, None] = None,
                 features=None, sample_weight: Optional[str] = None, *,
                 block_bytes: int = NPY_CHUNK_BYTES):
        self._csv = pyarrow_module("csv", f"{self.kind} sources")
        self.paths = [os.fspath(check_path(p)) for p in _as_list(path)]
        for p in self.paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"no such file: {p!r}")
        self.block_bytes = _positive(block_bytes, "block_bytes")
        self._options = {"block_bytes": self.block_bytes}
        self._choose(self.paths, [self._header(p) for p in self.paths], target, features,
                     sample_weight)

    def _header(self, path: str) -> List[str]:
        with self._open(path) as reader:
            return reader.schema.names

    def _open(self, path: str, columns: Optional[List[str]] = None):
        """pyarrow's streaming reader of ``path``: ``columns`` alone, features as float64."""
        csv = self._csv
        read = csv.ReadOptions(block_size=self.block_bytes)
        if columns is None:
            return csv.open_csv(path, read_options=read)
        import pyarrow as pa
        types = {name: pa.float64() for name in self.features if name in columns}
        return csv.open_csv(path, read_options=read, convert_options=csv.ConvertOptions(
            include_columns=columns, column_types=types))

    def _batches(self, columns: List[str]):
        """Every file's record batches of ``columns`` in turn; a value pyarrow cannot
        convert is a ValueError naming the file and the column."""
        import pyarrow as pa
        for path in self.paths:
            try:
                with self._open(path, columns) as reader:
                    yield from reader
            except pa.ArrowInvalid as exc:
                number = re.search(r"column #(\d+)", str(exc))
                name = "" if number is None else \
                    f" (column #{number[1]} is {self._header(path)[int(number[1])]!r})"
                raise ValueError(f"{path!r}: {exc}{name}") from None

    def chunks(self, order=None) -> Iterator[Chunk]:
        for batch in self._batches(self.columns):
            yield self._chunk(batch)

    def targets(self) -> Iterator[object]:
        self.checked_targets(self.target or None)
        for batch in self._batches(self.target):
            yield self._batch_targets(batch)


# ------------------------------------------------------------------------ Dask
class Dask(Source):
    """Rows of a Dask array or DataFrame (``pip install 'fastmlp[dask]'``), a chunk per
    row block or partition, each computed when read (by the active scheduler: a
    ``distributed.Client`` when one is open). ``X`` a 2-D dask array with ``y`` a dask
    array (or array-like) of the same row chunks, or a DataFrame with ``y`` the target
    column's name (or a list of names) and ``features`` the feature columns (default:
    the others); without y (None) a source for predict; a MultiTask's y is a dict
    ``{head: y}`` of either kind. ``sample_weight``: an array like y, or a column's name.
    Unknown chunk sizes (a filtered array, a DataFrame's partitions) are computed at the
    first need: one pass over the collection."""

    kind = "Dask"

    def __init__(self, X, y=None, features=None, sample_weight=None):
        self.frame = hasattr(X, "columns")       # a dask array has npartitions too
        self.X, self.y, self.w = X, y, sample_weight
        if self.frame:
            self.heads, names = _target_columns(y)
            if not all(isinstance(n, str) for n in names):
                raise TypeError("a Dask DataFrame's y must name its target column(s)")
            if sample_weight is not None and not isinstance(sample_weight, str):
                raise TypeError("a Dask DataFrame's sample_weight must name its column")
            skip = set(names) | ({sample_weight} if sample_weight is not None else set())
            self.features = ([c for c in X.columns if c not in skip] if features is None
                             else _as_list(features))
            missing = sorted(str(c) for c in (skip | set(self.features)) - set(X.columns))
            if missing:
                raise ValueError(f"the DataFrame has no column {missing}")
            _check_numeric("the Dask DataFrame", _non_numeric_dtypes(
                X.dtypes, [*self.features, *([sample_weight] if sample_weight else [])]))
            self.target = names
        elif getattr(X, "ndim", 0) != 2:
            raise ValueError(f"a Dask array X must be 2-D (n_samples, n_features); got "
                             f"shape {getattr(X, 'shape', None)}")
        self._sizes = None

    def chunk_sizes(self) -> List[int]:
        if self._sizes is None:
            if self.frame:
                self._sizes = [int(v) for v in self.X.map_partitions(len).compute()]
            else:
                targets = list(self.y.values()) if isinstance(self.y, dict) else [self.y]
                for part in (self.X, *targets, self.w):   # a filtered y or w's too
                    if _is_dask(part) and any(np.isnan(c) for c in part.chunks[0]):
                        part.compute_chunk_sizes()
                self._sizes = [int(c) for c in self.X.chunks[0]]
        return self._sizes

    def read(self, i: int) -> Iterator[Chunk]:
        if self.frame:
            part = self.X.partitions[i].compute()
            y = None if not self.target else map_targets(
                self.target if self.heads is None else self.heads,
                lambda names: _frame_columns(part, names))
            w = part[self.w].to_numpy() if isinstance(self.w, str) else None
            yield part[self.features].to_numpy(), y, w
            return
        import dask
        start = int(sum(self.chunk_sizes()[:i]))
        rows = slice(start, start + self.chunk_sizes()[i])
        # one compute for them all: a y or w derived from X's graph is not computed twice
        X, y, w = dask.compute(self.X[rows], None if self.y is None else
                               map_targets(self.y, lambda y: y[rows]),
                               None if self.w is None else self.w[rows])
        yield (np.asarray(X), None if y is None else map_targets(y, np.asarray),
               None if w is None else np.asarray(w))


def _frame_columns(frame, names: List[str]) -> np.ndarray:
    """A pandas frame's columns ``names``: one as (n,), several as (n, k)."""
    y = frame[names].to_numpy()
    return y[:, 0] if y.shape[1] == 1 else y


def _non_numeric_dtypes(dtypes, names) -> Dict[str, str]:
    """``{column: its dtype}`` for the columns of ``names`` whose pandas dtype (in
    ``dtypes``) is not a number or a boolean."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype
    return {str(name): str(dtypes[name]) for name in names
            if not (is_numeric_dtype(dtypes[name]) or is_bool_dtype(dtypes[name]))}


# ------------------------------------------------------------------------ iterators
class Chunks(Source):
    """An object with the iterator protocol (module docstring): ``reset()`` then
    ``next()`` until None, in its own order."""

    kind = "iterator"

    def __init__(self, iterator):
        if not (callable(getattr(iterator, "reset", None))
                and callable(getattr(iterator, "next", None))):
            raise TypeError(f"a chunk iterator needs reset() and next() methods; "
                            f"{type(iterator).__name__} lacks them")
        self.iterator = iterator

    def chunks(self, order=None) -> Iterator[Chunk]:
        self.iterator.reset()
        while True:
            chunk = self.iterator.next()
            if chunk is None:
                return
            if not isinstance(chunk, tuple) or len(chunk) not in (2, 3):
                raise TypeError(f"{type(self.iterator).__name__}.next() must return "
                                f"(X, y), (X, y, w) or None; got {type(chunk).__name__}")
            yield chunk if len(chunk) == 3 else (*chunk, None)


# ------------------------------------------------------------------------ fit's X
def _is_dask(value) -> bool:
    return type(value).__module__.split(".")[0] in ("dask", "dask_expr")


def as_source(X, y, memmap: bool = True, targets: bool = True) -> Optional[Source]:
    """``X`` (and ``y``) of fit, evaluate or predict as a Source when they are one, else
    None (arrays): a Source; a Dask array or DataFrame; an object with ``reset()`` and
    ``next()`` (y None); the path of an .npy file (y too: a path or an array), of a CSV
    file or of a directory or file of Parquet (y: the target column's name); a MultiTask's
    y a dict ``{head: y}`` of those; with ``memmap``, a
    np.memmap (y an array or memmap of its rows; the scikit-learn estimators take memmaps
    as arrays, as joblib hands them to fit). With ``targets`` (fit, evaluate) y is
    required where the source does not hold it; predict passes y None."""
    if isinstance(X, Source):
        if y is not None:
            raise TypeError(f"a {type(X).__name__} source holds its targets: pass y=None")
        return X
    if _is_dask(X):
        if targets and y is None:
            raise TypeError("X is a Dask collection: give y (a Dask array of its rows, or "
                            "a DataFrame's target column name)")
        return Dask(X, y)
    if callable(getattr(X, "reset", None)) and callable(getattr(X, "next", None)):
        if y is not None:
            raise TypeError("a chunk iterator's chunks hold the targets: pass y=None")
        return Chunks(X)
    path = os.fspath(X) if isinstance(X, (str, os.PathLike)) else None
    if path is not None and not path.endswith(".npy"):
        kind = (Csv if path.lower().endswith((".csv", ".csv.gz", ".csv.bz2")) else
                Parquet if os.path.isdir(path) or path.endswith(".parquet") else None)
        if kind is None:
            raise ValueError(f"X is the path {path!r}: fastmlp reads .npy, CSV (.csv, .csv.gz, "
                             ".csv.bz2) and Parquet files, and directories of Parquet files")
        if targets and not isinstance(y, (str, dict)):
            raise TypeError(f"X is a {kind.kind} path: give y as the target column's name")
        return kind(X, y)
    if path is not None or (memmap and isinstance(X, np.memmap)):
        if targets and y is None:
            raise TypeError(f"X is {'an .npy path' if path else 'a np.memmap'}: give y too "
                            "(a path or an array of its rows)")
        return Npy(X, map_targets(y, _labels_listed))
    return None


def _labels_listed(y):
    """y beside one .npy file: a list of labels as an array (not a list of files)."""
    return np.asarray(y) if isinstance(y, (list, tuple)) else y


def by_chunks(X, compute: Callable, join: Callable, memmap: bool = True):
    """``compute(X)`` for arrays X; for X a source of features (predict's: its targets,
    if any, unread; ``memmap`` as :func:`as_source`), ``join`` of ``compute`` of each
    chunk's X in turn, a chunk's ValueError naming it. ValueError for a source of no rows."""
    source = as_source(X, None, memmap=memmap, targets=False)
    if source is None:
        return compute(X)
    pieces = []
    for i, (X, _, _) in source.numbered():
        try:
            pieces.append(compute(X))
        except ValueError as exc:
            raise source.in_chunk(exc, i) from None
    if not pieces:
        raise ValueError(f"the {source.kind} source holds no rows")
    return join(pieces)
