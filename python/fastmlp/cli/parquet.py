"""Parquet data on the command line: train, evaluate and predict read a Parquet file or a
folder of them a row group at a time (:class:`fastmlp.sources.Parquet`, pyarrow: the
``parquet`` extra), never whole, so the data may be larger than memory.

Columns are chosen as in a CSV file (--target, --exclude, a saved model's feature names).
Before training, one pass over the target column alone finds its distinct values (the
classes, or whether --loss auto means mse, as for CSV); the features' Normalization is
adapted by the streamed fit's own survey. A stream is not split: its dev set comes from
its own file (train --dev-data).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..io.sources import Chunk, Parquet, Source, non_numeric_columns, pyarrow_module
from .options import DataError, UsageError
from .tabular import Data, check_no_missing_target, column_index, encode_target, feature_columns


def is_parquet(path: str) -> bool:
    """A Parquet file (by its extension) or a folder (of Parquet files)."""
    return path.lower().endswith(".parquet") or os.path.isdir(path)


@dataclass
class ParquetData:
    """A Parquet path's feature columns and target column (None when it has none), as a
    source of their rows."""

    path: str
    source: Parquet
    target_name: Optional[str]
    features: List[str]

    @property
    def rows(self) -> int:
        return sum(self.source.chunk_sizes())

    def target_data(self, y, first_row: int) -> Data:
        """The target values ``y`` of the rows from ``first_row`` (in the files' order) as
        :class:`Data` for the CSV path's label checks: text as str, a null as "None"."""
        y = np.asarray(y)
        if y.dtype == object:
            y = y.astype(str)
        return Data(self.path, None, y, self.target_name, self.features, None, first_row)


def read_parquet(args, target: Optional[str], target_required: bool = True,
                 features: Optional[List[str]] = None, path: Optional[str] = None) -> ParquetData:
    """``path`` (default ``args.data``) with columns chosen as in a CSV file: the target
    by name or index, the features by the model's names, else every column but the
    target and --exclude's; the features must be numbers."""
    path = args.data if path is None else path
    if target is None and target_required:
        raise UsageError(f"--target is required for the Parquet data {path}: name the column "
                         "to predict (or give its 0-based index)")
    schema = Parquet(path, features=[]).files[0].schema_arrow    # no column read yet
    header = schema.names
    index = None
    if target is not None and (target_required or target in header):
        index = column_index(header, target, path)
    chosen = [header[i] for i in feature_columns(header, path, index, features, args.exclude)]
    _check_numeric(schema, chosen, path, excludable=features is None)
    target_name = None if index is None else header[index]
    return ParquetData(path, Parquet(path, target_name, features=chosen), target_name, chosen)


def _check_numeric(schema, chosen: List[str], path: str, excludable: bool) -> None:
    """DataError for the first feature column whose Parquet type is not a number."""
    wrong = non_numeric_columns(schema, chosen)
    if wrong:
        name, kind = next(iter(wrong.items()))
        fix = f"; leave it out with --exclude {name}" if excludable else ""
        raise DataError(f"{path}: column {name!r} holds {kind}, not numbers; feature "
                        f"columns must be numeric{fix}")


def surveyed_target(data: ParquetData) -> Data:
    """The target's distinct values as :class:`Data` (what --loss auto and the classes
    are decided from), from one pass over the target column alone; DataError naming the
    first row (counted from 0 in the files' order) whose target is missing."""
    distinct, row = [], 0
    for y in data.source.targets():
        values = data.target_data(y, row)
        check_no_missing_target(values)
        distinct.append(np.unique(values.target))
        row += len(values.target)
    if not distinct:
        raise DataError(f"{data.path} has no rows")
    return data.target_data(np.unique(np.concatenate(distinct)), 0)


class EncodedRows(Source):
    """A Parquet path's rows with the target encoded as the model takes it
    (:func:`fastmlp.cli.tabular.encode_target` against ``labels``), chunk by chunk."""

    kind = "Parquet"

    def __init__(self, data: ParquetData, labels: Optional[list]):
        self.data, self.labels = data, labels
        sizes = data.source.chunk_sizes()
        self.first_rows = np.concatenate([[0], np.cumsum(sizes)]).tolist()

    def chunk_sizes(self) -> List[int]:
        return self.data.source.chunk_sizes()

    def read(self, i: int) -> Iterator[Chunk]:
        row = self.first_rows[i]
        for X, y, w in self.data.source.read(i):
            yield X, encode_target(self.data.target_data(y, row), self.labels), w
            row += len(X)


def write_parquet(file: IO[bytes], blocks: Iterable[Tuple[List[str], List[Sequence]]],
                  path: str) -> int:
    """Every block ((header, columns): arrays of numbers, lists of labels) as a row group
    of one Parquet file written to ``file``; returns the rows. DataError when there are
    none (``path``: the data's, for the message)."""
    pa, pq = pyarrow_module(""), pyarrow_module("parquet")
    writer, rows = None, 0
    try:
        for header, columns in blocks:
            table = pa.table(dict(zip(header, columns)))
            if writer is None:
                writer = pq.ParquetWriter(file, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()           # the footer; the file stays open for its writer
    if rows == 0:
        raise DataError(f"{path} has no rows to predict")
    return rows
