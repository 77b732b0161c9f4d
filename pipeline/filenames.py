"""The one rule that turns a UID into a file or folder name.

Every output path that carries a UID (reports, overlays, key images, the
storage node's inbox and archive, verified reports) goes through
:func:`uid_file_name`, so whatever a sender puts into a UID (``../``, slashes,
NUL, 10 kB of text) no file can be placed outside the output or data folder.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["uid_file_name"]

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def uid_file_name(uid: str) -> str:
    """A file-name-safe form of a UID: the UID itself when it is a valid UID, else ``x`` + 40 hex digits.

    Valid means digits and dots only, at most 64 characters (PS3.5 9.1),
    trailing NUL padding removed. Anything else is replaced by a hash of
    it: a plain name with no path separators, the same for the same input.
    """
    text = str(uid).strip().rstrip("\x00")
    if 0 < len(text) <= 64 and _UID.match(text):
        return text
    return "x" + hashlib.sha256(str(uid).encode("utf-8", "surrogateescape")).hexdigest()[:40]
