"""The fit loop over any model that offers layers and flat parameters: per-op steps or the
fused C++ trainer, callbacks, checkpoints, progress, guards and pre-fit checks."""
