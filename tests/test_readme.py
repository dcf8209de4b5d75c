"""The README's quickstart runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart_code(text: str) -> str:
    """The first ```python block under the "## Quickstart" heading (before the next "## " heading)."""
    m = re.search(r"^## Quickstart[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, 'README.md has no "## Quickstart" heading'
    block = re.search(r"^```python[^\n]*\n(.*?)^```", m.group(1), flags=re.S | re.M)
    assert block, 'no ```python block under "## Quickstart"'
    return block.group(1)


def test_quickstart_extraction_rules():
    text = "# x\n## Set-up\n```python\nA = 1\n```\n## Quickstart\nsome text\n```python\nB = 2\n```\n```python\nC = 3\n```\n## Next\n"
    assert quickstart_code(text) == "B = 2\n"


def test_readme_quickstart_runs():
    assert README.exists(), f"{README} is missing"
    code = quickstart_code(README.read_text(encoding="utf-8"))
    assert len(code.strip().splitlines()) <= 15, "the quickstart should stay short (issue 2: about 10 lines)"
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__readme__"}
    exec(compile(code, str(README) + ":Quickstart", "exec"), namespace)
