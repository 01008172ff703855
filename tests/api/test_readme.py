"""Every example in README.md runs as written (tests/readme_blocks.py says how blocks are
read, marked and run): the python blocks top to bottom in one fresh process, the sh and
console blocks with bash, in README order, in one folder. A failure names its README line.
The PyTorch blocks run in tests/api/test_readme_torch.py."""
import shutil

import pytest

from readme_blocks import (NEEDS_TORCH, README, RUN_LANGUAGES, SHOWN_LANGUAGES, SKIP, Block,
                           command_folder, read_blocks, run_python, run_shell)

BLOCKS = read_blocks(README.read_text(encoding="utf-8"))
PYTHON = [b for b in BLOCKS if b.lang == "python" and b.runnable and b.marker != NEEDS_TORCH]
SHELL = [b for b in BLOCKS if b.lang in ("sh", "console") and b.runnable]


def test_every_block_names_a_known_language_and_marker():
    for block in BLOCKS:
        assert block.lang in RUN_LANGUAGES + SHOWN_LANGUAGES, (
            f"{block.where}: name the block's language (one of "
            f"{', '.join(RUN_LANGUAGES + SHOWN_LANGUAGES)}) so the README tests see it")
        if "readme-test" in block.marker:
            assert block.marker == NEEDS_TORCH or SKIP.fullmatch(block.marker), (
                f"{block.where}: unknown marker {block.marker!r}; use "
                f"'<!-- readme-test: skip (reason) -->' or {NEEDS_TORCH!r}")


def test_the_readme_has_examples_to_run():
    assert len(PYTHON) >= 15 and len(SHELL) >= 2, (len(PYTHON), len(SHELL))


def test_python_blocks_run_top_to_bottom_in_one_process(tmp_path):
    run_python(PYTHON, tmp_path)


def _shell_case(block: Block):
    return pytest.param(block, id=f"line-{block.line}")


@pytest.fixture(scope="module")
def shell_folder(tmp_path_factory):
    """One folder for every shell block, so a session may use what an earlier one wrote,
    holding a copy of examples/ as a clone of the repository does."""
    folder = tmp_path_factory.mktemp("readme-shell")
    shutil.copytree(README.parent / "examples", folder / "examples")
    return folder, command_folder(tmp_path_factory.mktemp("readme-bin"))


@pytest.mark.parametrize("block", [_shell_case(b) for b in SHELL])
def test_shell_block_runs(block, shell_folder):
    run_shell(block, *shell_folder)


FAILING = """\
Some text.

```python
x = 1
```

More text.

```python
y = x + 1
raise RuntimeError("planted")
```
"""


def test_a_failing_block_is_named_by_its_readme_line(tmp_path):
    blocks = read_blocks(FAILING)
    assert [(b.line, b.lang) for b in blocks] == [(3, "python"), (9, "python")]
    with pytest.raises(AssertionError, match=r"(?s)README.md line 11, in the ```python block "
                                             r"at line 9,.*RuntimeError: planted"):
        run_python(blocks, tmp_path)


SPAWNING = """\
```python
import multiprocessing
print("top level")

def double(x):
    return 2 * x
```

```python
if __name__ == "__main__":
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        print(pool.map(double, [21]))
```
"""


def test_worker_processes_get_the_definitions_without_running_the_examples_again(tmp_path):
    done = run_python(read_blocks(SPAWNING), tmp_path)
    assert done.stdout.splitlines() == ["top level", "[42]"]


def test_a_failing_shell_block_is_named_by_its_readme_line(tmp_path):
    block = read_blocks("\n\n```console\n$ true\nok\n$ false\n```\n")[0]
    with pytest.raises(AssertionError, match=r"(?s)README.md line 3 \(```console\) failed "
                                             r"\(exit 1\).*\+ false"):
        run_shell(block, tmp_path, command_folder(tmp_path / "bin"))


def test_a_console_session_runs_its_commands_not_its_output(tmp_path):
    block = read_blocks("```console\n$ echo a \\\n    b > out.txt\nnot a command\n"
                        "$ cat out.txt\n```\n")[0]
    done = run_shell(block, tmp_path, command_folder(tmp_path / "bin"))
    assert done.stdout == "a b\n"
