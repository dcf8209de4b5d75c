"""Documentation checks: the API reference covers every public name, docstrings carry
examples that run, and every tutorial is known to the docs build.

The full Sphinx build (``sphinx-build -W --keep-going -b html docs docs/_build/html``,
tutorials executed) is a separate CI step; these tests are the fast part.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(DOCS / "_ext"))

import api_pages  # noqa: E402
import check_api  # noqa: E402

# Public names that still lack an ``Example`` section in their docstring (owned by the
# package code, reported to its authors). The list may only shrink: a new public name
# without an example fails ``test_public_names_have_examples``.
KNOWN_WITHOUT_EXAMPLE: set[str] = set()

# Docstring examples known to fail when run as doctests (same rule: may only shrink).
KNOWN_FAILING_EXAMPLES: set[str] = set()


def test_public_modules_include_the_core():
    mods = api_pages.public_modules()
    for m in (
        "snntorch_egru",
        "snntorch_egru.functional",
        "snntorch_egru.surrogate",
        "snntorch_egru.utils",
        "snntorch_egru.convert",
        "snntorch_egru.backends",
        "snntorch_egru.state",
    ):
        assert m in mods
    assert not any(part.startswith("_") for m in mods for part in m.split(".")[1:])
    assert "snntorch_egru.cli" not in mods


def test_every_public_name_is_in_the_api_reference():
    for modname in api_pages.public_modules():
        page = api_pages._page(modname)
        mod = importlib.import_module(modname)
        for name in api_pages.public_names(modname):
            obj = getattr(mod, name)
            assert f"   {name}\n" in page, f"{modname}.{name} missing from the autosummary table"
            assert f":: {modname}.{name}\n" in page, f"{modname}.{name} has no autodoc entry"
            kind = "autoclass" if inspect.isclass(obj) else "autofunction" if callable(obj) else "autodata"
            assert f".. {kind}:: {modname}.{name}\n" in page


def test_page_generation_reflects_module_contents():
    # a name added to __all__ appears, private helpers do not
    page = api_pages._page("snntorch_egru.functional")
    assert ".. autofunction:: snntorch_egru.functional.egru_step\n" in page
    assert ".. autodata:: snntorch_egru.functional.TRACE_DECAY\n" in page
    assert "_checks" not in page
    # submodules listed in the package root's __all__ get their own pages, not entries
    root = api_pages._page("snntorch_egru")
    assert ".. autoclass:: snntorch_egru.EGRU\n" in root
    assert "snntorch_egru.functional\n" not in root


def test_public_names_have_docstrings():
    no_doc, _ = check_api.missing_docs()
    assert no_doc == [], f"public names without a docstring: {no_doc}"


def test_public_names_have_examples():
    _, no_example = check_api.missing_docs()
    new = sorted(set(no_example) - KNOWN_WITHOUT_EXAMPLE)
    assert new == [], f"public names without an 'Example::' section in their docstring: {new}"


def test_docstring_examples_run():
    failures = check_api.run_examples()
    new = sorted(f for f in failures if f.split(":")[0] not in KNOWN_FAILING_EXAMPLES)
    assert new == [], f"docstring examples that fail when run: {new}"


def test_example_check_detects_offenders(monkeypatch):
    # the checker itself must flag a public function without an example, and a failing example
    import types

    fake = types.ModuleType("snntorch_egru._fake_docs_probe")

    def no_example(x: int) -> int:
        """Double x."""
        return 2 * x

    def broken(x: int) -> int:
        """Double x.

        Example::

            >>> broken(2)
            5
        """
        return 2 * x

    no_example.__module__ = broken.__module__ = fake.__name__
    fake.no_example, fake.broken, fake.__all__ = no_example, broken, ["no_example", "broken"]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(check_api, "public_modules", lambda: [fake.__name__])
    no_doc, no_ex = check_api.missing_docs()
    assert no_doc == [] and no_ex == [f"{fake.__name__}.no_example"]
    assert check_api.run_examples() == [f"{fake.__name__}.broken: 1 of 1 example lines failed"]


def test_every_tutorial_is_registered():
    tutorials = sorted(p.stem for p in (ROOT / "tutorials").glob("*.md"))
    assert tutorials, "no tutorials found"
    assert set(tutorials) <= set(api_pages.TUTORIAL_REQUIRES), (
        f"tutorials not listed in docs/_ext/api_pages.py TUTORIAL_REQUIRES: {set(tutorials) - set(api_pages.TUTORIAL_REQUIRES)}"
    )
    for stem in tutorials:
        text = (ROOT / "tutorials" / f"{stem}.md").read_text()
        assert "kernelspec:" in text and "```{code-cell}" in text, f"{stem} is not an executable MyST notebook"


def test_docs_tree_links_tutorials():
    assert (DOCS / "tutorials").resolve() == (ROOT / "tutorials").resolve()
    conf = (DOCS / "conf.py").read_text()
    assert '"myst_nb"' in conf and "furo" in conf
