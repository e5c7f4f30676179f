"""Every ```python block of README.md and docs/*.md runs (make doctest-md; marker `docs`).

One test per file: its blocks run in order, in one namespace, in a fresh interpreter whose working
directory is a temporary folder (files that an example writes land there), with the repository on
PYTHONPATH and matplotlib's Agg backend. A traceback names the Markdown file and its line.
Snippets that cannot run on a CPU machine (a multi-host launch, a GPU install, shell commands,
signatures, sketches with placeholder models) use ```text or ```bash fences. docs/results/ holds
measurements written by the scripts, not examples, and is not run.

By hand: python -c "from tests.test_docs import run_file; run_file('docs/viz.md')" (from the root).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT_S = 300  # per file; all files together take a few minutes on 2 cores
OPEN = re.compile(r"^```python\s*$")
CLOSE = re.compile(r"^```\s*$")


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the block's first code line, 1-based; code) for every ```python block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if OPEN.match(lines[i]):
            j = i + 1
            while j < len(lines) and not CLOSE.match(lines[j]):
                j += 1
            if j == len(lines):
                raise ValueError(f"unclosed ```python block at line {i + 1}")
            blocks.append((i + 2, "\n".join(lines[i + 1:j]) + "\n"))
            i = j
        i += 1
    return blocks


def run_file(path: str | Path) -> None:
    """Execute the file's python blocks in order in one namespace (in this process)."""
    path = Path(path)
    namespace: dict = {"__name__": "__main__"}
    for line, code in python_blocks(path.read_text()):
        # padding with newlines makes tracebacks give the Markdown file's own line numbers
        exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)



def test_block_extraction():
    text = "x\n```python\na = 1\n\nb = 2\n```\n```text\nnot = run\n```\n```python\nc = 3\n```\n"
    assert python_blocks(text) == [(3, "a = 1\n\nb = 2\n"), (11, "c = 3\n")]
    with pytest.raises(ValueError, match="unclosed"):
        python_blocks("```python\na = 1\n")


def test_a_failing_block_names_the_file_and_line(tmp_path):
    md = tmp_path / "guide.md"
    md.write_text("intro\n\n```python\nx = 1\n```\n\n```python\ny = x\nundefined_name\n```\n")
    with pytest.raises(NameError) as info:
        run_file(md)
    frame = info.traceback[-1]
    assert Path(frame.path) == md and frame.lineno + 1 == 9  # pytest's lineno is 0-based


@pytest.mark.docs
@pytest.mark.parametrize("path", [p for p in FILES if python_blocks(p.read_text())],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(path, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    script = f"from tests.test_docs import run_file; run_file({str(path)!r})"
    proc = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        pytest.fail(f"{path.relative_to(ROOT)}:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}", pytrace=False)
