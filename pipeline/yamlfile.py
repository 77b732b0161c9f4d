"""Read a YAML configuration file: the one loader of every ``configs/`` file.

Every configuration problem is a one-line :class:`~pipeline.errors.UsageError`
that names the file (and, where the caller validates further, the key), so
the ``mskus`` command can print it instead of a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import UsageError

__all__ = ["parse_yaml_mapping", "read_text", "read_yaml_mapping"]


def read_text(path: str | os.PathLike[str], *, what: str) -> str:
    """The UTF-8 text of ``path``; :class:`UsageError` naming ``what`` and the file when unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: {what} is not UTF-8 text") from None


def parse_yaml_mapping(text: str, *, source: str, empty_ok: bool = True) -> dict[str, Any]:
    """The top-level mapping of YAML ``text``.

    Parameters
    ----------
    text : str
        The YAML document.
    source : str
        The file it came from (named in every error).
    empty_ok : bool
        An empty document is ``{}`` (else an error).

    Raises
    ------
    UsageError
        Invalid YAML (its first line), or a top level that is not a mapping.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "invalid YAML"
        raise UsageError(f"{source}: invalid YAML: {first}") from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def read_yaml_mapping(path: str | os.PathLike[str], *, what: str, empty_ok: bool = True) -> dict[str, Any]:
    """:func:`read_text` then :func:`parse_yaml_mapping`."""
    return parse_yaml_mapping(read_text(path, what=what), source=str(path), empty_ok=empty_ok)
