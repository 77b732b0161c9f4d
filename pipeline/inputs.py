"""Find the input files of a run: the one folder walker of every command.

``mskus analyze``, ``mskus batch`` and anything else that takes files and
folders walk them here, with one rule: every regular file is an input (what
is not DICOM is refused later, with its reason, in ``errors.csv``); names
starting with ``.`` (hidden files, ``.DS_Store``, a run's own state folder),
``DICOMDIR`` index files and the output folder are skipped silently.

The walk follows symbolic links (research folders are often assembled from
links) but never enters a folder twice: a link back to one of its own
parent folders is a *symbolic link loop*, a link to a folder already walked
elsewhere is a *duplicate*, and both become one error row instead of an
endless or doubled walk. Unreadable folders and dangling or circular links
are reported the same way; the walk goes on.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.batch.tables import ErrorRow

__all__ = ["InputFile", "display_root", "walk_inputs"]

logger = logging.getLogger(__name__)

_SKIPPED_NAMES = frozenset({"DICOMDIR"})


@dataclass(frozen=True)
class InputFile:
    """A regular file found under IN_DIR.

    Attributes
    ----------
    path : str
        Path as walked (absolute, links not resolved).
    rel : str
        Path relative to IN_DIR with ``/`` separators: the ``source_file``
        of every output row.
    size, mtime_ns : int
        From ``stat`` when found: the cheap part of the change check.
    """

    path: str
    rel: str
    size: int
    mtime_ns: int


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _link_problem(rel: str, exc: OSError) -> ErrorRow:
    if exc.errno == errno.ELOOP:
        return ErrorRow(rel, "symlink_loop", "symbolic link loop: too many levels of symbolic links")
    if exc.errno == errno.ENOENT:
        return ErrorRow(rel, "broken_link", "broken symbolic link: its target does not exist")
    return ErrorRow(rel, "unreadable", f"cannot read: {exc.strerror or exc}")


def display_root(paths: Sequence[str | os.PathLike[str]]) -> Path:
    """The deepest folder holding every given path: inputs are named relative to it.

    One folder gives names relative to that folder (as ``mskus batch`` always
    did); files given by name get their bare names when they share a folder,
    and keep the folders that tell them apart when they do not. Paths are
    made absolute without resolving links, so a link keeps the name the user
    gave it.
    """
    folders = [os.path.abspath(p) if os.path.isdir(p) else os.path.dirname(os.path.abspath(p)) for p in paths]
    return Path(os.path.commonpath(folders)) if folders else Path.cwd()


def walk_inputs(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    exclude: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[InputFile | ErrorRow]:
    """Yield the input files under ``paths`` (each folder sorted) and the problems met.

    One rule for every command: every regular file in a folder is an input
    (what is not DICOM is refused later with its reason), except hidden names,
    ``DICOMDIR`` and excluded folders; a file named explicitly is always an
    input.

    Parameters
    ----------
    paths : path or sequence of paths
        Files and folders (walked recursively), in the order given.
    exclude : paths
        Folders not to enter (the output folder).

    Yields
    ------
    InputFile or ErrorRow
        A file to read (named relative to :func:`display_root`), or why a
        file or folder was not walked.
    """
    given = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    walk = _Walk(display_root(given), {os.path.realpath(p) for p in exclude})
    for raw in given:
        path = Path(os.path.abspath(raw))
        found, folder = walk.entry(path, is_link=path.is_symlink(), ancestors=(), named=True)
        if found is not None:
            yield found
        if folder is not None:
            yield from walk.folder(*folder)
    logger.debug("walked %s: %d folders, %d files", walk.root, len(walk.seen_dirs), len(walk.seen_files))


_Key = tuple[int, int]


class _Walk:
    """One walk's state: the naming root, excluded folders, and every folder and file seen (by device and inode)."""

    def __init__(self, root: Path, excluded: set[str]) -> None:
        self.root = root
        self.excluded = excluded
        self.seen_dirs: dict[_Key, str] = {}
        self.seen_files: dict[_Key, str] = {}

    def rel(self, path: Path) -> str:
        return _rel(self.root, path) if path != self.root else "."

    def entry(
        self, path: Path, *, is_link: bool, ancestors: tuple[_Key, ...], named: bool = False
    ) -> tuple[InputFile | ErrorRow | None, tuple[Path, tuple[_Key, ...]] | None]:
        """What ``path`` is: an input or a problem to report, and/or a folder to walk (with its ancestry).

        ``named``: given on the command line (a missing one is "not found";
        the output folder is never skipped silently then).
        """
        rel = self.rel(path)
        try:
            st = os.stat(path)  # follows links
        except OSError as exc:
            if is_link:
                return _link_problem(rel, exc), None
            if named and isinstance(exc, FileNotFoundError):
                return ErrorRow(rel, "not_found", "no such file or folder"), None
            return ErrorRow(rel, "unreadable", f"cannot read: {exc.strerror or exc}"), None
        key = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            if not named and os.path.realpath(path) in self.excluded:
                return None, None
            if key in ancestors:
                target = self.seen_dirs.get(key, "?")
                return ErrorRow(rel, "symlink_loop", f"symbolic link loop: points back to its parent folder {target}"), None
            if key in self.seen_dirs:
                return ErrorRow(rel, "duplicate", f"folder already walked as {self.seen_dirs[key]}; skipped"), None
            self.seen_dirs[key] = rel
            return None, (path, (*ancestors, key))
        if stat.S_ISREG(st.st_mode):
            if key in self.seen_files:
                return ErrorRow(rel, "duplicate", f"same file as {self.seen_files[key]}; analysed once"), None
            self.seen_files[key] = rel
            return InputFile(path=str(path), rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns), None
        return ErrorRow(rel, "not_a_file", "not a regular file (device, pipe or socket); skipped"), None

    def folder(self, top: Path, ancestors: tuple[_Key, ...]) -> Iterator[InputFile | ErrorRow]:
        """Depth-first walk below ``top`` (each folder sorted), each folder with the chain of its ancestors."""
        stack: list[tuple[Path, tuple[_Key, ...]]] = [(top, ancestors)]
        while stack:
            folder, chain = stack.pop()
            try:
                with os.scandir(folder) as scan:
                    # Real entries before links, so a link (not the original) is the duplicate.
                    entries = sorted(scan, key=lambda e: (e.is_symlink(), e.name))
            except OSError as exc:
                yield ErrorRow(self.rel(folder), "unreadable_folder", f"cannot read folder: {exc.strerror or exc}")
                continue
            subfolders: list[tuple[Path, tuple[_Key, ...]]] = []
            for item in entries:
                if item.name.startswith(".") or item.name in _SKIPPED_NAMES:
                    continue
                found, sub = self.entry(Path(item.path), is_link=item.is_symlink(), ancestors=chain)
                if found is not None:
                    yield found
                if sub is not None:
                    subfolders.append(sub)
            stack.extend(reversed(subfolders))
