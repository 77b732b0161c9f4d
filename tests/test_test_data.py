"""The suite runs on a bare clone: tests read tests/data/, never the shared data folder (tests/data/README.md)."""

from __future__ import annotations

import re

from tests.conftest import REPO, TEST_DATA

# Tests still reading the shared data folder (none: every fixture is in tests/data/). Do not add to this set.
STILL_ON_SHARED: set[str] = set()


def test_tests_do_not_read_the_shared_folder():
    offenders = []
    for path in sorted((REPO / "tests").glob("*.py")):
        if path.name in STILL_ON_SHARED or path.name in ("conftest.py", "test_test_data.py"):
            continue
        text = path.read_text()
        if re.search(r"\bSHARED(_DATA)?\b|[\"']\.\./shared|/\s*[\"']shared[\"']", text):
            offenders.append(path.name)
    assert not offenders, f"tests reading the shared data folder (absent on a bare clone; copy the files to tests/data/): {offenders}"


def test_every_fixture_set_says_where_it_comes_from():
    sets = [p for p in sorted(TEST_DATA.iterdir()) if p.is_dir()]
    assert sets
    for folder in sets:
        source = folder / "SOURCE.md"
        assert source.is_file(), f"{folder.name}: SOURCE.md (origin, licence, citation) missing"
        text = source.read_text()
        assert "Licence" in text and "Cite" in text, f"{folder.name}/SOURCE.md must state the licence and the citation"
        licences = list(folder.glob("LICENSE*"))
        assert licences or "Licence: none stated" in text, f"{folder.name}: the set's licence file is missing"
