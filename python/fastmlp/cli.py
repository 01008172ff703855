"""The ``fastmlp`` command line: train, evaluate, predict, search and diagnose models on
CSV or NPZ data, and ``fastmlp demo``, which trains a ReLU network on scikit-learn's
bundled handwritten digits (no download) with each backend and reports accuracy and speed.

Exit status: 0 on success, 2 for a command line that is wrong (argparse's usage errors,
bad option values), 1 for anything wrong with a file or its data (missing, malformed,
unknown column, non-numeric cell, a model that does not fit the data). Errors are one
line on stderr, never a traceback.

Files next to a model: ``train`` writes ``MODEL`` (the model file, :mod:`fastmlp.modelfile`)
and ``MODEL.meta.json`` (:data:`META_FORMAT`): the target column's name, the feature
columns' names, the class labels in the order of the model's outputs and the dev split,
with the SHA-256 of the model file it belongs to. The other commands read it when it is
there, so predictions come back as the original labels and columns are matched by name.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .backends import BACKENDS, get_backend
from .backends.base import ACTIVATIONS, LOSSES, OPTIMIZERS
from .layers import Dense, Dropout, Normalization
from .network import Sequential

DEMO_SEED = 0
DEMO_EPOCHS = 20
DEMO_BATCH = 32
DEMO_LEARNING_RATE = 0.05
DEMO_HIDDEN = (512, 256, 128)

META_SUFFIX = ".meta.json"
META_FORMAT = "fastmlp-cli-meta"
META_VERSION = 1
AUTO_MAX_CLASSES = 20        # --loss auto: whole numbers with at most this many values
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")


class DataError(Exception):
    """A file or its contents is wrong: reported on one line, exit status 1."""


class UsageError(Exception):
    """Options that do not go together (found after parsing): exit status 2."""


# ------------------------------------------------------------ option types
def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}; got {text!r}")
        return value
    return parse


def _float_where(accept: Callable[[float], bool], expected: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {expected}; got {text!r}")
        return value
    return parse


_positive_float = _float_where(lambda v: v > 0, "a number > 0")
_unit_interval = _float_where(lambda v: 0 <= v <= 1, "a number in [0, 1]")
_dropout_rate = _float_where(lambda v: 0 <= v < 1, "a number in [0, 1)")


def _dev_size(text: str):
    """--dev: a fraction in (0, 1) or a whole number of samples (0: no dev set)."""
    if text.isdigit():
        return int(text)
    return _float_where(lambda v: 0 < v < 1,
                        "a fraction in (0, 1) or a count of samples")(text)


def _hidden(text: str) -> Tuple[int, ...]:
    """--hidden: layer widths separated by commas ("128,64"); "" for no hidden layer."""
    if not text.strip():
        return ()
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise argparse.ArgumentTypeError(
            f"must be layer widths >= 1 separated by commas, e.g. 128,64; got {text!r}")
    return widths


# ------------------------------------------------------------ reading data
@dataclass
class Data:
    """Rows read from a CSV or NPZ file: features X (n, d) float64, the raw target (CSV:
    its strings; NPZ: the array as stored; None if the file has none), the feature
    columns' names (CSV only) and each row's line in the file (CSV only)."""

    path: str
    X: np.ndarray
    target: Optional[np.ndarray]
    target_name: Optional[str]
    features: Optional[List[str]]
    lines: Optional[List[int]]

    def where(self, row: int) -> str:
        """Where row ``row`` is in the file, for messages."""
        return f"line {self.lines[row]}" if self.lines is not None else f"row {row}"


def _read_csv(path: str) -> Tuple[List[str], List[Tuple[str, ...]], List[int]]:
    """The header, the columns (tuples of strings) and each data row's line number.
    Blank lines are skipped; every other row must have the header's number of fields."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file, skipinitialspace=True)
            header = next(reader, None)
            rows, lines = [], []
            for row in reader:
                if not "".join(row).strip():
                    continue
                if len(row) != len(header):
                    raise DataError(f"{path}, line {reader.line_num}: {len(row)} fields, but "
                                    f"the header has {len(header)}")
                rows.append(row)
                lines.append(reader.line_num)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path} is not a readable CSV file: {exc}") from None
    if header is None or not rows:
        raise DataError(f"{path} has no data rows: expected a header row, then one row per "
                        "sample")
    header = [name.strip() for name in header]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(f"{path}: the header names the columns {repeated} more than once")
    return header, list(zip(*rows)), lines


def _column(header: Sequence[str], spec: str, path: str) -> int:
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


def _numbers(cells: Sequence[str], name: str, path: str, lines: List[int]) -> np.ndarray:
    """A CSV column as finite float64 numbers; DataError naming the first bad cell."""
    values, bad = _finite_numbers(cells)
    if bad is not None:
        raise DataError(f"{path}, line {lines[bad]}, column {name!r}: {cells[bad]!r} is not a "
                        "finite number (feature columns must be numeric)")
    return values


def _read_table(path: str, target: Optional[str], target_required: bool,
                features: Optional[List[str]]) -> Data:
    """A CSV file's features and target. ``features`` (the model's feature columns, by
    name) selects and orders the feature columns; otherwise every column but the target
    is one. A missing target column is an error only when ``target_required``."""
    header, columns, lines = _read_csv(path)
    index = None
    if target is not None and (target_required or target in header):
        index = _column(header, target, path)
    if features is not None:
        missing = [name for name in features if name not in header]
        if missing:
            raise DataError(f"{path} lacks the model's feature columns {missing}; its columns "
                            f"are {header}")
        chosen = [header.index(name) for name in features]
    else:
        chosen = [i for i in range(len(header)) if i != index]
    if not chosen:
        raise DataError(f"{path} has no feature column besides the target {header[index]!r}")
    X = np.column_stack([_numbers(columns[i], header[i], path, lines) for i in chosen])
    y = None if index is None else np.array(columns[index])
    return Data(path, X, y, None if index is None else header[index],
                [header[i] for i in chosen], lines)


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
    except (ValueError, OSError, EOFError) as exc:   # not an NPZ file, or pickled objects
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


def _read_data(args, target: Optional[str], target_required: bool = True,
               features: Optional[List[str]] = None, path: Optional[str] = None) -> Data:
    """``path`` (default ``args.data``): NPZ if it ends in .npz, else CSV with a header."""
    path = args.data if path is None else path
    if path.lower().endswith(".npz"):
        return _read_npz(path, args.x_key, args.y_key, target_required)
    if target is None and target_required:
        raise UsageError(f"--target is required for the CSV file {path}: name the column "
                         "to predict (or give its 0-based index)")
    return _read_table(path, target, target_required, features)


# ------------------------------------------------------------ targets and labels
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


def _choose_loss(data: Data, loss: str) -> str:
    """--loss auto: softmax cross-entropy for text, or for whole numbers with at most
    AUTO_MAX_CLASSES distinct values; mse for other numbers."""
    if loss != "auto":
        return loss
    values, bad = _finite_numbers(data.target)
    if bad is not None:
        return "softmax_cross_entropy"
    whole = bool(np.all(np.floor(values) == values))
    return "softmax_cross_entropy" if whole and len(np.unique(values)) <= AUTO_MAX_CLASSES \
        else "mse"


def _fit_labels(data: Data, loss: str) -> Optional[list]:
    """The sorted distinct labels of a classification target (None for mse)."""
    if loss == "mse":
        return None
    labels = [_json_label(v) for v in np.unique(_label_values(data))]
    if len(labels) < 2:
        raise DataError(f"{data.path}: target {data.target_name!r} has a single class "
                        f"{labels}; classification needs at least two")
    if loss == "binary_cross_entropy" and len(labels) != 2:
        raise DataError(f"{data.path}: binary_cross_entropy needs exactly two classes; target "
                        f"{data.target_name!r} has {len(labels)}: {labels[:10]}")
    return labels


def _encode(data: Data, labels: Optional[list]) -> np.ndarray:
    """The target as the model takes it: class indices 0..k-1 into ``labels``, or the
    numbers themselves when there are no labels (mse, or a model saved without them)."""
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


# ------------------------------------------------------------ the model's metadata file
@dataclass(frozen=True)
class Meta:
    """What ``MODEL.meta.json`` records besides the model file: the target column, the
    feature columns (CSV) in the model's input order, the class labels in the order of
    the model's outputs (None for mse) and the dev split that train held out."""

    target: Optional[str]
    features: Optional[List[str]]
    labels: Optional[list]
    dev: float              # --dev as given: a fraction, or a count of samples
    seed: int


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8), or to stdout for "-"."""
    from ._files import write_atomically
    if path == "-":
        sys.stdout.write(text)
        return
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def _write_meta(model_path: str, meta: Meta) -> None:
    entry = {"format": META_FORMAT, "format_version": META_VERSION,
             "model_sha256": _sha256(model_path), "target": meta.target,
             "features": meta.features, "labels": meta.labels,
             "split": {"dev": meta.dev, "seed": meta.seed}}
    _write_text(model_path + META_SUFFIX, json.dumps(entry, indent=1) + "\n")


def _is_list_of(value, types) -> bool:
    return isinstance(value, list) and all(isinstance(v, types) and not isinstance(v, bool)
                                           for v in value)


def _read_meta(model_path: str) -> Optional[Meta]:
    """The model's ``.meta.json`` if there is one (None if not); DataError if it is
    malformed or belongs to another model file (its SHA-256 differs)."""
    path = model_path + META_SUFFIX
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            entry = json.load(file)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from None
    split = entry.get("split") if isinstance(entry, dict) else None
    valid = (isinstance(split, dict) and entry.get("format") == META_FORMAT
             and entry.get("format_version") == META_VERSION
             and isinstance(entry.get("target"), (str, type(None)))
             and (entry.get("features") is None or _is_list_of(entry["features"], str))
             and (entry.get("labels") is None or _is_list_of(entry["labels"], (str, int, float)))
             and isinstance(split.get("dev"), (int, float)) and isinstance(split.get("seed"), int))
    if not valid:
        raise DataError(f"{path} is not a {META_FORMAT} version {META_VERSION} file; delete it "
                        f"to use {model_path} without it")
    if entry.get("model_sha256") != _sha256(model_path):
        raise DataError(f"{path} belongs to another model file than {model_path} (the SHA-256 "
                        "differs: the model was saved again since); delete it or train again")
    return Meta(entry["target"], entry["features"], entry["labels"], split["dev"], split["seed"])


def _check_labels(model: Sequential, labels: Optional[list], path: str) -> None:
    """The labels must match the model's outputs: k for softmax, 2 for one sigmoid."""
    if labels is None:
        return
    expected = {"softmax_cross_entropy": model.n_outputs,
                "binary_cross_entropy": 2 if model.n_outputs == 1 else None}.get(model.loss)
    if expected != len(labels):
        raise DataError(f"{path}{META_SUFFIX} lists {len(labels)} class labels, which does not "
                        f"fit the model ({model.loss}, {model.n_outputs} outputs)")


def _load_model(args) -> Tuple[Sequential, Optional[Meta]]:
    """``args.model`` with its metadata (if any), on ``args.backend`` (None: as saved)."""
    from .modelfile import load
    model = load(args.model, backend=args.backend)
    meta = _read_meta(args.model)
    _check_labels(model, _labels(meta), args.model)
    return model, meta


def _model_data(args, model: Sequential, meta: Optional[Meta], *,
                target_required: bool = True, path: Optional[str] = None) -> Data:
    """Data for a saved model: the target given by --target or recorded at training, the
    feature columns recorded at training (else all the others), as many as it takes."""
    target = args.target if args.target is not None else meta.target if meta else None
    data = _read_data(args, target, target_required, meta.features if meta else None, path)
    if data.X.shape[1] != model.input_dim:
        columns = f" {data.features}" if data.features is not None else ""
        raise DataError(f"{data.path} has {data.X.shape[1]} feature columns{columns}, but the "
                        f"model takes {model.input_dim} features"
                        + ("; is --target the right column?" if data.features else ""))
    return data


def _labels(meta: Optional[Meta]) -> Optional[list]:
    return meta.labels if meta else None


def _split(X: np.ndarray, y: np.ndarray, dev, seed: int, stratify: bool):
    """((X_train, y_train), (X_dev, y_dev)) by :func:`fastmlp.data.train_dev_test_split`
    (no test part; stratified for classification); dev None when ``dev`` is 0."""
    from .data import train_dev_test_split
    if dev == 0:
        return (X, y), None
    train, dev_part, _ = train_dev_test_split(X, y, dev=dev, test=0, stratify=stratify,
                                              seed=seed)
    return train, dev_part


def _check_output(path: str) -> None:
    """Fail before the work if ``path`` cannot be written: its folder must exist."""
    folder = os.path.dirname(os.path.abspath(path))
    if path != "-" and not os.path.isdir(folder):
        raise DataError(f"cannot write {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise DataError(f"cannot write {path}: it is a folder")


def _scores_line(name: str, scores: Dict[str, float], n: int) -> str:
    values = "  ".join(f"{key} {value:.4f}" for key, value in scores.items())
    return f"{name:<6} {values}  ({n} samples)"


# ------------------------------------------------------------ train
def _build_model(args, input_dim: int, n_outputs: int, loss: str) -> Sequential:
    """[Normalization] + Dense(width, activation) [+ Dropout(rate)] per --hidden width,
    then Dense(outputs) (logits: the loss applies the softmax or sigmoid)."""
    layers = [Normalization()] if args.normalize else []
    for units in args.hidden:
        layers.append(Dense(units, args.activation))
        if args.dropout:
            layers.append(Dropout(args.dropout))
    layers.append(Dense(n_outputs))
    return Sequential(layers, input_dim=input_dim, loss=loss, backend=args.backend,
                      dtype=args.dtype, seed=args.seed)


def _describe_target(data: Data, labels: Optional[list]) -> str:
    if labels is None:
        return f"target {data.target_name!r} (regression)"
    shown = ", ".join(map(str, labels[:10])) + (", ..." if len(labels) > 10 else "")
    return f"target {data.target_name!r} ({len(labels)} classes: {shown})"


def _print_plan(args, data: Data, labels: Optional[list], n_train: int, n_dev: int,
                model: Sequential) -> None:
    """train's first two lines: the data and its split, the model and its training."""
    print(f"{data.path}: {len(data.X)} rows, {data.X.shape[1]} features, "
          f"{_describe_target(data, labels)}; train/dev {n_train}/{n_dev} (seed {args.seed})")
    widths = "-".join(map(str, (model.input_dim, *args.hidden, model.n_outputs)))
    dropout = f" + dropout {args.dropout:g}" if args.dropout else ""
    print(f"model: {widths} {args.activation}{dropout}, {model.loss}, {args.optimizer}, "
          f"{args.epochs} epochs, batch {args.batch_size}, {model.n_params:,} parameters",
          flush=True)


def train_command(args) -> int:
    """Read the data, split off a dev set, train, report, save the model and its meta."""
    _check_output(args.output)
    data = _read_data(args, args.target)
    loss = _choose_loss(data, args.loss)
    labels = _fit_labels(data, loss)
    train, dev = _split(data.X, _encode(data, labels), args.dev, args.seed, labels is not None)
    n_outputs = len(labels) if loss == "softmax_cross_entropy" else 1
    model = _build_model(args, data.X.shape[1], n_outputs, loss)
    _print_plan(args, data, labels, len(train[0]), 0 if dev is None else len(dev[0]), model)
    model.history = model.fit(*train, epochs=args.epochs, batch_size=args.batch_size,
                              learning_rate=args.learning_rate, optimizer=args.optimizer,
                              validation_data=dev, verbose=int(args.verbose))
    for name, (X, y) in [("train", train)] + ([("dev", dev)] if dev is not None else []):
        print(_scores_line(name, model.evaluate(X, y), len(X)))
    model.save(args.output)
    _write_meta(args.output, Meta(data.target_name, data.features, labels, args.dev, args.seed))
    print(f"saved {args.output} (and {args.output}{META_SUFFIX})")
    return 0


# ------------------------------------------------------------ evaluate, predict
def evaluate_command(args) -> int:
    """Print the model's loss and metric on the data (one JSON object with --json)."""
    model, meta = _load_model(args)
    data = _model_data(args, model, meta)
    scores = model.evaluate(data.X, _encode(data, _labels(meta)))
    if args.json:
        print(json.dumps({**scores, "samples": len(data.X)}))
    else:
        print(_scores_line("", scores, len(data.X)).strip())
    return 0


def _texts(values: np.ndarray) -> List[str]:
    """Numbers as the shortest text that reads back as the same value in their dtype."""
    return [str(value) for value in values]


def _prediction_columns(model: Sequential, meta: Optional[Meta], X: np.ndarray,
                        proba: bool) -> Tuple[List[str], List[List[str]]]:
    """predict's output as CSV columns: the labels (or values), one column per output;
    with ``proba`` one probability column per class ("proba_<label>")."""
    labels = _labels(meta)
    name = meta.target if meta and meta.target else "prediction"
    if proba:
        p = model.predict_proba(X)
        if p.ndim == 1:                      # one sigmoid output: P(class 0), P(class 1)
            p = np.column_stack([1 - p, p])
        names = labels if labels is not None and len(labels) == p.shape[1] \
            else range(p.shape[1])
        return [f"proba_{label}" for label in names], [_texts(column) for column in p.T]
    predicted = model.predict(X)
    if predicted.ndim == 2:
        return [f"{name}_{j}" for j in range(predicted.shape[1])], \
            [_texts(column) for column in predicted.T]
    if labels is not None:
        return [name], [[str(labels[i]) for i in predicted.astype(np.int64)]]
    return [name], [_texts(predicted)]


def predict_command(args) -> int:
    """Write the predictions (labels, values or --proba probabilities) as a CSV file."""
    _check_output(args.output)
    model, meta = _load_model(args)
    if args.proba and model.loss == "mse":
        raise UsageError(f"--proba needs a classification model; {args.model} is a regression "
                         "model (loss 'mse')")
    data = _model_data(args, model, meta, target_required=False)
    header, columns = _prediction_columns(model, meta, data.X, args.proba)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(zip(*columns))
    _write_text(args.output, text.getvalue())
    if args.output != "-":
        print(f"wrote {len(data.X)} predictions to {args.output}")
    return 0


# ------------------------------------------------------------ diagnose
def diagnose_command(args) -> int:
    """Errors on the train and dev parts, avoidable bias, variance and remedies."""
    from .diagnosis import diagnose
    model, meta = _load_model(args)
    data = _model_data(args, model, meta)
    y = _encode(data, _labels(meta))
    if args.dev_data is not None:
        if args.dev is not None or args.seed is not None:
            raise UsageError("give either --dev-data or --dev/--seed, not both")
        dev_data = _model_data(args, model, meta, path=args.dev_data)
        train, dev = (data.X, y), (dev_data.X, _encode(dev_data, _labels(meta)))
        how = f"dev set {args.dev_data}"
    else:
        size = args.dev if args.dev is not None else meta.dev if meta else 0.2
        seed = args.seed if args.seed is not None else meta.seed if meta else 0
        if size == 0:
            raise UsageError("diagnose needs a dev set: --dev > 0, or --dev-data FILE")
        train, dev = _split(data.X, y, size, seed, model.loss != "mse")
        how = f"--dev {size} --seed {seed}"
    report = diagnose(model, train, dev, baseline_error=args.baseline_error,
                      threshold=args.threshold)
    print(f"train/dev: {len(train[0])}/{len(dev[0])} samples ({how})")
    print(report)
    return 0


# ------------------------------------------------------------ search
def _load_toml(path: str) -> dict:
    try:
        import tomllib
    except ImportError:
        try:
            import tomli as tomllib
        except ImportError:
            raise DataError(f"reading the TOML file {path} needs Python >= 3.11 or the tomli "
                            "package (pip install tomli); or write the space as JSON") from None
    with open(path, "rb") as file:
        try:
            return tomllib.load(file)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid TOML: {exc}") from None


def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as file:
        try:
            return json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path} is not valid JSON: {exc}") from None


def _distribution(spec):
    """One space entry: {"uniform"|"log_uniform"|"int_uniform": [low, high]},
    {"choice": [option, ...]}, or a constant (a list constant becomes a tuple)."""
    from .search import Choice, IntUniform, LogUniform, Uniform
    kinds = {"uniform": Uniform, "log_uniform": LogUniform, "int_uniform": IntUniform}
    if isinstance(spec, list):
        return tuple(spec)
    if not isinstance(spec, dict):
        return spec
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise ValueError(f"expected one key of {list(DISTRIBUTIONS)} (or a constant); got "
                         f"{spec!r}")
    (kind, arguments), = spec.items()
    if kind == "choice":
        return Choice(arguments)
    if not isinstance(arguments, list) or len(arguments) != 2:
        raise ValueError(f"{kind} takes [low, high]; got {arguments!r}")
    return kinds[kind](*arguments)


def _read_space(path: str) -> dict:
    """The search space file (.json, or .toml) as {name: distribution or constant}."""
    if not path.lower().endswith((".json", ".toml")):
        raise DataError(f"the space file {path} must end in .json or .toml")
    entries = _load_toml(path) if path.lower().endswith(".toml") else _load_json(path)
    if not isinstance(entries, dict) or not entries:
        raise DataError(f"{path} must map parameter names to distributions, e.g. "
                        '{"learning_rate": {"log_uniform": [1e-4, 1e-1]}}')
    if "loss" in entries:
        raise DataError(f"{path} sets 'loss'; give the loss with --loss instead (the target's "
                        "encoding depends on it)")
    space = {}
    for name, spec in entries.items():
        try:
            space[name] = _distribution(spec)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{path}, parameter {name!r}: {exc}") from None
    return space


def _executor(args):
    """(executor, n_jobs) for random_search: a Dask scheduler, this process (--jobs 1),
    or a pool of --jobs processes (default: one per CPU, at most one per trial)."""
    if args.scheduler is not None:
        if args.jobs is not None:
            raise UsageError("--jobs sizes the local process pool; the --scheduler's cluster "
                             "decides how many trials run at once")
        return args.scheduler, None
    if args.jobs == 1:
        return "serial", None
    return None, args.jobs


def search_command(args) -> int:
    """Random search in coarse-to-fine rounds; prints the trials and the best parameters."""
    from .search import random_search
    space = _read_space(args.space)
    if args.output:
        _check_output(args.output)
    data = _read_data(args, args.target)
    loss = _choose_loss(data, args.loss)
    labels = _fit_labels(data, loss)
    if args.dev == 0:
        raise UsageError("search scores every trial on a dev set: --dev must be > 0")
    train, dev = _split(data.X, _encode(data, labels), args.dev, args.seed, labels is not None)
    X_train, X_dev = _standardize(train[0], dev[0])
    executor, n_jobs = _executor(args)
    print(f"{data.path}: {_describe_target(data, labels)}, {loss}; train/dev "
          f"{len(X_train)}/{len(X_dev)} (features standardized with the train part's mean "
          "and std)", flush=True)
    result = random_search({**space, "loss": loss}, (X_train, train[1]), (X_dev, dev[1]),
                           trials=args.trials, rounds=args.rounds, epochs=args.epochs,
                           seed=args.seed, executor=executor, n_jobs=n_jobs)
    print(result)
    if args.output:
        _write_text(args.output, json.dumps(result.best_params, indent=1) + "\n")
        print(f"wrote the best parameters to {args.output}")
    return 0


# ------------------------------------------------------------ the parser
def _data_options() -> argparse.ArgumentParser:
    """--target and the NPZ keys: shared by every command that reads data."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--target", metavar="COL",
                         help="the target column of a CSV file: its name, or its 0-based "
                              "index (negative counts from the end)")
    options.add_argument("--x-key", default="X", metavar="KEY",
                         help="the features' array in an NPZ file (default: X)")
    options.add_argument("--y-key", default="y", metavar="KEY",
                         help="the target's array in an NPZ file (default: y)")
    return options


def _model_options() -> argparse.ArgumentParser:
    """MODEL DATA and --backend: shared by the commands that use a saved model."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("model", metavar="MODEL", help="a model file written by train "
                         "(or model.save)")
    options.add_argument("data", metavar="DATA", help="a CSV file with a header row, or an "
                         "NPZ file")
    options.add_argument("--backend", choices=BACKENDS, default=None,
                         help="run on this backend (default: the one it was saved with)")
    return options


def _learning_options(command: argparse.ArgumentParser) -> None:
    """Options that train and search share: the loss, the dev split, the seed."""
    command.add_argument("--loss", choices=("auto",) + LOSSES, default="auto", metavar="NAME",
                         help=f"{', '.join(LOSSES)} or auto (the default): "
                              "softmax_cross_entropy for a target of text or "
                              f"of whole numbers with at most {AUTO_MAX_CLASSES} distinct "
                              "values, else mse")
    command.add_argument("--dev", type=_dev_size, default=0.2,
                         help="the dev set held out: a fraction, or a number of samples "
                              "(default: 0.2; stratified for classification)")
    command.add_argument("--seed", type=_int_at_least(0), default=0,
                         help="seed of the split and the model(s) (default: 0)")


def _add_train(commands, data_options) -> None:
    train = commands.add_parser(
        "train", parents=[data_options], help="train a model on a CSV or NPZ file",
        description="Train a network (Normalization, then Dense layers) on DATA, report "
                    "train and dev loss and metric, save the model.",
        epilog="example: fastmlp train iris.csv --target species --hidden 64,32 "
               "--epochs 50 --output iris.fmlp --verbose")
    train.add_argument("data", metavar="DATA", help="a CSV file with a header row, or an NPZ "
                       "file with arrays X and y")
    train.add_argument("--output", required=True, metavar="MODEL",
                       help="where to save the model (atomically); MODEL.meta.json is "
                            "written next to it")
    train.add_argument("--hidden", type=_hidden, default=(128, 64), metavar="W1,W2,...",
                       help="hidden layer widths (default: 128,64; '' for none)")
    train.add_argument("--activation", choices=ACTIVATIONS, default="relu", metavar="NAME",
                       help=f"hidden layers' activation: {', '.join(ACTIVATIONS)} "
                            "(default: relu)")
    train.add_argument("--dropout", type=_dropout_rate, default=0.0, metavar="RATE",
                       help="a Dropout layer of this rate after each hidden layer "
                            "(default: 0, none)")
    train.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", metavar="NAME",
                       help=f"{', '.join(OPTIMIZERS)} (default: adam)")
    train.add_argument("--learning-rate", type=_positive_float, default=None, metavar="LR",
                       help="(default: the optimizer's, 1e-3 for adam)")
    train.add_argument("--epochs", type=_int_at_least(1), default=20, help="(default: 20)")
    train.add_argument("--batch-size", type=_int_at_least(1), default=32,
                       help="(default: 32)")
    train.add_argument("--backend", choices=BACKENDS, default="native",
                       help="(default: native)")
    train.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="(default: float32)")
    train.add_argument("--no-normalize", dest="normalize", action="store_false",
                       help="no Normalization layer (by default the first layer "
                            "standardizes each feature with the training data's mean and std)")
    train.add_argument("--verbose", action="store_true", help="print a line per epoch")
    _learning_options(train)
    train.set_defaults(run=train_command)


def _add_evaluate_predict(commands, data_options, model_options) -> None:
    evaluate = commands.add_parser(
        "evaluate", parents=[model_options, data_options], help="print a model's loss and "
        "metric on data", description="Print the model's mean loss and its metric (accuracy "
        "or r2) on DATA. --target defaults to the column the model was trained on.",
        epilog="example: fastmlp evaluate iris.fmlp iris-test.csv --json")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=evaluate_command)
    predict = commands.add_parser(
        "predict", parents=[model_options, data_options], help="write predictions as CSV",
        description="Write the model's predictions for DATA as a CSV file with a header: "
                    "the labels (or values), or with --proba one probability column per "
                    "class. A target column in DATA is ignored.",
        epilog="example: fastmlp predict iris.fmlp new.csv --output preds.csv --proba")
    predict.add_argument("--output", required=True, metavar="CSV",
                         help="the predictions' file (written atomically; '-' for stdout)")
    predict.add_argument("--proba", action="store_true",
                         help="class probabilities instead of labels")
    predict.set_defaults(run=predict_command)


def _add_search(commands, data_options) -> None:
    search = commands.add_parser(
        "search", parents=[data_options], help="random hyperparameter search",
        description="Random search in coarse-to-fine rounds (fastmlp.search.random_search) "
                    "over the space in SPACE: each trial trains on the train part and is "
                    "scored on the dev part (features standardized).",
        epilog='space file example (JSON): {"learning_rate": {"log_uniform": [1e-4, 1e-1]}, '
               '"hidden": {"choice": [[64], [128, 64]]}, "batch_size": {"int_uniform": '
               '[16, 128]}, "dropout": {"uniform": [0, 0.5]}, "optimizer": "adam"}')
    search.add_argument("data", metavar="DATA", help="a CSV file with a header row, or an NPZ "
                        "file")
    search.add_argument("--space", required=True, metavar="SPACE",
                        help="a .json or .toml file mapping parameter names to "
                             f"{{{'|'.join(DISTRIBUTIONS)}: ...}} or constants")
    search.add_argument("--trials", type=_int_at_least(1), default=20,
                        help="trials per round (default: 20)")
    search.add_argument("--rounds", type=_int_at_least(1), default=2,
                        help="coarse-to-fine rounds (default: 2)")
    search.add_argument("--epochs", type=_int_at_least(1), default=5,
                        help="epochs per trial (default: 5)")
    search.add_argument("--jobs", type=_int_at_least(1), default=None, metavar="N",
                        help="local processes (default: one per CPU; 1: in this process)")
    search.add_argument("--scheduler", metavar="ADDRESS",
                        help="run the trials on a Dask cluster, e.g. tcp://host:8786")
    search.add_argument("--output", metavar="JSON", help="write the best parameters here")
    _learning_options(search)
    search.set_defaults(run=search_command)


def _add_diagnose(commands, data_options, model_options) -> None:
    diagnose = commands.add_parser(
        "diagnose", parents=[model_options, data_options], help="bias/variance diagnosis",
        description="Compare the model's error on the train and dev parts with the baseline "
                    "error: avoidable bias, variance, and what to try. By default DATA is "
                    "split as train split it (--dev and --seed recorded in MODEL.meta.json); "
                    "with --dev-data, DATA is the training set and DEV the dev set.",
        epilog="example: fastmlp diagnose iris.fmlp iris.csv --baseline-error 0.02")
    diagnose.add_argument("--dev", type=_dev_size, default=None,
                          help="the dev part of DATA (default: as train used, else 0.2)")
    diagnose.add_argument("--seed", type=_int_at_least(0), default=None,
                          help="seed of the split (default: as train used, else 0)")
    diagnose.add_argument("--dev-data", metavar="DEV", help="a separate dev set file")
    diagnose.add_argument("--baseline-error", type=_unit_interval, default=0.0,
                          metavar="ERROR", help="human-level or Bayes error (default: 0)")
    diagnose.add_argument("--threshold", type=_unit_interval, default=0.05,
                          help="a gap above this is high (default: 0.05)")
    diagnose.set_defaults(run=diagnose_command)


def _add_demo(commands) -> None:
    demo_parser = commands.add_parser(
        "demo", help="train on the digits with each backend and report accuracy and speed")
    demo_parser.add_argument("--backend", choices=("native", "numpy", "both"), default="both",
                             help="backend(s) to train with (default: both)")
    demo_parser.add_argument("--epochs", type=_int_at_least(1), default=DEMO_EPOCHS,
                             help=f"training epochs (default: {DEMO_EPOCHS})")
    demo_parser.add_argument("--seed", type=_int_at_least(0), default=DEMO_SEED,
                             help=f"seed of the split and the model (default: {DEMO_SEED})")
    demo_parser.set_defaults(run=lambda args: demo(args.backend, args.epochs, args.seed))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastmlp", description="Train, evaluate, predict, search and diagnose fastmlp "
        "models on CSV or NPZ data; `fastmlp COMMAND --help` for each command.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_options, model_options = _data_options(), _model_options()
    _add_train(commands, data_options)
    _add_evaluate_predict(commands, data_options, model_options)
    _add_search(commands, data_options)
    _add_diagnose(commands, data_options, model_options)
    _add_demo(commands)
    for command in commands.choices.values():
        command.set_defaults(parser=command)
    return parser


# ------------------------------------------------------------ demo
def _stratified_split(y: np.ndarray, rng: np.random.Generator):
    """Row indices of a 60/20/20 train/dev/test split, stratified by class."""
    parts = ([], [], [])
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        cut = np.round(np.array([0.6, 0.8]) * len(rows)).astype(int)
        for part, chunk in zip(parts, np.split(rows, cut)):
            part.append(chunk)
    return [rng.permutation(np.concatenate(part)) for part in parts]


def _standardize(train: np.ndarray, *others: np.ndarray):
    """(x - mean) / std with the training set's statistics (std 0 taken as 1)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return [(x - mean) / std for x in (train, *others)]


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    return load_digits(return_X_y=True)


def _train_once(backend: str, data, epochs: int, seed: int) -> None:
    (X_train, y_train), dev, _ = data
    layers = [Dense(units, "relu") for units in DEMO_HIDDEN] + [Dense(10)]
    model = Sequential(layers, input_dim=X_train.shape[1], backend=backend, seed=seed)
    print(f"\n== backend {backend}: {X_train.shape[1]}-"
          f"{'-'.join(map(str, DEMO_HIDDEN))}-10 ReLU network, {model.n_params:,} parameters, "
          f"SGD lr {DEMO_LEARNING_RATE}, batch {DEMO_BATCH}, {epochs} epochs", flush=True)
    started = time.perf_counter()
    model.fit(X_train, y_train, epochs=epochs, batch_size=DEMO_BATCH,
              learning_rate=DEMO_LEARNING_RATE, validation_data=dev, verbose=1)
    seconds = time.perf_counter() - started
    scores = [model.score(X, y) for X, y in data]
    print("accuracy  train {:.4f}  dev {:.4f}  test {:.4f}".format(*scores))
    print(f"training  {seconds:.2f} s, {epochs * len(X_train) / seconds:,.0f} samples/s "
          "(including the per-epoch dev evaluation)")


def demo(backend: str, epochs: int, seed: int) -> int:
    """Run the digits demo; returns the exit status."""
    names = ["native", "numpy"] if backend == "both" else [backend]
    try:
        for name in names:
            get_backend(name)
    except ImportError as exc:
        print(f"fastmlp demo: {exc}", file=sys.stderr)
        return 1
    digits = _load_digits()
    if digits is None:
        print('fastmlp demo needs scikit-learn for its bundled digits data set: '
              'pip install "fastmlp[demo]"', file=sys.stderr)
        return 1
    X, y = digits
    train, dev, test = _stratified_split(y, np.random.default_rng(seed))
    X_train, X_dev, X_test = _standardize(X[train], X[dev], X[test])
    data = ((X_train, y[train]), (X_dev, y[dev]), (X_test, y[test]))
    print(f"digits: {len(X)} images of 8x8 pixels, 10 classes; train/dev/test "
          f"{len(train)}/{len(dev)}/{len(test)} (stratified, seed {seed})")
    for name in names:
        _train_once(name, data, epochs, seed)
    return 0



def _message(exc: BaseException) -> str:
    """One line for the user: "PATH: reason" for a file error, else the message."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``fastmlp`` console script; returns the exit status (0 done,
    1 a data or file error, 2 a usage error; argparse exits with 2 itself)."""
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
        args.parser.error(str(exc))
    except KeyboardInterrupt:
        print(f"fastmlp {args.command}: interrupted", file=sys.stderr)
        return 130
    except (DataError, ValueError, TypeError, OSError, ImportError) as exc:
        print(f"fastmlp {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 1
