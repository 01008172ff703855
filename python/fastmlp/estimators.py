"""The former path of :mod:`fastmlp.sklearn.estimators`, kept so estimators pickled before
the subpackages load (importing it imports scikit-learn, as the estimators do)."""
import sys

from .sklearn import estimators as _estimators

sys.modules[__name__] = _estimators
