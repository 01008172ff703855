"""nn.stacks.mlp_layers: the one builder of an MLP from its hidden widths, shared by the
estimators, the search's default builder and the CLI."""
import argparse

import numpy as np
import pytest

from fastmlp import Dense, Dropout, Normalization
from fastmlp.cli.commands import _build_model
from fastmlp.nn.stacks import mlp_layers
from fastmlp.search import MLPBuilder
from fastmlp.sklearn import MLPRegressor


def _shape(layers):
    return [(type(layer).__name__, layer.get_config()) for layer in layers]


def test_mlp_layers_order_and_kinds():
    layers = mlp_layers((8, 4), 3, activation="tanh", dropout=0.25, normalize=True)
    assert [type(layer) for layer in layers] == [Normalization, Dense, Dropout, Dense, Dropout,
                                                 Dense]
    assert [layer.units for layer in layers if isinstance(layer, Dense)] == [8, 4, 3]
    assert [layer.activation for layer in layers if isinstance(layer, Dense)] == \
        ["tanh", "tanh", "linear"]
    assert all(layer.rate == 0.25 for layer in layers if isinstance(layer, Dropout))


def test_mlp_layers_without_dropout_or_hidden_layers():
    assert _shape(mlp_layers((), 2, activation="relu")) == _shape([Dense(2)])
    assert [type(layer) for layer in mlp_layers((5,), 1, activation="relu")] == [Dense, Dense]


def test_mlp_layers_checks_the_dropout_rate():
    with pytest.raises(ValueError, match="rate"):
        mlp_layers((4,), 1, activation="relu", dropout=1.5)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_search_and_cli_build_the_same_network():
    X = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = X.sum(axis=1)
    expected = _shape(mlp_layers((6, 5), 1, activation="relu", dropout=0.1))
    est = MLPRegressor(hidden_layer_sizes=(6, 5), dropout=0.1, max_iter=1, random_state=0).fit(X, y)
    model, _ = MLPBuilder.for_data(X, y)({"hidden": (6, 5), "dropout": 0.1, "loss": "mse"}, 0)
    args = argparse.Namespace(hidden=(6, 5), activation="relu", dropout=0.1, normalize=False,
                              l1=0.0, l2=0.0, backend="native", dtype="float32", seed=0,
                              precision=None)
    cli = _build_model(args, 3, 1, "mse")
    assert _shape(est.model_.layers) == _shape(model.layers) == _shape(cli.layers) == expected
