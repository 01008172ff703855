"""The Backend protocol: every piece of math the model layer needs.

Two implementations satisfy it: :mod:`fastmlp.backends.numpy` (readable, the test
oracle) and :mod:`fastmlp.backends.native` (the C++ core). Layers, losses and the
training loop call only these methods; none of them calls NumPy math or ``_core``.

Contract shared by every method:

* arrays are C-contiguous and of the model's dtype (float32 or float64); outputs are
  preallocated by the caller and written in place (nothing is returned but the loss
  value); the native backend raises TypeError/ValueError for a wrong dtype or layout
  instead of writing into a copy;
* samples are rows: ``X`` is ``(m, n_in)``, a Dense ``W`` is ``(n_out, n_in)``;
* an activation is a row of the registry in :mod:`fastmlp.nn.activations` (which sits
  above the backends, so the caller passes the row in): the native backend passes its
  ``name`` to the kernels, the NumPy backend computes its ``forward`` and ``derivative``
  (:class:`ActivationFormulas`); ``param`` is the leaky slope (0.01) or the ELU alpha
  (1.0) and is ignored otherwise;
* losses and optimizers are named by kernel id: ``"softmax_cross_entropy",
  "binary_cross_entropy", "mse"``, all from logits (docs/conventions.md), and ``"sgd",
  "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"``. The backends hold no
  list of losses or optimizers and import no registry: the layers above pass the kernel
  id (``kernel``) of a row of the registries (``fastmlp.nn.losses``,
  ``fastmlp.optim.optimizers``, which say which names, parameters and state go with it),
  and the state arrays that row keeps. Targets are dense ``(m, k)`` arrays of the
  model's dtype (one-hot rows for softmax cross-entropy, 0/1 for binary cross-entropy).
"""
from __future__ import annotations

import threading
from typing import List, Optional, Protocol, Tuple, runtime_checkable

import numpy as np


class ActivationFormulas(Protocol):
    """What a backend reads of an activation (fastmlp.nn.activations.ActivationKind)."""

    name: str

    def forward(self, z: np.ndarray, param: float) -> np.ndarray:
        """act(z) in z's dtype."""

    def derivative(self, z: np.ndarray, a: np.ndarray, param: float) -> np.ndarray:
        """act'(z), given a = act(z), in z's dtype."""


@runtime_checkable
class Backend(Protocol):
    name: str

    def gemm(self, a: np.ndarray, b: np.ndarray, c: np.ndarray, *, trans_a: bool = False,
             trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0, bf16: bool = False) -> None:
        """``c = alpha * op(a) @ op(b) + beta * c`` with ``op(x)`` = ``x.T`` if trans_x.

        With beta == 0, ``c`` is never read (it may hold NaN). With bf16 (float32 arrays
        only, TypeError otherwise), op(a) and op(b) are rounded to bfloat16, to nearest
        even, and the products summed in float32 (docs/bfloat16.md).
        """

    def gemm_bias_act(self, x: np.ndarray, w: np.ndarray, bias: np.ndarray, z: np.ndarray,
                      a: np.ndarray, activation: ActivationFormulas, param: float,
                      bf16: bool = False) -> None:
        """The Dense forward: ``z = x @ w.T + bias`` (bias added to every row), then
        ``a = act(z)``; ``x`` is ``(m, n_in)``, ``w`` is ``(n_out, n_in)``.

        Exactly ``gemm(x, w, z, trans_b=True)`` then ``bias_act_forward(z, bias, a, ...)``
        (the native backend fuses them into the GEMM's epilogue, bit for bit the same).
        ``z`` and ``a`` are never read; ``a`` may be ``z`` only when activation is "linear".
        ``x`` may be sparse rows (:class:`fastmlp._sparse.CsrRows`): each sum then runs
        in scipy's ``csr @ dense`` order (docs/sparse.md).
        """

    def weight_grad(self, dz: np.ndarray, x, dw: np.ndarray, bf16: bool = False) -> None:
        """A layer's weight gradient ``dw = dz.T @ x``: ``gemm(dz, x, dw, trans_a=True)``;
        for sparse rows ``x`` each sum in scipy's ``x.T @ dz`` order (docs/sparse.md).
        gemm_bias_act and weight_grad take bf16 as gemm does (dense rows only: sparse ones
        with bf16 are a ValueError)."""

    def bias_act_forward(self, z: np.ndarray, bias: np.ndarray, a: np.ndarray,
                         activation: ActivationFormulas, param: float) -> None:
        """``z[i, :] += bias`` for every row, then ``a = act(z)``.

        ``a`` may be the same array as ``z`` only when activation is "linear".
        """

    def act_backward(self, z: np.ndarray, a: np.ndarray, da: np.ndarray, dz: np.ndarray,
                     activation: ActivationFormulas, param: float) -> None:
        """``dz = da * act'(z)``; ``a = act(z)`` is given so sigmoid/tanh use it.

        Kinks take the left branch at exactly 0: relu'(0) = 0, leaky_relu'(0) = slope,
        elu'(0) = alpha.
        """

    def col_sum(self, x: np.ndarray, out: np.ndarray) -> None:
        """``out[j] = sum_i x[i, j]`` (the bias gradient), summed in a fixed order."""

    def loss(self, name: str, logits: np.ndarray, y: np.ndarray,
             grad: Optional[np.ndarray], scale: float, *,
             weights: Optional[np.ndarray] = None) -> float:
        """Return ``sum_i loss_i`` (a Python float) over the rows of ``logits``; ``name``
        is the loss's kernel id.

        Row losses, with k outputs:
          softmax_cross_entropy  ``-sum_j y_ij * log_softmax(z_i)_j``
          binary_cross_entropy   ``mean_j [max(z,0) - z*y + log1p(exp(-|z|))]``
          mse                    ``mean_j (z_ij - y_ij)^2``
          poisson                ``sum_j [y log y - y z - y + exp(z)]`` (y log y = 0 at y = 0)
        If ``grad`` is not None, writes ``grad = scale * d(sum_i loss_i)/d logits``
        (the training loop passes scale = 1/m, so grad is the gradient of the mean).

        ``weights`` (m,) of the dtype, optional: returns ``sum_i w_i * loss_i`` and writes
        grad row i as ``scale * w_i * d loss_i / d logits`` (pass scale = 1/sum(w) for a
        weighted mean). Weights of 1 give the unweighted result bit for bit; a weight of
        2 on a row gives exactly twice that row's gradient (like the row twice).
        weights=None is the unweighted loss.
        """

    def output(self, name: str, logits: np.ndarray, out: np.ndarray) -> None:
        """The loss's output function: softmax rows, elementwise sigmoid, identity or exp."""

    def argmax_rows(self, logits: np.ndarray, out: np.ndarray) -> None:
        """``out[i] = np.argmax(logits[i])`` for (m, k) logits, k >= 1, into the int64
        vector ``out`` of m elements: the first maximum of each row, or its first NaN
        (-0 and +0 tie). The fused trainer's accuracy and predictor's labels use it."""

    # ---- Layers: dropout, maxout, batch normalization, weight penalties ----

    def dropout_forward(self, x: np.ndarray, y: np.ndarray, mask: np.ndarray, rate: float,
                        seed: int, layer: int, step: int, first_row: int = 0) -> None:
        """Inverted dropout (docs/conventions.md) with a counter-based mask, the same bits on
        every backend, ISA and thread count. ``x``, ``y``, ``mask`` have one shape (the
        layer's (m, n) output); ``y`` may be ``x``. ``first_row`` is x's first row's
        index in the whole batch (a data-parallel shard's offset; 0 otherwise). ``0 <= rate < 1``; seed, layer and
        step are ints in [0, 2**64) (TypeError for a non-int, ValueError out of range).
        With uint64 wraparound arithmetic::

            splitmix64(x): z = x + 0x9E3779B97F4A7C15
                           z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
                           z = (z ^ (z >> 27)) * 0x94D049BB133111EB
                           return z ^ (z >> 31)
            key = splitmix64(splitmix64(splitmix64(seed) ^ layer) ^ step)
            h_i = splitmix64(key ^ i)       i = flat row-major index of the element
                                            in the whole batch: first_row * n + its own
            u_i = (h_i >> 40) * 2**-24;     keep iff u_i >= rate

        ``mask[i] = scale if keep else 0`` with ``scale = 1 / (1 - rate)`` computed in
        double and rounded to the dtype; ``y = x * mask`` (NaN in x stays NaN).
        """

    def mul(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """``out = a * b`` elementwise, one shape (dropout's backward: dx = dy * mask);
        ``out`` may be ``a`` or ``b``."""

    def maxout_forward(self, z: np.ndarray, a: np.ndarray, argmax: np.ndarray) -> None:
        """Maxout over k pieces (docs/conventions.md). ``z`` is (m, units * k) with the piece
        index fastest (``z.reshape(m, units, k)``); ``a`` is (m, units) and ``argmax``
        (m, units) int32. ``a[i, u] = z[i, u, p]`` and ``argmax[i, u] = p`` for p the
        lowest piece attaining the maximum (ties, -0 vs +0 included, go to the lowest
        index), or the first NaN piece if any is NaN (so a = NaN): ``np.argmax``.
        """

    def maxout_backward(self, da: np.ndarray, argmax: np.ndarray, dz: np.ndarray) -> None:
        """``dz[i, u*k + p] = da[i, u] if p == argmax[i, u] else 0``; ``da`` (m, units),
        ``argmax`` (m, units) int32 with values in [0, k) (ValueError otherwise),
        ``dz`` (m, units * k)."""

    def batchnorm_forward_train(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                                y: np.ndarray, xhat: np.ndarray, mean: np.ndarray,
                                inv_std: np.ndarray, eps: float) -> None:
        """Batch normalization of ``x`` (m, n), m >= 1, per column, with batch statistics.
        In the dtype, with ``m`` and ``eps`` rounded to it, in this order::

            mean_j    = (sum_i x_ij) / m              (rows added in ascending order)
            var_j     = (sum_i (x_ij - mean_j)**2) / m  (biased; ascending order)
            inv_std_j = 1 / sqrt(var_j + eps)
            xhat_ij   = (x_ij - mean_j) * inv_std_j
            y_ij      = gamma_j * xhat_ij + beta_j

        Writes y, xhat (m, n) and mean, inv_std (n,); no output may overlap another
        array. The sums' order makes every backend, ISA and thread count agree bit for
        bit. (The running averages are the layer's business.)
        """

    def batchnorm_forward_infer(self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray,
                                mean: np.ndarray, var: np.ndarray, eps: float,
                                y: np.ndarray) -> None:
        """Batch normalization with given (running) statistics, in the dtype, in this
        order: ``inv_j = 1 / sqrt(var_j + eps)``;
        ``y_ij = gamma_j * ((x_ij - mean_j) * inv_j) + beta_j``. With the batch's own
        mean and var this is exactly the training forward's y. ``y`` may be ``x``.
        """

    def batchnorm_backward(self, dy: np.ndarray, xhat: np.ndarray, gamma: np.ndarray,
                           inv_std: np.ndarray, dx: np.ndarray, dgamma: np.ndarray,
                           dbeta: np.ndarray) -> None:
        """Gradients of batchnorm_forward_train, from its xhat and inv_std; m >= 1 rows.
        In the dtype, sums over rows in ascending order, in this order::

            dbeta_j  = sum_i dy_ij
            dgamma_j = sum_i dy_ij * xhat_ij
            c_j      = (gamma_j * inv_std_j) / m
            dx_ij    = c_j * ((m * dy_ij - dbeta_j) - xhat_ij * dgamma_j)

        Outputs overlap no other array.
        """

    def batchnorm_running_update(self, mean: np.ndarray, inv_std: np.ndarray,
                                 running_mean: np.ndarray, running_var: np.ndarray,
                                 momentum: float, eps: float) -> None:
        """BatchNorm's running averages from a training forward's ``mean`` and ``inv_std``
        (n,); all four arrays (n,), the outputs overlap no input. With ``m = momentum``::

            var_j          = max(1 / inv_std_j**2 - eps, 0)          (in double)
            running_mean_j = T(m * running_mean_j + T(T(1 - m) * mean_j))
            running_var_j  = T(m * running_var_j + (1 - m) * var_j)

        each sum and the products with ``m`` in double (NumPy's arithmetic: ``1 - m``
        rounded to the dtype T multiplies ``mean`` in T), each result rounded to T once.
        """

    def scale_columns(self, x: np.ndarray, scale: np.ndarray, y: np.ndarray) -> None:
        """``y[i, j] = x[i, j] * scale[j]``: one product per element, in the dtype;
        ``x``, ``y`` (m, n), ``scale`` (n,); ``y`` may be ``x`` (Normalization's
        backward: dx = dy / std)."""

    def add_to(self, x: np.ndarray, y: np.ndarray) -> None:
        """``y += x`` elementwise: one sum per element, in the dtype; one shape, no
        overlap (a MultiTask trunk's gradient: the heads' input gradients added in
        order)."""

    def regularize(self, w: np.ndarray, dw: np.ndarray, l1: float, l2: float) -> float:
        """Add the L1/L2 penalty's gradient to ``dw`` and return the penalty (docs/conventions.md; the caller folds lambda/n into l1 and l2). ``w``, ``dw`` are flat (1-D),
        equal-length, non-overlapping. With ``sign(0) = 0`` (np.sign) and l1, l2 rounded
        to the dtype, only the terms whose rounded coefficient is nonzero are applied::

            both      dw = dw + (l1 * sign(w) + l2 * w)
            only l1   dw = dw + l1 * sign(w)
            only l2   dw = dw + l2 * w

        Returns ``l1 * sum|w| + (l2 / 2) * sum w**2`` in double, each term only if its
        coefficient is nonzero, each sum in sum_squares' fixed order (Sum16 within
        blocks of 16384 elements in the dtype, blocks added in ascending order in double).
        """

    def optimizer_update(self, name: str, param: np.ndarray, grad: np.ndarray,
                         m: Optional[np.ndarray], v: Optional[np.ndarray], *, lr: float,
                         grad_scale: float = 1.0, b1: float = 0.0, b2: float = 0.0,
                         eps: float = 0.0, weight_decay: float = 0.0, step: int = 1,
                         eps_before_correction: bool = False) -> None:
        """One optimizer step in place over flat, equal-length arrays (docs/conventions.md).

        ``name`` is an optimizer's kernel id. ``m`` (velocity or first moment) and ``v``
        (second moment, squared-gradient sum) are the state arrays the optimizer keeps
        (its registry row's ``state``: m for momentum, nesterov, adam and adamw; v for
        adagrad, rmsprop, adam and adamw); pass None for one it does not keep. ``b1`` is mu
        for momentum/nesterov and beta1 for adam; ``b2`` is rho for rmsprop and beta2 for
        adam; ``step`` is t >= 1 (Adam's bias correction); ``eps_before_correction``
        chooses Adam's second form (adam, adamw). In this order, in the dtype:

        ``g = grad_scale * grad`` (clipping), then
          sgd       ``p = p - lr*g``
          momentum  ``m = b1*m - lr*g;  p = p + m``
          nesterov  ``m' = b1*m - lr*g;  p = p + (-b1*m + (1+b1)*m');  m = m'``
          adagrad   ``v = v + g*g;  p = p - (lr*g) / (sqrt(v) + eps)``
          rmsprop   ``v = b2*v + (1-b2)*(g*g);  p = p - (lr*g) / (sqrt(v) + eps)``
          adam      ``m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*(g*g);``
                    ``p = p - lr*(m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)``, or with
                    eps_before_correction ``p = p - (lr_t*m) / (sqrt(v) + eps)``
          adamw     ``p = p - (lr*weight_decay)*p``, then the adam step.
        The combinations 1-b1, 1+b1, 1-b2, 1-b^t, lr*weight_decay and
        ``lr_t = lr*sqrt(1-b2^t) / (1-b1^t)`` are computed in double and then rounded to
        the dtype (csrc/kernels/optimizers.hpp).
        """

    def sum_squares(self, x: np.ndarray) -> float:
        """``sum_i x_i^2`` of a flat array as a Python float, in a fixed order: blocks of
        16384 elements, each summed in the dtype with 16 partial sums (element i into
        partial i mod 16, ascending; partials combined by halving, p[j] += p[j + h] for
        h = 8, 4, 2, 1), the block sums added in ascending order in double. inf or NaN
        when x is not finite (or its squares overflow the dtype)."""

    def all_finite(self, x: np.ndarray) -> bool:
        """Whether every element of the flat array x is finite (no NaN, no infinity):
        fit's check of the parameters and the optimizer's state after each step range."""

    def shuffled_order(self, n: int, seed: int) -> np.ndarray:
        """The rows 0 .. n - 1 in the shuffled order of ``seed`` (a uint64), as int64: a
        Fisher-Yates shuffle drawing from splitmix64 counter-style (docs/conventions.md,
        "Shuffling"), so the order depends on (n, seed) alone. fit draws one seed an
        epoch from the model's shuffle generator."""


# ---- Optional capabilities: weights shared with other threads, Ctrl-C in long calls ----

class WeightsLock:
    """One model's lock over its weights for the per-op paths: a training step writes
    them holding ``writing``, a per-op predict reads them holding ``reading`` (context
    managers), so a predict in another thread sees them between two steps. Here one
    ``threading.Lock`` serves both (concurrent per-op predicts take turns). A backend may
    offer its own as ``weights_lock()`` (the native one: a readers/writer lock its fused
    trainer and predictor share)."""

    def __init__(self):
        self.writing = self.reading = threading.Lock()


# ``sigint_watch()`` (optional, the native backend): an object whose ``installed`` says
# whether SIGINT now also sets a flag that a fused run given it as ``watch`` reads before
# each step (ending there), and whose ``close()`` puts the previous handler back. Python's
# own SIGINT handler still runs (the signal is passed on to it).


# ---- Optional capability: the fused training path ----

@runtime_checkable
class FusedTrainer(Protocol):
    """A trainer bound to one model's flat buffers (see :meth:`FusedTraining.fused_trainer`).

    ``run(X, Y, W, order, step_begin, step_end, lrs, t0, model_step, totals)`` runs steps
    ``[step_begin, step_end)`` of one epoch without returning to Python: step s gathers
    the rows ``order[s*b : min(m, (s+1)*b)]`` (m: order's length, the rows the epoch
    visits: n, or fewer for a streamed block) of X (n, n_in), Y (n, k) (k: the loss
    heads' widths summed, each head's targets in its columns, in order) and W (n,) (row
    weights, or None), with b the batch size, and does exactly what the per-op loop does
    for that step (forward, loss, backward, penalty, finite-gradient check, clipping and
    the optimizer update), with ``lrs[s - step_begin]`` (float64) as its rate, ``t0 + s -
    step_begin`` as its optimizer step number t and ``model_step + s - step_begin`` as
    the model's training-step counter (Dropout's masks). ``order`` is int64 with values
    in [0, n). ``n_samples`` is the penalty's n (the training set's rows; 0: m). The
    completed steps are added to ``totals`` (from :meth:`new_totals`):
    ``steps``, ``weight_sum`` (rows, or the sums of the row weights), ``penalty_sum``
    (sum of penalty * rows) and per loss head (``heads[i]``; ``loss_sum``, ``correct``
    and ``count`` read the only head's) ``loss_sum`` (sum of the batches' summed,
    weighted, row losses), accuracy's ``correct`` and ``count``, r2's per-output
    ``sse``, ``sum`` and ``sum_sq`` of y minus the first batch's mean. A step whose loss or
    gradient is not finite ends the run before its update and is reported in
    ``diverged_step`` (its index in the epoch; -1 if none), ``diverged`` ("loss",
    "gradient" or None), ``diverged_value`` (the step's loss, sum_h w_h * loss sum_h, or
    the squared gradient norm)
    and ``diverged_rows``. With ``watch`` (from ``sigint_watch()``), a SIGINT ends the
    run before the next step and sets ``interrupted``. ``state_finite`` says whether the
    parameters and m and v are all finite after the run. With ``save_first`` the run
    first saves the parameters and m and v, which ``restore_saved()`` puts back (fit's
    roll-back to the start of an epoch). Returns ``totals``. The GIL is released while
    it runs; each step holds the model's weights lock exclusively.

    ``gradient(X, Y, W, order, step, model_step)`` computes step ``step`` as ``run``
    would (forward, loss, backward, penalty) without the update, and returns (loss,
    weight, penalty): the step's loss sum, the weight behind it (rows or the row
    weights' sum) and the penalty, the gradient of the mean loss plus the penalty in
    ``grads``; after a non-finite loss ``grads`` is left as it was and the penalty is 0.
    A trainer with ``batch_size >= n`` computes the whole-batch objective at step 0.
    A data-parallel shard (:mod:`fastmlp.train.distributed`) passes ``divisor``, its
    global batch's rows or weight sum (the loss scale's, instead of the step's own), and
    ``first_row``, its first row's index in the global batch (Dropout's masks).
    ``outputs(rows)`` then gives, per loss head, (its loss sum, a copy of its (rows, k)
    logits).
    """

    batch_size: int

    def steps_per_epoch(self, n: int) -> int: ...

    def new_totals(self): ...

    def run(self, X: np.ndarray, Y: np.ndarray, W: Optional[np.ndarray], order: np.ndarray,
            step_begin: int, step_end: int, lrs: np.ndarray, t0: int, model_step: int,
            totals, watch=None, save_first: bool = False, n_samples: int = 0): ...

    def restore_saved(self) -> None: ...

    def gradient(self, X: np.ndarray, Y: np.ndarray, W: Optional[np.ndarray],
                 order: np.ndarray, step: int, model_step: int, divisor: float = 0.0,
                 first_row: int = 0) -> Tuple[float, float, float]: ...

    def outputs(self, rows: int) -> List[Tuple[float, np.ndarray]]: ...


@runtime_checkable
class FusedTraining(Protocol):
    """A backend that can run whole ranges of training steps in one call (the native
    backend; the NumPy backend does not, and the training loop checks for the method).

    ``fused_trainer(*, params, grads, m, v, program, loss, optimizer, batch_size, b1, b2,
    eps, weight_decay, eps_before_correction, clipnorm)`` creates a :class:`FusedTrainer` holding workspaces for
    ``batch_size`` rows, bound to the model's flat ``params`` and ``grads`` and to the
    optimizer's state ``m``, ``v`` (None when the optimizer keeps none); the arrays are
    checked once and kept alive. ``program`` is the model's layers' plans compiled into
    flat buffers and op records (:func:`fastmlp.train.fused.training_program`, the format
    in docs/plans.md): buffer roles, shapes and arrays (the views into params and grads,
    the state and constant arrays), and the forward, backward and penalty op records; a
    program of several loss heads lists them (``heads``: each one's loss kernel, output,
    loss gradient and weight; :func:`fastmlp.train.fused.multitask_program`) and takes
    ``loss`` None. ``loss`` and ``optimizer`` are kernel ids (see the module docstring), the optimizer
    with the keyword arguments of :meth:`Backend.optimizer_update`, ``clipnorm`` None or
    the global-norm bound, and ``lock`` the model's ``weights_lock()``.
    """

    def fused_trainer(self, **description) -> FusedTrainer: ...
