"""The native backend: the C++ core ``fastmlp._core``, the only module that imports it.

Each method is one call into a kernel that checks its arrays (exact dtype, C order,
writable outputs: TypeError/ValueError, never a silent copy), releases the GIL and runs
on the SIMD path chosen at import (``FASTMLP_ISA``, :func:`fastmlp.set_isa`) with the
threads of :mod:`fastmlp.backends.runtime`. The semantics are those of :class:`.base.Backend`.
The bindings only check and view arrays; a result this module hands back is allocated
here. ``testing`` is ``_core._testing``: hooks only the tests call.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .._sparse import CsrRows
from .._validation import raise_not_finite
from .base import ActivationFormulas
from .bfloat16 import dense_rows_for_bfloat16
from .numpy import NumPyBackend

# OpenMP spin-wait (README "Threads and SIMD", docs/build-notes.md "Two spinning thread pools"). After a parallel region
# libgomp's idle workers spin before they sleep (300000 spins by default); NumPy's OpenBLAS
# pool does the same, so code alternating the two had each pool's spinning threads steal
# the cores from the other: a loop alternating 192x192 products ran 35-63x slower than its
# two halves. A bounded spin keeps our small kernels as fast (workers still wake hot
# within a region's gap) and ends the fight. libgomp reads GOMP_SPINCOUNT once, when it is
# loaded, so it is set here, before ``_core`` (and so libgomp) loads, and only when the
# user set neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT: a user's own setting always wins.
# If libgomp was already loaded by another library, it has read its environment and
# nothing is changed. Child processes inherit the variable. backend_info()["omp_spin"]
# says which case applies: the spin count set here, "user" or "unknown".
OMP_SPIN = "1000"


def _libgomp_loaded() -> Optional[bool]:
    """Whether libgomp is mapped into this process already (None: cannot tell)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            return "libgomp" in maps.read()
    except OSError:
        return None


def _bound_omp_spin() -> str:
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return "user"
    loaded = _libgomp_loaded()
    if loaded is None or loaded:
        return "unknown"
    os.environ["GOMP_SPINCOUNT"] = OMP_SPIN
    return OMP_SPIN


_OMP_SPIN_IN_EFFECT = _bound_omp_spin()

from .. import _core  # noqa: E402  (after the spin setting: libgomp reads it at load

testing = _core._testing                # hooks only the tests call


class NativeBackend:
    """The C++ kernels behind the :class:`~fastmlp.backends.base.Backend` protocol."""

    name = "native"

    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, *, trans_a: bool = False,
             trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0, bf16: bool = False) -> None:
        _core.gemm(a, b, c, trans_a, trans_b, alpha, beta, bf16)

    def gemm_bias_act(self, x: np.ndarray, w: np.ndarray, bias: np.ndarray, z: np.ndarray,
                      a: np.ndarray, activation: ActivationFormulas, param: float,
                      bf16: bool = False) -> None:
        if type(x) is CsrRows:
            dense_rows_for_bfloat16(bf16)
            _core.csr_gemm_bias_act(*x.arrays, w, bias, z, a, activation.name, param)
        else:
            _core.gemm_bias_act(x, w, bias, z, a, False, True, activation.name, param, bf16)

    def weight_grad(self, dz: np.ndarray, x, dw: np.ndarray, bf16: bool = False) -> None:
        if type(x) is CsrRows:
            dense_rows_for_bfloat16(bf16)
            _core.csr_weight_grad(dz, *x.arrays, dw)
        else:
            _core.gemm(dz, x, dw, True, False, 1.0, 0.0, bf16)

    def bias_act_forward(self, z: np.ndarray, bias: np.ndarray, a: np.ndarray,
                         activation: ActivationFormulas, param: float) -> None:
        _core.bias_act_forward(z, bias, a, activation.name, param)

    def act_backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray, dz: np.ndarray,
                     activation: ActivationFormulas, param: float) -> None:
        _core.act_backward(z, a, da, dz, activation.name, param)

    def col_sum(self, x: np.ndarray, out: np.ndarray) -> None:
        _core.col_sum(x, out)

    def loss(self, name: str, logits: np.ndarray, y: np.ndarray,
             grad: Optional[np.ndarray], scale: float, *,
             weights: Optional[np.ndarray] = None) -> float:
        return _core.loss(name, logits, y, grad, scale, weights)

    def output(self, name: str, logits: np.ndarray, out: np.ndarray) -> None:
        _core.output(name, logits, out)

    def argmax_rows(self, logits: np.ndarray, out: np.ndarray) -> None:
        _core.argmax_rows(logits, out)

    def dropout_forward(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, rate: float,
                        seed: int, layer: int, step: int, first_row: int = 0) -> None:
        first = first_row * (x.size // max(len(x), 1))       # x[0, 0]'s index in the batch
        _core.dropout_forward(x, y, mask, rate, seed, layer, step, first)

    def mul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        _core.mul(a, b, out)

    def maxout_forward(self, z: np.ndarray, a: np.ndarray, argmax: np.ndarray) -> None:
        _core.maxout_forward(z, a, argmax)

    def maxout_backward(self, da: np.ndarray, argmax: np.ndarray, dz: np.ndarray) -> None:
        _core.maxout_backward(da, argmax, dz)

    def batchnorm_forward_train(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                                y: np.ndarray, xhat: np.ndarray, mean: np.ndarray,
                                inv_std: np.ndarray, eps: float) -> None:
        _core.batchnorm_forward_train(x, gamma, beta, y, xhat, mean, inv_std, eps)

    def batchnorm_forward_infer(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                                mean: np.ndarray, var: np.ndarray, eps: float,
                                y: np.ndarray) -> None:
        _core.batchnorm_forward_infer(x, gamma, beta, mean, var, eps, y)

    def batchnorm_backward(self, dy: np.ndarray, xhat: np.ndarray, gamma: np.ndarray,
                           inv_std: np.ndarray, dx: np.ndarray, dgamma: np.ndarray,
                           dbeta: np.ndarray) -> None:
        _core.batchnorm_backward(dy, xhat, gamma, inv_std, dx, dgamma, dbeta)

    def regularize(self, w: np.ndarray, dw: np.ndarray, l1: float, l2: float) -> float:
        return _core.regularize(w, dw, l1, l2)

    # No kernel of the core's (csrc/ops.hpp) computes these three: the fused trainer runs
    # them in its op loop (csrc/train/program.cpp run_op) with the NumPy backend's
    # arithmetic, so the per-op path runs the NumPy backend's (the fused tests compare the
    # two bit for bit).
    batchnorm_running_update = NumPyBackend.batchnorm_running_update
    scale_columns = NumPyBackend.scale_columns
    add_to = NumPyBackend.add_to

    def optimizer_update(self, name: str, param: np.ndarray, grad: np.ndarray,
                         m: Optional[np.ndarray], v: Optional[np.ndarray], *, lr: float,
                         grad_scale: float = 1.0, b1: float = 0.0, b2: float = 0.0,
                         eps: float = 0.0, weight_decay: float = 0.0, step: int = 1,
                         eps_before_correction: bool = False) -> None:
        _core.optimizer_update(name, param, grad, m, v, lr, grad_scale, b1, b2, eps,
                               weight_decay, step, eps_before_correction)

    def sum_squares(self, x: np.ndarray) -> float:
        return _core.sum_squares(x)

    def all_finite(self, x: np.ndarray) -> bool:
        return _core.all_finite(x)

    def shuffled_order(self, n: int, seed: int) -> np.ndarray:
        order = np.empty(n, np.int64)
        _core.shuffled_order(seed, order)
        return order


    def fused_trainer(self, *, params: np.ndarray, grads: np.ndarray,
                      m: Optional[np.ndarray], v: Optional[np.ndarray], program: dict,
                      loss: Optional[str], optimizer: str, batch_size: int, b1: float = 0.0,
                      b2: float = 0.0, eps: float = 0.0, weight_decay: float = 0.0,
                      eps_before_correction: bool = False, clipnorm: Optional[float] = None,
                      lock: Optional["NativeWeightsLock"] = None) -> "FusedTrainer":
        """The fused training path (:class:`.base.FusedTraining`): a C++ trainer bound to
        these buffers, with workspaces for ``batch_size`` rows, each step holding ``lock``
        (the model's :meth:`weights_lock`) exclusively."""
        return FusedTrainer(_core.Trainer(params, grads, m, v, program, loss, optimizer,
                                          batch_size, b1, b2, eps, weight_decay,
                                          eps_before_correction, clipnorm,
                                          _core_lock(lock)))

    def weights_lock(self) -> "NativeWeightsLock":
        """A new readers/writer lock for one model's weights (:class:`.base.WeightsLock`),
        shared by its fused trainer and predictors and its per-op steps and predicts."""
        return NativeWeightsLock()

    def sigint_watch(self):
        """While it is open (until ``close()``), SIGINT also sets the flag a fused run
        given it as ``watch`` reads before each step (csrc/train/interrupt.hpp); Python's
        handler still runs. ``installed`` is False where nothing was installed (another
        watch is open, SIGINT is ignored or at its default action, or Windows)."""
        return _core.SigintWatch()

    def fused_predictor(self, *, params: np.ndarray, program: dict,
                        lock: Optional["NativeWeightsLock"] = None):
        """The fused inference path: a C++ predictor running the model's inference
        ``program`` (:func:`fastmlp.train.fused.inference_program`: the layers' plans as
        buffers over ``params`` and op records, with one output head per model head),
        holding a snapshot of its weights (those of its gemm_bias_act ops packed for the
        selected ISA) (rebuild it when either changes:
        :func:`fastmlp.train.fused.inference_key`). Its ``run(X, mode, chunk)`` (one
        head) and ``run_heads(X, mode, chunk, heads)`` return logits (mode 0),
        probabilities (1) or predict's labels (2) for all rows of X in one GIL-released
        call, ``chunk`` rows per pass, with per-call scratch (safe from several threads at
        once). The snapshot is taken holding ``lock`` (the model's :meth:`weights_lock`)
        shared: between two steps of a fit in another thread."""
        return FusedPredictor(_core.Predictor(params, program, None, _core_lock(lock)),
                              params.dtype, [head["labels"] for head in program["heads"]])


class _Held:
    """A context manager taking one side of a ``_core.WeightsLock``."""

    __slots__ = ("_acquire", "_release")

    def __init__(self, acquire, release):
        self._acquire, self._release = acquire, release

    def __enter__(self) -> None:
        self._acquire()

    def __exit__(self, *exc_info) -> None:
        self._release()


class NativeWeightsLock:
    """:class:`.base.WeightsLock` over ``_core.WeightsLock`` (csrc/train/weights_lock.hpp):
    ``writing`` exclusive, ``reading`` shared (concurrent predicts run together)."""

    def __init__(self):
        core = self.core = _core.WeightsLock()
        self.writing = _Held(core.lock, core.unlock)
        self.reading = _Held(core.lock_shared, core.unlock_shared)


def _x_of(X):
    """X as _core.Trainer reads it: the array, or sparse rows' (indptr, indices, values)."""
    return X.arrays if type(X) is CsrRows else X


def _core_lock(lock: Optional[NativeWeightsLock]):
    return None if lock is None else lock.core


class FusedTrainer:
    """:class:`.base.FusedTrainer` over ``_core.Trainer`` (csrc/train/trainer.hpp)."""

    def __init__(self, core):
        self._core = core
        self.batch_size = core.batch_size

    def steps_per_epoch(self, n: int) -> int:
        return self._core.steps_per_epoch(n)

    def new_totals(self):
        return _core.TrainTotals(self._core.head_outputs)

    def run(self, X: np.ndarray, Y: np.ndarray, W: Optional[np.ndarray], order: np.ndarray,
            step_begin: int, step_end: int, lrs: np.ndarray, t0: int, model_step: int,
            totals, watch=None, save_first: bool = False, n_samples: int = 0):
        self._core.run(_x_of(X), Y, W, order, step_begin, step_end, lrs, t0, model_step, totals,
                       watch, save_first, n_samples)
        return totals

    def restore_saved(self) -> None:
        self._core.restore_saved()

    def gradient(self, X: np.ndarray, Y: np.ndarray, W: Optional[np.ndarray],
                 order: np.ndarray, step: int, model_step: int, divisor: float = 0.0,
                 first_row: int = 0) -> Tuple[float, float, float]:
        return self._core.gradient(_x_of(X), Y, W, order, step, model_step, divisor, first_row)

    def outputs(self, rows: int) -> List[Tuple[float, np.ndarray]]:
        return self._core.outputs(rows)


class FusedPredictor:
    """The fused predictor over ``_core.Predictor`` (csrc/train/predictor.hpp), with one
    result per head of its program: ``run_heads`` allocates the results the core fills,
    per head logits and probabilities (n, k) of the model's dtype and labels as the
    head's ``labels`` layout says (its loss's: int64 (n,) class indices for softmax
    cross-entropy, (n, k) 0/1 for binary cross-entropy, the outputs for mse). The core checks X finite chunk by
    chunk as it reads it (X may come unchecked: as_features' ``finite_checked_later``); on
    a NaN or an infinity ``run_heads`` raises _validation's ValueError naming the first
    one."""

    def __init__(self, core, dtype: np.dtype, labels: Sequence[tuple]):
        self._core = core
        # per head, per mode (0 logits, 1 probabilities, 2 labels): the result's dtype and row shape
        self._results = [_result_kinds(layout, k, dtype)
                         for layout, k in zip(labels, core.head_outputs)]

    @property
    def n_heads(self) -> int:
        return len(self._results)

    def run(self, X: np.ndarray, mode: int, chunk: int) -> np.ndarray:
        """A one-head predictor's result (a chain's), in one array handed to the core as
        it is (the one-row predict's path: no list)."""
        if len(self._results) != 1:
            raise ValueError(f"run: this predictor has {self.n_heads} heads; use run_heads")
        out = self._result(0, mode, X)
        if not self._core.run(X, mode, chunk, out):
            raise_not_finite(X, X, "X")
        return out

    def run_heads(self, X: np.ndarray, mode: int, chunk: int,
                  heads: Optional[Sequence[int]] = None) -> List[np.ndarray]:
        """The results of the heads at the indices ``heads`` (None: all), in that order;
        the other heads are computed but not written."""
        wanted = range(self.n_heads) if heads is None else heads
        outs: List[Optional[np.ndarray]] = [None] * self.n_heads
        for h in wanted:
            outs[h] = self._result(h, mode, X)
        if not self._core.run(X, mode, chunk, outs):
            raise_not_finite(X, X, "X")
        return [outs[h] for h in wanted]

    def _result(self, head: int, mode: int, X) -> np.ndarray:
        """The array the core fills with a head's result for the rows of X."""
        dtype, row = self._results[head][mode]
        return np.empty((len(X) if np.ndim(X) else 0,) + row, dtype)   # a bad X: the core names it


def _result_kinds(labels: tuple, k: int, dtype: np.dtype) -> tuple:
    """A head's result per mode (0 logits, 1 probabilities, 2 labels): (dtype, row shape);
    ``labels`` is its loss's labels_layout (their dtype, None: the model's; one per
    output or one per row)."""
    label_dtype, per_output = labels
    return (dtype, (k,)), (dtype, (k,)), (label_dtype or dtype, (k,) if per_output else ())


def backend_info() -> dict:
    info = dict(_core.backend_info())
    info["omp_spin"] = _OMP_SPIN_IN_EFFECT
    return info


def kernel_tables() -> dict:
    """The C++ core's loss, optimizer and activation kernel ids and plan op codes in enum
    order, and the state (uses m, uses v) of each optimizer: ``{"losses": [...],
    "optimizers": [...], "optimizer_state": [(bool, bool), ...], "activations": [...],
    "op_codes": [...]}``, read only (the registries are checked against it:
    tests/kernels/test_registries.py, tests/api/test_activation_registry.py)."""
    tables = _core.enum_names()
    return {"losses": list(tables["losses"]), "optimizers": list(tables["optimizers"]),
            "optimizer_state": [tuple(state) for state in tables["optimizer_state"]],
            "activations": list(tables["activations"]), "op_codes": list(tables["op_codes"])}


# How many times set_isa ran: fused predictors hold weights packed for one ISA, so their
# cache key includes it (fused.inference_key).
isa_generation = 0


def set_isa(name: str) -> str:
    global isa_generation
    if not isinstance(name, str):
        raise TypeError(f"set_isa: name must be a str, got {type(name).__name__}")
    selected = _core.set_isa(name)
    isa_generation += 1
    return selected


def _thread_count(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    return int(n)


def set_num_threads(n: int) -> None:
    _core.set_num_threads(_thread_count(n))


def get_num_threads() -> int:
    return _core.get_num_threads()


def push_threads(n: int) -> int:
    n = _thread_count(n)
    if n < 1:
        raise ValueError(f"threads(n): n must be >= 1, got {n}")
    return _core.push_threads(n)


def pop_threads(previous: int) -> None:
    _core.pop_threads(previous)
