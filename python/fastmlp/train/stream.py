"""fit's epochs over a streamed source (:mod:`fastmlp.io.sources`), with memory bounded by
the buffers, not the data (README "Training from disk").

An epoch reads the source's chunks as one stream of rows: a source whose chunks can be
read in any order in a chunk order drawn for the epoch, an iterator in its own order. With
``shuffle`` the rows pass through a sliding shuffle buffer of ``buffer_rows`` rows (B, a
multiple of the batch size), as ``tf.data``'s ``shuffle`` a batch at a time: each step
gives out ``batch`` rows drawn at random from the buffer and refills their slots with the
stream's next rows (:class:`_ShuffleBuffer`; docs/streaming.md gives the exact draws).
The rows given out are trained on in *blocks* of B rows, B / batch steps each, in one
call over the buffer's arrays; every row is visited once per epoch, in
``ceil(n / batch)`` steps, as in an in-memory epoch. Without ``shuffle`` the chunks come in
their order and the rows in turn, B a block.

The draws: one 64-bit seed per epoch from ``model.shuffle_rng`` (as the in-memory
epoch's), which seeds a PCG64 bit generator whose raw 64-bit outputs give the chunk order
(the backend's ``shuffled_order`` of the first) and then the buffer's draws. The epoch's order is therefore a function
of the seed and the source, so a checkpoint after step s resumes by reading the stream
again: without shuffle from the block that holds row ``s * batch`` (skipping the chunks
before it unread when their sizes are known), with shuffle from the epoch's start,
replaying the earlier blocks' draws without training on them.

A MultiTask's targets are ``{head: y}`` throughout (its chunks', the buffers' arrays).
A background thread reads and converts the stream (``model.prepare_data`` per chunk, in
the model's dtype) and draws the next block once the trainer (GIL released) has taken the
one before. With shuffle the rows stay in arrays of 3B rows where they were read, a block
training on the rows it gave out (an ``order`` into those arrays); without, two arrays of
B rows are used in turn; plus the chunk being converted.

Before the first epoch a *survey* pass reads the source once when fit needs what only the
whole data tells: the number of rows (an iterator's, a Dask DataFrame's), the class
labels of a classifier (or of each MultiTask classification head) that has none yet, the
class counts of
``class_weight="balanced"``, or the mean and standard deviation of an unadapted
Normalization first layer (merged per chunk with Chan et al.'s pairwise formula, in
float64).
"""
from __future__ import annotations

import functools
import math
import queue
import threading
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from .._sparse import CsrRows
from ..io.sources import Source, map_targets
from ..nn.layers import Normalization
from ..nn.losses import get_loss
from .arguments import sample_weights
from .steps import TrainingData

__all__ = ["DEFAULT_BUFFER_BYTES", "StreamData"]

#: The default shuffle buffer: as many rows as fit in this many bytes of the model's
#: dtype (features, targets and weights), rounded down to a multiple of the batch size.
DEFAULT_BUFFER_BYTES = 128 << 20


class StreamData:
    """A streamed training set as fit's loop uses it: ``n`` rows in steps of ``batch``,
    read in blocks of ``buffer_rows`` (:meth:`blocks`)."""

    def __init__(self, model, source: Source, batch: int, buffer_rows: Optional[int],
                 class_weight):
        self.model, self.source = model, source
        self.class_weight = class_weight
        self._sizes = None
        self._rows: Optional[_Rows] = None        # the blocks' (and the buffer's) arrays
        first = self._survey()
        self.batch = batch = min(batch, self.n)
        if buffer_rows is None:
            outputs = sum(n_outputs for _, _, n_outputs in _targets_of(model).values())
            row_bytes = (model.input_dim + outputs + 1) * model.dtype.itemsize
            buffer_rows = max(batch, DEFAULT_BUFFER_BYTES // row_bytes)
        elif buffer_rows < batch:
            raise ValueError(f"shuffle_buffer ({buffer_rows:,} rows) must hold at least one "
                             f"batch ({batch:,} rows)")
        whole = -(-self.n // batch) * batch        # a buffer of all rows: no larger one
        self.buffer_rows = min(buffer_rows // batch * batch, whole)
        self.first_rows = first

    # ------------------------------------------------------------------ the survey
    def _survey(self) -> np.ndarray:
        """The rows (known or counted), the classes, the class counts and the first
        layer's Normalization, from one pass when needed; returns the first chunk's X,
        prepared (the scale warning's sample)."""
        model, source = self.model, self.source
        self._sizes = source.chunk_sizes()
        targets = _targets_of(model)
        unlearned = [key for key, (loss, classes, _) in targets.items()
                     if loss.classifier and classes is None]
        labels = bool(unlearned)
        balanced = isinstance(self.class_weight, str)
        first_layer = model.layers[0]
        normalize = isinstance(first_layer, Normalization) and not first_layer.adapted
        for later in model.layers[1:]:
            if isinstance(later, Normalization) and not later.adapted:
                raise ValueError("a streamed fit adapts only a Normalization first layer; "
                                 f"adapt {later!r} before fit (model.adapt(X_sample))")
        if self._sizes is not None and not (labels or balanced or normalize):
            return self._first_rows()      # the first chunk is all fit needs
        survey = _Survey(normalize)
        first, pieces = self._surveyed(normalize)
        for X, y in pieces:
            first = X if first is None else first
            y = _label_shaped(self.source.checked_targets(y), targets)
            survey.add(X, y, unlearned, balanced)
        if first is None:
            raise ValueError(f"the {source.kind} source holds no rows")
        if self._sizes is not None and survey.rows != sum(self._sizes):
            raise ValueError(f"the {source.kind} source read {survey.rows:,} rows; its chunks "
                             f"say {sum(self._sizes):,}")
        self.n_counted = survey.rows
        if labels:     # the model's rule, as fit learns them: from every label, or one-hot
            sample = survey.label_sample()
            model.prepare_data(np.zeros((_target_rows(sample), model.input_dim), model.dtype),
                               sample)
        if balanced:
            self.class_weight = survey.balanced(self.class_weight)
        if normalize:
            first_layer.set_moments(*survey.moments())
        return first

    def _first_rows(self) -> np.ndarray:
        """The first non-empty chunk's X, checked and converted (the scale warning's
        sample); ValueError for a source without rows."""
        for i, (X, _, _) in self.source.numbered():
            return self._checked(i, X)
        raise ValueError(f"the {self.source.kind} source holds no rows")

    def _surveyed(self, features: bool) -> Tuple[Optional[np.ndarray], Iterator[tuple]]:
        """(the first chunk's X if read apart, the (X, y) of every chunk): X checked and
        converted when ``features`` or for the first chunk, else None. A source that reads
        its targets alone (:meth:`fastmlp.io.sources.Source.targets`) reads its first
        chunk, then only them."""
        if not features and type(self.source).targets is not Source.targets:
            return self._first_rows(), ((None, y) for y in self.source.targets() if len(y))
        return None, ((self._checked(i, X) if features or n == 0 else None, y)
                      for n, (i, (X, y, _)) in enumerate(self.source.numbered()))

    def _checked(self, i: int, X) -> np.ndarray:
        try:
            return self._features(X)
        except ValueError as exc:
            raise self.source.in_chunk(exc, i) from None

    def _features(self, X) -> np.ndarray:
        """A chunk's X checked and converted as fit's (dense only)."""
        X = self.model.as_input(X)
        if type(X) is CsrRows:
            raise TypeError("a streamed fit takes dense chunks; sparse X trains from arrays")
        return X

    @property
    def n(self) -> int:
        return sum(self._sizes) if self._sizes is not None else self.n_counted

    @property
    def n_batches(self) -> int:
        return -(-self.n // self.batch)

    # ------------------------------------------------------------------ an epoch
    def plan(self, seed: Optional[int]) -> "_EpochPlan":
        """The epoch's chunk order and the shuffle buffer's draws from its ``seed`` (None:
        no shuffle)."""
        if seed is None:
            return _EpochPlan(None, None)
        bits = np.random.PCG64(seed)
        first = int(bits.random_raw())          # the chunk order's (unused by an iterator)
        order = (None if self._sizes is None
                 else self.model.backend.shuffled_order(len(self._sizes), first))
        return _EpochPlan(order, _Draws(bits))

    def blocks(self, plan: "_EpochPlan", first_step: int) -> "_BlockReader":
        """The epoch's blocks from the one holding step ``first_step`` on, read ahead on a
        background thread: each a :class:`Block`."""
        first_block = first_step * self.batch // self.buffer_rows
        if plan.draws is None:
            return _BlockReader(self._blocks_in_order(plan, first_block))
        return _BlockReader(self._shuffled_blocks(plan, first_block))

    def _blocks_in_order(self, plan: "_EpochPlan",
                         first_block: int) -> Iterator[Callable[[], "Block"]]:
        """Without shuffle: the stream's rows in turn, B a block; the blocks before
        ``first_block`` skipped (unread where the chunks' sizes say where they end). Each
        item reads its block when called."""
        first_row = first_block * self.buffer_rows
        feed = _RowFeed(self._prepared(plan.order, first_row), first_row)
        for index in range(first_block, self.n_blocks):
            yield functools.partial(self._next_rows, feed, index)
        self._fed(feed.rest(), 0)

    def _next_rows(self, feed: "_RowFeed", index: int) -> "Block":
        """Block ``index`` read into one half of arrays of 2B rows used in turn (the other
        half holds the block training meanwhile)."""
        rows = min(self.buffer_rows, self.n - index * self.buffer_rows)
        if self._rows is None:                   # allocated once a fit, used every epoch
            self._rows = feed.arrays(2 * self.buffer_rows)
        half = (index % 2) * self.buffer_rows
        self._fed(feed.into(self._rows, slice(half, half + rows)), rows)
        return self._block(index, self._rows, np.arange(half, half + rows, dtype=np.int64))

    def _shuffled_blocks(self, plan: "_EpochPlan",
                         first_block: int) -> Iterator[Callable[[], "Block"]]:
        """With shuffle: the sliding shuffle buffer's blocks (docs/streaming.md), each B
        rows in the order the buffer gives them out; the blocks before ``first_block``
        replayed (read and drawn, not trained) to reach its state. Each item reads its
        block's incoming rows and draws its steps when called."""
        feed = _RowFeed(self._prepared(plan.order, 0), 0)
        if self._rows is None or len(self._rows.X) != 3 * self.buffer_rows:
            self._rows = feed.arrays(3 * self.buffer_rows)     # once a fit, every epoch
        buffer = _ShuffleBuffer(self.buffer_rows, self.batch, feed, plan.draws, self._rows)
        self._fed(buffer.size, min(self.buffer_rows, self.n))
        for index in range(self.n_blocks):
            if index >= first_block:
                yield functools.partial(self._given_out, buffer, index)
            else:
                self._given_out(buffer, index)
        self._fed(feed.rest(), 0)

    def _given_out(self, buffer: "_ShuffleBuffer", index: int) -> "Block":
        """Block ``index``: its incoming rows read, then its steps drawn (the block trains
        on the buffer's arrays in the order given out)."""
        expected = min(self.buffer_rows, self.n - (index + 1) * self.buffer_rows)
        self._fed(buffer.take_incoming(), max(0, expected))
        return self._block(index, buffer.rows, buffer.give_out())

    @property
    def n_blocks(self) -> int:
        return -(-self.n // self.buffer_rows)

    def _fed(self, got: int, expected: int) -> None:
        """ValueError unless the stream gave the ``expected`` rows."""
        if got != expected:
            raise ValueError(f"the {self.source.kind} source gave {'more' if got > expected else 'fewer'} "
                             f"rows this epoch than the {self.n:,} fit counted: a source must "
                             f"give the same rows every pass")

    def _prepared(self, order, skip: int) -> Iterator[Tuple[np.ndarray, np.ndarray,
                                                           Optional[np.ndarray]]]:
        """The stream's chunks from row ``skip`` on, checked and converted: chunks before
        it are not read when their sizes are known (an iterator's are read and dropped)."""
        sizes, chunks = self._sizes, None
        if sizes is not None:
            chunks = list(range(len(sizes)) if order is None else order)
            first = 0
            while first < len(chunks) and sizes[chunks[first]] <= skip:
                skip -= sizes[chunks[first]]
                first += 1
            chunks = chunks[first:]
        for i, (X, y, w) in self.source.numbered(chunks):
            if skip >= len(X):
                skip -= len(X)
                continue
            X, Y, W = self._converted(i, X, y, w)
            if skip:
                X, Y, W = X[skip:], Y[skip:], None if W is None else W[skip:]
                skip = 0
            yield X, Y, W

    def _converted(self, i: int, X, y, w) -> Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """Chunk ``i``'s rows as fit's arrays: X and Y in the model's dtype, the row
        weights (None without); a conversion's error names the chunk."""
        y = self.source.checked_targets(y)
        if w is not None and None not in _targets_of(self.model):
            raise ValueError(f"the {self.source.kind} source gives sample weights; a "
                             f"{type(self.model).__name__} trains without them")
        try:
            X, Y = self.model.prepare_data(self._features(X), y, learn_classes=False)
            return X, Y, sample_weights(self.model, X, Y, w, self.class_weight)
        except ValueError as exc:
            raise self.source.in_chunk(exc, i) from None

    def _block(self, index: int, rows: "_Rows", order: np.ndarray) -> "Block":
        data = TrainingData(rows.X, rows.Y, rows.W, self.batch, n_samples=self.n,
                            first_step=index * self.buffer_rows // self.batch,
                            epoch_batches=self.n_batches)
        return Block(data, order)


class Block:
    """One block of an epoch: its rows (``data``, a TrainingData numbering its steps in
    the epoch) and the order its steps visit them in (all of them, or for a shuffled
    stream the rows the buffer gave out, of the arrays holding the buffer too)."""

    def __init__(self, data: TrainingData, order: np.ndarray):
        self.data, self.order = data, order

    @property
    def steps(self) -> int:
        return -(-len(self.order) // self.data.batch)


class _EpochPlan:
    def __init__(self, order: Optional[np.ndarray], draws: Optional["_Draws"]):
        self.order, self.draws = order, draws


class _Rows:
    """Rows of features, targets (an array, or a MultiTask's dict of each head's) and
    weights (None without)."""

    def __init__(self, X: np.ndarray, Y, W: Optional[np.ndarray]):
        self.X, self.Y, self.W = X, Y, W


class _RowFeed:
    """The stream's converted rows (``pieces``, from row ``read`` of the epoch on),
    copied into arrays a run at a time."""

    def __init__(self, pieces: Iterator[Tuple[np.ndarray, np.ndarray, Optional[np.ndarray]]],
                 read: int):
        self._pieces, self._piece, self._at = pieces, None, 0
        self.read = read

    def _next_piece(self) -> bool:
        while self._piece is None or self._at == len(self._piece[0]):
            self._piece, self._at = next(self._pieces, None), 0
            if self._piece is None:
                return False
        return True

    def arrays(self, rows: int) -> _Rows:
        """Empty arrays for ``rows`` rows shaped as the stream's (None: no rows left)."""
        if not self._next_piece():
            return _Rows(np.empty((0, 0)), np.empty((0, 0)), None)
        X, Y, W = self._piece
        return _Rows(np.empty((rows, X.shape[1]), X.dtype),
                     map_targets(Y, lambda Y: np.empty((rows, Y.shape[1]), Y.dtype)),
                     None if W is None else np.empty(rows, W.dtype))

    def into(self, rows: _Rows, to: np.ndarray) -> int:
        """The next ``len(to)`` rows (fewer at the stream's end) into rows ``to`` (an
        index array, or a slice of consecutive rows); returns how many."""
        done, count = 0, len(range(*to.indices(len(rows.X)))) if type(to) is slice else len(to)
        while done < count and self._next_piece():
            X, Y, W = self._piece
            if (W is None) != (rows.W is None):
                raise ValueError("a source's chunks must all have sample weights or none")
            take = min(count - done, len(X) - self._at)
            at = self._at
            where = (slice(to.start + done, to.start + done + take) if type(to) is slice
                     else to[done:done + take])
            rows.X[where] = X[at:at + take]
            for into, Y_part in _target_pairs(rows.Y, Y):
                into[where] = Y_part[at:at + take]
            if W is not None:
                rows.W[where] = W[at:at + take]
            self._at += take
            done += take
        self.read += done
        return done

    def rest(self) -> int:
        """The rows left in the stream (read to its end)."""
        left = 0
        while self._next_piece():
            left += len(self._piece[0]) - self._at
            self._at = len(self._piece[0])
        return left


class _Draws:
    """The shuffle buffer's draws from the epoch's generator (docs/streaming.md): a
    step's ``take`` distinct slots of ``size``, each draw ``j = ((u >> 32) * size) >> 32``
    from one raw 64-bit output ``u``, drawn until ``take`` distinct slots came, in the
    order they first came."""

    def __init__(self, bit_generator):
        self._bits = bit_generator

    def distinct(self, size: int, take: int) -> np.ndarray:
        chosen = np.empty(0, np.int64)
        while len(chosen) < take:
            u = self._bits.random_raw(take - len(chosen))
            drawn = ((u >> np.uint64(32)) * np.uint64(size) >> np.uint64(32)).astype(np.int64)
            values = np.concatenate([chosen, drawn])
            _, first = np.unique(values, return_index=True)
            chosen = values[np.sort(first)]
        return chosen


class _ShuffleBuffer:
    """The sliding shuffle buffer of one epoch (docs/streaming.md): ``capacity`` (B) rows
    in slots; each step gives out ``batch`` slots drawn at random and refills them with
    the stream's next rows; B steps' worth of rows make a block.

    The rows live in arrays of 3B rows (``rows``), where they stay: the slots in order
    are ``slot_rows`` without the positions in ``removed`` (slots removed since the last
    compaction), each holding the row it names. A block trains on the rows it gave out
    while the next block's incoming rows are read into the rows the block before it gave
    out (free by then): the buffer's B rows, the block's and the next block's incoming
    rows.

    Removing slots from the middle of an array moves its tail, so the epoch's end, where
    no row refills them and every step removes ``batch`` slots, would cost B^2 / batch
    moves. Removed slots are therefore marked (``removed``, sorted) and compacted in bulk
    once there are sqrt(2 B batch) of them, which balances the marks' upkeep against the
    compactions; a draw's slot is found past the marks (:meth:`_positions`). Draining a
    buffer of 486,000 slots (the default for 64 float32 features and 4 outputs) at batch
    128, draws included, took 0.97 s with a removal per step and takes 0.23 s so."""

    def __init__(self, capacity: int, batch: int, feed: _RowFeed, draws: _Draws,
                 rows: _Rows):
        self.capacity, self.batch, self.feed, self.draws = capacity, batch, feed, draws
        self.rows = rows
        self.size = feed.into(rows, slice(0, capacity))
        self.slot_rows = np.arange(self.size, dtype=np.int64)
        self.removed = np.empty(0, np.int64)
        self.compact_at = max(batch, math.isqrt(2 * capacity * batch))
        self.free = [np.arange(capacity, 2 * capacity), np.arange(2 * capacity, 3 * capacity)]
        self.incoming, self.used = np.empty(0, np.int64), 0

    def take_incoming(self) -> int:
        """The block's incoming rows (up to B) read into free rows; returns how many."""
        to = self.free.pop(0)
        self.incoming = to[:self.feed.into(self.rows, to)]
        self.used = 0
        return len(self.incoming)

    def give_out(self) -> np.ndarray:
        """A block's rows in the order given out: B / batch steps, or fewer when the
        buffer runs empty. Their rows are free for the block after next's incoming rows."""
        given = []
        for _ in range(self.capacity // self.batch):
            if self.size == 0:
                break
            given.append(self._step())
        given = np.concatenate(given) if given else np.empty(0, np.int64)
        self.free.append(np.sort(given))
        return given

    def _step(self) -> np.ndarray:
        """One step: ``batch`` slots (all when fewer are held) drawn, their rows given out,
        each refilled with the next incoming row; slots no row refills are removed (the
        others keep their order)."""
        take = min(self.batch, self.size)
        at = self._positions(self.draws.distinct(self.size, take))
        out = self.slot_rows[at]
        refill = min(take, len(self.incoming) - self.used)
        self.slot_rows[at[:refill]] = self.incoming[self.used:self.used + refill]
        self.used += refill
        if refill < take:
            self._remove(at[refill:])
        return out

    def _positions(self, slots: np.ndarray) -> np.ndarray:
        """Where the slots numbered ``slots`` (in order, 0..size-1) are in slot_rows. The
        i-th removed position r_i has r_i - i slots before it, so slot j lies past the
        removed positions with r_i - i <= j (a non-decreasing sequence):
        p = j + #{i : r_i - i <= j}."""
        if not len(self.removed):
            return slots
        before = self.removed - np.arange(len(self.removed))
        return slots + np.searchsorted(before, slots, side="right")

    def _remove(self, at: np.ndarray) -> None:
        """The slots at positions ``at`` removed (marked; compacted in bulk)."""
        at = np.sort(at)
        self.removed = np.insert(self.removed, np.searchsorted(self.removed, at), at)
        self.size -= len(at)
        if len(self.removed) >= self.compact_at or self.size == 0:
            self.slot_rows = np.delete(self.slot_rows, self.removed)
            self.removed = np.empty(0, np.int64)


class _Survey:
    """What one pass over a source tells: its rows, the labels (1-D targets) of the
    targets that need them (a Sequential's, key None, or a MultiTask head's), the counts
    of a Sequential's, and the features' mean and sum of squared deviations (Chan et al.)."""

    def __init__(self, moments: bool):
        self.rows, self.first_y = 0, None
        self.labels, self.counts = {}, {}
        self._moments = moments
        self.mean = self.m2 = None

    def add(self, X: Optional[np.ndarray], y, keys: List[Optional[str]], count: bool) -> None:
        """A chunk's targets (and features, for the moments): the labels of ``keys``, and
        with ``count`` the counts of a Sequential's."""
        if self.first_y is None:
            self.first_y = y
        n, self.rows = self.rows, self.rows + _target_rows(y)
        for key in keys:
            values = _target_of(y, key)
            if values.ndim == 1:
                seen = self.labels.get(key)
                self.labels[key] = np.unique(values) if seen is None else np.union1d(seen, values)
        if count:        # one-hot rows count as their column's class (its label)
            values, counts = np.unique(y if y.ndim == 1 else y.argmax(axis=1),
                                       return_counts=True)
            for value, found in zip(values.tolist(), counts.tolist()):
                self.counts[value] = self.counts.get(value, 0) + found
        if self._moments:
            X = X.astype(np.float64)
            mean, m2 = X.mean(axis=0), ((X - X.mean(axis=0)) ** 2).sum(axis=0)
            if self.mean is None:
                self.mean, self.m2 = mean, m2
            else:     # Chan, Golub and LeVeque: the pairwise update of mean and M2
                delta, k = mean - self.mean, len(X)
                self.mean = self.mean + delta * (k / self.rows)
                self.m2 = self.m2 + m2 + delta * delta * (n * k / self.rows)

    def label_sample(self):
        """Targets prepare_data learns the classes from: the labels seen (of the targets
        :meth:`add` was given the keys of), else the first row (one-hot targets, or a
        MultiTask head that learns nothing); a MultiTask's every head's, each repeated to
        one length."""
        def sample(key):
            labels = self.labels.get(key)
            return labels if labels is not None else _target_of(self.first_y, key)[:1]
        if not isinstance(self.first_y, dict):
            return sample(None)
        samples = {head: sample(head) for head in self.first_y}
        rows = max(len(values) for values in samples.values())
        return {head: np.resize(values, (rows, *values.shape[1:]))
                for head, values in samples.items()}

    def moments(self) -> Tuple[np.ndarray, np.ndarray]:
        """The features' mean and population standard deviation."""
        return self.mean, np.sqrt(self.m2 / self.rows)

    def balanced(self, class_weight: str) -> dict:
        """class_weight="balanced" as a dict over the counted labels: n_samples /
        (n_classes * count), as scikit-learn's compute_class_weight."""
        if class_weight != "balanced":
            return class_weight          # arguments.sample_weights names the error
        present = len(self.counts)
        return {label: self.rows / (present * count) for label, count in self.counts.items()}


class _BlockReader:
    """Blocks produced on a background thread one ahead of the consumer: ``blocks`` gives
    callables that make the next block (read its rows, draw its steps), each called once
    the consumer has taken the previous block, so that the block being made never
    overwrites rows a block still in use holds. An error of the reader is raised in the
    consumer. ``with`` it, so that leaving early stops the thread."""

    def __init__(self, blocks: Iterator[Callable[[], Block]]):
        self._blocks = blocks
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="fastmlp-stream",
                                        daemon=True)

    def __enter__(self) -> "_BlockReader":
        self._thread.start()
        return self

    def _produce(self) -> None:
        try:
            for make in self._blocks:
                if not self._room() or not self._put(("block", make())):
                    return
            self._put(("end", None))
        except BaseException as exc:      # raised again in the consumer
            self._put(("error", exc))

    def _room(self) -> bool:
        """Wait until the consumer took the block ready (False: stopped)."""
        while not self._stop.is_set():
            if self._queue.empty():
                return True
            self._stop.wait(0.002)
        return False

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Block]:
        while True:
            kind, value = self._queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._blocks.close()


# ------------------------------------------------------------------ targets
def _targets_of(model) -> Dict[Optional[str], Tuple[object, object, int]]:
    """(loss, classes, outputs) of each target the model trains on: a MultiTask's per
    head, a Sequential's under the key None."""
    heads = getattr(model, "head_names", None)
    if heads is None:
        return {None: (get_loss(model.loss), model.classes_, model.n_outputs)}
    classes, outputs = model.classes_, model.n_outputs
    return {head: (get_loss(model.losses[head]), classes[head], outputs[head])
            for head in heads}


def _target_of(y, key: Optional[str]):
    return y if key is None else y[key]


def _target_rows(y) -> int:
    """The rows of targets: an array's, or a MultiTask's (any head's)."""
    return len(next(iter(y.values())) if isinstance(y, dict) else y)


def _label_shaped(y, targets: dict):
    """A chunk's targets as arrays, a single column of one-output targets as labels (n,)."""
    def shaped(values, outputs: int) -> np.ndarray:
        values = np.asarray(values)
        return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 == outputs else values
    if None in targets:
        return shaped(y, targets[None][2])
    return {head: shaped(y[head], targets[head][2]) for head in targets}


def _target_pairs(into, Y) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(rows' targets array, a piece's) pairs: one, or one per head."""
    if isinstance(into, dict):
        return [(into[head], Y[head]) for head in into]
    return [(into, Y)]
