"""What keeps a fit safe from the outside: Ctrl-C honoured at a step boundary
(:class:`Interrupt`) and one writer per model at a time (:func:`one_fit_at_a_time`)."""
from __future__ import annotations

import functools
import signal
import threading


class Interrupt:
    """Ctrl-C during fit's epochs, honoured at a step boundary.

    In the main thread, while SIGINT has Python's default handler, ``with`` it installs a
    handler that only records the signal (``requested``), so no KeyboardInterrupt lands in
    the middle of a step; the per-op loop reads it before each step, and a fused run
    (C++, without the GIL, where Python's handlers cannot run) reads the flag of the
    backend's ``sigint_watch()`` (``watch``) before each step. fit then raises
    KeyboardInterrupt itself (:meth:`error`). Leaving puts the previous handler back and
    raises KeyboardInterrupt for a signal recorded after the last check. Outside the main
    thread (or with a handler of the user's) nothing is installed: the signal goes where
    Python sends it, and a fit in another thread runs on."""

    def __init__(self, backend):
        self.backend = backend
        self.requested = False
        self.watch = None
        self._previous = None

    def __enter__(self) -> "Interrupt":
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._record)
            start = getattr(self.backend, "sigint_watch", None)
            self.watch = None if start is None else start()
        return self

    def _record(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, exc_type, exc, traceback) -> None:
        if self.watch is not None:
            self.watch.close()
            self.watch = None
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)   # runs a pending handler first
            self._previous = None
        if self.requested and exc_type is None:
            raise KeyboardInterrupt("fit interrupted (Ctrl-C) as it ended; it completed")

    @staticmethod
    def error(model, history, where: str) -> KeyboardInterrupt:
        return KeyboardInterrupt(
            f"fit interrupted (Ctrl-C) {where}: the model is as after that step "
            f"(training_step {model.training_step}); model.history holds the "
            f"{history.epochs} completed epochs")


def one_fit_at_a_time(fit_function):
    """fit holding the model's fit lock (:meth:`Sequential.exclusive`): a second fit,
    partial_fit or set_weights on the model from another thread is a RuntimeError."""
    @functools.wraps(fit_function)
    def locked(model, *args, **kwargs):
        with model.exclusive("fit", from_fit=False):
            return fit_function(model, *args, **kwargs)
    return locked
