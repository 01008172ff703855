"""Optimizers and learning-rate schedules: how flat parameters move given their gradients."""
