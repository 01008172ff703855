"""Interchange with other frameworks: ONNX export (onnx.py) and PyTorch (torch.py).

Each module imports its framework lazily, so fastmlp itself needs neither."""
