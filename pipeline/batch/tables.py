"""The three tables of a batch run: columns, row types and cell formatting.

``measurements.csv`` (one row per measurement, CONTRACT.md section 2),
``errors.csv`` (one row per input that could not be analysed, or not fully)
and ``summary.csv`` (per study, structure, level, side and measurement: images, frames, statistics). Cells are
plain strings: floats are written with :func:`repr` (the shortest text that
reads back to the same double), so equal results give byte-identical files
whichever machine or process computed them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.analysis import MeasurementRow
from pipeline.reference.flags import ReferenceReading

__all__ = [
    "ERROR_COLUMNS",
    "MEASUREMENT_COLUMNS",
    "SUMMARY_COLUMNS",
    "ErrorRow",
    "ImageContext",
    "format_float",
    "measurement_cells",
]

MEASUREMENT_COLUMNS: tuple[str, ...] = (
    "study_uid",
    "series_uid",
    "sop_instance_uid",
    "frame",
    "source_file",
    "protocol",
    "structure",
    "laterality",
    "measurement",
    "value",
    "unit",
    "status",
    "reason",
    "confidence",
    "mm_per_px",
    "calibration",
    "patient_id",
    "study_date",
    "series_description",
    "software_version",
    # Clinical reading (CONTRACT.md section 2; pipeline.reference): flag is normal, enlarged, reduced,
    # increased, decreased or none; flag_reason says why none (or that a model is only an example).
    "level",
    "reference_low",
    "reference_high",
    "reference_source",
    "flag",
    "z_score",
    "flag_reason",
)

ERROR_COLUMNS: tuple[str, ...] = ("source_file", "sop_instance_uid", "study_uid", "code", "reason")

SUMMARY_COLUMNS: tuple[str, ...] = (
    "study_uid",
    "patient_id",
    "study_date",
    "protocol",
    "structure",
    "level",
    "laterality",
    "measurement",
    "unit",
    "images",
    "frames",
    "mean",
    "sd",
    "median",
    "min",
    "max",
    "right_minus_left",
)


def format_float(value: float | None) -> str:
    """Shortest round-trip text of a float; empty for ``None``."""
    return "" if value is None else repr(float(value))


@dataclass(frozen=True)
class ErrorRow:
    """One row of ``errors.csv``.

    Attributes
    ----------
    source_file : str
        Input path relative to IN_DIR (POSIX separators); empty for a
        study-level problem.
    sop_instance_uid, study_uid : str
        When known.
    code : str
        Stable machine-readable kind (``not_dicom``, ``not_ultrasound``,
        ``truncated``, ``uncalibrated``, ...), the ``code`` of the typed error.
    reason : str
        One line a person understands.
    """

    source_file: str
    code: str
    reason: str
    sop_instance_uid: str = ""
    study_uid: str = ""

    def cells(self) -> list[str]:
        return [self.source_file, self.sop_instance_uid, self.study_uid, self.code, " ".join(self.reason.split())]

    @property
    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.source_file, self.study_uid, self.sop_instance_uid, self.code)


@dataclass(frozen=True)
class ImageContext:
    """Header values of a source image repeated on each of its rows."""

    patient_id: str = ""
    study_date: str = ""
    series_description: str = ""


#: The reading of a row the run did not judge (no reference tables passed).
_NOT_JUDGED = ReferenceReading.none("reference tables not applied in this run")


def measurement_cells(row: MeasurementRow, context: ImageContext, reading: ReferenceReading | None = None) -> list[str]:
    """The ``measurements.csv`` cells of one measurement row, in :data:`MEASUREMENT_COLUMNS` order.

    ``reading`` is the row's flag and reference (:func:`pipeline.reference.read_row`);
    without one the flag is ``none`` with the reason "reference tables not applied in this run".
    """
    judged = reading if reading is not None else _NOT_JUDGED
    return [
        row.study_uid,
        row.series_uid,
        row.sop_instance_uid,
        str(int(row.frame)) if row.frame else "",  # frame 0: a clip-level value (pipeline.cine.rows)
        row.source_file,
        row.protocol,
        row.structure,
        row.laterality,
        row.measurement,
        format_float(row.value),
        row.unit,
        row.status.value,
        " ".join(row.reason.split()),
        format_float(row.confidence),
        format_float(row.mm_per_px),
        row.calibration,
        context.patient_id,
        context.study_date,
        context.series_description,
        row.software_version,
        row.level,
        format_float(judged.reference_low),
        format_float(judged.reference_high),
        judged.reference_source,
        judged.flag.value,
        format_float(judged.z_score),
        " ".join(judged.reason.split()),
    ]


def column_index(columns: Sequence[str], name: str) -> int:
    """Position of ``name`` in ``columns`` (for code that reads rows back)."""
    return list(columns).index(name)
