"""What the web app needs from the place results live (node archive or OUT_DIR)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydicom.dataset import Dataset

from qa_review.history import EarlierRun, StudyView
from qa_review.model import StudyDetail, StudySummary

__all__ = ["VIEW_EVENT", "Published", "ReviewSource", "audit_text", "parse_audit_text"]

#: The audit event of one opening of a study page.
VIEW_EVENT = "review_opened"
_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


@dataclass(frozen=True)
class Published:
    """Where a verified SR went.

    Attributes
    ----------
    sop_instance_uid : str
        The verified SR.
    path : str
        The file written.
    destinations : tuple of str
        DICOM destinations it is queued for (node archive; empty for an OUT_DIR).
    """

    sop_instance_uid: str
    path: str
    destinations: tuple[str, ...] = ()


class ReviewSource(Protocol):
    """A node archive or an OUT_DIR, as the review pages see it."""

    #: Shown in the page header ("node archive /data/mskus", "output folder out/").
    label: str

    def studies(self) -> list[StudySummary]:
        """Every study, with its status."""

    def study(self, study_uid: str) -> StudyDetail | None:
        """One study's page model; ``None`` when the study is unknown."""

    def automated(self, study_uid: str) -> Dataset | None:
        """The study's current automated SR (the full document)."""

    def verified_of(self, study_uid: str, automated_uid: str) -> list[Dataset]:
        """Verified SRs already written for that automated SR."""

    def frame_png(self, study_uid: str, sop_instance_uid: str, frame_number: int) -> bytes | None:
        """The overlay of one analysed frame of the study; ``None`` when it is not one."""

    def image_path(self, study_uid: str, sop_instance_uid: str) -> str | None:
        """The source image file of an instance of the study (``None`` when not known)."""

    def publish(self, study_uid: str, document: Dataset, automated_uid: str) -> Published:
        """Store a verified SR of ``automated_uid`` and send it wherever results go."""

    def audit(self, event: str, fields: Mapping[str, object]) -> None:
        """Append to the audit trail."""

    def earlier_runs(self, study_uid: str, automated: Dataset) -> list[EarlierRun]:
        """Automated SRs of the study that ``automated`` (the current one) superseded, oldest first."""

    def views(self, study_uid: str) -> list[StudyView]:
        """Every opening of the study's page in the audit trail (:data:`VIEW_EVENT`), oldest first."""


def audit_text(fields: Mapping[str, object]) -> str:
    """``key=value`` pairs; values with spaces or quotes are double-quoted (JSON style)."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c.isspace() or c in "\"'=" for c in text):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)


def parse_audit_text(text: str) -> dict[str, str]:
    """The fields of :func:`audit_text` (double-quoted values decoded)."""
    out: dict[str, str] = {}
    for key, value in _PAIR.findall(text):
        if value.startswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value.strip('"')
        out[key] = value
    return out
