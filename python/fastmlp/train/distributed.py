"""Synchronous data-parallel training over MPI (docs/distributed.md).

Every rank runs the same fit on the same model and the same training arrays. Each step's
global batch (the rows one process would train on) is cut into one contiguous shard per
rank, in rank order; a rank runs the forward and backward pass of its shard only, with
the loss scaled by the global batch's rows (or weight sum), so the shards' gradients add
up to the global batch's. One collective per step (:meth:`Exchange.step`) gathers every
rank's gradient, loss sum, logits and Ctrl-C flag; every rank then adds them in rank order,
adds the penalty and applies the optimizer, the same arithmetic on the same numbers, so
the ranks stay identical bit for bit and the run is the same on every run. BatchNorm's
batch statistics and their backward sums are exchanged the same way
(:class:`SyncedBatchNorm`); Dropout's masks take each row's index in the global batch.

The sums run in Python through mpi4py between the steps' kernel calls: the C++ core knows
no MPI. Every collective is non-blocking and polled with a deadline, so a rank that died,
stopped on its own error or hangs ends the others with :class:`DistributedError` instead
of a hang, and the job is aborted at exit (MPI_Finalize would wait for the lost rank).
"""
from __future__ import annotations

import atexit
import hashlib
import pickle
import sys
import time
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from .._validation import check_positive_float
from ..errors import DistributedError, DivergenceError
from ..nn.layers import BatchNorm
from ..nn.losses import get_loss
from ..nn.metrics import weight_total
from ..optim.state import state_dict
from .fused import without_penalty
from .guards import Interrupt
from .steps import PerOpSteps, TrainingData

__all__ = ["MPI", "DistributedError", "DistributedSteps", "Exchange", "SyncedBatchNorm",
           "shard_bounds"]

_INSTALL = "pip install 'fastmlp[mpi]' (mpi4py and MPICH's wheels)"


def _mpi4py():
    """mpi4py's MPI module, or ImportError saying how to install it."""
    try:
        from mpi4py import MPI as mpi
    except ImportError as exc:
        raise ImportError(f"fastmlp.distributed.MPI needs mpi4py and an MPI library: "
                          f"{_INSTALL}; then launch with mpirun -n P python script.py "
                          f"({exc})") from None
    return mpi


class MPI:
    """fit's ``distributed=``: train on every rank of an MPI communicator
    (``comm``: mpi4py's ``COMM_WORLD`` by default) as one model on the global batches.
    ``timeout`` (seconds) bounds every wait for the other ranks, the first one included
    (every rank must reach fit within it)."""

    def __init__(self, comm=None, *, timeout: float = 300.0):
        self.comm = _mpi4py().COMM_WORLD if comm is None else comm
        self.timeout = check_positive_float(timeout, "timeout")

    @property
    def rank(self) -> int:
        return self.comm.Get_rank()

    @property
    def size(self) -> int:
        return self.comm.Get_size()

    @property
    def is_root(self) -> bool:
        """Whether this is rank 0, the one that writes checkpoints, logs and files."""
        return self.rank == 0

    def __repr__(self) -> str:
        return f"MPI(rank={self.rank}, size={self.size}, timeout={self.timeout!r})"


def shard_bounds(rows: int, rank: int, size: int) -> tuple:
    """Rank ``rank``'s rows [lo, hi) of a global batch of ``rows``: contiguous shards in
    rank order, the first ``rows % size`` one row longer."""
    base, extra = divmod(rows, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (rank < extra)


_aborting = set()


def _abort_at_exit(comm) -> None:
    """After a failed collective the job cannot finish cleanly (MPI_Finalize would wait
    for the lost rank): abort it when this process exits."""
    if id(comm) not in _aborting:
        _aborting.add(id(comm))
        atexit.register(_abort, comm)


def _abort(comm) -> None:
    """MPI_Abort once the traceback printed at exit has reached the launcher (it stops
    forwarding output when the abort arrives)."""
    sys.stdout.flush()
    sys.stderr.flush()
    time.sleep(0.5)
    comm.Abort(1)


class Exchange:
    """One fit's collectives on ``mpi``'s communicator, all non-blocking (Iallgather,
    Ialltoall) and polled until ``mpi.timeout``: the step's exchange (:meth:`step`), the
    ordered sums BatchNorm needs (:meth:`sum`) and the check before the first step
    (:meth:`agree`)."""

    def __init__(self, mpi: MPI):
        self.mpi, self.comm = mpi, mpi.comm
        self.rank, self.size = mpi.rank, mpi.size
        self.where = "before the first step"
        self._buffers: Dict[str, np.ndarray] = {}

    def gather(self, send: np.ndarray, what: str) -> np.ndarray:
        """Every rank's ``send`` (1-D, the same size on every rank), one row per rank."""
        received = np.empty((self.size, send.size), send.dtype)
        self._wait(self.comm.Iallgather(send, received), what)
        return received

    def sum(self, local: np.ndarray, what: str) -> np.ndarray:
        """The ranks' ``local`` arrays added in rank order (the same bits on every rank)."""
        return _sum_rows(self.gather(np.ascontiguousarray(local).reshape(-1), what))

    def _wait(self, request, what: str) -> None:
        """Poll ``request`` until it completes; DistributedError past the timeout. Each
        test also moves the collective's rounds on (MPI progresses it only inside calls),
        so the first second polls without pause but yields the core between tests (to the
        ranks still computing when there are more ranks than cores); after that a wait
        is long anyway and the tests pause 1 ms."""
        now = time.monotonic()
        deadline, patient = now + self.mpi.timeout, now + 1.0
        while not request.Test():
            now = time.monotonic()
            if now > deadline:
                _abort_at_exit(self.comm)
                raise DistributedError(
                    f"rank {self.rank} of {self.size}: {what} {self.where} did not complete "
                    f"within {self.mpi.timeout:g} s: another rank died, stopped on an error "
                    "(its output or the launcher's says which) or hangs. The job ends here "
                    "(MPI_Abort at exit); raise fastmlp.distributed.MPI(timeout=...) if a "
                    "rank is only slow")
            time.sleep(0 if now < patient else 1e-3)

    def step(self, grads: np.ndarray, sums: Sequence[float], rows_of: Sequence[np.ndarray],
             rows: int, signalled: bool):
        """One step's exchange. Out go this rank's gradient (its shard's share, in
        ``grads``), its ``sums`` (loss sums), its shard's ``rows_of`` arrays (logits, one
        row per batch row, of grads' dtype) and its Ctrl-C flag. ``grads`` becomes the
        ranks' gradients added in rank order. Returns (``sums`` added in rank order in
        double, each of ``rows_of`` for the global batch of ``rows`` rows in row order,
        whether any rank was signalled).

        The gradient's sum is a reduce-scatter then an allgather, both in a fixed order:
        rank r receives every rank's r-th chunk of the gradient (Ialltoall) and adds them
        in rank order; then every rank gathers the summed chunks with the sums, the rows
        and the flags (Iallgather). Each rank sends and receives 2 (P - 1) / P gradients,
        as in a ring allreduce, and every element is g_0 + g_1 + ... + g_{P-1} in this
        order on every rank."""
        size, dtype, n = self.size, grads.dtype, grads.size
        chunk, most = -(-n // size), -(-rows // size)
        chunks = grads
        if n != size * chunk:                          # padded to whole chunks
            chunks = self._scratch("chunks", (size * chunk,), dtype)
            chunks[:n], chunks[n:] = grads, 0
        mine = self._scratch("mine", (size, chunk), dtype)
        self._wait(self.comm.Ialltoall(chunks, mine), "the gradient exchange")
        # the packet: [flag, sums...] (double), the summed chunk, each array's rows padded
        head = 8 * (1 + len(sums))
        widths = [a.shape[1] for a in rows_of]
        packet = self._scratch("packet", (head + dtype.itemsize * (chunk + most * sum(widths)),),
                               np.uint8)
        packet[:head].view(np.float64)[:] = (float(signalled), *sums)
        body = packet[head:].view(dtype)
        body[:chunk] = _sum_rows(mine)
        at = chunk
        for array, width in zip(rows_of, widths):
            body[at:at + array.size] = array.reshape(-1)
            at += most * width
        gathered = self._scratch("gathered", (size, packet.size), np.uint8)
        self._wait(self.comm.Iallgather(packet, gathered), "the gradient exchange")
        heads = gathered[:, :head].view(np.float64)
        bodies = gathered[:, head:].view(dtype)
        for r in range(size):
            part = grads[r * chunk:(r + 1) * chunk]
            part[...] = bodies[r, :len(part)]
        shard_rows = [hi - lo for lo, hi in (shard_bounds(rows, r, size) for r in range(size))]
        arrays, at = [], chunk
        for width in widths:
            padded = bodies[:, at:at + most * width].reshape(size, most, width)
            arrays.append(np.concatenate([padded[r, :shard_rows[r]] for r in range(size)]))
            at += most * width
        return list(_sum_rows(heads[:, 1:])), arrays, bool(heads[:, 0].any())

    def _scratch(self, name: str, shape: tuple, dtype) -> np.ndarray:
        """A buffer kept between steps (one per name, made again when its shape changes)."""
        array = self._buffers.get(name)
        if array is None or array.shape != shape or array.dtype != dtype:
            array = self._buffers[name] = np.empty(shape, dtype)
        return array

    @contextmanager
    def ending_the_job(self) -> Iterator[None]:
        """Training steps: an error that only this rank raises (not a divergence, a
        Ctrl-C or a timeout, which every rank meets at the same step) leaves the others
        waiting, so the job is aborted when this process exits."""
        try:
            yield
        except (DivergenceError, KeyboardInterrupt, DistributedError):
            raise
        except BaseException:
            _abort_at_exit(self.comm)
            raise

    def agree(self, what: Dict[str, object]) -> None:
        """ValueError on every rank unless every rank has the same ``what`` (name: value,
        compared by a 16-byte hash of its pickle)."""
        digests = [hashlib.blake2b(pickle.dumps(value, protocol=4), digest_size=16).digest()
                   for value in what.values()]
        mine = np.frombuffer(b"".join(digests), np.uint8)
        rows = self.gather(mine, "the check that every rank trains the same model")
        rows = rows.reshape(self.size, len(digests), 16)
        differ = [name for i, name in enumerate(what) if (rows[:, i] != rows[0, i]).any()]
        if differ:
            ranks = [r for r in range(self.size) if (rows[r] != rows[0]).any()]
            raise ValueError(
                f"distributed fit: rank(s) {ranks} differ from rank 0 in {', '.join(differ)}. "
                "Every rank must build the same model (the same seed), give fit the same "
                "arguments and arrays, and resume from the same checkpoint directory")


def _sum_rows(rows: np.ndarray) -> np.ndarray:
    """rows[0] + rows[1] + ... in this order."""
    total = rows[0].copy()
    for row in rows[1:]:
        total += row
    return total


# ---------------------------------------------------------------------- BatchNorm
class SyncedBatchNorm:
    """A backend whose BatchNorm training ops use the global batch's statistics: each
    column sum is the kernel's (rows in ascending order, in the dtype) over the shard,
    then the shards' sums added in rank order; the rest is the wrapped backend's. With
    one rank it is the kernel's evaluation bit for bit (csrc/kernels/batchnorm.hpp):
    ``mean = sum x / m``, ``var = sum (x - mean)^2 / m`` with m the global rows;
    backward ``dx = gamma * inv_std / m * ((m dy - sum dy) - xhat * sum dy xhat)`` with the
    global sums, while dgamma and dbeta keep the shard's sums (the gradient exchange adds
    them)."""

    def __init__(self, backend, exchange: Exchange):
        self._backend, self._exchange = backend, exchange

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def _column_sums(self, parts: List[np.ndarray], what: str):
        """Each part's column sums over the global batch, and the global rows m (T)."""
        T = parts[0].dtype
        local = np.concatenate([np.add.reduce(p, axis=0) for p in parts]
                               + [np.array([len(parts[0])], T)])
        total = self._exchange.sum(local, what)
        n = parts[0].shape[1]
        return [total[i * n:(i + 1) * n] for i in range(len(parts))], total[-1]

    def batchnorm_forward_train(self, x, gamma, beta, y, xhat, mean, inv_std, eps) -> None:
        (sums,), m = self._column_sums([x], "BatchNorm's batch mean")
        mean[...] = sums / m
        centered = x - mean
        (squares,), _ = self._column_sums([centered * centered], "BatchNorm's batch variance")
        inv_std[...] = x.dtype.type(1) / np.sqrt(squares / m + x.dtype.type(eps))
        np.multiply(centered, inv_std, out=xhat)
        np.add(gamma * xhat, beta, out=y)

    def batchnorm_backward(self, dy, xhat, gamma, inv_std, dx, dgamma, dbeta) -> None:
        product = dy * xhat
        (s_dy, s_product), m = self._column_sums([dy, product], "BatchNorm's backward sums")
        np.add.reduce(dy, axis=0, out=dbeta)
        np.add.reduce(product, axis=0, out=dgamma)
        np.multiply((gamma * inv_std) / m, (m * dy - s_dy) - xhat * s_product, out=dx)


# ---------------------------------------------------------------------- the steps
class AgreedInterrupt(Interrupt):
    """Ctrl-C across ranks: a rank's signal is only recorded (``signalled``); the next
    gradient exchange carries it and sets ``requested`` on every rank after the same
    step, so all stop together."""

    def __init__(self, backend):
        super().__init__(backend)
        self.signalled = False

    def _record(self, signum, frame) -> None:
        self.signalled = True


class DistributedSteps(PerOpSteps):
    """An epoch's steps as :class:`PerOpSteps` takes them, each step's gradient computed
    on this rank's shard and summed across ranks by ``exchange`` (module docstring)."""

    def __init__(self, model, optimizer, data: TrainingData, exchange: Exchange,
                 shard: Optional["FusedShard"] = None):
        super().__init__(model, optimizer, data)
        self.exchange, self.shard = exchange, shard
        self._interrupt: Optional[Interrupt] = None

    def run(self, order, begin, end, epoch, totals, on_steps, interrupt=None):
        self._interrupt = interrupt
        with self._synced_batchnorm():
            return super().run(order, begin, end, epoch, totals, on_steps, interrupt)

    @contextmanager
    def _synced_batchnorm(self) -> Iterator[None]:
        model = self.model
        backend = model.backend
        model.backend = SyncedBatchNorm(backend, self.exchange)
        try:
            yield
        finally:
            model.backend = backend

    def _gradient(self, rows: np.ndarray):
        model, data, exchange = self.model, self.data, self.exchange
        lo, hi = shard_bounds(len(rows), exchange.rank, exchange.size)
        weight = None if data.W is None else weight_total(data.W[rows])
        divisor = len(rows) if weight is None else weight
        exchange.where = f"at training step {model.training_step}"
        if self.shard is not None and hi > lo:
            loss_sum, outputs = self.shard.gradient(rows[lo:hi], divisor, lo)
        else:
            xb, yb, wb = model.gather_batch(data.X, data.Y, data.W, rows[lo:hi])
            loss_sum, outputs = model.loss_and_grad(xb, yb, wb, divisor=divisor, first_row=lo)
        sums, arrays = _flat_outputs(loss_sum, outputs)
        interrupt = self._interrupt
        signalled = isinstance(interrupt, AgreedInterrupt) and interrupt.signalled
        sums, arrays, stop = exchange.step(model.flat_grads, sums, arrays, len(rows), signalled)
        if stop:
            interrupt.requested = True
        loss_sum, outputs = _outputs_from(outputs, sums, arrays)
        return loss_sum, outputs, _take(data.Y, rows), weight


class FusedShard:
    """A shard's loss and gradient in one C++ call (the fused path): a gradient-only
    trainer (``FusedTrainer.gradient`` with the global divisor and the shard's first row)
    running the model's fused program without its penalty (added once, after the ranks'
    sum), with workspaces for the longest shard; the same numbers bit for bit as the
    per-op path's ``loss_and_grad``. Not for BatchNorm, whose statistics need the other
    ranks between the ops (SyncedBatchNorm, on the per-op path)."""

    def __init__(self, model, data: TrainingData, trainer, heads: Optional[List[str]]):
        self.model, self.data, self.trainer, self.heads = model, data, trainer, heads
        # the targets as the trainer reads them: a MultiTask's heads side by side
        self.Y = data.Y if heads is None else np.concatenate([data.Y[h] for h in heads], axis=1)

    @classmethod
    def create(cls, model, data: TrainingData, ranks: int) -> Optional["FusedShard"]:
        """The shard's trainer, or None where the per-op path runs the shard (a layer
        without a plan, BatchNorm, the NumPy backend)."""
        factory = getattr(model.backend, "fused_trainer", None)
        program = model.fused_program() if factory is not None else None
        if program is None or any(isinstance(layer, BatchNorm) for layer in model.layers):
            return None
        heads = program.get("heads")
        with model.writing_params():        # a lock of its own: run holds the model's
            trainer = factory(params=model.flat_params, grads=model.flat_grads, m=None, v=None,
                              program=without_penalty(program),
                              loss=None if heads else get_loss(model.loss).kernel,
                              optimizer="sgd", batch_size=-(-data.batch // ranks))
        return cls(model, data, trainer, None if heads is None else [h["name"] for h in heads])

    def gradient(self, rows: np.ndarray, divisor: float, first_row: int):
        """The shard ``rows`` (not empty)' loss sum and outputs as ``loss_and_grad``
        gives them, its gradient in the model's flat_grads."""
        data, trainer = self.data, self.trainer
        loss_sum, _, _ = trainer.gradient(data.X, self.Y, data.W, rows, 0,
                                          self.model.training_step, divisor, first_row)
        heads = trainer.outputs(len(rows))
        if self.heads is None:
            return loss_sum, heads[0][1]
        return loss_sum, dict(zip(self.heads, heads))


# A model's step outputs (TrainableModel.loss_and_grad): Sequential's logits, or
# MultiTask's {head: (loss sum, logits)}; as the exchange's sums and row arrays, and back.
def _flat_outputs(loss_sum: float, outputs):
    if isinstance(outputs, dict):
        return ([loss_sum, *(head[0] for head in outputs.values())],
                [head[1] for head in outputs.values()])
    return [loss_sum], [outputs]


def _outputs_from(shard_outputs, sums: list, arrays: list):
    if isinstance(shard_outputs, dict):
        return sums[0], {name: (total, logits) for name, total, logits
                         in zip(shard_outputs, sums[1:], arrays)}
    return sums[0], arrays[0]


def _take(Y, rows: np.ndarray):
    """The rows of targets as prepare_data gives them (an array, or {head: array})."""
    return {name: y[rows] for name, y in Y.items()} if isinstance(Y, dict) else Y[rows]


def fingerprint(model, optimizer, data: TrainingData, settings: dict) -> Dict[str, object]:
    """What every rank must share before a distributed fit, by name (Exchange.agree)."""
    n = len(data.X)
    sample = np.unique(np.linspace(0, n - 1, min(n, 64)).astype(np.int64))
    X = data.X[sample]
    return {
        "the model's weights and state": (
            model.architecture(), model.seed, model.training_step, model.flat_params.tobytes(),
            [a.tobytes() for layer in model.layers for a in layer.get_state()]),
        "the optimizer": (type(optimizer).__name__, state_dict(optimizer)),
        "the training data": (n, getattr(X, "toarray", lambda: X)().tobytes(),
                              pickle.dumps(_take(data.Y, sample)),
                              None if data.W is None else data.W.tobytes()),
        "fit's arguments": (settings, model.shuffle_rng.bit_generator.state),
    }
