"""SR documents read once and kept while their file does not change."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from pipeline.errors import MskusInputError
from pipeline.sr.sources import SR_SOP_CLASSES
from qa_review.items import ReviewableReport, UnreviewableReportError, reviewable_report

__all__ = ["ReportCache"]

logger = logging.getLogger(__name__)


class ReportCache:
    """Parsed SR files keyed by path, re-read when size or mtime change.

    Parameters
    ----------
    max_entries : int
        Entries kept (oldest dropped first).
    """

    def __init__(self, max_entries: int = 2048) -> None:
        self._max = max_entries
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[tuple[int, int], Dataset | None, ReviewableReport | None]] = {}

    def _load(self, path: Path) -> tuple[Dataset | None, ReviewableReport | None]:
        try:
            st = os.stat(path)
        except OSError:
            return None, None
        stamp = (st.st_mtime_ns, st.st_size)
        key = str(path)
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1], hit[2]
        dataset: Dataset | None = None
        reviewable: ReviewableReport | None = None
        try:
            dataset = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - not DICOM: not a report
            logger.debug("%s: not readable as DICOM: %s", path, exc)
        if dataset is not None and str(dataset.get("SOPClassUID", "")) in SR_SOP_CLASSES:
            try:
                reviewable = reviewable_report(dataset)
            except (MskusInputError, UnreviewableReportError) as exc:
                logger.warning("%s: SR not reviewable: %s", path, exc)
        else:
            dataset = None
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = (stamp, dataset, reviewable)
        return dataset, reviewable

    def header(self, path: str | Path) -> Dataset | None:
        """The SR dataset at ``path`` (``None`` when it is not a readable SR)."""
        return self._load(Path(path))[0]

    def reviewable(self, path: str | Path) -> ReviewableReport | None:
        """The SR at ``path`` read for review (``None`` when not a reviewable SR)."""
        return self._load(Path(path))[1]
