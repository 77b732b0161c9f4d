"""Which studies of an ``mskus analyze --out`` folder need a new report.

``mskus batch`` skips studies whose inputs and settings are unchanged; a
rerun of ``mskus analyze --out DIR`` does the same for its SRs. Without this,
every rerun on the same files wrote a new document superseding the last one,
so a PACS that receives the folder would collect identical reports.

The ledger is one small JSON file in the output folder
(:data:`LEDGER_FILE`) that records, per study, a digest of what the report
was made from (each input's absolute path, size and modification time, and
the analysis settings) and the SOP Instance UID of the report written. A
study is unchanged when its digest is the same *and* the report file in the
folder is still that document (a deleted or replaced report is rewritten).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import pydicom

__all__ = ["LEDGER_FILE", "InputStamp", "ReportLedger", "study_digest"]

logger = logging.getLogger(__name__)

#: The ledger's file name inside the output folder (hidden: not a result).
LEDGER_FILE = ".mskus-analyze.json"
_LEDGER_VERSION = 1


@dataclass(frozen=True)
class InputStamp:
    """What identifies one input file's content without reading it again.

    Attributes
    ----------
    path : str
        Absolute path (not resolved: a link stays the link the user gave).
    size : int
        Bytes.
    mtime_ns : int
        Modification time in nanoseconds.
    """

    path: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> InputStamp:
        """Stamp of ``path`` now; a file that cannot be stat'ed gets size and time -1 (never equal twice)."""
        absolute = os.path.abspath(path)
        try:
            st = os.stat(absolute)
        except OSError:
            return cls(absolute, -1, -1)
        return cls(absolute, int(st.st_size), int(st.st_mtime_ns))


def study_digest(inputs: Iterable[InputStamp], settings_fingerprint: str) -> str:
    """SHA-256 of a study's input stamps (order-independent) and the analysis settings."""
    payload = json.dumps(
        {
            "inputs": sorted([s.path, s.size, s.mtime_ns] for s in inputs),
            "settings": settings_fingerprint,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class _Entry:
    digest: str
    report_file: str
    sop_instance_uid: str


def _report_uid(path: Path) -> str:
    try:
        return str(pydicom.dcmread(path, stop_before_pixels=True).get("SOPInstanceUID", "") or "")
    except Exception:  # noqa: BLE001 - an unreadable report is simply not the one recorded
        return ""


@dataclass(frozen=True)
class ReportLedger:
    """The reports of an output folder and what each was made from.

    Attributes
    ----------
    out_dir : Path
        The ``analyze --out`` folder.
    entries : mapping of Study Instance UID to entry
        As last recorded.
    """

    out_dir: Path
    entries: Mapping[str, _Entry] = field(default_factory=dict)

    @classmethod
    def load(cls, out_dir: str | os.PathLike[str]) -> ReportLedger:
        """The folder's ledger; empty when there is none or it cannot be read (logged)."""
        out = Path(out_dir)
        path = out / LEDGER_FILE
        if not path.is_file():
            return cls(out)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != _LEDGER_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            entries = {str(uid): _Entry(**entry) for uid, entry in data["studies"].items()}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            # Worst case the reports are written again, superseding the old ones.
            logger.warning("%s is unreadable (%s); every study gets a new report", path, exc)
            return cls(out)
        return cls(out, MappingProxyType(entries))

    def unchanged(self, study_uid: str, digest: str) -> Path | None:
        """The study's report when it was made from the same inputs and settings and is still there."""
        entry = self.entries.get(study_uid)
        if entry is None or entry.digest != digest:
            return None
        path = self.out_dir / entry.report_file
        if not path.is_file() or _report_uid(path) != entry.sop_instance_uid:
            return None
        return path

    def recording(self, study_uid: str, digest: str, report: Path) -> ReportLedger:
        """A ledger that also records ``report`` (just written) for ``study_uid``."""
        entries = dict(self.entries)
        entries[study_uid] = _Entry(digest, Path(report).name, _report_uid(Path(report)))
        return ReportLedger(self.out_dir, MappingProxyType(entries))

    def save(self) -> None:
        """Write the ledger atomically (a killed run leaves the old one or the new one)."""
        data = {
            "version": _LEDGER_VERSION,
            "studies": {
                uid: {"digest": e.digest, "report_file": e.report_file, "sop_instance_uid": e.sop_instance_uid}
                for uid, e in sorted(self.entries.items())
            },
        }
        path = self.out_dir / LEDGER_FILE
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
