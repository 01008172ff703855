"""Class labels of any kind: the first fit maps them to output indices and keeps them as
``classes_``; predict returns them, evaluate and score take them, model files and
checkpoints keep them, and a label the first fit did not see is a ValueError."""
import pickle

import numpy as np

import fastmlp
import pytest

from fastmlp import MultiTask, Sequential, load
from fastmlp.nn.layers import Dense
from fastmlp.model.modelfile import ModelFileError
from helpers import header_of, make_data, with_header

ANIMALS = np.array(["cat", "dog", "mouse"])


def classifier(units=3, loss="softmax_cross_entropy", backend="numpy", seed=0):
    return Sequential([Dense(8, "relu"), Dense(units)], input_dim=4, loss=loss,
                      backend=backend, seed=seed)


def data(n=90, k=3, seed=0):
    """X and integer labels 0..k-1 (a learnable problem)."""
    X, y = make_data("softmax_cross_entropy", n=n, k=k, seed=seed)
    return X, y


def trained_pair(labels, backend, units=3, loss="softmax_cross_entropy"):
    """(model trained on ``labels[y]``, model trained on the indices y, X, y): the same
    training, so the two must agree to the bit."""
    X, y = data(k=max(units, 2))
    by_label, by_index = classifier(units, loss, backend), classifier(units, loss, backend)
    by_label.fit(X, labels[y], epochs=5, batch_size=16, learning_rate=0.1)
    by_index.fit(X, y, epochs=5, batch_size=16, learning_rate=0.1)
    return by_label, by_index, X, y


@pytest.mark.parametrize("labels", [ANIMALS, np.array([-5, 10, 20]), np.array([1.0, 2.0, 3.0]),
                                    np.array([1, 2, 3])])
def test_labels_train_as_their_indices_and_predict_as_labels(labels, backend_name):
    by_label, by_index, X, y = trained_pair(labels, backend_name)
    assert np.array_equal(by_label.classes_, labels)
    assert by_label.classes_.dtype.kind == labels.dtype.kind
    assert np.array_equal(by_label.get_weights()[0], by_index.get_weights()[0])
    predicted = by_label.predict(X)
    assert predicted.dtype.kind == labels.dtype.kind
    assert np.array_equal(predicted, labels[by_index.predict(X)])
    assert np.array_equal(by_label.predict_proba(X), by_index.predict_proba(X))
    assert by_label.evaluate(X, labels[y]) == by_index.evaluate(X, y)
    assert by_label.score(X, labels[y]) == by_index.score(X, y) > 0.5


def test_labels_in_any_order_and_as_lists(backend_name):
    X, y = data()
    model = classifier(backend=backend_name)
    model.fit(X, ANIMALS[::-1][y].tolist(), epochs=2)       # "mouse" first: sorted anyway
    assert model.classes_.tolist() == ["cat", "dog", "mouse"]
    assert model.predict(X[:5]).dtype.kind == "U"
    assert 0 <= model.score(X, list(ANIMALS[::-1][y])) <= 1


def test_binary_labels_with_one_output(backend_name):
    labels = np.array(["no", "yes"])
    by_label, by_index, X, y = trained_pair(labels, backend_name, units=1,
                                            loss="binary_cross_entropy")
    assert by_label.classes_.tolist() == ["no", "yes"]
    assert by_index.classes_.tolist() == [0, 1]
    assert np.array_equal(by_label.predict(X), labels[by_index.predict(X)])
    assert np.array_equal(by_label.predict_proba(X), by_index.predict_proba(X))  # P("yes")
    assert by_label.score(X, labels[y]) == by_index.score(X, y)
    assert np.array_equal(by_label.predict(X), labels[(by_label.predict_proba(X) > 0.5) * 1])


def test_integer_labels_within_the_outputs_are_their_own_indices():
    X, y = data(k=3)
    model = classifier(units=4)                 # class 3 never seen: still the identity
    model.fit(X, y, epochs=1)
    assert model.classes_.tolist() == [0, 1, 2, 3]
    assert model.predict(X).dtype == np.int64
    model.fit(X, y.astype(np.float64), epochs=1)   # whole floats are the same labels
    model.fit(X, np.eye(4)[y], epochs=1)            # one-hot rows too
    assert model.classes_.tolist() == [0, 1, 2, 3]
    binary = classifier(units=1, loss="binary_cross_entropy")
    binary.fit(X, np.zeros(len(X), int), epochs=1)  # one class of 0/1: still [0, 1]
    assert binary.classes_.tolist() == [0, 1]


def test_one_hot_and_multilabel_targets_keep_index_classes():
    X, y = data()
    one_hot = classifier()
    one_hot.fit(X, np.eye(3)[y], epochs=1)
    assert one_hot.classes_.tolist() == [0, 1, 2]
    multilabel = classifier(loss="binary_cross_entropy")
    multilabel.fit(X, np.eye(3, dtype=int)[y], epochs=1)
    assert multilabel.classes_.tolist() == [0, 1, 2]
    assert set(np.unique(multilabel.predict(X))) <= {0, 1}
    assert multilabel.predict(X).shape == (len(X), 3)


def test_before_the_first_fit_predict_gives_indices_and_classes_can_be_named():
    X, y = data()
    model = classifier()
    assert model.classes_ is None
    assert model.predict(X).dtype == np.int64
    model.classes_ = ["mouse", "dog", "cat"]     # any order: the outputs' classes
    assert set(model.predict(X)) <= {"cat", "dog", "mouse"}
    subset = np.where(y == 0, "dog", "cat")      # no "mouse" in this fit: allowed now
    model.fit(X, subset, epochs=1)
    assert model.classes_.tolist() == ["mouse", "dog", "cat"]
    one_hot = np.eye(3)[np.where(y == 0, 1, 2)]  # outputs: "mouse" 0, "dog" 1, "cat" 2
    assert model.evaluate(X, subset) == model.evaluate(X, one_hot)


@pytest.mark.parametrize("classes, error, match", [
    (["a", "b"], ValueError, r"classes_ must list the model's 3 classes, each once, in the "
                             r"order of the outputs; got \['a', 'b'\]"),
    (["a", "b", "a"], ValueError, r"each once"),
    ([["a", "b", "c"]], ValueError, r"classes_ must list"),
    (["a", 1, "c"], TypeError, r"classes_ must hold class labels of one kind"),
    (["a", None, "c"], ValueError, r"classes_ holds a missing label \(None\) at index 1"),
    ([0.5, np.nan, 2], ValueError, r"classes_ must be finite"),
])
def test_assigned_classes_are_checked(classes, error, match):
    model = classifier()
    with pytest.raises(error, match=match):
        model.classes_ = classes
    assert model.classes_ is None
    with pytest.raises(ValueError, match=r"classes_ is for classification; this model's loss "
                                         r"is 'mse'"):
        classifier(loss="mse").classes_ = [0, 1, 2]
    model.classes_ = ["a", "b", "c"]
    model.classes_ = None
    assert model.classes_ is None


def test_an_unseen_label_is_a_value_error_naming_it_and_the_classes(backend_name):
    X, y = data()
    model = classifier(backend=backend_name)
    model.fit(X, ANIMALS[y], epochs=1)
    weights = model.get_weights()
    other = ANIMALS[y].astype("<U8")
    other[[4, 7]] = ["wolf", "bear"]
    message = (r"y holds labels the model was not trained on: \['bear', 'wolf'\] \(the first "
               r"at index 4\); its classes_ are \['cat', 'dog', 'mouse'\]")
    for call in (lambda: model.fit(X, other, epochs=1), lambda: model.evaluate(X, other),
                 lambda: model.score(X, other)):
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match=r"validation_data\[1\] holds labels the model was not "
                                         r"trained on: \['bear', 'wolf'\]"):
        model.fit(X, ANIMALS[y], epochs=1, validation_data=(X, other))
    with pytest.raises(ValueError, match=r"holds labels the model was not trained on: \[0, 1, 2\]"
                                         r" .*its classes_ are \['cat', 'dog', 'mouse'\]"):
        model.fit(X, y, epochs=1)                # numbers are not the strings
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights()))
    numbers = classifier(backend=backend_name)
    numbers.fit(X, y, epochs=1)
    with pytest.raises(ValueError, match=r"y holds labels the model was not trained on: "
                                         r"\['cat', 'dog', 'mouse'\] .* its classes_ are "
                                         r"\[0, 1, 2\]"):
        numbers.evaluate(X, ANIMALS[y])
    with pytest.raises(ValueError, match=r"not trained on: \[3, 7\] \(the first at index 0\)"):
        numbers.evaluate(X[:3], [3, 7, 1])


@pytest.mark.parametrize("units, loss, labels, match", [
    (3, "softmax_cross_entropy", ["a", "b", "c", "d"] * 6,
     r"y holds 4 classes \['a', 'b', 'c', 'd'\] but the model has 3 for softmax_cross_entropy: "
     r"give the output layer one unit per class \(1 for two classes with "
     r"binary_cross_entropy\)"),
    (3, "softmax_cross_entropy", ["a", "b"] * 12, r"y holds 2 classes \['a', 'b'\] but the "
                                                  r"model has 3"),
    (1, "binary_cross_entropy", ["a", "b", "c"] * 8, r"y holds 3 classes .* has 2 for binary"),
    (1, "binary_cross_entropy", ["yes"] * 24, r"y holds 1 class \['yes'\] but the model has 2"),
    (1, "binary_cross_entropy", [1, 2] * 11 + [5, 1], r"y holds 3 classes \[1, 2, 5\]"),
])
def test_the_number_of_classes_must_match_the_outputs(units, loss, labels, match):
    model = classifier(units, loss)
    with pytest.raises(ValueError, match=match):
        model.fit(np.zeros((24, 4)), labels, epochs=1)
    assert model.classes_ is None


def test_class_weight_keys_are_the_labels():
    X, y = data()
    labels = ANIMALS[y]
    by_label, by_index = classifier(), classifier()
    by_label.fit(X, labels, epochs=2, class_weight={"dog": 3.0, "mouse": 0.5})
    by_index.fit(X, y, epochs=2, class_weight={1: 3.0, 2: 0.5})
    assert np.array_equal(by_label.get_weights()[0], by_index.get_weights()[0])
    with pytest.raises(ValueError, match=r"class_weight has key 'wolf', not one of the model's "
                                         r"classes_ \['cat', 'dog', 'mouse'\]"):
        by_label.fit(X, labels, epochs=1, class_weight={"wolf": 2.0})
    with pytest.raises(ValueError, match=r"class_weight has key 1, not one of the model's"):
        by_label.fit(X, labels, epochs=1, class_weight={1: 2.0})


def test_save_load_and_pickle_keep_the_classes(tmp_path, backend_name):
    X, y = data()
    for labels, units, loss in ((ANIMALS, 3, "softmax_cross_entropy"),
                                (np.array([-1.0, 2.0]), 1, "binary_cross_entropy"),
                                (np.array([4, 9, 11]), 3, "softmax_cross_entropy")):
        model = classifier(units, loss, backend_name)
        model.fit(X, labels[y % len(labels)], epochs=2)
        model.save(tmp_path / "model.fmlp")
        for copy in (load(tmp_path / "model.fmlp"), pickle.loads(pickle.dumps(model))):
            assert np.array_equal(copy.classes_, labels)
            assert copy.classes_.dtype.kind == labels.dtype.kind
            assert np.array_equal(copy.predict(X), model.predict(X))
            assert copy.score(X, labels[y % len(labels)]) == model.score(X, labels[y % len(labels)])
            copy.fit(X, labels[y % len(labels)], epochs=1)     # continues with the same classes
            with pytest.raises(ValueError, match=r"not trained on"):
                copy.evaluate(X, np.full(len(X), "wolf"))


def test_the_model_file_holds_classes_only_when_the_model_has_them(tmp_path):
    X, y = data()
    model = classifier()
    model.save(tmp_path / "unfitted.fmlp")
    assert "classes" not in header_of(tmp_path / "unfitted.fmlp")["model"]
    regression = classifier(1, "mse")
    regression.fit(X, y.astype(float), epochs=1)
    regression.save(tmp_path / "mse.fmlp")
    assert "classes" not in header_of(tmp_path / "mse.fmlp")["model"]
    assert load(tmp_path / "mse.fmlp").classes_ is None
    model.fit(X, ANIMALS[y], epochs=1)
    model.save(tmp_path / "fitted.fmlp")
    assert header_of(tmp_path / "fitted.fmlp")["model"]["classes"] == ["cat", "dog", "mouse"]
    fitted = tmp_path / "fitted.fmlp"
    with_header(fitted, fitted, lambda h: h["model"].pop("classes"))
    older = load(tmp_path / "fitted.fmlp")       # a file from before classes_: loads
    assert older.classes_ is None
    assert np.array_equal(older.get_weights()[0], model.get_weights()[0])
    older.fit(X, ANIMALS[y], epochs=1)           # and its next fit learns them
    assert older.classes_.tolist() == ["cat", "dog", "mouse"]


@pytest.mark.parametrize("classes, match", [
    (["a", "b"], r"model.classes: classes_ must list the model's 3 classes"),
    (["a", "a", "b"], r"model.classes: classes_ must list .* each once"),
    ([], r"model.classes must be a non-empty array of strings or of numbers"),
    (["a", 1, "b"], r"model.classes must be a non-empty array of strings or of numbers"),
    ([True, False, True], r"model.classes must be a non-empty array"),
    ("abc", r"model.classes must be a non-empty array"),
    (["a", "", "b"], r"model.classes: classes_ holds an empty label '' at index 1"),
])
def test_bad_classes_in_a_model_file_are_refused(tmp_path, classes, match):
    X, y = data()
    model = classifier()
    model.fit(X, ANIMALS[y], epochs=1)
    model.save(tmp_path / "model.fmlp")
    path = tmp_path / "model.fmlp"
    with_header(path, path, lambda h: h["model"].update(classes=classes))
    with pytest.raises(ModelFileError, match=match):
        load(tmp_path / "model.fmlp")


def test_checkpoints_keep_the_classes(tmp_path):
    X, y = data()
    model = classifier()
    model.fit(X, ANIMALS[y], epochs=2, checkpoint_dir=tmp_path / "run")
    newest = sorted((tmp_path / "run").iterdir())[-1]
    restored, _ = fastmlp.Sequential.read_checkpoint(newest)
    assert restored.classes_.tolist() == ["cat", "dog", "mouse"]
    resumed = classifier()
    resumed.fit(X, ANIMALS[y], epochs=3, checkpoint_dir=tmp_path / "run", resume=True)
    assert resumed.classes_.tolist() == ["cat", "dog", "mouse"]


def test_multitask_heads_keep_their_own_classes(backend_name):
    X, y = data()
    model = MultiTask([Dense(6, "relu")], {"animal": [Dense(3)], "big": [Dense(1)],
                                           "size": [Dense(1)]},
                      {"animal": "softmax_cross_entropy", "big": "binary_cross_entropy",
                       "size": "mse"}, input_dim=4, backend=backend_name, seed=0)
    assert model.classes_ == {"animal": None, "big": None, "size": None}
    targets = {"animal": ANIMALS[y], "big": np.where(y > 0, "big", "small"),
               "size": y.astype(float)}
    model.fit(X, targets, epochs=2)
    classes = model.classes_
    assert classes["animal"].tolist() == ["cat", "dog", "mouse"]
    assert classes["big"].tolist() == ["big", "small"] and classes["size"] is None
    predicted = model.predict(X)
    assert set(predicted["animal"]) <= set(ANIMALS)
    assert set(predicted["big"]) <= {"big", "small"}
    assert predicted["size"].dtype == np.float32
    assert set(model.evaluate(X, targets)) >= {"animal_accuracy", "big_accuracy"}
    with pytest.raises(ValueError, match=r"targets\['animal'\] holds labels the model was not "
                                         r"trained on: \['wolf'\]"):
        model.evaluate(X, {**targets, "animal": np.full(len(X), "wolf")})
