"""Weight penalties (docs/conventions.md): on weights, never on biases.

With n the number of training samples (``scale="samples"``, the default; the notes'
full-batch cost, so the objective does not depend on the batch size):

======  ===================================  ================================
name    added to the cost                    added to dW
======  ===================================  ================================
L2      ``lambda / (2n) * sum(W**2)``        ``lambda / n * W``
L1      ``lambda / n * sum(|W|)``            ``lambda / n * sign(W)``, sign(0) = 0
L1L2    both                                 both
======  ===================================  ================================

``scale="batch"`` divides by the mini-batch size m instead of n, which is what
scikit-learn's ``alpha`` does (its estimators use that); ``scale="weight"`` divides by the
mini-batch's sample-weight sum (m without sample weights; a batch whose weights sum to 0
adds no penalty), which is what scikit-learn's ``alpha`` does with ``sample_weight``.

Give one to the whole model (``Sequential(..., regularizer=L2(1e-2))``) or to one layer
(``Dense(64, regularizer=L1(1e-3))``, also Maxout), which overrides the model's; ``L2(0)``
turns the model's off for that layer. The penalty is applied after the backward pass
by ``backend.regularize(W, dW, l1 / n, l2 / n)``, and fit records it in the history as
"penalty" (loss = data_loss + penalty).
"""
from __future__ import annotations

from typing import Optional

from .._validation import check_choice, check_nonnegative_float
from .._keywords import suggest_keywords

__all__ = ["L1", "L1L2", "L2", "Regularizer", "check_regularizer"]

#: the divisor conventions, in the order of the fused penalty's ``scale`` code (0, 1, 2)
SCALES = ("samples", "batch", "weight")


class Regularizer:
    """``l1`` and ``l2`` coefficients (lambda) and the divisor convention ``scale``."""

    @suggest_keywords
    def __init__(self, l1: float = 0.0, l2: float = 0.0, *, scale: str = "samples"):
        self.l1 = check_nonnegative_float(l1, "l1")
        self.l2 = check_nonnegative_float(l2, "l2")
        self.scale = check_choice(scale, "scale", SCALES)

    def coefficients(self, n_samples: int, batch_size: int,
                     batch_weight: Optional[float] = None):
        """(l1 / d, l2 / d) with d = n_samples, batch_size (scale="batch") or the batch's
        weight sum (scale="weight"; batch_size when ``batch_weight`` is None); (0, 0)
        when d is 0."""
        d = {"samples": n_samples, "batch": batch_size,
             "weight": batch_size if batch_weight is None else batch_weight}[self.scale]
        return (self.l1 / d, self.l2 / d) if d > 0 else (0.0, 0.0)

    def apply(self, backend, pairs, n_samples: int, batch_size: int,
              batch_weight: Optional[float] = None) -> float:
        """Add the penalty's gradient to each flat dW of ``pairs`` [(W, dW), ...]; return
        the penalty."""
        l1, l2 = self.coefficients(n_samples, batch_size, batch_weight)
        if l1 == 0 and l2 == 0:
            return 0.0
        return sum(backend.regularize(w, dw, l1, l2) for w, dw in pairs)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Regularizer) and (self.l1, self.l2, self.scale)
                == (other.l1, other.l2, other.scale))

    def __repr__(self) -> str:
        suffix = "" if self.scale == "samples" else f", scale={self.scale!r}"
        return f"L1L2(l1={self.l1!r}, l2={self.l2!r}{suffix})"


class L1(Regularizer):
    """``lambda / n * sum(|W|)``; gradient ``lambda / n * sign(W)``."""

    @suggest_keywords
    def __init__(self, lam: float, *, scale: str = "samples"):
        super().__init__(l1=lam, scale=scale)

    def __repr__(self) -> str:
        return f"L1({self.l1!r}{'' if self.scale == 'samples' else ', scale=' + repr(self.scale)})"


class L2(Regularizer):
    """``lambda / (2n) * sum(W**2)``; gradient ``lambda / n * W``."""

    @suggest_keywords
    def __init__(self, lam: float, *, scale: str = "samples"):
        super().__init__(l2=lam, scale=scale)

    def __repr__(self) -> str:
        return f"L2({self.l2!r}{'' if self.scale == 'samples' else ', scale=' + repr(self.scale)})"


class L1L2(Regularizer):
    """Both penalties: ``L1L2(l1=..., l2=...)``."""


def check_regularizer(value, name: str = "regularizer"):
    """None or a :class:`Regularizer`."""
    if value is not None and not isinstance(value, Regularizer):
        raise TypeError(f"{name} must be None or a fastmlp.regularizers regularizer (L1, L2, "
                        f"L1L2); got {value!r} of type {type(value).__name__}")
    return value
