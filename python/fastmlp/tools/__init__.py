"""Tools around a model: data splits, gradient check, diagnosis, hyperparameter search."""
