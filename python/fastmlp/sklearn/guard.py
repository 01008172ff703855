"""One fit at a time per estimator: fit and partial_fit on an estimator while another
thread trains it is a clear RuntimeError rather than a race on its model and counters."""
from __future__ import annotations

import functools
import threading

# The estimators a fit or partial_fit is running on (by id), so that another thread's
# call on the same estimator is a clear error rather than a race on its model and counters.
_TRAINING: set = set()
_TRAINING_LOCK = threading.Lock()


def one_at_a_time(method):
    """fit / partial_fit, RuntimeError while one of them runs on the estimator in another
    thread."""
    @functools.wraps(method)
    def guarded(self, *args, **kwargs):
        with _TRAINING_LOCK:
            if id(self) in _TRAINING:
                raise RuntimeError(f"{method.__name__}: fit is running on this estimator in "
                                   "another thread; wait for it to finish (or use a copy: "
                                   "sklearn.base.clone(estimator))")
            _TRAINING.add(id(self))
        try:
            return method(self, *args, **kwargs)
        finally:
            with _TRAINING_LOCK:
                _TRAINING.discard(id(self))
    return guarded
