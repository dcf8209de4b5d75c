"""Every code block of the README and the docs runs as written, as a reader would paste it.

Each page runs in a fresh interpreter (a subprocess, in an empty temporary directory); its runnable
blocks share one namespace, in page order, and each block is fed line by line to the interactive
interpreter's compiler (``codeop``), exactly as pasting it into ``python`` does: a ``with``/``for``
block directly followed by an unindented line is the SyntaxError a reader would get (a MyST
``{code-cell}`` of a docs page runs whole, as Jupyter runs it). Blocks that
do not run here (shell commands, text, tutorial notebook cells executed by the Sphinx build, or a
``<!-- no-run: reason -->`` marker) are listed as skipped with their reason (``pytest -rs``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import doc_blocks  # noqa: E402

ROOT = doc_blocks.ROOT

RUNNER = r"""
import codeop, json, sys, traceback
blocks = json.load(sys.stdin)
ns = {"__name__": "__main__", "__builtins__": __builtins__}
compiler = codeop.CommandCompiler()
for b in blocks:
    if b["cell"]:   # a notebook cell runs whole, as Jupyter runs it
        try:
            exec(compile(b["code"], b["where"], "exec"), ns)
        except BaseException:
            print(f"{b['where']} (notebook cell) raised:\n" + traceback.format_exc(), file=sys.stderr)
            sys.exit(1)
        continue
    buf = []
    lines = b["code"].splitlines() + [""]        # the reader presses Enter after the paste
    for k, line in enumerate(lines):
        buf.append(line)
        try:
            code = compiler("\n".join(buf), b["where"], "single")
        except (SyntaxError, OverflowError, ValueError):
            print(f"{b['where']} (block line {k + 1}): does not compile when pasted into the interpreter:\n"
                  + traceback.format_exc(limit=0), file=sys.stderr)
            sys.exit(1)
        if code is None:
            continue
        buf_done, buf = buf, []
        try:
            exec(code, ns)
        except SystemExit:
            raise
        except BaseException:
            print(f"{b['where']} (block lines {k + 2 - len(buf_done)}-{k + 1}) raised:\n"
                  + traceback.format_exc(), file=sys.stderr)
            sys.exit(1)
print(f"ran {len(blocks)} block(s)")
"""


def _all_blocks():
    return [b for p in doc_blocks.pages() for b in doc_blocks.blocks(p)]


def _runnable_pages():
    pages: dict = {}
    for b in _all_blocks():
        if b.skip is None:
            pages.setdefault(b.page, []).append(b)
    return pages


RUNNABLE = _runnable_pages()
SKIPPED = [b for b in _all_blocks() if b.skip is not None]

# Pages whose blocks fail today, owned by other work in progress (strict: an entry that passes fails the
# test, so the list can only shrink). Each needs the names its snippet uses defined in the snippet.
KNOWN_FAILING: dict = {}


def _page_param(page):
    if page in KNOWN_FAILING:
        return pytest.param(page, marks=pytest.mark.xfail(reason=KNOWN_FAILING[page], strict=True))
    return page


@pytest.mark.parametrize("page", [_page_param(p) for p in sorted(RUNNABLE)])
def test_page_blocks_run_as_pasted(page, tmp_path):
    blocks = [{"where": b.where, "code": b.code, "cell": b.lang == "{code-cell}"} for b in RUNNABLE[page]]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    res = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps(blocks),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, f"{page}: a code block fails when pasted into a fresh interpreter\n{res.stderr[-4000:]}"
    assert f"ran {len(blocks)} block(s)" in res.stdout


def _skipped_groups():
    groups: dict = {}
    for b in SKIPPED:
        groups.setdefault((b.page, b.skip), []).append(b.line)
    return sorted(groups.items())


@pytest.mark.parametrize("group", _skipped_groups(), ids=[f"{p}-{len(ls)}" for (p, _), ls in _skipped_groups()])
def test_skipped_blocks(group):
    (page, reason), lines = group
    pytest.skip(f"{page}: {len(lines)} block(s) at line(s) {', '.join(map(str, lines))}: {reason}")


def test_inventory_of_blocks(capsys):
    runs = sum(len(v) for v in RUNNABLE.values())
    reasons = Counter(b.skip.split(":")[0] if b.skip.startswith("marked no-run") else b.skip for b in SKIPPED)
    with capsys.disabled():
        print(f"\ndocs code blocks: {runs} run on {len(RUNNABLE)} pages, {len(SKIPPED)} skipped:")
        for reason, n in reasons.most_common():
            print(f"  {n:3d}  {reason}")
    assert runs >= 15 and "README.md" in RUNNABLE
    assert set(KNOWN_FAILING) <= set(RUNNABLE), "a KNOWN_FAILING page has no runnable block any more"
    for b in SKIPPED:
        assert b.skip and not b.skip.endswith("no-run: "), f"{b.where}: a no-run marker needs a reason"


def test_block_extraction_rules():
    text = (
        "# t\n```python\na = 1\n```\n\n<!-- no-run: needs a GPU -->\n\n```python\nb = 2\n```\n"
        "1. item\n\n   ```python\n   c = 3\n   ```\n```bash\nls\n```\n"
        "```{code-cell} ipython3\n:tags: [x]\nd = 4\n```\n"
        "````\n```python\nnot a block\n```\n````\n"
    )
    got = doc_blocks.blocks(Path("docs/x.md"), text)
    assert [(b.line, b.lang, b.code, b.skip is None) for b in got] == [
        (2, "python", "a = 1\n", True),
        (8, "python", "b = 2\n", False),
        (13, "python", "c = 3\n", True),
        (16, "bash", "ls\n", False),
        (19, "{code-cell}", "d = 4\n", True),
        (23, "", "```python\nnot a block\n```\n", False),
    ]
    assert got[1].skip == "marked no-run: needs a GPU"


def test_paste_check_catches_what_the_interpreter_rejects(tmp_path):
    # a with-block followed directly by an unindented line fails when pasted, though it runs as a script
    code = "import contextlib\nwith contextlib.nullcontext():\n    x = 1\nprint(x)\n"
    res = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([{"where": "t:1", "code": code, "cell": False}]),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 1 and "does not compile when pasted" in res.stderr
    ok = code.replace("print(x)", "\nprint(x)")
    res = subprocess.run(
        [sys.executable, "-c", RUNNER],
        input=json.dumps([{"where": "t:1", "code": ok, "cell": False}]),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
