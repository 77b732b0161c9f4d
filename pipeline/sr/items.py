"""The content items every SR measurement group is made of.

SCOORD coordinates, TEXT and NUM items (with the TID 310 reference
properties of a flagged value), Finding Site, Tracking Identifier and the
frame's notes. Coordinates: the pipeline uses pixel-centre coordinates
(centre of the top-left pixel at (0, 0)); DICOM SCOORD puts the top-left
corner of the top-left pixel at (0, 0), so :data:`SCOORD_OFFSET` (0.5) is
added.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

import highdicom as hd
import numpy as np
from pydicom.sr.coding import Code

from pipeline.analysis import FrameResult
from pipeline.calibration import CalibrationSource
from pipeline.protocols import Laterality
from pipeline.reference.flags import Flag, ReferenceReading
from pipeline.reference.keys import ReadingKey
from pipeline.sr import codes
from pipeline.sr.source_image import SourceImage

__all__ = [
    "SCOORD_OFFSET",
    "MeasurementGroupTemplate",
    "Readings",
    "confidence_item",
    "finding_site",
    "frame_notes",
    "measurement_item",
    "reading_for",
    "reference_notes",
    "reference_properties",
    "side_label",
    "text_item",
    "to_scoord",
    "tracking_identifier",
    "tracking_uid",
    "with_texts",
]

#: Added to pipeline pixel coordinates to get DICOM SCOORD image coordinates.
SCOORD_OFFSET = 0.5

#: Readings of the values of a study (``pipeline.reference.readings_for_rows``), by value.
Readings = Mapping[ReadingKey, ReferenceReading]
#: Values whose missing reference is said in the SR (the others have none to expect).
_FLAGGED_MEASUREMENTS = frozenset({"cross_sectional_area", "thickness", "echogenicity_mean"})

MeasurementGroupTemplate = (
    hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations | hd.sr.MeasurementsAndQualitativeEvaluations
)
_Group = TypeVar("_Group", bound=MeasurementGroupTemplate)


def to_scoord(points_px: np.ndarray | Sequence[Sequence[float]], *, closed: bool) -> np.ndarray:
    """Pipeline pixel coordinates -> SCOORD graphic data (float32, (N, 2)).

    ``closed`` repeats the first point at the end (a closed POLYLINE), unless
    it is already repeated.

    Raises
    ------
    ValueError
        Not an (N, 2) array of finite numbers, or too few points.
    """
    pts = np.asarray(points_px, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be an (N, 2) array, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points must be finite")
    if closed:
        if len(pts) < 3:
            raise ValueError(f"a closed outline needs at least 3 points, got {len(pts)}")
        if not np.array_equal(pts[0], pts[-1]):
            pts = np.vstack([pts, pts[:1]])
    elif len(pts) < 2:
        raise ValueError(f"a polyline needs at least 2 points, got {len(pts)}")
    return (pts + SCOORD_OFFSET).astype(np.float32)


def text_item(name: Code, value: str) -> hd.sr.TextContentItem:
    return hd.sr.TextContentItem(
        name=name, value=" ".join(str(value).split()), relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def measurement_item(
    name: Code,
    value: float,
    unit: Code,
    derivation: Code | None = None,
    reading: ReferenceReading | None = None,
    method: Code | None = None,
) -> hd.sr.Measurement:
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name.meaning}: value {value} is not finite")
    return hd.sr.Measurement(
        name=name, value=value, unit=unit, derivation=derivation, method=method,
        properties=reference_properties(reading, unit),
    )


def confidence_item(value: float) -> hd.sr.Measurement:
    """The group's confidence NUM (local code, unit "1"; why not a standard concept: :data:`codes.CONFIDENCE`)."""
    return measurement_item(codes.CONFIDENCE, value, codes.NO_UNITS)


def _interval_text(reading: ReferenceReading, unit: Code) -> str:
    low, high = reading.reference_low, reading.reference_high
    edge = "at a limit normal" if reading.at_cutoff.value == "normal" else "at a limit abnormal"
    if low is not None and high is not None:
        interval = f"{low:.4g} to {high:.4g} {unit.value}"
    elif high is not None:
        interval = f"up to {high:.4g} {unit.value}"
    elif low is not None:
        interval = f"from {low:.4g} {unit.value}"
    else:
        interval = "no interval"
    if reading.z_score is None:
        interval += f" ({edge})"
    return f"Normal range {interval}. Source: {reading.reference_source}"


def reference_properties(reading: ReferenceReading | None, unit: Code) -> hd.sr.MeasurementProperties | None:
    """TID 310 Measurement Properties of a flagged value: Normality (CID 222), the Normal Range
    (TID 312: lower / upper limit, CID 223, and its source as the description) and, for a z-score
    model, the population mean and SD at the patient's covariates and the z-score (TID 311).
    ``None`` when the value has no reference (flag ``none``)."""
    if reading is None or reading.flag is Flag.NONE:
        return None
    has_props = hd.sr.RelationshipTypeValues.HAS_PROPERTIES
    limits = [
        hd.sr.NumContentItem(name=code, value=float(limit), unit=unit, relationship_type=has_props)
        for code, limit in (
            (codes.NORMAL_RANGE_LOWER_LIMIT, reading.reference_low),
            (codes.NORMAL_RANGE_UPPER_LIMIT, reading.reference_high),
        )
        if limit is not None
    ]
    normal_range = hd.sr.NormalRangeProperties(values=limits, description=_interval_text(reading, unit)) if limits else None
    statistics = None
    if reading.z_score is not None and reading.population_mean is not None and reading.population_sd is not None:
        statistics = hd.sr.MeasurementStatisticalProperties(
            values=[
                hd.sr.NumContentItem(
                    name=codes.MEAN_VALUE_OF_POPULATION, value=reading.population_mean, unit=unit, relationship_type=has_props
                ),
                hd.sr.NumContentItem(
                    name=codes.STANDARD_DEVIATION_OF_POPULATION, value=reading.population_sd, unit=unit,
                    relationship_type=has_props,
                ),
                hd.sr.NumContentItem(
                    name=codes.Z_SCORE, value=reading.z_score, unit=codes.NO_UNITS, relationship_type=has_props
                ),
            ],
            description=" ".join(f"{reading.reason} {reading.reference_source}".split()),
        )
    return hd.sr.MeasurementProperties(
        normality=codes.normality_code(reading.flag.value),
        normal_range_properties=normal_range,
        measurement_statistical_properties=statistics,
    )


def reading_for(
    readings: Readings | None, source: SourceImage, frame: FrameResult, structure: str, measurement: str
) -> ReferenceReading | None:
    if not readings:
        return None
    return readings.get(ReadingKey(source.sop_instance_uid, frame.frame_number, structure, measurement))


def reference_notes(
    readings: Readings | None, source: SourceImage, frame: FrameResult, structure: str, measurements: Iterable[str]
) -> list[hd.sr.TextContentItem]:
    """TEXT items saying why a value that is usually flagged has no reference here."""
    notes = []
    for name in measurements:
        reading = reading_for(readings, source, frame, structure, name)
        if reading is not None and reading.flag is Flag.NONE and name in _FLAGGED_MEASUREMENTS and reading.reason:
            notes.append(text_item(codes.REFERENCE_NOT_APPLIED, f"{name}: {reading.reason}"))
    return notes


def finding_site(site: str | Code, laterality: Laterality, level: str = "") -> hd.sr.FindingSite:
    """Finding Site: the structure (a site name, :func:`codes.site_code`, or a code), its laterality and
    (as Topographical Modifier) the level, when known."""
    return hd.sr.FindingSite(
        anatomic_location=site if isinstance(site, Code) else codes.site_code(site),
        laterality=codes.laterality_code(laterality),
        topographical_modifier=codes.level_code(level),
    )


def side_label(laterality: Laterality) -> str:
    return {Laterality.RIGHT: "right", Laterality.LEFT: "left", Laterality.BOTH: "both sides"}.get(
        Laterality(laterality), ""
    )


def tracking_uid(source_sop_instance_uid: str, frame_number: int, what: str) -> str:
    """The Tracking Unique Identifier of a finding: the same for the same structure on the same image frame
    in every run, so a viewer can follow it from one report version to the next (2.25 UID of a hash)."""
    digest = hashlib.sha256("\x1f".join(["mskus-tracking", source_sop_instance_uid, str(frame_number), what]).encode())
    return f"2.25.{int.from_bytes(digest.digest()[:16], 'big')}"


def tracking_identifier(source: SourceImage, frame: FrameResult, what: str) -> hd.sr.TrackingIdentifier:
    side = side_label(frame.laterality)
    site = f"{side} {frame.site}".strip()
    frame_part = f" frame {frame.frame_number}" if source.is_multiframe else ""
    return hd.sr.TrackingIdentifier(
        uid=tracking_uid(source.sop_instance_uid, frame.frame_number, what),
        identifier=f"{what}: {site} ({source.label}{frame_part})",
    )


def with_texts(group: _Group, texts: Iterable[hd.sr.TextContentItem]) -> _Group:
    """Append TEXT qualitative evaluations (TID 1501 row 12 / TID 1410) to a group."""
    items = list(texts)
    if items:
        group[0].ContentSequence.extend(items)
    return group


def frame_notes(frame: FrameResult, *, mm_reported: bool) -> list[hd.sr.TextContentItem]:
    """The frame's reason as a TEXT item: calibration fallback or why mm values are missing."""
    if not frame.reason:
        return []
    if frame.calibration.source is CalibrationSource.PIXEL_SPACING or mm_reported:
        return [text_item(codes.CALIBRATION_NOTE, frame.reason)]
    return [text_item(codes.NOT_MEASURED_REASON, frame.reason)]
