"""The README's code blocks, read and run as the README tests do (tests/api/test_readme*.py).

A block is a fenced code block: a line ```LANG, the code, a line ```. Every fence names its
language: python, sh or console blocks are run; text, json and toml blocks are shown only.
The line just above a block may hold one marker, an HTML comment the reader does not see:

- ``<!-- ci:demo -->``, ``<!-- ci:test -->``: the two newcomer commands; .ci/run runs them
  in a fresh virtual environment, the tests do not;
- ``<!-- readme-test: skip (reason) -->``: not run, for the reason given (it needs a cluster,
  installs packages, runs for minutes);
- ``<!-- readme-test: needs torch -->``: a self-contained block run only where torch is
  installed (PyTorch is in no extra).

Python blocks run top to bottom in one fresh process, so a block may use what an earlier
block defined, and the README says so where one does. The script holds each block at its
README line numbers, so a traceback's line is the README's line. The search's worker
processes import the main script again (multiprocessing's spawn and forkserver do); a
script holding the whole README would then run every example again in every worker, so
the workers import only the script's definitions: its imports, functions and classes, which
is what a worker needs (a `build` function, a custom layer) and what a script of one section,
its work under ``if __name__ == "__main__":``, would give them.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
RUN_LANGUAGES = ("python", "sh", "console")
SHOWN_LANGUAGES = ("text", "json", "toml")
NEWCOMER_MARKERS = ("<!-- ci:demo -->", "<!-- ci:test -->")
NEEDS_TORCH = "<!-- readme-test: needs torch -->"
SKIP = re.compile(r"<!-- readme-test: skip \((?P<reason>[^)]+)\) -->")
FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")
TIMEOUT_S = 300            # for all python blocks together, or for one shell block


@dataclass(frozen=True)
class Block:
    line: int            # the README line of the opening fence, from 1
    lang: str
    code: str
    marker: str          # the line just above the fence ("" at the top of the file)

    @property
    def where(self) -> str:
        return f"README.md line {self.line} (```{self.lang})"

    @property
    def runnable(self) -> bool:
        """Run by the README tests: a python, sh or console block with no marker that
        leaves it to CI or skips it."""
        return (self.lang in RUN_LANGUAGES and self.marker not in NEWCOMER_MARKERS
                and SKIP.fullmatch(self.marker) is None)


def read_blocks(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks, start = [], None
    for index, line in enumerate(lines):
        fence = FENCE.match(line)
        if fence is None:
            continue
        if start is None:
            start, lang = index, fence["lang"]
        else:
            marker = lines[start - 1].strip() if start > 0 else ""
            blocks.append(Block(start + 1, lang, "\n".join(lines[start + 1:index]) + "\n",
                                marker))
            start = None
    if start is not None:
        raise ValueError(f"README.md line {start + 1}: a code block is never closed")
    return blocks


DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def python_script(blocks: list[Block], first_line: str = "") -> str:
    """The blocks as one script, each at its README lines (blank lines in between). README
    line 1 is never code (code starts after a fence), so ``first_line`` may take it."""
    lines = [first_line]
    for block in blocks:
        lines += [""] * (block.line - len(lines))
        lines += block.code.splitlines()
    return "\n".join(lines) + "\n"


def definitions(block: Block) -> Block:
    """The block's top-level imports, functions and classes, at their lines."""
    code = block.code.splitlines()
    kept = [""] * len(code)
    for node in ast.parse(block.code).body:
        if isinstance(node, DEFINITIONS):
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept[first - 1:node.end_lineno] = code[first - 1:node.end_lineno]
    return Block(block.line, block.lang, "\n".join(kept) + "\n", block.marker)


def run_python(blocks: list[Block], folder: Path) -> subprocess.CompletedProcess:
    """Run the blocks in one fresh process in ``folder``; fail naming the README line."""
    script = folder / "README.md.py"          # its line numbers are README.md's
    for_workers = folder / "README.definitions.py"
    for_workers.write_text(python_script([definitions(b) for b in blocks]))
    script.write_text(python_script(blocks, f"__file__ = {str(for_workers)!r}  "
                                            f"# what worker processes import as __main__"))
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, script.name], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise AssertionError(f"{failing_python_line(done.stderr, script.name, blocks)} "
                             f"failed (exit {done.returncode}):\n{tail(done.stderr)}")
    return done


def failing_python_line(stderr: str, script_name: str, blocks: list[Block]) -> str:
    """The README line of the last traceback frame in the script, and its block."""
    lines = [int(n) for n in re.findall(rf'File ".*{re.escape(script_name)}", line (\d+)',
                                        stderr)]
    if not lines:
        return "the README's python blocks (no line in the traceback)"
    line = lines[-1]
    block = max((b for b in blocks if b.line < line), key=lambda b: b.line, default=None)
    where = f", in the ```python block at line {block.line}," if block else ""
    return f"README.md line {line}{where}"


def shell_script(block: Block) -> str:
    """An sh block as it is; a console session's commands: the lines after '$ ', with
    their continuation lines (a line ending in a backslash); the rest is output."""
    if block.lang == "sh":
        return block.code
    commands, continued = [], False
    for line in block.code.splitlines():
        if continued or line.startswith("$ "):
            commands.append(line if continued else line[2:])
            continued = line.endswith("\\")
    return "\n".join(commands) + "\n"


def command_folder(folder: Path) -> Path:
    """A folder of commands for a shell's PATH: `python`, `python3` and `fastmlp` run this
    interpreter (and the fastmlp it imports), and `mpirun` and `mpiexec` are the ones
    installed beside it (MPICH's wheel, the test extra), as in an activated virtual
    environment."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, args in (("python", ""), ("python3", ""), ("fastmlp", " -m fastmlp")):
        path = folder / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}"{args} "$@"\n')
        path.chmod(0o755)
    for name in ("mpirun", "mpiexec"):          # exec'd by path: hydra finds its proxy beside it
        installed = Path(sys.executable).with_name(name)
        if installed.exists():
            (folder / name).write_text(f'#!/bin/sh\nexec "{installed}" "$@"\n')
            (folder / name).chmod(0o755)
    return folder


def run_shell(block: Block, folder: Path, commands: Path) -> subprocess.CompletedProcess:
    """Run a block with bash in ``folder`` (stop at the first failing command); fail
    naming the block's README line and the command."""
    env = dict(os.environ, MPLBACKEND="Agg", PATH=f"{commands}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-x", "-c", shell_script(block)],
                          cwd=folder, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise AssertionError(f"{block.where} failed (exit {done.returncode}); bash's trace "
                             f"('+' lines are the commands):\n{tail(done.stdout)}\n"
                             f"{tail(done.stderr)}")
    return done


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])
