"""Durable files: received instances in the inbox, results in the archive.

Nothing is acknowledged before its file and folder are fsync'd, so a crash
or power loss after Success cannot lose or half-write it. File names are
built from UIDs by :func:`pipeline.filenames.uid_file_name` only.

A result (SR, key image) is written to a temporary name, fsync'd, renamed
into place and its folder fsync'd (:func:`pipeline.atomic.durable_temporary`
and :func:`pipeline.atomic.place_durably`, the one atomic-write helper).

A received instance takes the C-STORE path, where each disk flush counts
(:meth:`DurableStore.store_instance`): its bytes go into an empty file
created ahead of time (:class:`SpareFiles`), which is renamed to its inbox
name and then fsync'd with its folder, one journal commit for data, name
and folder. Until that fsync returns the file is not acknowledged; a crash
in between can leave an incomplete file at its inbox name, which the node's
next start finds incomplete and moves aside (the sender, never answered,
sends it again). An instance sent again over an acknowledged file is
written the safe way (fsync'd before the rename), so the file it replaces
stays whole until the new one is.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import uuid
from pathlib import Path

from pipeline.atomic import TMP_SUFFIX, durable_temporary, fsync_dir, place_durably
from pipeline.filenames import uid_file_name

__all__ = ["DurableStore", "SpareFiles", "fsync_dir"]


class SpareFiles:
    """Empty temporary files created ahead of need on a helper thread.

    Creating a file is a journalled metadata change that can take about a
    millisecond on a busy disk; made between instances, it is not on the
    C-STORE path. A spare left by a crash is an empty temporary file,
    removed at the next start like any other
    (:func:`pipeline.atomic.remove_stale_temporaries`).

    Parameters
    ----------
    folder : Path
        Where the files are created (the inbox's file system, so that a rename places them).
    count : int
        Spares kept ready; when none is, :meth:`take` creates one on the spot.
    """

    _FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)

    def __init__(self, folder: Path, *, count: int = 8) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.folder = Path(folder)
        self.count = count
        self._lock = threading.Lock()
        self._ready: list[tuple[Path, int]] = []
        self._closed = False
        self._refills = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mskus-spares")

    def _create(self) -> tuple[Path, int]:
        path = self.folder / f"{uuid.uuid4().hex}{TMP_SUFFIX}"
        return path, os.open(path, self._FLAGS, 0o666)

    def _refill(self) -> None:
        with self._lock:
            if self._closed or len(self._ready) >= self.count:
                return
        try:
            spare = self._create()
        except OSError:
            return  # disk full or unwritable: take() creates the file itself and reports the error
        with self._lock:
            if not self._closed:
                self._ready.append(spare)
                return
        os.close(spare[1])
        spare[0].unlink(missing_ok=True)

    def take(self) -> tuple[Path, int]:
        """A new empty temporary file and its open descriptor, for the caller to write and close.

        Call :meth:`refill` once the file's own disk work is done.

        Raises
        ------
        OSError
            No spare was ready and the file could not be created.
        """
        with self._lock:
            spare = self._ready.pop() if self._ready else None
        return spare if spare is not None else self._create()

    def refill(self) -> None:
        """Replace a taken spare on the helper thread (after the taker's fsync, which it would slow down)."""
        with self._lock:
            if not self._closed:
                self._refills.submit(self._refill)

    def close(self) -> None:
        """Stop the helper thread; close and remove the spares not taken."""
        with self._lock:
            self._closed = True
        self._refills.shutdown(wait=True)
        with self._lock:
            spares, self._ready = self._ready, []
        for path, fd in spares:
            os.close(fd)
            path.unlink(missing_ok=True)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
        self._spares = SpareFiles(self.tmp)

    def close(self) -> None:
        """Remove the spare files (after the last :meth:`store_instance`)."""
        self._spares.close()

    def _folder(self, folder: Path) -> Path:
        if folder not in self._folders:  # one mkdir per study folder, not one per instance
            folder.mkdir(parents=True, exist_ok=True)
            self._folders.add(folder)
        return folder

    def store_instance(self, study_uid: str, sop_instance_uid: str, data: bytes) -> Path:
        """Durably write a received instance to ``inbox/<study>/<sop>.dcm``; returns once file and folder are on disk.

        Raises
        ------
        OSError
            The file could not be written or flushed (nothing is left at its inbox name
            unless an earlier, acknowledged copy was there).
        """
        folder = self._folder(self.inbox / uid_file_name(study_uid))
        target = folder / (uid_file_name(sop_instance_uid) + ".dcm")
        tmp, fd = self._spares.take()
        try:
            _write_all(fd, data)
            if target.exists():  # a resend: the acknowledged file is replaced only by a complete one
                os.fsync(fd)
                os.close(fd)
                fd = -1
                return place_durably(tmp, target)
            try:
                os.replace(tmp, target)
            except FileNotFoundError:  # the study folder was removed behind our back
                folder.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
            try:
                os.fsync(fd)  # data, inode and the rename in one journal commit
                fsync_dir(folder)
            except OSError:
                target.unlink(missing_ok=True)  # never acknowledged: leave nothing half-durable behind
                raise
            return target
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            if fd >= 0:
                os.close(fd)
            self._spares.refill()

    def store_result(self, study_uid: str, sop_instance_uid: str, data: bytes) -> Path:
        """Durably write a result (SR, key image) to ``archive/<study>/<sop>.dcm``."""
        folder = self._folder(self.archive / uid_file_name(study_uid))
        return place_durably(durable_temporary(data, self.tmp), folder / (uid_file_name(sop_instance_uid) + ".dcm"))
