"""Durable files: received instances in the inbox, results in the archive.

A file is written to a temporary name, fsync'd, renamed into place and its
folder fsync'd (:func:`pipeline.atomic.durable_temporary` and
:func:`pipeline.atomic.place_durably`, the one atomic-write helper), so that
after Success is returned a crash or power loss cannot lose or half-write it. A received instance's temporary file is
written on a helper thread while the handler checks the dataset
(:meth:`DurableStore.prepare`): the disk and the checks overlap. File names are built from UIDs by :func:`pipeline.filenames.uid_file_name` only.
"""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

from pipeline.atomic import durable_temporary, fsync_dir, place_durably
from pipeline.filenames import uid_file_name

__all__ = ["DurableStore", "PreparedWrite", "fsync_dir"]


class PreparedWrite:
    """A temporary file being written and fsync'd on a helper thread (:meth:`DurableStore.prepare`)."""

    def __init__(self, future: concurrent.futures.Future[Path]) -> None:
        self._future = future
        #: Set once the file is placed in the inbox; :meth:`discard` then leaves it alone.
        self.placed = False

    def result(self) -> Path:
        """The fsync'd temporary file, once written.

        Raises
        ------
        OSError
            The write or the fsync failed (disk full, unwritable).
        """
        return self._future.result()

    def discard(self) -> None:
        """Drop the temporary file unless it was placed (the instance was refused): wait for the write, then remove it."""
        if self.placed:
            return
        try:
            self._future.result().unlink(missing_ok=True)
        except OSError:
            pass  # never written: nothing to remove


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
        self._writers = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="mskus-write")

    def close(self) -> None:
        """Stop the helper threads (after the last :meth:`prepare`)."""
        self._writers.shutdown(wait=True)

    def _write_tmp(self, data: bytes) -> Path:
        """``data`` in a new fsync'd file under ``tmp/`` (removed again if anything fails)."""
        return durable_temporary(data, self.tmp)

    def _place(self, tmp_path: Path, folder: Path, name: str) -> Path:
        """Rename a written temporary file to ``folder/name`` and fsync the folder."""
        if folder not in self._folders:  # one mkdir per study folder, not one per instance
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        return place_durably(tmp_path, folder / name)

    def _write(self, folder: Path, name: str, data: bytes) -> Path:
        return self._place(self._write_tmp(data), folder, name)

    def prepare(self, data: bytes) -> PreparedWrite:
        """Start writing and fsyncing ``data`` to a temporary file on a helper thread; returns at once.

        The C-STORE handler checks the dataset while the disk works, then
        either places the file (:meth:`store_instance` with ``prepared``) or
        drops it (:meth:`PreparedWrite.discard`). Nothing is in the inbox
        before it is placed.
        """
        return PreparedWrite(self._writers.submit(self._write_tmp, data))

    def store_instance(self, study_uid: str, sop_instance_uid: str, data: bytes, *, prepared: PreparedWrite | None = None) -> Path:
        """Durably write a received instance to ``inbox/<study>/<sop>.dcm``.

        With ``prepared`` (from :meth:`prepare` with the same ``data``) the
        temporary file already written is waited for and placed.
        """
        folder, name = self.inbox / uid_file_name(study_uid), uid_file_name(sop_instance_uid) + ".dcm"
        if prepared is None:
            return self._write(folder, name, data)
        target = self._place(prepared.result(), folder, name)
        prepared.placed = True
        return target

    def store_result(self, study_uid: str, sop_instance_uid: str, data: bytes) -> Path:
        """Durably write a result (SR, key image) to ``archive/<study>/<sop>.dcm``."""
        return self._write(self.archive / uid_file_name(study_uid), uid_file_name(sop_instance_uid) + ".dcm", data)
