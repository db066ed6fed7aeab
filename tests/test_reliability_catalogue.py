"""docs/RELIABILITY.md names real tests: every row's tests exist, so the catalogue cannot drift."""

from __future__ import annotations

import re

from tests.conftest import REPO

# A numbered row; its last cell names one or more tests (`tests/path.py::name`, comma-separated)
# or says **not yet**.
ROW = re.compile(r"^\| (\d+) \|.*\| ([^|]*) \|$", re.MULTILINE)
TEST = re.compile(r"`(tests/[^`]+)::(\w+)`")


def rows() -> list[tuple[str, list[tuple[str, str]]]]:
    text = (REPO / "docs" / "RELIABILITY.md").read_text()
    found = []
    for match in ROW.finditer(text):
        cell = match.group(2)
        tests = TEST.findall(cell)
        assert tests or cell == "**not yet**", f"row {match.group(1)}: {cell!r}"
        found.append((match.group(1), tests))
    return found


def test_every_named_test_exists():
    missing = []
    for number, tests in rows():
        for path, name in tests:
            source = (REPO / path).read_text() if (REPO / path).exists() else ""
            if not re.search(rf"^def {name}\(", source, re.MULTILINE):
                missing.append(f"row {number}: {path}::{name}")
    assert not missing, missing


def test_rows_are_numbered_once_and_most_are_covered():
    found = rows()
    numbers = [int(n) for n, _ in found]
    text = (REPO / "docs" / "RELIABILITY.md").read_text()
    assert len(numbers) == len(re.findall(r"^\| \d+ \|", text, re.MULTILINE))  # none unparsed
    assert numbers == list(range(1, len(numbers) + 1))
    assert sum(bool(tests) for _, tests in found) >= 45
