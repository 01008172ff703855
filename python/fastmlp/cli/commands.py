"""The commands that train a model and use a saved one: train, evaluate, predict and
diagnose (search is in :mod:`fastmlp.cli.search`, the demo in :mod:`fastmlp.cli.demo`).
Each takes the parsed arguments and returns the exit status."""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .._files import write_atomically
from ..io.sources import Source, pyarrow_module
from ..tools.diagnosis import diagnose
from ..nn.losses import get_loss
from ..nn.stacks import mlp_layers
from ..model.sequential import Sequential
from ..train.distributed import MPI
from ..nn.regularizers import L1L2
from .._memory import available_memory
from .memory import training_memory, unaffordable
from .metadata import Meta, labels_of, load_model, model_data, model_parquet
from .options import DataError, UsageError, shows_progress
from .params import build_optimizer, resolve_hyperparameters
from .parquet import EncodedRows, is_parquet, read_parquet, surveyed_target, write_parquet
from .tabular import (choose_loss, encode_target, fit_labels, read_data, read_training_data,
                      split)


# ------------------------------------------------------------ output files
def check_output(path: str) -> None:
    """Fail before the work if ``path`` cannot be written: its folder must exist."""
    folder = os.path.dirname(os.path.abspath(path))
    if path != "-" and not os.path.isdir(folder):
        raise DataError(f"cannot write {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise DataError(f"cannot write {path}: it is a folder")


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8), or to stdout for "-"."""
    if path == "-":
        sys.stdout.write(text)
        return
    write_atomically(path, lambda file: file.write(text.encode("utf-8")))


def _scores_line(name: str, scores: Dict[str, float], n: int) -> str:
    values = "  ".join(f"{key} {value:.4f}" for key, value in scores.items())
    return f"{name:<6} {values}  ({n} samples)"


# ------------------------------------------------------------ train
def _build_model(args, input_dim: int, n_outputs: int, loss: str) -> Sequential:
    """[Normalization] + Dense(width, activation) [+ Dropout(rate)] per --hidden width,
    then Dense(outputs) (logits: the loss applies the softmax or sigmoid)."""
    layers = mlp_layers(args.hidden, n_outputs, activation=args.activation,
                        dropout=args.dropout, normalize=args.normalize)
    regularizer = L1L2(l1=args.l1, l2=args.l2) if args.l1 or args.l2 else None
    return Sequential(layers, input_dim=input_dim, loss=loss, backend=args.backend,
                      dtype=args.dtype, seed=args.seed, regularizer=regularizer,
                      precision=args.precision)


def check_memory(args, input_dim: int, n_outputs: int) -> None:
    """UsageError before anything is allocated when the network of --hidden widths and a
    --batch-size batch would not fit in the memory this machine has available."""
    need = training_memory((input_dim, *args.hidden, n_outputs), batch_size=args.batch_size,
                           itemsize=4 if args.precision else np.dtype(args.dtype).itemsize,
                           optimizer=args.optimizer)
    reason = unaffordable(need, available_memory())
    if reason is not None:
        raise UsageError(f"{reason}; choose a smaller --hidden (or --batch-size)")


def describe_target(target_name: Optional[str], labels: Optional[list]) -> str:
    """The target's name and classes (or "regression"), for train's and search's lines."""
    if labels is None:
        return f"target {target_name!r} (regression)"
    shown = ", ".join(map(str, labels[:10])) + (", ..." if len(labels) > 10 else "")
    return f"target {target_name!r} ({len(labels)} classes: {shown})"


class TrainingSets(NamedTuple):
    """What train reads: the target's name and the feature columns' (None for NPZ), the
    loss and classes, the training and dev sets as fit and evaluate take them ((X, y)
    arrays, or (source, None) for Parquet; dev None without one) and how they were
    made."""

    path: str
    target_name: Optional[str]
    n_features: int
    features: Optional[List[str]]
    loss: str
    labels: Optional[list]
    train: tuple
    dev: Optional[tuple]
    dev_split: float                # --dev as saved in the metadata (0: no split)
    how: str                        # how the dev set was made, for train's first line


def _rows(pair: tuple) -> int:
    """The rows of a training or dev set as :class:`TrainingSets` holds it."""
    X = pair[0]
    return len(X) if isinstance(X, np.ndarray) else sum(X.chunk_sizes())


def _dev_file(args, features: Optional[List[str]], labels: Optional[list]) -> tuple:
    """--dev-data as evaluate takes it: a Parquet path's rows as a source, else a CSV or
    NPZ file's arrays; the training data's feature columns, by name where it has names
    (--exclude, which chose them, need not name columns of this file)."""
    args = argparse.Namespace(**{**vars(args), "exclude": ()})
    if is_parquet(args.dev_data):
        data = read_parquet(args, args.target, features=features, path=args.dev_data)
        return EncodedRows(data, labels), None
    data = read_data(args, args.target, features=features, path=args.dev_data)
    return data.X, encode_target(data, labels)


def _training_sets(args) -> TrainingSets:
    """train's data: a CSV or NPZ file read whole and split (--dev, stratified for
    classification), or Parquet streamed; --dev-data instead of a split."""
    if args.dev_data is not None and args.dev is not None:
        raise UsageError("give either --dev (a split of DATA) or --dev-data FILE, not both")
    if args.shuffle_buffer is not None and not is_parquet(args.data):
        raise UsageError("--shuffle-buffer sizes a stream's shuffle; a CSV or NPZ file is "
                         "read into memory and shuffled whole")
    if is_parquet(args.data):
        if args.dev:
            raise UsageError("--dev splits data held in memory; Parquet data is streamed: "
                             "hold out a dev set in its own file and give it as --dev-data")
        data = read_parquet(args, args.target)
        target = surveyed_target(data)
        loss = choose_loss(target, args.loss)
        labels = fit_labels(target, loss)
        train, dev, dev_split = (EncodedRows(data, labels), None), None, 0
        n_features, features = len(data.features), data.features
    else:
        data, loss, labels = read_training_data(args)
        dev_split = 0 if args.dev_data is not None else 0.2 if args.dev is None else args.dev
        train, dev = split(data.X, encode_target(data, labels), dev_split, args.seed,
                           labels is not None)
        n_features, features = data.X.shape[1], data.features
    if args.dev_data is not None:
        dev, how = _dev_file(args, features, labels), f"dev set {args.dev_data}"
    else:
        how = f"seed {args.seed}" if dev_split else "no dev set"
    check_memory(args, n_features, len(labels) if get_loss(loss).one_hot else 1)
    return TrainingSets(data.path, data.target_name, n_features, features, loss, labels,
                        train, dev, dev_split, how)


def _print_plan(args, sets: TrainingSets, model: Sequential) -> None:
    """train's first two lines: the data and its split, the model and its training."""
    n_dev = 0 if sets.dev is None else _rows(sets.dev)
    print(f"{sets.path}: {_rows(sets.train) + (n_dev if sets.dev_split else 0)} rows, "
          f"{model.input_dim} features, {describe_target(sets.target_name, sets.labels)}; "
          f"train/dev {_rows(sets.train)}/{n_dev} ({sets.how})")
    widths = "-".join(map(str, (model.input_dim, *args.hidden, model.n_outputs)))
    extras = "".join(f" + {name} {value:g}" for name, value in
                     (("dropout", args.dropout), ("l1", args.l1), ("l2", args.l2)) if value)
    print(f"model: {widths} {args.activation}{extras}, {model.loss}, {args.optimizer}, "
          f"{args.epochs} epochs, batch {args.batch_size}, {model.n_params:,} parameters",
          flush=True)


def train_command(args) -> int:
    """Read the data (or stream it, for Parquet), train, report the train and dev scores,
    save the model with what the other commands need to know about the data in its
    metadata (:class:`Meta`). With --distributed every MPI rank trains (the same data,
    split and model on each) and rank 0 alone prints and saves."""
    check_output(args.output)
    resolve_hyperparameters(args)
    optimizer = build_optimizer(args)
    distributed = _distributed(args)
    sets = _training_sets(args)
    n_outputs = len(sets.labels) if get_loss(sets.loss).one_hot else 1
    model = _build_model(args, sets.n_features, n_outputs, sets.loss)
    root = distributed is None or distributed.is_root
    if root:
        _print_plan(args, sets, model)
    streamed = {} if args.shuffle_buffer is None else {"shuffle_buffer": args.shuffle_buffer}
    model.history = model.fit(*sets.train, epochs=args.epochs, batch_size=args.batch_size,
                              optimizer=optimizer, validation_data=sets.dev,
                              verbose=int(shows_progress(args)), distributed=distributed,
                              **streamed)
    if not root:
        return 0
    for name, pair in [("train", sets.train)] + ([("dev", sets.dev)] if sets.dev else []):
        print(_scores_line(name, model.evaluate(*pair), _rows(pair)))
    model.metadata = Meta(sets.target_name, sets.features, sets.labels, sets.dev_split,
                          args.seed).to_metadata()
    model.save(args.output)
    print(f"saved {args.output}")
    return 0


def _distributed(args) -> Optional[MPI]:
    """train's --distributed: the MPI ranks, for data held in memory."""
    if not args.distributed:
        return None
    if is_parquet(args.data) or (args.dev_data is not None and is_parquet(args.dev_data)):
        raise UsageError("--distributed trains on a CSV or NPZ file read into memory on "
                         "every rank; Parquet data is streamed")
    return MPI()


# ------------------------------------------------------------ evaluate, predict
def evaluate_command(args) -> int:
    """Print the model's loss and metric on the data (one JSON object with --json)."""
    model, meta = load_model(args)
    pair = _scored_rows(args, model, meta, args.data)
    scores = model.evaluate(*pair)
    if args.json:
        print(json.dumps({**scores, "samples": _rows(pair)}))
    else:
        print(_scores_line("", scores, _rows(pair)).strip())
    return 0


def _scored_rows(args, model: Sequential, meta: Optional[Meta], path: str) -> tuple:
    """``path``'s rows as evaluate and score take them: a Parquet path's as a source of
    its encoded rows (read a row group at a time), else a CSV or NPZ file's arrays."""
    if is_parquet(path):
        return EncodedRows(model_parquet(args, model, meta, path=path), labels_of(meta)), None
    data = model_data(args, model, meta, path=path)
    return data.X, encode_target(data, labels_of(meta))


def _texts(values: Sequence) -> List[str]:
    """Numbers as the shortest text that reads back as the same value in their dtype;
    labels as their text."""
    return [str(value) for value in values]


def _prediction_columns(model: Sequential, meta: Optional[Meta], X: np.ndarray,
                        proba: bool) -> Tuple[List[str], List[Sequence]]:
    """predict's output columns: the labels (a list of the model's labels) or values (an
    array), one column per output; with ``proba`` one probability column per class
    ("proba_<label>")."""
    labels = labels_of(meta)
    name = meta.target if meta and meta.target else "prediction"
    if proba:
        p = model.predict_proba(X)
        if p.ndim == 1:                      # one sigmoid output: P(class 0), P(class 1)
            p = np.column_stack([1 - p, p])
        names = labels if labels is not None and len(labels) == p.shape[1] \
            else range(p.shape[1])
        return [f"proba_{label}" for label in names], list(p.T)
    predicted = model.predict(X)
    if predicted.ndim == 2:
        return [f"{name}_{j}" for j in range(predicted.shape[1])], list(predicted.T)
    if labels is not None:
        return [name], [[labels[i] for i in predicted.astype(np.int64)]]
    return [name], [predicted]


def predict_command(args) -> int:
    """Write the predictions (labels, values or --proba probabilities) as a CSV file, or
    a Parquet file when --output ends in .parquet."""
    check_output(args.output)
    if is_parquet(args.output):
        pyarrow_module("parquet", "Parquet output (--output *.parquet)")   # before the work
    model, meta = load_model(args)
    if args.proba and not get_loss(model.loss).classifier:
        raise UsageError(f"--proba needs a classification model; {args.model} is a regression "
                         f"model (loss {model.loss!r})")
    if is_parquet(args.data):
        data = model_parquet(args, model, meta, target_required=False)
        blocks = _predicted_chunks(model, meta, data.source, args.proba)
    else:
        data = model_data(args, model, meta, target_required=False)
        blocks = iter([_prediction_columns(model, meta, data.X, args.proba)])
    if args.output == "-":
        try:
            _write_csv(sys.stdout, blocks, data.path)
        except BrokenPipeError:     # a reader that stopped early (| head) is no error:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as Python's
        return 0                                                           # docs advise
    rows = []

    def write(file) -> None:
        if is_parquet(args.output):
            rows.append(write_parquet(file, blocks, data.path))
            return
        text = io.TextIOWrapper(file, encoding="utf-8", newline="")
        rows.append(_write_csv(text, blocks, data.path))
        text.detach()          # write_atomically flushes, syncs and closes the file

    write_atomically(args.output, write)
    print(f"wrote {rows[0]} predictions to {args.output}")
    return 0


def _predicted_chunks(model: Sequential, meta: Optional[Meta], source: Source,
                      proba: bool) -> Iterator[Tuple[List[str], List[List[str]]]]:
    """:func:`_prediction_columns` of a source's chunks in turn (its errors naming the
    chunk): a Parquet file's predictions are computed and written a chunk at a time."""
    for i, (X, _, _) in source.numbered():
        try:
            block = _prediction_columns(model, meta, X, proba)
        except ValueError as exc:
            raise source.in_chunk(exc, i) from None
        yield block


def _write_csv(text, blocks, path: str) -> int:
    """The header, then every block's rows ((header, columns) per block) to the text
    stream ``text``, one write per block, flushed; returns the rows. DataError when
    there are none."""
    rows = 0
    for header, columns in blocks:
        block = io.StringIO()
        writer = csv.writer(block, lineterminator="\n")
        if rows == 0:
            writer.writerow(header)
        writer.writerows(zip(*(_texts(column) for column in columns)))
        text.write(block.getvalue())
        rows += len(columns[0])
    if rows == 0:
        raise DataError(f"{path} has no rows to predict")
    text.flush()
    return rows


# ------------------------------------------------------------ diagnose
def diagnose_command(args) -> int:
    """Errors on the train and dev parts, avoidable bias, variance and remedies."""
    model, meta = load_model(args)
    if args.dev_data is not None:
        if args.dev is not None or args.seed is not None:
            raise UsageError("give either --dev-data or --dev/--seed, not both")
        train = _scored_rows(args, model, meta, args.data)
        dev = _scored_rows(args, model, meta, args.dev_data)
        how = f"dev set {args.dev_data}"
    elif is_parquet(args.data):
        raise UsageError(f"diagnose reads Parquet data ({args.data}) a row group at a time "
                         "and does not split it: give the dev set with --dev-data DEV")
    else:
        data = model_data(args, model, meta)
        y = encode_target(data, labels_of(meta))
        size = args.dev if args.dev is not None else meta.dev if meta else 0.2
        seed = args.seed if args.seed is not None else meta.seed if meta else 0
        if size == 0:
            raise UsageError("diagnose needs a dev set: --dev > 0, or --dev-data FILE")
        train, dev = split(data.X, y, size, seed, get_loss(model.loss).classifier)
        how = f"--dev {size} --seed {seed}"
    report = diagnose(model, train, dev, baseline_error=args.baseline_error,
                      threshold=args.threshold)
    print(f"train/dev: {_rows(train)}/{_rows(dev)} samples ({how})")
    print(report)
    return 0

