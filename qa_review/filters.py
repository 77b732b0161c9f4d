"""The study list's filters: study date range, protocol, status and review state."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qa_review.forms import FormError
from qa_review.model import ReviewState, StudyStatus, StudySummary

__all__ = ["PROTOCOLS", "StudyFilter", "parse_filter"]

PROTOCOLS = ("nerve", "muscle")


@dataclass(frozen=True)
class StudyFilter:
    """What the list shows: every field empty means no restriction.

    Attributes
    ----------
    date_from, date_to : str
        Study Date range, ``YYYY-MM-DD`` (inclusive).
    protocol : str
        ``nerve`` or ``muscle``.
    status : str
        A :class:`~qa_review.model.StudyStatus` value.
    review : str
        A :class:`~qa_review.model.ReviewState` value (automated, verified, corrected).
    """

    date_from: str = ""
    date_to: str = ""
    protocol: str = ""
    status: str = ""
    review: str = ""

    @property
    def active(self) -> bool:
        return any((self.date_from, self.date_to, self.protocol, self.status, self.review))

    def matches(self, study: StudySummary) -> bool:
        if self.status and study.status.value != self.status:
            return False
        if self.review and study.review.value != self.review:
            return False
        if self.protocol and self.protocol not in study.protocols:
            return False
        day = study.study_date_iso
        if self.date_from and (not day or day < self.date_from):
            return False
        if self.date_to and (not day or day > self.date_to):
            return False
        return True

    def apply(self, studies: Iterable[StudySummary]) -> list[StudySummary]:
        return [s for s in studies if self.matches(s)]


def _date(value: str, label: str) -> str:
    if not value:
        return ""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise FormError(400, f"{label} must be a date like 2024-05-31, not {value[:20]!r}") from None


def parse_filter(args: Mapping[str, str]) -> StudyFilter:
    """The filter from the list page's query string.

    Raises
    ------
    FormError
        (400) A malformed date, an unknown protocol or status.
    """
    protocol = (args.get("protocol") or "").strip()
    status = (args.get("status") or "").strip()
    if protocol and protocol not in PROTOCOLS:
        raise FormError(400, f"unknown protocol {protocol[:20]!r} (use {' or '.join(PROTOCOLS)})")
    if status and status not in {s.value for s in StudyStatus}:
        raise FormError(400, f"unknown status {status[:20]!r}")
    review = (args.get("review") or "").strip()
    if review and review not in {s.value for s in ReviewState}:
        raise FormError(400, f"unknown review state {review[:20]!r} (use automated, verified or corrected)")
    return StudyFilter(
        date_from=_date((args.get("date_from") or "").strip(), "'from' date"),
        date_to=_date((args.get("date_to") or "").strip(), "'to' date"),
        protocol=protocol,
        status=status,
        review=review,
    )
