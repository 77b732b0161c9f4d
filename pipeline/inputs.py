"""Expand command-line paths into the DICOM files to analyse."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["DICOM_SUFFIXES", "iter_input_files"]

#: In folders, files with these suffixes (or none) are taken as DICOM candidates.
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic", ""})


def iter_input_files(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """Yield files in the order given; folders are walked recursively, sorted.

    Files named explicitly are always yielded (a non-DICOM file then gets its
    own error). Inside folders only files whose suffix is in
    :data:`DICOM_SUFFIXES` are yielded, hidden files skipped, and symbolic
    links to folders are not followed (no loops).
    """
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    candidate = Path(root) / name
                    if name.startswith(".") or candidate.suffix.lower() not in DICOM_SUFFIXES:
                        continue
                    yield candidate
        else:
            yield path
