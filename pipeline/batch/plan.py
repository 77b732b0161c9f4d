"""Group image headers into per-study tasks, the unit of work of a batch run.

A study is analysed by one worker from start to end (all its images, its SR,
its overlays and its record), so studies can run in any order, on any
machine, and each is either done or not. Within a study, images are sorted
by path, and an image seen twice (same SOP Instance UID in two files) is
analysed once; the copy gets an error row.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.batch.headers import ImageHeader
from pipeline.batch.settings import RunSettings
from pipeline.batch.tables import ErrorRow

__all__ = ["FileRef", "StudyTask", "plan_studies", "study_key"]


def study_key(study_uid: str) -> str:
    """A short file-name-safe key of a study (names its record)."""
    return hashlib.sha256(study_uid.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class FileRef:
    """One image of a study task (no pixels: a path and what the header said)."""

    path: str
    rel: str
    size: int
    mtime_ns: int
    sop_instance_uid: str
    frames: int


@dataclass(frozen=True)
class StudyTask:
    """Everything a worker needs to analyse one study.

    Attributes
    ----------
    study_uid : str
        Study Instance UID.
    files : tuple of FileRef
        The study's images, sorted by relative path.
    out_dir : str
        OUT_DIR (absolute); the worker writes the SR, overlays and the
        study record there, so every worker must see it at this path.
    settings : RunSettings
        Rules, protocol, overlays, pseudonym key, software version.
    """

    study_uid: str
    files: tuple[FileRef, ...]
    out_dir: str
    settings: RunSettings

    @property
    def key(self) -> str:
        return study_key(self.study_uid)

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)


def plan_studies(headers: Iterable[ImageHeader], *, out_dir: str, settings: RunSettings) -> tuple[list[StudyTask], list[ErrorRow]]:
    """One task per study (sorted by Study Instance UID) and the duplicates left out."""
    by_study: dict[str, list[ImageHeader]] = defaultdict(list)
    for header in headers:
        by_study[header.study_uid].append(header)
    tasks: list[StudyTask] = []
    errors: list[ErrorRow] = []
    for study_uid in sorted(by_study):
        seen: dict[str, str] = {}
        files: list[FileRef] = []
        for header in sorted(by_study[study_uid], key=lambda h: h.file.rel):
            first = seen.get(header.sop_instance_uid)
            if first is not None:
                errors.append(
                    ErrorRow(
                        header.file.rel,
                        "duplicate",
                        f"same SOP Instance UID as {first}; analysed once",
                        header.sop_instance_uid,
                        study_uid,
                    )
                )
                continue
            seen[header.sop_instance_uid] = header.file.rel
            f = header.file
            files.append(FileRef(f.path, f.rel, f.size, f.mtime_ns, header.sop_instance_uid, header.frames))
        tasks.append(StudyTask(study_uid=study_uid, files=tuple(files), out_dir=out_dir, settings=settings))
    return tasks, errors
