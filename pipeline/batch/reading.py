"""Reading one input file once: its fingerprint and its dataset from a single read.

The batch worker needs both the SHA-256 of every input (the study record, so a
rerun can tell changed inputs) and the parsed dataset. :func:`hash_and_read`
memory-maps the file, hashes the mapping and lets pydicom parse the same pages
through :class:`MappedReader`, so nothing is read from disk twice.
"""

from __future__ import annotations

import hashlib
import io
import mmap
import os
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from pipeline.errors import MskusInputError
from pipeline.loading import read_dataset

__all__ = ["MappedReader", "ReadInput", "hash_and_read"]


@dataclass(frozen=True)
class ReadInput:
    """One input file as read by the worker: its fingerprint, and the dataset or why there is none."""

    stat: os.stat_result
    sha256: str
    dataset: Dataset | None
    error: MskusInputError | None


def hash_and_read(path: str) -> ReadInput:
    """Stat, SHA-256 and parse one input from a single read of the file.

    The file is memory-mapped: hashing pulls it into the page cache once and
    pydicom parses the same pages, so a large cine is neither read from disk
    twice nor held twice in the worker's own memory.

    Raises
    ------
    OSError
        The file cannot be opened or mapped.

    Notes
    -----
    A file truncated by another process *while* it is mapped makes the
    worker die (SIGBUS); the executor retries the study once and then reports
    it as failed, like any dead worker.
    """
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        if st.st_size == 0:  # mmap refuses empty files; nothing to read twice
            return _parse(st, hashlib.sha256(b"").hexdigest(), handle)
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return _parse(st, hashlib.sha256(mapped).hexdigest(), MappedReader(mapped, name=path))


class MappedReader(io.RawIOBase):
    """A read-only file over a memory map that, like a real file, may seek past its end.

    pydicom seeks forward over the values of a truncated file; a bare
    ``mmap`` refuses that (``ValueError``), a file reads nothing there, which
    is what lets the loader report "file is truncated".
    """

    def __init__(self, mapped: mmap.mmap, *, name: str = "") -> None:
        super().__init__()
        self.name = name  # pydicom names the file in its messages
        self._mapped = mapped
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), len(self._mapped) - self._pos))
        buffer[:n] = self._mapped[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._mapped)}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos


def _parse(st: os.stat_result, sha256: str, source: object) -> ReadInput:
    try:
        return ReadInput(st, sha256, read_dataset(source), None)  # type: ignore[arg-type]
    except MskusInputError as exc:
        return ReadInput(st, sha256, None, exc)
