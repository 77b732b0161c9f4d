"""Write files so that a reader (or a killed run) never sees half of one: the one atomic-write helper.

Every output (CSV tables, SR documents, overlays, key images, per-study
records, the node's received instances and results) is written to a
temporary file on the same file system, flushed and then moved over the
final name with :func:`os.replace`, which is atomic on POSIX file systems. A
run killed at any moment leaves either the old file or the new one, plus at
most a ``*.mskus-tmp`` file that the next run removes. ``durable=True`` also
fsyncs the file before and its folder after the rename, so the file survives
a power cut once the call returns (what the node needs before it answers
Success).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TMP_SUFFIX",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "create_durably",
    "durable_temporary",
    "fsync_dir",
    "place_durably",
    "remove_stale_temporaries",
]

#: Suffix of temporary files; :func:`remove_stale_temporaries` deletes leftovers.
TMP_SUFFIX = ".mskus-tmp"


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{id(path)}{TMP_SUFFIX}")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_open(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = "",
    durable: bool = False,
) -> Iterator[IO]:
    """Open a temporary file that replaces ``path`` when the block ends without error.

    Parameters
    ----------
    path : path
        Final file name; its folder must exist.
    mode : {"w", "wb"}
        Text or binary.
    encoding, newline
        For text mode (``newline=""`` suits :mod:`csv`).
    durable : bool
        Also ``fsync`` the file before and its folder after the rename
        (survives a power cut, not only a killed process): the records that
        mark a study as done.
    """
    final = Path(path)
    tmp = _tmp_path(final)
    binary = "b" in mode
    text_options: dict[str, Any] = {} if binary else {"encoding": encoding, "newline": newline}
    handle = open(tmp, mode, **text_options)  # noqa: SIM115
    try:
        with handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(final.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, durable: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb", durable=durable) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, durable: bool = False) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    with atomic_open(path, "w", durable=durable) as handle:
        handle.write(text)


def durable_temporary(data: bytes, tmp_dir: str | os.PathLike[str]) -> Path:
    """The first half of a durable write: ``data`` in a new fsync'd temporary file under ``tmp_dir``.

    :func:`place_durably` then moves it into place (the node's results use the
    pair). The file is removed again if anything fails.
    """
    tmp = Path(tmp_dir) / f"{uuid.uuid4().hex}{TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def place_durably(tmp: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """The second half: rename the fsync'd ``tmp`` over ``path`` and fsync the folder (``tmp`` removed on failure)."""
    final = Path(path)
    try:
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            if not Path(tmp).exists():
                raise
            final.parent.mkdir(parents=True, exist_ok=True)  # the folder was removed behind our back
            os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)
    return final


def create_durably(data: bytes, path: str | os.PathLike[str]) -> bool:
    """Write ``data`` to ``path`` only if no file has that name (never overwrites), durably.

    The file appears whole or not at all (a hard link of an fsync'd
    temporary); returns ``False`` when the name is taken, so a caller can try
    the next number (the QA page's numbered sign-offs).
    """
    final = Path(path)
    tmp = durable_temporary(data, final.parent)
    try:
        os.link(tmp, final)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(final.parent)
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete temporary files left in ``folder`` (recursively) by a killed run; return how many."""
    removed = 0
    for tmp in Path(folder).rglob(f"*{TMP_SUFFIX}"):
        try:
            tmp.unlink()
            removed += 1
        except OSError:
            pass
    return removed
