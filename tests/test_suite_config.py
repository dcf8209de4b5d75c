"""The test suite's own configuration: the ``slow`` list names tests that exist."""

from __future__ import annotations

from pathlib import Path

from conftest import SLOW_TESTS

ROOT = Path(__file__).resolve().parent.parent


def test_every_slow_entry_names_an_existing_test():
    missing = []
    for entry in sorted(SLOW_TESTS):
        path, _, name = entry.partition("::")
        file = ROOT / path
        if not file.is_file() or (name and f"def {name}(" not in file.read_text()):
            missing.append(entry)
    assert missing == [], f"tests/conftest.py SLOW_TESTS names tests that do not exist (renamed?): {missing}"
