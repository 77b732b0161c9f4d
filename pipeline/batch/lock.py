"""One batch run per output folder at a time (an advisory lock file)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import UsageError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no locking
    fcntl = None  # type: ignore[assignment]

__all__ = ["output_lock"]


@contextmanager
def output_lock(state_dir: str | os.PathLike[str], *, wait: bool = False) -> Iterator[None]:
    """Hold ``state_dir/lock`` for the block; released by the OS if the process dies.

    ``wait``: block until the lock is free (workers of one node taking turns)
    instead of refusing.

    Raises
    ------
    UsageError
        Another run holds the lock.
    """
    path = Path(state_dir) / "lock"
    with open(path, "a+") as handle:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise UsageError(f"another mskus batch run is writing to {Path(state_dir).parent}") from None
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
