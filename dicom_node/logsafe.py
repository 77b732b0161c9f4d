"""Log values a peer supplied without letting them shape the log.

A UID, AE title or error comment is text from the network: a newline in it
would start a line of its own that reads like a genuine log entry. Every
node logger carries :class:`EscapingFilter`, which rewrites string
arguments with :func:`escape` before they are formatted.
"""

from __future__ import annotations

import logging
import re

__all__ = ["EscapingFilter", "escape", "install"]

# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _replacement(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(value: object) -> str:
    """``str(value)`` with every control character written as a visible escape (``\\n``, ``\\x00``).

    Backslashes are doubled first, so an escaped value can be told from a
    sender that typed ``\\n`` itself.
    """
    text = str(value)
    if not _CONTROL.search(text) and "\\" not in text:
        return text
    return _CONTROL.sub(_replacement, text.replace("\\", "\\\\"))


class EscapingFilter(logging.Filter):
    """A logger filter that escapes control characters in every non-numeric argument."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(a if isinstance(a, (int, float)) else escape(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: v if isinstance(v, (int, float)) else escape(v) for k, v in record.args.items()}
        return True


_FILTER = EscapingFilter()


def install(*names: str) -> None:
    """Add the escaping filter (once) to the loggers ``names``."""
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
