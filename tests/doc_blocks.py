"""Code blocks of the README and the docs pages (helper of ``tests/test_doc_blocks.py``).

A block is a fenced code block (```` ``` ```` or longer, possibly indented). It runs when its
language is ``python``/``py`` or a MyST ``{code-cell}`` (outside the tutorials); everything else is
skipped with a reason: shell commands, text/maths, data files, tutorial notebooks (executed by the
Sphinx build), or an explicit ``<!-- no-run: reason -->`` marker on the line(s) just above the fence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
NO_RUN = re.compile(r"^\s*<!--\s*no-run:\s*(?P<reason>.*?)\s*-->\s*$")
PY_LANGS = {"python", "py", "python3", "{code-cell}"}
SHELL_LANGS = {"bash", "sh", "shell", "console", "shell-session", "zsh"}
TEXT_LANGS = {"", "text", "none", "math", "{math}", "plain"}
DATA_LANGS = {"json", "toml", "yaml", "yml", "ini", "csv", "cfg"}


@dataclass
class Block:
    page: str  # path relative to the repository root
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: Optional[str] = None  # reason it is not run, or None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> List[Path]:
    """README.md, the docs pages and the tutorials (docs/changelog*.md excluded: history, not instructions)."""
    out = [ROOT / "README.md"]
    out += sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "changelog.md")
    out += sorted((ROOT / "docs" / "guide").glob("*.md"))
    out += sorted((ROOT / "tutorials").glob("*.md"))
    return out


def _strip_cell_options(code: str) -> str:
    """MyST code-cell options: a ``---`` YAML block or ``:key: value`` lines at the top."""
    lines = code.splitlines(keepends=True)
    if lines and lines[0].strip() == "---":
        end = next((k for k in range(1, len(lines)) if lines[k].strip() == "---"), 0)
        return "".join(lines[end + 1 :])
    k = 0
    while k < len(lines) and re.match(r"^:[\w-]+:", lines[k]):
        k += 1
    return "".join(lines[k:])


def _classify(page: str, lang: str, marker: Optional[str], code: str) -> Optional[str]:
    if marker is not None:
        return f"marked no-run: {marker}"
    if lang == "{code-cell}" and page.startswith("tutorials/"):
        return "tutorial notebook cell: executed by the Sphinx docs build (CI step 'docs'), not here"
    if lang in PY_LANGS:
        if re.search(r"raises-exception|skip-execution", code):  # ``code``: the block's first lines
            return "code-cell tagged raises-exception/skip-execution"
        return None
    if lang in SHELL_LANGS:
        return "shell commands (bash), not Python"
    if lang in TEXT_LANGS:
        return "text or maths, not code"
    if lang in DATA_LANGS:
        return f"{lang} data, not code"
    return f"language {lang!r} is not run"


def blocks(path: Path, text: Optional[str] = None) -> List[Block]:
    """Every fenced block of ``path`` in order, with its skip reason (``None``: it runs)."""
    text = path.read_text(encoding="utf-8") if text is None else text
    page = path.relative_to(ROOT).as_posix() if path.is_absolute() else path.as_posix()
    lines = text.splitlines()
    out: List[Block] = []
    k = 0
    while k < len(lines):
        m = FENCE.match(lines[k])
        if not m:
            k += 1
            continue
        indent, fence, info = m.group("indent"), m.group("fence"), m.group("info").strip()
        lang = info.split()[0].lower() if info else ""
        body, j = [], k + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j].lstrip())
            j += 1
        prev = k - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        mark = NO_RUN.match(lines[prev]) if prev >= 0 else None
        code = "\n".join(body) + "\n"
        if lang == "{code-cell}":
            code = _strip_cell_options(code)
        reason = _classify(page, lang, mark.group("reason") if mark else None, "\n".join(body[:5]))
        out.append(Block(page, k + 1, lang, code, reason))
        k = j + 1
    return out
