"""Tabular data for the command line: CSV files with a header row and NPZ files read into
features and a target, the loss a target calls for, class labels and their encoding, and
the dev split."""
from __future__ import annotations

import csv
import math
import os
import zipfile
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .._memory import check_memory, format_bytes
from ..nn.losses import MeanSquaredError, SoftmaxCrossEntropy, get_loss
from ..tools.data import train_dev_test_split
from .options import DataError, UsageError

AUTO_MAX_CLASSES = 20        # --loss auto: whole numbers with at most this many values

# Cells that mean "no value", as pandas.read_csv reads them by default.
MISSING_VALUES = frozenset({
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"})


# ------------------------------------------------------------ reading data
@dataclass
class Data:
    """Rows read from a CSV or NPZ file: features X (n, d) float64, the raw target (CSV:
    its strings; NPZ: the array as stored; None if the file has none), the feature
    columns' names (CSV only) and each row's line in the file (CSV only). For Parquet
    (:mod:`fastmlp.cli.parquet`) a chunk's target alone: X None, the rows numbered from
    ``first_row``."""

    path: str
    X: Optional[np.ndarray]
    target: Optional[np.ndarray]
    target_name: Optional[str]
    features: Optional[List[str]]
    lines: Optional[np.ndarray]
    first_row: int = 0

    def where(self, row: int) -> str:
        """Where row ``row`` is in the file, for messages: a CSV file's line (and data row,
        counted from 1 after the header), an NPZ array's (or Parquet files') row index
        (from 0)."""
        if self.lines is None:
            return f"row {self.first_row + row} (counted from 0)"
        return f"line {self.lines[row]} (data row {row + 1})"


# Rows converted at a time: the file's cells live as Python strings for one block only.
CSV_BLOCK_ROWS = 65536
# The features are held about this many times over at the peak of a command: the blocks
# and their concatenation, then X beside its train/dev split and their standardized copies.
IN_MEMORY_COPIES = 3


class _CountingLines:
    """A text file's lines, counting the characters read (the csv reader's source; about
    the bytes read, fewer for text outside ASCII, which makes the projection cautious)."""

    def __init__(self, file):
        self.file, self.read = file, 0

    def __iter__(self):
        for line in self.file:
            self.read += len(line)
            yield line


def _header(reader, path: str) -> List[str]:
    """A CSV file's header row, its names stripped ([] for an empty file); DataError for a
    name given twice."""
    header = [name.strip() for name in next(reader, [])]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{path}: the header names the columns {repeated} more than once")
    return header


def _csv_blocks(reader, header: List[str], path: str):
    """The data rows after the header in blocks of at most CSV_BLOCK_ROWS: (the block's
    columns, tuples of strings; each row's line number). Blank lines are skipped; every
    other row must have the header's number of fields."""
    rows, lines = [], []
    for row in reader:
        if not "".join(row).strip():
            continue
        if len(row) != len(header):
            raise DataError(f"{path}, line {reader.line_num}: {len(row)} fields, but "
                            f"the header has {len(header)}")
        rows.append(row)
        lines.append(reader.line_num)
        if len(rows) == CSV_BLOCK_ROWS:
            yield list(zip(*rows)), lines
            rows, lines = [], []
    if rows:
        yield list(zip(*rows)), lines


def _check_projected_memory(path: str, counted: _CountingLines, X_bytes: int) -> None:
    """DataError when the file's features, projected from the share of it read so far
    (``X_bytes`` of float64 for ``counted.read`` characters), will not fit in memory
    IN_MEMORY_COPIES times over: a refusal with the figures, not the kernel's kill."""
    size = os.path.getsize(path)
    try:
        check_memory(IN_MEMORY_COPIES * X_bytes * size / max(counted.read, 1),
                     f"{path} ({format_bytes(size)}) read into memory as numbers",
                     "store it as Parquet, which train, evaluate, predict and diagnose read "
                     "a row group at a time (e.g. pyarrow.csv.read_csv, then "
                     "pyarrow.parquet.write_table), or use fewer rows")
    except ValueError as exc:
        raise DataError(str(exc)) from None


def column_index(header: Sequence[str], spec: str, path: str) -> int:
    """The index of column ``spec``: a name, else a 0-based index (negative from the end)."""
    if spec in header:
        return list(header).index(spec)
    try:
        index = int(spec)
    except ValueError:
        index = None
    if index is not None and -len(header) <= index < len(header):
        return index % len(header)
    raise DataError(f"{path} has no column {spec!r}; its columns are {list(header)}")


def _is_number(cell) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


def _finite_numbers(cells) -> Tuple[np.ndarray, Optional[int]]:
    """``cells`` (strings or numbers) as float64, and the index of the first one that is
    not a finite number (None if all are)."""
    try:
        values = np.asarray(cells, dtype=np.float64)
    except ValueError:
        values = np.array([float(cell) if _is_number(cell) else np.nan for cell in cells])
    bad = ~np.isfinite(values)
    return values, int(np.argmax(bad)) if bad.any() else None


def _numbers(cells: Sequence[str], name: str, path: str, lines: List[int],
             excludable: bool) -> np.ndarray:
    """A CSV column as finite float64 numbers; DataError naming the first bad cell, or
    the column when it holds no number at all (text: a name, an ID), suggesting
    --exclude when the command chooses the feature columns itself (``excludable``)."""
    values, bad = _finite_numbers(cells)
    if bad is None:
        return values
    fix = f"; leave it out with --exclude {name}" if excludable else ""
    if np.isnan(values).all():
        raise DataError(f"{path}: column {name!r} holds text ({cells[bad]!r} on line "
                        f"{lines[bad]}), not numbers; feature columns must be numeric{fix}")
    raise DataError(f"{path}, line {lines[bad]}, column {name!r}: {cells[bad]!r} is not a "
                    f"finite number (feature columns must be numeric){fix}")


def feature_columns(header: List[str], path: str, index: Optional[int],
                     features: Optional[List[str]], exclude: Sequence[str]) -> List[int]:
    """The feature columns' indices: ``features`` (the model's, by name) in their order,
    else every column but the target and the ``exclude`` ones (names or indices)."""
    excluded = {column_index(header, spec, path) for spec in exclude}
    if index is not None and index in excluded:
        raise UsageError(f"--exclude names the target column {header[index]!r}")
    if features is not None:
        missing = [name for name in features if name not in header]
        if missing:
            raise DataError(f"{path} lacks the model's feature columns {missing}; its columns "
                            f"are {header}")
        dropped = [header[i] for i in sorted(excluded) if header[i] in features]
        if dropped:
            raise UsageError(f"--exclude names {dropped}, feature columns of the model")
        return [header.index(name) for name in features]
    chosen = [i for i in range(len(header)) if i != index and i not in excluded]
    if not chosen:
        raise DataError(f"{path} has no feature column besides the target and the excluded "
                        "columns")
    return chosen


def _read_table(path: str, target: Optional[str], target_required: bool,
                features: Optional[List[str]], exclude: Sequence[str]) -> Data:
    """A CSV file's features and target, converted a block of rows at a time (the file's
    cells are never all held as strings). ``features`` (the model's feature columns, by
    name) selects and orders the feature columns; otherwise every column but the target
    and the ``exclude`` ones is one. A missing target column is an error only when
    ``target_required``. DataError before reading it all when it will not fit in memory."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            counted = _CountingLines(file)
            reader = csv.reader(counted, skipinitialspace=True)
            header = _header(reader, path)
            index = None
            if header and target is not None and (target_required or target in header):
                index = column_index(header, target, path)
            chosen = feature_columns(header, path, index, features, exclude) if header else []
            X, y, lines = [], [], []
            for columns, block_lines in _csv_blocks(reader, header, path):
                X.append(np.column_stack([_numbers(columns[i], header[i], path, block_lines,
                                                   features is None) for i in chosen]))
                y.append(None if index is None else np.array(columns[index]))
                lines.append(np.array(block_lines, np.int64))
                if len(X) == 1:
                    _check_projected_memory(path, counted, X[0].nbytes)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from None
    if not X:
        raise DataError(f"{path} has no data rows: expected a header row, then one row per "
                        "sample")
    return Data(path, np.concatenate(X), None if index is None else np.concatenate(y),
                None if index is None else header[index], [header[i] for i in chosen],
                np.concatenate(lines))


def _read_npz(path: str, x_key: str, y_key: str, target_required: bool) -> Data:
    """An NPZ file's arrays ``x_key`` (n, d) and ``y_key`` (n,) (no pickled objects)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            wanted = [x_key] + ([y_key] if target_required or y_key in keys else [])
            missing = [key for key in wanted if key not in keys]
            if missing:
                raise DataError(f"{path} has no array {missing[0]!r}; its arrays are {keys} "
                                "(choose them with --x-key and --y-key)")
            arrays = [archive[key] for key in wanted]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:   # not an NPZ file,
        # a damaged one, or pickled objects
        if isinstance(exc, FileNotFoundError):
            raise
        raise DataError(f"{path} is not a readable NPZ file of numeric arrays: {exc}") from None
    X, y = arrays[0], arrays[1] if len(arrays) > 1 else None
    if X.ndim != 2 or X.dtype.kind not in "biuf" or len(X) == 0:
        raise DataError(f"{path}: array {x_key!r} must be numbers of shape (n_samples, "
                        f"n_features); got dtype {X.dtype}, shape {X.shape}")
    if y is not None and (y.shape != (len(X),) or y.dtype.kind not in "biufU"):
        raise DataError(f"{path}: array {y_key!r} must hold one number or label per sample, "
                        f"shape ({len(X)},); got dtype {y.dtype}, shape {y.shape}")
    bad = ~np.isfinite(X)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(f"{path}: array {x_key!r} holds {X[row, col]} at row {row}, column "
                        f"{col}; features must be finite")
    return Data(path, X.astype(np.float64), y, y_key if y is not None else None, None, None)


def read_data(args, target: Optional[str], target_required: bool = True,
              features: Optional[List[str]] = None, path: Optional[str] = None) -> Data:
    """``path`` (default ``args.data``): NPZ if it ends in .npz, else CSV with a header."""
    path = args.data if path is None else path
    if path.lower().endswith(".parquet") or os.path.isdir(path):
        raise UsageError(f"{args.command} reads a CSV or NPZ file into memory; Parquet data "
                         f"({path}) streams through train, evaluate, predict and diagnose")
    if path.lower().endswith(".npz"):
        if args.exclude:
            raise UsageError(f"--exclude picks CSV columns; {path} is an NPZ file (store "
                             "only the feature columns in its X)")
        return _read_npz(path, args.x_key, args.y_key, target_required)
    if target is None and target_required:
        raise UsageError(f"--target is required for the CSV file {path}: name the column "
                         "to predict (or give its 0-based index)")
    return _read_table(path, target, target_required, features, args.exclude)


# ------------------------------------------------------------ targets and labels
def check_no_missing_target(data: Data) -> None:
    """DataError naming the first row whose target is missing: an empty cell (or one
    pandas reads as missing, such as NA) or a NaN. Every row used for training or
    scoring needs its label or value."""
    target = data.target
    if target.dtype.kind == "f":
        missing = np.isnan(target)
    elif target.dtype.kind == "U":
        missing = np.isin(np.char.strip(target), list(MISSING_VALUES))
    else:
        return
    if missing.any():
        row = int(np.argmax(missing))
        raise DataError(f"{data.path}, {data.where(row)}: the target {data.target_name!r} "
                        f"is missing ({target[row].item()!r}); every row needs one: fill it "
                        "in or drop the row")


def _numeric_target(data: Data) -> np.ndarray:
    """The target as finite numbers; DataError naming the first cell that is not."""
    values, bad = _finite_numbers(data.target)
    if bad is not None:
        raise DataError(f"{data.path}, {data.where(bad)}: target {data.target_name!r} is "
                        f"{data.target[bad].item()!r}, not a finite number")
    return values


def _label_values(data: Data) -> np.ndarray:
    """The target as class labels: numbers where every value is one, else the strings."""
    values, bad = _finite_numbers(data.target)
    return values if bad is None else data.target.astype(str)


def _json_label(value):
    """A label as JSON data: whole numbers as int, other numbers as float, text as str."""
    if isinstance(value, (np.floating, float)):
        return int(value) if float(value).is_integer() else float(value)
    return str(value)


def choose_loss(data: Data, loss: str) -> str:
    """--loss auto: softmax cross-entropy for text, or for whole numbers with at most
    AUTO_MAX_CLASSES distinct values; mse for other numbers."""
    if loss != "auto":
        return loss
    values, bad = _finite_numbers(data.target)
    if bad is not None:
        return SoftmaxCrossEntropy.name
    whole = bool(np.all(np.floor(values) == values))
    return SoftmaxCrossEntropy.name if whole and len(np.unique(values)) <= AUTO_MAX_CLASSES \
        else MeanSquaredError.name


def fit_labels(data: Data, loss: str) -> Optional[list]:
    """The sorted distinct labels of a classification target (None for mse)."""
    loss = get_loss(loss)
    if not loss.classifier:
        return None
    labels = [_json_label(v) for v in np.unique(_label_values(data))]
    if len(labels) < 2:
        raise DataError(f"{data.path}: target {data.target_name!r} has a single class "
                        f"{labels}; classification needs at least two")
    if not loss.one_hot and len(labels) != 2:     # one output holds two classes
        raise DataError(f"{data.path}: {loss.name} needs exactly two classes; target "
                        f"{data.target_name!r} has {len(labels)}: {labels[:10]}")
    return labels


def read_training_data(args) -> Tuple[Data, str, Optional[list]]:
    """train's and search's data (DATA, --target), the loss (--loss, "auto" decided by
    :func:`choose_loss`) and the class labels (:func:`fit_labels`; None for mse)."""
    data = read_data(args, args.target)
    check_no_missing_target(data)
    loss = choose_loss(data, args.loss)
    return data, loss, fit_labels(data, loss)


def encode_target(data: Data, labels: Optional[list]) -> np.ndarray:
    """The target as the model takes it: class indices 0..k-1 into ``labels``, or the
    numbers themselves when there are no labels (mse, or a model saved without them)."""
    check_no_missing_target(data)
    if labels is None:
        return _numeric_target(data)
    if any(isinstance(label, str) for label in labels):
        values, key = data.target.astype(str), str
    else:
        values, key = _numeric_target(data), _json_label
    index = {label: i for i, label in enumerate(labels)}
    distinct, inverse = np.unique(values, return_inverse=True)
    codes = np.array([index.get(key(value), -1) for value in distinct], np.int64)[inverse]
    if (codes < 0).any():
        row = int(np.argmax(codes < 0))
        raise DataError(f"{data.path}, {data.where(row)}: target {data.target_name!r} is "
                        f"{data.target[row].item()!r}, a class the model was not trained on; "
                        f"it knows {labels[:20]}")
    return codes


# ------------------------------------------------------------ the dev split, scaling
def split(X: np.ndarray, y: np.ndarray, dev, seed: int, stratify: bool):
    """((X_train, y_train), (X_dev, y_dev)) by :func:`fastmlp.data.train_dev_test_split`
    (no test part; stratified for classification); dev None when ``dev`` is 0."""
    if dev == 0:
        return (X, y), None
    train, dev_part, _ = train_dev_test_split(X, y, dev=dev, test=0, stratify=stratify,
                                              seed=seed)
    return train, dev_part


def standardize(train: np.ndarray, *others: np.ndarray):
    """(x - mean) / std with the training set's statistics (std 0 taken as 1)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return [(x - mean) / std for x in (train, *others)]

