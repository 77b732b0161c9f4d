"""A study's report versions and what happened to them: the history the study page shows.

The versions of a study's current automated SR form a chain: the automated
SR, then each verified SR in the order it was signed (every sign-off starts
from the latest one, so the chain never forks). The *current version* is
the last of them; a sign-off form names the version it was made on, and a
form whose version is no longer current is refused (409) with a sentence
saying who signed since and when (:func:`stale_message`).

Each entry lists what its sign-off decided that the version before did not
say: the findings rejected (and why) and corrected (and the values replaced),
read from the TEXT items under Qualitative Evaluations.

The page adds what lies outside the chain: the earlier automated runs of the
study that the current one superseded (:class:`EarlierRun`: in an OUT_DIR the
current SR's Predecessor Documents and any other automated SR file of the
study; on a node archive the index's older ``sr`` results) and who opened the
study page when (:class:`StudyView`, from the audit trail).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from pipeline.sr.reader import read_measurement_report
from qa_review.codes import CORRECTED_BY_PREFIX

__all__ = ["EarlierRun", "HistoryEntry", "StudyHistory", "StudyView", "predecessor_uids", "stale_message", "study_history"]


@dataclass(frozen=True)
class EarlierRun:
    """An automated SR of the study that a later run superseded.

    Attributes
    ----------
    sop_instance_uid : str
        The superseded SR.
    when : str
        ``YYYY-MM-DD HH:MM`` (its content date/time, or when the node archived it); empty when unknown.
    where : str
        Its file name; empty when the file is not kept here.
    note : str
        How it is known (``run 2``, ``named as predecessor by the current run``).
    """

    sop_instance_uid: str
    when: str = ""
    where: str = ""
    note: str = ""


@dataclass(frozen=True)
class StudyView:
    """One opening of the study page, from the audit trail.

    Attributes
    ----------
    who : str
        The login (or the loopback-only note when there is none).
    when : str
        ``YYYY-MM-DD HH:MM:SS``.
    address : str
        The client address.
    """

    who: str
    when: str
    address: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    """One version of the report.

    Attributes
    ----------
    sop_instance_uid : str
        The SR document.
    kind : str
        ``"automated"`` or ``"verified"``.
    when : str
        ``YYYY-MM-DD HH:MM`` (content date/time of an automated run, the
        verification date/time of a sign-off).
    who : str
        The reviewer (``Family^Given``) or the device that made the run.
    organisation : str
        The reviewer's organisation.
    rejected, corrected, comments : tuple of str
        What this sign-off added (empty for an automated run).
    superseded : tuple of str
        For the automated run: the earlier automated runs it replaced.
    """

    sop_instance_uid: str
    kind: str
    when: str
    who: str
    organisation: str = ""
    rejected: tuple[str, ...] = ()
    corrected: tuple[str, ...] = ()
    comments: tuple[str, ...] = ()
    superseded: tuple[str, ...] = ()
    sort_key: tuple[str, int] = field(default=("", 0), compare=False, repr=False)

    @property
    def who_text(self) -> str:
        """The name as people write it (``Given Family``)."""
        parts = [p for p in self.who.split("^") if p]
        return " ".join([*parts[1:2], *parts[:1], *parts[2:]]) if len(parts) > 1 else self.who


@dataclass(frozen=True)
class StudyHistory:
    """The chain of versions of one automated SR, oldest first.

    Attributes
    ----------
    entries : tuple of HistoryEntry
        The automated SR first, then each verified SR as signed.
    current : Dataset
        The latest version (the document a new sign-off starts from).
    verified : tuple of Dataset
        The verified SRs, in the order of ``entries[1:]``.
    earlier_runs : tuple of EarlierRun
        Automated runs of the study before the current one, oldest first.
    views : tuple of StudyView
        Openings of the study page, oldest first.
    """

    entries: tuple[HistoryEntry, ...]
    current: Dataset = field(compare=False, repr=False)
    verified: tuple[Dataset, ...] = field(default=(), compare=False, repr=False)
    earlier_runs: tuple[EarlierRun, ...] = ()
    views: tuple[StudyView, ...] = ()

    @property
    def current_uid(self) -> str:
        return str(self.current.SOPInstanceUID)

    @property
    def automated_uid(self) -> str:
        return self.entries[0].sop_instance_uid

    @property
    def corrected(self) -> bool:
        """Whether any sign-off of this automated SR corrected a finding."""
        return any(e.corrected for e in self.entries)

    def since(self, version_uid: str) -> tuple[HistoryEntry, ...]:
        """The entries after ``version_uid`` (all verified ones when it is unknown)."""
        uids = [e.sop_instance_uid for e in self.entries]
        start = uids.index(version_uid) + 1 if version_uid in uids else 1
        return self.entries[start:]


def _when(date_time: str) -> str:
    d = date_time
    return f"{d[:4]}-{d[4:6]}-{d[6:8]} {d[8:10]}:{d[10:12]}" if len(d) >= 12 and d[:12].isdigit() else d


def _verification_key(ds: Dataset) -> tuple[str, int]:
    observer = (ds.get("VerifyingObserverSequence") or [Dataset()])[0]
    text = str(observer.get("VerificationDateTime", "") or "")
    try:
        moment = dt.datetime.strptime(text[:19], "%Y%m%d%H%M%S%z") if "+" in text or "-" in text[8:] else None
    except ValueError:
        moment = None
    stamp = moment.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S") if moment else text[:14]
    return stamp, int(ds.get("InstanceNumber", 0) or 0)


def _notes(ds: Dataset) -> list[str]:
    try:
        return [n.value for n in read_measurement_report(ds).notes]
    except Exception:  # noqa: BLE001 - an unreadable report has no notes to show
        return []


def predecessor_uids(ds: Dataset) -> tuple[str, ...]:
    """The SOP Instance UIDs of a document's Predecessor Documents Sequence."""
    return _predecessor_uids(ds)


def _predecessor_uids(ds: Dataset) -> tuple[str, ...]:
    return tuple(
        str(sop.ReferencedSOPInstanceUID)
        for study in ds.get("PredecessorDocumentsSequence") or []
        for series in study.get("ReferencedSeriesSequence") or []
        for sop in series.get("ReferencedSOPSequence") or []
    )


def study_history(automated: Dataset, verified: Sequence[Dataset]) -> StudyHistory:
    """The versions of ``automated`` and its verified SRs (any order), oldest first."""
    content = f"{automated.get('ContentDate', '')}{automated.get('ContentTime', '')}"
    device = str(automated.get("Manufacturer", "") or "mskus")
    entries = [
        HistoryEntry(
            sop_instance_uid=str(automated.SOPInstanceUID),
            kind="automated",
            when=_when(content),
            who=f"{device} (automated analysis)",
            superseded=_predecessor_uids(automated),
        )
    ]
    ordered = sorted(verified, key=_verification_key)
    previous = set(_notes(automated))
    for ds in ordered:
        notes = _notes(ds)
        new = [n for n in notes if n not in previous]
        previous = set(notes)
        observer = (ds.get("VerifyingObserverSequence") or [Dataset()])[0]
        entries.append(
            HistoryEntry(
                sop_instance_uid=str(ds.SOPInstanceUID),
                kind="verified",
                when=_when(str(observer.get("VerificationDateTime", "") or "")),
                who=str(observer.get("VerifyingObserverName", "") or ""),
                organisation=str(observer.get("VerifyingOrganization", "") or ""),
                rejected=tuple(n for n in new if n.startswith("rejected")),
                corrected=tuple(n for n in new if n.startswith(CORRECTED_BY_PREFIX)),
                comments=tuple(n for n in new if not n.startswith(("rejected", CORRECTED_BY_PREFIX))),
                sort_key=_verification_key(ds),
            )
        )
    return StudyHistory(entries=tuple(entries), current=ordered[-1] if ordered else automated, verified=tuple(ordered))


def stale_message(history: StudyHistory, version_uid: str) -> str:
    """Why a form made on ``version_uid`` is refused: who signed since, and when."""
    since = [e for e in history.since(version_uid) if e.kind == "verified"]
    if not since:
        return "this form was made on a version of the report that is no longer current: reload the study page"
    signed = "; ".join(f"{e.who_text} ({e.organisation}) signed it off at {e.when}" if e.organisation
                       else f"{e.who_text} signed it off at {e.when}" for e in since)
    return (
        f"this study was signed off since you opened it: {signed}. Nothing was saved from your form; "
        "reload the study page to review the current version (their decisions are in the history)"
    )
