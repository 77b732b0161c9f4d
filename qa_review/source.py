"""What the web app needs from the place results live (node archive or OUT_DIR)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydicom.dataset import Dataset

from qa_review.model import StudyDetail, StudySummary

__all__ = ["Published", "ReviewSource", "audit_text"]


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


def audit_text(fields: Mapping[str, object]) -> str:
    """``key=value`` pairs; values with spaces or quotes are double-quoted (JSON style)."""
    parts = []
    for key, value in fields.items():
        text = str(value)
        if not text or any(c.isspace() or c in "\"'=" for c in text):
            text = json.dumps(text, ensure_ascii=False)
        parts.append(f"{key}={text}")
    return " ".join(parts)
