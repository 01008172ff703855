"""A multi-layer perceptron's layers from its hidden widths: the one place that writes
``Dense(width, activation) [+ Dropout(rate)]`` per hidden layer, then a linear output
(used by the scikit-learn estimators, the search's default builder, the CLI and its demo)."""
from __future__ import annotations

from typing import List, Sequence

from .layers import Dense, Dropout, Layer, Normalization


def mlp_layers(hidden: Sequence[int], n_outputs: int, *, activation, dropout: float = 0.0,
               normalize: bool = False) -> List[Layer]:
    """``[Normalization()]`` if ``normalize``, then ``Dense(width, activation)`` followed by
    ``Dropout(dropout)`` when ``dropout`` is nonzero (Dropout checks the rate) for each
    width in ``hidden``, then ``Dense(n_outputs)`` without activation (logits: the loss
    applies the softmax or sigmoid). Unbuilt layers, in the model's order."""
    layers: List[Layer] = [Normalization()] if normalize else []
    for units in hidden:
        layers.append(Dense(units, activation))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(n_outputs))
    return layers
