"""Assemble OUT_DIR's tables and manifest from the study records.

The tables are rebuilt from scratch each time (never appended to): studies
in Study Instance UID order, rows in the order each study's worker wrote
them (images by path, frames by number); errors sorted by file. Each file
is written to a temporary name and renamed, so a reader or an interrupted
run sees either the previous complete table or the new one. Memory holds
one study's record at a time, plus the error rows.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from pipeline.atomic import atomic_open, atomic_write_text
from pipeline.batch.records import STATE_DIR, StudyRecord, read_record
from pipeline.batch.settings import RunSettings
from pipeline.batch.tables import ERROR_COLUMNS, MEASUREMENT_COLUMNS, SUMMARY_COLUMNS, ErrorRow
from pipeline.cine.rows import EVENT_COLUMNS
from pipeline.reference.findings import FINDING_COLUMNS

if TYPE_CHECKING:
    from _csv import Writer

__all__ = ["ERRORS_CSV", "EVENTS_CSV", "FINDINGS_CSV", "MANIFEST", "MEASUREMENTS_CSV", "SUMMARY_CSV", "TableCounts", "assemble_outputs"]

logger = logging.getLogger(__name__)

MEASUREMENTS_CSV = "measurements.csv"
ERRORS_CSV = "errors.csv"
SUMMARY_CSV = "summary.csv"
FINDINGS_CSV = "findings.csv"
EVENTS_CSV = "events.csv"
MANIFEST = f"{STATE_DIR}/manifest.json"


@dataclass(frozen=True)
class TableCounts:
    """Rows written to each table (header excluded)."""

    studies: int
    measurements: int
    errors: int
    summary: int
    reports: int
    findings: int = 0
    events: int = 0


def _writer(handle: IO[str]) -> Writer:
    return csv.writer(handle, lineterminator="\n")


def assemble_outputs(
    out_dir: str | os.PathLike[str],
    record_paths: Iterable[tuple[str, Path]],
    coordinator_errors: Sequence[ErrorRow],
    settings: RunSettings,
) -> TableCounts:
    """Write ``measurements.csv``, ``summary.csv``, ``findings.csv``, ``errors.csv`` and the manifest.

    Parameters
    ----------
    out_dir : path
        OUT_DIR.
    record_paths : iterable of (study_uid, path)
        Records of the studies that are done (skipped or finished this run).
    coordinator_errors : sequence of ErrorRow
        Problems found before any worker ran (walk, headers, duplicates)
        and studies whose worker failed.
    settings : RunSettings
        Written into the manifest.
    """
    out = Path(out_dir)
    errors: list[tuple[str, ...]] = [tuple(e.cells()) for e in coordinator_errors]
    manifest_studies = []
    n_measurements = n_summary = n_reports = n_studies = n_findings = n_events = 0
    with (
        atomic_open(out / MEASUREMENTS_CSV) as measurements_file,
        atomic_open(out / SUMMARY_CSV) as summary_file,
        atomic_open(out / FINDINGS_CSV) as findings_file,
        atomic_open(out / EVENTS_CSV) as events_file,
    ):
        measurements = _writer(measurements_file)
        summary = _writer(summary_file)
        findings = _writer(findings_file)
        events = _writer(events_file)
        measurements.writerow(MEASUREMENT_COLUMNS)
        summary.writerow(SUMMARY_COLUMNS)
        findings.writerow(FINDING_COLUMNS)
        events.writerow(EVENT_COLUMNS)
        for study_uid, path in sorted(record_paths):
            record: StudyRecord | None = read_record(path)
            if record is None:
                logger.warning("study %s: record vanished; its rows are missing until the next run", study_uid)
                continue
            n_studies += 1
            measurements.writerows(record.measurements)
            summary.writerows(record.summary)
            findings.writerows(record.findings)
            n_findings += len(record.findings)
            events.writerows(record.events)
            n_events += len(record.events)
            errors.extend(record.errors)
            n_measurements += len(record.measurements)
            n_summary += len(record.summary)
            n_reports += bool(record.sr_file)
            manifest_studies.append(
                {
                    "study_uid": record.study_uid,
                    "record": path.relative_to(out).as_posix(),
                    "sr_file": record.sr_file,
                    "frames": record.frames,
                    "overlays": len(record.overlay_files),
                    "inputs": [
                        {"path": i.rel, "size": i.size, "mtime_ns": i.mtime_ns, "sha256": i.sha256} for i in record.inputs
                    ],
                }
            )
    errors.sort()
    with atomic_open(out / ERRORS_CSV) as errors_file:
        writer = _writer(errors_file)
        writer.writerow(ERROR_COLUMNS)
        writer.writerows(errors)
    manifest = {
        "format": 1,
        "software_version": settings.analysis.software_version,
        "settings_fingerprint": settings.fingerprint,
        "rules": settings.analysis.rules_source,
        "protocol": settings.analysis.protocol,
        "nerve_segmenter": {
            "kind": settings.analysis.nerve.kind,
            "model": settings.analysis.nerve.model,
            "model_sha256": settings.analysis.nerve.model_sha256,
            "unavailable": settings.analysis.nerve.unavailable,
        },
        "muscle_boundaries": {
            "kind": settings.analysis.muscle.kind,
            "model": settings.analysis.muscle.model,
            "model_sha256": settings.analysis.muscle.model_sha256,
            "unavailable": settings.analysis.muscle.unavailable,
        },
        "pseudonymized": settings.pseudonymize,
        "pseudonym_key_id": settings.key_id,
        "overlays": settings.overlays,
        "studies": manifest_studies,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1) + "\n")
    return TableCounts(n_studies, n_measurements, len(errors), n_summary, n_reports, n_findings, n_events)
