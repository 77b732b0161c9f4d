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
    root = display_root(given)
    excluded = {os.path.realpath(p) for p in exclude}
    seen_dirs: dict[tuple[int, int], str] = {}
    seen_files: dict[tuple[int, int], str] = {}
    for raw in given:
        path = Path(os.path.abspath(raw))
        rel = _rel(root, path) if path != root else "."
        try:
            st = os.stat(path)
        except OSError as exc:
            yield _link_problem(rel, exc) if path.is_symlink() else ErrorRow(
                rel, "not_found" if isinstance(exc, FileNotFoundError) else "unreadable",
                "no such file or folder" if isinstance(exc, FileNotFoundError) else f"cannot read: {exc.strerror or exc}",
            )
            continue
        key = (st.st_dev, st.st_ino)
        if stat.S_ISDIR(st.st_mode):
            if key in seen_dirs:
                yield ErrorRow(rel, "duplicate", f"folder already walked as {seen_dirs[key]}; skipped")
                continue
            seen_dirs[key] = rel
            yield from _walk_folder(root, path, key, seen_dirs, seen_files, excluded)
        elif stat.S_ISREG(st.st_mode):
            if key in seen_files:
                yield ErrorRow(rel, "duplicate", f"same file as {seen_files[key]}; analysed once")
                continue
            seen_files[key] = rel
            yield InputFile(path=str(path), rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns)
        else:
            yield ErrorRow(rel, "not_a_file", "not a regular file (device, pipe or socket); skipped")
    logger.debug("walked %s: %d folders, %d files", root, len(seen_dirs), len(seen_files))


def _walk_folder(
    root: Path,
    top: Path,
    top_key: tuple[int, int],
    seen_dirs: dict[tuple[int, int], str],
    seen_files: dict[tuple[int, int], str],
    excluded: set[str],
) -> Iterator[InputFile | ErrorRow]:
    # Depth-first, each folder with the (dev, inode) chain of its ancestors.
    stack: list[tuple[Path, tuple[tuple[int, int], ...]]] = [(top, (top_key,))]
    while stack:
        folder, ancestors = stack.pop()
        try:
            with os.scandir(folder) as scan:
                # Real entries before links, so a link (not the original) is the duplicate.
                entries = sorted(scan, key=lambda e: (e.is_symlink(), e.name))
        except OSError as exc:
            yield ErrorRow(_rel(root, folder) if folder != root else ".", "unreadable_folder", f"cannot read folder: {exc.strerror or exc}")
            continue
        subfolders: list[tuple[Path, tuple[tuple[int, int], ...]]] = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name in _SKIPPED_NAMES:
                continue
            path = Path(entry.path)
            rel = _rel(root, path)
            try:
                st = os.stat(path)  # follows links
            except OSError as exc:
                yield _link_problem(rel, exc) if entry.is_symlink() else ErrorRow(
                    rel, "unreadable", f"cannot read: {exc.strerror or exc}"
                )
                continue
            key = (st.st_dev, st.st_ino)
            if stat.S_ISDIR(st.st_mode):
                if os.path.realpath(path) in excluded:
                    continue
                if key in ancestors:
                    target = seen_dirs.get(key, "?")
                    yield ErrorRow(rel, "symlink_loop", f"symbolic link loop: points back to its parent folder {target}")
                    continue
                if key in seen_dirs:
                    yield ErrorRow(rel, "duplicate", f"folder already walked as {seen_dirs[key]}; skipped")
                    continue
                seen_dirs[key] = rel
                subfolders.append((path, (*ancestors, key)))
            elif stat.S_ISREG(st.st_mode):
                if key in seen_files:
                    yield ErrorRow(rel, "duplicate", f"same file as {seen_files[key]}; analysed once")
                    continue
                seen_files[key] = rel
                yield InputFile(path=str(path), rel=rel, size=st.st_size, mtime_ns=st.st_mtime_ns)
            else:
                yield ErrorRow(rel, "not_a_file", "not a regular file (device, pipe or socket); skipped")
        stack.extend(reversed(subfolders))
