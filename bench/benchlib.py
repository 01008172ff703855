"""Shared pieces of the benchmark suite: the configurations, synthetic data, thread
control, one trainer per implementation, GEMM cases and their correctness checks.

Used by the pytest-benchmark files (``pytest bench``) and by the worker processes of
``bench/report.py``, so both time exactly the same code. Comparisons with PyTorch and
scikit-learn are optional: :func:`available` tells whether one is installed.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import math
import platform
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

IMPLS = ("native", "numpy", "torch", "sklearn")   # training and inference
INFER_IMPLS = IMPLS + ("onnxruntime",)            # onnxruntime: inference only
GEMM_IMPLS = ("native", "numpy")                  # fastmlp's GEMM vs numpy.matmul (OpenBLAS)
THREADS = (1, 2)
N_CLASSES = 10


# --------------------------------------------------------------------- configurations
@dataclass(frozen=True)
class Config:
    name: str
    dims: Tuple[int, ...]     # input, hidden..., classes
    batch: int
    rows: int                 # synthetic training rows of a full measurement
    note: str

    @property
    def label(self) -> str:
        return f"{self.name}: {'-'.join(map(str, self.dims))}, batch {self.batch}"

    @property
    def flops_per_sample(self) -> int:
        """Training FLOPs per sample: forward 2 in*out, dW 2 in*out and dX 2 in*out per
        layer, minus the first layer's dX, which nobody needs: 6 sum(in*out) - 2 in_1*out_1.
        (Bias, activation, loss and optimizer work is not counted.)"""
        pairs = list(zip(self.dims, self.dims[1:]))
        return 6 * sum(i * o for i, o in pairs) - 2 * pairs[0][0] * pairs[0][1]


CONFIGS: Dict[str, Config] = {c.name: c for c in [
    Config("A", (784, 256, 128, 10), 128, 60_000, "MNIST-sized"),
    Config("B", (784, 256, 128, 10), 1024, 60_000, "large batch"),
    Config("C", (64, 32, 10), 32, 60_000, "per-call overhead rules"),
    Config("D", (1024, 1024, 1024, 10), 256, 16_384, "GEMM rules"),
]}
LEARNING_RATE = 1e-3          # Adam, every implementation
INFERENCE_CONFIG = "A"
INFERENCE_ROWS = (1, 10_000)

# Rows of the pytest smoke run (--benchmark-disable): a few batches per epoch.
SMOKE_ROWS = {"A": 512, "B": 2048, "C": 256, "D": 512}


def available(impl: str) -> bool:
    """native and numpy always; torch and sklearn when installed; onnxruntime when onnx
    (fastmlp's export) and onnxruntime both are."""
    modules = {"torch": ("torch",), "sklearn": ("sklearn",),
               "onnxruntime": ("onnx", "onnxruntime")}.get(impl, ())
    return all(importlib.util.find_spec(module) is not None for module in modules)


def synthetic(rows: int, dim: int, classes: int = N_CLASSES, seed: int = 0
              ) -> Tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs: float32 X (rows, dim) = a class centre + standard normal noise,
    int64 labels, 10 % of them replaced by random ones. The centres are drawn with sd
    2/sqrt(dim), so neighbouring classes overlap and the loss stays well above 0 for a
    few epochs (a loss near 0 brings subnormal numbers into the timings), yet it falls
    visibly within an epoch."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim), dtype=np.float32)
    centers *= np.float32(2.0 / math.sqrt(dim))
    y = rng.integers(0, classes, size=rows)
    X = rng.standard_normal((rows, dim), dtype=np.float32)
    X += centers[y]
    noisy = rng.random(rows) < 0.1
    y[noisy] = rng.integers(0, classes, size=int(noisy.sum()))
    return X, y


def synthetic_borders(rows: int, dim: int, border: float = 0.4, seed: int = 0
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`synthetic` with a digit image's border: the first ``border`` of the columns
    hold 0 except in about one row in 50,000 each, as a handwritten digit's edge pixels.
    The optimizer's state of the weights they feed then decays for thousands of steps
    between two nonzero inputs (the steady state a long run reaches)."""
    X, y = synthetic(rows, dim, seed=seed)
    edge = int(dim * border)
    rng = np.random.default_rng(seed + 1)
    X[:, :edge] *= rng.random((rows, edge)) < 2e-5
    return X, y


@functools.lru_cache(maxsize=2)
def cached_synthetic(rows: int, dim: int) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`synthetic` with seed 0, cached (configs A and B share their data)."""
    return synthetic(rows, dim)


def cross_entropy(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean -log p[y] in float64 (probabilities clipped away from 0)."""
    p = np.clip(proba[np.arange(len(y)), y].astype(np.float64), 1e-300, None)
    return float(-np.log(p).mean())


# --------------------------------------------------------------------- threads
@contextlib.contextmanager
def threads(impl: str, n: int) -> Iterator[None]:
    """Run ``impl`` on ``n`` threads: threadpoolctl limits every BLAS and OpenMP pool
    loaded in the process (OpenBLAS for numpy and scikit-learn, torch's libgomp);
    on top of that ``fastmlp.threads(n)`` for ours and ``torch.set_num_threads(n)``.
    The implementation's libraries are imported first: threadpoolctl limits only the
    pools already loaded."""
    from threadpoolctl import threadpool_limits
    preload = {"native": "fastmlp.backends.native",     # _core and its OpenMP
               "torch": "torch",
               "sklearn": "sklearn.neural_network"}     # scipy's OpenBLAS, sklearn's OpenMP
    if impl in preload:
        importlib.import_module(preload[impl])
    with contextlib.ExitStack() as stack:
        stack.enter_context(threadpool_limits(limits=n))
        if impl == "native":
            import fastmlp
            stack.enter_context(fastmlp.threads(n))
        elif impl == "torch":
            import torch
            previous = torch.get_num_threads()
            torch.set_num_threads(n)
            stack.callback(torch.set_num_threads, previous)
        yield


# --------------------------------------------------------------------- trainers
class Trainer:
    """One implementation training a config with softmax cross-entropy and Adam(1e-3):
    ``epoch()`` runs one shuffled pass over (X, y) in mini-batches; ``loss(X, y)`` is the
    mean cross-entropy of the current weights (not timed)."""

    impl: str

    def epoch(self) -> None:
        raise NotImplementedError

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def set_weights(self, weights: List[np.ndarray]) -> None:
        """[W1, b1, W2, b2, ...] with W (n_out, n_in), as fastmlp's get_weights()."""
        raise NotImplementedError


class FastmlpTrainer(Trainer):
    def __init__(self, impl: str, cfg: Config, X: np.ndarray, y: np.ndarray, seed: int = 0,
                 precision: Optional[str] = None):
        import fastmlp
        self.impl, self.cfg, self.X, self.y = impl, cfg, X, y
        layers = [fastmlp.Dense(units, activation="relu") for units in cfg.dims[1:-1]]
        layers.append(fastmlp.Dense(cfg.dims[-1]))
        self.model = fastmlp.Sequential(layers, input_dim=cfg.dims[0], backend=impl,
                                        dtype="float32", seed=seed, precision=precision)
        self._optimizer = fastmlp.Adam(learning_rate=LEARNING_RATE)

    def epoch(self) -> None:
        self.fit(1)

    def fit(self, epochs: int, callbacks=None) -> None:
        """``epochs`` epochs in one fit call (the report times them with a callback)."""
        optimizer = self._optimizer
        self._optimizer = None    # the model keeps it from the first fit on
        self.model.fit(self.X, self.y, epochs=epochs, batch_size=self.cfg.batch,
                       optimizer=optimizer, callbacks=callbacks)

    def loss(self, X, y) -> float:
        return float(self.model.evaluate(X, y)["loss"])

    def predict_proba(self, X):
        return self.model.predict_proba(X)

    def set_weights(self, weights):
        self.model.set_weights(weights)


class TorchTrainer(Trainer):
    """PyTorch eager on the CPU, the textbook loop: nn.Sequential of Linear + ReLU,
    CrossEntropyLoss, torch.optim.Adam with its defaults, randperm + index_select."""

    impl = "torch"

    def __init__(self, cfg: Config, X: np.ndarray, y: np.ndarray, seed: int = 0,
                 autocast: bool = False):
        import torch
        from torch import nn
        self.torch, self.cfg = torch, cfg
        self.autocast = autocast   # torch.autocast("cpu", dtype=torch.bfloat16) around forward and loss
        torch.manual_seed(seed)
        layers: list = []
        for i, (n_in, n_out) in enumerate(zip(cfg.dims, cfg.dims[1:])):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(cfg.dims) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=LEARNING_RATE)
        self.criterion = nn.CrossEntropyLoss()
        self.X = torch.from_numpy(X)
        self.y = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        self.generator = torch.Generator().manual_seed(seed)

    def epoch(self) -> None:
        torch, n, batch = self.torch, len(self.X), self.cfg.batch
        order = torch.randperm(n, generator=self.generator)
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            xb, yb = self.X.index_select(0, rows), self.y.index_select(0, rows)
            self.optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.autocast):
                loss = self.criterion(self.net(xb), yb)
            loss.backward()
            self.optimizer.step()

    def predict_proba(self, X):
        with self.torch.no_grad():
            return self.torch.softmax(self.net(self.torch.from_numpy(X)), dim=1).numpy()

    def loss(self, X, y) -> float:
        return cross_entropy(self.predict_proba(X), y)

    def _linears(self):
        return [m for m in self.net if isinstance(m, self.torch.nn.Linear)]

    def set_weights(self, weights):
        with self.torch.no_grad():
            for m, w, b in zip(self._linears(), weights[0::2], weights[1::2]):
                m.weight.copy_(self.torch.from_numpy(np.asarray(w, np.float32)))
                m.bias.copy_(self.torch.from_numpy(np.asarray(b, np.float32)))


class SklearnTrainer(Trainer):
    """scikit-learn's MLPClassifier(solver="adam", alpha=0, batch_size=...): one
    ``partial_fit`` is one epoch. It keeps float32 for float32 input. Construction runs
    one partial_fit on the first batch to initialize the weights (not timed)."""

    impl = "sklearn"

    def __init__(self, cfg: Config, X: np.ndarray, y: np.ndarray, seed: int = 0):
        from sklearn.neural_network import MLPClassifier
        self.cfg, self.X, self.y = cfg, X, y
        self.classes = np.arange(cfg.dims[-1])
        self.clf = MLPClassifier(hidden_layer_sizes=cfg.dims[1:-1], activation="relu",
                                 solver="adam", learning_rate_init=LEARNING_RATE,
                                 batch_size=cfg.batch, alpha=0.0, shuffle=True,
                                 random_state=seed, max_iter=1)
        with self._quiet():
            self.clf.partial_fit(X[:cfg.batch], y[:cfg.batch], classes=self.classes)

    @staticmethod
    @contextlib.contextmanager
    def _quiet():
        """partial_fit with max_iter=1 may warn that it did not converge: expected."""
        from sklearn.exceptions import ConvergenceWarning
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            yield

    def epoch(self) -> None:
        with self._quiet():
            self.clf.partial_fit(self.X, self.y)

    def predict_proba(self, X):
        return self.clf.predict_proba(X)

    def loss(self, X, y) -> float:
        return cross_entropy(self.predict_proba(X), y)

    def set_weights(self, weights):
        dtype = self.clf.coefs_[0].dtype
        self.clf.coefs_ = [np.ascontiguousarray(np.asarray(w, dtype).T) for w in weights[0::2]]
        self.clf.intercepts_ = [np.asarray(b, dtype).copy() for b in weights[1::2]]


def make_trainer(impl: str, cfg: Config, X: np.ndarray, y: np.ndarray, seed: int = 0) -> Trainer:
    if impl in ("native", "numpy"):
        return FastmlpTrainer(impl, cfg, X, y, seed)
    if impl == "torch":
        return TorchTrainer(cfg, X, y, seed)
    if impl == "sklearn":
        return SklearnTrainer(cfg, X, y, seed)
    raise ValueError(f"unknown implementation {impl!r}")


class OnnxRuntimePredictor:
    """onnxruntime running fastmlp's own ONNX export (``model.to_onnx``) of a float32
    model of ``cfg`` holding ``weights``: CPUExecutionProvider, ``intra_op_num_threads``
    = ``threads``, ``inter_op_num_threads`` = 1."""

    impl = "onnxruntime"

    def __init__(self, cfg: Config, weights: List[np.ndarray], threads: int):
        import os
        import tempfile
        import onnxruntime
        model = FastmlpTrainer("numpy", cfg, *synthetic(cfg.batch, cfg.dims[0])).model
        model.set_weights(weights)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "model.onnx")
            model.to_onnx(path)
            self.session = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.asarray(X, np.float32)})[0]


def make_predictor(impl: str, cfg: Config, weights: List[np.ndarray], threads: int):
    """Something whose ``predict_proba(X)`` runs ``impl``'s inference of ``cfg`` holding
    ``weights``: a trainer of :func:`make_trainer` given them, or for onnxruntime an
    :class:`OnnxRuntimePredictor` on ``threads`` threads (its own pool: call it inside
    :func:`threads` like the others all the same)."""
    if impl == "onnxruntime":
        return OnnxRuntimePredictor(cfg, weights, threads)
    trainer = make_trainer(impl, cfg, *synthetic(cfg.batch, cfg.dims[0]))
    trainer.set_weights(weights)
    return trainer


def inference_weights(cfg: Config, seed: int = 1) -> List[np.ndarray]:
    """Initial weights of a fastmlp model of ``cfg`` ([W1, b1, ...], W (n_out, n_in)):
    every implementation's inference benchmark holds these."""
    import fastmlp
    layers = [fastmlp.Dense(units, activation="relu") for units in cfg.dims[1:-1]]
    layers.append(fastmlp.Dense(cfg.dims[-1]))
    model = fastmlp.Sequential(layers, input_dim=cfg.dims[0], backend="numpy", seed=seed)
    return model.get_weights()


def reference_proba(weights: List[np.ndarray], X: np.ndarray) -> np.ndarray:
    """The forward pass of a ReLU MLP in float64 with plain numpy: softmax probabilities."""
    a = X.astype(np.float64)
    n_layers = len(weights) // 2
    for i in range(n_layers):
        W, b = weights[2 * i].astype(np.float64), weights[2 * i + 1].astype(np.float64)
        a = a @ W.T + b
        if i < n_layers - 1:
            a = np.maximum(a, 0.0)
    a -= a.max(axis=1, keepdims=True)
    np.exp(a, out=a)
    a /= a.sum(axis=1, keepdims=True)
    return a


def check_proba(proba: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute difference of two probability arrays (float32 forward: < 1e-4)."""
    assert proba.shape == ref.shape, (proba.shape, ref.shape)
    return float(np.max(np.abs(proba.astype(np.float64) - ref)))


# --------------------------------------------------------------------- GEMM
@dataclass(frozen=True)
class GemmCase:
    """C (m, n) = op(A) @ op(B) with inner dimension k. ``op`` is "square" (A @ B), "fwd"
    (Z = X @ W.T), "dW" (dW = dZ.T @ X) or "dX" (dX = dZ @ W) of a Dense layer
    in -> out at a batch size."""
    op: str
    m: int
    k: int
    n: int
    layer: str = ""

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    @property
    def label(self) -> str:
        shape = f"{self.m}x{self.k}x{self.n}"
        return f"{self.op} {self.layer} ({shape})" if self.layer else f"{self.op} {shape}"

    @property
    def id(self) -> str:
        """For pytest ids: square-256, fwd-b128-784to256, dW-..., dX-..."""
        if not self.layer:
            return f"{self.op}-{self.m}"
        return f"{self.op}-" + self.layer.replace(" ", "-").replace("->", "to")


GEMM_SQUARES = (256, 512, 1024)
GEMM_BATCHES = (32, 128, 1024)
GEMM_LAYERS = ((784, 256), (256, 128), (128, 10), (1024, 1024))


def gemm_cases() -> List[GemmCase]:
    cases = [GemmCase("square", s, s, s) for s in GEMM_SQUARES]
    for batch in GEMM_BATCHES:
        for n_in, n_out in GEMM_LAYERS:
            layer = f"b{batch} {n_in}->{n_out}"
            cases += [GemmCase("fwd", batch, n_in, n_out, layer),     # X (b,in) @ W.T
                      GemmCase("dW", n_out, batch, n_in, layer),      # dZ.T (out,b) @ X
                      GemmCase("dX", batch, n_out, n_in, layer)]      # dZ (b,out) @ W
    return cases


def gemm_setup(impl: str, case: GemmCase, dtype, seed: int = 0
               ) -> Tuple[Callable[[], None], Callable[[], float]]:
    """(run, error): ``run()`` computes C in place with fastmlp's GEMM (the native backend)
    or numpy.matmul on transposed views (OpenBLAS is told the transposes, no copies);
    ``error()`` is ||C - C64|| / ||C64|| against the product in float64."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)

    def rand(*shape):
        return rng.standard_normal(shape).astype(dtype)

    m, k, n = case.m, case.k, case.n
    if case.op == "square":
        a, b, trans_a, trans_b = rand(m, k), rand(k, n), False, False
    elif case.op == "fwd":
        a, b, trans_a, trans_b = rand(m, k), rand(n, k), False, True       # X, W
    elif case.op == "dW":
        a, b, trans_a, trans_b = rand(k, m), rand(k, n), True, False       # dZ, X
    elif case.op == "dX":
        a, b, trans_a, trans_b = rand(m, k), rand(k, n), False, False      # dZ, W
    else:
        raise ValueError(case.op)
    c = np.full((m, n), np.nan, dtype)
    op_a = a.T if trans_a else a
    op_b = b.T if trans_b else b

    if impl == "native":
        from fastmlp.backends import get_backend
        gemm = get_backend("native").gemm

        def run():
            gemm(a, b, c, trans_a=trans_a, trans_b=trans_b)
    elif impl == "numpy":
        def run():
            np.matmul(op_a, op_b, out=c)
    else:
        raise ValueError(f"GEMM implementations are {GEMM_IMPLS}; got {impl!r}")

    def error() -> float:
        ref = op_a.astype(np.float64) @ op_b.astype(np.float64)
        return float(np.linalg.norm(c - ref) / np.linalg.norm(ref))

    return run, error


GEMM_TOLERANCE = {"float32": 1e-5, "float64": 1e-13}


# --------------------------------------------------------------------- timing helpers
def _system_busy_seconds() -> Optional[float]:
    """CPU seconds all CPUs spent busy since boot (user..steal in /proc/stat; steal is
    time the hypervisor gave our virtual CPUs to someone else). None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    import os
    busy = sum(fields) - fields[3] - fields[4]          # minus idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Who used the CPUs while we measured: ``stop()`` returns (own CPU seconds per wall
    second, other processes' CPU seconds per wall second). The second number is the one
    that says whether a timing was disturbed: 0 on a quiet machine, about 1 when another
    job kept one CPU busy. (None off Linux.)"""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.busy = _system_busy_seconds()

    def stop(self) -> Tuple[float, Optional[float]]:
        wall = max(time.perf_counter() - self.wall, 1e-9)
        own = time.process_time() - self.cpu
        busy = _system_busy_seconds()
        others = None if busy is None or self.busy is None else \
            max(0.0, (busy - self.busy - own) / wall)
        return own / wall, others


def time_calls(fn: Callable[[], object], *, min_time: float = 0.02, samples: int = 7,
               max_total: float = 3.0) -> Tuple[float, Optional[float]]:
    """(median seconds per call, other processes' CPU use during the samples, in CPUs;
    see :class:`CpuMeter`): after one warm-up call, each sample runs ``fn`` enough times
    to last about ``min_time``; stops early after ``max_total`` seconds."""
    started = time.perf_counter()
    fn()
    first = time.perf_counter() - started
    number = max(1, int(min_time / max(first, 1e-9)))
    times = []
    begin, meter = time.perf_counter(), CpuMeter()
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
        if time.perf_counter() - begin > max_total and len(times) >= 3:
            break
    return float(np.median(times)), meter.stop()[1]


def median_seconds(benchmark) -> Optional[float]:
    """A pytest-benchmark fixture's median in seconds; None under --benchmark-disable."""
    return benchmark.stats.stats.median if benchmark.stats else None


def peak_rss_mib() -> float:
    """The process's peak resident set size so far (getrusage; KiB on Linux)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        import os
        return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:   # not Linux
        return math.nan


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), for the reports' machine lines."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
