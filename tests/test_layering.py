"""The house's layers: the app shell above the node and the review page, both above the library.

- ``pipeline`` (analysis library) imports none of ``dicom_node``, ``qa_review``, ``mskus``;
- ``dicom_node`` (storage node) imports neither the shell ``mskus`` nor the review page;
- ``qa_review`` (review page) never imports the shell; it may read the node's index and archive
  (``dicom_node.index``, ``dicom_node.storage``) to review what the node stored.

Checked on the source text (every ``import`` and ``from ... import``, also inside functions), so a
lazy import cannot slip a door back into a wall.
"""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

FORBIDDEN = {
    "pipeline": {"dicom_node", "qa_review", "mskus"},
    "dicom_node": {"mskus", "qa_review"},
    "qa_review": {"mskus"},
}


def imported_packages(path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_only_downwards(package):
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        for name, line in imported_packages(path):
            if name in FORBIDDEN[package]:
                offenders.append(f"{path.relative_to(REPO)}:{line} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_the_command_lives_in_the_shell():
    text = (REPO / "pyproject.toml").read_text()
    assert 'mskus = "mskus.cli:main"' in text
    assert (REPO / "mskus" / "cli.py").is_file() and not (REPO / "pipeline" / "cli.py").exists()
    assert not (REPO / "pipeline" / "commands").exists()
