"""Review the storage node's data folder (``mskus serve --data-dir``).

Read: the SQLite index (studies, results, outbox), the automated SR of each
study (the latest ``sr`` result), the received images in ``inbox/`` (overlays
are drawn from them and the SR coordinates; the node keeps no PNGs) and the
verified SRs in ``archive/<study>/``.

Written, like any node result: the verified SR durably into the archive
(:meth:`DurableStore.store_result`), recorded as result kind ``verified_sr``
and queued for the destinations in the same transaction
(:meth:`NodeIndex.add_result`), so the node's sender delivers it; every
action goes to the node's audit table.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path

from pydicom.dataset import Dataset

from dicom_node.index import NodeIndex, OutboxItem, OutboxState, StudyRow, StudyState
from dicom_node.storage import DurableStore
from pipeline.filenames import uid_file_name
from qa_review.history import EarlierRun, StudyView, predecessor_uids
from qa_review.model import FrameInfo, StudyDetail, StudyStatus, StudySummary
from qa_review.render import RenderError, render_overlay_png
from qa_review.reportcache import ReportCache
from qa_review.source import VIEW_EVENT, Published, audit_text, parse_audit_text
from qa_review.sourceinfo import source_frame_info
from qa_review.studyview import frame_views, study_summary, verified_report

__all__ = ["INDEX_FILE", "VERIFIED_KIND", "ArchiveSource"]

logger = logging.getLogger(__name__)

INDEX_FILE = "index.sqlite3"
#: Result kind of a verified SR in the node index (automated SRs are ``sr``).
VERIFIED_KIND = "verified_sr"


def _delivery(items: Sequence[OutboxItem]) -> str:
    if not items:
        return "archived (no destination)"
    parts = []
    for item in items:
        if item.state is OutboxState.SENT:
            parts.append(f"sent to {item.destination}")
        elif item.state is OutboxState.DEAD:
            parts.append(f"not delivered to {item.destination}: {item.last_error}")
        else:
            parts.append(f"queued for {item.destination}" + (f" (last error: {item.last_error})" if item.last_error else ""))
    return "; ".join(parts)


class ArchiveSource:
    """A node data folder as a :class:`~qa_review.source.ReviewSource`.

    Parameters
    ----------
    data_dir : Path
        The node's data folder (``index.sqlite3``, ``inbox/``, ``archive/``).
    destinations : sequence of str, optional
        Destination labels (``AET@HOST:PORT``) a verified SR is queued for.
        Default: the destinations the automated SR was queued for, which are
        the node's configured ones.
    """

    def __init__(self, data_dir: str | Path, *, destinations: Sequence[str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.label = f"node archive {self.data_dir}"
        self.index = NodeIndex(self.data_dir / INDEX_FILE)
        self.store = DurableStore(self.data_dir)
        self.destinations = tuple(destinations) if destinations is not None else None
        self._cache = ReportCache()

    # -- reading ---------------------------------------------------------------
    def _row(self, study_uid: str) -> StudyRow | None:
        return next((s for s in self.index.studies() if s.study_uid == study_uid), None)

    def _verified(self, study_uid: str, automated_uid: str) -> list[tuple[Path, Dataset]]:
        folder = self.store.archive / uid_file_name(study_uid)
        out = []
        for path in sorted(folder.glob("*.dcm")) if folder.is_dir() else []:
            ds = self._cache.header(path)
            if ds is None or str(ds.get("VerificationFlag", "")).upper() != "VERIFIED":
                continue
            if automated_uid in verified_report(ds, str(path)).predecessors:
                out.append((path, ds))
        return out

    def _status(self, row: StudyRow, automated_uid: str, verified: list, outbox: list[OutboxItem]) -> StudyStatus:
        if row.state in (StudyState.PENDING, StudyState.PROCESSING) or (not automated_uid and row.state is not StudyState.FAILED):
            return StudyStatus.PENDING
        if row.state is StudyState.FAILED and not automated_uid:
            return StudyStatus.FAILED
        if verified:
            return StudyStatus.VERIFIED
        mine = [o for o in outbox if o.result_uid == automated_uid]
        if row.state is StudyState.FAILED or any(o.state is OutboxState.DEAD for o in mine):
            return StudyStatus.FAILED
        if mine and all(o.state is OutboxState.SENT for o in mine):
            return StudyStatus.SENT
        return StudyStatus.PROCESSED

    def _summary(self, row: StudyRow, outbox: list[OutboxItem]) -> tuple[StudySummary, Path | None, list]:
        path_text = self.index.latest_result_path(row.study_uid, "sr")
        path = Path(path_text) if path_text else None
        reviewable = self._cache.reviewable(path) if path is not None else None
        automated_uid = str(reviewable.dataset.SOPInstanceUID) if reviewable is not None else ""
        verified = self._verified(row.study_uid, automated_uid) if automated_uid else []
        status = self._status(row, automated_uid, verified, outbox)
        header = None
        if reviewable is None:
            instances = self.index.study_instances(row.study_uid)
            header = self._cache.header(instances[0].path) if instances else None
        summary = study_summary(row.study_uid, status, reviewable, detail=row.last_error, header=header)
        return summary, path, verified

    def studies(self) -> list[StudySummary]:
        outbox = self.index.outbox()
        return [self._summary(row, outbox)[0] for row in self.index.studies()]

    def _frame_info(self, sop_instance_uid: str, frame: int) -> FrameInfo:
        instance = self.index.instance(sop_instance_uid)
        info = source_frame_info(instance.path, frame) if instance is not None else None
        if info is None:
            return FrameInfo()
        assert instance is not None  # info is None without an instance
        return FrameInfo(
            source_file=Path(instance.path).name,
            series_description=info.series_description,
            laterality=info.laterality,
            mm_per_px=info.mm_per_px,
            calibration=info.calibration,
            flags=info.flags,
        )

    def study(self, study_uid: str) -> StudyDetail | None:
        row = self._row(study_uid)
        if row is None:
            return None
        outbox = self.index.outbox()
        summary, path, verified = self._summary(row, outbox)
        reviewable = self._cache.reviewable(path) if path is not None else None
        errors = (row.last_error,) if row.last_error else ()
        if reviewable is None:
            return StudyDetail(summary, "", "", "", (), errors=errors)
        automated_uid = str(reviewable.dataset.SOPInstanceUID)
        sent = [o for o in outbox if o.result_uid == automated_uid]
        return StudyDetail(
            summary=summary,
            automated_sr_uid=automated_uid,
            automated_sr_path=str(path),
            completion_flag=str(reviewable.dataset.get("CompletionFlag", "")),
            frames=frame_views(reviewable, self._frame_info),
            notes=tuple(n.value for n in reviewable.report.notes) + (f"automated SR: {_delivery(sent)}",),
            errors=errors,
            verified=tuple(
                verified_report(ds, p.name, _delivery([o for o in outbox if o.result_uid == str(ds.SOPInstanceUID)]))
                for p, ds in verified
            ),
        )

    def automated(self, study_uid: str) -> Dataset | None:
        path = self.index.latest_result_path(study_uid, "sr")
        return self._cache.header(path) if path else None

    def verified_of(self, study_uid: str, automated_uid: str) -> list[Dataset]:
        return [ds for _, ds in self._verified(study_uid, automated_uid)]

    def image_path(self, study_uid: str, sop_instance_uid: str) -> str | None:
        """The received image file of an instance of the study (``None`` when not found)."""
        instance = self.index.instance(sop_instance_uid)
        return instance.path if instance is not None and instance.study_uid == study_uid else None

    def frame_png(self, study_uid: str, sop_instance_uid: str, frame_number: int) -> bytes | None:
        detail = self.study(study_uid)
        if detail is None:
            return None
        view = detail.frame(sop_instance_uid, frame_number)
        instance = self.index.instance(sop_instance_uid)
        if view is None or instance is None or instance.study_uid != study_uid:
            return None
        try:
            return render_overlay_png(instance.path, frame_number, view.overlays)
        except RenderError as exc:
            logger.warning("%s", exc)
            return None

    def _sr_results(self, study_uid: str) -> list[tuple[str, str, int, float]]:
        """(SOP Instance UID, path, run, archived at) of every automated SR the index holds for the study."""
        uri = f"{(self.data_dir / INDEX_FILE).resolve().as_uri()}?mode=ro"
        with sqlite3.connect(uri, uri=True, timeout=5.0) as db:  # read only: the node owns the index
            rows = db.execute(
                "SELECT sop_instance_uid, path, run, created_at FROM results WHERE study_uid=? AND kind='sr' "
                "ORDER BY run, created_at",
                (study_uid,),
            ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2]), float(r[3])) for r in rows]

    def earlier_runs(self, study_uid: str, automated: Dataset) -> list[EarlierRun]:
        """The index's older ``sr`` results of the study (and predecessors it no longer holds), oldest first."""
        current = str(automated.SOPInstanceUID)
        try:
            results = self._sr_results(study_uid)
        except sqlite3.Error as exc:
            logger.warning("earlier runs of %s not read: %s", study_uid, exc)
            results = []
        runs = [
            EarlierRun(
                uid,
                dt.datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M"),
                Path(path).name,
                f"run {run}, superseded",
            )
            for uid, path, run, at in results
            if uid != current
        ]
        known = {r.sop_instance_uid for r in runs}
        runs.extend(
            EarlierRun(uid, note="named as predecessor by the current run (not in this archive)")
            for uid in predecessor_uids(automated)
            if uid not in known and uid != current
        )
        return runs

    def views(self, study_uid: str) -> list[StudyView]:
        """Openings of the study page in the node's audit table."""
        out = []
        for at, event, detail in self.index.audit_trail():
            if event != VIEW_EVENT:
                continue
            fields = parse_audit_text(detail)
            if fields.get("study") == study_uid:
                when = dt.datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
                out.append(StudyView(fields.get("login", ""), when, fields.get("address", "")))
        return out

    # -- writing ---------------------------------------------------------------
    def _destinations_for(self, automated_uid: str) -> tuple[str, ...]:
        if self.destinations is not None:
            return self.destinations
        return tuple(dict.fromkeys(o.destination for o in self.index.outbox() if o.result_uid == automated_uid))

    def publish(self, study_uid: str, document: Dataset, automated_uid: str) -> Published:
        buffer = io.BytesIO()
        document.save_as(buffer, enforce_file_format=True)
        sop_uid = str(document.SOPInstanceUID)
        path = self.store.store_result(study_uid, sop_uid, buffer.getvalue())
        row = self._row(study_uid)
        destinations = self._destinations_for(automated_uid)
        self.index.add_result(sop_uid, study_uid, VERIFIED_KIND, str(path), row.runs if row else 0, list(destinations))
        logger.info("verified SR %s for study %s archived at %s, queued for %s", sop_uid, study_uid, path, destinations)
        return Published(sop_uid, str(path), destinations)

    def audit(self, event: str, fields: Mapping[str, object]) -> None:
        self.index.audit(event, audit_text(fields))
