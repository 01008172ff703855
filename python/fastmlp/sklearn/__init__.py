"""scikit-learn estimators backed by fastmlp: ``from fastmlp.sklearn import MLPClassifier``.

:class:`MLPClassifier` and :class:`MLPRegressor` take scikit-learn's parameters (same
names, defaults and meanings) and work with Pipeline, GridSearchCV, cross_val_score,
clone and pickle. They live in :mod:`fastmlp.sklearn.estimators`; this module is the public path.
"""
from .estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
