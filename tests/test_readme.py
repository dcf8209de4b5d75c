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


def _section(text: str, heading: str) -> str:
    m = re.search(rf"^## {re.escape(heading)}[^\n]*\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f'README.md has no "## {heading}" section'
    return m.group(1)


def test_readme_is_for_users_first():
    text = README.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    install = _section(text, "Install")
    assert "pip install snntorch-egru" in install and "[cuda12]" in install and "[data]" in install
    # users first: install, quickstart and the main job come before the contributor set-up
    order = [
        next(k for k, h in enumerate(headings) if h.startswith(name))
        for name in ("Install", "Quickstart", "The main job", "Development")
    ]
    assert order == sorted(order), headings


def test_readme_main_job_figures_placeholder():
    job = _section(README.read_text(encoding="utf-8"), "The main job")
    assert "snntorch-egru train" in job
    lines = job.splitlines()
    k = lines.index("<!-- default-job-figures -->")
    figures = lines[k + 1]
    assert re.search(r"\d+(\.\d+)? ± \d+(\.\d+)? %", figures), f"no accuracy figures after the placeholder: {figures!r}"


def test_readme_development_commands_match_ci():
    dev = _section(README.read_text(encoding="utf-8"), "Development")
    block = re.search(r"^```bash\n(.*?)^```", dev, flags=re.S | re.M)
    assert block, 'no ```bash block under "## Development"'
    commands = [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]
    assert commands == ['python -m pip install -e ".[dev]"', "python -m pytest"]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r'python -m pip install .*-e "\.\[dev\]"', ci) and "\npython -m pytest\n" in ci
