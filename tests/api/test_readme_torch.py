"""The README's PyTorch examples run as written (marked <!-- readme-test: needs torch -->;
each is self-contained, since torch is in no extra): in one fresh process, in README order.
The other examples run in tests/api/test_readme.py."""
import pytest

from readme_blocks import NEEDS_TORCH, README, read_blocks, run_python

pytest.importorskip("torch", reason="PyTorch is in no extra: pip install torch")

TORCH_BLOCKS = [b for b in read_blocks(README.read_text(encoding="utf-8"))
                if b.marker == NEEDS_TORCH]


def test_the_pytorch_blocks_run(tmp_path):
    assert TORCH_BLOCKS, "README.md has no block marked as needing torch"
    run_python(TORCH_BLOCKS, tmp_path)
