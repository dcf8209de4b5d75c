"""Check that every public class and function of snntorch_egru is documented with an example.

Walks the same public modules that the API reference documents (see
``docs/_ext/api_pages.py``), takes each module's ``__all__`` and reports every
class or function whose docstring is missing or has no ``Example`` section.
With ``--doctest`` it also runs the examples (``>>>`` lines) as doctests.

Usage::

    python docs/check_api.py             # list offenders, exit 1 if any
    python docs/check_api.py --doctest   # also run every example
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import inspect
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

from api_pages import public_modules, public_names  # noqa: E402


def public_objects():
    """Yield ``(qualified name, object)`` for every public class and function."""
    for modname in public_modules():
        mod = importlib.import_module(modname)
        for name in public_names(modname):
            obj = getattr(mod, name, None)
            if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.isbuiltin(obj):
                yield f"{modname}.{name}", obj


def missing_docs() -> tuple[list[str], list[str]]:
    """Names without a docstring, and names whose docstring has no ``Example`` section."""
    no_doc, no_example = [], []
    for qual, obj in public_objects():
        doc = obj.__doc__ or ""
        if not doc.strip():
            no_doc.append(qual)
        elif "Example" not in doc:
            no_example.append(qual)
    return no_doc, no_example


def run_examples(verbose: bool = False) -> list[str]:
    """Run every public docstring's ``>>>`` examples; return ``"name: summary"`` for each failure."""
    failures = []
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    seen = set()
    targets = [(m, importlib.import_module(m)) for m in public_modules()] + list(public_objects())
    for qual, obj in targets:
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        mod = obj if inspect.ismodule(obj) else inspect.getmodule(obj)
        for test in finder.find(obj, qual, module=mod, globs=dict(vars(mod)) if mod else {}):
            if not test.examples:
                continue
            result = runner.run(test, out=(None if verbose else lambda s: None))
            if result.failed:
                failures.append(f"{qual}: {result.failed} of {result.attempted} example lines failed")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--doctest", action="store_true", help="also run the examples")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    no_doc, no_example = missing_docs()
    bad = False
    for title, names in (("no docstring", no_doc), ("no Example section", no_example)):
        if names:
            bad = True
            print(f"{title} ({len(names)}):")
            for n in names:
                print(f"  {n}")
    if args.doctest:
        failures = run_examples(args.verbose)
        if failures:
            bad = True
            print(f"examples that fail ({len(failures)}):")
            for f in failures:
                print(f"  {f}")
    if not bad:
        print("every public class and function has a docstring with an example")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
