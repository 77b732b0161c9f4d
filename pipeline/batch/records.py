"""Per-study records: the durable proof that a study is done, and its rows.

When a worker has written a study's SR and overlays it writes the study's
record, ``OUT_DIR/.mskus-batch/studies/<key>.json``, atomically and last.
The record holds the fingerprint of every input (relative path, size,
mtime, SHA-256), the settings fingerprint, the output files and the study's
rows of the three tables. A rerun skips a study whose record matches its
current inputs and settings; the tables are assembled from records only, so
an interrupted run never leaves half a study in them and a rerun never
duplicates rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from pipeline.atomic import atomic_write_text
from pipeline.batch.plan import StudyTask, study_key
from pipeline.batch.settings import RunSettings

__all__ = [
    "RECORD_FORMAT",
    "STATE_DIR",
    "InputRecord",
    "StudyRecord",
    "file_sha256",
    "read_record",
    "record_path",
    "records_dir",
    "up_to_date",
    "write_record",
]

logger = logging.getLogger(__name__)

#: Hidden folder of OUT_DIR holding the run state.
STATE_DIR = ".mskus-batch"
RECORD_FORMAT = 1


def records_dir(out_dir: str | os.PathLike[str]) -> Path:
    return Path(out_dir) / STATE_DIR / "studies"


def record_path(out_dir: str | os.PathLike[str], study_uid: str) -> Path:
    return records_dir(out_dir) / f"{study_key(study_uid)}.json"


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in chunks."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class InputRecord:
    """Fingerprint of one input as the worker read it."""

    rel: str
    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class StudyRecord:
    """A finished study: inputs, settings, output files and table rows."""

    study_uid: str
    settings_fingerprint: str
    overlays: bool
    inputs: tuple[InputRecord, ...]
    frames: int
    sr_file: str = ""
    overlay_files: tuple[str, ...] = ()
    measurements: tuple[tuple[str, ...], ...] = ()
    errors: tuple[tuple[str, ...], ...] = ()
    summary: tuple[tuple[str, ...], ...] = ()
    format: int = field(default=RECORD_FORMAT)
    #: The study's ``findings.csv`` rows (:data:`pipeline.reference.FINDING_COLUMNS` order).
    findings: tuple[tuple[str, ...], ...] = ()
    #: The study's ``events.csv`` rows (:data:`pipeline.cine.rows.EVENT_COLUMNS` order).
    events: tuple[tuple[str, ...], ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> StudyRecord:
        data = json.loads(text)
        if data.get("format") != RECORD_FORMAT:
            raise ValueError(f"record format {data.get('format')!r}")
        return cls(
            study_uid=str(data["study_uid"]),
            settings_fingerprint=str(data["settings_fingerprint"]),
            overlays=bool(data["overlays"]),
            inputs=tuple(InputRecord(**item) for item in data["inputs"]),
            frames=int(data["frames"]),
            sr_file=str(data.get("sr_file", "")),
            overlay_files=tuple(data.get("overlay_files", ())),
            measurements=tuple(tuple(r) for r in data.get("measurements", ())),
            errors=tuple(tuple(r) for r in data.get("errors", ())),
            summary=tuple(tuple(r) for r in data.get("summary", ())),
            findings=tuple(tuple(r) for r in data.get("findings", ())),
            events=tuple(tuple(r) for r in data.get("events", ())),
        )

    @property
    def input_digest(self) -> str:
        """One hash over the inputs' paths and contents (derives the SR UIDs)."""
        h = hashlib.sha256()
        for item in sorted(self.inputs, key=lambda i: i.rel):
            h.update(f"{item.rel}\0{item.sha256}\n".encode())
        return h.hexdigest()


def write_record(out_dir: str | os.PathLike[str], record: StudyRecord) -> Path:
    """Write a study's record atomically (and durably); return its path."""
    path = record_path(out_dir, record.study_uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, record.to_json(), durable=True)
    return path


def read_record(path: str | os.PathLike[str]) -> StudyRecord | None:
    """The record at ``path``, or ``None`` when missing or unreadable (then the study is redone)."""
    try:
        return StudyRecord.from_json(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        logger.warning("ignoring unreadable study record %s: %s", path, exc)
        return None


def up_to_date(record: StudyRecord | None, task: StudyTask, settings: RunSettings) -> StudyRecord | None:
    """The record if it still describes ``task``'s inputs under ``settings``, else ``None``.

    Size and mtime decide quickly; a file whose mtime changed but whose
    size did not is hashed, and an unchanged SHA-256 still counts as
    unchanged (the returned record then carries the new mtimes).
    """
    if record is None or record.settings_fingerprint != settings.fingerprint:
        return None
    if settings.overlays and not record.overlays:
        return None
    if settings.key_images and record.frames and not any(f.startswith("key_images/") for f in record.overlay_files):
        return None
    if record.sr_file and not (Path(task.out_dir) / record.sr_file).is_file():
        return None
    recorded = {item.rel: item for item in record.inputs}
    if set(recorded) != {f.rel for f in task.files}:
        return None
    refreshed: list[InputRecord] = []
    changed = False
    for f in task.files:
        old = recorded[f.rel]
        if (old.size, old.mtime_ns) == (f.size, f.mtime_ns):
            refreshed.append(old)
            continue
        if old.size != f.size:
            return None
        try:
            if file_sha256(f.path) != old.sha256:
                return None
        except OSError:
            return None
        refreshed.append(replace(old, mtime_ns=f.mtime_ns))
        changed = True
    if changed:
        record = replace(record, inputs=tuple(refreshed))
        write_record(task.out_dir, record)
    return record
