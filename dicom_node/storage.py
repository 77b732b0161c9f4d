"""Durable files: received instances in the inbox, results in the archive.

A file is written to a temporary name, fsync'd, renamed into place and its
folder fsync'd, so that after Success is returned a crash or power loss
cannot lose or half-write it. File names are built from UIDs by :func:`pipeline.filenames.uid_file_name` only.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.filenames import uid_file_name

__all__ = ["DurableStore", "fsync_dir"]


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that the names created or renamed in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableStore:
    """The node's data folder: ``inbox/``, ``archive/`` and ``tmp/``.

    Parameters
    ----------
    root : Path
        The data folder; created when missing.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.inbox = self.root / "inbox"
        self.archive = self.root / "archive"
        self.tmp = self.root / "tmp"
        for folder in (self.inbox, self.archive, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)
        self._folders: set[Path] = set()

    def _write(self, folder: Path, name: str, data: bytes) -> Path:
        if folder not in self._folders:  # one mkdir per study folder, not one per instance
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        target = folder / name
        tmp_path = self.tmp / f"{name}.{os.getpid()}.{id(data)}.part"
        try:
            with open(tmp_path, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.replace(tmp_path, target)
            except FileNotFoundError:  # the folder was removed behind our back
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(tmp_path, target)
        except BaseException:
            tmp_path.unlink(missing_ok=True)
            raise
        fsync_dir(folder)
        return target

    def store_instance(self, study_uid: str, sop_instance_uid: str, data: bytes) -> Path:
        """Durably write a received instance to ``inbox/<study>/<sop>.dcm``."""
        return self._write(self.inbox / uid_file_name(study_uid), uid_file_name(sop_instance_uid) + ".dcm", data)

    def store_result(self, study_uid: str, sop_instance_uid: str, data: bytes) -> Path:
        """Durably write a result (SR, key image) to ``archive/<study>/<sop>.dcm``."""
        return self._write(self.archive / uid_file_name(study_uid), uid_file_name(sop_instance_uid) + ".dcm", data)
