"""Review an output folder: ``mskus batch``, ``mskus analyze --out`` or a node's ``results/``.

Layout read (CONTRACT.md section 2, written by :mod:`pipeline.study.outputs`):

- ``SR_<study>.dcm``: the automated SR of each study (any top-level SR file
  with Verification Flag UNVERIFIED is accepted; ``SR_<study>.dcm`` wins);
- overlays: ``overlays/<study>/<sop>_frameNNNN.png``; when missing, the overlay is
  drawn from the source image (found from the tables' ``source_file``,
  relative to ``images_dir``, the OUT_DIR or the working directory);
- ``measurements.csv`` and ``errors.csv`` (:mod:`qa_review.sidecar`).

Written: ``verified/SR_<study>_verified_<n>.dcm`` (a sub-folder, so the
top level keeps one SR per study analysed, as CONTRACT.md section 2 says),
and ``audit.jsonl``.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from pipeline.atomic import create_durably
from pipeline.batch.overlays import overlay_rel_path
from pipeline.filenames import uid_file_name
from pipeline.sr.sop import report_file_name
from qa_review.audit import AUDIT_FILE, JsonlAudit
from qa_review.history import EarlierRun, StudyView, predecessor_uids
from qa_review.model import FrameInfo, StudyDetail, StudyStatus, StudySummary
from qa_review.render import RenderError, render_overlay_png
from qa_review.reportcache import ReportCache
from qa_review.sidecar import Sidecar, load_sidecar
from qa_review.source import VIEW_EVENT, Published
from qa_review.sourceinfo import source_frame_info
from qa_review.studyview import frame_views, merge_info, study_summary, verified_report

__all__ = ["VERIFIED_FOLDER", "OutDirSource", "verified_file_name"]

#: Sub-folder of OUT_DIR that holds the verified (signed-off) SRs.
VERIFIED_FOLDER = "verified"

logger = logging.getLogger(__name__)


def verified_file_name(study_uid: str, number: int) -> str:
    """File name of the ``number``-th verified SR of a study."""
    return f"SR_{uid_file_name(study_uid)}_verified_{number}.dcm"


@dataclass
class _StudyFiles:
    automated: list[Path] = field(default_factory=list)
    verified: list[Path] = field(default_factory=list)


@functools.lru_cache(maxsize=512)
def _header_info(path: str, frame: int, _stamp: tuple[int, int]) -> FrameInfo | None:
    return source_frame_info(path, frame)


class OutDirSource:
    """An OUT_DIR as a :class:`~qa_review.source.ReviewSource`.

    Parameters
    ----------
    out_dir : Path
        The folder ``mskus batch`` or ``mskus analyze --out`` wrote.
    images_dir : Path, optional
        Where relative ``source_file`` paths of the tables are found (the
        batch IN_DIR), for drawing overlays that were not written.
    """

    def __init__(self, out_dir: str | Path, *, images_dir: str | Path | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.images_dir = Path(images_dir) if images_dir else None
        self.label = f"output folder {self.out_dir}"
        self._cache = ReportCache()
        self._audit = JsonlAudit(self.out_dir / AUDIT_FILE)
        self._sidecar: tuple[tuple, Sidecar] | None = None
        self._write_lock = threading.Lock()

    # -- reading ---------------------------------------------------------------
    def _side(self) -> Sidecar:
        stamp = []
        for name in ("measurements.csv", "errors.csv"):
            try:
                st = os.stat(self.out_dir / name)
                stamp.append((name, st.st_mtime_ns, st.st_size))
            except OSError:
                pass
        key = tuple(stamp)
        if self._sidecar is None or self._sidecar[0] != key:
            self._sidecar = (key, load_sidecar(self.out_dir))
        return self._sidecar[1]

    def _files(self) -> dict[str, _StudyFiles]:
        studies: dict[str, _StudyFiles] = {}
        for path in sorted(self.out_dir.glob("*.dcm")) + sorted((self.out_dir / VERIFIED_FOLDER).glob("*.dcm")):
            ds = self._cache.header(path)
            if ds is None or not ds.get("StudyInstanceUID"):
                continue
            files = studies.setdefault(str(ds.StudyInstanceUID), _StudyFiles())
            if str(ds.get("VerificationFlag", "")).upper() == "VERIFIED":
                files.verified.append(path)
            else:
                files.automated.append(path)
        return studies

    def _automated_path(self, study_uid: str, files: _StudyFiles) -> Path | None:
        if not files.automated:
            return None
        preferred = self.out_dir / report_file_name(study_uid)
        if preferred in files.automated:
            return preferred

        def when(path: Path) -> str:
            ds = self._cache.header(path)
            return f"{ds.get('ContentDate', '')}{ds.get('ContentTime', '')}" if ds is not None else ""

        return max(files.automated, key=when)

    def _verified_for(self, files: _StudyFiles, automated_uid: str) -> list[tuple[Path, Dataset]]:
        out = []
        for path in files.verified:
            ds = self._cache.header(path)
            if ds is None:
                continue
            if automated_uid in verified_report(ds, str(path)).predecessors:
                out.append((path, ds))
        return out

    def _status(self, automated_uid: str, verified: list) -> StudyStatus:
        if not automated_uid:
            return StudyStatus.FAILED
        return StudyStatus.VERIFIED if verified else StudyStatus.PROCESSED

    def studies(self) -> list[StudySummary]:
        side = self._side()
        files = self._files()
        rows = []
        for study_uid in sorted(set(files) | set(side.study_errors)):
            study_files = files.get(study_uid, _StudyFiles())
            path = self._automated_path(study_uid, study_files)
            reviewable = self._cache.reviewable(path) if path is not None else None
            automated_uid = str(reviewable.dataset.SOPInstanceUID) if reviewable is not None else ""
            verified = self._verified_for(study_files, automated_uid) if automated_uid else []
            errors = side.study_errors.get(study_uid, ())
            rows.append(
                study_summary(
                    study_uid,
                    self._status(automated_uid, verified),
                    reviewable,
                    extra_protocols=side.protocols.get(study_uid, ()),
                    detail="; ".join(errors[:2]) if not automated_uid else "",
                    flags=side.study_flags(study_uid),
                )
            )
        return rows

    def _source_path(self, sop_instance_uid: str, side: Sidecar) -> Path | None:
        source = side.sources.get(sop_instance_uid)
        if not source:
            return None
        given = Path(source)
        candidates = [given] if given.is_absolute() else [
            *([self.images_dir / given] if self.images_dir else []),
            self.out_dir / given,
            Path.cwd() / given,
            self.out_dir.parent / given,
        ]
        return next((c for c in candidates if c.is_file()), None)

    def image_path(self, study_uid: str, sop_instance_uid: str) -> str | None:
        """The source image file of an analysed instance (``None`` when not found)."""
        path = self._source_path(sop_instance_uid, self._side())
        return str(path) if path is not None else None

    def _frame_info(self, sop_instance_uid: str, frame: int, side: Sidecar) -> FrameInfo:
        table = side.frames.get((sop_instance_uid, frame))
        path = self._source_path(sop_instance_uid, side)
        header = None
        if path is not None:
            st = path.stat()
            header = _header_info(str(path), frame, (st.st_mtime_ns, st.st_size))
        info = merge_info(table, header)
        if table is not None and table.source_file:
            info = merge_info(FrameInfo(source_file=table.source_file), info)
        return info

    def study(self, study_uid: str) -> StudyDetail | None:
        side = self._side()
        files = self._files().get(study_uid)
        if files is None and study_uid not in side.study_errors:
            return None
        files = files or _StudyFiles()
        path = self._automated_path(study_uid, files)
        reviewable = self._cache.reviewable(path) if path is not None else None
        automated_uid = str(reviewable.dataset.SOPInstanceUID) if reviewable is not None else ""
        verified = self._verified_for(files, automated_uid) if automated_uid else []
        errors = side.study_errors.get(study_uid, ())
        summary = study_summary(
            study_uid,
            self._status(automated_uid, verified),
            reviewable,
            extra_protocols=side.protocols.get(study_uid, ()),
            flags=side.study_flags(study_uid),
        )
        if reviewable is None:
            return StudyDetail(summary, "", "", "", (), errors=errors)
        frames = frame_views(reviewable, lambda sop, frame: self._frame_info(sop, frame, side))
        return StudyDetail(
            summary=summary,
            automated_sr_uid=automated_uid,
            automated_sr_path=str(path),
            completion_flag=str(reviewable.dataset.get("CompletionFlag", "")),
            frames=frames,
            notes=tuple(n.value for n in reviewable.report.notes),
            errors=errors,
            verified=tuple(verified_report(ds, p.name, f"written to {p.name}") for p, ds in verified),
        )

    def automated(self, study_uid: str) -> Dataset | None:
        files = self._files().get(study_uid)
        path = self._automated_path(study_uid, files) if files is not None else None
        return self._cache.header(path) if path is not None else None

    def verified_of(self, study_uid: str, automated_uid: str) -> list[Dataset]:
        files = self._files().get(study_uid)
        return [ds for _, ds in self._verified_for(files, automated_uid)] if files is not None else []

    def earlier_runs(self, study_uid: str, automated: Dataset) -> list[EarlierRun]:
        """The current SR's Predecessor Documents and any other automated SR file of the study, oldest first."""
        current = str(automated.SOPInstanceUID)
        files = self._files().get(study_uid, _StudyFiles())
        kept: dict[str, tuple[Path, Dataset]] = {}
        for path in files.automated:
            ds = self._cache.header(path)
            if ds is not None and str(ds.SOPInstanceUID) != current:
                kept[str(ds.SOPInstanceUID)] = (path, ds)
        runs = []
        named = predecessor_uids(automated)
        for uid in dict.fromkeys([*named, *kept]):
            path_ds = kept.get(uid)
            when = ""
            if path_ds is not None:
                ds = path_ds[1]
                d = f"{ds.get('ContentDate', '')}{ds.get('ContentTime', '')}"
                when = f"{d[:4]}-{d[4:6]}-{d[6:8]} {d[8:10]}:{d[10:12]}" if len(d) >= 12 else d
            note = "named as predecessor by the current run" if uid in named else "another automated SR file of the study"
            runs.append(EarlierRun(uid, when, path_ds[0].name if path_ds else "", note))
        return sorted(runs, key=lambda r: (r.when == "", r.when))

    def views(self, study_uid: str) -> list[StudyView]:
        """Openings of the study page in ``audit.jsonl``."""
        out = []
        for event in self._audit.events():
            if event.get("event") == VIEW_EVENT and event.get("study") == study_uid:
                at = str(event.get("at", ""))
                out.append(StudyView(str(event.get("login", "")), at[:19].replace("T", " "), str(event.get("address", ""))))
        return out

    # -- overlays --------------------------------------------------------------
    def _overlay_file(self, study_uid: str, sop: str, frame: int, side: Sidecar) -> Path | None:
        if uid_file_name(study_uid) != study_uid or uid_file_name(sop) != sop:
            return None  # never build paths from odd UIDs
        path = self.out_dir / overlay_rel_path(study_uid, sop, frame)
        return path if path.is_file() else None

    def frame_png(self, study_uid: str, sop_instance_uid: str, frame_number: int) -> bytes | None:
        detail = self.study(study_uid)
        if detail is None:
            return None
        view = detail.frame(sop_instance_uid, frame_number)
        if view is None:
            return None
        side = self._side()
        existing = self._overlay_file(study_uid, sop_instance_uid, frame_number, side)
        if existing is not None:
            return existing.read_bytes()
        source = self._source_path(sop_instance_uid, side)
        if source is None:
            return None
        try:
            return render_overlay_png(str(source), frame_number, view.overlays)
        except RenderError as exc:
            logger.warning("%s", exc)
            return None

    # -- writing ---------------------------------------------------------------
    def publish(self, study_uid: str, document: Dataset, automated_uid: str) -> Published:
        buffer = io.BytesIO()
        document.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        with self._write_lock:
            (self.out_dir / VERIFIED_FOLDER).mkdir(exist_ok=True)
            number = 1
            path = self.out_dir / VERIFIED_FOLDER / verified_file_name(study_uid, number)
            while not create_durably(data, path):  # never overwrite a sign-off: the next number
                number += 1
                path = self.out_dir / VERIFIED_FOLDER / verified_file_name(study_uid, number)
        logger.info("verified SR for study %s written to %s", study_uid, path)
        return Published(str(document.SOPInstanceUID), str(path))

    def audit(self, event: str, fields: Mapping[str, object]) -> None:
        self._audit.write(event, fields)
