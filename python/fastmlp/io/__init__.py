"""What leaves the process: model and checkpoint files, ONNX and PyTorch interchange, plots.

Each interchange module imports its framework lazily, so fastmlp itself needs none of them."""
