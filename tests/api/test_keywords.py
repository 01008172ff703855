"""Public entry points spell out their parameters (help(), editors, inspect.signature) and
answer an unknown keyword with the closest names they take."""
import inspect
import re

import numpy as np
import pytest

import fastmlp
from fastmlp import Adam, Dense, Maxout, MultiTask, Sequential, gradient_check
from fastmlp.train.callbacks import EarlyStopping
from fastmlp.train.loop import History

X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = np.array([0, 1, 1])


def _model():
    return Sequential([Dense(3, "relu"), Dense(2)], input_dim=2, backend="numpy", seed=0)


def _did_you_mean(call, called, wrong, right):
    message = (f"{called}() got an unexpected keyword argument {wrong!r}; "
               f"did you mean {right!r}?")
    with pytest.raises(TypeError, match=re.escape(message)):
        call()


def test_fit_spells_out_every_parameter():
    parameters = inspect.signature(_model().fit).parameters
    assert list(parameters) == ["X", "y", "epochs", "batch_size", "learning_rate", "optimizer",
                                "shuffle", "validation_data", "callbacks", "verbose",
                                "sample_weight", "class_weight", "checkpoint_dir",
                                "checkpoint_every", "checkpoint_every_steps", "resume",
                                "keep_checkpoints", "shuffle_buffer", "distributed"]
    assert parameters["batch_size"].default == 32 and parameters["verbose"].default == "auto"
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    assert "batch_size=None is batch gradient descent" in Sequential.fit.__doc__


def test_history_plot_spells_out_its_parameters():
    assert list(inspect.signature(History.plot).parameters) == ["self", "path", "metrics", "lr"]


def test_typos_get_the_closest_name():
    model = _model()
    _did_you_mean(lambda: model.fit(X, Y, epochs=1, batchsize=32), "fit", "batchsize",
                  "batch_size")
    _did_you_mean(lambda: model.predict(X, batchsize=2), "Sequential.predict", "batchsize",
                  "batch_size")
    _did_you_mean(lambda: model.evaluate(X, Y, sample_weights=[1, 1, 1]), "Sequential.evaluate",
                  "sample_weights", "sample_weight")
    _did_you_mean(lambda: Sequential([Dense(2)], input_dims=2), "Sequential", "input_dims",
                  "input_dim")
    _did_you_mean(lambda: Dense(3, activaton="relu"), "Dense", "activaton", "activation")
    _did_you_mean(lambda: Maxout(3, piece=2), "Maxout", "piece", "pieces")
    _did_you_mean(lambda: fastmlp.AdamW(weight_decai=0.1), "AdamW", "weight_decai",
                  "weight_decay")
    _did_you_mean(lambda: EarlyStopping(patiense=3), "EarlyStopping", "patiense", "patience")
    _did_you_mean(lambda: gradient_check(model, X, Y, max_param=3), "gradient_check",
                  "max_param", "max_params")
    _did_you_mean(lambda: fastmlp.train_dev_test_split(X, Y, stratified=True),
                  "train_dev_test_split", "stratified", "stratify")
    multitask = MultiTask([Dense(3)], {"a": [Dense(2)]}, {"a": "softmax_cross_entropy"},
                          input_dim=2, backend="numpy", seed=0)
    _did_you_mean(lambda: multitask.fit(X, {"a": Y}, epochs=1, callback=[]), "MultiTask.fit",
                  "callback", "callbacks")


def test_no_close_name_lists_every_name():
    with pytest.raises(TypeError, match=r"Adam\(\) got an unexpected keyword argument 'lr'; "
                       r"it takes learning_rate, beta_1, beta_2, eps, eps_placement, clipnorm$"):
        Adam(lr=0.1)


def test_other_type_errors_are_left_alone():
    with pytest.raises(TypeError, match="epochs must be an integer"):
        _model().fit(X, Y, epochs="3")
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'epochs'"):
        _model().fit(X, Y)


def test_wrapped_signatures_stay_visible():
    assert str(inspect.signature(Dense)).startswith("(units: 'int', activation=None")
    assert Sequential.predict.__name__ == "predict"
    assert "Class labels" in Sequential.predict.__doc__


def test_scikit_learn_introspection_still_works():
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from fastmlp.sklearn.estimators import MLPClassifier
    estimator = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3)
    assert clone(estimator).get_params()["hidden_layer_sizes"] == (4,)
    assert "hidden_layer_sizes=(4,)" in repr(estimator)
    _did_you_mean(lambda: MLPClassifier(hidden_layers_sizes=(4,)), "MLPClassifier",
                  "hidden_layers_sizes", "hidden_layer_sizes")
