"""What tests/distributed/test_mpi.py runs under ``mpiexec -n P``: one case per call,
``python mpi_worker.py CASE OUT_DIR [ARG]``. Every rank runs the case; rank 0 writes the
results as JSON to OUT_DIR/CASE.json, or CASE-ARG.json (plus what each rank saw, gathered)."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import sys
import time

import numpy as np

import fastmlp
from fastmlp.backends.numpy import round_to_bfloat16
from fastmlp.distributed import MPI, Exchange, shard_bounds

fastmlp.set_num_threads(1)          # P ranks share this machine's cores
mpi = MPI(timeout=60)
comm = mpi.comm


def data(rows=301, dim=7, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, dim))
    y = np.argmax(X[:, :classes] + 0.3 * rng.normal(size=(rows, classes)), axis=1)
    return X, y


MODELS = {
    "dense": lambda: [fastmlp.Dense(17, activation="relu"), fastmlp.Dense(3)],
    "batchnorm": lambda: [fastmlp.Dense(17), fastmlp.BatchNorm(), fastmlp.Dense(9, activation="tanh"),
                          fastmlp.Dense(3)],
    "dropout": lambda: [fastmlp.Dense(33, activation="relu"), fastmlp.Dropout(0.3), fastmlp.Dense(3)],
    "l2": lambda: [fastmlp.Dense(17, activation="relu", regularizer=fastmlp.L2(0.01)),
                   fastmlp.Dense(3)],
}


def model(kind, dtype="float64", seed=3, precision=None):
    return fastmlp.Sequential(MODELS[kind](), input_dim=7, dtype=dtype, seed=seed,
                              loss="softmax_cross_entropy", precision=precision)


def same_on_every_rank(array) -> bool:
    digests = comm.allgather(bytes(np.ascontiguousarray(array).data))
    return all(d == digests[0] for d in digests)


def report(case, result):
    if mpi.is_root:
        path = pathlib.Path(sys.argv[2]) / f"{case}.json"
        path.write_text(json.dumps(result))


def relative(a, b) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def case_fit():
    """Each model distributed vs one process on the same global batches (float64)."""
    X, y = data()
    weights = np.random.default_rng(1).uniform(0, 2, len(X))
    result = {}
    runs = [(kind, weighted, 32) for kind in MODELS for weighted in (False, True)]
    runs.append(("batchnorm", True, 100))   # the last batch's 1 row: empty shards
    for kind, weighted, batch in runs:
        kwargs = dict(epochs=3, batch_size=batch, optimizer="adam", verbose=0,
                      sample_weight=weights if weighted else None)
        m = model(kind)
        history = m.fit(X, y, distributed=mpi, **kwargs).history
        ref = model(kind)
        ref_history = ref.fit(X, y, **kwargs).history
        state = [a for layer in m.layers for a in layer.get_state()]
        ref_state = [a for layer in ref.layers for a in layer.get_state()]
        result[f"{kind}{'-weighted' if weighted else ''}-batch{batch}"] = {
            "params": relative(m.flat_params, ref.flat_params),
            "state": max([relative(a, b) for a, b in zip(state, ref_state)], default=0.0),
            "loss": relative(np.array(history["loss"]), np.array(ref_history["loss"])),
            "accuracy": history["accuracy"] == ref_history["accuracy"],
            "same_on_every_rank": same_on_every_rank(m.flat_params)
            and all(same_on_every_rank(a) for a in state),
            "training_step": [m.training_step, ref.training_step],
            "steps": 3 * -(-len(X) // batch)}
    report("fit", result)


def case_multitask():
    """A MultiTask (a BatchNorm and Dropout trunk, a classification and a regression
    head) distributed vs one process (float64)."""
    X, y = data()
    targets = {"class": y, "value": X[:, :2] @ np.array([1.0, -2.0])}

    def multitask():
        return fastmlp.MultiTask(
            [fastmlp.Dense(16, activation="relu"), fastmlp.BatchNorm(), fastmlp.Dropout(0.2)],
            {"class": [fastmlp.Dense(3)], "value": [fastmlp.Dense(8, activation="tanh"),
                                                    fastmlp.Dense(1)]},
            {"class": "softmax_cross_entropy", "value": "mse"}, {"class": 1.0, "value": 0.5},
            input_dim=7, dtype="float64", seed=5)
    kwargs = dict(epochs=3, batch_size=32, optimizer="adam", verbose=0)
    m, ref = multitask(), multitask()
    history = m.fit(X, targets, distributed=mpi, **kwargs).history
    ref_history = ref.fit(X, targets, **kwargs).history
    report("multitask", {
        "params": relative(m.flat_params, ref.flat_params),
        "history": {k: relative(np.array(v), np.array(ref_history[k])) for k, v in history.items()
                    if k != "class_accuracy"},
        "accuracy": history["class_accuracy"] == ref_history["class_accuracy"],
        "same_on_every_rank": same_on_every_rank(m.flat_params)})


def case_fused():
    """The shards' gradients on the fused path (one C++ call, FusedShard) equal the
    per-op path's bit for bit: the weights and History, for each model without BatchNorm
    (Dropout's masks by global row, the penalty once, sample weights), a MultiTask and a
    precision="bfloat16" model (the shard's program carries the flag to its products)."""
    from fastmlp.train.distributed import FusedShard
    X, y = data()
    weights = np.random.default_rng(1).uniform(0, 2, len(X))
    calls = []
    gradient = FusedShard.gradient

    def counted(self, *args):
        calls.append(1)
        return gradient(self, *args)
    FusedShard.gradient = counted

    def multitask():
        return fastmlp.MultiTask(
            [fastmlp.Dense(16, activation="relu"), fastmlp.Dropout(0.2)],
            {"class": [fastmlp.Dense(3)], "value": [fastmlp.Dense(1)]},
            {"class": "softmax_cross_entropy", "value": "mse"}, input_dim=7, seed=5)
    runs = {f"{kind}{'-weighted' if w else ''}": (lambda kind=kind: model(kind, "float32"),
                                                   dict(sample_weight=weights if w else None))
            for kind in ("dense", "dropout", "l2") for w in (False, True)}
    runs["multitask"] = (multitask, {})
    runs["dropout-bfloat16"] = (lambda: model("dropout", "float32", precision="bfloat16"), {})
    targets = {"class": y, "value": X[:, :1]}
    result = {}
    for name, (build, extra) in runs.items():
        trained = []
        for fused in (True, False):
            fastmlp.training._FUSED = fused
            m = build()
            history = m.fit(X, targets if name == "multitask" else y, epochs=2, batch_size=32,
                            optimizer="adam", verbose=0, distributed=mpi, **extra).history
            trained.append((m.flat_params.copy(), history))
        fastmlp.training._FUSED = True
        result[name] = bool(np.array_equal(trained[0][0], trained[1][0])
                            and trained[0][1] == trained[1][1])
    report("fused", {"equal": result, "fused_calls": len(calls)})


def case_gradient():
    """One step's gradient on float32: distributed vs one process, and the bound
    2 * gamma_B * sum |terms| of docs/distributed.md, from a float64 forward. With the
    argument "bfloat16", a precision="bfloat16" model: the shards round the same operands
    (rows do not interact), so only the weight gradients' sums over rows run in another
    order, and the same bound holds with the products' operands rounded (the forward
    in float64 rounds them where the model's products do)."""
    precision = sys.argv[3] if len(sys.argv) > 3 else None
    rounded = round_to_bfloat16 if precision else (lambda a: a)
    X, y = data(rows=257)
    X = X.astype(np.float32)
    m = model("dense", "float32", precision=precision)
    Xp, Y = m.prepare_data(X, y)
    single = model("dense", "float32", precision=precision)
    single.loss_and_grad(Xp, Y)
    lo, hi = shard_bounds(len(Xp), mpi.rank, mpi.size)
    loss, logits = m.loss_and_grad(Xp[lo:hi], Y[lo:hi], divisor=len(Xp), first_row=lo)
    Exchange(mpi).step(m.flat_grads, [loss], [logits], len(Xp), False)
    # the terms' absolute sums in float64: |dz|^T |x| for W, sum |dz| for b, per layer
    (W1, b1), (W2, b2) = [(layer.W.astype(np.float64), layer.b.astype(np.float64))
                          for layer in single.layers]
    def r(a):   # a float64 array rounded as the model's products round their operands
        return rounded(a.astype(np.float32)).astype(np.float64)
    x = Xp.astype(np.float64)
    h = np.maximum(r(x) @ r(W1).T + b1, 0)
    z = r(h) @ r(W2).T + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz2 = (p - Y) / len(x)
    dz1 = (r(dz2) @ r(W2)) * (h > 0)
    terms = np.concatenate([(np.abs(r(dz1)).T @ np.abs(r(x))).ravel(), np.abs(dz1).sum(0),
                            (np.abs(r(dz2)).T @ np.abs(r(h))).ravel(), np.abs(dz2).sum(0)])
    u = float(np.finfo(np.float32).eps) / 2
    B = len(x)
    gamma = B * u / (1 - B * u)
    diff = np.abs(m.flat_grads.astype(np.float64) - single.flat_grads)
    report(f"gradient-{precision}" if precision else "gradient", {"worst": float((diff / (2 * gamma * terms * 1.001 + 1e-30)).max()),
                        "differ": int((diff > 0).sum()), "n": int(diff.size),
                        "same_on_every_rank": same_on_every_rank(m.flat_grads)})


def case_checkpoint():
    """Epochs 1-4 under this job's ranks with checkpoints, stopped by Ctrl-C after epoch
    2 (argv[3] == "start"), or resumed from them (argv[3] == "resume"); rank 0 alone
    writes."""
    X, y = data()
    directory = pathlib.Path(sys.argv[2]) / "checkpoints"
    writes = []
    resume = sys.argv[3] == "resume"
    m = model("batchnorm")
    original = m.write_checkpoint

    def counted(*args, **kwargs):              # the model file writes of this rank
        writes.append(1)
        return original(*args, **kwargs)
    m.write_checkpoint = counted
    interrupt = [_Callback(lambda: os.kill(os.getpid(), signal.SIGINT), rank=0,
                           epoch=99 if resume else 2)]
    try:
        m.fit(X, y, epochs=4, batch_size=40, optimizer="adam", verbose=0, distributed=mpi,
              checkpoint_dir=directory, resume=resume, checkpoint_every_steps=3,
              callbacks=interrupt)
    except KeyboardInterrupt:
        pass
    ref = model("batchnorm")
    ref.fit(X, y, epochs=4, batch_size=40, optimizer="adam", verbose=0)
    report(f"checkpoint-{sys.argv[3]}", {
        "writes": comm.gather(len(writes)), "params": relative(m.flat_params, ref.flat_params),
        "history": m.history.history["loss"], "ref_history": ref.history.history["loss"],
        "same_on_every_rank": same_on_every_rank(m.flat_params)})


class _Callback(fastmlp.callbacks.Callback):
    """``action()`` at the end of ``epoch`` on rank ``rank`` only."""

    def __init__(self, action, epoch=1, rank=1):
        self.action, self.epoch, self.rank = action, epoch, rank

    def on_epoch_end(self, epoch, logs):
        if epoch == self.epoch and mpi.rank == self.rank:
            self.action()


def _fit_with(action):
    X, y = data()
    model("dense").fit(X, y, epochs=3, batch_size=16, verbose=0, distributed=mpi,
                       callbacks=[_Callback(action)])


def case_die():
    """Rank 1 is killed after epoch 1 (as by the kernel's OOM killer): the job must end."""
    _fit_with(lambda: os.kill(os.getpid(), signal.SIGKILL))


def case_hang():
    """Rank 1 hangs after epoch 1: the others time out (MPI(timeout=3))."""
    global mpi
    mpi = MPI(timeout=3)
    _fit_with(lambda: time.sleep(600))


def case_interrupt():
    """Ctrl-C reaches rank 1 only: every rank stops after the same step."""
    try:
        _fit_with(lambda: os.kill(os.getpid(), signal.SIGINT))
        stopped = "no"
    except KeyboardInterrupt as exc:
        stopped = str(exc)
    m_steps = comm.gather(stopped)
    report("interrupt", {"stopped": m_steps})


def case_mismatch():
    """Models of different seeds: ValueError on every rank, naming what differs."""
    X, y = data()
    try:
        model("dense", seed=mpi.rank).fit(X, y, epochs=1, verbose=0, distributed=mpi)
        message = "no error"
    except ValueError as exc:
        message = str(exc)
    report("mismatch", {"messages": comm.gather(message)})


def case_one_rank():
    """One rank: fit(distributed=) equals fit's per-op path bit for bit."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(97, 5)), rng.integers(0, 2, 97)

    def trained(**kwargs):
        m = fastmlp.Sequential([fastmlp.Dense(8, activation="relu"), fastmlp.Dropout(0.2),
                                fastmlp.BatchNorm(), fastmlp.Dense(2)], input_dim=5, seed=1,
                               loss="softmax_cross_entropy")
        m.fit(X, y, epochs=2, batch_size=10, optimizer="adam", verbose=0, **kwargs)
        return m
    distributed = trained(distributed=mpi)
    fastmlp.training._FUSED = False
    report("one_rank", {"equal": bool(np.array_equal(distributed.flat_params,
                                                     trained().flat_params))})


def case_arguments():
    """The errors of bad arguments (every message in order)."""
    X, y = np.zeros((4, 2)), np.zeros(4, int)
    m = fastmlp.Sequential([fastmlp.Dense(2)], input_dim=2, loss="softmax_cross_entropy")
    attempts = [lambda: m.fit(X, y, epochs=1, distributed="mpi"),
                lambda: m.fit(fastmlp.sources.Npy(X, y), epochs=1, distributed=mpi),
                lambda: MPI(timeout=0)]
    messages = []
    for attempt in attempts:
        try:
            attempt()
            messages.append("no error")
        except (TypeError, ValueError) as exc:
            messages.append(str(exc))
    report("arguments", {"messages": messages})


if __name__ == "__main__":
    globals()[f"case_{sys.argv[1]}"]()
