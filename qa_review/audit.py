"""The audit log of an OUT_DIR: ``audit.jsonl``, one JSON object per line, appended and fsync'd."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path

__all__ = ["AUDIT_FILE", "JsonlAudit"]

AUDIT_FILE = "audit.jsonl"


class JsonlAudit:
    """Appends ``{"at": ISO time, "event": ..., **fields}`` lines to a file.

    Parameters
    ----------
    path : Path
        The log file (created on first write).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, event: str, fields: Mapping[str, object]) -> None:
        """Append one event; it is on disk when this returns."""
        record: dict[str, object] = {"at": dt.datetime.now().astimezone().isoformat(timespec="seconds"), "event": event}
        record.update({k: v if isinstance(v, (int, float, bool, list)) else str(v) for k, v in fields.items()})
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def events(self) -> list[dict[str, object]]:
        """Every event so far (for tests and tools)."""
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
