"""Per-frame details of an OUT_DIR that are not in the SR: confidence, mm/px, refusals.

``mskus batch``, ``mskus analyze --out`` and the node's ``results/`` folder
write the same tables (:mod:`pipeline.study.outputs`): ``measurements.csv``
carries, per measurement row, the source file, calibration (``mm_per_px``,
``calibration``), ``confidence``, the flag, the row status and the reason a
measurement was refused; ``errors.csv`` the inputs not analysed.
:func:`load_sidecar` reads them into :class:`Sidecar`.
"""

from __future__ import annotations

import csv
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from qa_review.model import FrameInfo

__all__ = ["Sidecar", "load_sidecar"]

logger = logging.getLogger(__name__)

_LATERALITY = {"R": "Right", "L": "Left", "B": "Right and left"}
#: ``flag`` values of measurements outside their reference (CONTRACT.md section 2).
_ABNORMAL = frozenset({"enlarged", "reduced", "increased", "decreased"})


@dataclass(frozen=True)
class Sidecar:
    """What the tables of an OUT_DIR say about frames and studies.

    Attributes
    ----------
    frames : mapping of (SOP Instance UID, frame number) to FrameInfo
    sources : mapping of SOP Instance UID to source file (as written)
    protocols : mapping of Study Instance UID to protocol names
    study_errors : mapping of Study Instance UID to error lines (``errors.csv``)
    flags : mapping of Study Instance UID to the number of measurements flagged
        outside their reference (``flag`` enlarged, reduced, increased,
        decreased); empty when the table has no ``flag`` column
    """

    frames: Mapping[tuple[str, int], FrameInfo] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    protocols: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    study_errors: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    flags: Mapping[str, int] = field(default_factory=dict)
    has_flags: bool = False

    def study_flags(self, study_uid: str) -> int | None:
        """Flagged measurements of a study; ``None`` when the table records no flags at all."""
        return self.flags.get(study_uid, 0) if self.has_flags else None


def _float(value: object) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _int(value: object, default: int = 1) -> int:
    try:
        return int(value)  # type: ignore[call-overload]  # any value; TypeError/ValueError are caught
    except (TypeError, ValueError):
        return default


def _read_rows(out_dir: Path) -> list[dict[str, object]]:
    csv_path = out_dir / "measurements.csv"
    try:
        if csv_path.is_file():
            with open(csv_path, newline="", encoding="utf-8") as handle:
                return list(csv.DictReader(handle))
    except (OSError, ValueError, csv.Error) as exc:
        logger.warning("cannot read the measurement table in %s: %s", out_dir, exc)
    return []


def _read_errors(out_dir: Path) -> list[dict[str, str]]:
    path = out_dir / "errors.csv"
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except (OSError, csv.Error) as exc:
        logger.warning("cannot read %s: %s", path, exc)
        return []


def _frame_info(rows: Iterable[Mapping[str, object]]) -> FrameInfo:
    rows = list(rows)
    first = rows[0]
    confidence = next((c for c in (_float(r.get("confidence")) for r in rows) if c is not None), None)
    mm_per_px = next((c for c in (_float(r.get("mm_per_px")) for r in rows) if c is not None), None)
    flags: list[str] = []
    for row in rows:
        reason = " ".join(str(row.get("reason") or "").split())
        if not reason:
            continue
        status = str(row.get("status") or "")
        line = f"{row.get('measurement')}: {reason}" if status == "refused" and row.get("measurement") else reason
        if line not in flags:
            flags.append(line)
    side = str(first.get("laterality") or "")
    return FrameInfo(
        source_file=str(first.get("source_file") or ""),
        series_description=str(first.get("series_description") or ""),
        laterality=_LATERALITY.get(side, side),
        mm_per_px=mm_per_px,
        calibration=str(first.get("calibration") or ""),
        confidence=confidence,
        flags=tuple(flags),
    )


def load_sidecar(out_dir: str | Path) -> Sidecar:
    """Read ``measurements.csv`` and ``errors.csv`` of an OUT_DIR.

    Missing or unreadable tables give an empty :class:`Sidecar` (logged):
    the review works from the SRs alone.
    """
    out = Path(out_dir)
    by_frame: dict[tuple[str, int], list[Mapping[str, object]]] = defaultdict(list)
    sources: dict[str, str] = {}
    protocols: dict[str, list[str]] = defaultdict(list)
    flags: dict[str, int] = defaultdict(int)
    rows = _read_rows(out)
    has_flags = any("flag" in row for row in rows)
    for row in rows:
        if str(row.get("flag") or "").strip().lower() in _ABNORMAL and row.get("study_uid"):
            flags[str(row["study_uid"])] += 1
        sop = str(row.get("sop_instance_uid") or "")
        if not sop or row.get("frame") in (None, ""):
            continue
        by_frame[(sop, _int(row.get("frame")))].append(row)
        if row.get("source_file"):
            sources.setdefault(sop, str(row["source_file"]))
        study, protocol = str(row.get("study_uid") or ""), str(row.get("protocol") or "")
        if study and protocol and protocol not in protocols[study]:
            protocols[study].append(protocol)
    errors: dict[str, list[str]] = defaultdict(list)
    for err in _read_errors(out):
        study = err.get("study_uid") or ""
        if study:
            where = Path(err.get("source_file") or "").name
            errors[study].append(f"{where}: {err.get('reason', '')}" if where else str(err.get("reason", "")))
    return Sidecar(
        frames={key: _frame_info(rows) for key, rows in by_frame.items()},
        sources=sources,
        protocols={k: tuple(v) for k, v in protocols.items()},
        study_errors={k: tuple(v) for k, v in errors.items()},
        flags=dict(flags),
        has_flags=has_flags,
    )
