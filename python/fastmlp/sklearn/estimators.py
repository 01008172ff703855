"""scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor` (public path
``fastmlp.sklearn``).

They take scikit-learn's ``MLPClassifier``/``MLPRegressor`` parameters with the same names,
defaults and meanings, train a :class:`fastmlp.Sequential` with :func:`fastmlp.train.loop.fit`
and report scikit-learn's fitted attributes. The estimators only translate, with four
helpers: :mod:`fastmlp.sklearn.inputs` checks X and y and picks their dtype;
:mod:`fastmlp.sklearn.network` turns the parameters into layers with scikit-learn's
initial weights, an optimizer, a schedule and an L2 regularizer (and says how
scikit-learn's loss, penalty and rates map onto fastmlp's);
:mod:`fastmlp.sklearn.stopping` holds scikit-learn's per-epoch bookkeeping and stopping
rule as one callback and the early-stopping hold-out; :mod:`fastmlp.sklearn.weights`
keeps coefs_ and intercepts_ as writable arrays whose edits reach the network.
"""
from __future__ import annotations

import contextlib
import numbers
import warnings
from typing import Callable, List, NamedTuple

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from .._keywords import suggest_keywords
from .._validation import check_int, check_sample_weight
from ..backends.runtime import threads
from ..errors import DivergenceError
from ..io.sources import as_source, by_chunks
from ..nn.losses import (BinaryCrossEntropy, MeanSquaredError, Poisson, SoftmaxCrossEntropy,
                         get_loss)
from ..train.arguments import PreparedData
from ..train.preflight import no_scale_warning
from .guard import one_at_a_time
from .heldout import classifier_targets, given_validation, regressor_targets
from .inputs import (SPARSE, classifier_input, input_dtype, regressor_input, validated,
                     with_class_weight)
from .lbfgs import check_lbfgs_params, fit_lbfgs
from .network import (ESTIMATOR_ACTIVATIONS, SOLVERS, batch_size, build_network,
                      check_same_network, fit_random_state, initial_weights, l2_penalty,
                      make_optimizer, network_description)
from .stopping import Improvement, LossScale, ScikitLearnRule, validation_split
from .streams import EstimatorChunks, network_classes, refuse, survey
from .weights import WeightList, checked_weights, non_finite_weights, refresh, write_edits

__all__ = ["MLPClassifier", "MLPRegressor"]

# the parameter names of each estimator constructor (_BaseMLP._get_param_names)
_PARAM_NAMES: dict = {}


class _BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share: validation, the network, fit and
    partial_fit, the fitted attributes. Subclasses define the targets (``_targets``),
    the loss and the score."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "activation": [StrOptions(set(ESTIMATOR_ACTIVATIONS))],
        "solver": [StrOptions(set(SOLVERS))],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None,
                                                      closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"),
                             Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        "dropout": [Interval(numbers.Real, 0, 1, closed="left")],
        "backend": [StrOptions({"native", "numpy"})],
        "dtype": [StrOptions({"float32", "float64"}), None],
        "precision": [StrOptions({"bfloat16"}), None],
        "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
    }

    # scikit-learn's fitted weights, plain writable arrays owned by the estimator: edits
    # and new lists reach model_ at its next use (fastmlp.sklearn.weights)
    coefs_ = WeightList()
    intercepts_ = WeightList()

    @classmethod
    def _get_param_names(cls):
        """scikit-learn's (the constructor's parameter names, sorted), read from its
        signature once per constructor (inspect.signature takes about 50 us, and every fit
        validates its parameters): a subclass with its own constructor is read anew."""
        init = cls.__init__
        names = _PARAM_NAMES.get(init)
        if names is None:
            names = _PARAM_NAMES[init] = tuple(super()._get_param_names())
        return list(names)

    # ------------------------------------------------------------------ public
    @one_at_a_time
    def fit(self, X, y=None, sample_weight=None, X_val=None, y_val=None, sample_weight_val=None):
        """Train from scratch (or, with ``warm_start``, from the previous solution) for up
        to ``max_iter`` epochs, stopping by scikit-learn's rule. ``sample_weight`` (n,)
        weighs each sample's loss (weighted mean per batch, as scikit-learn).

        ``X_val``, ``y_val`` (both or neither) and ``sample_weight_val`` (only with them),
        as scikit-learn's HistGradientBoosting takes them: validation data checked like X
        and y (X's features; a classifier's labels among those of y). With
        ``early_stopping=True`` they replace the ``validation_fraction`` hold-out (all of
        X trains): validation_scores_, best_validation_score_ and the stopping rule use
        them. Without early stopping they are only measured. Either way, and with the
        hold-out, ``validation_loss_curve_`` records each epoch's validation loss.
        solver="lbfgs" refuses them (ValueError): it has no epochs to validate."""
        return self._fit(X, y, sample_weight, incremental=False,
                         given=(X_val, y_val, sample_weight_val))

    def _partial_fit(self, X, y, sample_weight):
        """One epoch over (X, y) from the current weights, the optimizer's state kept."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _check_solver(self) -> bool:
        """partial_fit exists for the stochastic solvers only (scikit-learn's check)."""
        if self.solver == "lbfgs":
            raise AttributeError("partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True       # CSR and CSC: the first layer multiplies them
        return tags

    # -------------------------------------------------------------- validation
    def _check_params(self) -> None:
        """scikit-learn's parameter constraints (InvalidParameterError, a ValueError and
        TypeError naming the parameter), after a clear word on what fastmlp lacks."""
        self._validate_params()
        if self.solver == "lbfgs":
            check_lbfgs_params(self)
        if not isinstance(self.hidden_layer_sizes, numbers.Integral):
            for i, units in enumerate(self.hidden_layer_sizes):
                check_int(units, f"hidden_layer_sizes[{i}]")

    def _hidden_sizes(self) -> List[int]:
        sizes = self.hidden_layer_sizes
        return [int(sizes)] if isinstance(sizes, numbers.Integral) else [int(u) for u in sizes]

    def _threads(self):
        return contextlib.nullcontext() if self.n_threads is None else threads(self.n_threads)

    # -------------------------------------------------------------------- fit
    def _fit(self, X, y, sample_weight, incremental: bool, given=(None, None, None)):
        self._check_params()
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = "_coefs" not in self.__dict__ or (not self.warm_start and not incremental)
        source = as_source(X, y, memmap=False)
        if source is not None:
            return self._fit_stream(source, sample_weight, incremental, given, first_pass)
        X, Y, labels = self._validate_input(X, y, incremental, reset=first_pass,
                                            dtype=input_dtype(self, first_pass))
        if sample_weight is not None:
            sample_weight = check_sample_weight(sample_weight, X.shape[0], np.dtype(np.float64))
        sample_weight = self._with_class_weight(labels, sample_weight, incremental)
        given = given_validation(self, *given, X.shape[1], Y.shape[1], lambda rows:
                                 validated(self, rows, reset=False, dtype=X.dtype,
                                           accept_sparse=SPARSE, order="C"))
        rs = fit_random_state(self.random_state)
        layer_units = [X.shape[1], *self._hidden_sizes(), Y.shape[1]]
        initial = initial_weights(rs, layer_units, self.activation) if first_pass else None
        train, validation = self._split(X, Y, labels, sample_weight, rs, given)
        self._network(layer_units, X.dtype, first_pass, rs, initial)
        self._train(*train, validation, incremental, first_pass)
        return self

    def _fit_stream(self, source, sample_weight, incremental: bool, given, first_pass: bool):
        """fit and partial_fit over a streamed source (fastmlp.sklearn.streams)."""
        refuse(self, sample_weight, given, incremental)
        shape = survey(self, source, input_dtype(self, first_pass), first_pass, incremental,
                       isinstance(self, ClassifierMixin))
        given = given_validation(self, *given, shape.n_features, shape.n_outputs, lambda rows:
                                 validated(self, rows, reset=False, dtype=shape.dtype,
                                           accept_sparse=SPARSE, order="C"))
        rs = fit_random_state(self.random_state)
        layer_units = [shape.n_features, *self._hidden_sizes(), shape.n_outputs]
        initial = initial_weights(rs, layer_units, self.activation) if first_pass else None
        self._network(layer_units, shape.dtype, first_pass, rs, initial)
        self.model_.classes_ = network_classes(get_loss(self._loss_name), shape.n_outputs)
        chunks = EstimatorChunks(self, source, shape.dtype, shape.class_weight)
        self._epochs((chunks, None), shape.n, None, given, incremental, first_pass)
        return self

    def _network(self, layer_units: List[int], dtype, first_pass: bool, rs, initial) -> None:
        """model_ for ``layer_units``: a new one with ``initial`` weights (or coefs_ set by
        hand) on a first pass, else the fitted one, checked to be of the same shape."""
        if first_pass or not hasattr(self, "model_"):   # no model_: coefs_ set by hand
            initial = initial or checked_weights(self, list(zip(layer_units, layer_units[1:])),
                                                 dtype)
            self._initialize(layer_units, initial, dtype,
                             seed=int(rs.randint(np.iinfo(np.int32).max)))
        else:
            check_same_network(self._network_key, network_description(self, layer_units, dtype))
            write_edits(self, self.model_)

    def _with_class_weight(self, labels, sample_weight, incremental: bool):
        """The row weights the fit uses: ``sample_weight`` (the regressor has no
        class_weight)."""
        return sample_weight

    def _split(self, X, Y, labels, sample_weight, rs, given):
        """((X, Y, w) to train on, the validation data or None): the ``given``
        :class:`~fastmlp.sklearn.heldout.Validation`, else with early_stopping a
        ``validation_fraction`` hold-out drawn from ``rs`` by train_test_split (after the
        initial weights, as scikit-learn), stratified as scikit-learn (``_strata``)."""
        if given is not None or not self.early_stopping or self.solver == "lbfgs":
            return (X, Y, sample_weight), given        # lbfgs ignores early_stopping
        return validation_split(X, Y, labels, sample_weight, rs, self.validation_fraction,
                                strata=self._strata(Y))

    def _strata(self, Y):
        """What the hold-out is stratified by (None: not stratified)."""
        return None

    def _initialize(self, layer_units: List[int], initial: List[np.ndarray], dtype,
                    seed: int) -> None:
        """A new network of ``dtype`` with scikit-learn's initial weights (or coefs_ and
        intercepts_ set by hand), and the fitted attributes that persist across
        warm-start fits and partial_fit calls."""
        self.n_layers_ = len(layer_units)
        self.n_outputs_ = layer_units[-1]
        self.model_ = build_network(self, layer_units, self._loss_name, seed, dtype)
        self.model_.set_weights(initial)
        self._network_key = network_description(self, layer_units, dtype)
        self.out_activation_ = self._out_activation()
        self.n_iter_ = 0
        self.t_ = 0
        self._improvement = Improvement()
        if self.solver == "lbfgs":     # as scikit-learn: no loss_curve_ nor best scores
            return
        self.loss_curve_ = []
        self.validation_loss_curve_ = None
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
            self._improvement.best_weights = self.model_.get_weights()
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def __setstate__(self, state: dict) -> None:
        """An estimator pickled before the subpackages kept the stopping rule's state as
        ``_no_improvement_count`` and ``_best_weights``: gathered into ``_improvement``."""
        if "model_" in state and "_improvement" not in state:
            improvement = Improvement()
            improvement.count = state.pop("_no_improvement_count", 0)
            improvement.best_weights = state.pop("_best_weights", None)
            state = {**state, "_improvement": improvement}
        super().__setstate__(state)

    def _train(self, X, Y, sample_weight, validation, incremental: bool,
               first_pass: bool) -> None:
        """One fit call of up to max_iter epochs (1 for partial_fit) under the rule. A
        diverging step (fastmlp's DivergenceError, the weights those before it) ends as
        scikit-learn's fit does: with early stopping the epochs run out to max_iter with
        NaN losses and scores and the best weights are kept; otherwise scikit-learn's
        ValueError on non-finite weights."""
        X = self.model_.as_input(X)     # scipy.sparse X as CSR rows (docs/sparse.md)
        if validation is not None:
            validation = validation.as_input(self.model_)
        if self.solver == "lbfgs":
            fit_lbfgs(self, X, Y, sample_weight)
            refresh(self, self.model_, anew=first_pass)
            return
        self._epochs(self._training_data(X, Y), len(X), sample_weight, validation, incremental,
                     first_pass)

    def _epochs(self, data: tuple, n: int, sample_weight, validation, incremental: bool,
                first_pass: bool) -> None:
        """The stochastic solvers' epochs over ``data`` (model.fit's X and y) of ``n`` rows
        under scikit-learn's rule (see _train)."""
        model = self.model_
        model.regularizer = l2_penalty(self.alpha, self._grad_factor)
        if validation is not None and getattr(self, "validation_loss_curve_", None) is None:
            self.validation_loss_curve_ = []
        keep = incremental and model.optimizer is not None
        rule = ScikitLearnRule(self, n, LossScale(self._grad_factor, self._loss_factor),
                               self._improvement, validation)
        self.n_iter_ = 0
        try:
            with self._threads(), no_scale_warning():
                model.fit(*data,
                          epochs=1 if incremental else self.max_iter,
                          batch_size=batch_size(self, n),
                          optimizer=None if keep else make_optimizer(self, self._grad_factor),
                          shuffle=self.shuffle, callbacks=[rule],
                          sample_weight=sample_weight, verbose=0)
            diverged = False
        except DivergenceError:       # scikit-learn goes on with NaN weights (see below)
            diverged = True
            if self.early_stopping:
                rule.run_out_diverged(self.max_iter)
        if self.early_stopping:
            model.set_weights(self._improvement.best_weights)
        refresh(self, model, anew=first_pass)
        if diverged and not self.early_stopping:      # scikit-learn's check of its weights
            raise non_finite_weights() from None
        if not rule.converged and not incremental and self.n_iter_ == self.max_iter:
            warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached "
                          "and the optimization hasn't converged yet.", ConvergenceWarning)

    def _training_data(self, X, Y) -> tuple:
        """model.fit's X and y for the network's X and targets Y: as they are (fit checks
        them again)."""
        return X, Y

    # --------------------------------------------------------------- inference
    def _features(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validated(self, X, reset=False, accept_sparse=SPARSE, dtype=self.model_.dtype,
                      order="C")
        write_edits(self, self.model_)
        return X

    def _score(self, X, y, sample_weight) -> float:
        """The early-stopping score on validated data."""
        return self._score_predictions(y, self._predictions(X), sample_weight)

    def _predictions(self, X) -> np.ndarray:
        """Predictions for validated X, on the estimator's threads."""
        with self._threads():
            return self._predict_validated(X)

    def _score_predictions(self, y, predicted, sample_weight) -> float:
        """The early-stopping score of ``predicted`` against ``y``: NaN for non-finite
        predictions, as scikit-learn."""
        if np.issubdtype(predicted.dtype, np.floating) and not np.isfinite(predicted).all():
            return np.nan
        return float(self._score_function(y, predicted, sample_weight=sample_weight))

    def predict(self, X):
        """Predictions for X's rows; X may be a source (fastmlp.sources, an .npy, CSV or
        Parquet path, a Dask collection, a chunk iterator), read a chunk at a time."""
        return self._by_chunks(X, self._predict_validated)

    def score(self, X, y=None, sample_weight=None) -> float:
        """scikit-learn's score (accuracy or R^2). X may be a source holding the targets
        and any sample weights (y and sample_weight None, or y a Parquet target column's
        name), read a chunk at a time; the predictions and targets of every row are
        gathered for the metric."""
        source = as_source(X, y, memmap=False)
        if source is None:       # the scikit-learn mixins' score
            return float(self._score_function(y, self.predict(X), sample_weight=sample_weight))
        if sample_weight is not None:
            raise ValueError("a source holds its sample weights (e.g. fastmlp.sources.Npy(X, "
                             "y, sample_weight=...)), not sample_weight=")
        predicted, targets, weights = [], [], []
        for i, (X, y, w) in source.numbered():
            targets.append(np.asarray(source.checked_targets(y)))
            try:
                predicted.append(self._validated_predictions(X, self._predict_validated))
            except ValueError as exc:
                raise source.in_chunk(exc, i) from None
            weights.append(np.ones(len(X)) if w is None else np.asarray(w, np.float64))
        if not predicted:
            raise ValueError(f"the {source.kind} source holds no rows")
        w = np.concatenate(weights)
        return float(self._score_function(np.concatenate(targets), np.concatenate(predicted),
                                          sample_weight=w))

    def _by_chunks(self, X, predict_validated) -> np.ndarray:
        """``predict_validated`` of X's rows: in one call for arrays (memory maps too, as
        joblib hands them over), else a chunk at a time from X as a source."""
        return by_chunks(X, lambda X: self._validated_predictions(X, predict_validated),
                         np.concatenate, memmap=False)

    def _validated_predictions(self, X, predict_validated) -> np.ndarray:
        """``predict_validated`` of X after the estimator's checks, on its threads."""
        X = self._features(X)
        with self._threads():
            return predict_validated(X)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier with scikit-learn's parameters (see
    ``sklearn.neural_network.MLPClassifier``), trained by fastmlp.

    Targets go through a ``LabelBinarizer``: two classes use one logistic output
    (binary cross-entropy), more classes a softmax output, and a 2-D 0/1 indicator matrix
    (multilabel) one logistic output per label. Ours on top: ``solver`` also takes
    "momentum", "nesterov", "adagrad", "rmsprop", "adamw"; ``dropout`` (rate after each
    hidden layer), ``backend`` ("native" or "numpy"), ``dtype`` and ``n_threads`` (None:
    the library's default), ``class_weight`` (a dict {label: weight} or "balanced", as
    scikit-learn's other classifiers take it: it multiplies sample_weight). ``solver="lbfgs"``
    runs scikit-learn's L-BFGS (:mod:`fastmlp.sklearn.lbfgs`; no partial_fit, no dropout).

    ``dtype=None`` follows scikit-learn: the first fit's float32 input gives a float32
    network, float64 or any other input (integers, lists, DataFrames) a float64 one;
    partial_fit and warm-start fits keep the fitted dtype. "float32" or "float64" forces
    it. Predictions, coefs_ and intercepts_ are in the network's dtype. The exception:
    ``precision="bfloat16"`` (the products round their operands to bfloat16, sum in
    float32) always gives a float32 network, its master weights, whatever dtype says.

    The fitted network is ``model_``; coefs_ and intercepts_ are the estimator's own
    writable arrays in scikit-learn's layout, written into ``model_`` at its next use when
    edited or replaced (:mod:`fastmlp.sklearn.weights`).
    """

    @suggest_keywords
    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, backend="native", dtype=None, n_threads=None, class_weight=None,
                 precision=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.backend = backend
        self.dtype = dtype
        self.n_threads = n_threads
        self.precision = precision
        self.class_weight = class_weight

    _parameter_constraints: dict = {**_BaseMLP._parameter_constraints,
                                    "class_weight": [dict, StrOptions({"balanced"}), None]}
    _score_function = staticmethod(accuracy_score)
    score = _BaseMLP.score        # ahead of ClassifierMixin's, which takes arrays only

    def _with_class_weight(self, labels, sample_weight, incremental: bool):
        return with_class_weight(self.class_weight, labels, sample_weight, incremental)

    @available_if(lambda est: est._check_solver())
    @one_at_a_time
    def partial_fit(self, X, y=None, sample_weight=None, classes=None):
        """One epoch from the current weights. The first call needs ``classes`` (every
        label that will occur; classes_ becomes its unique labels; an indicator matrix y
        is multilabel whatever ``classes`` says), as in scikit-learn."""
        if _check_partial_fit_first_call(self, classes):      # scikit-learn's own check
            self._label_binarizer = LabelBinarizer()
            multilabel = y is not None and as_source(X, y, memmap=False) is None \
                and type_of_target(y).startswith("multilabel")
            self._label_binarizer.fit(y if multilabel else classes)
        return self._partial_fit(X, y, sample_weight)

    def _validate_input(self, X, y, incremental: bool, reset: bool, dtype):
        return classifier_input(self, X, y, incremental, reset, dtype)

    def _training_data(self, X, Y) -> tuple:
        """The network's X (``as_input``'s) and binarized targets, one-hot or 0/1 in its
        dtype, are what model.fit would make of them: passed as PreparedData, unchecked."""
        return PreparedData(X, np.ascontiguousarray(Y)), None

    def _validation_targets(self, y_val, n_outputs: int):
        """(binarized targets, labels) of fit's y_val (fastmlp.sklearn.heldout)."""
        return classifier_targets(self._label_binarizer, y_val)

    def _strata(self, Y):
        """scikit-learn's: the binarized targets as bool, for one output only (two
        classes); multiclass and multilabel hold-outs are not stratified."""
        return Y.astype(bool) if Y.shape[1] == 1 else None

    @property
    def _multiclass(self) -> bool:
        return self._label_binarizer.y_type_ == "multiclass"

    @property
    def _loss_name(self) -> str:
        return SoftmaxCrossEntropy.name if self._multiclass else BinaryCrossEntropy.name

    def _out_activation(self) -> str:
        return "softmax" if self._multiclass else "logistic"

    @property
    def _grad_factor(self) -> float:
        """fastmlp's gradient / scikit-learn's: binary cross-entropy averages over the k
        outputs where scikit-learn sums."""
        return 1.0 if self._multiclass else 1.0 / self.n_outputs_

    @property
    def _loss_factor(self) -> float:
        """scikit-learn's reported data loss / fastmlp's."""
        return 1.0 / self._grad_factor

    def _proba_validated(self, X: np.ndarray) -> np.ndarray:
        proba = self.model_.predict_proba(X)
        return proba.reshape(-1, 1) if proba.ndim == 1 else proba

    def _predict_validated(self, X: np.ndarray) -> np.ndarray:
        proba = self._proba_validated(X)
        return self._label_binarizer.inverse_transform(
            proba[:, 0] if self.n_outputs_ == 1 else proba)

    def predict_proba(self, X):
        """Probabilities (n, n_classes): two columns [1 - p, p] for binary targets; one
        column per label for multilabel targets."""
        proba = self._by_chunks(X, self._proba_validated)
        if self.n_outputs_ == 1:
            return np.hstack([1 - proba, proba])
        return proba

    def predict_log_proba(self, X):
        """log of predict_proba."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class _RegressionLoss(NamedTuple):
    """How one of scikit-learn's regression losses maps onto fastmlp's."""

    name: str                                 # fastmlp's loss
    out_activation: str                       # scikit-learn's out_activation_
    loss_factor: float                        # scikit-learn's reported loss / fastmlp's
    grad_factor: Callable[[int], float]       # fastmlp's gradient / scikit-learn's, of k outputs


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor with scikit-learn's parameters (see
    ``sklearn.neural_network.MLPRegressor``), trained by fastmlp.

    1-D y gives 1-D predictions, 2-D y (n, k) predictions (n, k). ``loss_curve_`` is
    scikit-learn's loss plus its penalty: for loss="squared_error" the half squared error
    ``((y - y_pred)**2).mean() / 2`` (fastmlp's "mse"), for loss="poisson" the half
    Poisson deviance with a log link (fastmlp's "poisson": predictions are exp of the
    last layer, y must be >= 0). The other extras and differences are those of
    :class:`MLPClassifier`.
    """

    @suggest_keywords
    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 dropout=0.0, backend="native", dtype=None, n_threads=None, precision=None):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dropout = dropout
        self.backend = backend
        self.dtype = dtype
        self.n_threads = n_threads
        self.precision = precision

    _parameter_constraints: dict = {**_BaseMLP._parameter_constraints,
                                    "loss": [StrOptions({"squared_error", "poisson"})]}
    # scikit-learn's loss -> fastmlp's: its half squared error is mse / 2 (per sample the
    # mean over the k outputs, halved), its poisson loss fastmlp's poisson exactly
    _LOSSES = {"squared_error": _RegressionLoss(MeanSquaredError.name, "identity", 0.5,
                                                lambda k: 2.0 / k),
               "poisson": _RegressionLoss(Poisson.name, "exp", 1.0, lambda k: 1.0)}
    _score_function = staticmethod(r2_score)
    score = _BaseMLP.score        # ahead of RegressorMixin's, which takes arrays only

    @property
    def _loss_name(self) -> str:
        return self._LOSSES[self.loss].name

    @property
    def _loss_factor(self) -> float:
        return self._LOSSES[self.loss].loss_factor

    @available_if(lambda est: est._check_solver())
    @one_at_a_time
    def partial_fit(self, X, y=None, sample_weight=None):
        """One epoch from the current weights (the optimizer's state kept)."""
        return self._partial_fit(X, y, sample_weight)

    def _validate_input(self, X, y, incremental: bool, reset: bool, dtype):
        return regressor_input(self, X, y, reset, dtype)

    def _validation_targets(self, y_val, n_outputs: int):
        """((n_val, k) targets, y_val) of fit's y_val (fastmlp.sklearn.heldout)."""
        return regressor_targets(y_val, n_outputs)

    def _out_activation(self) -> str:
        return self._LOSSES[self.loss].out_activation

    @property
    def _grad_factor(self) -> float:
        """fastmlp's gradient / scikit-learn's: for MSE 2/k (mean over outputs of the
        squared error against the sum of half squared errors); poisson's are the same."""
        return self._LOSSES[self.loss].grad_factor(self.n_outputs_)

    def _predict_validated(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)
