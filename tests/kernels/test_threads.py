"""Threads: results independent of the thread count, the thread-count controls, the
environment variables read at import, and fork safety (docs/conventions.md, docs/build-notes.md "Threads").

Sizes are above every parallel threshold (csrc/ops.hpp: 32 Ki elements per thread for
elementwise work, 8x that weight for math/loss/output), and each 2-thread call asserts
that two threads really ran. Environment and fork tests run in a fresh interpreter with
a timeout, so a hang fails the test instead of stalling the suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import oracle
from fastmlp import _core

N = 300_000          # elements: > 2 * 32 Ki, so elementwise kernels split over 2 threads
ROWS, COLS = 2000, 150   # col_sum splits over 64-column blocks: 3 blocks here


def _arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(N).astype(dtype), rng.standard_normal(N).astype(dtype)


def _run_math(dtype):
    x, _ = _arrays(dtype)
    out = np.empty_like(x)
    _core._testing.math("tanh", x, out)
    return out


def _run_bias_act(dtype):
    x, _ = _arrays(dtype)
    z = x.reshape(ROWS, COLS).copy()
    a = np.empty_like(z)
    _core.bias_act_forward(z, np.linspace(-1, 1, COLS).astype(dtype), a, "elu", 1.0)
    return z, a


def _run_act_backward(dtype):
    x, g = _arrays(dtype)
    z = x.reshape(ROWS, COLS)
    a = np.tanh(z)
    dz = np.empty_like(z)
    _core.act_backward(z, a, g.reshape(ROWS, COLS), dz, "tanh", 0.0)
    return dz


def _run_col_sum(dtype):
    x, _ = _arrays(dtype)
    out = np.empty(COLS, dtype)
    _core.col_sum(x.reshape(ROWS, COLS), out)
    return out


def _run_loss(dtype):
    x, g = _arrays(dtype)
    z = (3 * x).reshape(-1, 10)
    y = np.abs(g).reshape(-1, 10)
    y /= y.sum(axis=1, keepdims=True)
    grad = np.empty_like(z)
    value = _core.loss("softmax_cross_entropy", z, y, grad, 1 / z.shape[0])
    return np.array(value), grad


def _run_output(dtype):
    x, _ = _arrays(dtype)
    z = (3 * x).reshape(-1, 10)
    out = np.empty_like(z)
    _core.output("softmax_cross_entropy", z, out)
    return out


def _run_sgd(dtype):
    p, g = _arrays(dtype)
    _core._testing.sgd_update(p, g, 0.01)
    return p


def _run_adam(dtype):
    p, g = _arrays(dtype)
    m, v = 0.1 * g, g * g
    _core.optimizer_update("adam", p, g, m, v, 1e-3, 1.0, 0.9, 0.999, 1e-8, 0.0, 3)
    return p, m, v


def _run_sum_squares(dtype):
    x, _ = _arrays(dtype)
    return np.array(_core.sum_squares(x))


KERNELS = {
    "math": _run_math, "bias_act_forward": _run_bias_act, "act_backward": _run_act_backward,
    "col_sum": _run_col_sum, "loss": _run_loss, "output": _run_output, "sgd_update": _run_sgd,
    "optimizer_update": _run_adam, "sum_squares": _run_sum_squares,
}


@pytest.mark.parametrize("kernel", KERNELS)
def test_bitwise_equal_with_one_and_two_threads(kernel, dtype, nthreads):
    run = KERNELS[kernel]
    with nthreads(1):
        one = run(dtype)
    with nthreads(2):
        two = run(dtype)
        assert _core._testing.last_team_size() == 2, f"{kernel}: the 2-thread call ran on one thread"
    oracle.assert_same_bits({"1 thread": one, "2 threads": two})


def test_last_team_size_reports_a_serial_call():
    """A 1-thread call after a 2-thread one must report 1: a stale 2 would let a thread
    test pass although the call it checks ran serially."""
    x = np.ones(N, np.float32)
    previous = _core.push_threads(2)
    try:
        _core._testing.sgd_update(x, x.copy(), 0.5)
        assert _core._testing.last_team_size() == 2
        _core.push_threads(1)
        _core._testing.sgd_update(x, x.copy(), 0.5)
        assert _core._testing.last_team_size() == 1, "last_team_size() kept the previous call's 2"
    finally:
        _core.pop_threads(previous)


# ---------------------------------------------------------------------------------
# Thread-count controls
# ---------------------------------------------------------------------------------

def test_set_and_get_num_threads_round_trip():
    default = _core.get_num_threads()
    assert default >= 1
    try:
        for n in (1, 2, 3, 1):
            _core.set_num_threads(n)
            assert _core.get_num_threads() == n
            assert _core.backend_info()["threads"] == n
        _core.set_num_threads(0)   # back to OpenMP's default
        assert _core.get_num_threads() == default
        _core.set_num_threads(-4)  # n <= 0 also means the default
        assert _core.get_num_threads() == default
    finally:
        _core.set_num_threads(0)


def test_set_num_threads_governs_kernels():
    x = np.ones(N, np.float32)
    try:
        _core.set_num_threads(2)
        _core._testing.sgd_update(x, x.copy(), 0.5)
        assert _core._testing.last_team_size() == 2
    finally:
        _core.set_num_threads(0)


def test_push_pop_nesting_and_priority():
    default = _core.get_num_threads()
    try:
        _core.set_num_threads(3)
        outer = _core.push_threads(2)          # the per-call override beats the global one
        assert outer == 0 and _core.get_num_threads() == 2
        inner = _core.push_threads(1)
        assert inner == 2 and _core.get_num_threads() == 1
        innermost = _core.push_threads(0)      # 0: no override at this level
        assert innermost == 1 and _core.get_num_threads() == 3
        _core.pop_threads(innermost)
        assert _core.get_num_threads() == 1
        _core.pop_threads(inner)
        assert _core.get_num_threads() == 2
        _core.pop_threads(outer)
        assert _core.get_num_threads() == 3
    finally:
        _core.set_num_threads(0)
    assert _core.get_num_threads() == default


def test_push_threads_is_per_python_thread():
    seen = {}
    previous = _core.push_threads(1)
    try:
        _core.set_num_threads(3)
        worker = threading.Thread(target=lambda: seen.update(n=_core.get_num_threads()))
        worker.start()
        worker.join(30)
        assert _core.get_num_threads() == 1
        assert seen["n"] == 3, "another Python thread saw this thread's override"
    finally:
        _core.pop_threads(previous)
        _core.set_num_threads(0)


# ---------------------------------------------------------------------------------
# Environment variables and fork, in fresh interpreters
# ---------------------------------------------------------------------------------

def _python(code: str, env_update: dict, timeout: float = 120):
    """Run code in a fresh interpreter; returns (the JSON it printed last, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FASTMLP_ISA", "OMP_NUM_THREADS")}
    env.update(env_update)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, proc.stdout
    return json.loads(lines[-1]), proc.stderr


BIG_CALL = """
import json, numpy as np
from fastmlp import _core
x = np.ones(300_000, np.float32)
_core._testing.sgd_update(x, x.copy(), 0.5)
"""


def test_omp_num_threads_1_is_honoured():
    out, _ = _python(BIG_CALL + """
team = _core._testing.last_team_size()
_core.set_num_threads(2)             # an explicit setting still beats the environment
_core._testing.sgd_update(x, x.copy(), 0.5)
print(json.dumps({"threads": _core.get_num_threads(), "info": _core.backend_info()["threads"],
                  "team": team, "team_after_set": _core._testing.last_team_size()}))
""", {"OMP_NUM_THREADS": "1"})
    assert out == {"threads": 2, "info": 2, "team": 1, "team_after_set": 2}


def test_omp_num_threads_2_is_honoured():
    out, _ = _python(BIG_CALL + """
print(json.dumps({"threads": _core.get_num_threads(), "team": _core._testing.last_team_size()}))
""", {"OMP_NUM_THREADS": "2"})
    assert out == {"threads": 2, "team": 2}


ISA_INFO = """
import json
from fastmlp import _core
print(json.dumps(_core.backend_info()))
"""


@pytest.mark.parametrize("level", ["generic", "avx2", "avx512"])
def test_fastmlp_isa_env_selects_the_level(level):
    usable = _core.backend_info()["usable_isas"]
    if level not in usable:
        pytest.skip(f"ISA level {level!r} is not usable here (usable: {usable})")
    info, err = _python(ISA_INFO, {"FASTMLP_ISA": level})
    assert info["isa"] == level
    assert "ignoring FASTMLP_ISA" not in err


def test_fastmlp_isa_auto_and_bogus():
    best = [lv for lv in _core.backend_info()["usable_isas"] if lv != "amx"][-1]   # amx: asked for only
    info, err = _python(ISA_INFO, {"FASTMLP_ISA": "auto"})
    assert info["isa"] == best and "FASTMLP_ISA" not in err
    info, err = _python(ISA_INFO, {"FASTMLP_ISA": "bogus"})
    assert info["isa"] == best
    assert "ignoring FASTMLP_ISA=bogus" in err, err


AMX_ASKED = """
import json
import fastmlp
from fastmlp import _core
info = _core.backend_info()
try:
    fastmlp.set_isa("amx")
    info["set_isa_error"] = None
except ValueError as e:
    info["set_isa_error"] = str(e)
print(json.dumps(info))
"""


def test_amx_runs_only_when_asked_for():
    """"auto" never picks amx; FASTMLP_ISA=amx (a valid name: no warning) and set_isa("amx")
    select it where the CPU has AMX and Linux grants the tile data (asked then, not at
    import), and elsewhere the import keeps the best level below it and set_isa says what
    is missing."""
    auto, _ = _python(AMX_ASKED, {"FASTMLP_ISA": "auto"})
    asked, err = _python(AMX_ASKED, {"FASTMLP_ISA": "amx"})
    assert auto["isa"] != "amx" and "ignoring FASTMLP_ISA" not in err
    if "amx" in asked["supported_isas"]:
        assert asked["isa"] == "amx" and asked["set_isa_error"] is None
    else:
        assert asked["isa"] == auto["isa"] and not asked["amx_emulated"]
        assert "does not support ISA 'amx' (AMX-TILE, AMX-BF16 and the OS's tile state)" in asked["set_isa_error"]


FORK = """
import json, multiprocessing, os, time
import numpy as np
from fastmlp import _core

TIMEOUT = 30
x = np.random.default_rng(0).standard_normal((2000, 150)).astype(np.float32)

def col_sum():
    out = np.empty(150, np.float32)
    _core.col_sum(x, out)
    return out

_core.set_num_threads(2)
want = col_sum()                      # starts the OpenMP pool in the parent
assert _core._testing.last_team_size() == 2

def child_report():
    got = col_sum()                   # would hang in libgomp without the atfork handler
    return {"serial_after_fork": _core.backend_info()["serial_after_fork"],
            "threads": _core.get_num_threads(), "same": bool(np.array_equal(got, want))}

def mp_child(conn):
    conn.send(child_report())
    conn.close()

result = {"parent_serial_after_fork": _core.backend_info()["serial_after_fork"]}

# multiprocessing with the fork start method
ctx = multiprocessing.get_context("fork")
parent_end, child_end = ctx.Pipe(duplex=False)
proc = ctx.Process(target=mp_child, args=(child_end,))
proc.start()
proc.join(TIMEOUT)
if proc.is_alive():
    proc.kill()
    proc.join()
    result["mp"] = "hang"
else:
    result["mp"] = parent_end.recv() if parent_end.poll(1) else "no result (exit %s)" % proc.exitcode

# a plain os.fork
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        os.write(w, json.dumps(child_report()).encode())
    finally:
        os._exit(0)
os.close(w)
deadline, status = time.monotonic() + TIMEOUT, (0, 0)
while status == (0, 0) and time.monotonic() < deadline:
    time.sleep(0.05)
    status = os.waitpid(pid, os.WNOHANG)
if status == (0, 0):
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    result["fork"] = "hang"
else:
    data = os.read(r, 4096)
    result["fork"] = json.loads(data) if data else "no result (status %d)" % status[1]
print(json.dumps(result))
"""


def test_fork_after_threaded_call_does_not_hang():
    out, _ = _python(FORK, {}, timeout=150)
    child = {"serial_after_fork": True, "threads": 1, "same": True}
    assert out == {"parent_serial_after_fork": False, "mp": child, "fork": child}, out
